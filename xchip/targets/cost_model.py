"""Modeled time of one kernel group on one target: a roofline with the corrections that
matter for tiled kernels, and an honest account of what it could not model.

    time = max(compute, memory) + launch

compute = sum over work classes of FLOPs / (peak x efficiency): matrix work (dot_general,
convolution) runs at the target's peak for its operand dtype, everything else at the
vector FP32 (FP64 for f64) rate. For a tiled matmul or convolution, efficiency = wave
efficiency x padding efficiency, where tiles are spread over compute units x tiles resident
per unit (occupancy, from on-chip memory and registers on SIMT targets; one per core on
SIMD machines such as Ascend and Cambricon).

memory = bytes / bandwidth, where bytes are each input and output once, plus, for a tiled
matmul, the re-reads of an operand that does not fit in L2 (once per tile column for the
left operand, once per tile row for the right one).

Where the target's descriptor has no number for something the model needs, the estimate
leaves that term out, says which field was missing, and marks the time as a lower bound;
it never substitutes a guess. Formulas and limits: docs/targets.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from ..ir import Op, ops
from ..ir.kernel_graph import KernelGroup
from .descriptor import Target
from .quantity import Quantity

MATRIX_OPS = ("dot_general", "convolution")
TILED_KINDS = ("matmul", "conv")

_MATRIX_KEY = {"f64": "fp64", "c128": "fp64", "f32": "fp32", "c64": "fp32", "bf16": "bf16", "f16": "fp16",
               "f8e4m3fn": "fp8", "f8e5m2": "fp8", "i8": "int8", "u8": "int8"}

CONFIG_KEYS = ("tile_m", "tile_n", "tile_k", "stages", "num_warps", "registers_per_thread", "split_k",
               "matmul_precision")


@dataclass
class KernelEstimate:
    group: str
    kind: str
    target: str
    flops: int
    bytes: int                        # modeled DRAM traffic
    compute_s: float | None           # None: no peak known for any of its work
    memory_s: float | None
    launch_s: float | None
    time_s: float | None              # max(compute, memory) + launch over the known terms
    bound: str                        # compute | memory | launch | unknown | illegal
    legal: bool = True
    reason: str = ""                  # why the config is illegal
    lower_bound: bool = False         # a term is missing or partial: the true time is larger
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)   # descriptor fields that were null and needed
    details: dict = field(default_factory=dict)        # tiles, waves, occupancy, efficiency, ...


class _Account:
    """Collects notes and missing fields while an estimate is built."""

    def __init__(self, target: Target):
        self.target = target
        self.notes: list[str] = []
        self.missing: list[str] = []
        self.partial: set[str] = set()    # terms (compute, memory, launch) that are lower bounds

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def lacks(self, path: str, q: Quantity | None, consequence: str, term: str | None) -> None:
        """A null field the model needed: name it, say why it is null and what was left out.
        `term` is the part of the time that is now a lower bound (None: only a check was skipped)."""
        if term:
            self.partial.add(term)
        if path not in self.missing:
            self.missing.append(path)
        why = f": {q.note}" if q is not None and q.note else ""
        self.note(f"{self.target.name}: {path} is unknown{why}; {consequence}")


# --- work classes and peaks ------------------------------------------------------------------

def _op_flops(op: Op) -> int:
    return ops.flops(op) + sum(_op_flops(inner) for r in op.regions for inner in r.ops)


def _vector_key(op: Op) -> tuple[str, bool]:
    """(peak key, integer-only) for an op that runs on the vector units."""
    types = [v.type.dtype for v in (*op.operands, *op.results)]
    if any(d.name in ("f64", "c128") for d in types):
        return "fp64", False
    return "fp32", not any(d.is_float or d.is_complex for d in types)


def work_classes(group: KernelGroup, config: Mapping | None = None) -> dict[tuple[str, str], int]:
    """FLOPs by (unit, dtype): ("matrix", "bf16"), ("vector", "f32"), ... ."""
    out: dict[tuple[str, str], int] = {}
    for op in group.ops:
        n = _op_flops(op)
        if n == 0:
            continue
        if op.name in MATRIX_OPS:
            cls = ("matrix", op.operands[0].type.dtype.name)
        else:
            key, integer = _vector_key(op)
            cls = ("vector", "int" if integer else ("f64" if key == "fp64" else "f32"))
        out[cls] = out.get(cls, 0) + n
    return out


def _matrix_peak(target: Target, dtype: str, config: Mapping, acct: _Account) -> float | None:
    if dtype in target.computes_as:
        acct.note(f"{target.name}: {dtype} is computed as {target.computes_as[dtype]}")
        dtype = target.computes_as[dtype]
    key = _MATRIX_KEY.get(dtype)
    if key == "fp32" and config.get("matmul_precision") == "tf32":
        key = "tf32"
    if key is None:
        acct.partial.add("compute")
        acct.note(f"{target.name}: no peak class for {dtype} matmul; that work is not modeled")
        return None
    q = target.peak(key)
    if q.known:
        return q.value
    if q.status == "unsupported":
        acct.partial.add("compute")
        acct.note(f"{target.name}: {key} is not supported in hardware; a precision pass must convert "
                  f"{dtype} matmuls first (their work is not modeled)")
        return None
    acct.lacks(f"peak_tflops.{key}", q, f"{dtype} matrix work not modeled", "compute")
    return None


def _vector_peak(target: Target, dtype: str, acct: _Account) -> float | None:
    key = "fp64" if dtype == "f64" else "fp32"
    if dtype == "int":
        acct.note("integer ops are counted at the FP32 vector rate (descriptors carry no integer vector peak)")
    q = target.peak(key)
    if q.known and q.path == "vector":
        return q.value
    if q.known:
        acct.partial.add("compute")
        if f"peak_tflops.{key} (vector)" not in acct.missing:
            acct.missing.append(f"peak_tflops.{key} (vector)")
        what = "a matrix-unit figure" if q.path == "matrix" else "not stated to be a vector-unit figure"
        acct.note(f"{target.name}: peak_tflops.{key} is {what}; elementwise/reduction work not modeled")
        return None
    acct.lacks(f"peak_tflops.{key}", q, "elementwise/reduction work not modeled", "compute")
    return None


# --- tiled matmul geometry -------------------------------------------------------------------

@dataclass(frozen=True)
class _Gemm:
    batch: int
    m: int
    n: int
    k: int
    lhs_itemsize: int
    rhs_itemsize: int


def _gemm(op: Op) -> _Gemm:
    lhs, rhs = (v.type for v in op.operands)
    if op.name == "dot_general":
        a = op.attrs
        batch = math.prod(lhs.shape[d] for d in a["lhs_batching_dimensions"])
        k = math.prod(lhs.shape[d] for d in a["lhs_contracting_dimensions"])
        m = lhs.size // max(1, batch * k)
        n = rhs.size // max(1, batch * k)
        return _Gemm(batch, m, n, k, lhs.dtype.itemsize, rhs.dtype.itemsize)
    # convolution as an implicit GEMM: rows = output pixels, columns = output features,
    # reduction = input features x window.
    a = op.attrs
    out = op.results[0].type
    n = out.shape[a["output_feature_dimension"]]
    k = rhs.shape[a["kernel_input_feature_dimension"]] * math.prod(rhs.shape[d] for d in a["kernel_spatial_dimensions"])
    return _Gemm(1, out.size // max(1, n), n, k, lhs.dtype.itemsize, rhs.dtype.itemsize)


def _anchor(group: KernelGroup) -> Op | None:
    if group.anchor is not None and group.anchor.name in MATRIX_OPS:
        return group.anchor
    return next((op for op in group.ops if op.name in MATRIX_OPS), None)


def _positive_int(config: Mapping, key: str, default: int | None = None) -> int | None:
    value = config.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config '{key}' must be a positive integer, got {value!r}")
    return value


@dataclass
class _Tiling:
    efficiency: float = 1.0
    extra_bytes: int = 0
    illegal: str = ""
    details: dict = field(default_factory=dict)


def _tile_memory(target: Target) -> tuple[str, str, Quantity]:
    if target.matmul_tile_memory:
        return (f"onchip_other.{target.matmul_tile_memory}", target.matmul_tile_memory,
                target.onchip_other[target.matmul_tile_memory])
    return "onchip_kb", target.onchip_name, target.onchip_kb


def _tiling(group: KernelGroup, op: Op, target: Target, config: Mapping, acct: _Account) -> _Tiling:
    g = _gemm(op)
    tm, tn = _positive_int(config, "tile_m"), _positive_int(config, "tile_n")
    tk = _positive_int(config, "tile_k")
    stages = _positive_int(config, "stages", 1)
    split_k = _positive_int(config, "split_k", 1)
    out = _Tiling(details={"gemm": f"{g.batch}x{g.m}x{g.n}x{g.k}", "tile": f"{tm}x{tn}x{tk or '?'}",
                           "stages": stages, "split_k": split_k})

    # Legality: the operand tiles of all pipeline stages must fit the on-chip memory that holds them.
    footprint = stages * (tm * tk * g.lhs_itemsize + tk * tn * g.rhs_itemsize) if tk else None
    path, level, capacity = _tile_memory(target)
    occupancy_limits = []
    if footprint is None:
        acct.note("config has no tile_k: on-chip footprint and legality not checked")
    elif capacity.known:
        cap_bytes = int(capacity.value * 1024)
        out.details["onchip_bytes"] = footprint
        if footprint > cap_bytes:
            out.illegal = (f"tile {tm}x{tn}x{tk} with {stages} stage(s) needs {footprint / 1024:.1f} KiB of "
                           f"{level}; {target.name} has {capacity.text()} KiB")
            return out
        occupancy_limits.append(("onchip", cap_bytes // footprint))
    elif capacity.status == "unknown":
        acct.lacks(path, capacity, "tile legality not checked", None)

    num_warps = _positive_int(config, "num_warps", 4)
    regs = _positive_int(config, "registers_per_thread")
    if target.is_simt:
        threads = num_warps * int(target.warp_size.value)
        out.details["threads_per_tile"] = threads
        if regs is not None:
            if target.register_file_kb.known:
                need = threads * regs * 4
                have = int(target.register_file_kb.value * 1024)
                if need > have:
                    out.illegal = (f"{num_warps} warps x {int(target.warp_size.value)} threads x {regs} registers "
                                   f"need {need / 1024:.0f} KiB of registers; {target.name} has "
                                   f"{target.register_file_kb.text()} KiB per {target.compute_units.unit}")
                    return out
                occupancy_limits.append(("registers", have // need))
            else:
                acct.lacks("register_file_kb", target.register_file_kb, "register-limited occupancy not checked",
                           None)
        occupancy = min((n for _, n in occupancy_limits), default=1)
        if not occupancy_limits:
            acct.note(f"{target.name}: no occupancy limit computable; one tile per unit assumed")
    else:
        occupancy = 1     # SIMD accelerators (Ascend, Cambricon) run one block per core
        if target.warp_size.status == "unknown":
            acct.lacks("warp_size", target.warp_size, "occupancy not modeled (one tile per unit)", None)

    # Wave quantization: tiles run in waves of units x occupancy; a partial last wave idles units.
    tiles = g.batch * math.ceil(g.m / tm) * math.ceil(g.n / tn) * split_k
    padding = (g.m * g.n) / (math.ceil(g.m / tm) * tm * math.ceil(g.n / tn) * tn)
    out.details.update(tiles=tiles, padding_efficiency=padding, occupancy=occupancy)
    units = target.compute_units
    if units.known and target.backend != "cpu":
        slots = int(units.value) * occupancy
        waves = math.ceil(tiles / slots)
        wave_eff = tiles / (waves * slots)
        out.details.update(slots=slots, waves=waves, wave_efficiency=wave_eff)
        out.efficiency = wave_eff * padding
    else:
        if not units.known:
            acct.lacks("compute_units", units, "wave quantization not modeled", "compute")
        out.efficiency = padding

    # Re-reads: without L2 reuse each tile column re-reads the left operand, each tile row the right.
    lhs, rhs = op.operands
    l2 = target.l2_mb
    l2_bytes = l2.value * (1 << 20) if l2.known else None
    if not l2.known and target.backend != "cpu":
        acct.lacks("l2_mb", l2, "operands assumed to be re-read from cache (traffic is a lower bound)", "memory")
    inputs = {id(v) for v in group.inputs}
    for value, reads in ((lhs, math.ceil(g.n / tn)), (rhs, math.ceil(g.m / tm))):
        if id(value) in inputs and reads > 1 and l2_bytes is not None and value.type.nbytes > l2_bytes:
            out.extra_bytes += (reads - 1) * value.type.nbytes
    if split_k > 1:
        out.extra_bytes += (split_k - 1) * sum(v.type.nbytes for v in group.outputs)
    out.details["extra_bytes"] = out.extra_bytes
    return out


# --- the estimate ----------------------------------------------------------------------------

def estimate_kernel(group: KernelGroup, target: Target, config: Mapping | None = None) -> KernelEstimate:
    """Modeled time of `group` on `target` with a tile `config` (None: ideal tiling)."""
    config = dict(config or {})
    acct = _Account(target)
    flops = group.flops
    bytes_moved = group.bytes
    efficiency = 1.0
    details: dict = {}

    anchor = _anchor(group)
    if anchor is not None and group.kind in TILED_KINDS and "tile_m" in config and "tile_n" in config:
        tiling = _tiling(group, anchor, target, config, acct)
        details.update(tiling.details)
        if tiling.illegal:
            return KernelEstimate(group.name, group.kind, target.name, flops, bytes_moved, None, None, None,
                                  None, "illegal", legal=False, reason=tiling.illegal, notes=acct.notes,
                                  missing=acct.missing, details=details)
        efficiency = tiling.efficiency
        bytes_moved += tiling.extra_bytes
    elif group.kind in TILED_KINDS and anchor is not None:
        acct.note("no tile config: ideal tiling (each input and output moved once, no wave losses)")

    compute_s, classes = 0.0, {}
    any_known = False
    for (unit, dtype), n in work_classes(group, config).items():
        peak = (_matrix_peak(target, dtype, config, acct) if unit == "matrix"
                else _vector_peak(target, dtype, acct))
        classes[f"{unit}:{dtype}"] = n
        if peak is None:
            continue
        any_known = True
        eff = efficiency if unit == "matrix" else 1.0
        compute_s += n / (peak * 1e12 * eff)
    if not any_known and classes:
        compute_s = None
    details["flops_by_class"] = classes

    bw = target.memory_bandwidth_gbs
    if bw.known:
        memory_s = bytes_moved / (bw.value * 1e9)
    else:
        memory_s = None
        acct.lacks("memory_bandwidth_gbs", bw, "memory time not modeled", "memory")

    launch = target.launch_overhead_us
    if launch.known:
        launch_s = launch.value * 1e-6
    elif launch.status == "unknown":
        launch_s = None
        acct.lacks("launch_overhead_us", launch, "launch overhead not included", "launch")
    else:
        launch_s = 0.0

    known = [t for t in (compute_s, memory_s) if t is not None]
    time_s = max(known) + (launch_s or 0.0) if known else None
    # A lower-bound term can only grow, so a comparison is decided when the smaller side is exact.
    bound = "unknown"
    if compute_s is not None and memory_s is not None:
        if compute_s >= memory_s and "memory" not in acct.partial:
            bound = "compute"
        elif memory_s > compute_s and "compute" not in acct.partial:
            bound = "memory"
    if bound != "unknown" and launch_s is not None and launch_s > max(known):
        bound = "launch"
    lower = bool(acct.partial) or compute_s is None or memory_s is None or launch_s is None
    return KernelEstimate(group.name, group.kind, target.name, flops, bytes_moved, compute_s, memory_s, launch_s,
                          time_s, bound, lower_bound=lower, notes=acct.notes, missing=acct.missing,
                          details=details)
