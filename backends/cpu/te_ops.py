"""Elementwise ops of xchip IR as TIR expressions, with the reference executor's semantics.

`elementwise(op, args, in_types, out_type)` takes the operands' compute-form expressions
(see te_base) and returns the result's. It serves the top-level elementwise ops of a group
and the scalar ops of reduce bodies alike.

Two TVM behaviours shape this module:
- TVM's arithmetic simplifier rewrites floats as if they were reals (`(x + 1) - 1 -> x`,
  `x * 0 -> 0`, `x - x -> 0`) and assumes signed integers never overflow. Every arithmetic
  operand therefore goes through `_opaque` (a bit cast there and back, free in LLVM), and the
  second operand through it twice, so no rewrite rule ever sees a constant, two equal
  operands or a nested arithmetic pattern. Signed integer add/sub/mul compute in the
  unsigned type of the same width, which wraps without LLVM's no-signed-wrap assumptions.
- Float `!=` compiles to an ordered compare (false for NaN); NE is built from `isnan`.
- TVM builds with FP contraction on (a*b+c becomes an FMA), which the contractions want but
  the reference does not do: a float `multiply` result goes through `llvm.arithmetic.fence`,
  which LLVM never contracts across (free in the machine code).

Semantics follow xchip/runtime/reference_elementwise.py and reference_numeric.py: integer
x/0 == -1 (all ones unsigned) and x%0 == x, INT_MIN/-1 == INT_MIN, shifts by the width or
more give 0 (arithmetic: the sign), float->int saturates with NaN -> 0, NaN-propagating
min/max with +0 > -0, f64 and integers reach bf16/f16 through f32.
"""

from __future__ import annotations

from tvm import tirx as tir

from xchip.ir import dtypes
from xchip.ir.dtypes import DType

from . import te_math as M
from .te_base import NARROW, as_expr, compute_dtype, fail, round_to, storage_dtype, to_compute, to_storage

const = M.const
select = M.select
dt = M.dtype_of

_UNSIGNED = {"int8": "uint8", "int16": "uint16", "int32": "uint32", "int64": "uint64"}
_SIGNED = {v: k for k, v in _UNSIGNED.items()}
_FLOAT_BITS = {"float32": "uint32", "float64": "uint64", "float16": "uint16"}

# Per-element cost hints for the schedules (1 = an add).
EXPENSIVE = {"exponential": 30, "exponential_minus_one": 40, "log": 30, "log_plus_one": 40, "logistic": 35,
             "tanh": 45, "cosine": 60, "sine": 60, "tan": 80, "atan2": 80, "power": 80, "cbrt": 60,
             "rsqrt": 12, "divide": 4, "remainder": 20, "sqrt": 6}


def _reinterpret_const(x, to: str):
    """A bit cast of an integer constant, done here (TVM's codegen mistakes a reinterpret of
    the constant 0 for a null pointer cast)."""
    bits = _bits(to)
    v = int(x.value) & ((1 << bits) - 1)
    if to.startswith("int") and v >= 1 << (bits - 1):
        v -= 1 << bits
    return const(v, to)


def _opaque(x):
    """x unchanged, behind a bit cast the simplifier does not see through."""
    d = dt(x)
    if isinstance(x, tir.IntImm):
        return x
    if d == "bool":
        return x
    if d in _FLOAT_BITS:
        return tir.reinterpret(d, tir.reinterpret(_FLOAT_BITS[d], x))
    if d in _UNSIGNED:
        return tir.reinterpret(d, tir.reinterpret(_UNSIGNED[d], x))
    if d in _SIGNED:
        return tir.reinterpret(d, tir.reinterpret(_SIGNED[d], x))
    return x


def _fence(x):
    """x, behind `llvm.arithmetic.fence`: LLVM may not fuse it into an FMA with the add that
    consumes it (TVM builds with FP contraction on, which the matmul kernels want; the
    reference rounds the product before the add)."""
    return tir.call_llvm_pure_intrin(dt(x), "llvm.arithmetic.fence", x)


def _pair(a, b):
    return _opaque(a), _opaque(_opaque(b))


def _unsigned(x):
    d = dt(x)
    if isinstance(x, tir.IntImm):
        return _reinterpret_const(x, _UNSIGNED.get(d, d))
    return tir.reinterpret(_UNSIGNED[d], x) if d in _UNSIGNED else _opaque(x)


def _signed(x):
    d = dt(x)
    if isinstance(x, tir.IntImm):
        return _reinterpret_const(x, _SIGNED.get(d, d))
    return tir.reinterpret(_SIGNED[d], x) if d in _SIGNED else _opaque(x)


def _bits(d: str) -> int:
    return {"bool": 8, "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32,
            "int64": 64, "uint64": 64, "float32": 32, "float64": 64}[d]


def _is_float(x) -> bool:
    return dt(x).startswith("float")


def _neg_float(x):
    return M.neg(x)


def _abs_float(x):
    return M.abs_(x)


def _libm(name: str, *args):
    """A libm function computed in f64 (the reference's precision), for f32 or f64 args."""
    wide = [a.astype("float64") if dt(a) != "float64" else a for a in args]
    return tir.call_pure_extern("float64", name, *wide)


# --- float unary ---------------------------------------------------------------------------

def _round_afz(x):
    t = tir.trunc(x)
    a, b = _pair(x, t)
    frac = _abs_float(a - b)
    one = tir.copysign(const(1.0, dt(x)), x)
    return select(frac >= const(0.5, dt(x)), _opaque(t) + _opaque(one), t)


def _float_unary(name: str, x):
    """`name` of a compute-form float (f32 or f64); the result in the same precision,
    before any narrow rounding."""
    d = dt(x)
    f32 = d == "float32"
    if name == "exponential":
        return M.exp_f32(x) if f32 else tir.call_pure_extern(d, "exp", x)
    if name == "exponential_minus_one":
        return M.expm1_f32(x) if f32 else tir.call_pure_extern(d, "expm1", x)
    if name == "log":
        return M.log_f32(x) if f32 else tir.call_pure_extern(d, "log", x)
    if name == "log_plus_one":
        return M.log1p_f32(x) if f32 else tir.call_pure_extern(d, "log1p", x)
    if name == "tanh":
        return M.tanh_f32(x) if f32 else tir.call_pure_extern(d, "tanh", x)
    if name == "logistic":
        if f32:
            return M.logistic_f32(x)
        e = tir.call_pure_extern(d, "exp", _neg_float(_abs_float(x)))
        one = const(1.0, d)
        den = _opaque(one) + _opaque(e)
        return select(x >= const(0.0, d), _opaque(one) / _opaque(den), _opaque(e) / _opaque(_opaque(den)))
    if name == "sqrt":
        return tir.sqrt(x)
    if name == "rsqrt":
        w = x.astype("float64") if f32 else x
        r = _opaque(const(1.0, "float64")) / _opaque(tir.sqrt(w))
        return r.astype("float32") if f32 else r
    if name in ("cosine", "sine", "tan", "cbrt"):
        r = _libm({"cosine": "cos", "sine": "sin", "tan": "tan", "cbrt": "cbrt"}[name], x)
        return r.astype(d) if f32 else r
    if name == "ceil":
        return tir.ceil(x)
    if name == "floor":
        return tir.floor(x)
    if name == "round_nearest_even":
        return tir.nearbyint(x)
    if name == "round_nearest_afz":
        return _round_afz(x)
    raise KeyError(name)


FLOAT_UNARY = ("cosine", "sine", "tan", "tanh", "exponential", "exponential_minus_one", "log",
               "log_plus_one", "logistic", "rsqrt", "sqrt", "cbrt", "ceil", "floor",
               "round_nearest_afz", "round_nearest_even")


# --- integers ------------------------------------------------------------------------------

def _int_arith(name: str, a, b):
    """add/subtract/multiply wrapping around. TVM's LLVM codegen marks 32- and 64-bit
    integer arithmetic no-signed-wrap / no-unsigned-wrap (so LLVM folds `0u - x` to 0); 8- and
    16-bit arithmetic it emits plainly. 32-bit values therefore compute in 64 bits, where
    nothing overflows, and are truncated; 64-bit values compute signed (an overflow there is
    formally poison to LLVM, which in practice still emits the wrapping instruction)."""
    d = dt(a)
    bits = _bits(d)
    x, y = _opaque(a), _opaque(_opaque(b))
    op = {"add": lambda p, q: p + q, "subtract": lambda p, q: p - q, "multiply": lambda p, q: p * q}[name]
    if bits < 32:
        return op(x, y)
    if bits == 32:
        wide = "uint64" if (name == "multiply" and d.startswith("uint")) else "int64"
        return op(x.astype(wide), y.astype(wide)).astype(d)
    if d.startswith("uint"):
        return tir.reinterpret(d, op(tir.reinterpret("int64", x), tir.reinterpret("int64", y)))
    return op(x, y)


def _int_min(d: str) -> int:
    return -(1 << (_bits(d) - 1))


def _int_divide(a, b, remainder: bool):
    """Division that never traps: the divisor is replaced by 1 where it is 0 (or -1 under
    INT_MIN), behind a bit cast so no rewrite can move the division into the select's
    branches, and the XLA results are selected afterwards."""
    d = dt(a)
    a, b = _pair(a, b)
    zero, one = const(0, d), const(1, d)
    if d.startswith("uint"):
        safe = _opaque(select(b == zero, one, b))
        if remainder:
            return select(b == zero, a, tir.truncmod(a, safe))
        return select(b == zero, const((1 << _bits(d)) - 1, d), tir.truncdiv(a, safe))
    # compared unsigned: TVM's simplifier folds `x == INT32_MIN` on an int32 to false
    ud = _UNSIGNED[d]
    overflow = tir.And(tir.EQ(_unsigned(a), const(1 << (_bits(d) - 1), ud)),
                       tir.EQ(_unsigned(b), const((1 << _bits(d)) - 1, ud)))
    safe = _opaque(select(tir.Or(b == zero, overflow), one, b))
    if remainder:
        return select(b == zero, a, select(overflow, zero, tir.truncmod(a, safe)))
    return select(b == zero, const(-1, d), select(overflow, const(_int_min(d), d), tir.truncdiv(a, safe)))


def _int_power(op, a, b):
    """a ** b for a constant exponent b, wrapping around, as a product of b factors (TVM has
    no loop inside an expression, and the squarings of exponentiation by squaring would grow
    the expression tree exponentially: see te_base.Ctx), multiplied as a balanced tree.
    Negative exponents give 1 for base 1, +-1 for base -1 and 0 otherwise (the reference)."""
    if not isinstance(b, tir.IntImm):
        raise fail(op, "integer power with a non-constant exponent is not lowered")
    e = int(b.value)
    d = dt(a)
    if e < 0:
        one, m1 = const(1, d), const(-1, d)
        y = _opaque(a)
        return select(y == one, one, select(y == m1, m1 if e % 2 else one, const(0, d)))
    if e > _MAX_POWER:
        raise fail(op, f"integer power with exponent {e} > {_MAX_POWER} is not lowered")
    if e == 0:
        return const(1, d)

    def product(n):
        # a balanced tree: the simplifier's work grows exponentially with the depth of
        # nested wrap-around multiplies, linearly with their number
        if n == 1:
            return a
        return _int_arith("multiply", product(n // 2), product(n - n // 2))
    return product(e)


_MAX_POWER = 32       # beyond, TVM's simplifier takes seconds per exponent


def _shift(name: str, a, b):
    d = dt(a)
    bits = _bits(d)
    ua, ub = _unsigned(a), _unsigned(_opaque(b))
    ud = dt(ua)
    too_far = ub >= const(bits, ud)
    amount = select(too_far, const(0, ud), ub)
    if name == "shift_left":
        r = select(too_far, const(0, ud), ua << amount)
    elif name == "shift_right_logical":
        r = select(too_far, const(0, ud), ua >> amount)
    else:
        sa = _signed(a)
        sd = dt(sa)
        amt = select(too_far, const(bits - 1, sd), tir.reinterpret(sd, ub))
        r = sa >> amt
        return r if sd == d else tir.reinterpret(d, r)
    return r if ud == d else tir.reinterpret(d, r)


def _total_order_key(x):
    d = dt(x)
    sd = {"float32": "int32", "float64": "int64"}[d]
    s = tir.reinterpret(sd, x)
    bits = _bits(d)
    flip = (s >> const(bits - 1, sd)) & const((1 << (bits - 1)) - 1, sd)
    return s ^ flip


_CMP = {"EQ": lambda a, b: a == b, "LT": lambda a, b: a < b, "LE": lambda a, b: a <= b,
        "GT": lambda a, b: a > b, "GE": lambda a, b: a >= b}


def _compare(a, b, direction: str, compare_type: str):
    if dt(a) == "bool":
        a, b = a.astype("uint8"), b.astype("uint8")
    if _is_float(a) and compare_type == "TOTALORDER":
        a, b = _total_order_key(a), _total_order_key(b)
    a, b = _pair(a, b)
    if direction in ("EQ", "NE") and dt(a) in _UNSIGNED:
        # equality compared unsigned: TVM's simplifier folds `x == INT32_MIN` to false
        a, b = _unsigned(a), _unsigned(b)
    if direction == "NE":
        if _is_float(a):
            return tir.Or(tir.Or(M.isnan(a), M.isnan(b)), tir.NE(a, b))
        return tir.NE(a, b)
    return as_expr(_CMP[direction](a, b))


# --- conversions ---------------------------------------------------------------------------

def convert(x, src: DType, dst: DType):
    """`convert` between compute forms."""
    if src == dst:
        return x
    if dst.kind == "bool":
        if src.is_float:
            return tir.Or(M.isnan(x), _opaque(x) != const(0, dt(x)))
        if src.kind == "bool":
            return x
        return _opaque(x) != const(0, dt(x))
    if src.kind == "bool":
        return convert(x.astype("uint8"), dtypes.U8, dst)
    if dst.is_float:
        target = compute_dtype(dst)
        if src.is_float:
            if dst.name in NARROW:
                v = x.astype("float32") if dt(x) == "float64" else x
                return round_to(v, dst)
            return x.astype(target)
        # integer source
        if dst.name in NARROW:
            return round_to(x.astype("float32"), dst)
        return x.astype(target)
    # integer destination
    if src.is_float:
        return M.float_to_int(x, storage_dtype(dst))
    return x.astype(storage_dtype(dst))


def _to_bits(x, d: DType):
    """The storage bits of a compute-form value, as an unsigned integer expression."""
    if d.name == "bf16":   # compute form is the f32 whose low 16 bits are zero
        return (tir.reinterpret("uint32", x) >> const(16, "uint32")).astype("uint16")
    sd = storage_dtype(d)
    stored = x.astype("float16") if d.name == "f16" else x
    ut = {8: "uint8", 16: "uint16", 32: "uint32", 64: "uint64"}[d.itemsize * 8]
    return stored if sd == ut else tir.reinterpret(ut, stored)


def _from_bits(bits, d: DType):
    if d.name == "bf16":
        return tir.reinterpret("float32", bits.astype("uint32") << const(16, "uint32"))
    sd = storage_dtype(d)
    v = bits if dt(bits) == sd else tir.reinterpret(sd, bits)
    return v.astype("float32") if d.name == "f16" else v


def _bitcast(op, x, src: DType, dst: DType):
    if src.kind == "bool" or dst.kind == "bool":
        if max(src.itemsize, dst.itemsize) != 1:
            raise fail(op, f"bitcast {src.name} -> {dst.name} is not lowered")
        if src.kind == "bool":
            x, src = x.astype("uint8"), dtypes.U8
        if dst.kind == "bool":
            return _to_bits(x, src) != const(0, "uint8")
        return _from_bits(_to_bits(x, src), dst)
    if src.bits != dst.bits:
        raise fail(op, f"bitcast between widths ({src.name} -> {dst.name}) is not lowered")
    return _from_bits(_to_bits(x, src), dst)


_LAYOUT = {"f16": (5, 10), "bf16": (8, 7), "f32": (8, 23), "f64": (11, 52)}


def _reduce_precision(x, d: DType, exponent_bits: int, mantissa_bits: int):
    """The reference's bit manipulation, on the storage bits of `d`."""
    src_exp, src_man = _LAYOUT[d.name]
    bits = 8 * d.itemsize
    ut = {16: "uint16", 32: "uint32", 64: "uint64"}[bits]
    c = lambda v: const(v, ut)  # noqa: E731
    v = _to_bits(x, d)
    if mantissa_bits < src_man:
        shift = src_man - mantissa_bits
        last_bit_mask = 1 << shift
        base_bias = (1 << (shift - 1)) - 1
        last_bit = (v & c(last_bit_mask)) >> c(shift)
        v = (_opaque(v) + _opaque(_opaque(last_bit)) + c(base_bias)) & c(~(last_bit_mask - 1) & ((1 << bits) - 1))
    if exponent_bits < src_exp:
        sign_mask = 1 << (bits - 1)
        exp_mask = ((1 << src_exp) - 1) << src_man
        bias = (1 << (src_exp - 1)) - 1
        reduced_bias = (1 << (exponent_bits - 1)) - 1
        max_exp = (bias + reduced_bias) << src_man
        min_exp = (bias - reduced_bias) << src_man
        e = v & c(exp_mask)
        signed_zero = v & c(sign_mask)
        signed_inf = signed_zero | c(exp_mask)
        v = select(e > c(max_exp), signed_inf, v)
        v = select(e <= c(min_exp), signed_zero, v)
    out = _from_bits(v, d)
    return select(M.isnan(x), x, out)


# --- the dispatcher ------------------------------------------------------------------------

def _float_binary(name: str, a, b):
    a, b = _pair(a, b)
    if name == "add":
        return a + b
    if name == "subtract":
        return a - b
    if name == "multiply":
        return _fence(a * b)
    if name == "divide":
        return a / b
    if name == "remainder":
        return tir.call_pure_extern(dt(a), "fmod" if dt(a) == "float64" else "fmodf", a, b)
    if name == "power":
        r = _libm("pow", a, b)
        return r if dt(a) == "float64" else r.astype(dt(a))
    if name == "atan2":
        r = _libm("atan2", a, b)
        return r if dt(a) == "float64" else r.astype(dt(a))
    if name == "maximum":
        return M.float_maximum(a, b)
    if name == "minimum":
        return M.float_minimum(a, b)
    raise KeyError(name)


def elementwise(op, args, in_types: list[DType], out_type: DType):
    """The compute-form result of elementwise `op` on compute-form `args` (each bound once
    with a `Let` when it is not a plain load or constant)."""
    for t in list(in_types) + [out_type]:
        if t.is_complex or t.name.startswith("f8"):
            raise fail(op, f"dtype {t.name} is not lowered on the CPU")
    return as_expr(M.bind(args, lambda *a: _elementwise(op, list(a), in_types, out_type)))


def rounded_separately(op) -> bool:
    """A float unary op with a narrow (f16/bf16) result: its f32 value, then the rounding
    (`unrounded` and `round_to`), may be two computes."""
    return op.name in FLOAT_UNARY and op.results[0].type.dtype.name in NARROW and \
        op.operands[0].type.dtype.is_float


def unrounded(op, args):
    """The compute-form f32 result of a `rounded_separately` op, before its rounding."""
    return as_expr(_float_unary(op.name, args[0]))


def _elementwise(op, args, in_types: list[DType], out_type: DType):
    name = op.name
    a0 = in_types[0] if in_types else out_type
    if name in FLOAT_UNARY:
        if not a0.is_float:
            raise fail(op, f"operand dtype {a0.name}")
        return round_to(_float_unary(name, args[0]), out_type)
    x = args[0]
    if name == "negate":
        if a0.is_float:
            return _neg_float(x)
        return _int_arith("subtract", const(0, dt(x)), x)
    if name == "abs":
        if a0.is_float:
            return _abs_float(x)
        y = _opaque(x)
        return select(y < const(0, dt(x)), _int_arith("subtract", const(0, dt(x)), y), y)
    if name == "sign":
        d = dt(x)
        if a0.is_float:
            return select(tir.Or(M.isnan(x), _opaque(x) == const(0, d)), x, tir.copysign(const(1.0, d), x))
        y = _opaque(x)
        if a0.kind == "uint":
            return select(y > const(0, d), const(1, d), const(0, d))
        return select(y > const(0, d), const(1, d), select(y < const(0, d), const(-1, d), const(0, d)))
    if name == "is_finite":
        return M.isfinite(x)
    if name == "not":
        return tir.Not(x) if a0.kind == "bool" else tir.bitwise_not(x)
    if name == "popcnt":
        return tir.popcount(_opaque(x)).astype(dt(x))
    if name == "count_leading_zeros":
        return _clz(x)
    if name == "real":
        return x
    if name == "imag":
        return const(0, dt(x))
    if name == "convert":
        return convert(x, a0, out_type)
    if name == "bitcast_convert":
        return _bitcast(op, x, a0, out_type)
    if name == "reduce_precision":
        return _reduce_precision(x, a0, op.attrs["exponent_bits"], op.attrs["mantissa_bits"])
    if name == "select":
        return select(args[0], args[1], args[2])
    if name == "clamp":
        lo, v, hi = args
        if a0.is_float:
            return M.float_minimum(*_pair(M.float_maximum(*_pair(v, lo)), hi))
        if a0.kind == "bool":
            return tir.And(tir.Or(v, lo), hi)
        return tir.Min(tir.Max(_opaque(v), _opaque(lo)), _opaque(hi))
    if name == "compare":
        return _compare(args[0], args[1], op.attrs["comparison_direction"], op.attrs["compare_type"])
    a, b = args[0], args[1]
    if name in ("add", "subtract", "multiply", "divide", "remainder", "power", "atan2", "maximum", "minimum"):
        if a0.is_float:
            if name in ("maximum", "minimum"):
                # one of the operands, bits and all (NaN payloads too), as the reference picks
                # it: already on the narrow grid
                return _float_binary(name, a, b)
            return round_to(_float_binary(name, a, b), out_type)
        if a0.kind == "bool":
            if name in ("add", "maximum"):
                return tir.Or(a, b)
            if name in ("multiply", "minimum"):
                return tir.And(a, b)
            raise fail(op, "bool operands")
        if name in ("add", "subtract", "multiply"):
            return _int_arith(name, a, b)
        if name in ("divide", "remainder"):
            return _int_divide(a, b, name == "remainder")
        if name == "power":
            return _int_power(op, a, b)
        if name == "maximum":
            return tir.Max(*_pair(a, b))
        if name == "minimum":
            return tir.Min(*_pair(a, b))
        raise fail(op, f"integer operands ({a0.name})")
    if name in ("and", "or", "xor"):
        if a0.kind == "bool":
            # xor compared as bytes: TVM emits a float compare for `!=` on vectors of bool
            xor = lambda p, q: tir.NE(p.astype("uint8"), q.astype("uint8"))  # noqa: E731
            return {"and": tir.And, "or": tir.Or, "xor": xor}[name](a, b)
        p, q = _pair(a, b)
        return {"and": tir.bitwise_and, "or": tir.bitwise_or, "xor": tir.bitwise_xor}[name](p, q)
    if name in ("shift_left", "shift_right_logical", "shift_right_arithmetic"):
        return _shift(name, a, b)
    raise fail(op, "no TensorIR lowering for this elementwise op")


def _clz(x):
    d = dt(x)
    bits = _bits(d)
    if bits < 32:
        u = _unsigned(x).astype("uint32")
        return (tir.clz(u).astype("int32") - const(32 - bits, "int32")).astype(d)
    return tir.clz(_unsigned(x)).astype(d)
