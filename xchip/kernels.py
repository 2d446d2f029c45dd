"""Kernel records: what a compiled program runs, one record per kernel group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .ir import Location, TensorType
from .ir.kernel_graph import KernelGraph


@dataclass(frozen=True)
class KernelRecord:
    name: str                       # "matmul_3"
    kind: str                       # matmul | conv | reduction | elementwise | attention | opaque
    ops: tuple[str, ...]            # the IR ops it computes, in order
    inputs: tuple[TensorType, ...]  # read from memory
    outputs: tuple[TensorType, ...] # written to memory
    flops: int
    bytes: int                      # bytes read and written, each input and output once
    backend: str                    # what runs it: "tvm-llvm" (compiled), "reference" (numpy executor, a fallback) or "none"
    pattern: str = ""               # what fusion recognized: softmax, layernorm, gelu_erf, ...
    loc: Location | None = None     # where its main op came from

    def __str__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        return f"{self.name} ({ins}) -> ({outs})"


def kernel_records(kernel_graph: KernelGraph, backends: Mapping[str, str]) -> list[KernelRecord]:
    """One record per group; `backends` maps each group's name to what runs it."""
    records = []
    for g in kernel_graph.groups:
        anchor = g.anchor or (g.ops[0] if g.ops else None)
        records.append(KernelRecord(
            name=g.name, kind=g.kind, ops=tuple(g.op_names), inputs=tuple(v.type for v in g.inputs),
            outputs=tuple(v.type for v in g.outputs), flops=g.flops, bytes=g.bytes, backend=backends[g.name],
            pattern=str(g.info.get("pattern") or g.info.get("activation") or ""),
            loc=anchor.loc if anchor is not None else None))
    return records


def _ops_summary(ops: tuple[str, ...], limit: int = 6) -> str:
    counts: dict[str, int] = {}
    for name in ops:
        if name != "constant":  # immediates folded into the kernel, not work
            counts[name] = counts.get(name, 0) + 1
    parts = [f"{n}x{c}" if c > 1 else n for n, c in counts.items()]
    return ",".join(parts[:limit]) + (",..." if len(parts) > limit else "")


def _types_summary(types: tuple[TensorType, ...], limit: int = 3) -> str:
    text = ", ".join(map(str, types[:limit]))
    return text + (f", +{len(types) - limit}" if len(types) > limit else "")


def format_kernel_table(records: list[KernelRecord]) -> str:
    rows = [("#", "kernel", "pattern", "ops", "inputs", "outputs", "MFLOP", "KiB", "runs on", "source")]
    for i, k in enumerate(records):
        rows.append((str(i), k.name, k.pattern, _ops_summary(k.ops), _types_summary(k.inputs),
                     _types_summary(k.outputs), f"{k.flops / 1e6:.3f}", f"{k.bytes / 1024:.1f}", k.backend,
                     str(k.loc) if k.loc else ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    kinds: dict[str, int] = {}
    for k in records:
        kinds[k.kind] = kinds.get(k.kind, 0) + 1
    lines.append(f"{len(records)} kernels ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
                 f"{sum(k.flops for k in records) / 1e6:.3f} MFLOP, "
                 f"{sum(k.bytes for k in records) / 1024:.1f} KiB moved")
    return "\n".join(lines)
