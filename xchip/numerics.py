"""Comparing results: tolerances that fit each dtype, and distances in units in the last place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import dtypes

# (rtol, atol) for comparing a whole program's output against jax.jit on the CPU. Loose
# enough for a different (but correct) order of summation and for bf16/f16 intermediates
# that XLA keeps in f32 inside its fusions; tight enough to catch a wrong op.
_TOLERANCE = {
    "f8e4m3fn": (1.5e-1, 1.5e-1), "f8e5m2": (2.5e-1, 2.5e-1),
    "bf16": (3e-2, 3e-2), "f16": (5e-3, 5e-3),
    "f32": (1e-4, 1e-5), "f64": (1e-10, 1e-12),
    "c64": (1e-4, 1e-5), "c128": (1e-10, 1e-12),
}


def default_tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) for a dtype; zero for integers and bool, which must match exactly."""
    d = dtype if isinstance(dtype, dtypes.DType) else dtypes.from_numpy(dtype)
    return _TOLERANCE.get(d.name, (0.0, 0.0))


@dataclass(frozen=True)
class Comparison:
    ok: bool
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...] | None
    actual_value: object = None
    expected_value: object = None
    reason: str = ""

    def __str__(self) -> str:
        if self.reason:
            return self.reason
        where = f" at {list(self.worst_index)}" if self.worst_index is not None else ""
        return (f"max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}{where}"
                + ("" if self.ok else f": got {self.actual_value}, expected {self.expected_value}"))


def compare(actual, expected, rtol: float | None = None, atol: float | None = None) -> Comparison:
    """`actual` against `expected`: |a - e| <= atol + rtol * |e| elementwise (default
    tolerances by dtype). NaN matches NaN; infinities must match exactly; integers and bool
    must be equal; shapes and dtypes must be equal."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape or a.dtype != e.dtype:
        return Comparison(False, float("inf"), float("inf"), None,
                          reason=f"got {a.dtype}{list(a.shape)}, expected {e.dtype}{list(e.shape)}")
    default_rtol, default_atol = default_tolerance(a.dtype)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    if a.size == 0:
        return Comparison(True, 0.0, 0.0, None)
    d = dtypes.from_numpy(a.dtype)
    wide = np.complex128 if d.is_complex else np.float64
    wa, we = a.astype(wide), e.astype(wide)
    with np.errstate(invalid="ignore", over="ignore"):
        same = (wa == we) | (np.isnan(wa) & np.isnan(we))
        diff = np.where(same, 0.0, np.abs(wa - we))
        diff = np.where(np.isnan(diff), np.inf, diff)
        scale = np.where(np.isfinite(we), np.abs(we), 0.0)
        bad = diff > (atol + rtol * scale if (d.is_float or d.is_complex) else 0.0)
        rel = np.where(diff == 0, 0.0, diff / np.maximum(scale, np.finfo(np.float64).tiny))
    flat_worst = int(np.argmax(np.where(bad, np.inf, diff)))
    worst = np.unravel_index(flat_worst, a.shape)
    return Comparison(
        ok=not bool(bad.any()),
        max_abs_error=float(diff.max()),
        max_rel_error=float(np.where(np.isfinite(rel), rel, 0.0).max()),
        worst_index=tuple(int(i) for i in worst),
        actual_value=a[worst],
        expected_value=e[worst],
    )


def _ordered(x: np.ndarray) -> np.ndarray:
    """Floats as signed integers that are ordered like the floats, one step per
    representable value (-0.0 and +0.0 both map to 0)."""
    n = x.dtype.itemsize
    raw = np.ascontiguousarray(x).view(f"u{n}").astype(np.uint64)
    sign = np.uint64(1 << (8 * n - 1))
    magnitude = (raw & (sign - np.uint64(1))).astype(np.int64)
    return np.where(raw & sign, -magnitude, magnitude)


def ulp_distance(actual, expected) -> np.ndarray:
    """How many representable values of the (float) dtype lie between `actual` and
    `expected`: 0 where both are NaN, 2**62 where only one is."""
    a, e = np.asarray(actual), np.asarray(expected)
    oa, oe = _ordered(a).reshape(a.shape), _ordered(e).reshape(e.shape)
    with np.errstate(over="ignore"):
        opposite = (oa < 0) != (oe < 0)
        dist = np.where(opposite, np.minimum(np.abs(oa) + np.abs(oe), 1 << 62), np.abs(oa - oe))
    nan_a, nan_e = np.isnan(a.astype(np.float64)), np.isnan(e.astype(np.float64))
    return np.where(nan_a & nan_e, 0, np.where(nan_a | nan_e, 1 << 62, dist))
