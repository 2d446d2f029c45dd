"""Kernel records: what a compiled program runs, one record per kernel.

Until graph fusion exists every top-level op is its own kernel; a kernel's kind is the
kind of kernel group it will belong to (matmul, conv, reduction, elementwise, opaque).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Graph, Location, Op, TensorType, ops

_KIND_OF_CATEGORY = {
    "matmul": "matmul",
    "conv": "conv",
    "reduction": "reduction",
    "elementwise": "elementwise",
    "shape": "elementwise",
    "data": "opaque",
    "control": "opaque",
    "meta": "opaque",
}


@dataclass(frozen=True)
class KernelRecord:
    kind: str                       # matmul | conv | reduction | elementwise | opaque
    ops: tuple[str, ...]            # the IR ops it computes
    inputs: tuple[TensorType, ...]
    outputs: tuple[TensorType, ...]
    flops: int
    bytes: int                      # bytes read and written, each input and output once
    backend: str                    # what runs it: "reference" (numpy executor), ...
    loc: Location | None = None

    def __str__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        return f"{self.kind} {'+'.join(self.ops)} ({ins}) -> ({outs})"


def kernel_kind(op: Op) -> str:
    return _KIND_OF_CATEGORY.get(ops.SPECS[op.name].category, "opaque")


def _op_flops(op: Op) -> int:
    """FLOPs of an op, including those of the ops in its regions once (a loop body's
    trip count is not known statically)."""
    return ops.flops(op) + sum(_op_flops(inner) for r in op.regions for inner in r.ops)


def kernels_per_op(graph: Graph, backend: str) -> list[KernelRecord]:
    records = []
    for op in graph.body.ops:
        if ops.SPECS[op.name].category in ("constant",) or op.name == "return":
            continue
        ins = tuple(v.type for v in op.operands)
        outs = tuple(op.result_types)
        records.append(KernelRecord(
            kind=kernel_kind(op), ops=(op.name,), inputs=ins, outputs=outs, flops=_op_flops(op),
            bytes=sum(t.nbytes for t in ins + outs), backend=backend, loc=op.loc))
    return records


def format_kernel_table(records: list[KernelRecord]) -> str:
    rows = [("#", "kind", "ops", "inputs", "outputs", "MFLOP", "KiB", "backend", "source")]
    for i, k in enumerate(records):
        rows.append((str(i), k.kind, "+".join(k.ops), ", ".join(map(str, k.inputs)),
                     ", ".join(map(str, k.outputs)), f"{k.flops / 1e6:.3f}", f"{k.bytes / 1024:.1f}",
                     k.backend, str(k.loc) if k.loc else ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    total_flops = sum(k.flops for k in records)
    total_bytes = sum(k.bytes for k in records)
    lines.append(f"{len(records)} kernels, {total_flops / 1e6:.3f} MFLOP, {total_bytes / 1024:.1f} KiB moved")
    return "\n".join(lines)
