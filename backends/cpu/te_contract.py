"""dot_general, convolution, reduce and reduce_window as TE computes.

dot_general is ONE compute (named "matmul" in matmul groups) whose spatial axes are the
result's dimensions (batch, lhs free, rhs free, as StableHLO orders them) and whose reduce
axes are the contracting dimensions. It accumulates in f32 for f16/bf16/f32 (f64 when an
operand or the result is f64, the result type for integers); a bf16/f16 result is rounded
by a separate elementwise compute after it.

Convolution is lowered directly, as one compute named "conv" in the output's layout: reduce
axes are the input features of one group and the kernel's spatial positions; padding, lhs
(base) dilation, rhs dilation, window reversal, strides, feature_group_count and
batch_group_count are index arithmetic with an `if_then_else` for positions in the padding
or between dilated elements. Accumulation and rounding as for dot_general. (No im2col: for
the CNN shapes xchip sees, the direct form with the output-feature loop vectorized is the
simpler kernel, and it keeps the output layout the epilogue expects.)

reduce translates its body region with te_ops into a TE `comm_reducer`, so any body of
elementwise ops lowers (sum, product, max, min, and, or, xor, argmax-style pairs). The
identity given to TE is the init value, which makes TE's left fold exactly the reference's
sequential definition. A body that is one known associative op with its true identity as
init, reducing the trailing dimensions over at least 2*P elements, is split in two
computes: `<name>_partial` folds P interleaved lanes (P = 32 for 32-bit compute types, 16
for 64-bit) -- a spatial axis the schedules vectorize -- and `<name>` folds the lanes and the
tail. Float sums are then reassociated (as XLA does, and as the reference's pairwise sums
allow within the test tolerances); max/min/and/or results are exact.

reduce_window is one compute over the output with reduce axes over the window; padding and
base dilation read the init value, as the reference pads with it.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import te
from tvm import tirx as tir

from xchip.ir import dtypes
from xchip.ir.dtypes import DType

from . import te_math as M
from . import te_ops
from .te_base import TV, compute_dtype, fail, storage_dtype

_c = lambda v: tir.const(v, "int32")  # noqa: E731


def acc_dtype(op, lhs: DType, rhs: DType, result: DType) -> str:
    for t in (lhs, rhs, result):
        if t.is_complex or t.name.startswith("f8"):
            raise fail(op, f"dtype {t.name} is not lowered on the CPU")
    if result.kind == "bool" or lhs.kind == "bool" or rhs.kind == "bool":
        raise fail(op, "bool contractions are not lowered")
    if "f64" in (lhs.name, rhs.name, result.name):
        return "float64"
    if result.is_float:
        return "float32"
    if lhs.is_float or rhs.is_float:
        raise fail(op, f"float operands with integer result {result.name}")
    return storage_dtype(result)


def _enter(x, src: DType, acc: str):
    if src.is_float or acc.startswith("float"):
        return x.astype(acc) if M.dtype_of(x) != acc else x
    return x.astype(acc) if M.dtype_of(x) != acc else x


def _leave(lw, tensor, acc: str, result: DType, name: str, op) -> TV:
    """The dot/conv accumulator as the result value: itself, or rounded by a compute after."""
    if compute_dtype(result) == acc and storage_dtype(result) == acc:
        return TV(tuple(int(s) for s in tensor.shape), result, tensor)
    src = dtypes.get(acc)   # the long numpy-style names are aliases of the IR's
    acc_tv = TV(tuple(int(s) for s in tensor.shape), src, tensor)
    return lw.elementwise_result(acc_tv.shape, result, lambda idx, ctx: te_ops.convert(acc_tv.at(idx, ctx), src, result),
                                 f"{name}_out", op, "convert", op.results[0])


# --- dot_general ---------------------------------------------------------------------------

def dot_general(lw, op, lhs: TV, rhs: TV, name: str) -> TV:
    a = op.attrs
    lb, rb = list(a["lhs_batching_dimensions"]), list(a["rhs_batching_dimensions"])
    lc, rc = list(a["lhs_contracting_dimensions"]), list(a["rhs_contracting_dimensions"])
    lf = [d for d in range(len(lhs.shape)) if d not in lb and d not in lc]
    rf = [d for d in range(len(rhs.shape)) if d not in rb and d not in rc]
    result = op.results[0].type
    acc = acc_dtype(op, lhs.dtype, rhs.dtype, result.dtype)
    out_shape = tuple(result.shape)
    k_axes = [te.reduce_axis((0, lhs.shape[d]), name=f"k{i}") for i, d in enumerate(lc)]
    nb, nm = len(lb), len(lf)

    def indices(i):
        li = [None] * len(lhs.shape)
        ri = [None] * len(rhs.shape)
        for p, (dl, dr) in enumerate(zip(lb, rb)):
            li[dl] = i[p]
            ri[dr] = i[p]
        for p, d in enumerate(lf):
            li[d] = i[nb + p]
        for p, d in enumerate(rf):
            ri[d] = i[nb + nm + p]
        for ax, dl, dr in zip(k_axes, lc, rc):
            li[dl] = ax.var
            ri[dr] = ax.var
        return li, ri

    def fcompute(*i):
        li, ri = indices(i)
        prod = lw.compose(lambda c: _enter(lhs.at(li, c), lhs.dtype, acc) * _enter(rhs.at(ri, c), rhs.dtype, acc))
        if not k_axes:
            return prod
        return te.sum(prod, axis=k_axes)

    tensor = lw.raw_block(name, out_shape, fcompute, "matmul", op, [lhs, rhs],
                          reduce_extent=math.prod(lhs.shape[d] for d in lc))
    return _leave(lw, tensor, acc, result.dtype, name, op)


# --- convolution ---------------------------------------------------------------------------

def convolution(lw, op, lhs: TV, rhs: TV, name: str) -> TV:
    a = op.attrs
    result = op.results[0].type
    acc = acc_dtype(op, lhs.dtype, rhs.dtype, result.dtype)
    isd, ksd, osd = a["input_spatial_dimensions"], a["kernel_spatial_dimensions"], a["output_spatial_dimensions"]
    ibd, ifd = a["input_batch_dimension"], a["input_feature_dimension"]
    kifd, kofd = a["kernel_input_feature_dimension"], a["kernel_output_feature_dimension"]
    obd, ofd = a["output_batch_dimension"], a["output_feature_dimension"]
    fgc, bgc = a["feature_group_count"], a["batch_group_count"]
    groups = fgc * bgc
    n_in = lhs.shape[ibd]
    i_feat = rhs.shape[kifd]
    o_feat = rhs.shape[kofd]
    og = o_feat // groups
    k_sp = [rhs.shape[d] for d in ksd]
    in_sp = [lhs.shape[d] for d in isd]
    ci = te.reduce_axis((0, i_feat), name="ci")
    kk = [te.reduce_axis((0, k), name=f"kk{i}") for i, k in enumerate(k_sp)]
    axes = [ci] + [k for k, size in zip(kk, k_sp)]
    lo = [p[0] for p in a["padding"]]

    def fcompute(*o):
        b, f = o[obd], o[ofd]
        g = tir.floordiv(f, _c(og)) if groups > 1 else None
        li = [None] * len(lhs.shape)
        ki = [None] * len(rhs.shape)
        if fgc > 1:
            li[ifd] = g * _c(i_feat) + ci.var
            li[ibd] = b
        elif bgc > 1:
            li[ifd] = ci.var
            li[ibd] = g * _c(n_in // bgc) + b
        else:
            li[ifd] = ci.var
            li[ibd] = b
        cond = None
        for s in range(len(isd)):
            p = o[osd[s]] * _c(a["window_strides"][s]) if a["window_strides"][s] != 1 else o[osd[s]]
            p = p + kk[s].var * _c(a["rhs_dilation"][s]) if a["rhs_dilation"][s] != 1 else p + kk[s].var
            if lo[s]:
                p = p - _c(lo[s])
            ld = a["lhs_dilation"][s]
            if ld == 1:
                parts = [p >= _c(0), p < _c(in_sp[s])]
                q = p
            else:
                q = tir.floordiv(p, _c(ld))
                parts = [p >= _c(0), tir.floormod(p, _c(ld)) == _c(0), q < _c(in_sp[s])]
            for c in parts:
                cond = c if cond is None else tir.And(cond, c)
            li[isd[s]] = q
            ki[ksd[s]] = _c(k_sp[s] - 1) - kk[s].var if a["window_reversal"][s] else kk[s].var
        ki[kofd] = f
        ki[kifd] = ci.var
        prod = lw.compose(lambda c: _enter(lhs.at(li, c), lhs.dtype, acc) * _enter(rhs.at(ki, c), rhs.dtype, acc))
        if cond is not None:
            prod = tir.if_then_else(cond, prod, tir.const(0, acc))
        return te.sum(prod, axis=axes)

    tensor = lw.raw_block(name, tuple(result.shape), fcompute, "conv", op, [lhs, rhs],
                          reduce_extent=i_feat * math.prod(k_sp))
    return _leave(lw, tensor, acc, result.dtype, name, op)


# --- reduce bodies -------------------------------------------------------------------------

KNOWN = ("add", "multiply", "maximum", "minimum", "and", "or", "xor")


def body_combiner(op, region, dtypes_: list[DType]):
    """fcombine(lhs tuple, rhs tuple) -> tuple, translating the region's scalar ops."""
    n = len(dtypes_)

    def fcombine(x, y):
        env = {}
        for arg, v in zip(region.args, list(x) + list(y)):
            env[arg] = v
        for inner in region.ops:
            if inner.name == "return":
                return [env[v] for v in inner.operands]
            if inner.regions or any(r.type.rank != 0 for r in inner.results):
                raise fail(inner, f"reduce body op '{inner.name}' is not a scalar elementwise op")
            if inner.name == "constant":
                env[inner.results[0]] = const_of(inner, inner.attrs["value"])
                continue
            if not te_ops_is_elementwise(inner):
                raise fail(inner, f"reduce body op '{inner.name}' is not elementwise")
            if any(v not in env for v in inner.operands):
                raise fail(inner, "reduce body reads a value from outside the body")
            args = [env[v] for v in inner.operands]
            env[inner.results[0]] = te_ops.elementwise(inner, args, [v.type.dtype for v in inner.operands],
                                                       inner.results[0].type.dtype)
        raise fail(op, "reduce body does not end in return")

    fcombine.n = n
    return fcombine


def te_ops_is_elementwise(op) -> bool:
    from xchip.ir import ops as ir_ops
    return ir_ops.is_elementwise(op)


def known_body(region) -> str | None:
    """The body's op when it is one known associative op of its two arguments."""
    body = [o for o in region.ops if o.name != "return"]
    if len(region.args) != 2 or len(body) != 1:
        return None
    (inner,) = body
    if inner.name not in KNOWN or set(inner.operands) != set(region.args) or len(inner.operands) != 2:
        return None
    if region.ops[-1].operands != [inner.results[0]]:
        return None
    return inner.name


def identity_of(kind: str, d: DType):
    """The identity of a known body as a Python scalar of dtype d, or None."""
    if d.kind == "bool":
        return {"add": False, "or": False, "xor": False, "maximum": False,
                "multiply": True, "and": True, "minimum": True}[kind]
    if d.is_float:
        return {"add": 0.0, "multiply": 1.0, "maximum": -math.inf, "minimum": math.inf}.get(kind)
    info = np.iinfo(d.numpy)
    return {"add": 0, "multiply": 1, "maximum": int(info.min), "minimum": int(info.max),
            "and": -1 if d.kind == "int" else int(info.max), "or": 0, "xor": 0}.get(kind)


def is_identity(kind: str | None, d: DType, value) -> bool:
    if kind is None:
        return False
    ident = identity_of(kind, d)
    if ident is None:
        return False
    v = np.asarray(value).astype(np.float64 if d.is_float else object).item() if d.kind != "bool" else bool(value)
    if d.is_float:
        return (ident == 0.0 and v == 0.0) or v == ident
    return v == ident


def const_of(op, value):
    """A scalar numpy value as a compute-form constant."""
    d = dtypes.from_numpy(np.asarray(value).dtype)
    cd = compute_dtype(d, op)
    v = np.asarray(value).reshape(-1)[0] if np.asarray(value).size else 0
    if d.kind == "bool":
        return tir.const(bool(v), "bool")
    if d.is_float:
        return tir.const(float(np.float64(np.float32(v) if d.name in ("bf16", "f16") else v)), cd)
    return tir.const(int(v), cd)


def _reducer(fcombine, n: int, idents, name: str):
    if n == 1:
        return te.comm_reducer(lambda x, y: fcombine([x], [y])[0], lambda *t: idents[0], name=name)
    return te.comm_reducer(lambda x, y: tuple(fcombine(list(x), list(y))), lambda *t: tuple(idents), name=name)


def _unflatten(flat, dims_shape):
    """Multi-index over `dims_shape` of a row-major flat index."""
    out = []
    stride = 1
    for size in reversed(dims_shape):
        v = tir.floordiv(flat, _c(stride)) if stride > 1 else flat
        out.append(tir.floormod(v, _c(size)) if len(out) < len(dims_shape) - 1 else v)
        stride *= size
    return list(reversed(out))


def lanes_for(compute: str) -> int:
    return 16 if compute in ("float64", "int64", "uint64") else 32


def reduce(lw, op, inputs: list[TV], inits: list[TV], init_values, name: str) -> list[TV]:
    """`init_values`: numpy scalars of the init operands when they are constants, else None."""
    dims = list(op.attrs["dimensions"])
    shape = inputs[0].shape
    rank = len(shape)
    keep = [d for d in range(rank) if d not in dims]
    out_shape = tuple(shape[d] for d in keep)
    n = len(inputs)
    out_types = [r.type.dtype for r in op.results]
    for t in out_types:
        if t.is_complex or t.name.startswith("f8"):
            raise fail(op, f"dtype {t.name} is not lowered on the CPU")
    region = op.regions[0]
    fcombine = body_combiner(op, region, out_types)
    kind = known_body(region) if n == 1 else None
    cds = [compute_dtype(t, op) for t in out_types]
    red_shape = [shape[d] for d in dims]
    count = math.prod(red_shape)

    def full_index(kept_idx, red_idx):
        idx = [None] * rank
        for p, d in enumerate(keep):
            idx[d] = kept_idx[p]
        for p, d in enumerate(dims):
            idx[d] = red_idx[p]
        return idx

    if init_values is None or any(v is None for v in init_values):
        # a computed init: reduce from the known identity, then combine with the init
        if kind is None or identity_of(kind, out_types[0]) is None:
            raise fail(op, "reduce with a non-constant init value and a body other than one "
                           "add/multiply/maximum/minimum/and/or/xor")
        ident_vals = [identity_of(kind, out_types[0])]
        post_init = True
    else:
        ident_vals = list(init_values)
        post_init = False
    idents = [const_of(op, np.asarray(v, t.numpy)) for v, t in zip(ident_vals, out_types)]

    if not dims or count == 0:
        # nothing to fold over: the init alone (no elements) or combined with the one element
        def fempty(*i):
            def build(c):
                inits_now = [init.at([], c) for init in inits]
                if count == 0:
                    return inits_now
                return fcombine(inits_now, [x.at(full_index(list(i), []), c) for x in inputs])
            vals = [lw.compose(lambda c, k=k: build(c)[k]) for k in range(n)]
            return _one_or_tuple(vals, out_types)

        tensors = lw.raw_block(name, out_shape, fempty, "elementwise", op, inputs + inits, n_outputs=n,
                               compute_outputs=True)
        return [TV(out_shape, t, tt, compute_form=True) for t, tt in zip(out_types, _as_list(tensors))]

    trailing = sorted(dims) == list(range(rank - len(dims), rank))
    lanes = lanes_for(cds[0])
    split = (kind is not None and not post_init and n == 1 and trailing and count >= 2 * lanes
             and is_identity(kind, out_types[0], ident_vals[0]))
    if split:
        # a commutative body: the element order is free, so fold the row in memory order
        dims = sorted(dims)
        red_shape = [shape[d] for d in dims]
    reducer = _reducer(fcombine, n, idents, f"{name}_reducer")

    if not split:
        axes = [te.reduce_axis((0, s), name=f"r{i}") for i, s in enumerate(red_shape)]

        def fcompute(*i):
            idx = full_index(list(i), [ax.var for ax in axes])
            vals = [lw.compose(lambda c, x=x: x.at(idx, c)) for x in inputs]
            return reducer(vals[0] if n == 1 else tuple(vals), axis=axes)

        tensors = lw.raw_block(name, out_shape, fcompute, "reduce", op, inputs, n_outputs=n,
                               compute_outputs=True, reduce_extent=count)
        if trailing:
            lw.blocks[_as_list(tensors)[0].op.name].rows = out_shape
    else:
        m, tail = divmod(count, lanes)
        (x,) = inputs
        o_ax = te.reduce_axis((0, m), name="ro")

        def fpartial(*i):
            kept, v = list(i[:-1]), i[-1]
            idx = full_index(kept, _unflatten(o_ax.var * _c(lanes) + v, red_shape))
            return reducer(lw.compose(lambda c: x.at(idx, c)), axis=[o_ax])

        partial = lw.raw_block(f"{name}_partial", out_shape + (lanes,), fpartial, "reduce_partial", op, [x],
                               compute_outputs=True, reduce_extent=m)
        j_ax = te.reduce_axis((0, lanes + tail), name="rj")

        def ffinal(*i):
            kept = list(i)
            if tail:
                # both sources stay in range whichever the select evaluates
                idx = full_index(kept, _unflatten(_c(m * lanes - lanes) + tir.Max(j_ax.var, _c(lanes)), red_shape))
                value = tir.Select(j_ax.var < _c(lanes), partial(*kept, tir.Min(j_ax.var, _c(lanes - 1))),
                                   lw.compose(lambda c: x.at(idx, c)))
            else:
                value = partial(*kept, j_ax.var)
            return reducer(value, axis=[j_ax])

        tensors = lw.raw_block(name, out_shape, ffinal, "reduce", op, [x], n_outputs=1, compute_outputs=True,
                               reduce_extent=lanes + tail, extra_reads=[partial.op.name])
        lw.blocks[tensors.op.name].rows = out_shape
        lw.blocks[partial.op.name].rows = out_shape
    outs = [TV(out_shape, t, tt, compute_form=True) for t, tt in zip(out_types, _as_list(tensors))]
    if post_init:
        red = outs[0]
        init = inits[0]
        return [lw.elementwise_result(out_shape, out_types[0],
                                      lambda idx, c: fcombine([init.at([], c)], [red.at(idx, c)])[0],
                                      f"{name}_init", op, "add", op.results[0])]
    return outs


def _as_list(t):
    return list(t) if isinstance(t, (list, tuple)) else [t]


def _one_or_tuple(vals, types):
    vals = list(vals)
    return vals[0] if len(vals) == 1 else vals


# --- reduce_window -------------------------------------------------------------------------

def reduce_window(lw, op, inputs: list[TV], inits: list[TV], init_values, name: str) -> list[TV]:
    a = op.attrs
    n = len(inputs)
    if init_values is None or any(v is None for v in init_values):
        raise fail(op, "reduce_window with a non-constant init value")
    out_types = [r.type.dtype for r in op.results]
    out_shape = tuple(op.results[0].type.shape)
    region = op.regions[0]
    fcombine = body_combiner(op, region, out_types)
    idents = [const_of(op, np.asarray(v, t.numpy)) for v, t in zip(init_values, out_types)]
    reducer = _reducer(fcombine, n, idents, f"{name}_reducer")
    shape = inputs[0].shape
    win = a["window_dimensions"]
    axes = {k: te.reduce_axis((0, w), name=f"w{k}") for k, w in enumerate(win) if w > 1}
    lo = [p[0] for p in a["padding"]]

    def fcompute(*o):
        cond = None
        idx = []
        for k in range(len(shape)):
            p = o[k] * _c(a["window_strides"][k]) if a["window_strides"][k] != 1 else o[k]
            if k in axes:
                w = axes[k].var * _c(a["window_dilations"][k]) if a["window_dilations"][k] != 1 else axes[k].var
                p = p + w
            if lo[k]:
                p = p - _c(lo[k])
            bd = a["base_dilations"][k]
            parts = []
            if bd == 1:
                q = p
                parts = [p >= _c(0), p < _c(shape[k])]
            else:
                q = tir.floordiv(p, _c(bd))
                parts = [p >= _c(0), tir.floormod(p, _c(bd)) == _c(0), q < _c(shape[k])]
            for c in parts:
                cond = c if cond is None else tir.And(cond, c)
            idx.append(q)
        vals = []
        for x, ident in zip(inputs, idents):
            v = lw.compose(lambda c, x=x: x.at(idx, c))
            vals.append(v if cond is None else tir.if_then_else(cond, v, ident))
        if not axes:
            return _one_or_tuple(fcombine(list(idents), vals), out_types)
        return reducer(vals[0] if n == 1 else tuple(vals), axis=list(axes.values()))

    tensors = lw.raw_block(name, out_shape, fcompute, "window" if axes else "elementwise", op, inputs,
                           n_outputs=n, compute_outputs=True, reduce_extent=math.prod(win))
    return [TV(out_shape, t, tt, compute_form=True) for t, tt in zip(out_types, _as_list(tensors))]
