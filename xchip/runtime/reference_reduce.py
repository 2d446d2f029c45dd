"""reduce, reduce_window and select_and_scatter for the reference executor.

The body region runs on whole arrays of accumulators at once (`Context.call_batched`), once
per reduced element or window position, rather than once per output element.
"""

from __future__ import annotations

import math

import numpy as np

from .reference_data import apply_in_order
from .reference_shape import pad

# Up to this many elements per output a reduce folds them one after another, in order, as
# XLA:CPU's loop does; beyond it, pairwise (a balanced tree over the elements in order, then
# the init value in front), which the spec's implementation-defined schedule allows and
# which keeps long float sums accurate and the number of body runs logarithmic.
_SEQUENTIAL_MAX = 32


def _reduce(ctx, op, args):
    n = len(args) // 2
    inputs, inits = args[:n], args[n:]
    dims = list(op.attrs["dimensions"])
    keep = [d for d in range(inputs[0].ndim) if d not in dims]
    out_shape = tuple(inputs[0].shape[d] for d in keep)
    count = math.prod(inputs[0].shape[d] for d in dims)
    items = [x.transpose(dims + keep).reshape((count,) + out_shape) for x in inputs]
    body = op.regions[0]
    accs = [np.broadcast_to(init, out_shape) for init in inits]
    if count <= _SEQUENTIAL_MAX:
        for k in range(count):
            accs = ctx.call_batched(body, accs + [x[k] for x in items])
        return accs
    while items[0].shape[0] > 1:
        # neighbours pair up, so the tree's in-order traversal keeps the elements' order,
        # as the spec's schedule requires (the body need not be commutative)
        even = items[0].shape[0] // 2 * 2
        paired = ctx.call_batched(body, [x[0:even:2] for x in items] + [x[1:even:2] for x in items])
        if even < items[0].shape[0]:
            paired = [np.concatenate([p, x[even:]]) for p, x in zip(paired, items)]
        items = paired
    return ctx.call_batched(body, accs + [x[0] for x in items])


def _window_views(padded: np.ndarray, offset, dilations, strides, out_shape):
    """The elements at window position `offset` of every output, as one array."""
    index = tuple(
        slice(o * dil, o * dil + (size - 1) * st + 1, st) if size else slice(0, 0)
        for o, dil, st, size in zip(offset, dilations, strides, out_shape))
    return padded[index]


def _reduce_window(ctx, op, args):
    n = len(args) // 2
    inputs, inits = args[:n], args[n:]
    a = op.attrs
    lo = [p[0] for p in a["padding"]]
    hi = [p[1] for p in a["padding"]]
    interior = [d - 1 for d in a["base_dilations"]]
    padded = [pad(x, init, lo, hi, interior) for x, init in zip(inputs, inits)]
    out_shape = op.results[0].type.shape
    body = op.regions[0]
    accs = [np.broadcast_to(init, out_shape) for init in inits]
    if math.prod(out_shape) == 0:
        return [np.array(acc) for acc in accs]
    for offset in np.ndindex(*a["window_dimensions"]):
        views = [_window_views(p, offset, a["window_dilations"], a["window_strides"], out_shape) for p in padded]
        accs = ctx.call_batched(body, accs + views)
    return accs


def _select_and_scatter(ctx, op, args):
    """XLA's semantics (checked on XLA:CPU): in each window, keep the current pick while
    `select(pick, candidate)` is true, skipping padding; then start every output element at
    `init_value` and fold each source value into its window's pick with
    `scatter(current, source)`, in source order."""
    operand, source, init = args
    a = op.attrs
    select, scatter = op.regions
    lo = [p[0] for p in a["padding"]]
    strides = a["window_strides"]
    src_shape = source.shape
    rank = operand.ndim
    base = [np.arange(s, dtype=np.int64).reshape([s if i == d else 1 for i in range(rank)]) * st - l
            for d, (s, st, l) in enumerate(zip(src_shape, strides, lo))]
    picked = None
    picked_index = np.full(src_shape + (rank,), -1, np.int64)
    have = np.zeros(src_shape, bool)
    for offset in np.ndindex(*a["window_dimensions"]):
        coords = [np.broadcast_to(b + o, src_shape) for b, o in zip(base, offset)]
        inside = np.ones(src_shape, bool)
        for c, size in zip(coords, operand.shape):
            inside &= (c >= 0) & (c < size)
        safe = tuple(np.clip(c, 0, max(size - 1, 0)) for c, size in zip(coords, operand.shape))
        candidate = operand[safe] if operand.size else np.zeros(src_shape, operand.dtype)
        if picked is None:
            picked = candidate.copy()
        (keep,) = ctx.call_batched(select, [picked, candidate])
        switch = inside & (~have | ~np.asarray(keep, bool))
        picked = np.where(switch, candidate, picked)
        picked_index = np.where(switch[..., None], np.stack(coords, axis=-1), picked_index)
        have |= inside
    result = np.full(operand.shape, init, operand.dtype).reshape(-1)
    if source.size == 0 or operand.size == 0:
        return [result.reshape(operand.shape)]
    chosen = have.reshape(-1)
    flat_index = picked_index.reshape(-1, rank)[chosen]
    targets = np.ravel_multi_index(tuple(flat_index.T), operand.shape) if rank else np.zeros(int(chosen.sum()), np.int64)
    apply_in_order(ctx, scatter, [result], targets, [source.reshape(-1)[chosen]])
    return [result.reshape(operand.shape)]


HANDLERS = {"reduce": _reduce, "reduce_window": _reduce_window, "select_and_scatter": _select_and_scatter}
