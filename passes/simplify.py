"""`simplify`: algebraic simplification that keeps every result bit for bit.

Float arithmetic is IEEE's, so identities that hold for real numbers often fail: x + 0.0 is
+0.0 for x = -0.0, x * 0.0 is NaN for x = inf, x - x is NaN for x = NaN. The rewrites here
hold for every value, -0.0, NaN and infinities included (a NaN may come back with another
payload or sign; it stays NaN):

    x * 1 → x            x + (-0.0) → x          x - 0.0 → x          x / 1 → x
    x * -1 → -x          -0.0 - x → -x           x / 2**k → x * 2**-k  (2**-k exact)
    -(-x) → x            abs(abs(x)) → abs(x)    not(not(x)) → x
    select(true, a, b) → a    select(false, a, b) → b    select(p, a, a) → a
    select(not(p), a, b) → select(p, b, a)
    max(x, x) → x        min(x, x) → x           convert(x) to its own type → x
    reduce_precision keeping the whole type → x   (f16, bf16, f32, f64; the executor rounds
                                                    f8 through f16's layout, not a no-op)

for integers and bools (whose arithmetic wraps, so it is exact) also

    x + 0 → x   x * 0 → 0   x - x → 0   0 - x → -x   x ** 1 → x
    and(x, ones) → x   and(x, 0) → 0   or(x, 0) → x   or(x, ones) → ones   xor(x, 0) → x
    and(x, x) → x      or(x, x) → x    xor(x, x) → 0
    compare(x, x) → all true (EQ, LE, GE) or all false (NE, LT, GT)
    (x * c1) * c2 → x * (c1 * c2)    (x + c1) + c2 → x + (c1 + c2)

and `compare(x, x)` for floats compared in TOTALORDER (a value equals itself bit for bit).
Complex numbers only take the rewrites that never look at their arithmetic.

With `ctx.options.fast_math`, rewrites that change rounding too (results differ in the last
bits, or in NaN/inf/-0.0 corner cases):

    x + 0.0 → x    (x * c1) * c2 → x * (c1 * c2)    (x + c1) + c2 → x + (c1 + c2)
    x / c → x * (1 / c)

A constant such as 1 or -0.0 above is a `constant` op, or a broadcast_in_dim of one, whose
elements all have the same bits; c1 and c2 in reassociations are any `constant` ops.

Statistics count each rewrite: mul_by_one, mul_by_zero, mul_by_minus_one, add_neg_zero, add_zero, sub_zero, sub_self, sub_from_zero, div_by_one, div_by_power_of_two,
pow_one, double_negate, double_not, double_abs, convert_same_type, reduce_precision_noop,
and_self, and_ones, and_zero, or_self, or_zero, or_ones, xor_self, xor_zero, max_self,
min_self, select_same, select_constant, select_not, compare_self, reassociated; with
fast_math also add_zero_fast_math, reassociated_fast_math, div_to_mul_fast_math.
"""

from __future__ import annotations

import numpy as np

from xchip.ir import Graph, Op, TensorType, Value, ops
from xchip.ir.dtypes import DType
from xchip.ir.rewrite import Rewriter, constant_value, splat_ops, splat_scalar
from xchip.runtime.reference import evaluate_op
from xchip.runtime.reference_numeric import FLOAT_LAYOUT

from .manager import register

_COMMUTATIVE = frozenset({"add", "multiply", "and", "or", "xor", "maximum", "minimum"})


def splat_of(v: Value) -> np.ndarray | None:
    """The single element of `v` when it is a splat constant (through broadcasts), else None."""
    while v.producer is not None and v.producer.name == "broadcast_in_dim":
        v = v.producer.operands[0]
    value = constant_value(v)
    return None if value is None else splat_scalar(value)


def _scalar(dtype: DType, x) -> bytes:
    """The bytes of `x` as an element of `dtype` (-1 gives all ones for any integer)."""
    return np.array(x).astype(dtype.numpy).tobytes()


def is_splat(v: Value, x) -> bool:
    s = splat_of(v)
    return s is not None and s.tobytes() == _scalar(v.dtype, x)


def _ones(d: DType):
    return True if d.kind == "bool" else -1


def _exact_kind(d: DType) -> bool:
    """Integers and bools: arithmetic that wraps exactly."""
    return d.is_integer or d.kind == "bool"


def _power_of_two_reciprocal(v: Value) -> np.ndarray | None:
    """1/c when v is a splat of a power of two c whose reciprocal is exact in v's dtype."""
    s = splat_of(v)
    if s is None:
        return None
    c = float(s.astype(np.float64))
    if c == 0 or not np.isfinite(c):
        return None
    mantissa, _ = np.frexp(c)
    if abs(mantissa) != 0.5:
        return None
    with np.errstate(over="ignore", invalid="ignore"):   # a reciprocal out of range is refused below
        r = np.array(1.0 / c).astype(v.dtype.numpy)
    if float(r.astype(np.float64)) * c != 1.0:
        return None   # 1/c overflows or underflows in this dtype
    return r


class _Simplifier(Rewriter):
    def __init__(self, fast_math: bool, fold_limit: int):
        super().__init__()
        self.fast_math = fast_math
        self.fold_limit = fold_limit

    def visit(self, op: Op):
        rule = getattr(self, "rule_" + op.name, None)
        if rule is None:
            return None
        out = rule(op, *op.operands)
        if out is None and op.name in _COMMUTATIVE:
            out = rule(op, *reversed(op.operands))
        return None if out is None else [out]

    # -- helpers --
    def make(self, name: str, operands, attrs=None, result_type=None, loc=None) -> Value:
        types = None if result_type is None else [result_type]
        return self.insert(ops.make(name, operands, attrs, types, loc=loc)).result

    def splat(self, op: Op, x) -> Value:
        """A tensor of op's result type filled with `x`."""
        t = op.result.type
        scalar = np.frombuffer(_scalar(t.dtype, x), dtype=t.dtype.numpy).reshape(())
        new_ops = splat_ops(scalar, t, self.fold_limit, op.loc)
        for new in new_ops:
            self.insert(new, revisit=False)
        return new_ops[-1].result

    def fold(self, name: str, a: np.ndarray, b: np.ndarray, t: TensorType, loc) -> Value:
        """A constant of `name(a, b)` for arrays of type t, computed as the executor does."""
        probe = ops.make(name, [Value(t), Value(t)])
        (value,) = evaluate_op(probe, [a, b])
        return self.make("constant", [], {"value": np.array(value, order="C", copy=True)}, loc=loc)

    def reassociate(self, op: Op, x: Value, c2: Value) -> Value | None:
        """(y op c1) op c2 → y op (c1 op c2), for constants c1 and c2."""
        inner = x.producer
        if inner is None or inner.name != op.name or constant_value(c2) is None:
            return None
        exact = _exact_kind(op.result.type.dtype)
        if not (exact or self.fast_math):
            return None
        for y, c1 in (inner.operands, reversed(inner.operands)):
            if constant_value(c1) is not None and constant_value(y) is None:
                self.count("reassociated" if exact else "reassociated_fast_math")
                folded = self.fold(op.name, constant_value(c1), constant_value(c2), c2.type, op.loc)
                return self.make(op.name, [y, folded], loc=op.loc)
        return None

    # -- arithmetic --
    def rule_multiply(self, op: Op, x: Value, c: Value):
        d = x.dtype
        if d.is_complex:
            return None   # (a+bi)(1+0i) has a - b*0 as real part: NaN for b = inf
        if is_splat(c, 1):
            self.count("mul_by_one")
            return x
        if _exact_kind(d) and is_splat(c, 0):
            self.count("mul_by_zero")
            return self.splat(op, 0)
        if d.kind != "bool" and d.kind != "uint" and is_splat(c, -1):
            self.count("mul_by_minus_one")
            return self.make("negate", [x], loc=op.loc)
        return self.reassociate(op, x, c)

    def rule_add(self, op: Op, x: Value, c: Value):
        d = x.dtype
        if d.is_complex:
            return None
        if d.is_float and is_splat(c, -0.0):
            self.count("add_neg_zero")
            return x
        if _exact_kind(d) and is_splat(c, 0):
            self.count("add_zero")
            return x
        if d.is_float and self.fast_math and is_splat(c, 0.0):
            self.count("add_zero_fast_math")
            return x
        return self.reassociate(op, x, c)

    def rule_subtract(self, op: Op, x: Value, y: Value):
        d = x.dtype
        if d.is_complex:
            return None
        if is_splat(y, 0):   # +0 for floats: x - (+0) == x + (-0) == x
            self.count("sub_zero")
            return x
        if _exact_kind(d) and x is y:
            self.count("sub_self")
            return self.splat(op, 0)
        if is_splat(x, -0.0 if d.is_float else 0):
            self.count("sub_from_zero")
            return self.make("negate", [y], loc=op.loc)
        return None

    def rule_divide(self, op: Op, x: Value, y: Value):
        d = x.dtype
        if d.is_complex:
            return None
        if is_splat(y, 1):
            self.count("div_by_one")
            return x
        if not d.is_float:
            return None
        r = _power_of_two_reciprocal(y)
        if r is not None:
            # x / 2**k and x * 2**-k are the same real number, rounded once the same way
            self.count("div_by_power_of_two")
            return self.make("multiply", [x, self.splat(op, r)], loc=op.loc)
        if self.fast_math and constant_value(y) is not None:
            self.count("div_to_mul_fast_math")
            one = np.broadcast_to(np.array(1).astype(d.numpy), y.shape)
            return self.make("multiply", [x, self.fold("divide", one, constant_value(y), y.type, op.loc)],
                             loc=op.loc)
        return None

    def rule_power(self, op: Op, x: Value, y: Value):
        if _exact_kind(x.dtype) and is_splat(y, 1):
            self.count("pow_one")
            return x
        return None

    # -- unary --
    def _same_op_twice(self, op: Op, x: Value, what: str) -> Value | None:
        inner = x.producer
        if inner is not None and inner.name == op.name:
            self.count(what)
            return inner.operands[0]
        return None

    def rule_negate(self, op: Op, x: Value):
        return self._same_op_twice(op, x, "double_negate")

    def rule_not(self, op: Op, x: Value):
        return self._same_op_twice(op, x, "double_not")

    def rule_abs(self, op: Op, x: Value):
        inner = x.producer
        if inner is not None and inner.name == "abs" and x.type == op.result.type:
            self.count("double_abs")
            return x
        return None

    def rule_convert(self, op: Op, x: Value):
        if x.type == op.result.type:
            self.count("convert_same_type")
            return x
        return None

    def rule_reduce_precision(self, op: Op, x: Value):
        if x.dtype.bits < 16:
            return None   # the executor rounds f8 through f16's layout, which is not a no-op
        exponent, mantissa = FLOAT_LAYOUT[x.dtype.name]
        if op.attrs["exponent_bits"] >= exponent and op.attrs["mantissa_bits"] >= mantissa:
            self.count("reduce_precision_noop")
            return x
        return None

    # -- bitwise and logic --
    def rule_and(self, op: Op, x: Value, c: Value):
        if x is c:
            self.count("and_self")
            return x
        if is_splat(c, _ones(x.dtype)):
            self.count("and_ones")
            return x
        if is_splat(c, 0):
            self.count("and_zero")
            return self.splat(op, 0)
        return None

    def rule_or(self, op: Op, x: Value, c: Value):
        if x is c:
            self.count("or_self")
            return x
        if is_splat(c, 0):
            self.count("or_zero")
            return x
        if is_splat(c, _ones(x.dtype)):
            self.count("or_ones")
            return self.splat(op, _ones(x.dtype))
        return None

    def rule_xor(self, op: Op, x: Value, c: Value):
        if x is c:
            self.count("xor_self")
            return self.splat(op, 0)
        if is_splat(c, 0):
            self.count("xor_zero")
            return x
        return None

    # -- selection and comparison --
    def rule_maximum(self, op: Op, x: Value, y: Value):
        if x is y:
            self.count("max_self")
            return x
        return None

    def rule_minimum(self, op: Op, x: Value, y: Value):
        if x is y:
            self.count("min_self")
            return x
        return None

    def rule_select(self, op: Op, p: Value, a: Value, b: Value):
        if a is b:
            self.count("select_same")
            return a
        if is_splat(p, True):
            self.count("select_constant")
            return a
        if is_splat(p, False):
            self.count("select_constant")
            return b
        inner = p.producer
        if inner is not None and inner.name == "not":
            self.count("select_not")
            return self.make("select", [inner.operands[0], b, a], loc=op.loc)
        return None

    def rule_compare(self, op: Op, x: Value, y: Value):
        d = x.dtype
        if x is not y:
            return None
        if not (_exact_kind(d) or d.is_float and op.attrs["compare_type"] == "TOTALORDER"):
            return None   # NaN != NaN; complex compares its parts as floats
        self.count("compare_self")
        return self.splat(op, op.attrs["comparison_direction"] in ("EQ", "LE", "GE"))


@register("simplify")
def simplify(graph: Graph, ctx) -> dict[str, int]:
    return _Simplifier(ctx.options.fast_math, ctx.options.fold_limit).run(graph)
