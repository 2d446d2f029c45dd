"""Index-map and data-movement ops as index functions: for each op, where an element of the
result comes from. `lower.py` wraps them into compute blocks (or lazy values when the
operand is an immediate).

broadcast_in_dim, reshape, transpose, slice, reverse map one result index to one operand
index. pad and concatenate choose between sources with `if_then_else`, whose branches are
evaluated lazily, so an index that is out of range in the branch not taken is never read.
"""

from __future__ import annotations

import math

from tvm import tirx as tir

from .te_base import TV, fail


def _c(v: int):
    return tir.const(v, "int32")


def broadcast_index(op, operand: TV, out_shape):
    dims = op.attrs["broadcast_dimensions"]

    def index(idx):
        out = []
        for i, d in enumerate(dims):
            out.append(_c(0) if operand.shape[i] == 1 and out_shape[d] != 1 else idx[d])
        return out

    return index


def _groups(a: tuple[int, ...], b: tuple[int, ...]):
    """Split the non-unit dimensions of two shapes of equal size into runs of equal product:
    [([dims of a], [dims of b]), ...]."""
    ia = [i for i, s in enumerate(a) if s != 1]
    ib = [i for i, s in enumerate(b) if s != 1]
    groups, pa, pb = [], 0, 0
    while pa < len(ia) or pb < len(ib):
        ga, gb = [ia[pa]], [ib[pb]]
        sa, sb = a[ia[pa]], b[ib[pb]]
        pa, pb = pa + 1, pb + 1
        while sa != sb:
            if sa < sb:
                ga.append(ia[pa])
                sa *= a[ia[pa]]
                pa += 1
            else:
                gb.append(ib[pb])
                sb *= b[ib[pb]]
                pb += 1
        groups.append((ga, gb))
    return groups


def reshape_index(op, operand: TV, out_shape):
    in_shape = operand.shape
    if math.prod(in_shape) >= 2 ** 31:
        raise fail(op, "tensors of 2**31 elements or more are not lowered")
    groups = _groups(tuple(in_shape), tuple(out_shape))

    def index(idx):
        out = [_c(0)] * len(in_shape)
        for ga, gb in groups:
            if len(ga) == 1 and len(gb) == 1:
                out[ga[0]] = idx[gb[0]]
                continue
            flat = None
            for d in gb:
                flat = idx[d] if flat is None else flat * _c(out_shape[d]) + idx[d]
            stride = 1
            for d in reversed(ga):
                v = tir.floordiv(flat, _c(stride)) if stride > 1 else flat
                out[d] = tir.floormod(v, _c(in_shape[d])) if d != ga[0] else v
                stride *= in_shape[d]
        return out

    return index


def transpose_index(op, operand: TV, out_shape):
    perm = op.attrs["permutation"]

    def index(idx):
        out = [None] * len(perm)
        for k, p in enumerate(perm):
            out[p] = idx[k]
        return out

    return index


def slice_index(op, operand: TV, out_shape):
    a = op.attrs

    def index(idx):
        out = []
        for i, s, k in zip(idx, a["start_indices"], a["strides"]):
            v = i * _c(k) if k != 1 else i
            out.append(_c(s) + v if s else v)
        return out

    return index


def reverse_index(op, operand: TV, out_shape):
    dims = set(op.attrs["dimensions"])

    def index(idx):
        return [_c(operand.shape[d] - 1) - i if d in dims else i for d, i in enumerate(idx)]

    return index


INDEX_MAPS = {
    "broadcast_in_dim": broadcast_index, "reshape": reshape_index, "transpose": transpose_index,
    "slice": slice_index, "reverse": reverse_index,
}


def pad_value(op, operand: TV, padding: TV, out_shape):
    """fn(idx, ctx) -> compute-form element of `pad`."""
    a = op.attrs
    lo, interior = a["edge_padding_low"], a["interior_padding"]

    def fn(idx, ctx):
        cond = None
        src = []
        for d, i in enumerate(idx):
            p = i - _c(lo[d]) if lo[d] else i
            step = interior[d] + 1
            size = operand.shape[d]
            parts = []
            if step == 1:
                q = p
                if lo[d] > 0:
                    parts.append(p >= _c(0))
                if lo[d] + size < out_shape[d]:
                    parts.append(p < _c(size))
            else:
                q = tir.floordiv(p, _c(step))
                parts += [p >= _c(0), tir.floormod(p, _c(step)) == _c(0), q < _c(size)]
            for c in parts:
                cond = c if cond is None else tir.And(cond, c)
            src.append(q)
        if cond is None:
            return operand.at(src, ctx)
        # the operand is read (and its expression built) only inside the branch
        value = ctx.scoped(lambda c: operand.at(src, c))
        return tir.if_then_else(cond, value, padding.at([], ctx))

    return fn


def concatenate_value(op, operands: list[TV], out_shape):
    d = op.attrs["dimension"]
    offsets = []
    start = 0
    for t in operands:
        offsets.append(start)
        start += t.shape[d]

    def fn(idx, ctx):
        result = None
        for t, off in reversed(list(zip(operands, offsets))):
            if t.shape[d] == 0:
                continue
            src = list(idx)
            src[d] = idx[d] - _c(off) if off else idx[d]
            value = ctx.scoped(lambda c, t=t, src=src: t.at(src, c))
            result = value if result is None else tir.if_then_else(idx[d] < _c(off + t.shape[d]), value, result)
        return result

    return fn
