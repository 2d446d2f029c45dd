"""Shape and data-movement ops of the reference executor: broadcast, reshape, transpose,
slices, padding, concatenation, iota and the dynamic slices.

Handlers never write into their operands; they may return views of them.
"""

from __future__ import annotations

import numpy as np

from . import reference_numeric as num


def pad(x: np.ndarray, value, low, high, interior) -> np.ndarray:
    """`pad` semantics: `interior` copies of `value` between neighbours, then `low`/`high`
    edges, where a negative edge removes elements instead."""
    core = [0 if d == 0 else d + (d - 1) * i for d, i in zip(x.shape, interior)]
    grown = [max(lo, 0) + c + max(hi, 0) for lo, c, hi in zip(low, core, high)]
    out = np.full(grown, value, dtype=x.dtype)
    place = tuple(slice(max(lo, 0), max(lo, 0) + c, i + 1) for lo, c, i in zip(low, core, interior))
    out[place] = x
    crop = tuple(slice(max(-lo, 0), g - max(-hi, 0)) for lo, g, hi in zip(low, grown, high))
    return out[crop]


def _broadcast_in_dim(ctx, op, args):
    (x,) = args
    shape = op.results[0].type.shape
    dims = op.attrs["broadcast_dimensions"]
    order = sorted(range(len(dims)), key=lambda i: dims[i])
    xt = x.transpose(order)
    expanded = [1] * len(shape)
    for axis, i in enumerate(order):
        expanded[dims[i]] = xt.shape[axis]
    return [np.broadcast_to(xt.reshape(expanded), shape)]


def _reshape(ctx, op, args):
    return [np.reshape(args[0], op.results[0].type.shape)]


def _transpose(ctx, op, args):
    return [args[0].transpose(op.attrs["permutation"])]


def _slice(ctx, op, args):
    a = op.attrs
    index = tuple(slice(s, e, k) for s, e, k in zip(a["start_indices"], a["limit_indices"], a["strides"]))
    return [args[0][index]]


def _concatenate(ctx, op, args):
    return [np.concatenate(args, axis=op.attrs["dimension"])]


def _pad(ctx, op, args):
    x, value = args
    a = op.attrs
    return [pad(x, value, a["edge_padding_low"], a["edge_padding_high"], a["interior_padding"])]


def _reverse(ctx, op, args):
    dims = tuple(op.attrs["dimensions"])
    return [np.flip(args[0], axis=dims) if dims else args[0]]


def _iota(ctx, op, args):
    rt = op.results[0].type
    d = op.attrs["iota_dimension"]
    if rt.rank == 0:
        return [num.convert(np.zeros((), np.int64), rt.dtype)]
    shape = [1] * rt.rank
    shape[d] = rt.shape[d]
    ramp = np.arange(rt.shape[d], dtype=np.int64).reshape(shape)
    return [np.broadcast_to(num.convert(ramp, rt.dtype), rt.shape)]


def _clamped_starts(indices, sizes, shape) -> list[int]:
    """Start indices of a dynamic slice, clamped so that the slice fits (spec)."""
    return [min(max(int(i), 0), d - s) for i, s, d in zip(indices, sizes, shape)]


def _dynamic_slice(ctx, op, args):
    x, *indices = args
    sizes = op.attrs["slice_sizes"]
    starts = _clamped_starts(indices, sizes, x.shape)
    return [x[tuple(slice(s, s + n) for s, n in zip(starts, sizes))]]


def _dynamic_update_slice(ctx, op, args):
    x, update, *indices = args
    starts = _clamped_starts(indices, update.shape, x.shape)
    out = np.array(x, copy=True)
    out[tuple(slice(s, s + n) for s, n in zip(starts, update.shape))] = update
    return [out]


HANDLERS = {
    "broadcast_in_dim": _broadcast_in_dim, "reshape": _reshape, "transpose": _transpose,
    "slice": _slice, "concatenate": _concatenate, "pad": _pad, "reverse": _reverse,
    "iota": _iota, "dynamic_slice": _dynamic_slice,
    "dynamic_update_slice": _dynamic_update_slice,
}
