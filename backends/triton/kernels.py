"""Kernel groups as Triton kernel source: `elementwise` (and data-movement `opaque`) groups,
one flat program per block of output elements; `matmul` groups, a tiled GEMM (operands
computed from inputs are computed tile by tile in the K loop; the epilogue is applied to the
accumulator tile before it is stored; group-M tile order; split-K); `conv` groups as implicit
GEMMs; `reduction` groups over the last axis (softmax, layernorm, rmsnorm, log-softmax,
sums and maxima: one program per row, the row in registers, every reduction of the group in
one pass over memory) and pooling (`reduce_window`); `attention` groups (flash attention,
`attention.py`). While loops are not one kernel: `loops.py`.

    ks = generate(group, config, target="h800")    # KernelSource: source text, signature, grid
    ks.source                                      # a module defining one undecorated function

Shapes are static, so sizes and strides are literals in the source; the kernel's
parameters are the group's inputs then outputs (pointers), then scratch buffers (split-K),
then the block sizes (constexpr). A group this module cannot express raises
`UnsupportedOpError` naming the op, its source location and the target.
"""

from __future__ import annotations

import math
from contextlib import nullcontext as _nothing
from dataclasses import dataclass, field

import numpy as np

from xchip.errors import UnsupportedOpError
from xchip.ir.kernel_graph import KernelGroup

from .emitter import ZERO, Emitter, Ix, Tile, place, split
from .expr import NARROW, TL, tl_type

DEFAULT_BLOCK = 1024
DEFAULT_TILE = {"tile_m": 64, "tile_n": 64, "tile_k": 32}
DEFAULT_GROUP_M = 8


@dataclass
class KernelSource:
    name: str
    kind: str
    source: str
    params: list[str]                       # pointer parameters: inputs then outputs
    constexprs: dict[str, int]
    grid: tuple[int, ...]
    signature: dict[str, str] = field(default_factory=dict)   # parameter -> Triton type ("*fp32", "constexpr")
    # zero-filled buffers the launcher passes after the outputs: name -> (torch dtype, elements)
    scratch: dict[str, tuple[str, int]] = field(default_factory=dict)


_PTR = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "f64": "fp64", "i32": "i32", "i64": "i64",
        "i8": "i8", "i16": "i16", "u8": "u8", "u16": "u16", "u32": "u32", "u64": "u64", "bool": "i1",
        "f8e4m3fn": "fp8e4nv", "f8e5m2": "fp8e5"}

# combine functions of reductions, NaN-propagating like the reference's
_COMBINE = """
@triton.jit
def _max_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _min_nan(a, b):
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _mul(a, b):
    return a * b
"""


def kernel_source(group: KernelGroup, kind: str, em: Emitter, consts: dict[str, int],
                  grid: tuple[int, ...], scratch: dict[str, tuple[str, int]] | None = None) -> KernelSource:
    """The module text of a kernel whose body `em` wrote."""
    params = [f"in{k}" for k in range(len(group.inputs))] + [f"out{k}" for k in range(len(group.outputs))]
    scratch = scratch or {}
    args = ", ".join(params + list(scratch) + [f"{c}: tl.constexpr" for c in consts])
    head = ["import triton", "import triton.language as tl", _COMBINE, "", f"def {group.name}({args}):"]
    source = "\n".join(head + ["    " + x for x in em.lines]) + "\n"
    values = list(group.inputs) + list(group.outputs)
    sig = {p: "*" + _PTR[v.type.dtype.name] for p, v in zip(params, values)}
    sig.update({name: "*" + {"float32": "fp32", "int32": "i32"}[dt] for name, (dt, _) in scratch.items()})
    sig.update({c: "constexpr" for c in consts})
    return KernelSource(group.name, kind, source, params, dict(consts), grid, sig, dict(scratch))


def dot_precision(dtype) -> str:
    """f32 products as the reference computes them (no TF32 rounding of the operands)."""
    return ', input_precision="ieee"' if dtype.name in ("f32", "f64") else ""


def _flat_index(shape) -> list[Ix]:
    """The index of each dim of `shape` from a flat program's `offs`."""
    if len(shape) > 1:
        return split("offs", list(shape), masks=frozenset({"mask"}))
    return [Ix("offs", frozenset({"mask"}))] * len(shape)


def _flat(group: KernelGroup, config: dict, target: str | None, kind: str) -> KernelSource:
    """One program per block of output elements (elementwise groups, and pooling: each
    reduce_window computed at the outputs' index, its window unrolled)."""
    n = group.outputs[0].type.size
    em = Emitter(group, target)
    em.lines += ["pid = tl.program_id(0)", "offs = pid * BLOCK + tl.arange(0, BLOCK)", f"mask = offs < {n}"]
    for op in group.ops:
        if op.name == "reduce_window":
            index = _flat_index(op.results[0].type.shape)
            em.bind(op.results[0], _window(em, op, index), index)
    for k, v in enumerate(group.outputs):
        if v.type.size != n:
            raise UnsupportedOpError(group.ops[-1].name, group.ops[-1].loc, target,
                                     "outputs of different sizes in one flat kernel")
        em.store(f"out{k}", v, _flat_index(v.type.shape), list(v.type.shape), offset="offs", mask="mask")
    block = int(config.get("block", DEFAULT_BLOCK))
    return kernel_source(group, kind, em, {"BLOCK": block}, (max(1, -(-n // block)),))


def dot_dims(dot) -> tuple[list[int], list[int], list[int], list[int], list[int], list[int]]:
    """(lhs batch, lhs free, lhs contracting, rhs batch, rhs free, rhs contracting) dims."""
    a = dot.attrs
    lb, rb = list(a["lhs_batching_dimensions"]), list(a["rhs_batching_dimensions"])
    lc, rc = list(a["lhs_contracting_dimensions"]), list(a["rhs_contracting_dimensions"])
    lf = [d for d in range(len(dot.operands[0].type.shape)) if d not in lb + lc]
    rf = [d for d in range(len(dot.operands[1].type.shape)) if d not in rb + rc]
    return lb, lf, lc, rb, rf, rc


def _matmul(group: KernelGroup, config: dict, target: str | None) -> KernelSource:
    """A tiled GEMM. Output tiles are visited in groups of GROUP_M rows of tiles (programs
    that run together share B's column panels in L2). With split_k > 1, SPLIT_K programs
    share one output tile's K loop: each adds its partial sum into a zeroed f32 workspace
    with atomics and counts itself in; the last one to arrive reads the sum back and applies
    the epilogue (which may not be linear, so it cannot be applied to partial sums). The
    order of those additions varies from run to run, so split-K sums are not bitwise
    reproducible."""
    dot = group.anchor if group.anchor is not None and group.anchor.name == "dot_general" else \
        next((op for op in group.ops if op.name == "dot_general"), None)
    if dot is None:
        raise UnsupportedOpError(group.ops[0].name, group.ops[0].loc, target, "a matmul group without dot_general")
    lhs, rhs = dot.operands
    lb, lf, lc, rb, rf, rc = dot_dims(dot)
    lsh, rsh = list(lhs.type.shape), list(rhs.type.shape)
    B = math.prod(lsh[d] for d in lb)
    M, N, K = math.prod(lsh[d] for d in lf), math.prod(rsh[d] for d in rf), math.prod(lsh[d] for d in lc)
    cfg = dict(DEFAULT_TILE, **{k: v for k, v in config.items() if k in DEFAULT_TILE})
    consts = {"TILE_M": cfg["tile_m"], "TILE_N": cfg["tile_n"], "TILE_K": cfg["tile_k"],
              "GROUP_M": int(config.get("group_m", DEFAULT_GROUP_M)), "SPLIT_K": int(config.get("split_k", 1))}
    tiles_m, tiles_n = -(-M // consts["TILE_M"]), -(-N // consts["TILE_N"])
    parts = consts["SPLIT_K"]
    k_per = -(-K // (parts * consts["TILE_K"])) * consts["TILE_K"]      # K per split, whole K tiles
    batch = split("pid_b", [lsh[d] for d in lb])
    rows = split("rm", [lsh[d] for d in lf], "[:, None]", frozenset({"mm[:, None]"}))
    cols = split("rn", [rsh[d] for d in rf], "[None, :]", frozenset({"nm[None, :]"}))
    em = Emitter(group, target)
    em.lines += [
        "pid = tl.program_id(0)", "pid_z = tl.program_id(1)",
        "pid_b = pid_z // SPLIT_K", "pid_k = pid_z % SPLIT_K",
        "in_group = GROUP_M * " + str(tiles_n), "first_m = (pid // in_group) * GROUP_M",
        f"group_rows = tl.minimum({tiles_m} - first_m, GROUP_M)",
        "pid_m = first_m + (pid % in_group) % group_rows", "pid_n = (pid % in_group) // group_rows",
        "rm = pid_m * TILE_M + tl.arange(0, TILE_M)", "rn = pid_n * TILE_N + tl.arange(0, TILE_N)",
        f"mm = rm < {M}", f"nm = rn < {N}", "acc = tl.zeros((TILE_M, TILE_N), dtype=tl.float32)",
    ]
    loop = f"for k0 in range(0, {K}, TILE_K):" if parts == 1 else \
        f"for k0 in range(pid_k * {k_per}, tl.minimum({K}, (pid_k + 1) * {k_per}), TILE_K):"
    with em.block(loop):
        em.lines += ["kk = k0 + tl.arange(0, TILE_K)", f"km = kk < {K}"]
        ka = split("kk", [lsh[d] for d in lc], "[None, :]", frozenset({"km[None, :]"}))
        kb = split("kk", [rsh[d] for d in rc], "[:, None]", frozenset({"km[:, None]"}))
        x = em.operand(lhs, place(len(lsh), (lb, batch), (lf, rows), (lc, ka)), "(TILE_M, TILE_K)")
        y = em.operand(rhs, place(len(rsh), (rb, batch), (rc, kb), (rf, cols)), "(TILE_K, TILE_N)")
        em.lines.append(f"acc += tl.dot({x}, {y}{dot_precision(lhs.type.dtype)})")
    index = batch + rows + cols
    scratch = {}
    if parts > 1:
        tiles = B * tiles_m * tiles_n
        scratch = {"ws": ("float32", tiles * consts["TILE_M"] * consts["TILE_N"]), "arrived": ("int32", tiles)}
        em.lines += [
            f"tile = (pid_b * {tiles_m} + pid_m) * {tiles_n} + pid_n",
            "wo = tile * (TILE_M * TILE_N) + tl.arange(0, TILE_M)[:, None] * TILE_N + tl.arange(0, TILE_N)[None, :]",
            "tl.atomic_add(ws + wo, acc)",
            "arrivals = tl.atomic_add(arrived + tile, 1)",      # acq_rel: the adds above are visible
        ]
    with (em.block("if arrivals == SPLIT_K - 1:") if parts > 1 else _nothing()):
        if parts > 1:
            em.lines.append("acc = tl.load(ws + wo, cache_modifier='.cg')")
        _store_accumulator(em, dot, index)
    return kernel_source(group, "matmul", em, consts, (tiles_m * tiles_n, B * parts), scratch)


def _store_accumulator(em: Emitter, op, index: list[Ix]) -> None:
    """`op`'s result is the f32 accumulator tile (in its dtype); the group's epilogue and
    outputs are computed from it and stored."""
    res = op.results[0].type
    acc = "acc" if res.dtype.name == "f32" else f"acc.to({tl_type(res.dtype, op, em.target)})"
    em.bind(op.results[0], Tile(em.fresh(acc), res.dtype), index)
    for k, v in enumerate(em.group.outputs):
        if v.type.size != res.size:
            raise em.fail(em.group.ops[-1], f"an output of another size than the {op.name}'s result")
        em.store(f"out{k}", v, index, list(res.shape), tile="(TILE_M, TILE_N)")


def _conv(group: KernelGroup, config: dict, target: str | None) -> KernelSource:
    """A convolution as an implicit GEMM: rows are (batch, output position), columns output
    features, K runs over (kernel position, input feature); the input tile is loaded at the
    positions each output position's window covers, zero outside the input (padding)."""
    conv = group.anchor if group.anchor is not None and group.anchor.name == "convolution" else \
        next((op for op in group.ops if op.name == "convolution"), None)
    if conv is None:
        raise UnsupportedOpError(group.ops[0].name, group.ops[0].loc, target, "a conv group without convolution")
    a = conv.attrs
    x, w = conv.operands
    nsp = len(a["input_spatial_dimensions"])
    if a.get("feature_group_count", 1) != 1 or a.get("batch_group_count", 1) != 1 \
            or any(d != 1 for d in a.get("lhs_dilation") or ()) or any(a.get("window_reversal") or ()):
        raise UnsupportedOpError(conv.name, conv.loc, target,
                                 "grouped, transposed (input-dilated) or window-reversed convolutions")
    xs, ws, res = list(x.type.shape), list(w.type.shape), conv.results[0].type
    out = list(res.shape)
    strides = list(a.get("window_strides") or [1] * nsp)
    dilation = list(a.get("rhs_dilation") or [1] * nsp)
    padding = [p[0] for p in (a.get("padding") or [(0, 0)] * nsp)]
    osp, ksp, isp = list(a["output_spatial_dimensions"]), list(a["kernel_spatial_dimensions"]), \
        list(a["input_spatial_dimensions"])
    batch, features = out[a["output_batch_dimension"]], out[a["output_feature_dimension"]]
    window = [ws[d] for d in ksp] + [ws[a["kernel_input_feature_dimension"]]]
    M, N, K = batch * math.prod(out[d] for d in osp), features, math.prod(window)
    rows = split("rm", [batch] + [out[d] for d in osp], "[:, None]", frozenset({"mm[:, None]"}))
    cols = split("rn", [features], "[None, :]", frozenset({"nm[None, :]"}))
    index = place(len(out), ([a["output_batch_dimension"]], rows[:1]), (osp, rows[1:]),
                  ([a["output_feature_dimension"]], cols))
    em = Emitter(group, target)
    em.lines += [
        "pid_m = tl.program_id(0)", "pid_n = tl.program_id(1)",
        "rm = pid_m * TILE_M + tl.arange(0, TILE_M)", "rn = pid_n * TILE_N + tl.arange(0, TILE_N)",
        f"mm = rm < {M}", f"nm = rn < {N}", "acc = tl.zeros((TILE_M, TILE_N), dtype=tl.float32)",
    ]
    with em.block(f"for k0 in range(0, {K}, TILE_K):"):
        em.lines += ["kk = k0 + tl.arange(0, TILE_K)", f"km = kk < {K}"]
        ka = split("kk", window, "[None, :]", frozenset({"km[None, :]"}))
        kb = split("kk", window, "[:, None]", frozenset({"km[:, None]"}))
        at = []
        for i in range(nsp):
            pos = f"({rows[1 + i].expr}) * {strides[i]} + ({ka[i].expr}) * {dilation[i]} - {padding[i]}"
            inside = f"(({pos}) >= 0) & (({pos}) < {xs[isp[i]]})"
            at.append(Ix(pos, rows[1 + i].masks | ka[i].masks | {inside}))
        xi = place(len(xs), ([a["input_batch_dimension"]], rows[:1]), (isp, at),
                   ([a["input_feature_dimension"]], ka[-1:]))
        wi = place(len(ws), (ksp, kb[:-1]), ([a["kernel_input_feature_dimension"]], kb[-1:]),
                   ([a["kernel_output_feature_dimension"]], cols))
        xt = em.operand(x, xi, "(TILE_M, TILE_K)")
        wt = em.operand(w, wi, "(TILE_K, TILE_N)")
        em.lines.append(f"acc += tl.dot({xt}, {wt}{dot_precision(x.type.dtype)})")
    _store_accumulator(em, conv, index)
    cfg = dict(DEFAULT_TILE, **{k: v for k, v in config.items() if k in DEFAULT_TILE})
    consts = {"TILE_M": cfg["tile_m"], "TILE_N": cfg["tile_n"], "TILE_K": cfg["tile_k"]}
    return kernel_source(group, "conv", em, consts, (-(-M // consts["TILE_M"]), -(-N // consts["TILE_N"])))


def _row_reduce(em: Emitter, op, x: Tile, init: Tile, mask: str) -> str:
    """Triton expression of a single float reduction `op` of `x` (lanes outside `mask` left
    out), combined with `init`, NaN-propagating like the reference."""
    body = [o.name for r in op.regions for o in r.ops if o.name != "return"]
    out = op.results[0].type.dtype
    if len(op.operands) != 2 or len(body) != 1 or not out.is_float:
        raise em.fail(op, "only single float reductions (sum, product, max, min)")
    xs = f"{x.name}.to(tl.float32)" if x.dtype.name in NARROW else x.name
    forms = {
        "add": f"{init.name} + tl.sum(tl.where({mask}, {xs}, 0.0), axis=0)",
        "maximum": f"tl.maximum({init.name}, tl.reduce(tl.where({mask}, {xs}, -float('inf')), 0, _max_nan), "
                   "propagate_nan=tl.PropagateNan.ALL)",
        "minimum": f"tl.minimum({init.name}, tl.reduce(tl.where({mask}, {xs}, float('inf')), 0, _min_nan), "
                   "propagate_nan=tl.PropagateNan.ALL)",
        "multiply": f"{init.name} * tl.reduce(tl.where({mask}, {xs}, 1.0), 0, _mul)",
    }
    if body[0] not in forms:
        raise em.fail(op, f"a reduction by {body[0]}")
    expr = forms[body[0]]
    return f"({expr}).to({TL[out.name]})" if out.name in NARROW else expr


_COMBINE_EXPR = {
    "maximum": "tl.maximum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "minimum": "tl.minimum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "add": "({a} + {b})", "multiply": "({a} * {b})",
}
MAX_WINDOW = 256        # window elements unrolled in the source


def _window(em: Emitter, op, index: list[Ix]) -> Tile:
    """A reduce_window at `index`: the window unrolled (its offsets are static), positions
    outside the input taking the init value as the reference's padding does."""
    a = op.attrs
    x = op.operands[0]
    rank, size = len(x.type.shape), list(x.type.shape)
    dims = list(a["window_dimensions"])
    strides = list(a.get("window_strides") or [1] * rank)
    dilation = list(a.get("window_dilations") or [1] * rank)
    pad = [p[0] for p in (a.get("padding") or [(0, 0)] * rank)]
    body = [o.name for r in op.regions for o in r.ops if o.name != "return"]
    out = op.results[0].type.dtype
    if len(op.operands) != 2 or len(body) != 1 or body[0] not in _COMBINE_EXPR or not out.is_float:
        raise em.fail(op, "only single float windows reduced by max, min, sum or product")
    if any(d != 1 for d in a.get("base_dilations") or ()):
        raise em.fail(op, "a window over a dilated base")
    if math.prod(dims) > MAX_WINDOW:
        raise em.fail(op, f"a window of {math.prod(dims)} elements (at most {MAX_WINDOW} are unrolled)")
    init = em.render(op.operands[1], [])
    acc = em.fresh(f"tl.zeros([BLOCK], dtype=tl.float32) + {init.name}.to(tl.float32)", "win")
    for offset in np.ndindex(*dims):
        at, inside = [], []
        for d in range(rank):
            shift = offset[d] * dilation[d] - pad[d]
            pos = f"({index[d].expr}) * {strides[d]} + {shift}" if size[d] > 1 else "0"
            last = (op.results[0].type.shape[d] - 1) * strides[d] + shift
            if shift < 0 or last >= size[d]:          # some outputs' windows leave the input
                inside.append(f"(({pos}) >= 0) & (({pos}) < {size[d]})" if size[d] > 1 else f"({shift} == 0)")
            at.append(Ix(pos, index[d].masks))
        v = em.render(x, at)
        value = f"{v.name}.to(tl.float32)" if v.dtype.name in NARROW else v.name
        if inside:
            value = f"tl.where({' & '.join(inside)}, {value}, {init.name}.to(tl.float32))"
        em.lines.append(f"{acc} = " + _COMBINE_EXPR[body[0]].format(a=acc, b=value))
    return Tile(acc if out.name == "f32" else em.fresh(f"{acc}.to({TL[out.name]})"), out)


def _reduction(group: KernelGroup, config: dict, target: str | None) -> KernelSource:
    reduces = [op for op in group.ops if op.name == "reduce"]
    if not reduces and any(op.name == "reduce_window" for op in group.ops):
        return _flat(group, config, target, "reduction")
    if not reduces:
        raise UnsupportedOpError(group.ops[0].name, group.ops[0].loc, target, "a reduction group without reduce")
    full = tuple(reduces[0].operands[0].type.shape)
    rows, C = math.prod(full[:-1]), full[-1]
    row = split("pid", list(full[:-1]))
    cols = Ix("cols", frozenset({"cmask"}))
    em = Emitter(group, target)
    em.lines += ["pid = tl.program_id(0)", "cols = tl.arange(0, BLOCK_C)", f"cmask = cols < {C}"]
    for op in reduces:
        if tuple(op.operands[0].type.shape) != full or tuple(op.attrs["dimensions"]) != (len(full) - 1,):
            raise em.fail(op, f"a reduction other than over the last axis of {list(full)}")
        x = em.render(op.operands[0], row + [cols])
        init = em.render(op.operands[1], [])
        em.bind(op.results[0], Tile(em.fresh(_row_reduce(em, op, x, init, "cmask")), op.results[0].type.dtype), row)
    for k, v in enumerate(group.outputs):
        shape = tuple(v.type.shape)
        if shape == full:
            em.store(f"out{k}", v, row + [cols], full, offset=f"pid * {C} + cols")
        elif shape in (full[:-1], full[:-1] + (1,)):
            index = row + ([ZERO] if len(shape) == len(full) else [])
            t = em.render(v, index)
            data = t.name if t.dtype == v.type.dtype else f"{t.name}.to({TL[v.type.dtype.name]})"
            em.lines.append(f"tl.store(out{k} + pid + tl.arange(0, 1), tl.broadcast_to({data}, [1]))")
        else:
            raise UnsupportedOpError(group.ops[-1].name, group.ops[-1].loc, target,
                                     f"an output of shape {list(shape)} from a row kernel over {list(full)}")
    block = 1 << max(0, (C - 1).bit_length())
    return kernel_source(group, "reduction", em, {"BLOCK_C": block}, (rows,))


def generate(group: KernelGroup, config: dict | None = None, target: str | None = None) -> KernelSource:
    """Triton source for `group` with `config` (block or tile sizes; defaults otherwise)."""
    config = dict(config or {})
    flow = next((op for op in group.ops if op.name in ("while", "if", "case")), None)
    if flow is not None:
        raise UnsupportedOpError(flow.name, flow.loc, target, f"control flow ({flow.name}) is not one Triton kernel: "
                                 "while loops compile as their regions' kernels (loops.py), branches not yet")
    if group.kind in ("elementwise", "opaque"):
        return _flat(group, config, target, "elementwise")    # opaque: data movement (concatenate, ...)
    if group.kind == "matmul":
        return _matmul(group, config, target)
    if group.kind == "conv":
        return _conv(group, config, target)
    if group.kind == "reduction":
        return _reduction(group, config, target)
    if group.kind == "attention":
        from .attention import generate_attention
        return generate_attention(group, config, target)
    op = group.anchor or group.ops[0]
    raise UnsupportedOpError(op.name, op.loc, target, f"{group.kind} kernels are not generated for Triton yet")


__all__ = ["KernelSource", "generate", "NARROW"]
