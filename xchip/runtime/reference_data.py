"""gather, scatter and sort for the reference executor, vectorized with numpy index arrays.

Out-of-bounds behaviour:
- gather clamps each start index so that the whole slice fits (spec);
- scatter skips an update window whose start does not let the whole window fit. That is
  XLA's rule (checked on XLA:CPU: a window hanging over the edge is dropped entirely); the
  spec leaves it to the implementation and the StableHLO interpreter drops only the
  elements that fall outside. The oracle follows XLA so that it agrees with `jax.jit`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

_INDEX_CAP = 1 << 62  # far beyond any dimension; keeps uint64 indices from wrapping negative


def _index_vectors(indices: np.ndarray, index_vector_dim: int) -> np.ndarray:
    """The start-index vectors as int64 with the vector in the last axis."""
    if index_vector_dim == indices.ndim:
        idx = indices[..., None]
    else:
        idx = np.moveaxis(indices, index_vector_dim, -1)
    if idx.dtype == np.uint64:
        idx = np.minimum(idx, np.uint64(_INDEX_CAP))
    return idx.astype(np.int64)


def _along(axis: int, size: int, rank: int) -> np.ndarray:
    """arange(size) shaped to broadcast along `axis` of a rank-`rank` index space."""
    shape = [1] * rank
    shape[axis] = size
    return np.arange(size, dtype=np.int64).reshape(shape)


def _gather(ctx, op, args):
    operand, indices = args
    a = op.attrs
    ivd = a["index_vector_dim"]
    sizes = a["slice_sizes"]
    start_map = list(a["start_index_map"])
    obd, sibd = list(a["operand_batching_dims"]), list(a["start_indices_batching_dims"])
    dropped = set(a["collapsed_slice_dims"]) | set(obd)
    offset_operand_dims = [d for d in range(operand.ndim) if d not in dropped]

    idx = _index_vectors(indices, ivd)
    batch_shape = idx.shape[:-1]
    nb, no = len(batch_shape), len(offset_operand_dims)
    rank = nb + no
    coords = []
    for d in range(operand.ndim):
        c = np.zeros((1,) * rank, np.int64)
        if d in start_map:
            start = idx[..., start_map.index(d)]
            start = np.clip(start, 0, operand.shape[d] - sizes[d])
            c = c + start.reshape(batch_shape + (1,) * no)
        if d in obd:
            d_start = sibd[obd.index(d)]
            pos = d_start - (0 if d_start < ivd else 1)
            c = c + _along(pos, batch_shape[pos], rank)
        if d in offset_operand_dims:
            j = offset_operand_dims.index(d)
            c = c + _along(nb + j, sizes[d], rank)
        coords.append(c)
    full_shape = batch_shape + tuple(sizes[d] for d in offset_operand_dims)
    if operand.ndim:
        picked = np.broadcast_to(operand[tuple(coords)], full_shape)
    else:
        picked = np.broadcast_to(operand, full_shape)
    offset_dims = list(a["offset_dims"])
    perm, batch_axis = [], iter(range(nb))
    for r in range(rank):
        perm.append(nb + offset_dims.index(r) if r in offset_dims else next(batch_axis))
    return [picked.transpose(perm)]


# Combiners whose repeated in-place application numpy does in order, unbuffered, with the
# same per-step rounding as the op itself (ufunc.at): a scatter-add with many repeats then
# needs no round per repeat. Float max/min stay out (numpy's signed-zero choice differs).
_UFUNC_AT = {"add": np.add, "multiply": np.multiply}
_UFUNC_AT_INTEGER = {"maximum": np.maximum, "minimum": np.minimum, "and": np.bitwise_and,
                     "or": np.bitwise_or, "xor": np.bitwise_xor}
_NUMPY_NATIVE = frozenset(np.dtype(t) for t in (
    np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64, np.complex64, np.complex128))


def _in_place_ufunc(region, dtype: np.dtype):
    """The numpy ufunc equal to `region` if it is `return op(current, update)` of a single
    commutative op on a numpy-native type, else None."""
    if len(region.args) != 2 or len(region.ops) != 2 or dtype not in _NUMPY_NATIVE:
        return None
    op, ret = region.ops
    if ret.name != "return" or list(ret.operands) != op.results or set(op.operands) != set(region.args):
        return None
    if op.operands[0] is op.operands[1]:
        return None
    if op.name in _UFUNC_AT:
        return _UFUNC_AT[op.name]
    return _UFUNC_AT_INTEGER.get(op.name) if dtype.kind in "iu" else None


def apply_in_order(ctx, region, results: list[np.ndarray], targets: np.ndarray,
                   values: list[np.ndarray]) -> None:
    """results[k][targets[i]] = region(results...[targets[i]], values...[i]) for i in order,
    in place on the flat `results`. Updates to distinct places run as one batch; repeated
    places run in later batches, so every place sees its updates in their original order."""
    if targets.size == 0:
        return
    if len(results) == 1:
        ufunc = _in_place_ufunc(region, results[0].dtype)
        if ufunc is not None:
            ufunc.at(results[0], targets, values[0])
            return
    order = np.argsort(targets, kind="stable")
    sorted_targets = targets[order]
    first = np.ones(targets.size, bool)
    first[1:] = sorted_targets[1:] != sorted_targets[:-1]
    positions = np.arange(targets.size)
    group_start = np.maximum.accumulate(np.where(first, positions, 0))
    occurrence = np.empty(targets.size, np.int64)
    occurrence[order] = positions - group_start
    by_round = np.argsort(occurrence, kind="stable")
    counts = np.bincount(occurrence)
    start = 0
    for count in counts:
        pick = by_round[start:start + count]
        start += count
        where = targets[pick]
        current = [r[where] for r in results]
        new = ctx.call_batched(region, current + [v[pick] for v in values])
        for r, v in zip(results, new):
            r[where] = v


def _scatter(ctx, op, args):
    n = len(args) // 2
    inputs, indices, updates = args[:n], args[n], args[n + 1:]
    a = op.attrs
    ivd = a["index_vector_dim"]
    uwd = list(a["update_window_dims"])
    iwd, ibd = set(a["inserted_window_dims"]), list(a["input_batching_dims"])
    sibd, to_operand = list(a["scatter_indices_batching_dims"]), list(a["scatter_dims_to_operand_dims"])
    shape = inputs[0].shape

    idx = _index_vectors(indices, ivd)
    update_scatter_dims = [d for d in range(updates[0].ndim) if d not in uwd]
    ordered = [u.transpose(update_scatter_dims + uwd) for u in updates]
    scatter_shape = tuple(updates[0].shape[d] for d in update_scatter_dims)
    window_shape = tuple(updates[0].shape[d] for d in uwd)
    ns, nw = len(scatter_shape), len(window_shape)
    rank = ns + nw
    window_input_dims = [d for d in range(len(shape)) if d not in iwd and d not in ibd]

    valid = np.ones(scatter_shape + (1,) * nw, bool)
    coords = []
    for d in range(len(shape)):
        start = np.zeros(scatter_shape + (1,) * nw, np.int64)
        extent = 1
        if d in to_operand:
            start = start + idx[..., to_operand.index(d)].reshape(scatter_shape + (1,) * nw)
        if d in ibd:
            d_start = sibd[ibd.index(d)]
            pos = d_start - (0 if d_start < ivd else 1)
            start = start + _along(pos, scatter_shape[pos], rank)
        window = 0
        if d in window_input_dims:
            j = window_input_dims.index(d)
            extent = window_shape[j]
            window = _along(ns + j, extent, rank)
        valid = valid & (start >= 0) & (start + extent <= shape[d])
        coords.append(start + window)

    full = scatter_shape + window_shape
    valid = np.broadcast_to(valid, full).reshape(-1)
    if len(shape):
        coords = [np.where(np.broadcast_to(valid.reshape(full), full), np.broadcast_to(c, full), 0) for c in coords]
        flat = np.ravel_multi_index(coords, shape).reshape(-1)
    else:
        flat = np.zeros(math.prod(full), np.int64)
    targets = flat[valid]
    values = [u.reshape(-1)[valid] for u in ordered]
    results = [np.array(x, copy=True).reshape(-1) for x in inputs]
    apply_in_order(ctx, op.regions[0], results, targets, values)
    return [r.reshape(shape) for r in results]


# Rows up to this long sort by comparing all pairs at once (one comparator run on n*n pairs);
# longer ones by a merge sort whose merges binary-search with the comparator, all elements
# of all rows at once (O(log^2 n) comparator runs on n elements).
_ALL_PAIRS_MAX = 256
_PAIRS_PER_BATCH = 1 << 22


def _interleave(first: list[np.ndarray], second: list[np.ndarray]) -> list[np.ndarray]:
    """Comparator arguments: (lhs0, rhs0, lhs1, rhs1, ...)."""
    out = []
    for a, b in zip(first, second):
        out += [a, b]
    return out


def _sort_rows_all_pairs(ctx, region, rows: list[np.ndarray]) -> np.ndarray:
    """Permutations (rows, n) that sort each row stably: element i lands after every j
    with less(j, i) and after every earlier j that ties with it. That needs a strict weak
    order; a row whose comparator is not one sorts with Python's merge sort instead."""
    count, n = rows[0].shape
    perms = np.empty((count, n), np.int64)
    step = max(1, _PAIRS_PER_BATCH // max(1, n * n))
    earlier = np.arange(n)[None, :] < np.arange(n)[:, None]   # [i, j]: j < i
    for lo in range(0, count, step):
        chunk = [r[lo:lo + step] for r in rows]
        (less,) = ctx.call_batched(region, _interleave([r[:, :, None] for r in chunk], [r[:, None, :] for r in chunk]))
        less = np.asarray(less, bool)                   # less[k, i, j] = comparator(x_i, x_j)
        before = less.sum(axis=1)                       # how many j have less(j, i)
        ties = ~less & ~less.transpose(0, 2, 1)
        pos = before + (ties & earlier[None]).sum(axis=2)
        ok = (np.sort(pos, axis=1) == np.arange(n)[None, :]).all(axis=1)
        for k in np.nonzero(~ok)[0]:
            matrix = less[k]
            key = functools.cmp_to_key(lambda i, j, m=matrix: -1 if m[i, j] else (1 if m[j, i] else 0))
            pos[k] = np.argsort(sorted(range(n), key=key))
        perm = np.empty_like(pos)
        np.put_along_axis(perm, pos, np.broadcast_to(np.arange(n), pos.shape), axis=1)
        perms[lo:lo + step] = perm
    return perms


def _sort_rows_merge(ctx, region, rows: list[np.ndarray]) -> np.ndarray:
    """Bottom-up stable merge sort of every row at once. Merging a left run A with the run B
    after it, a_i moves past the b that are less than it and b_j past the a that are not
    greater than it; both counts are prefixes of the sorted partner run, so every element
    finds its count by binary search, all elements in the same comparator runs."""
    count, n = rows[0].shape
    perm = np.broadcast_to(np.arange(n), (count, n)).copy()   # perm[r, p]: original index at p
    pos = np.arange(n)
    width = 1
    while width < n:
        current = [np.take_along_axis(r, perm, axis=1) for r in rows]
        run_start = pos // (2 * width) * (2 * width)
        split = np.minimum(run_start + width, n)
        run_end = np.minimum(run_start + 2 * width, n)
        in_left = pos < split
        own_start = np.where(in_left, run_start, split)
        lo = np.broadcast_to(np.where(in_left, split, run_start), (count, n)).copy()
        hi = np.broadcast_to(np.where(in_left, run_end, split), (count, n)).copy()
        first = lo.copy()
        left = np.broadcast_to(in_left, (count, n))
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = np.minimum((lo + hi) // 2, n - 1)
            partner = [np.take_along_axis(c, mid, axis=1) for c in current]
            lhs = [np.where(left, p, c) for p, c in zip(partner, current)]
            rhs = [np.where(left, c, p) for p, c in zip(partner, current)]
            (less,) = ctx.call_batched(region, _interleave(lhs, rhs))
            less = np.asarray(less, bool)
            goes_before = np.where(left, less, ~less)   # the partner element precedes this one
            lo = np.where(active & goes_before, mid + 1, lo)
            hi = np.where(active & ~goes_before, mid, hi)
        target = run_start + (pos - own_start) + (lo - first)
        new_perm = np.empty_like(perm)
        np.put_along_axis(new_perm, target, perm, axis=1)
        perm = new_perm
        width *= 2
    return perm


def _sort(ctx, op, args):
    """Always stable (a valid answer for is_stable = false too)."""
    dim = op.attrs["dimension"]
    rank = args[0].ndim
    if rank == 0:
        return list(args)
    dim = dim + rank if dim < 0 else dim
    moved = [np.moveaxis(x, dim, -1) for x in args]
    lead, n = moved[0].shape[:-1], moved[0].shape[-1]
    rows = [m.reshape(-1, n) for m in moved]
    if rows[0].shape[0] == 0 or n <= 1:
        return list(args)
    region = op.regions[0]
    if n <= _ALL_PAIRS_MAX:
        perms = _sort_rows_all_pairs(ctx, region, rows)
    else:
        perms = _sort_rows_merge(ctx, region, rows)
    out = []
    for r in rows:
        s = np.take_along_axis(r, perms, axis=1).reshape(lead + (n,))
        out.append(np.moveaxis(s, -1, dim))
    return out


HANDLERS = {"gather": _gather, "scatter": _scatter, "sort": _sort}
