"""convert, bitcast_convert and reduce_precision against XLA:CPU, run as StableHLO text so
that the very op is tested (jax.lax.convert_element_type rewrites some conversions, e.g.
float -> bool as `x != 0`)."""

import numpy as np
import pytest
from jax import lax

from reference_oracle import (NAMES, T, assert_same, graph, np_dtype, rand, rng_for, run_one, tensor_type,
                              xla, xla_stablehlo)
from xchip.ir import dtypes
from xchip.runtime.reference import evaluate


def _inputs(name: str, rng) -> np.ndarray:
    """Random values plus the ones conversions get wrong: out-of-range, halfway, NaN."""
    d = dtypes.get(name)
    x = rand(name, (64,), rng, special=True)
    if d.is_float:
        edges = [1e10, -1e10, 300.7, -129.5, 255.5, 256.0, -0.7, 0.7, 2.0 ** 31, -2.0 ** 31 - 1e3,
                 2.0 ** 63, 2.0 ** 64, 65519.0, 65520.0, 1 + 2.0 ** -11, 448.0, 464.0, 57344.0, 61440.0]
        edges = np.array(edges, np.float64)
        if d.bits < 32:
            edges = edges.astype(np.float32)
        with np.errstate(over="ignore"):
            x[: len(edges)] = edges.astype(d.numpy)
    elif d.is_complex:
        x[:4] = [complex(1.7, 2.0), complex(-3.5, -4.0), complex(0.0, 1.0), complex(300.2, 1.0)]
    elif d.is_integer:
        info = np.iinfo(d.numpy)
        edges = [info.max, info.min, 2 ** (d.bits - 2) + 1, 16777217, 2049, 255, 2 ** 53 + 1, 65520]
        x[: len(edges)] = [v if v <= info.max else info.max - 3 for v in edges]
    return x


@pytest.mark.parametrize("src", NAMES)
def test_convert_to_every_dtype_matches_xla(src):
    x = _inputs(src, rng_for("convert", src))
    targets = [n for n in NAMES if n != src]
    g = graph([T(x.shape, src)], lambda b, v: [b.op("convert", [v], result_types=[T(x.shape, n)]) for n in targets])
    got = evaluate(g, [x])
    tt = tensor_type(x.shape, x.dtype)
    body = "\n".join(f"%r{i} = stablehlo.convert %a0 : ({tt}) -> {tensor_type(x.shape, np_dtype(n))}"
                     for i, n in enumerate(targets))
    body += "\nreturn " + ", ".join(f"%r{i}" for i in range(len(targets))) + " : " + ", ".join(
        tensor_type(x.shape, np_dtype(n)) for n in targets)
    want = xla_stablehlo(body, [x], [(x.shape, np_dtype(n)) for n in targets])
    failures = []
    for n, g_out, w_out in zip(targets, got, want):
        try:
            assert_same(g_out, w_out, exact=True, what=f"{src} -> {n}")
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


def test_float_to_int_saturates_and_nan_is_zero():
    x = np.array([np.nan, np.inf, -np.inf, 1e20, -1e20, 3.7, -3.7, -0.5], np.float32)
    got = run_one("convert", [x], result_types=[T(x.shape, "i8")])
    assert got.tolist() == [0, 127, -128, 127, -128, 3, -3, 0]
    got = run_one("convert", [x], result_types=[T(x.shape, "u32")])
    assert got.tolist() == [0, 2 ** 32 - 1, 0, 2 ** 32 - 1, 0, 3, 0, 0]


def test_complex_to_real_takes_the_real_part_and_to_bool_tests_it():
    z = np.array([1.5 + 2j, 0 + 1j, -3 + 0j], np.complex64)
    assert run_one("convert", [z], result_types=[T(z.shape, "f32")]).tolist() == [1.5, 0.0, -3.0]
    assert run_one("convert", [z], result_types=[T(z.shape, "bool")]).tolist() == [True, False, True]


def test_f64_reaches_bf16_through_f32_like_xla():
    # 1 + 2**-8 + 2**-30: direct rounding gives 1 + 2**-7, through f32 the tie rounds to 1.0
    x = np.array([1 + 2.0 ** -8 + 2.0 ** -30], np.float64)
    assert run_one("convert", [x], result_types=[T((1,), "bf16")]).astype(np.float64)[0] == 1.0


# The spec (and XLA) bitcast complex numbers only to complex numbers of the same width.
BITCAST_PAIRS = [(a, b) for a in NAMES for b in NAMES
                 if a != b and "bool" not in (a, b) and not dtypes.get(a).is_complex and not dtypes.get(b).is_complex]


def _bitcast_shape(src, dst, shape):
    sa, sb = dtypes.get(src).itemsize, dtypes.get(dst).itemsize
    if sa == sb:
        return shape, shape
    if sa > sb:
        return shape, shape + (sa // sb,)
    return shape + (sb // sa,), shape


@pytest.mark.parametrize("src", [n for n in NAMES if n != "bool" and n[0] != "c"])
def test_bitcast_convert_matches_xla(src):
    rng = rng_for("bitcast", src)
    targets = [b for a, b in BITCAST_PAIRS if a == src]
    failures = []
    for dst in targets:
        in_shape, out_shape = _bitcast_shape(src, dst, (3, 2))
        x = rand(src, in_shape, rng)
        got = run_one("bitcast_convert", [x], result_types=[T(out_shape, dst)])
        rt = tensor_type(out_shape, np_dtype(dst))
        (want,) = xla_stablehlo(f"%0 = stablehlo.bitcast_convert %a0 : ({tensor_type(in_shape, x.dtype)}) -> {rt}\n"
                                f"return %0 : {rt}", [x], [(out_shape, np_dtype(dst))])
        try:
            assert_same(got, want, exact=True, what=f"{src} -> {dst}")
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


def test_bitcast_to_narrower_type_is_little_endian():
    x = np.array([0x01020304], np.uint32)
    got = run_one("bitcast_convert", [x], result_types=[T((1, 4), "u8")])
    assert got.tolist() == [[4, 3, 2, 1]]
    back = run_one("bitcast_convert", [got], result_types=[T((1,), "u32")])
    assert back.tolist() == [0x01020304]


@pytest.mark.parametrize("dt", ["f16", "bf16", "f32", "f64", "f8e4m3fn", "f8e5m2"])
def test_reduce_precision_matches_xla(dt):
    rng = rng_for("reduce_precision", dt)
    x = rand(dt, (64,), rng, special=True, low=-1e4, high=1e4)
    with np.errstate(over="ignore"):
        x[:6] = np.array([1e-3, 3e-5, 65504, 1.0 + 2.0 ** -5, 1.0 + 3 * 2.0 ** -6, -1e-7]).astype(np.float32).astype(x.dtype)
    for e, m in ((5, 10), (8, 7), (4, 3), (5, 2), (8, 23), (2, 1), (11, 52), (3, 0)):
        got = run_one("reduce_precision", [x], {"exponent_bits": e, "mantissa_bits": m})
        want = xla(lambda v: lax.reduce_precision(v, exponent_bits=e, mantissa_bits=m), x)
        assert_same(got, want, exact=True, what=f"reduce_precision {dt} e{e}m{m}")
