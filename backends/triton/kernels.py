"""Kernel groups as Triton kernel source: `elementwise` groups (one flat program per block
of output elements), `matmul` groups (a tiled GEMM with the group's epilogue applied to
the accumulator tile before it is stored) and `reduction` groups over the last axis
(softmax, layernorm, rmsnorm, log-softmax, plain sums and maxima: one program per row, the
row held in registers, every reduction of the group done in that one pass over memory).

    ks = generate(group, config, target="h800")    # KernelSource: source text, signature, grid
    ks.source                                      # a module defining one undecorated function

Shapes are static, so sizes and strides are literals in the source; the kernel's
parameters are the group's inputs then outputs (pointers), then the block sizes
(constexpr). A group this module cannot express raises `UnsupportedOpError` naming the op,
its source location and the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xchip.errors import UnsupportedOpError
from xchip.ir.kernel_graph import KernelGroup

from .expr import NARROW, TL, Tile, View, elementwise, tl_type

DEFAULT_BLOCK = 1024
DEFAULT_TILE = {"tile_m": 64, "tile_n": 64, "tile_k": 32}
_SHAPE_OPS = ("broadcast_in_dim", "transpose", "reshape")


@dataclass
class KernelSource:
    name: str
    kind: str
    source: str
    params: list[str]                       # pointer parameters: inputs then outputs
    constexprs: dict[str, int]
    grid: tuple[int, ...]
    signature: dict[str, str] = field(default_factory=dict)   # parameter -> Triton type ("*fp32", "constexpr")


def _strides(shape) -> list[int]:
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= d
    return out[::-1]


def _ptr_type(t) -> str:
    names = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "f64": "fp64", "i32": "i32", "i64": "i64",
             "i8": "i8", "i16": "i16", "u8": "u8", "u16": "u16", "u32": "u32", "u64": "u64", "bool": "i1"}
    return "*" + names[t.dtype.name]


class _Emitter:
    """Lines of one kernel body, and the values computed so far."""

    def __init__(self, group: KernelGroup, target: str | None, index: list[str], shape: tuple[int, ...]):
        self.group, self.target = group, target
        self.lines: list[str] = []
        self.values: dict[int, Tile | View] = {}
        self.index, self.shape = index, shape      # per output dim: an index expression
        self.count = 0
        self.params = {id(v): f"in{k}" for k, v in enumerate(group.inputs)}
        for v in group.inputs:
            # a view's dims map the input's dims to the dims of the value it is now (at first,
            # the input itself); broadcasts and transposes rewrite the map
            shape = tuple(v.type.shape)
            self.values[id(v)] = View(self.params[id(v)], shape,
                                      tuple(d if shape[d] != 1 else None for d in range(len(shape))), v.type.dtype)

    def fresh(self, expr: str) -> str:
        name = f"v{self.count}"
        self.count += 1
        self.lines.append(f"{name} = {expr}")
        return name

    def fail(self, op, detail: str) -> UnsupportedOpError:
        return UnsupportedOpError(op.name, op.loc, self.target, detail)

    def tile(self, value, mask: str) -> Tile:
        """The value as a Tile, loading a View."""
        got = self.values[id(value)]
        if isinstance(got, Tile):
            return got
        index = self.index_of(value)
        if index is None:
            raise UnsupportedOpError("load", None, self.target,
                                     f"an input of shape {list(value.type.shape)} in a kernel over {list(self.shape)}")
        strides = _strides(got.shape)
        terms = [f"({index[d]}) * {s}" for d, s in zip(got.dims, strides) if d is not None]
        offset = " + ".join(terms) or "0"
        mask = self.mask_of(value, mask)
        load = f"tl.load({got.pointer} + {offset}" + (f", mask={mask})" if mask else ")")
        return Tile(self.fresh(load), got.dtype)

    def stored(self, value, mask: str) -> str:
        """The expression an output is stored as: its tile, in the output's dtype."""
        t = self.tile(value, mask)
        return t.name if t.dtype == value.type.dtype else f"{t.name}.to({TL[value.type.dtype.name]})"

    # what the kernel's shape allows (row kernels override these)
    def index_of(self, value) -> list[str] | None:
        """Index expressions for the dims of a value loaded in this kernel (None: cannot be)."""
        return self.index if tuple(value.type.shape) == tuple(self.shape) or value.type.size == 1 else None

    def mask_of(self, value, mask: str) -> str | None:
        return mask

    def operand_ok(self, v) -> bool:
        return tuple(v.type.shape) == tuple(self.shape) or v.type.size == 1

    def tile_shape_op(self, op, src: Tile) -> Tile:
        res = op.results[0]
        if op.operands[0].type.size == 1 and op.name in ("broadcast_in_dim", "reshape"):
            return src                   # one value: Triton broadcasts it
        if op.name == "reshape" and res.type.size == math.prod(self.shape):
            return src
        raise self.fail(op, f"{op.name} of a computed value (only of kernel inputs)")

    def run_ops(self, ops, mask: str) -> None:
        for op in ops:
            if op.name == "constant":
                self._constant(op)
            elif op.name in _SHAPE_OPS:
                self._shape(op, mask)
            else:
                args = [self.tile(v, mask) for v in op.operands]
                out = op.results[0].type.dtype
                for v in op.operands:
                    if not self.operand_ok(v):
                        raise self.fail(op, f"operand of shape {list(v.type.shape)} in a kernel over {list(self.shape)}")
                if op.name == "reduce":
                    self.values[id(op.results[0])] = self.reduce(op, args)
                    continue
                expr = elementwise(op, [a.name for a in args], [a.dtype for a in args], out, self.target)
                self.values[id(op.results[0])] = Tile(self.fresh(expr), out)

    def _constant(self, op) -> None:
        import numpy as np
        value = np.asarray(op.attrs["value"])
        if value.size != 1 and not (value == value.flat[0]).all():
            raise self.fail(op, "a non-splat constant tensor")
        t = op.results[0].type
        scalar = value.flat[0].item() if value.size else 0
        if t.dtype.name == "bool":
            expr = f"tl.full([1], {int(bool(scalar))}, tl.int1)"
        elif t.dtype.is_float:
            expr = f"tl.full([1], {_float_literal(float(scalar))}, {tl_type(t.dtype, op, self.target)})"
        else:
            expr = f"tl.full([1], {int(scalar)}, {tl_type(t.dtype, op, self.target)})"
        self.values[id(op.results[0])] = Tile(self.fresh(expr), t.dtype)

    def reduce(self, op, args: list[Tile]) -> Tile:
        raise self.fail(op, "a reduction outside a row-reduction kernel")

    def _shape(self, op, mask: str) -> None:
        src = self.values[id(op.operands[0])]
        res = op.results[0]
        if isinstance(src, Tile):
            self.values[id(res)] = self.tile_shape_op(op, src)
            return
        if op.name == "broadcast_in_dim":
            dims = op.attrs["broadcast_dimensions"]
            new = tuple(None if (d is None or src.shape[i] == 1) else dims[d] for i, d in enumerate(src.dims))
        elif op.name == "transpose":
            perm = list(op.attrs["permutation"])
            new = tuple(None if d is None else perm.index(d) for d in src.dims)
        elif src.dims == tuple(range(len(src.shape))) and res.type.size == math.prod(src.shape) \
                and tuple(res.type.shape) == tuple(self.shape):
            # reshape of a whole contiguous input to the kernel's shape: the flat order is kept
            new_view = View(src.pointer, tuple(res.type.shape), tuple(range(len(res.type.shape))), src.dtype)
            self.values[id(res)] = new_view
            return
        else:
            raise self.fail(op, "a reshape that changes how the input is indexed")
        self.values[id(res)] = View(src.pointer, src.shape, new, src.dtype)


def _float_literal(x: float) -> str:
    if math.isnan(x):
        return "float('nan')"
    if math.isinf(x):
        return "float('inf')" if x > 0 else "-float('inf')"
    return repr(x)


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


def _header(name: str, params: list[str], constexprs: list[str]) -> list[str]:
    args = ", ".join(params + [f"{c}: tl.constexpr" for c in constexprs])
    return ["import triton", "import triton.language as tl", _COMBINE, "", f"def {name}({args}):"]


def _elementwise(group: KernelGroup, config: dict, target: str | None) -> KernelSource:
    out_shape = tuple(group.outputs[0].type.shape)
    n = math.prod(out_shape)
    for v in group.outputs:
        if v.type.size != n:
            raise UnsupportedOpError(group.ops[-1].name, group.ops[-1].loc, target,
                                     "outputs of different sizes in one elementwise kernel")
    strides = _strides(out_shape)
    index = [f"(offs // {s}) % {d}" if len(out_shape) > 1 else "offs" for s, d in zip(strides, out_shape)]
    em = _Emitter(group, target, index, out_shape)
    em.lines += ["pid = tl.program_id(0)", "offs = pid * BLOCK + tl.arange(0, BLOCK)", f"mask = offs < {n}"]
    em.run_ops(group.ops, "mask")
    outs = [f"out{k}" for k in range(len(group.outputs))]
    for name, v in zip(outs, group.outputs):
        value = em.stored(v, "mask")
        em.lines.append(f"tl.store({name} + offs, tl.broadcast_to({value}, [BLOCK]), mask=mask)")
    block = int(config.get("block", DEFAULT_BLOCK))
    params = [f"in{k}" for k in range(len(group.inputs))] + outs
    source = "\n".join(_header(group.name, params, ["BLOCK"]) + ["    " + x for x in em.lines]) + "\n"
    return KernelSource(group.name, "elementwise", source, params, {"BLOCK": block}, (max(1, -(-n // block)),),
                        _signature(group, params, ["BLOCK"]))


def _signature(group: KernelGroup, params: list[str], constexprs: list[str]) -> dict[str, str]:
    values = list(group.inputs) + list(group.outputs)
    sig = {p: _ptr_type(v.type) for p, v in zip(params, values)}
    sig.update({c: "constexpr" for c in constexprs})
    return sig


def _linear(index: str, dims: list[int], shape, strides) -> str:
    """The memory offset of `index`, a row-major index over `dims` of a value (sizes `shape`,
    per-dim memory `strides`), as a sum of per-dim terms."""
    terms, inner = [], 1
    for d in reversed(dims):
        if strides[d] and shape[d] > 1:
            part = f"({index} // {inner})" if inner > 1 else f"({index})"
            part = f"({part} % {shape[d]})" if d != dims[0] else part
            terms.append(f"{part} * {strides[d]}")
        inner *= shape[d]
    return " + ".join(terms) or "0"


def _split(index: str, sizes: list[int]) -> list[str]:
    """Per-dim indices of a row-major index over dims of `sizes`."""
    out, inner = [], math.prod(sizes)
    for k, n in enumerate(sizes):
        inner //= n
        part = f"({index} // {inner})" if inner > 1 else f"({index})"
        out.append(part if k == 0 else f"({part} % {n})")
    return out


def _operand_strides(em: _Emitter, value) -> tuple[str, list[int]]:
    """(pointer, memory stride per dim) of a matmul operand: a group input, or a broadcast /
    transpose / reshape of one (folded into the strides: no copy)."""
    got = em.values[id(value)]
    if not isinstance(got, View):
        raise UnsupportedOpError("dot_general", None, em.target,
                                 "an operand computed inside the kernel (an operand prologue)")
    mem = _strides(got.shape)
    out = [0] * len(value.type.shape)
    for i, d in enumerate(got.dims):
        if d is not None:
            out[d] = mem[i]
    return got.pointer, out


def _matmul(group: KernelGroup, config: dict, target: str | None) -> KernelSource:
    dot = group.anchor if group.anchor is not None and group.anchor.name == "dot_general" else \
        next((op for op in group.ops if op.name == "dot_general"), None)
    if dot is None:
        raise UnsupportedOpError(group.ops[0].name, group.ops[0].loc, target, "a matmul group without dot_general")
    lhs, rhs = dot.operands
    a = dot.attrs
    lb, rb = list(a["lhs_batching_dimensions"]), list(a["rhs_batching_dimensions"])
    lc, rc = list(a["lhs_contracting_dimensions"]), list(a["rhs_contracting_dimensions"])
    lf = [d for d in range(len(lhs.type.shape)) if d not in lb + lc]
    rf = [d for d in range(len(rhs.type.shape)) if d not in rb + rc]
    lsh, rsh = list(lhs.type.shape), list(rhs.type.shape)
    B = math.prod(lsh[d] for d in lb)
    M, N, K = math.prod(lsh[d] for d in lf), math.prod(rsh[d] for d in rf), math.prod(lsh[d] for d in lc)
    res = dot.results[0].type
    # the result's dims: batch..., lhs free..., rhs free...; indices from pid_b, rm, rn
    index = (_split("pid_b", [lsh[d] for d in lb]) if lb else []) + \
        [f"{x}[:, None]" for x in _split("rm", [lsh[d] for d in lf])] + \
        [f"{x}[None, :]" for x in _split("rn", [rsh[d] for d in rf])]
    em = _Emitter(group, target, index, tuple(res.shape))
    em.run_ops(group.ops[:group.ops.index(dot)], "mask")        # shape ops on the operands only
    pa, ls = _operand_strides(em, lhs)
    pb, rs = _operand_strides(em, rhs)
    batch_a = _linear("pid_b", lb, lsh, ls) if lb else "0"
    batch_b = _linear("pid_b", rb, rsh, rs) if rb else "0"
    precision = ', input_precision="ieee"' if lhs.type.dtype.name in ("f32", "f64") else ""
    em.lines += [
        "pid_m = tl.program_id(0)", "pid_n = tl.program_id(1)", "pid_b = tl.program_id(2)",
        "rm = pid_m * TILE_M + tl.arange(0, TILE_M)", "rn = pid_n * TILE_N + tl.arange(0, TILE_N)",
        "rk = tl.arange(0, TILE_K)", "acc = tl.zeros((TILE_M, TILE_N), dtype=tl.float32)",
        f"a_row = {batch_a} + {_linear('rm', lf, lsh, ls)}",
        f"b_col = {batch_b} + {_linear('rn', rf, rsh, rs)}",
        f"for k0 in range(0, {K}, TILE_K):",
        "    kk = k0 + rk",
        f"    x = tl.load({pa} + a_row[:, None] + ({_linear('kk', lc, lsh, ls)})[None, :], "
        f"mask=(rm[:, None] < {M}) & (kk[None, :] < {K}), other=0.0)",
        f"    y = tl.load({pb} + ({_linear('kk', rc, rsh, rs)})[:, None] + b_col[None, :], "
        f"mask=(kk[:, None] < {K}) & (rn[None, :] < {N}), other=0.0)",
        f"    acc += tl.dot(x, y{precision})",
        f"mask = (rm[:, None] < {M}) & (rn[None, :] < {N})",
    ]
    acc = "acc" if res.dtype.name == "f32" else f"acc.to({tl_type(res.dtype, dot, target)})"
    em.values[id(dot.results[0])] = Tile(em.fresh(acc), res.dtype)
    em.run_ops(group.ops[group.ops.index(dot) + 1:], "mask")
    outs = [f"out{k}" for k in range(len(group.outputs))]
    flat = f"pid_b * {M * N} + rm[:, None] * {N} + rn[None, :]"
    for name, v in zip(outs, group.outputs):
        if v.type.size != res.size:
            raise UnsupportedOpError(group.ops[-1].name, group.ops[-1].loc, target,
                                     "a matmul output of another size than the product")
        value = em.stored(v, "mask")
        em.lines.append(f"tl.store({name} + {flat}, {value}, mask=mask)")
    cfg = dict(DEFAULT_TILE, **{k: v for k, v in config.items() if k in DEFAULT_TILE})
    consts = {"TILE_M": cfg["tile_m"], "TILE_N": cfg["tile_n"], "TILE_K": cfg["tile_k"]}
    params = [f"in{k}" for k in range(len(group.inputs))] + outs
    source = "\n".join(_header(group.name, params, list(consts)) + ["    " + x for x in em.lines]) + "\n"
    grid = (-(-M // consts["TILE_M"]), -(-N // consts["TILE_N"]), B)
    return KernelSource(group.name, "matmul", source, params, consts, grid, _signature(group, params, list(consts)))


class _RowEmitter(_Emitter):
    """A row-reduction kernel: one program per row of the reduced operand [rows..., C],
    the row in registers (BLOCK_C >= C lanes). Values are rows ([rows..., C]) or one scalar
    per row ([rows...] or [rows..., 1], what reductions and their broadcasts produce)."""

    def __init__(self, group, target, full: tuple[int, ...]):
        strides = _strides(full[:-1])
        index = [f"((pid // {s}) % {d})" for s, d in zip(strides, full[:-1])] + ["cols"]
        super().__init__(group, target, index, full)
        self.full = full

    def is_row(self, shape) -> bool:
        return tuple(shape) == self.full

    def is_scalar(self, shape) -> bool:
        shape = tuple(shape)
        return shape in (self.full[:-1], self.full[:-1] + (1,)) or math.prod(shape) == 1

    def index_of(self, value):
        shape = tuple(value.type.shape)
        if self.is_row(shape):
            return self.index
        if math.prod(shape) == 1:
            return ["0"] * len(shape)
        if self.is_scalar(shape):
            return self.index[:-1] + (["0"] if len(shape) == len(self.full) else [])
        return None

    def mask_of(self, value, mask):
        return "cmask" if self.is_row(value.type.shape) else None

    def operand_ok(self, v) -> bool:
        return self.is_row(v.type.shape) or self.is_scalar(v.type.shape)

    def tile_shape_op(self, op, src):
        arg, res = op.operands[0].type.shape, op.results[0].type.shape
        lead = len(self.full) - 1
        if self.is_scalar(arg) and (self.is_scalar(res) or self.is_row(res)):
            dims = list(op.attrs.get("broadcast_dimensions", range(len(arg))))
            if op.name == "reshape" or math.prod(arg) == 1 or dims[:lead] == list(range(lead)):
                return src
        if self.is_row(arg) and self.is_row(res):
            return src
        raise self.fail(op, f"{op.name} from {list(arg)} to {list(res)} in a row kernel over {list(self.full)}")

    def reduce(self, op, args):
        x, init = args[0], args[1]
        body = [o.name for r in op.regions for o in r.ops if o.name != "return"]
        out = op.results[0].type.dtype
        if len(op.operands) != 2 or tuple(op.attrs["dimensions"]) != (len(self.full) - 1,) \
                or not self.is_row(op.operands[0].type.shape) or len(body) != 1 or not out.is_float:
            raise self.fail(op, "only single float reductions over the last axis of the row")
        xs = f"{x.name}.to(tl.float32)" if x.dtype.name in NARROW else x.name
        forms = {
            "add": f"{init.name} + tl.sum(tl.where(cmask, {xs}, 0.0), axis=0)",
            "maximum": f"tl.maximum({init.name}, tl.reduce(tl.where(cmask, {xs}, -float('inf')), 0, _max_nan), "
                       "propagate_nan=tl.PropagateNan.ALL)",
            "minimum": f"tl.minimum({init.name}, tl.reduce(tl.where(cmask, {xs}, float('inf')), 0, _min_nan), "
                       "propagate_nan=tl.PropagateNan.ALL)",
            "multiply": f"{init.name} * tl.reduce(tl.where(cmask, {xs}, 1.0), 0, _mul)",
        }
        if body[0] not in forms:
            raise self.fail(op, f"a reduction by {body[0]}")
        expr = forms[body[0]]
        if out.name in NARROW:
            expr = f"({expr}).to({TL[out.name]})"
        return Tile(self.fresh(expr), out)


def _reduction(group: KernelGroup, config: dict, target: str | None) -> KernelSource:
    first = next((op for op in group.ops if op.name == "reduce"), None)
    if first is None:
        raise UnsupportedOpError(group.ops[0].name, group.ops[0].loc, target, "a reduction group without reduce")
    full = tuple(first.operands[0].type.shape)
    rows, C = math.prod(full[:-1]), full[-1]
    em = _RowEmitter(group, target, full)
    em.lines += ["pid = tl.program_id(0)", "cols = tl.arange(0, BLOCK_C)", f"cmask = cols < {C}"]
    em.run_ops(group.ops, "cmask")
    outs = [f"out{k}" for k in range(len(group.outputs))]
    for name, v in zip(outs, group.outputs):
        value = em.stored(v, "cmask")
        if em.is_row(v.type.shape):
            em.lines.append(f"tl.store({name} + pid * {C} + cols, tl.broadcast_to({value}, [BLOCK_C]), mask=cmask)")
        elif em.is_scalar(v.type.shape):
            em.lines.append(f"tl.store({name} + pid + tl.arange(0, 1), tl.broadcast_to({value}, [1]))")
        else:
            raise UnsupportedOpError(group.ops[-1].name, group.ops[-1].loc, target,
                                     f"an output of shape {list(v.type.shape)} from a row kernel over {list(full)}")
    block = 1 << max(0, (C - 1).bit_length())
    params = [f"in{k}" for k in range(len(group.inputs))] + outs
    source = "\n".join(_header(group.name, params, ["BLOCK_C"]) + ["    " + x for x in em.lines]) + "\n"
    return KernelSource(group.name, "reduction", source, params, {"BLOCK_C": block}, (rows,),
                        _signature(group, params, ["BLOCK_C"]))


def generate(group: KernelGroup, config: dict | None = None, target: str | None = None) -> KernelSource:
    """Triton source for `group` with `config` (block or tile sizes; defaults otherwise)."""
    config = dict(config or {})
    if group.kind == "elementwise":
        return _elementwise(group, config, target)
    if group.kind == "matmul":
        return _matmul(group, config, target)
    if group.kind == "reduction":
        return _reduction(group, config, target)
    op = group.anchor or group.ops[0]
    raise UnsupportedOpError(op.name, op.loc, target, f"{group.kind} kernels are not generated for Triton yet")


__all__ = ["KernelSource", "generate", "NARROW"]
