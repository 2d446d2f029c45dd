"""dot_general and convolution for the reference executor.

Both accumulate exactly or nearly so and round once: floats in f64 (complex in c128),
integers in uint64, whose wrap-around modulo 2**64 agrees with the result type's
wrap-around for every narrower integer type (i8 x i8 -> i32 included).
"""

from __future__ import annotations

import math

import numpy as np

from . import reference_numeric as num
from .reference_shape import pad


# Contractions of up to this many multiply-adds add their products in order; bigger ones go to
# np.matmul (BLAS, in f64 all the same), which is a hundred times faster.
_SEQUENTIAL_WORK_MAX = 1 << 24


class _Accumulator:
    """How operands enter the accumulation type and how the sum leaves it."""

    def __init__(self, lhs: np.ndarray, rhs: np.ndarray, result_dtype):
        kinds = {num.kind(lhs), num.kind(rhs), result_dtype.kind}
        self.result = result_dtype
        if "complex" in kinds:
            self.acc = num.C128
        elif "float" in kinds:
            self.acc = num.F64
        else:
            self.acc = np.dtype(np.uint64)

    def enter(self, x: np.ndarray) -> np.ndarray:
        if self.acc == np.uint64:
            if x.dtype.kind == "i":
                return x.astype(np.int64).view(np.uint64)
            return x.astype(np.uint64)
        if num.is_narrow_float(x.dtype):
            x = x.astype(num.F32)
        return x.astype(self.acc)

    def leave(self, acc: np.ndarray) -> np.ndarray:
        r = self.result
        if r.kind == "bool":
            return acc != 0
        if r.is_integer:
            return acc.astype(r.numpy)
        if r.is_float and self.acc == num.C128:
            acc = acc.real
        return num.round_float(acc, r.numpy)


def _dot_general(ctx, op, args):
    lhs, rhs = args
    a = op.attrs
    lb, rb = list(a["lhs_batching_dimensions"]), list(a["rhs_batching_dimensions"])
    lc, rc = list(a["lhs_contracting_dimensions"]), list(a["rhs_contracting_dimensions"])
    lf = [d for d in range(lhs.ndim) if d not in lb and d not in lc]
    rf = [d for d in range(rhs.ndim) if d not in rb and d not in rc]
    acc = _Accumulator(lhs, rhs, op.results[0].type.dtype)
    b = math.prod(lhs.shape[d] for d in lb)
    k = math.prod(lhs.shape[d] for d in lc)
    m = math.prod(lhs.shape[d] for d in lf)
    n = math.prod(rhs.shape[d] for d in rf)
    left = acc.enter(lhs.transpose(lb + lf + lc)).reshape(b, m, k)
    right = acc.enter(rhs.transpose(rb + rc + rf)).reshape(b, k, n)
    if acc.acc == np.uint64 or b * m * n * k > _SEQUENTIAL_WORK_MAX:
        out = np.matmul(left, right)
    else:
        # one product after another, in contraction order: deterministic on every machine
        # (BLAS reorders by blocking and thread count), and XLA:CPU's order for small dots
        out = np.zeros((b, m, n), acc.acc)
        for i in range(k):
            out += left[:, :, i, None] * right[:, None, i, :]
    return [acc.leave(out).reshape(op.results[0].type.shape)]


def _convolution(ctx, op, args):
    """The spec's definition: windows of the padded, dilated lhs dotted with the kernel,
    split into feature groups (by input feature) or batch groups (by batch), each group
    using its share of the kernel's output features in order."""
    lhs, rhs = args
    a = op.attrs
    rt = op.results[0].type
    isd, ksd, osd = a["input_spatial_dimensions"], a["kernel_spatial_dimensions"], a["output_spatial_dimensions"]
    nsp = len(isd)
    acc = _Accumulator(lhs, rhs, rt.dtype)
    x = acc.enter(lhs.transpose([a["input_batch_dimension"], a["input_feature_dimension"], *isd]))
    w = acc.enter(rhs.transpose([a["kernel_output_feature_dimension"], a["kernel_input_feature_dimension"], *ksd]))
    lo = [p[0] for p in a["padding"]]
    hi = [p[1] for p in a["padding"]]
    x = pad(x, np.zeros((), x.dtype), [0, 0, *lo], [0, 0, *hi], [0, 0, *(d - 1 for d in a["lhs_dilation"])])
    flips = tuple(2 + i for i, r in enumerate(a["window_reversal"]) if r)
    if flips:
        w = np.flip(w, axis=flips)

    n, c = x.shape[:2]
    o, i_feat = w.shape[:2]
    fgc, bgc = a["feature_group_count"], a["batch_group_count"]
    groups = fgc * bgc
    spatial = x.shape[2:]
    if fgc > 1:
        xg = x.reshape(n, fgc, c // fgc, *spatial).swapaxes(0, 1)
    else:
        xg = x.reshape(bgc, n // bgc, c, *spatial)
    wg = w.reshape(groups, o // groups, i_feat, *w.shape[2:])
    out_sp = [rt.shape[d] for d in osd]
    positions = math.prod(out_sp)
    nb, cg, og = xg.shape[1], xg.shape[2], wg.shape[1]
    total = np.zeros((groups, nb, positions, og), acc.acc)
    strides, rdil = a["window_strides"], a["rhs_dilation"]
    for kpos in np.ndindex(*w.shape[2:]):
        window = (slice(None),) * 3 + tuple(
            slice(kp * rd, kp * rd + (osz - 1) * st + 1, st) if osz else slice(0, 0)
            for kp, rd, osz, st in zip(kpos, rdil, out_sp, strides))
        xs = xg[window].reshape(groups, nb, cg, positions).swapaxes(2, 3)   # (g, nb, p, cg)
        wk = wg[(slice(None),) * 3 + kpos].swapaxes(1, 2)[:, None]        # (g, 1, cg, og)
        total += np.matmul(xs, wk)
    canon = total.transpose(1, 0, 3, 2).reshape(nb, o, *out_sp)
    perm = [0] * (nsp + 2)
    perm[a["output_batch_dimension"]] = 0
    perm[a["output_feature_dimension"]] = 1
    for i, d in enumerate(osd):
        perm[d] = 2 + i
    return [acc.leave(canon.transpose(perm))]


HANDLERS = {"dot_general": _dot_general, "convolution": _convolution}
