"""Scalar math as TIR expressions that LLVM vectorizes: the f32 transcendental functions,
bf16 rounding, IEEE min/max, saturating float->int conversion.

Why not TVM's intrinsics: `T.exp`/`T.log` on f32 become scalar libm calls (about 7 ns per
element, no SIMD), and `T.tanh` is a formula that loses thousands of ULP near 0. The
functions here are Cephes-style range reductions with minimax polynomials built from plain
arithmetic, bit casts and selects only, so a vectorized loop stays vectorized. Each is
checked against the reference executor (f64 math rounded to f32) in
tests/test_cpu_lowering.py: a few ULP at most, denormal results kept, specials (NaN, inf,
-0.0, the overflow and underflow edges) exact.

f64 keeps the libm calls (correctly rounded or nearly, like numpy's), since speed matters
less there than matching the reference. bf16 never uses TVM's own bf16 arithmetic, which
drops intermediate roundings and turns some NaNs into zeros: values are converted with the
bit operations below (round to nearest even, NaN kept quiet with its sign, as ml_dtypes).
"""

from __future__ import annotations

import math

import tvm
from tvm import tirx as tir


def dtype_of(e) -> str:
    return str(e.ty)


_TRIVIAL_CALLS = ("tirx.reinterpret", "te.tensor_load", "tirx.tensor_load")


_Call = tvm.ir.expr.Call


def _trivial(x, depth: int = 0) -> bool:
    if isinstance(x, (tir.Var, tir.IntImm, tir.FloatImm)):
        return True
    if type(x).__name__ == "BufferLoad":
        return True
    if isinstance(x, _Call) and depth < 4:
        name = str(x.op.name) if hasattr(x.op, "name") else ""
        if name in _TRIVIAL_CALLS or name.endswith("tensor_load"):
            return name.endswith("tensor_load") or all(_trivial(a, depth + 1) for a in x.args)
    return False


_counter = [0]


USE_LET = False   # see te_base.Ctx: TVM's analyzers expand Let bindings anyway


def bind(values, fn):
    """fn(*vars) with each non-trivial value bound once by a `Let`, so an expression used
    several times is computed (and, in TIR, printed and simplified) once."""
    values = list(values)
    if not USE_LET:
        return fn(*values)
    names = []
    vars_ = []
    for v in values:
        if _trivial(v) or not dtype_of(v).startswith("float"):
            vars_.append(v)
            names.append(None)
        else:
            _counter[0] += 1
            var = tir.Var(f"t{_counter[0]}", dtype_of(v))
            vars_.append(var)
            names.append(var)
    body = fn(*vars_)
    for var, v in reversed(list(zip(names, values))):
        if var is not None:
            body = tir.Let(var, v, body)
    return body


def bound(fn):
    """Decorator: every argument of `fn` bound with `bind`."""
    def wrapper(*args):
        return bind(args, fn)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def const(value, dtype: str):
    return tir.const(value, dtype)


def select(cond, a, b):
    return tir.Select(cond, a, b)


def bits_type(dtype: str) -> str:
    return {"float16": "uint16", "bfloat16": "uint16", "float32": "uint32", "float64": "uint64"}[dtype]


def as_bits(x):
    return tir.reinterpret(bits_type(dtype_of(x)), x)


_MAGNITUDE = {"float64": (0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000), "float32": (0x7FFFFFFF, 0x7F800000)}


def _magnitude_and_inf(x):
    """(|x| as bits, the bits of infinity): comparing them tests NaN and infinity on the bits
    (vectorizes, and no fast-math setting can fold it away)."""
    dt = dtype_of(x)
    if dt not in _MAGNITUDE:
        raise TypeError(dt)
    ut = bits_type(dt)
    mask, inf = _MAGNITUDE[dt]
    return as_bits(x) & const(mask, ut), const(inf, ut)


@bound
def isnan(x):
    magnitude, inf = _magnitude_and_inf(x)
    return magnitude > inf


@bound
def isinf(x):
    magnitude, inf = _magnitude_and_inf(x)
    return magnitude == inf


@bound
def isfinite(x):
    dt = dtype_of(x)
    u = as_bits(x)
    ut = bits_type(dt)
    if dt == "float64":
        return (u & const(0x7FF0000000000000, ut)) != const(0x7FF0000000000000, ut)
    return (u & const(0x7F800000, ut)) != const(0x7F800000, ut)


@bound
def signbit(x):
    dt = dtype_of(x)
    ut = bits_type(dt)
    bits = {"uint16": 15, "uint32": 31, "uint64": 63}[ut]
    return (as_bits(x) >> const(bits, ut)) != const(0, ut)


def neg(x):
    """-x exactly (sign bit flipped; 0 - x would give +0 for +0)."""
    d = dtype_of(x)
    ut = bits_type(d)
    return tir.reinterpret(d, as_bits(x) ^ const(1 << ({"uint16": 15, "uint32": 31, "uint64": 63}[ut]), ut))


def abs_(x):
    d = dtype_of(x)
    ut = bits_type(d)
    return tir.reinterpret(d, as_bits(x) & const((1 << ({"uint16": 15, "uint32": 31, "uint64": 63}[ut])) - 1, ut))


# --- bf16 / f16 ---------------------------------------------------------------------------

def bf16_to_f32(x):
    """A bfloat16 expression (storage) as f32, exactly."""
    u = tir.reinterpret("uint16", x).astype("uint32")
    return tir.reinterpret("float32", u << const(16, "uint32"))


def bf16_of_grid_f32(x):
    """An f32 that is a bfloat16 value (low 16 bits zero, NaN included) as that bfloat16:
    its high half, no rounding."""
    return tir.reinterpret("bfloat16", (tir.reinterpret("uint32", x) >> const(16, "uint32")).astype("uint16"))


def _bf16_bits(x):
    u = tir.reinterpret("uint32", x)
    u32 = "uint32"
    nan = (u & const(0x7FFFFFFF, u32)) > const(0x7F800000, u32)
    rounded = (u + const(0x7FFF, u32) + ((u >> const(16, u32)) & const(1, u32))) >> const(16, u32)
    quiet = ((u >> const(16, u32)) & const(0x8000, u32)) | const(0x7FC0, u32)
    return select(nan, quiet, rounded).astype("uint16")


def round_f32_to(x, dtype: str):
    """An f32 value rounded to `dtype` (bfloat16, float16) and back to f32."""
    if dtype == "bfloat16":
        # the f32 with the low 16 bits rounded away (nearest even; NaN made quiet), without a
        # bf16-typed expression in between (TVM's bf16 legalization rewrites those)
        bits = bind([x], _bf16_bits).astype("uint32") << const(16, "uint32")
        return tir.reinterpret("float32", bits)
    if dtype == "float16":
        return x.astype("float16").astype("float32")
    if dtype == "float32":
        return x
    raise TypeError(dtype)


# --- IEEE maximum / minimum ------------------------------------------------------------------

@bound
def float_maximum(a, b):
    """NaN if either is NaN, +0 above -0 (the reference's `float_maximum`)."""
    r = select(a > b, a, b)
    both_zero = tir.And(a == const(0, dtype_of(a)), b == const(0, dtype_of(b)))
    r = select(tir.And(both_zero, tir.Not(signbit(a))), a, r)
    return select(isnan(a), a, r)


@bound
def float_minimum(a, b):
    r = select(a < b, a, b)
    both_zero = tir.And(a == const(0, dtype_of(a)), b == const(0, dtype_of(b)))
    r = select(tir.And(both_zero, signbit(a)), a, r)
    return select(isnan(a), a, r)


# --- f32 transcendental functions ------------------------------------------------------------

_F = "float32"
_I = "int32"
LN2_HI = 0.693359375            # 355/512: n * LN2_HI is exact for |n| < 2**15
LN2_LO = -2.12194440e-4
LOG2E = 1.44269504088896341
EXP_MAX = 88.72283935546875     # largest f32 whose exp is finite
EXP_MIN = -103.97283935546875   # below: exp rounds to +0 (half the smallest denormal)


def _f(v):
    return const(v, _F)


def _poly(x, coefficients):
    """Horner: coefficients from the highest power down."""
    acc = _f(coefficients[0])
    for c in coefficients[1:]:
        acc = acc * x + _f(c)
    return acc


def _pow2(n):
    """2**n as f32 for an int32 n in [-126, 127]."""
    return tir.reinterpret(_F, (n + const(127, _I)) << const(23, _I))


@bound
def _scale(p, n):
    """p * 2**n for n in [-152, 128] without overflow in the scale factors: two factors, so
    a denormal result is rounded once."""
    half = tir.shift_right(n, const(1, _I))  # floor(n / 2), in [-76, 64]
    return p * _pow2(half) * _pow2(n - half)


@bound
def _exp_core(x):
    """exp(x) for a finite x in [EXP_MIN, EXP_MAX]; Cephes expf (about 1 ULP)."""
    def with_n(n_f):
        def with_r(r):
            p = _poly(r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                          1.6666665459e-1, 5.0000001201e-1])
            return _scale(p * r * r + r + _f(1.0), n_f.astype(_I))
        return bind([x - n_f * _f(LN2_HI) - n_f * _f(LN2_LO)], with_r)
    return bind([tir.floor(x * _f(LOG2E) + _f(0.5))], with_n)


@bound
def exp_f32(x):
    # clamped into the core's range: a NaN or out-of-range x gives some finite value there,
    # which the selects below replace
    safe = tir.Max(tir.Min(x, _f(EXP_MAX)), _f(EXP_MIN))
    r = _exp_core(safe)
    r = select(x > _f(EXP_MAX), _f(math.inf), r)
    r = select(x < _f(EXP_MIN), _f(0.0), r)
    return select(isnan(x), x, r)


@bound
def _expm1_poly(r):
    """expm1(r) for |r| <= ln2/2: Taylor to r**9 (truncation below 1e-9 relative)."""
    q = _poly(r, [1 / 362880, 1 / 40320, 1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2])
    return r + r * r * q


@bound
def expm1_f32(x):
    small = tir.And(x > _f(-0.34657359), x < _f(0.34657359))
    safe = select(isnan(x), _f(0.0), select(x > _f(EXP_MAX), _f(0.0), select(x < _f(-30.0), _f(0.0), x)))

    def with_safe(safe):
        def with_n(n_f):
            def with_pn(p, n):
                over = n > const(127, _I)
                # 2**n * (p + 1) - 1 = 2**n * p + (2**n - 1): both terms exact for n <= 24;
                # n == 128 (x above 88.38): 2**127 * (p + 1) * 2, finite below EXP_MAX
                return bind([_pow2(select(over, const(127, _I), n))], lambda t: select(
                    over, (t * p + t) * _f(2.0), t * p + (t - _f(1.0))))
            r = safe - n_f * _f(LN2_HI) - n_f * _f(LN2_LO)
            return bind([_expm1_poly(r), n_f.astype(_I)], with_pn)
        big = bind([tir.floor(safe * _f(LOG2E) + _f(0.5))], with_n)
        return select(small, _expm1_poly(safe), big)
    r_out = bind([safe], with_safe)
    r_out = select(x > _f(EXP_MAX), _f(math.inf), r_out)
    r_out = select(x < _f(-30.0), _f(-1.0), r_out)
    # keep -0.0 (and tiny x exactly): expm1(x) == x below 2**-25
    r_out = select(tir.And(x > _f(-2.0 ** -25), x < _f(2.0 ** -25)), x, r_out)
    return select(isnan(x), x, r_out)


SQRTHF = 0.707106781186547524


@bound
def log_f32(x):
    """Cephes logf (about 1 ULP), denormal inputs scaled up first."""
    tiny = x < _f(1.1754943508222875e-38)

    def with_u(u):
        e = ((u >> const(23, _I)) & const(0xFF, _I)) - const(126, _I)
        e = select(tiny, e - const(23, _I), e)
        m = tir.reinterpret(_F, (u & const(0x007FFFFF, _I)) | const(0x3F000000, _I))   # [0.5, 1)

        def with_m(m):
            low = m < _f(SQRTHF)
            e2 = select(low, e - const(1, _I), e)
            m2 = select(low, m + m - _f(1.0), m - _f(1.0))

            def with_mz(m, z, fe):
                y = _poly(m, [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                              1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                              3.3333331174e-1]) * m * z
                y = y + fe * _f(LN2_LO)
                y = y - _f(0.5) * z
                return m + y + fe * _f(LN2_HI)
            return bind([m2], lambda m2: bind([m2 * m2, e2.astype(_F)], lambda z, fe: with_mz(m2, z, fe)))
        return bind([m], with_m)
    r = bind([tir.reinterpret("int32", select(tiny, x * _f(8388608.0), x))], with_u)   # * 2**23
    r = select(x == _f(math.inf), x, r)
    r = select(x == _f(0.0), _f(-math.inf), r)
    r = select(x < _f(0.0), _f(math.nan), r)
    return select(isnan(x), x, r)


@bound
def log1p_f32(x):
    """log(1 + x) with Goldberg's correction: log(u) * x / (u - 1), u = 1 + x rounded."""
    def with_u(u):
        # u - 1 behind a bit cast: TVM's simplifier would fold (x + 1) - 1 into x
        opaque_u = tir.reinterpret(_F, tir.reinterpret("uint32", u))
        return bind([opaque_u - _f(1.0)], lambda d: select(
            d == _f(0.0), x, log_f32(u) * (x / select(d == _f(0.0), _f(1.0), d))))
    r = bind([x + _f(1.0)], with_u)
    r = select(x == _f(math.inf), x, r)
    r = select(x == _f(-1.0), _f(-math.inf), r)
    r = select(x < _f(-1.0), _f(math.nan), r)
    return select(isnan(x), x, r)


@bound
def tanh_f32(x):
    """Cephes tanhf: an odd polynomial below 0.625, 1 - 2 / (exp(2|x|) + 1) above."""
    def with_ax(ax, z):
        small = _poly(z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                          1.33314422036e-1, -3.33332819422e-1]) * z * x + x
        e = exp_f32(_f(2.0) * select(ax > _f(20.0), _f(20.0), ax))
        big = bind([_f(1.0) - _f(2.0) / (e + _f(1.0))], lambda big: select(x < _f(0.0), neg(big), big))
        return select(ax < _f(0.625), small, big)
    r = bind([abs_(x), x * x], with_ax)
    return select(isnan(x), x, r)


@bound
def logistic_f32(x):
    """The reference's form: e = exp(-|x|), then 1/(1+e) or e/(1+e) by the sign of x."""
    r = bind([exp_f32(neg(abs_(x)))], lambda e: bind([_f(1.0) + e], lambda d: select(
        x >= _f(0.0), _f(1.0) / d, e / d)))
    return select(isnan(x), x, r)


# --- float -> int ----------------------------------------------------------------------------

_INT_RANGE = {
    "int8": (-2 ** 7, 2 ** 7 - 1), "int16": (-2 ** 15, 2 ** 15 - 1), "int32": (-2 ** 31, 2 ** 31 - 1),
    "int64": (-2 ** 63, 2 ** 63 - 1), "uint8": (0, 2 ** 8 - 1), "uint16": (0, 2 ** 16 - 1),
    "uint32": (0, 2 ** 32 - 1), "uint64": (0, 2 ** 64 - 1),
}


def float_to_int(x, dtype: str):
    """Truncate toward zero, saturate at the type's limits, NaN to 0 (XLA:CPU). `x` is f32 or
    f64; the limits compared against are powers of two (or 0), exact in either."""
    lo, hi = _INT_RANGE[dtype]
    fdt = dtype_of(x)

    def body(x, t):
        over = t >= const(float(hi) + 1.0, fdt)
        under = t < const(float(lo), fdt)
        bad = tir.Or(tir.Or(over, under), isnan(x))
        v = select(bad, const(0.0, fdt), t).astype(dtype)
        v = select(over, const(hi, dtype), v)
        return select(under, const(lo, dtype), v)
    return bind([x], lambda x: bind([tir.trunc(x)], lambda t: body(x, t)))
