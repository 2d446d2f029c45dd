"""Elementwise ops of the reference executor against XLA:CPU (jax.jit of the jax.lax op).

Inputs are random with edge values mixed in (NaN, infinities, signed zeros, integer limits).
Ops that IEEE defines exactly (+, -, *, /, sqrt, rounding, min/max, ...) must match XLA bit
for bit; transcendental functions within a few units in the last place.
"""

import numpy as np
import pytest
from jax import lax

from reference_oracle import (COMPLEX, F8, FLOATS, INTS, SIGNED, UNSIGNED, T, assert_same, graph, np_dtype, rand, rng_for,
                              run_one, tensor_type, xla, xla_op, xla_stablehlo)
from xchip.runtime.reference import evaluate

SHAPE = (3, 7)

# op name -> (lax function, dtypes, exact)
UNARY = {
    "cosine": (lax.cos, FLOATS + COMPLEX, False),
    "sine": (lax.sin, FLOATS + COMPLEX, False),
    "tan": (lax.tan, FLOATS + COMPLEX, False),
    "tanh": (lax.tanh, FLOATS + COMPLEX, False),
    "exponential": (lax.exp, FLOATS + COMPLEX, False),
    "exponential_minus_one": (lax.expm1, FLOATS + COMPLEX, False),
    "log": (lax.log, FLOATS + COMPLEX, False),
    "log_plus_one": (lax.log1p, FLOATS + COMPLEX, False),
    "logistic": (lax.logistic, FLOATS + COMPLEX, False),
    "rsqrt": (lax.rsqrt, FLOATS + COMPLEX, False),
    "sqrt": (lax.sqrt, FLOATS, True),
    "cbrt": (lax.cbrt, FLOATS, False),
    "ceil": (lax.ceil, FLOATS + F8, True),
    "floor": (lax.floor, FLOATS + F8, True),
    "round_nearest_afz": (lambda x: lax.round(x, lax.RoundingMethod.AWAY_FROM_ZERO), FLOATS, True),
    "round_nearest_even": (lambda x: lax.round(x, lax.RoundingMethod.TO_NEAREST_EVEN), FLOATS, True),
    "negate": (lax.neg, FLOATS + F8 + COMPLEX + INTS, True),
    "sign": (lax.sign, FLOATS + SIGNED + COMPLEX, True),
    "abs": (lax.abs, FLOATS + F8 + SIGNED, True),
    "real": (lax.real, COMPLEX, True),
    "imag": (lax.imag, COMPLEX, True),
    "is_finite": (lax.is_finite, FLOATS + F8, True),
    "not": (lax.bitwise_not, INTS + ["bool"], True),
    "popcnt": (lax.population_count, INTS, True),
    "count_leading_zeros": (lax.clz, INTS, True),
}

BINARY = {
    "add": (lax.add, FLOATS + F8 + COMPLEX + INTS + ["bool"], True),
    "subtract": (lax.sub, FLOATS + F8 + COMPLEX + INTS, True),
    "multiply": (lax.mul, FLOATS + F8 + INTS + ["bool"], True),
    "divide": (lax.div, FLOATS + INTS, True),
    "remainder": (lax.rem, FLOATS + INTS, True),
    "power": (lax.pow, FLOATS + COMPLEX, False),
    "maximum": (lax.max, FLOATS + F8 + COMPLEX + INTS + ["bool"], True),
    "minimum": (lax.min, FLOATS + F8 + COMPLEX + INTS + ["bool"], True),
    "atan2": (lax.atan2, FLOATS, False),
    "and": (lax.bitwise_and, INTS + ["bool"], True),
    "or": (lax.bitwise_or, INTS + ["bool"], True),
    "xor": (lax.bitwise_xor, INTS + ["bool"], True),
    "shift_left": (lax.shift_left, INTS, True),
    "shift_right_arithmetic": (lax.shift_right_arithmetic, INTS, True),
    "shift_right_logical": (lax.shift_right_logical, INTS, True),
}

# exact for real numbers, but a few roundings apart between implementations for complex ones
ROUNDED_FOR_COMPLEX = {"multiply", "divide", "power", "sign"}
ALL_DTYPES = FLOATS + F8 + COMPLEX + INTS + ["bool"]


def _check_all(table, dt, args, *, xla_fallback=None):
    """Every op of `table` that takes `dt`, in one graph and one jax.jit each, compared op
    by op; reports every op that differs."""
    names = [n for n, (_, dts, _) in table.items() if dt in dts]
    assert names, f"no op of this table takes {dt}: the test's parameters are wrong"
    types = [T(a.shape, dt) for a in args]
    g = graph(types, lambda b, *xs: [b.op(n, xs) for n in names])
    got = evaluate(g, list(args))
    fns = [table[n][0] for n in names]
    want = xla(lambda *xs: tuple(f(*xs) for f in fns), *args)
    failures = []
    for n, g_out, w_out in zip(names, got, want):
        exact = table[n][2] and not (dt in COMPLEX and n in ROUNDED_FOR_COMPLEX)
        try:
            assert_same(g_out, w_out, exact=exact, what=f"{n} {dt}")
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


def _takers(table) -> list[str]:
    return [d for d in ALL_DTYPES if any(d in dts for _, dts, _ in table.values())]


@pytest.mark.parametrize("dt", _takers(UNARY))
def test_unary_matches_xla(dt):
    # complex edge values make XLA's complex functions return NaN where the limit is
    # finite, so complex inputs stay finite
    x = rand(dt, SHAPE, rng_for("unary", dt), special=dt not in COMPLEX)
    _check_all(UNARY, dt, [x])


@pytest.mark.parametrize("dt", [d for d in ALL_DTYPES if d != "bool"])
def test_binary_matches_xla(dt):
    rng = rng_for("binary", dt)
    a = rand(dt, SHAPE, rng, special=dt not in COMPLEX)
    b = rand(dt, SHAPE, rng, special=dt not in COMPLEX)
    table = {k: v for k, v in BINARY.items() if not k.startswith("shift")}
    _check_all(table, dt, [a, b])
    if dt in INTS:
        shifts = {k: v for k, v in BINARY.items() if k.startswith("shift")}
        amount = rng.integers(0, 8 * a.dtype.itemsize + 3, SHAPE).astype(a.dtype)
        _check_all(shifts, dt, [a, amount])


def test_bool_ops_match_xla():
    """jax.lax refuses bool add/multiply; StableHLO has them (as or/and)."""
    rng = rng_for("bool")
    a, b = rand("bool", SHAPE, rng), rand("bool", SHAPE, rng)
    for name in ("add", "multiply", "maximum", "minimum", "and", "or", "xor"):
        assert_same(run_one(name, [a, b]), xla_op(name, [a, b], np.bool_), what=name)
    assert_same(run_one("not", [a]), xla_op("not", [a], np.bool_))


def test_complex_multiply_and_divide_within_rounding():
    rng = np.random.default_rng(1)
    for dt in COMPLEX:
        a, b = rand(dt, SHAPE, rng), rand(dt, SHAPE, rng)
        assert_same(run_one("multiply", [a, b]), xla(lax.mul, a, b), what=dt)
        assert_same(run_one("divide", [a, b]), xla(lax.div, a, b), what=dt)


@pytest.mark.parametrize("dt", SIGNED + UNSIGNED)
def test_integer_division_edge_cases(dt):
    """x/0, INT_MIN/-1, x%0 as XLA:CPU computes them."""
    info = np.iinfo(np_dtype(dt))
    signed = info.min < 0
    a = np.array([7, info.min, info.max, 0, 5, info.min if signed else 9, 100], np_dtype(dt))
    b = np.array([0, -1 if signed else 1, 0, 0, 3, 1, -7 if signed else 7], np_dtype(dt))
    for name, fn in (("divide", lax.div), ("remainder", lax.rem)):
        assert_same(run_one(name, [a, b]), xla(fn, a, b), what=f"{name} {dt}")


@pytest.mark.parametrize("dt", ["i8", "i32", "i64", "u8", "u64"])
def test_integer_power_matches_xla(dt):
    """lax.pow has no integer form; run stablehlo.power itself. Exponents stay below 64:
    XLA:CPU reads only the low 6 bits of an integer exponent (3**64 gives 1 there), which
    the spec does not allow; the executor computes the true power (next test)."""
    rng = rng_for("power", dt)
    signed = dt in SIGNED
    npdt = np_dtype(dt)
    base = np.concatenate([np.array([0, 1, 2, 3, 0] + ([-1, -1, -2, -3] if signed else [1, 1, 4, 5]), npdt),
                           rand(dt, (23,), rng, low=-5 if signed else 0, high=5)])
    exp = np.concatenate([np.array([0, 5, 7, 3, -1 if signed else 2] + ([3, -4, -1, 40] if signed else [3, 4, 1, 40]), npdt),
                          rand(dt, (23,), rng, low=-3 if signed else 0, high=63)])
    tt = f"tensor<32x{'ui' if not signed else 'i'}{dt[1:]}>"
    (want,) = xla_stablehlo(f"%0 = stablehlo.power %a0, %a1 : {tt}\nreturn %0 : {tt}", [base, exp],
                            [((32,), base.dtype)])
    assert_same(run_one("power", [base, exp]), want)


def test_integer_power_with_large_exponents_wraps_around():
    base = np.array([3, 3, -3, 5, 2, 7, -1, 1], np.int32)
    exp = np.array([64, 65, 127, 200, 40, 2**31 - 1, 2**31 - 1, 2**31 - 1], np.int32)
    want = [(pow(int(b), int(e), 2**32) + 2**31) % 2**32 - 2**31 for b, e in zip(base, exp)]
    assert run_one("power", [base, exp]).tolist() == want


def test_shifts_by_width_or_more_and_negative_amounts():
    a = np.array([1, -1, 5, -128, 127, 64], np.int8)
    for s in (0, 7, 8, 9, 100, -1):
        b = np.full(a.shape, s, np.int8)
        for name, fn in (("shift_left", lax.shift_left), ("shift_right_arithmetic", lax.shift_right_arithmetic),
                         ("shift_right_logical", lax.shift_right_logical)):
            assert_same(run_one(name, [a, b]), xla(fn, a, b), what=f"{name} by {s}")


def test_min_max_nan_and_signed_zero():
    a = np.array([-0.0, 0.0, np.nan, 1.0, np.nan, -np.inf, -0.0], np.float32)
    b = np.array([0.0, -0.0, 1.0, np.nan, np.nan, np.nan, -0.0], np.float32)
    for name, fn in (("maximum", lax.max), ("minimum", lax.min)):
        got, want = run_one(name, [a, b]), xla(fn, a, b)
        assert_same(got, want, exact=True, what=name)
        assert (np.signbit(got) == np.signbit(want))[[0, 1, 6]].all()
    assert np.signbit(run_one("minimum", [a[:2], b[:2]])).all()
    assert not np.signbit(run_one("maximum", [a[:2], b[:2]])).any()


def test_rounding_edge_cases():
    x = np.array([0.49999997, 0.5, 1.5, 2.5, -0.5, -2.5, -0.0, np.nan, np.inf, 8388609.0, -1.5], np.float32)
    afz = run_one("round_nearest_afz", [x])
    assert afz[0] == 0.0 and afz[1] == 1.0 and afz[3] == 3.0 and afz[5] == -3.0
    assert_same(afz, xla(lambda v: lax.round(v, lax.RoundingMethod.AWAY_FROM_ZERO), x), exact=True)
    even = run_one("round_nearest_even", [x])
    assert even[1] == 0.0 and even[3] == 2.0 and np.signbit(even[4])
    assert_same(even, xla(lambda v: lax.round(v, lax.RoundingMethod.TO_NEAREST_EVEN), x), exact=True)


def test_sign_of_zero_and_nan():
    x = np.array([-0.0, 0.0, np.nan, -3.0, np.inf, -np.inf], np.float64)
    got = run_one("sign", [x])
    assert np.signbit(got[0]) and not np.signbit(got[1]) and np.isnan(got[2])
    assert_same(got, xla(lax.sign, x), exact=True)


def test_abs_and_negate_of_int_min_wrap():
    x = np.array([-128, 127, 0], np.int8)
    assert run_one("abs", [x]).tolist() == [-128, 127, 0]
    assert run_one("negate", [x]).tolist() == [-128, -127, 0]


def test_narrow_floats_compute_in_f32_and_round_once():
    # 1 + 2**-11 is halfway between two f16 values: the f32 sum rounds to even (1.0)
    a = np.array([1.0, 2048.0, 60000.0, 0.1], np.float16)
    b = np.array([2.0 ** -11, 1.0, 60000.0, 0.2], np.float16)
    got = run_one("add", [a, b])
    assert got.dtype == np.float16 and got[0] == 1.0 and np.isinf(got[2])
    assert_same(got, xla(lax.add, a, b), exact=True)


DIRECTIONS = ("EQ", "NE", "LT", "LE", "GT", "GE")
LAX_COMPARE = {"EQ": lax.eq, "NE": lax.ne, "LT": lax.lt, "LE": lax.le, "GT": lax.gt, "GE": lax.ge}


@pytest.mark.parametrize("dt", FLOATS + INTS + ["bool"])
def test_compare_matches_xla(dt):
    rng = rng_for("compare", dt)
    a = rand(dt, (40,), rng, special=True)
    b = np.where(rng.random(40) < 0.3, a, rand(dt, (40,), rng, special=True)).astype(a.dtype)
    ctype = {"f": "FLOAT", "b": "FLOAT", "i": "SIGNED", "u": "UNSIGNED"}[dt[0]]
    ctype = "UNSIGNED" if dt == "bool" else ctype
    g = graph([T((40,), dt)] * 2, lambda b_, x, y: [
        b_.op("compare", [x, y], {"comparison_direction": d, "compare_type": ctype}) for d in DIRECTIONS])
    got = evaluate(g, [a, b])
    want = xla(lambda x, y: tuple(LAX_COMPARE[d](x, y) for d in DIRECTIONS), a, b)
    for d, g_out, w_out in zip(DIRECTIONS, got, want):
        assert_same(g_out, w_out, what=f"compare {d} {dt}")


@pytest.mark.parametrize("dt", COMPLEX)
def test_compare_complex_is_lexicographic(dt):
    """The spec orders complex numbers by (real, imag). XLA:CPU does so for LT and GT, but
    its LE and GE compare only the real parts (LE(1+3j, 1+2j) is true there); the executor
    follows the spec, so LE/GE are checked as LT-or-EQ and GT-or-EQ."""
    rng = rng_for("compare", dt)
    a = rand(dt, (40,), rng)
    b = np.where(rng.random(40) < 0.3, a, rand(dt, (40,), rng)).astype(a.dtype)
    b[:10] = a[:10].real + 1j * rand("f64", (10,), rng)   # equal real parts, different imaginary
    tt = tensor_type((40,), a.dtype)
    body = "\n".join(f"%r{i} = stablehlo.compare {d}, %a0, %a1, FLOAT : ({tt}, {tt}) -> tensor<40xi1>"
                     for i, d in enumerate(DIRECTIONS))
    body += "\nreturn " + ", ".join(f"%r{i}" for i in range(6)) + " : " + ", ".join(["tensor<40xi1>"] * 6)
    want = dict(zip(DIRECTIONS, xla_stablehlo(body, [a, b], [((40,), np.bool_)] * 6)))
    want["LE"] = want["LT"] | want["EQ"]
    want["GE"] = want["GT"] | want["EQ"]
    for d in DIRECTIONS:
        got = run_one("compare", [a, b], {"comparison_direction": d, "compare_type": "FLOAT"})
        assert_same(got, want[d], what=f"compare {d} {dt}")
    le = run_one("compare", [np.array([1 + 3j], a.dtype), np.array([1 + 2j], a.dtype)],
                 {"comparison_direction": "LE", "compare_type": "FLOAT"})
    assert not le[0]


@pytest.mark.parametrize("dt", ["f16", "bf16", "f32", "f64"])
def test_compare_totalorder_matches_xla(dt):
    rng = np.random.default_rng(5)
    a = rand(dt, (30,), rng, special=True)
    neg_nan = np.array(-np.nan if dt != "bf16" else np.float32(-np.nan), np.float64).astype(a.dtype)
    a[:3] = [np.nan, neg_nan, -0.0]
    b = np.concatenate([np.array([np.nan, np.nan, 0.0]).astype(a.dtype), a[3:][::-1]])
    b[-1] = neg_nan
    ty = {"f16": "f16", "bf16": "bf16", "f32": "f32", "f64": "f64"}[dt]
    for direction in ("EQ", "NE", "LT", "LE", "GT", "GE"):
        got = run_one("compare", [a, b], {"comparison_direction": direction, "compare_type": "TOTALORDER"})
        (want,) = xla_stablehlo(
            f"%0 = stablehlo.compare {direction}, %a0, %a1, TOTALORDER : (tensor<30x{ty}>, tensor<30x{ty}>) -> tensor<30xi1>\n"
            "return %0 : tensor<30xi1>", [a, b], [((30,), np.bool_)])
        assert_same(got, want, what=f"TOTALORDER {direction} {dt}")
    lt = run_one("compare", [a, b], {"comparison_direction": "LT", "compare_type": "TOTALORDER"})
    assert not lt[0] and lt[1] and lt[2]   # NaN == NaN; -NaN < NaN; -0 < +0


def test_select_and_clamp():
    rng = np.random.default_rng(11)
    for dt in ("f32", "i8", "bf16", "c64", "u64"):
        pred = rng.random(SHAPE) < 0.5
        a, b = rand(dt, SHAPE, rng, special=dt != "c64"), rand(dt, SHAPE, rng, special=dt != "c64")
        assert_same(run_one("select", [pred, a, b]), xla(lax.select, pred, a, b), exact=True)
        scalar = np.array(True)
        assert_same(run_one("select", [scalar, a, b]), a, exact=True)
    for dt in ("f32", "i16", "f16", "u8"):
        x = rand(dt, SHAPE, rng, special=True)
        lo, hi = np.sort(rand(dt, (2,), rng, low=-3 if dt[0] != "u" else 0, high=3))
        for lo_arr, hi_arr in ((np.array(lo), np.array(hi)), (np.full(SHAPE, lo), np.full(SHAPE, hi))):
            lo_arr, hi_arr = lo_arr.astype(x.dtype), hi_arr.astype(x.dtype)
            assert_same(run_one("clamp", [lo_arr, x, hi_arr]), xla(lax.clamp, lo_arr, x, hi_arr),
                        exact=True, what=f"clamp {dt}")


def test_complex_from_parts():
    rng = np.random.default_rng(2)
    for dt, cdt in (("f32", "c64"), ("f64", "c128")):
        re, im = rand(dt, SHAPE, rng, special=True), rand(dt, SHAPE, rng, special=True)
        got = run_one("complex", [re, im])
        assert got.dtype == np.dtype(np.complex64 if cdt == "c64" else np.complex128)
        assert_same(got, xla(lax.complex, re, im), exact=True)


def test_regions_of_scalars_run_elementwise_in_a_batch():
    """A graph whose outputs mix scalar constants and broadcasts keeps its declared shapes."""
    g = graph([T((), "f32"), T((4,), "f32")], lambda b, s, v: [
        b.op("add", [s, b.const(2.0, "f32")]),
        b.op("multiply", [v, b.op("broadcast_in_dim", [s], {"broadcast_dimensions": ()}, [T((4,), "f32")])])])
    s, v = np.array(3.0, np.float32), np.arange(4, dtype=np.float32)
    got = evaluate(g, [s, v])
    assert got[0].shape == () and got[0] == 5.0
    assert_same(got[1], v * 3, exact=True)


@pytest.mark.parametrize("dt", COMPLEX)
def test_complex_atan2_matches_xla(dt):
    """jax.lax has no complex atan2; StableHLO does (-i log((x + iy) / sqrt(x^2 + y^2)))."""
    rng = rng_for("catan2", dt)
    a, b = rand(dt, (20,), rng), rand(dt, (20,), rng)
    assert_same(run_one("atan2", [a, b]), xla_op("atan2", [a, b], a.dtype))
