"""Whole-program estimates: every kernel group of a kernel graph on one target, and the
table `xchip compile --estimate` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..ir.kernel_graph import KernelGraph, KernelGroup
from .cost_model import KernelEstimate, estimate_kernel
from .descriptor import Target
from .registry import get


@dataclass
class ModelEstimate:
    target: str
    verification_level: str
    kernels: list[KernelEstimate]
    notes: list[str] = field(default_factory=list)    # distinct notes of all kernels, first-seen order

    @property
    def total_s(self) -> float | None:
        """Sum of the kernels' modeled times (kernels run one after another); None if no
        kernel has one."""
        times = [k.time_s for k in self.kernels if k.time_s is not None]
        if not times or (self.lower_bound and sum(times) == 0):
            return None     # "at least zero" says nothing
        return sum(times)

    @property
    def lower_bound(self) -> bool:
        return any(k.lower_bound or k.time_s is None for k in self.kernels)

    @property
    def legal(self) -> bool:
        return all(k.legal for k in self.kernels)

    @property
    def missing(self) -> list[str]:
        return sorted({m for k in self.kernels for m in k.missing})

    def bound_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in self.kernels:
            out[k.bound] = out.get(k.bound, 0) + 1
        return out


def _config_for(group: KernelGroup, configs: Mapping | None) -> Mapping | None:
    if not configs:
        return None
    for key in (group.id, group.name):
        if key in configs:
            return configs[key]
    return None


def estimate_kernel_graph(kernel_graph: KernelGraph, target: str | Target,
                          configs: Mapping | None = None) -> ModelEstimate:
    """Modeled time of every kernel group on `target`. `configs` maps a group's id or name to
    its tile config (`tile_m`, `tile_n`, `tile_k`, `stages`, `num_warps`, ...); groups without
    one are modeled with ideal tiling. (An unfused graph is `optimize(graph, level="O0")`: one
    kernel per op.)"""
    target = get(target)
    kernels = [estimate_kernel(g, target, _config_for(g, configs)) for g in kernel_graph.groups]
    notes = list(dict.fromkeys(n for k in kernels for n in k.notes))
    return ModelEstimate(target.name, target.verification_level, kernels, notes)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.3g} us"
    return f"{seconds * 1e9:.3g} ns"


def _time_cell(seconds: float | None, lower: bool) -> str:
    return format_seconds(seconds) if seconds is None or not lower else f">={format_seconds(seconds)}"


def format_estimate(estimate: ModelEstimate) -> str:
    """The per-kernel table with totals and the notes on what could not be modeled."""
    header = ("group", "kind", "MFLOP", "MB", "compute", "memory", "launch", "time", "bound")
    rows = [header]
    for k in estimate.kernels:
        rows.append((k.group, k.kind, f"{k.flops / 1e6:.3f}", f"{k.bytes / 1e6:.3f}", format_seconds(k.compute_s),
                     format_seconds(k.memory_s), format_seconds(k.launch_s), _time_cell(k.time_s, k.lower_bound),
                     k.bound if k.legal else f"illegal: {k.reason}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(header) - 1)]
    lines = [f"modeled timings on {estimate.target} (cost model, not measured; "
             f"verification level: {estimate.verification_level})"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    counts = ", ".join(f"{n} {b}-bound" if b in ("compute", "memory", "launch") else f"{n} {b}"
                       for b, n in estimate.bound_counts().items())
    total = _time_cell(estimate.total_s, estimate.lower_bound)
    lines.append(f"total {total} over {len(estimate.kernels)} kernels ({counts or 'none'})"
                 + ("; >= marks lower bounds: see the notes" if estimate.lower_bound else ""))
    if estimate.notes:
        lines.append("notes:")
        lines += [f"  - {n}" for n in estimate.notes]
    return "\n".join(lines)
