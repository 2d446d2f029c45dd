"""Kernel groups as Triton kernel source: `elementwise` groups (one flat program per block
of output elements) and `matmul` groups (a tiled GEMM with the group's epilogue applied to
the accumulator tile before it is stored).

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
        if tuple(value.type.shape) != tuple(self.shape) and value.type.size != 1:
            raise UnsupportedOpError("load", None, self.target,
                                     f"an input of shape {list(value.type.shape)} in a kernel over {list(self.shape)}")
        strides = _strides(got.shape)
        terms = [f"({self.index[d]}) * {s}" for d, s in zip(got.dims, strides) if d is not None]
        offset = " + ".join(terms) or "0"
        return Tile(self.fresh(f"tl.load({got.pointer} + {offset}, mask={mask})"), got.dtype)

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
                    if tuple(v.type.shape) != tuple(self.shape) and v.type.size != 1:
                        raise self.fail(op, f"operand of shape {list(v.type.shape)} in a kernel over {list(self.shape)}")
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
            expr = f"tl.full([1], {float(scalar)!r}, {tl_type(t.dtype, op, self.target)})"
        else:
            expr = f"tl.full([1], {int(scalar)}, {tl_type(t.dtype, op, self.target)})"
        self.values[id(op.results[0])] = Tile(self.fresh(expr.replace("inf", "float('inf')")), t.dtype)

    def _shape(self, op, mask: str) -> None:
        src = self.values[id(op.operands[0])]
        res = op.results[0]
        if op.name == "reshape" and res.type.size == op.operands[0].type.size and isinstance(src, Tile):
            if tuple(res.type.shape) != tuple(self.shape) and res.type.size != math.prod(self.shape):
                raise self.fail(op, "a reshape inside the kernel")
            self.values[id(res)] = src
            return
        if not isinstance(src, View):
            raise self.fail(op, f"{op.name} of a computed value (only of kernel inputs)")
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


def _header(name: str, params: list[str], constexprs: list[str]) -> list[str]:
    args = ", ".join(params + [f"{c}: tl.constexpr" for c in constexprs])
    return ["import triton.language as tl", "", "", f"def {name}({args}):"]


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
        t = em.tile(v, "mask")
        value = t.name if t.dtype == v.type.dtype else f"{t.name}.to({TL[v.type.dtype.name]})"
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


def _matmul(group: KernelGroup, config: dict, target: str | None) -> KernelSource:
    dot = group.anchor if group.anchor is not None and group.anchor.name == "dot_general" else \
        next((op for op in group.ops if op.name == "dot_general"), None)
    if dot is None:
        raise UnsupportedOpError(group.ops[0].name, group.ops[0].loc, target, "a matmul group without dot_general")
    before = group.ops[:group.ops.index(dot)]
    if before:
        raise UnsupportedOpError(before[0].name, before[0].loc, target,
                                 "ops before the matmul (operand prologues) are not generated yet")
    lhs, rhs = dot.operands
    a = dot.attrs
    lb, rb = list(a["lhs_batching_dimensions"]), list(a["rhs_batching_dimensions"])
    lc, rc = list(a["lhs_contracting_dimensions"]), list(a["rhs_contracting_dimensions"])
    lf = [d for d in range(len(lhs.type.shape)) if d not in lb + lc]
    rf = [d for d in range(len(rhs.type.shape)) if d not in rb + rc]
    if len(lb) > 1 or len(lc) != 1 or len(rc) != 1 or len(lf) != 1 or len(rf) != 1:
        raise UnsupportedOpError("dot_general", dot.loc, target,
                                 "only [batch] x M x K by [batch] x K x N products (one dim each)")
    if lhs not in group.inputs or rhs not in group.inputs:
        raise UnsupportedOpError("dot_general", dot.loc, target, "operands computed inside the kernel")
    ls, rs = _strides(lhs.type.shape), _strides(rhs.type.shape)
    M, N, K = lhs.type.shape[lf[0]], rhs.type.shape[rf[0]], lhs.type.shape[lc[0]]
    B = lhs.type.shape[lb[0]] if lb else 1
    res = dot.results[0].type
    index = (["pid_b"] if lb else []) + ["rm[:, None]", "rn[None, :]"]
    em = _Emitter(group, target, index, tuple(res.shape))
    pa, pb = em.params[id(lhs)], em.params[id(rhs)]
    batch_a = f"pid_b * {ls[lb[0]]} + " if lb else ""
    batch_b = f"pid_b * {rs[rb[0]]} + " if lb else ""
    precision = ', input_precision="ieee"' if lhs.type.dtype.name in ("f32", "f64") else ""
    em.lines += [
        "pid_m = tl.program_id(0)", "pid_n = tl.program_id(1)", "pid_b = tl.program_id(2)",
        "rm = pid_m * TILE_M + tl.arange(0, TILE_M)", "rn = pid_n * TILE_N + tl.arange(0, TILE_N)",
        "rk = tl.arange(0, TILE_K)", "acc = tl.zeros((TILE_M, TILE_N), dtype=tl.float32)",
        f"for k0 in range(0, {K}, TILE_K):",
        "    kk = k0 + rk",
        f"    x = tl.load({pa} + {batch_a}rm[:, None] * {ls[lf[0]]} + kk[None, :] * {ls[lc[0]]}, "
        f"mask=(rm[:, None] < {M}) & (kk[None, :] < {K}), other=0.0)",
        f"    y = tl.load({pb} + {batch_b}kk[:, None] * {rs[rc[0]]} + rn[None, :] * {rs[rf[0]]}, "
        f"mask=(kk[:, None] < {K}) & (rn[None, :] < {N}), other=0.0)",
        f"    acc += tl.dot(x, y{precision})",
        f"mask = (rm[:, None] < {M}) & (rn[None, :] < {N})",
    ]
    acc = "acc" if res.dtype.name == "f32" else f"acc.to({tl_type(res.dtype, dot, target)})"
    em.values[id(dot.results[0])] = Tile(em.fresh(acc), res.dtype)
    em.run_ops(group.ops[group.ops.index(dot) + 1:], "mask")
    outs = [f"out{k}" for k in range(len(group.outputs))]
    flat = ("pid_b * " + str(M * N) + " + " if lb else "") + f"rm[:, None] * {N} + rn[None, :]"
    for name, v in zip(outs, group.outputs):
        if v.type.size != res.size:
            raise UnsupportedOpError(group.ops[-1].name, group.ops[-1].loc, target,
                                     "a matmul output of another size than the product")
        t = em.tile(v, "mask")
        value = t.name if t.dtype == v.type.dtype else f"{t.name}.to({TL[v.type.dtype.name]})"
        em.lines.append(f"tl.store({name} + {flat}, {value}, mask=mask)")
    cfg = dict(DEFAULT_TILE, **{k: v for k, v in config.items() if k in DEFAULT_TILE})
    consts = {"TILE_M": cfg["tile_m"], "TILE_N": cfg["tile_n"], "TILE_K": cfg["tile_k"]}
    params = [f"in{k}" for k in range(len(group.inputs))] + outs
    source = "\n".join(_header(group.name, params, list(consts)) + ["    " + x for x in em.lines]) + "\n"
    grid = (-(-M // consts["TILE_M"]), -(-N // consts["TILE_N"]), B)
    return KernelSource(group.name, "matmul", source, params, consts, grid, _signature(group, params, list(consts)))


def generate(group: KernelGroup, config: dict | None = None, target: str | None = None) -> KernelSource:
    """Triton source for `group` with `config` (block or tile sizes; defaults otherwise)."""
    config = dict(config or {})
    if group.kind == "elementwise":
        return _elementwise(group, config, target)
    if group.kind == "matmul":
        return _matmul(group, config, target)
    op = group.anchor or group.ops[0]
    raise UnsupportedOpError(op.name, op.loc, target, f"{group.kind} kernels are not generated for Triton yet")


__all__ = ["KernelSource", "generate", "NARROW"]
