"""Numeric building blocks of the reference executor: precision, rounding, ordering.

Floating-point rule (what XLA:CPU does): f16, bf16 and the f8 types compute in f32 and round
once to their own type. The executor computes every real float op in f64 and rounds the
result to f32 first and then to the narrow type: for +, -, *, /, sqrt the f64 result rounded
to f32 equals the correctly rounded f32 result (53 >= 2*24 + 2 bits), and for
transcendental functions it is the best f32 answer, which XLA's own approximations are a few
ULP away from. Complex numbers compute in complex128 likewise.

Integers compute in their own numpy type, which wraps around. Callers run inside
`np.errstate(all="ignore")` so that wrap-around, inf and NaN stay silent.
"""

from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.dtypes import DType

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
C128 = np.dtype(np.complex128)

_NARROW_FLOATS = frozenset(d.numpy for d in dtypes.ALL if d.is_float and d.bits < 32)
_SIGNED_OF_WIDTH = {1: np.dtype(np.int8), 2: np.dtype(np.int16), 4: np.dtype(np.int32), 8: np.dtype(np.int64)}
_UNSIGNED_OF_WIDTH = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32), 8: np.dtype(np.uint64)}


def dtype_of(x: np.ndarray) -> DType:
    return dtypes.from_numpy(x.dtype)


def kind(x: np.ndarray) -> str:
    """"bool" | "int" | "uint" | "float" | "complex" for an array of an xchip dtype."""
    return dtypes.from_numpy(x.dtype).kind


def is_narrow_float(dt: np.dtype) -> bool:
    return np.dtype(dt) in _NARROW_FLOATS


def signed_view_type(dt: np.dtype) -> np.dtype:
    return _SIGNED_OF_WIDTH[np.dtype(dt).itemsize]


def unsigned_view_type(dt: np.dtype) -> np.dtype:
    return _UNSIGNED_OF_WIDTH[np.dtype(dt).itemsize]


def contiguous(x: np.ndarray) -> np.ndarray:
    """x in C order, keeping its shape (np.ascontiguousarray turns a scalar into shape (1,))."""
    x = np.asarray(x)
    return x if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(x.shape)


def as_unsigned(x: np.ndarray) -> np.ndarray:
    """The same bits, read as an unsigned integer of the same width."""
    return contiguous(x).view(unsigned_view_type(x.dtype))


def as_signed(x: np.ndarray) -> np.ndarray:
    return contiguous(x).view(signed_view_type(x.dtype))


def wide(x: np.ndarray) -> np.ndarray:
    """x in the precision the executor computes float math in: f64, or c128 for complex."""
    k = kind(x)
    if k == "complex":
        return x.astype(C128)
    if k == "float":
        return x.astype(F64) if x.dtype != F64 else x
    raise TypeError(f"wide() of non-float dtype {x.dtype}")


def upcast_real(x: np.ndarray) -> np.ndarray:
    """Narrow floats as f32 (exact), so that numpy comparisons and tests are native."""
    return x.astype(F32) if is_narrow_float(x.dtype) else x


def round_float(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Round an f64 (or c128) result to the float (complex) dtype `dt`, through f32 for the
    narrow types as XLA does."""
    dt = np.dtype(dt)
    if dt in _NARROW_FLOATS:
        return np.asarray(x, dtype=F32).astype(dt)
    return np.asarray(x).astype(dt)


def float_to_int(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Float to integer as XLA:CPU converts: truncate toward zero, saturate at the type's
    limits, NaN to 0."""
    dt = np.dtype(dt)
    info = np.iinfo(dt)
    t = np.trunc(np.asarray(x, dtype=F64))
    nan = np.isnan(t)
    # float(info.max) + 1 is a power of two, hence exact in f64 for every integer width.
    over = t >= float(info.max) + 1.0
    under = t < float(info.min)
    out = np.where(nan | over | under, 0.0, t).astype(dt)
    out = np.where(over, np.array(info.max, dt), out)
    out = np.where(under, np.array(info.min, dt), out)
    return out.astype(dt, copy=False)


def convert(x: np.ndarray, dst: DType) -> np.ndarray:
    """`convert` semantics: bool <-> anything as 0/1 and != 0, floats to integers
    saturating, complex to anything else takes the real part, f64 and integers reach the
    narrow floats through f32 (checked against XLA:CPU: f64 -> bf16/f16 rounds twice)."""
    src = dtype_of(x)
    out_dt = dst.numpy
    if src == dst:
        return x
    if src.is_complex and not dst.is_complex:
        x, src = x.real.copy(), dtypes.real_part(src)
        if src == dst:
            return x
    if dst.kind == "bool":
        return upcast_real(x) != 0
    if src.kind == "bool":
        x, src = x.astype(np.uint8), dtypes.U8
    if dst.is_complex:
        if src.is_complex:
            return x.astype(out_dt)
        return convert(x, dtypes.real_part(dst)).astype(out_dt)
    if dst.is_float:
        if is_narrow_float(out_dt) and not (src.is_float and src.bits < 32):
            return x.astype(F32).astype(out_dt)
        if is_narrow_float(x.dtype):
            x = x.astype(F32)
        return x.astype(out_dt)
    # integer destination
    if src.is_float:
        return float_to_int(upcast_real(x), out_dt)
    return x.astype(out_dt)


def total_order_key(x: np.ndarray) -> np.ndarray:
    """Signed integers that order floats as IEEE totalOrder does:
    -NaN < -Inf < ... < -0 < +0 < ... < +Inf < +NaN."""
    s = as_signed(x)
    bits = 8 * x.dtype.itemsize
    flip = (s >> (bits - 1)) & np.array(np.iinfo(s.dtype).max, s.dtype)
    return s ^ flip


def float_maximum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IEEE maximum: NaN if either is NaN, and +0 above -0 (as XLA:CPU)."""
    a32, b32 = upcast_real(a), upcast_real(b)
    r = np.where(a32 > b32, a, b)
    r = np.where(np.isnan(a32), a, r)
    both_zero = (a32 == 0) & (b32 == 0)
    return np.where(both_zero & ~np.signbit(a32), a, r)


def float_minimum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IEEE minimum: NaN if either is NaN, and -0 below +0."""
    a32, b32 = upcast_real(a), upcast_real(b)
    r = np.where(a32 < b32, a, b)
    r = np.where(np.isnan(a32), a, r)
    both_zero = (a32 == 0) & (b32 == 0)
    return np.where(both_zero & np.signbit(a32), a, r)


def complex_less(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lexicographic (real, imag) order, the one the spec gives complex min/max/compare."""
    return (a.real < b.real) | ((a.real == b.real) & (a.imag < b.imag))


def maximum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = kind(a)
    if k == "float":
        return float_maximum(a, b)
    if k == "complex":
        return np.where(complex_less(b, a), a, b)
    return np.maximum(a, b)


def minimum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = kind(a)
    if k == "float":
        return float_minimum(a, b)
    if k == "complex":
        return np.where(complex_less(a, b), a, b)
    return np.minimum(a, b)


_ORDERED = {
    "EQ": np.equal, "NE": np.not_equal, "LT": np.less, "LE": np.less_equal,
    "GT": np.greater, "GE": np.greater_equal,
}


def compare(a: np.ndarray, b: np.ndarray, direction: str, compare_type: str) -> np.ndarray:
    k = kind(a)
    fn = _ORDERED[direction]
    if k == "float":
        if compare_type == "TOTALORDER":
            # totalOrder also decides EQ: -0 != +0, and NaNs are equal only bit for bit
            # (checked against XLA:CPU).
            return fn(total_order_key(a), total_order_key(b))
        return fn(upcast_real(a), upcast_real(b))
    if k == "complex":
        ar, ai, br, bi = a.real, a.imag, b.real, b.imag
        if compare_type == "TOTALORDER":
            ar, ai, br, bi = (total_order_key(contiguous(v)) for v in (ar, ai, br, bi))
        if direction in ("EQ", "NE"):
            eq = (ar == br) & (ai == bi)
            return eq if direction == "EQ" else ~eq
        strict = {"LT": np.less, "LE": np.less, "GT": np.greater, "GE": np.greater}[direction]
        last = fn
        return strict(ar, br) | ((ar == br) & last(ai, bi))
    return fn(a, b)


# --- integer helpers -----------------------------------------------------------------------

def _to_u64(x: np.ndarray) -> np.ndarray:
    """Integers as uint64 holding their value modulo 2**64 (sign-extended)."""
    if x.dtype.kind == "i":
        return x.astype(np.int64).view(np.uint64)
    return x.astype(np.uint64)


def integer_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Truncating division as XLA:CPU: x/0 is -1 (all ones for unsigned), INT_MIN/-1 is
    INT_MIN."""
    dt = a.dtype
    if dt.kind == "u":
        safe = np.where(b == 0, np.array(1, dt), b)
        return np.where(b == 0, np.array(np.iinfo(dt).max, dt), a // safe).astype(dt, copy=False)
    neg = (a < 0) ^ (b < 0)
    ua, ub = np.abs(a.astype(np.int64)).view(np.uint64), np.abs(b.astype(np.int64)).view(np.uint64)
    # abs of INT64_MIN stays INT64_MIN, whose uint64 view is 2**63: the right magnitude.
    safe = np.where(ub == 0, np.uint64(1), ub)
    q = ua // safe
    q = np.where(neg, (~q) + np.uint64(1), q).view(np.int64)
    q = np.where(b == 0, np.int64(-1), q)
    return q.astype(dt)


def integer_remainder(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Remainder with the sign of the dividend; x % 0 is x (XLA:CPU), INT_MIN % -1 is 0."""
    dt = a.dtype
    if dt.kind == "u":
        safe = np.where(b == 0, np.array(1, dt), b)
        return np.where(b == 0, a, a % safe).astype(dt, copy=False)
    ua, ub = np.abs(a.astype(np.int64)).view(np.uint64), np.abs(b.astype(np.int64)).view(np.uint64)
    safe = np.where(ub == 0, np.uint64(1), ub)
    r = ua % safe
    r = np.where(a < 0, (~r) + np.uint64(1), r).view(np.int64)
    r = np.where(b == 0, a.astype(np.int64), r)
    return r.astype(dt)


def integer_power(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exponentiation by squaring, wrapping around. A negative exponent gives 1 for base 1,
    +-1 for base -1 and 0 otherwise (XLA:CPU, base 0 included)."""
    dt = a.dtype
    base = _to_u64(a)
    exp = _to_u64(b)
    negative = (b < 0) if dt.kind == "i" else np.zeros(b.shape, bool)
    exp = np.where(negative, np.uint64(0), exp)
    result = np.ones(np.broadcast(base, exp).shape, np.uint64)
    base = np.broadcast_to(base, result.shape).copy()
    exp = np.broadcast_to(exp, result.shape).copy()
    while exp.any():
        odd = (exp & np.uint64(1)).astype(bool)
        result = np.where(odd, result * base, result)
        base = base * base
        exp = exp >> np.uint64(1)
    out = result.astype(dt)
    if dt.kind == "i":
        one, minus_one = np.array(1, dt), np.array(-1, dt)
        odd_exp = (b.astype(np.int64) & 1) == 1
        neg_result = np.where(a == 1, one, np.where(a == -1, np.where(odd_exp, minus_one, one), np.array(0, dt)))
        out = np.where(negative, neg_result, out)
    return out.astype(dt, copy=False)


def shift_left(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    bits = 8 * a.dtype.itemsize
    ua, ub = as_unsigned(a), as_unsigned(b)
    too_far = ub >= bits
    amount = np.where(too_far, 0, ub).astype(ua.dtype)
    r = np.where(too_far, np.array(0, ua.dtype), ua << amount).astype(ua.dtype)
    return r.view(a.dtype)


def shift_right_logical(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    bits = 8 * a.dtype.itemsize
    ua, ub = as_unsigned(a), as_unsigned(b)
    too_far = ub >= bits
    amount = np.where(too_far, 0, ub).astype(ua.dtype)
    r = np.where(too_far, np.array(0, ua.dtype), ua >> amount).astype(ua.dtype)
    return r.view(a.dtype)


def shift_right_arithmetic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sign-filling shift of the bits read as signed (unsigned types too, as XLA); shifting
    by the width or more leaves only the sign."""
    bits = 8 * a.dtype.itemsize
    sa, ub = as_signed(a), as_unsigned(b)
    amount = np.where(ub >= bits, bits - 1, ub).astype(sa.dtype)
    return contiguous(sa >> amount).view(a.dtype)


def popcount(a: np.ndarray) -> np.ndarray:
    return np.bitwise_count(as_unsigned(a)).astype(a.dtype)


def count_leading_zeros(a: np.ndarray) -> np.ndarray:
    u = as_unsigned(a).astype(np.uint64)
    bits = 8 * a.dtype.itemsize
    length = np.zeros(u.shape, np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        high = u >> np.uint64(step)
        has = high != 0
        length = np.where(has, length + step, length)
        u = np.where(has, high, u)
    length = length + (u != 0)
    return (bits - length).astype(a.dtype)


# --- floats --------------------------------------------------------------------------------

def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero, exactly (x + 0.5 would round 0.49999997 up)."""
    t = np.trunc(x)
    frac = np.abs(x - t)
    return np.where(frac >= 0.5, t + np.copysign(1.0, x), t)


# (exponent bits, explicit mantissa bits) of each float layout
FLOAT_LAYOUT = {
    "f16": (5, 10), "bf16": (8, 7), "f32": (8, 23), "f64": (11, 52),
    "f8e4m3fn": (4, 3), "f8e5m2": (5, 2),
}


def reduce_precision(x: np.ndarray, exponent_bits: int, mantissa_bits: int) -> np.ndarray:
    """XLA's reduce-precision on the bit pattern (as the StableHLO interpreter):
    round the mantissa to nearest even, flush values below the reduced range to signed zero,
    overflow to signed infinity. NaN stays NaN, with no mantissa bits too (XLA:CPU; the
    StableHLO interpreter gives +inf there).
    The f8 types go through f16, which holds both of their layouts exactly, denormals
    included (as XLA:CPU: through f32, an f8e5m2 denormal would underflow at 5 exponent bits)."""
    name = dtype_of(x).name
    if name.startswith("f8"):
        return reduce_precision(x.astype(np.float16), exponent_bits, mantissa_bits).astype(x.dtype)
    src_exp, src_man = FLOAT_LAYOUT[name]
    bits = 8 * x.dtype.itemsize
    ut = unsigned_view_type(x.dtype)
    one = ut.type(1)
    v = as_unsigned(x).copy()
    if mantissa_bits < src_man:
        shift = src_man - mantissa_bits
        last_bit_mask = ut.type(1 << shift)
        base_bias = ut.type((1 << (shift - 1)) - 1)
        last_bit = (v & last_bit_mask) >> ut.type(shift)
        v = (v + last_bit + base_bias) & ~(last_bit_mask - one)
    if exponent_bits < src_exp:
        sign_mask = ut.type(1 << (bits - 1))
        exp_mask = ut.type(((1 << src_exp) - 1) << src_man)
        bias = (1 << (src_exp - 1)) - 1
        reduced_bias = (1 << (exponent_bits - 1)) - 1
        max_exp = ut.type((bias + reduced_bias) << src_man)
        min_exp = ut.type((bias - reduced_bias) << src_man)
        e = v & exp_mask
        signed_zero = v & sign_mask
        signed_inf = signed_zero | exp_mask
        v = np.where(e > max_exp, signed_inf, v)
        v = np.where(e <= min_exp, signed_zero, v)
    out = v.astype(ut).view(x.dtype)
    return np.where(np.isnan(upcast_real(x)), x, out)
