import ml_dtypes
import numpy as np
import pytest

from xchip.numerics import compare, default_tolerance, ulp_distance


def test_compare_within_and_outside_tolerance():
    e = np.array([1.0, 2.0, np.nan, np.inf, -0.0], np.float32)
    assert compare(e + np.float32(1e-6) * np.array([1, 1, 0, 0, 0], np.float32), e).ok
    c = compare(np.array([1.0, 2.5, np.nan, np.inf, 0.0], np.float32), e)
    assert not c.ok and c.worst_index == (1,) and c.max_abs_error == pytest.approx(0.5)
    assert not compare(np.array([np.inf]), np.array([-np.inf])).ok
    assert not compare(np.array([np.nan]), np.array([1.0])).ok


def test_compare_requires_same_shape_and_dtype():
    assert "expected float32[3]" in str(compare(np.zeros(2, np.float32), np.zeros(3, np.float32)))
    assert not compare(np.zeros(3, np.float64), np.zeros(3, np.float32)).ok


def test_integers_must_match_exactly():
    assert default_tolerance(np.int32) == (0.0, 0.0)
    assert not compare(np.array([1, 2]), np.array([1, 3])).ok
    assert compare(np.array([True, False]), np.array([True, False])).ok


def test_ulp_distance():
    x = np.array([1.0, -1.0, 0.0, 1e30], np.float32)
    assert list(ulp_distance(np.nextafter(x, np.float32(np.inf)), x)) == [1, 1, 1, 1]
    assert ulp_distance(np.float32(-0.0), np.float32(0.0)) == 0
    assert ulp_distance(np.float32(1.0), np.float32(2.0)).shape == ()
    assert ulp_distance(np.float64(np.nan), np.float64(np.nan)) == 0
    assert ulp_distance(np.float64(np.nan), np.float64(1.0)) > 1e18
    b = np.array([1.0, 1.0078125], ml_dtypes.bfloat16)   # adjacent bf16 values
    assert ulp_distance(b[1:], b[:1])[0] == 1
    assert ulp_distance(np.float64(-1e-300), np.float64(1e-300)) == 2 * ulp_distance(np.float64(1e-300), 0.0)
