"""Unit tests of `simplify`: each rewrite, and the IEEE traps it must leave alone (x + 0.0 is
+0.0 for x = -0.0, x * 0.0 is NaN for inf, x - x is NaN for NaN). Every test checks the
results on the dtype's special values (-0.0, NaN with payloads, inf, subnormals, extremes)
bit for bit against the original graph."""

from __future__ import annotations

import numpy as np
import pytest

from pass_strategies import Builder, apply, assert_equivalent, op_names
from xchip.ir import Region, TensorType, dtypes, ops
from xchip.passes import PassOptions
from xchip.runtime.reference import evaluate

FLOATS = [dtypes.F16, dtypes.BF16, dtypes.F32, dtypes.F64, dtypes.F8E4M3FN, dtypes.F8E5M2]
INTS = [dtypes.I8, dtypes.I32, dtypes.U8, dtypes.U64]
FAST = PassOptions(fast_math=True)


def T(dtype, *shape) -> TensorType:
    return TensorType(shape or (7,), dtype)


def binary_with_splat(name, dtype, value, constant_first=False, broadcast=True):
    t = T(dtype, 19)
    b = Builder(t)
    x = b.inputs[0]
    c = b.splat(t, value, broadcast)
    return b.graph(b.op(name, *((c, x) if constant_first else (x, c))))


def simplified(graph, options=None):
    before, stats = apply(graph, "simplify", options)
    assert_equivalent(before, graph)
    return stats


def returns_input(graph) -> bool:
    return graph.outputs[0] is graph.inputs[0]


# --- identities that hold for every value ----------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS + INTS + [dtypes.BOOL])
@pytest.mark.parametrize("constant_first", [False, True])
@pytest.mark.parametrize("broadcast", [False, True])
def test_multiply_by_one(dtype, constant_first, broadcast):
    g = binary_with_splat("multiply", dtype, 1, constant_first, broadcast)
    assert simplified(g) == {"mul_by_one": 1}
    assert returns_input(g)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("constant_first", [False, True])
def test_add_negative_zero(dtype, constant_first):
    g = binary_with_splat("add", dtype, -0.0, constant_first)
    assert simplified(g) == {"add_neg_zero": 1}
    assert returns_input(g)


@pytest.mark.parametrize("dtype", INTS + [dtypes.BOOL])
def test_add_integer_zero(dtype):
    g = binary_with_splat("add", dtype, 0, constant_first=True)
    assert simplified(g) == {"add_zero": 1}
    assert returns_input(g)


@pytest.mark.parametrize("dtype", FLOATS + INTS)
def test_subtract_zero(dtype):
    g = binary_with_splat("subtract", dtype, 0)
    assert simplified(g) == {"sub_zero": 1}
    assert returns_input(g)


@pytest.mark.parametrize("dtype", FLOATS + INTS)
def test_divide_by_one(dtype):
    g = binary_with_splat("divide", dtype, 1)
    assert simplified(g) == {"div_by_one": 1}
    assert returns_input(g)


@pytest.mark.parametrize("dtype", [dtypes.F32, dtypes.BF16, dtypes.I8, dtypes.I64])
def test_multiply_by_minus_one_is_negate(dtype):
    g = binary_with_splat("multiply", dtype, -1)
    assert simplified(g) == {"mul_by_minus_one": 1}
    assert op_names(g)[-2:] == ["negate", "return"]


@pytest.mark.parametrize("dtype", [dtypes.F32, dtypes.F16, dtypes.BF16, dtypes.F64, dtypes.F8E5M2])
@pytest.mark.parametrize("k", [-3, -1, 1, 4, 10])
def test_divide_by_power_of_two_is_exact_multiplication(dtype, k):
    g = binary_with_splat("divide", dtype, 2.0**k)
    assert simplified(g) == {"div_by_power_of_two": 1}
    assert "divide" not in op_names(g)


@pytest.mark.parametrize("dtype,value", [
    (dtypes.F32, 2.0**-149),   # its reciprocal overflows f32
    (dtypes.F16, 2.0**-24),    # likewise in f16
    (dtypes.F8E4M3FN, 2.0**-9),
    (dtypes.F32, 3.0), (dtypes.F32, 0.0), (dtypes.F32, np.inf), (dtypes.F32, np.nan), (dtypes.F32, -0.0),
])
def test_divide_by_other_constants_stays(dtype, value):
    g = binary_with_splat("divide", dtype, value)
    assert simplified(g) == {}
    assert "divide" in op_names(g)


@pytest.mark.parametrize("dtype", FLOATS)
def test_negative_zero_minus_x_is_negate(dtype):
    g = binary_with_splat("subtract", dtype, -0.0, constant_first=True)
    assert simplified(g) == {"sub_from_zero": 1}
    assert "negate" in op_names(g)


# --- IEEE traps: no rewrite ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name,value,constant_first", [
    ("add", 0.0, False),        # -0.0 + 0.0 == +0.0
    ("add", 0.0, True),
    ("multiply", 0.0, False),   # inf * 0 and NaN * 0 are NaN, -1 * 0 is -0.0
    ("multiply", -0.0, True),
    ("subtract", -0.0, False),  # -0.0 - (-0.0) == +0.0
    ("subtract", 0.0, True),    # 0.0 - 0.0 == +0.0, not -0.0
    ("divide", 1.0, True),      # 1 / x
    ("multiply", 2.0, False),
])
def test_float_traps_are_left_alone(dtype, name, value, constant_first):
    g = binary_with_splat(name, dtype, value, constant_first)
    assert simplified(g) == {}
    assert name in op_names(g)


def test_plus_zero_really_differs_for_negative_zero():
    """The reason `x + 0.0` stays: the executor gives +0.0 for -0.0."""
    g = binary_with_splat("add", dtypes.F32, 0.0)
    (out,) = evaluate(g, [np.full(19, -0.0, np.float32)])
    assert not np.signbit(out).any()


@pytest.mark.parametrize("name", ["subtract", "divide", "add", "multiply"])
def test_float_x_op_x_stays(name):
    b = Builder(T(dtypes.F32))
    x = b.inputs[0]
    g = b.graph(b.op(name, x, x))
    assert simplified(g) == {}


@pytest.mark.parametrize("name,value", [("multiply", 1), ("add", -0.0), ("divide", 1), ("subtract", 0)])
def test_complex_arithmetic_is_left_alone(name, value):
    """(a+bi)(1+0i) has a - b*0 as its real part: NaN when b is inf."""
    g = binary_with_splat(name, dtypes.C64, value)
    assert simplified(g) == {}


# --- integers and bools ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", INTS + [dtypes.BOOL])
def test_integer_multiply_by_zero(dtype):
    g = binary_with_splat("multiply", dtype, 0, constant_first=True)
    assert simplified(g) == {"mul_by_zero": 1}
    assert "multiply" not in op_names(g)


@pytest.mark.parametrize("dtype", INTS)
def test_integer_self_subtraction_and_negation(dtype):
    b = Builder(T(dtype))
    x = b.inputs[0]
    zero = b.splat(x.type, 0)
    g = b.graph(b.op("subtract", x, x), b.op("subtract", zero, x))
    assert simplified(g) == {"sub_self": 1, "sub_from_zero": 1}
    assert "subtract" not in op_names(g)


@pytest.mark.parametrize("dtype", [dtypes.BOOL, dtypes.I16, dtypes.U32])
def test_bitwise_rules(dtype):
    b = Builder(T(dtype), T(dtype))
    x, y = b.inputs
    t = x.type
    ones, zero = b.splat(t, -1 if dtype != dtypes.BOOL else True), b.splat(t, 0)
    outs = [b.op("and", x, ones), b.op("and", zero, x), b.op("or", x, zero), b.op("or", ones, y),
            b.op("xor", zero, y), b.op("xor", x, x), b.op("and", y, y), b.op("or", x, x)]
    g = b.graph(*outs)
    assert simplified(g) == {"and_ones": 1, "and_zero": 1, "or_zero": 1, "or_ones": 1, "xor_zero": 1,
                             "xor_self": 1, "and_self": 1, "or_self": 1}
    assert not {"and", "or", "xor"} & set(op_names(g))


@pytest.mark.parametrize("dtype", [dtypes.I32, dtypes.U8, dtypes.BOOL])
@pytest.mark.parametrize("direction", ["EQ", "NE", "LT", "LE", "GT", "GE"])
def test_integer_compare_with_itself(dtype, direction):
    b = Builder(T(dtype))
    x = b.inputs[0]
    g = b.graph(b.op("compare", x, x, comparison_direction=direction))
    assert simplified(g) == {"compare_self": 1}
    assert "compare" not in op_names(g)


@pytest.mark.parametrize("compare_type,rewritten", [("FLOAT", False), ("NOTYPE", False), ("TOTALORDER", True)])
def test_float_compare_with_itself_only_in_total_order(compare_type, rewritten):
    b = Builder(T(dtypes.F32))
    x = b.inputs[0]
    g = b.graph(b.op("compare", x, x, comparison_direction="EQ", compare_type=compare_type))
    assert simplified(g) == ({"compare_self": 1} if rewritten else {})


def test_integer_power_of_one():
    g = binary_with_splat("power", dtypes.I32, 1)
    assert simplified(g) == {"pow_one": 1}
    assert returns_input(g)


def test_float_power_of_one_stays():
    assert simplified(binary_with_splat("power", dtypes.F32, 1.0)) == {}


# --- unary pairs, select, max/min, convert ---------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS + [dtypes.I8, dtypes.I64, dtypes.U16, dtypes.C64])
def test_double_negation(dtype):
    b = Builder(T(dtype))
    g = b.graph(b.op("negate", b.op("negate", b.inputs[0])))
    assert simplified(g) == {"double_negate": 1}
    assert returns_input(g)


@pytest.mark.parametrize("dtype", [dtypes.BOOL, dtypes.I8, dtypes.U64])
def test_double_not(dtype):
    b = Builder(T(dtype))
    g = b.graph(b.op("not", b.op("not", b.inputs[0])))
    assert simplified(g) == {"double_not": 1}
    assert returns_input(g)


@pytest.mark.parametrize("dtype", [dtypes.F32, dtypes.BF16, dtypes.I8, dtypes.C128])
def test_double_abs(dtype):
    b = Builder(T(dtype))
    g = b.graph(b.op("abs", b.op("abs", b.inputs[0])))
    assert simplified(g) == {"double_abs": 1}
    assert op_names(g).count("abs") == 1


@pytest.mark.parametrize("pred_shape", [(), (7,)])
@pytest.mark.parametrize("value", [True, False])
def test_select_with_constant_predicate(pred_shape, value):
    t = T(dtypes.F32)
    b = Builder(t, t)
    x, y = b.inputs
    p = b.splat(TensorType(pred_shape, dtypes.BOOL), value, broadcast=bool(pred_shape))
    g = b.graph(b.op("select", p, x, y))
    assert simplified(g) == {"select_constant": 1}
    assert g.outputs[0] is (x if value else y)


def test_select_of_same_values_and_of_negated_predicate():
    t = T(dtypes.F32)
    b = Builder(t, t, T(dtypes.BOOL))
    x, y, p = b.inputs
    g = b.graph(b.op("select", p, x, x), b.op("select", b.op("not", p), x, y))
    assert simplified(g) == {"select_same": 1, "select_not": 1}
    assert g.outputs[0] is x
    sel = g.outputs[1].producer
    assert sel.name == "select" and sel.operands == [p, y, x]


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@pytest.mark.parametrize("dtype", [dtypes.F32, dtypes.F16, dtypes.I8, dtypes.BOOL, dtypes.C64])
def test_max_min_of_a_value_with_itself(name, dtype):
    b = Builder(T(dtype))
    x = b.inputs[0]
    g = b.graph(b.op(name, x, x))
    assert simplified(g) == {f"{name[:3]}_self": 1}
    assert returns_input(g)


def test_convert_to_its_own_type():
    b = Builder(T(dtypes.BF16))
    x = b.inputs[0]
    g = b.graph(b.op("convert", x, result_type=x.type))
    assert simplified(g) == {"convert_same_type": 1}
    assert returns_input(g)


@pytest.mark.parametrize("dtype,bits,rewritten", [
    (dtypes.F32, (8, 23), True), (dtypes.F32, (11, 52), True), (dtypes.F32, (8, 22), False),
    (dtypes.F32, (7, 23), False), (dtypes.BF16, (8, 7), True), (dtypes.F16, (5, 10), True),
    (dtypes.F64, (11, 52), True),
    # f8 rounds through f16's layout in the executor: (4, 3) flushes e4m3fn's subnormals
    (dtypes.F8E4M3FN, (4, 3), False), (dtypes.F8E5M2, (5, 2), False),
])
def test_reduce_precision_keeping_the_whole_type(dtype, bits, rewritten):
    b = Builder(T(dtype))
    g = b.graph(b.op("reduce_precision", b.inputs[0], exponent_bits=bits[0], mantissa_bits=bits[1]))
    assert simplified(g) == ({"reduce_precision_noop": 1} if rewritten else {})


# --- reassociation ---------------------------------------------------------------------------

def chain(name, dtype, c1, c2):
    t = T(dtype)
    b = Builder(t)
    x = b.inputs[0]
    y = b.op(name, b.constant(np.full(t.shape, c1, dtype.numpy)), x)
    return b.graph(b.op(name, y, b.constant(np.full(t.shape, c2, dtype.numpy))))


@pytest.mark.parametrize("name", ["add", "multiply"])
@pytest.mark.parametrize("dtype", [dtypes.I8, dtypes.U32, dtypes.I64])
def test_integer_reassociation_is_exact(name, dtype):
    g = chain(name, dtype, 100, 77)
    assert simplified(g) == {"reassociated": 1}


@pytest.mark.parametrize("name", ["add", "multiply"])
def test_float_reassociation_only_with_fast_math(name):
    g = chain(name, dtypes.F32, 0.1, 3.0)
    assert simplified(g) == {}
    g = chain(name, dtypes.F32, 0.1, 3.0)
    _, stats = apply(g, "simplify", FAST)
    assert stats == {"reassociated_fast_math": 1}
    x = g.outputs[0].producer
    assert x.operands[0] is g.inputs[0]


def test_fast_math_plus_zero_and_division():
    t = T(dtypes.F32)
    b = Builder(t)
    x = b.inputs[0]
    three = b.constant(np.full(t.shape, 3.0, np.float32))
    g = b.graph(b.op("add", x, b.splat(t, 0.0)), b.op("divide", x, three))
    _, stats = apply(g, "simplify", FAST)
    assert stats == {"add_zero_fast_math": 1, "div_to_mul_fast_math": 1}
    assert g.outputs[0] is x
    mul = g.outputs[1].producer
    assert mul.name == "multiply"
    factor = mul.operands[1].producer.attrs["value"]
    assert factor.dtype == np.float32 and factor[0] == np.float32(1) / np.float32(3)


# --- inside regions --------------------------------------------------------------------------

def test_simplifies_inside_regions():
    s = TensorType((), dtypes.F32)
    body = Region([s, s])
    a, c = body.args
    one = body.append(ops.make("constant", [], {"value": np.array(1.0, np.float32)})).result
    prod = body.append(ops.make("multiply", [c, one])).result
    total = body.append(ops.make("add", [a, prod])).result
    body.append(ops.make("return", [total], result_types=[]))
    b = Builder(T(dtypes.F32))
    init = b.constant(np.array(0.0, np.float32))
    red = b.body.append(ops.make("reduce", [b.inputs[0], init], {"dimensions": (0,)}, regions=[body])).result
    g = b.graph(red)
    assert simplified(g) == {"mul_by_one": 1}
    assert "multiply" not in op_names(g)
