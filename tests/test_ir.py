"""Tests of the xchip IR: dtypes, tensor types, printer/parser round trips, parse errors and
the verifier's rules. Random graphs come from `ir_strategies`."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, find, given, settings
from hypothesis import strategies as st

import ir_strategies as S
from xchip.errors import ParseError, VerificationError
from xchip.ir import (Graph, Location, Op, Region, TensorType, Value, dtypes, ops, parse_graph,
                      print_graph, print_op, scalar, verify, verify_op)
from xchip.ir.parser import _tokenize

# XCHIP_IR_TEST_SCALE=20 runs every property test 20 times longer (a thorough local run).
SCALE = int(os.environ.get("XCHIP_IR_TEST_SCALE", "1"))
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
FAST = settings(max_examples=30 * SCALE, deadline=None, suppress_health_check=_SLOW_OK)
MEDIUM = settings(max_examples=50 * SCALE, deadline=None, suppress_health_check=_SLOW_OK)

F32, F64, I32, BOOL = dtypes.F32, dtypes.F64, dtypes.I32, dtypes.BOOL
LOC = Location("model.py", 12, 4, "jit(f)/op")


def T(dtype, *shape) -> TensorType:
    return TensorType(shape, dtype)


def V(dtype, *shape) -> Value:
    return Value(T(dtype, *shape))


# --- helpers --------------------------------------------------------------------------------

def attr_equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(attr_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def assert_same_region(r1: Region, r2: Region, m: dict) -> None:
    assert r1.arg_types == r2.arg_types
    for a, b in zip(r1.args, r2.args):
        m[a] = b
    assert [op.name for op in r1.ops] == [op.name for op in r2.ops]
    for o1, o2 in zip(r1.ops, r2.ops):
        assert len(o1.operands) == len(o2.operands)
        assert all(m[v] is w for v, w in zip(o1.operands, o2.operands)), o1.name
        assert sorted(o1.attrs) == sorted(o2.attrs), o1.name
        for k in o1.attrs:
            assert attr_equal(o1.attrs[k], o2.attrs[k]), (o1.name, k, o1.attrs[k], o2.attrs[k])
        assert o1.result_types == o2.result_types
        assert o1.loc == o2.loc
        assert len(o1.regions) == len(o2.regions)
        for q1, q2 in zip(o1.regions, o2.regions):
            assert_same_region(q1, q2, m)
        for a, b in zip(o1.results, o2.results):
            m[a] = b


def assert_same_graph(g1: Graph, g2: Graph) -> None:
    assert g1.name == g2.name
    assert g1.input_types == g2.input_types
    assert g1.output_types == g2.output_types
    assert_same_region(g1.body, g2.body, {})


def round_trip(g: Graph) -> Graph:
    text = print_graph(g)
    g2 = parse_graph(text)
    assert print_graph(g2) == text
    assert_same_graph(g, g2)
    return g2


def graph_of(ops_list, inputs=(), outputs=None, name="main") -> Graph:
    body = Region()
    body.args = list(inputs)
    for op in ops_list:
        body.append(op)
    if outputs is None:
        outputs = ops_list[-1].results if ops_list else []
    body.append(Op("return", list(outputs), []))
    return Graph(name, body)


def constant_graph(value: np.ndarray) -> Graph:
    return graph_of([ops.make("constant", [], {"value": value})])


def check_error_position(e: ParseError, text: str) -> None:
    """The error's line and column point into `text` (column len+1: just past the line's end)."""
    lines = text.split("\n")
    assert e.line is not None and e.col is not None, str(e)
    assert 1 <= e.line <= len(lines), (e.line, len(lines), str(e))
    assert 1 <= e.col <= len(lines[e.line - 1]) + 1, (e.col, lines[e.line - 1], str(e))
    assert str(e).startswith(f"line {e.line}, column {e.col}: ")


def parse_must_fail(text: str) -> ParseError:
    with pytest.raises(ParseError) as ei:
        parse_graph(text)
    check_error_position(ei.value, text)
    return ei.value


def parse_or_parse_error(text: str) -> None:
    """Malformed text raises ParseError with a position in the text; nothing else escapes."""
    try:
        g = parse_graph(text)
    except ParseError as e:
        check_error_position(e, text)
    else:
        assert isinstance(g, Graph)


# --- dtypes and tensor types ----------------------------------------------------------------

def test_dtype_table_lookups():
    assert len({d.name for d in dtypes.ALL}) == len(dtypes.ALL) == 17
    for d in dtypes.ALL:
        assert dtypes.get(d.name) is d
        assert dtypes.from_mlir(d.mlir) is d
        assert dtypes.from_numpy(d.numpy) is d
        assert str(d) == d.name
        assert d.itemsize == max(1, d.bits // 8) == d.numpy.itemsize
    assert dtypes.names() == [d.name for d in dtypes.ALL]


@pytest.mark.parametrize("alias,name", [
    ("pred", "bool"), ("i1", "bool"), ("int8", "i8"), ("int16", "i16"), ("int32", "i32"),
    ("int64", "i64"), ("uint8", "u8"), ("uint16", "u16"), ("uint32", "u32"), ("uint64", "u64"),
    ("float16", "f16"), ("bfloat16", "bf16"), ("float32", "f32"), ("float64", "f64"),
    ("complex64", "c64"), ("complex128", "c128"), ("float8_e4m3fn", "f8e4m3fn"),
    ("float8_e5m2", "f8e5m2"),
])
def test_dtype_aliases(alias, name):
    assert dtypes.get(alias) is dtypes.get(name)
    assert TensorType.parse(f"{alias}[2]") == TensorType((2,), dtypes.get(name))


def test_dtype_kinds_and_helpers():
    assert dtypes.get("bf16").numpy == np.dtype("bfloat16")
    assert dtypes.from_mlir("complex<f32>") is dtypes.C64
    assert dtypes.from_mlir("ui64") is dtypes.U64
    assert dtypes.from_mlir("f8E4M3FN") is dtypes.F8E4M3FN
    assert dtypes.from_mlir("tf32") is None
    assert dtypes.real_part(dtypes.C64) is F32 and dtypes.real_part(dtypes.C128) is F64
    assert dtypes.real_part(dtypes.I8) is dtypes.I8
    assert dtypes.complex_of(F32) is dtypes.C64 and dtypes.complex_of(F64) is dtypes.C128
    assert [d.name for d in dtypes.ALL if d.is_float] == ["f8e4m3fn", "f8e5m2", "f16", "bf16", "f32", "f64"]
    assert [d.name for d in dtypes.ALL if d.is_integer] == ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"]
    assert [d.name for d in dtypes.ALL if d.is_complex] == ["c64", "c128"]
    assert not BOOL.is_signed and not dtypes.U8.is_signed and dtypes.I8.is_signed


@pytest.mark.parametrize("bad", ["f33", "", "float", "F32", "i1x"])
def test_dtype_unknown_names(bad):
    with pytest.raises(KeyError, match="unknown dtype"):
        dtypes.get(bad)


def test_from_numpy_unknown():
    with pytest.raises(KeyError, match="no xchip dtype"):
        dtypes.from_numpy(np.dtype("U4"))
    with pytest.raises(KeyError):
        dtypes.from_numpy(np.dtype(">f4"))


@settings(max_examples=100 * SCALE, deadline=None)
@given(S.tensor_types(max_rank=5, max_dim=100000))
def test_tensor_type_str_parse(t):
    text = str(t)
    assert re.fullmatch(r"[a-z0-9]+\[(\d+(,\d+)*)?\]", text)
    assert TensorType.parse(text) == t
    assert TensorType.parse(f"  {text} ") == t
    assert hash(TensorType.parse(text)) == hash(t)
    assert t.size == math.prod(t.shape) and t.rank == len(t.shape)
    assert t.nbytes == t.size * t.dtype.itemsize


def test_tensor_type_basics():
    t = TensorType([2, 3], "float32")
    assert t.shape == (2, 3) and t.dtype is F32 and str(t) == "f32[2,3]"
    assert scalar("i32") == TensorType((), I32) and str(scalar(I32)) == "i32[]"
    assert t.with_shape([6]) == T(F32, 6) and t.with_dtype("bf16") == T(dtypes.BF16, 2, 3)
    with pytest.raises(ValueError, match="negative"):
        TensorType((2, -1), F32)


@pytest.mark.parametrize("bad", ["f32", "f32[", "f32[4", "[4]", "foo[4]", "f32[-1]", "f32[a]",
                                 "f32[4,]", "f32[4.0]", "f32(4)", "f32[4][5]"])
def test_tensor_type_parse_malformed(bad):
    with pytest.raises(ValueError):
        TensorType.parse(bad)


# --- round trips ----------------------------------------------------------------------------

@MEDIUM
@given(S.graphs())
def test_random_graph_round_trip(g):
    assert verify(g) is g
    g2 = round_trip(g)
    verify(g2)
    # printing twice gives the same text: numbering does not depend on state
    assert print_graph(g) == print_graph(g)


@FAST
@given(S.graphs(max_ops=4, max_depth=3))
def test_random_nested_graph_round_trip(g):
    verify(g)
    verify(round_trip(g))


@pytest.mark.parametrize("gen", [
    S.gen_dot_general, S.gen_convolution, S.gen_gather, S.gen_reduce, S.gen_sort, S.gen_while,
    S.gen_if, S.gen_case, S.gen_bitcast_convert, S.gen_broadcast_in_dim, S.gen_reshape, S.gen_pad,
    S.gen_custom_call,
], ids=lambda f: f.__name__)
@settings(max_examples=15 * SCALE, deadline=None, suppress_health_check=_SLOW_OK)
@given(data=st.data())
def test_each_generator_verifies_and_round_trips(gen, data):
    g = data.draw(S.graphs_with(gen))
    verify(g)
    round_trip(g)


def _dtypes_and_shapes():
    return st.tuples(S.dtype_strategy(), S.shapes(max_rank=3, max_dim=5))


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=_SLOW_OK)
@given(data=st.data(), ds=_dtypes_and_shapes())
def test_constant_round_trip_bit_for_bit(data, ds):
    dtype, shape = ds
    value = data.draw(S.arrays(dtype, shape))
    g = constant_graph(value)
    verify(g)
    g2 = round_trip(g)
    back = g2.body.ops[0].attrs["value"]
    assert back.dtype == value.dtype and back.shape == value.shape
    assert back.tobytes() == value.tobytes()


def _special_bits_cases():
    cases = []
    for d in dtypes.ALL:
        if d.kind in ("float", "complex"):
            for x in S.specials(d):
                cases.append(pytest.param(d, x, id=f"{d.name}-{np.array(x).tobytes().hex()}"))
    return cases


@pytest.mark.parametrize("dtype,x", _special_bits_cases())
def test_special_float_constants_round_trip(dtype, x):
    """-0.0, infinities, subnormals and NaNs (with sign and payload) keep their bits, as a
    scalar, a splat and inside a short list."""
    for value in (np.array(x, dtype=dtype.numpy), np.full((3,), x, dtype=dtype.numpy),
                  np.array([x, np.array(1.0).astype(dtype.numpy)[()]], dtype=dtype.numpy)):
        g2 = round_trip(constant_graph(value))
        assert g2.body.ops[0].attrs["value"].tobytes() == value.tobytes()


def test_nan_payload_and_sign_survive():
    """Regression: the printer wrote a NaN with a payload or a sign bit as `nan`."""
    for npdt in (np.float16, np.float32, np.float64, dtypes.BF16.numpy):
        for bits in (S._nan_with_payload(np.dtype(npdt), False), S._nan_with_payload(np.dtype(npdt), True),
                     np.array(np.copysign(np.nan, -1.0)).astype(npdt)[()]):
            value = np.array(bits, dtype=npdt)
            text = print_graph(constant_graph(value))
            back = parse_graph(text).body.ops[0].attrs["value"]
            assert back.tobytes() == value.tobytes(), text


def test_integer_extremes_round_trip():
    for d in dtypes.ALL:
        if d.is_integer:
            info = np.iinfo(d.numpy)
            value = np.array([info.min, info.max, 0, info.max - 1], dtype=d.numpy)
            text = print_graph(constant_graph(value))
            assert str(int(info.max)) in text
            assert parse_graph(text).body.ops[0].attrs["value"].tobytes() == value.tobytes()
    big = np.array(2**64 - 1, dtype=np.uint64)
    assert "18446744073709551615" in print_graph(constant_graph(big))
    round_trip(constant_graph(np.full((2, 2), 2**64 - 1, dtype=np.uint64)))


def test_complex_and_empty_constants_round_trip():
    for value in (np.array(complex(np.nan, -0.0), dtype=np.complex64),
                  np.array([1 + 2j, complex(np.inf, 5e-324)], dtype=np.complex128),
                  np.zeros((0, 3), dtype=np.complex64), np.zeros((2, 0), dtype=np.float32),
                  np.zeros((0,), dtype=np.bool_), np.arange(200, dtype=np.int16).reshape(10, 20),
                  np.array([True, False, True])):
        g2 = round_trip(constant_graph(value))
        assert g2.body.ops[0].attrs["value"].tobytes() == value.tobytes()


@settings(max_examples=100 * SCALE, deadline=None)
@given(S.locations)
def test_location_round_trip(loc):
    x = V(F32, 2)
    g = graph_of([ops.make("negate", [x], loc=loc)], inputs=[x])
    g2 = round_trip(g)
    assert g2.body.ops[0].loc == loc


def test_location_text_form():
    loc = Location("m\"o\\del.py", 5, 17, "jit(f)/dot \u00e9")
    x = V(F32)
    text = print_graph(graph_of([ops.make("negate", [x], loc=loc)], inputs=[x]))
    assert 'loc("jit(f)/dot \\u00e9" @ "m\\"o\\\\del.py":5:17)' in text
    assert str(loc) == "m\"o\\del.py:5:17 (jit(f)/dot \u00e9)"
    assert str(Location(name="n")) == "n" and str(Location()) == "<unknown>" and not Location()


def test_printed_syntax_example():
    """The text form documented in printer.py parses and prints back unchanged."""
    text = (
        "func @main(%0: f32[4,8], %1: f32[8,3]) -> (f32[4]) {\n"
        "  %2 = dot_general(%0, %1) {lhs_batching_dimensions = [], rhs_batching_dimensions = [], "
        "lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [0], "
        "precision_config = [\"DEFAULT\", \"DEFAULT\"]} : f32[4,3] loc(\"jit(f)/dot_general\" @ \"model.py\":5:17)\n"
        "  %3 = constant() {value = dense<f32[]: 0.0>} : f32[]\n"
        "  %4 = reduce(%2, %3) {dimensions = [1]} : f32[4] {\n"
        "    ^(%5: f32[], %6: f32[]):\n"
        "      %7 = add(%5, %6) : f32[]\n"
        "      return(%7)\n"
        "  }\n"
        "  return(%4)\n"
        "}\n")
    g = parse_graph(text)
    verify(g)
    assert print_graph(g) == text
    assert g.body.ops[0].loc == Location("model.py", 5, 17, "jit(f)/dot_general")


def test_print_op_marks_outside_operands():
    x = V(F32, 3)
    text = print_op(ops.make("negate", [x], loc=LOC))
    assert text.startswith("%0 = negate(%<undefined f32[3]>) : f32[3] loc(")


# --- parse errors ---------------------------------------------------------------------------

def _tokens(text):
    return [t for t in _tokenize(text) if t.kind != "eof"]


def _splice(text: str, tok, replacement: str) -> str:
    lines = text.split("\n")
    line = lines[tok.line - 1]
    lines[tok.line - 1] = line[: tok.col - 1] + replacement + line[tok.col - 1 + len(tok.text):]
    return "\n".join(lines)


def _operand_uses(tokens):
    """Value tokens that are operands: between `opname(` and `)`."""
    uses, i = [], 0
    while i < len(tokens) - 1:
        t = tokens[i]
        if t.kind == "ident" and t.text in ops.SPECS and tokens[i + 1].text == "(":
            j = i + 2
            while tokens[j].text != ")":
                if tokens[j].kind == "value":
                    uses.append(tokens[j])
                j += 1
            i = j
        i += 1
    return uses


@MEDIUM
@given(g=S.graphs(max_ops=5), data=st.data())
def test_deleting_a_token(g, data):
    text = print_graph(g)
    toks = _tokens(text)
    tok = data.draw(st.sampled_from(toks))
    mutated = _splice(text, tok, "")
    parse_or_parse_error(mutated)
    line = text.split("\n")[tok.line - 1]
    before = line[tok.col - 2: tok.col - 1] if tok.col > 1 else ""
    after = line[tok.col - 1 + len(tok.text): tok.col + len(tok.text)]
    merges = len(before + after) == 2 and (before + after).isalnum()
    optional = tok.kind in ("value", "string", "number") or tok.text in ("@", "true", "false")
    if not optional and not merges:
        # punctuation, keywords, names, types, hex data: the grammar always needs them (but a
        # deleted value can empty a `return` and a deleted `true` a list, `loc(@ "f")` without
        # its `@` names a location `f`, and a deleted comma or colon can merge two numbers:
        # `f32[4,4]` -> `f32[44]`, `"f":12:7` -> `"f":127`)
        parse_must_fail(mutated)


@MEDIUM
@given(g=S.graphs(max_ops=5), data=st.data())
def test_undefined_value_is_reported_where_used(g, data):
    text = print_graph(g)
    uses = _operand_uses(_tokens(text))
    assume(uses)
    tok = data.draw(st.sampled_from(uses))
    e = parse_must_fail(_splice(text, tok, "%999999"))
    assert "undefined value %999999" in str(e)
    assert (e.line, e.col) == (tok.line, tok.col)


@MEDIUM
@given(g=S.graphs(max_ops=5), data=st.data())
def test_use_of_a_later_value_is_undefined(g, data):
    """Renaming an operand to a value defined only further down (or in another region) fails."""
    text = print_graph(g)
    toks = _tokens(text)
    uses = _operand_uses(toks)
    assume(uses)
    tok = data.draw(st.sampled_from(uses))
    later = [t.text for t in toks if t.kind == "value" and (t.line, t.col) > (tok.line, tok.col)
             and t.text not in {u.text for u in toks[: toks.index(tok)] if u.kind == "value"}]
    assume(later)
    e = parse_must_fail(_splice(text, tok, data.draw(st.sampled_from(later))))
    assert "undefined value" in str(e) and (e.line, e.col) == (tok.line, tok.col)


@MEDIUM
@given(g=S.graphs(max_ops=5), data=st.data())
def test_truncated_text(g, data):
    text = print_graph(g)
    end = text.rstrip().rindex("}")
    cut = data.draw(st.integers(0, end))
    parse_must_fail(text[:cut])


@MEDIUM
@given(g=S.graphs(max_ops=5), data=st.data())
def test_random_character_edits(g, data):
    text = print_graph(g)
    pos = data.draw(st.integers(0, len(text) - 1))
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "swap"]))
    ch = data.draw(st.sampled_from(list('"\\%@:,()[]{}<>=^-.0123456789xefinaz \n\t\u00e9')) | st.characters())
    if kind == "replace":
        mutated = text[:pos] + ch + text[pos + 1:]
    elif kind == "insert":
        mutated = text[:pos] + ch + text[pos:]
    elif kind == "delete":
        mutated = text[:pos] + text[pos + 1:]
    else:
        mutated = text[:pos] + text[pos + 1: pos + 2] + text[pos: pos + 1] + text[pos + 2:]
    parse_or_parse_error(mutated)


_TYPE_MUTATIONS = {
    "unknown dtype": lambda name, rest: "f33" + rest,
    "no bracket": lambda name, rest: name + rest[1:],
    "round parens": lambda name, rest: name + "(" + rest[1:-1] + ")",
    "negative dim": lambda name, rest: name + "[-1" + ("," + rest[1:] if len(rest) > 2 else "]"),
    "float dim": lambda name, rest: name + "[2.5" + ("," + rest[1:] if len(rest) > 2 else "]"),
    "name dim": lambda name, rest: name + "[n" + ("," + rest[1:] if len(rest) > 2 else "]"),
    "unclosed": lambda name, rest: name + rest[:-1] + ",",
}


@MEDIUM
@given(g=S.graphs(max_ops=4), data=st.data(), how=st.sampled_from(sorted(_TYPE_MUTATIONS)))
def test_wrong_type_syntax(g, data, how):
    text = print_graph(g)
    toks = _tokens(text)
    spots = [i for i, t in enumerate(toks[:-1]) if t.kind == "ident" and t.text in dtypes.names()
             and toks[i + 1].text == "["]
    assume(spots)
    i = data.draw(st.sampled_from(spots))
    j = i + 1
    while toks[j].text != "]":
        j += 1
    lines = text.split("\n")
    start = sum(len(ln) + 1 for ln in lines[: toks[i].line - 1]) + toks[i].col - 1
    end = sum(len(ln) + 1 for ln in lines[: toks[j].line - 1]) + toks[j].col
    name, rest = toks[i].text, text[start + len(toks[i].text): end]
    assert re.fullmatch(r"\[[0-9,]*\]", rest), rest
    mutated = text[:start] + _TYPE_MUTATIONS[how](name, rest) + text[end:]
    e = parse_must_fail(mutated)
    assert e.line in (toks[i].line, toks[i].line + 1), (e, toks[i].line)


@MEDIUM
@given(g=S.graphs(max_ops=6), data=st.data())
def test_duplicate_definition(g, data):
    """Giving an op's result the name of an earlier value in the same region fails there."""
    text = print_graph(g)
    lines = text.split("\n")
    top = [(i, re.match(r"  (%\d+)", ln)) for i, ln in enumerate(lines)]
    top = [(i, m.group(1)) for i, m in top if m and not lines[i].startswith("   ")]
    args = re.findall(r"(%\d+): ", lines[0])
    earlier = [name for _, name in top] + args
    assume(len(earlier) >= 2 and top)      # ops without results (two args, no named value) have nothing to rename
    i, name = data.draw(st.sampled_from(top[1:] if not args else top))
    prev = [n for j, n in top if j < i] + args
    assume(prev)
    dup = data.draw(st.sampled_from(prev))
    lines[i] = "  " + dup + lines[i][2 + len(name):]
    e = parse_must_fail("\n".join(lines))
    assert f"value {dup} defined twice" in str(e)
    assert (e.line, e.col) == (i + 1, 3)


@pytest.mark.parametrize("text,message", [
    ("func @f(%0: f32[], %0: f32[]) -> () {\n  return()\n}\n", "defined twice"),
    ("func @f() -> (f32[]) {\n  %0 = constant() {value = dense<f32[]: 1.0>} : f32[]\n"
     "  %1 = sort(%0) {dimension = 0} : f32[] {\n    ^(%2: f32[], %2: f32[]):\n"
     "      return(%2)\n  }\n  return(%0)\n}\n", "defined twice"),
    ("func @f() -> (f32[]) {\n  %0, %0 = constant() {value = dense<f32[]: 1.0>} : f32[], f32[]\n"
     "  return(%0)\n}\n", "defined twice"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<f32[]: 1.0>, value = dense<f32[]: 1.0>} : f32[]\n"
     "  return()\n}\n", "given twice"),
])
def test_duplicate_names(text, message):
    assert message in str(parse_must_fail(text))


@MEDIUM
@given(g=S.graphs(max_ops=5), data=st.data())
def test_mismatched_declared_result_types(g, data):
    text = print_graph(g)
    head, rest = text.split("\n", 1)
    sig = re.search(r"-> \((.*)\) \{$", head)
    outs = sig.group(1)
    choice = data.draw(st.sampled_from(["extra", "drop", "change"]))
    if choice == "extra":
        new = outs + (", " if outs else "") + "f32[7,7,7]"
    elif choice == "drop":
        assume(outs)
        new = ", ".join(re.findall(r"[a-z0-9]+\[[0-9,]*\]", outs)[:-1])
    else:
        assume(outs)
        new = re.sub(r"\[([0-9,]*)\]$", lambda m: "[" + (m.group(1) + "," if m.group(1) else "") + "99]", outs)
    e = parse_must_fail(head[: sig.start(1)] + new + head[sig.end(1):] + "\n" + rest)
    assert "declares results" in str(e)


@MEDIUM
@given(g=S.graphs(max_ops=5), data=st.data())
def test_result_count_differs_from_result_types(g, data):
    text = print_graph(g)
    lines = text.split("\n")
    spots = [i for i, ln in enumerate(lines) if re.match(r"\s*%\d+(, %\d+)* = \w+\(", ln)
             and '"' not in ln.split(" : ")[0]]
    assume(spots)
    i = data.draw(st.sampled_from(spots))
    if data.draw(st.booleans()):
        lines[i] = re.sub(r"(%\d+)", r"\1, %999998", lines[i], count=1)
    else:
        lines[i] = re.sub(r" : ", " : i32[], ", lines[i], count=1)
    e = parse_must_fail("\n".join(lines))
    assert "result names but" in str(e)


@pytest.mark.parametrize("text,fragment", [
    # regressions: each used to raise something other than ParseError
    ('func @f() -> () {\n  return() loc("a\nb")\n}\n', "malformed string"),
    ('func @f() -> () {\n  return() loc("\\q")\n}\n', "malformed string"),
    ('func @f() -> () {\n  %0 = custom_call() {call_target_name = "\\x"} : ()\n  return()\n}\n',
     "malformed string"),
    ('func @f() -> () {\n  return() loc("a" @ "f":1.5)\n}\n', "line number"),
    ('func @f() -> () {\n  return() loc("a" @ "f":1:nan)\n}\n', "column number"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<f32[1]: 0xABC>} : f32[1]\n  return()\n}\n",
     "odd number of hex digits"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<i8[]: 300>} : i8[]\n  return()\n}\n",
     "out of range for i8"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<u8[2]: [1, -1]>} : u8[2]\n  return()\n}\n",
     "out of range for u8"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<u64[2]: splat 18446744073709551616>} : u64[2]\n"
     "  return()\n}\n", "out of range for u64"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<f32[99999999999,99999999999]: splat 1.0>} : f32[1]\n"
     "  return()\n}\n", "cannot fill"),
    # plain syntax errors
    ("func @f() -> () {\n  %0 = constant() {value = dense<f32[2]: 0x00>} : f32[2]\n  return()\n}\n",
     "do not fill"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<f32[3]: [1.0, 2.0]>} : f32[3]\n  return()\n}\n",
     "do not fill"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<f32[2]: 1.0>} : f32[2]\n  return()\n}\n",
     "only fills a scalar"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<i32[]: 1.5>} : i32[]\n  return()\n}\n",
     "expected an integer"),
    ("func @f() -> () {\n  %0 = constant() {value = dense<f32[]: x>} : f32[]\n  return()\n}\n", ""),
    ("func @f() -> () {\n  %0 = add(%1, %1) : f32[]\n  return()\n}\n", "undefined value %1"),
    ("func @f() -> () {\n  %0 = add() : f32[] $\n  return()\n}\n", "unexpected character"),
    ("func @f() -> () {\n  %0 = add() : f32[]\n}\n", "does not end in 'return'"),
    ("func @f() -> () {\n  return()\n}\n}\n", "end of input"),
    ("func @f() -> () {\n  return()\n", "end of input"),
    ("func f() -> () {\n  return()\n}\n", "function name"),
    ("", "expected 'func'"),
    ("func @f() -> () {\n  return() {a = }\n}\n", "attribute value"),
    ("func @f() -> () {\n  return() {a = 1, a = 2}\n}\n", "given twice"),
    ("func @f(%0: f32[4,]) -> () {\n  return()\n}\n", None),
])
def test_parse_error_cases(text, fragment):
    if fragment is None:  # accepted (a trailing comma in a shape is tolerated)
        parse_graph(text)
        return
    assert fragment in str(parse_must_fail(text))


def test_deep_nesting_is_a_parse_error():
    """Regression: deeply nested brackets raised RecursionError."""
    text = "func @f() -> () {\n  return() {a = " + "[" * 5000 + "\n}\n"
    assert "nesting too deep" in str(parse_must_fail(text))


def test_parse_error_position_exact():
    text = "func @f(%0: f32[2]) -> (f32[2]) {\n  %1 = negate(%0) : f32[2]\n  %2 = add(%1, %7) : f32[2]\n  return(%2)\n}\n"
    e = parse_must_fail(text)
    assert (e.line, e.col) == (3, 16) and "undefined value %7" in str(e)
    e = parse_must_fail(text.replace("f32[2]\n  %2", "f33[2]\n  %2"))
    assert (e.line, e.col) == (2, 21) and "unknown dtype 'f33'" in str(e)


def test_parser_does_not_verify():
    """The parser accepts well-formed text that breaks op rules; verify() rejects it."""
    g = parse_graph("func @f(%0: f32[2], %1: f32[3]) -> (f32[2]) {\n  %2 = add(%0, %1) : f32[2] loc(@ \"x.py\":3)\n"
                    "  return(%2)\n}\n")
    with pytest.raises(VerificationError, match="operand types differ"):
        verify(g)


# --- verifier -------------------------------------------------------------------------------

def expect_rejected(target, *fragments, op: Op | None = None):
    """`target` (an Op or a Graph) fails verification; the message names `op` (default: the
    target op), its location and every fragment."""
    with pytest.raises(VerificationError) as ei:
        if isinstance(target, Graph):
            verify(target)
        else:
            verify_op(target)
    msg = str(ei.value)
    who = op if op is not None else target
    if isinstance(who, Op):
        assert f"'{who.name}' at {who.loc}" in msg, msg
        assert who.loc and str(who.loc) in msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def make_op(name, operands, result_types, attrs=None, regions=(), loc=LOC, defaults=True):
    attrs = ops.fill_defaults(name, attrs or {}) if defaults else dict(attrs or {})
    return Op(name, operands, result_types, attrs, regions, loc)


def region_of(arg_types, body) -> Region:
    """Region with `arg_types`; body(args) returns (ops, outputs) — outputs None: no return."""
    r = Region(arg_types)
    built, outs = body(r.args)
    for op in built:
        r.append(op)
    if outs is not None:
        r.append(Op("return", list(outs), []))
    return r


def add_region(dtype, n=1):
    def body(args):
        adds = [ops.make("add", [args[i], args[n + i]]) for i in range(n)]
        return adds, [a.result for a in adds]
    return region_of([T(dtype)] * (2 * n), body)


def less_region(*dts):
    def body(args):
        c = ops.make("compare", [args[0], args[1]], {"comparison_direction": "LT"})
        return [c], [c.result]
    return region_of([T(d) for d in dts for _ in range(2)], body)


def test_message_format():
    a, b = V(F32, 4), V(F32, 8)
    op = make_op("add", [a, b], [T(F32, 4)])
    msg = expect_rejected(op, "operand types differ: f32[4] and f32[8]")
    assert msg == "op 'add' at model.py:12:4 (jit(f)/op): operand types differ: f32[4] and f32[8]"
    op.loc = None
    with pytest.raises(VerificationError, match=r"^op 'add': operand types differ"):
        verify_op(op)


def test_unknown_op():
    expect_rejected(make_op("frobnicate", [], [], defaults=False), "unknown op")


@pytest.mark.parametrize("name,operands,results,fragment", [
    ("add", [V(F32, 2)] * 3, [T(F32, 2)], "takes 2 operands, got 3"),
    ("negate", [], [T(F32, 2)], "takes 1 operands, got 0"),
    ("select", [V(BOOL), V(F32)], [T(F32)], "takes 3 operands, got 2"),
    ("pad", [V(F32, 2)], [T(F32, 2)], "takes 2 operands, got 1"),
    ("add", [V(F32, 2)] * 2, [T(F32, 2)] * 2, "has 1 results, got 2"),
    ("add", [V(F32, 2)] * 2, [], "has 1 results, got 0"),
    ("return", [V(F32)], [T(F32)], "has 0 results, got 1"),
])
def test_wrong_operand_or_result_count(name, operands, results, fragment):
    attrs = {"edge_padding_low": (0,), "edge_padding_high": (0,), "interior_padding": (0,)} if name == "pad" else {}
    expect_rejected(make_op(name, operands, results, attrs), fragment)


def test_wrong_region_count():
    x = V(F32, 3)
    op = make_op("reduce", [x, V(F32)], [T(F32)], {"dimensions": (0,)})
    expect_rejected(op, "has 1 regions, got 0")
    op = make_op("add", [x, x], [T(F32, 3)], regions=[add_region(F32)])
    expect_rejected(op, "has 0 regions, got 1")


def test_unknown_attribute():
    x = V(F32, 2)
    op = make_op("add", [x, x], [T(F32, 2)], {"fast_math": True})
    expect_rejected(op, "unknown attribute 'fast_math'", "known: none")
    op = make_op("transpose", [x], [T(F32, 2)], {"permutation": (0,), "perm": (0,)})
    expect_rejected(op, "unknown attribute 'perm'", "known: permutation")


@pytest.mark.parametrize("name,attrs,missing", [
    ("transpose", {}, "permutation"),
    ("compare", {"compare_type": "FLOAT"}, "comparison_direction"),
    ("compare", {"comparison_direction": "LT"}, "compare_type"),
    ("dot_general", {"lhs_contracting_dimensions": (0,), "lhs_batching_dimensions": (),
                     "rhs_batching_dimensions": (), "precision_config": ("DEFAULT", "DEFAULT")},
     "rhs_contracting_dimensions"),
])
def test_missing_attribute(name, attrs, missing):
    x = V(F32, 2)
    operands = [x, x] if name in ("compare", "dot_general") else [x]
    op = make_op(name, operands, [T(F32, 2)], attrs, defaults=False)
    expect_rejected(op, f"missing attribute '{missing}'")


def test_defaults_are_filled_by_make():
    x = V(F32, 2)
    op = ops.make("compare", [x, x], {"comparison_direction": "LT"})
    assert op.attrs["compare_type"] == "NOTYPE"
    verify_op(op)
    op = ops.make("sort", [x], {"dimension": 0}, regions=[less_region(F32)])
    assert op.attrs["is_stable"] is False
    verify_op(op)


_TRANSPOSE = ("transpose", [V(F32, 2, 3)], [T(F32, 3, 2)])


@pytest.mark.parametrize("name,operands,results,attrs,bad_key,bad_value,kind", [
    (*_TRANSPOSE, {"permutation": (1, 0)}, "permutation", [1, 0], "ints"),
    (*_TRANSPOSE, {"permutation": (1, 0)}, "permutation", (1.0, 0.0), "ints"),
    (*_TRANSPOSE, {"permutation": (1, 0)}, "permutation", (True, False), "ints"),
    (*_TRANSPOSE, {"permutation": (1, 0)}, "permutation", np.array([1, 0]), "ints"),
    ("concatenate", [V(F32, 2)], [T(F32, 2)], {"dimension": 0}, "dimension", True, "int"),
    ("concatenate", [V(F32, 2)], [T(F32, 2)], {"dimension": 0}, "dimension", 0.0, "int"),
    ("concatenate", [V(F32, 2)], [T(F32, 2)], {"dimension": 0}, "dimension", (0,), "int"),
    ("compare", [V(F32)] * 2, [T(BOOL)], {"comparison_direction": "LT"}, "comparison_direction", 1, "str"),
    ("compare", [V(F32)] * 2, [T(BOOL)], {"comparison_direction": "LT"}, "compare_type", b"FLOAT", "str"),
    ("sort", [V(F32, 2)], [T(F32, 2)], {"dimension": 0}, "is_stable", 1, "bool"),
    ("constant", [], [T(F32)], {"value": np.zeros((), np.float32)}, "value", 0.0, "tensor"),
    ("dot_general", [V(F32, 2)] * 2, [T(F32)], {"lhs_contracting_dimensions": (0,),
                                                "rhs_contracting_dimensions": (0,)},
     "precision_config", ("DEFAULT", 1), "strs"),
    ("reduce_window", [V(F32, 2), V(F32)], [T(F32, 2)],
     {"window_dimensions": (1,), "window_strides": (1,), "base_dilations": (1,),
      "window_dilations": (1,), "padding": ((0, 0),)}, "padding", ((0, 0, 0),), "pairs"),
    ("reduce_window", [V(F32, 2), V(F32)], [T(F32, 2)],
     {"window_dimensions": (1,), "window_strides": (1,), "base_dilations": (1,),
      "window_dilations": (1,), "padding": ((0, 0),)}, "padding", ((0, 0.5),), "pairs"),
    ("reduce_window", [V(F32, 2), V(F32)], [T(F32, 2)],
     {"window_dimensions": (1,), "window_strides": (1,), "base_dilations": (1,),
      "window_dilations": (1,), "padding": ((0, 0),)}, "padding", (0, 0), "pairs"),
])
def test_wrong_attribute_kind(name, operands, results, attrs, bad_key, bad_value, kind):
    regions = {"sort": [less_region(F32)], "reduce_window": [add_region(F32)]}.get(name, [])
    good = make_op(name, operands, results, attrs, regions)
    verify_op(good)
    bad = make_op(name, operands, results, {**attrs, bad_key: bad_value}, regions)
    expect_rejected(bad, f"attribute '{bad_key}' must be {kind}")


def test_wrong_attribute_kind_bools():
    x, k = V(F32, 1, 1, 4), V(F32, 1, 1, 1)
    op = ops.make("convolution", [x, k], _conv1d_attrs(), [T(F32, 1, 1, 4)], loc=LOC)
    verify_op(op)
    op.attrs["window_reversal"] = (0,)
    expect_rejected(op, "attribute 'window_reversal' must be bools")


@pytest.mark.parametrize("key,value", [("comparison_direction", "LTE"), ("comparison_direction", "lt"),
                                       ("compare_type", "FLOATING"), ("compare_type", "")])
def test_enum_choice(key, value):
    x = V(F32, 2)
    op = make_op("compare", [x, x], [T(BOOL, 2)], {"comparison_direction": "LT", key: value})
    expect_rejected(op, f"attribute '{key}' is '{value}', expected one of")


@pytest.mark.parametrize("name,operands,declared,expected", [
    ("add", [V(F32, 4)] * 2, T(F32, 5), "f32[4]"),
    ("add", [V(F32, 4)] * 2, T(F64, 4), "f32[4]"),
    ("abs", [V(dtypes.C64, 3)], T(dtypes.C64, 3), "f32[3]"),
    ("imag", [V(dtypes.C128)], T(dtypes.C128), "f64[]"),
    ("is_finite", [V(F32, 2)], T(F32, 2), "bool[2]"),
    ("compare", [V(I32, 2)] * 2, T(I32, 2), "bool[2]"),
    ("complex", [V(F64, 2)] * 2, T(dtypes.C64, 2), "c128[2]"),
    ("transpose", [V(F32, 2, 3)], T(F32, 2, 3), "f32[3,2]"),
    ("broadcast_in_dim", [V(F32, 3)], T(I32, 2, 3), "f32[2,3]"),
    ("reshape", [V(F32, 6)], T(F64, 2, 3), "f32[2,3]"),
    ("slice", [V(F32, 10)], T(F32, 5), "f32[3]"),
    ("concatenate", [V(F32, 2), V(F32, 3)], T(F32, 6), "f32[5]"),
    ("pad", [V(F32, 3), V(F32)], T(F32, 3), "f32[8]"),
])
def test_wrong_result_type(name, operands, declared, expected):
    attrs = {"compare": {"comparison_direction": "EQ"}, "transpose": {"permutation": (1, 0)},
             "broadcast_in_dim": {"broadcast_dimensions": (1,)},
             "slice": {"start_indices": (1,), "limit_indices": (8,), "strides": (3,)},
             "concatenate": {"dimension": 0},
             "pad": {"edge_padding_low": (1,), "edge_padding_high": (2,), "interior_padding": (1,)},
             }.get(name, {})
    op = make_op(name, operands, [declared], attrs)
    expect_rejected(op, f"result types ({declared}) should be ({expected})")
    op.results[0].type = TensorType.parse(expected)
    verify_op(op)


def test_use_before_definition():
    x = V(F32, 2)
    a = ops.make("negate", [x], loc=Location("a.py", 1))
    b = ops.make("add", [a.result, a.result], loc=LOC)
    verify(graph_of([a, b], inputs=[x]))
    expect_rejected(graph_of([b, a], inputs=[x], outputs=b.results), "operand 0 (f32[2]) is not defined before its use", op=b)
    # a value nobody defines (not an input of the graph)
    expect_rejected(graph_of([ops.make("negate", [V(F32, 3)], loc=LOC)]), "operand 0 (f32[3]) is not defined")
    # an op using its own result
    c = ops.make("negate", [x], loc=LOC)
    c.operands = [c.result]
    expect_rejected(graph_of([c], inputs=[x]), "is not defined before its use")
    # the return of the graph uses an undefined value
    ret_loc = Location("ret.py", 9)
    g = graph_of([a], inputs=[x])
    g.body.ops[-1] = Op("return", [b.result], [], loc=ret_loc)
    expect_rejected(g, "'return' at ret.py:9: operand 0 (f32[2]) is not defined")


def test_values_of_a_region_do_not_leak():
    x = V(F32)
    inner = ops.make("negate", [x])
    branch = region_of([], lambda args: ([inner], [inner.result]))
    other = region_of([], lambda args: ([], [inner.result]))  # uses the first branch's value
    pred = V(BOOL)
    op = make_op("if", [pred], [T(F32)], regions=[branch, other])
    g = graph_of([op], inputs=[x, pred])
    with pytest.raises(VerificationError, match="'return': operand 0 \\(f32\\[\\]\\) is not defined"):
        verify(g)
    # and after the op, outside it
    good = make_op("if", [pred], [T(F32)], regions=[branch, region_of([], lambda args: ([], [x]))])
    verify(graph_of([good], inputs=[x, pred]))
    after = ops.make("add", [inner.result, x], loc=LOC)
    expect_rejected(graph_of([good, after], inputs=[x, pred]), "operand 0 (f32[]) is not defined", op=after)


def test_captures_are_allowed_only_when_defined_before():
    x, pred = V(F32), V(BOOL)
    later = ops.make("negate", [x])
    capture_later = region_of([], lambda args: ([], [later.result]))
    op = make_op("if", [pred], [T(F32)], regions=[capture_later, region_of([], lambda args: ([], [x]))])
    verify(graph_of([later, op], inputs=[x, pred]))
    with pytest.raises(VerificationError, match="not defined before its use"):
        verify(graph_of([op, later], inputs=[x, pred]))


def test_region_without_return():
    x, init = V(F32, 3), V(F32)
    no_ret = region_of([T(F32)] * 2, lambda args: ([ops.make("add", [args[0], args[1]])], None))
    op = make_op("reduce", [x, init], [T(F32)], {"dimensions": (0,)}, [no_ret])
    expect_rejected(graph_of([op], inputs=[x, init]), "region 0 in op 'reduce' at", "does not end in 'return'")
    expect_rejected(op, "body does not end in 'return'")
    empty_branch = Region()
    op = make_op("if", [V(BOOL)], [], regions=[region_of([], lambda a: ([], [])), empty_branch])
    expect_rejected(graph_of([op], inputs=op.operands), "region 1 in op 'if' at", "does not end in 'return'")
    g = graph_of([], inputs=[x])
    g.body.ops.clear()
    with pytest.raises(VerificationError, match="body in the graph body does not end in 'return'"):
        verify(g)


def test_return_must_be_last():
    x = V(F32)
    g = graph_of([], inputs=[x], outputs=[x])
    g.body.ops.insert(0, Op("return", [x], [], loc=LOC))
    with pytest.raises(VerificationError, match=r"op 'return' at model.py:12:4 \(jit\(f\)/op\): 'return' must be the last"):
        verify(g)


def test_region_argument_types():
    x, init = V(F32, 3), V(F32)
    good = make_op("reduce", [x, init], [T(F32)], {"dimensions": (0,)}, [add_region(F32)])
    verify_op(good)
    bad = make_op("reduce", [x, init], [T(F32)], {"dimensions": (0,)}, [add_region(F64)])
    expect_rejected(bad, "body takes (f64[], f64[]), expected (f32[], f32[])")
    one_arg = region_of([T(F32)], lambda args: ([], [args[0]]))
    expect_rejected(make_op("reduce", [x, init], [T(F32)], {"dimensions": (0,)}, [one_arg]),
                    "body takes (f32[]), expected (f32[], f32[])")
    # sort comparator: two scalars per operand
    keys, vals = V(F32, 4), V(I32, 4)
    verify_op(make_op("sort", [keys, vals], [T(F32, 4), T(I32, 4)], {"dimension": 0},
                      [less_region(F32, I32)]))
    expect_rejected(make_op("sort", [keys, vals], [T(F32, 4), T(I32, 4)], {"dimension": 0},
                            [less_region(F32)]), "comparator takes (f32[], f32[]), expected (f32[], f32[], i32[], i32[])")
    # if branches take no arguments
    branch = region_of([T(F32)], lambda args: ([], [args[0]]))
    expect_rejected(make_op("if", [V(BOOL)], [T(F32)], regions=[branch, branch]), "branch 0 takes (f32[]), expected ()")


def test_region_result_types():
    x, init = V(F32, 3), V(F32)
    returns_bool = region_of([T(F32)] * 2, lambda args: (
        [c := ops.make("compare", [args[0], args[1]], {"comparison_direction": "LT"})], [c.result]))
    expect_rejected(make_op("reduce", [x, init], [T(F32)], {"dimensions": (0,)}, [returns_bool]),
                    "body returns (bool[]), expected (f32[])")
    expect_rejected(make_op("sort", [x], [T(F32, 3)], {"dimension": 0}, [add_region(F32)]),
                    "comparator returns (f32[]), expected (bool[])")
    a, b = region_of([], lambda args: ([], [x])), region_of([], lambda args: ([], [init]))
    expect_rejected(make_op("if", [V(BOOL)], [T(F32, 3)], regions=[a, b]),
                    "branch 1 returns (f32[]), expected (f32[3])")
    expect_rejected(make_op("case", [V(I32)], [T(F32, 3)], regions=[a, a, b]),
                    "branch 2 returns (f32[]), expected (f32[3])")
    verify_op(make_op("case", [V(I32)], [T(F32, 3)], regions=[a, a]))
    # while: cond returns a bool scalar, body returns the carried types
    i = V(I32)
    cond = region_of([T(I32)], lambda args: (
        [c := ops.make("compare", [args[0], args[0]], {"comparison_direction": "LT"})], [c.result]))
    body = region_of([T(I32)], lambda args: ([], [args[0]]))
    verify_op(make_op("while", [i], [T(I32)], regions=[cond, body]))
    expect_rejected(make_op("while", [i], [T(I32)], regions=[body, body]), "cond returns (i32[]), expected (bool[])")
    expect_rejected(make_op("while", [i], [T(I32)], regions=[cond, region_of([T(I32)], lambda args: ([], [x]))]),
                    "body returns (f32[3]), expected (i32[])")


def test_case_needs_a_branch():
    expect_rejected(make_op("case", [V(I32)], []), "needs at least one branch")
    verify_op(make_op("case", [V(I32)], [], regions=[region_of([], lambda a: ([], []))]))


def test_selector_types():
    a = region_of([], lambda args: ([], []))
    expect_rejected(make_op("if", [V(I32)], [], regions=[a, a]), "selector must be a bool scalar, not i32[]")
    expect_rejected(make_op("if", [V(BOOL, 1)], [], regions=[a, a]), "selector must be a bool scalar")
    expect_rejected(make_op("case", [V(BOOL)], [], regions=[a]), "selector must be a i32 scalar, not bool[]")


# -- dtype rules: every elementwise op against every dtype --

@pytest.mark.parametrize("name", sorted(S.UNARY))
def test_unary_dtype_rules(name):
    for d in dtypes.ALL:
        op = make_op(name, [V(d, 2)], [T(S.unary_result_dtype(name, d), 2)])
        if S.UNARY[name](d):
            verify_op(op)
        else:
            expect_rejected(op, f"operand dtype {d.name} not allowed")


@pytest.mark.parametrize("name", sorted(S.BINARY))
def test_binary_dtype_rules(name):
    for d in dtypes.ALL:
        op = make_op(name, [V(d, 2), V(d, 2)], [T(d, 2)])
        if S.BINARY[name](d):
            verify_op(op)
        else:
            expect_rejected(op, f"operand dtype {d.name} not allowed")


def test_every_registered_elementwise_op_has_a_rule_here():
    elementwise = {n for n, s in ops.SPECS.items() if s.category == "elementwise"}
    covered = set(S.UNARY) | set(S.BINARY) | {"complex", "compare", "convert", "bitcast_convert",
                                                "reduce_precision", "select", "clamp"}
    assert elementwise == covered


def test_other_dtype_rules():
    for d in dtypes.ALL:
        op = make_op("complex", [V(d, 2)] * 2, [T(dtypes.C128 if d == F64 else dtypes.C64, 2)])
        if d in (F32, F64):
            verify_op(op)
        else:
            expect_rejected(op, f"operands must be f32 or f64, not {d.name}")
        op = make_op("reduce_precision", [V(d)], [T(d)], {"exponent_bits": 5, "mantissa_bits": 2})
        if d.is_float:
            verify_op(op)
        else:
            expect_rejected(op, f"operand dtype {d.name} must be a float")
        op = make_op("iota", [], [T(d, 3)], {"iota_dimension": 0})
        if d.kind != "bool":
            verify_op(op)
        else:
            expect_rejected(op, "iota of bool")
    expect_rejected(make_op("reduce_precision", [V(F32)], [T(F32)], {"exponent_bits": 0, "mantissa_bits": 2}),
                    "bit counts out of range")
    expect_rejected(make_op("iota", [], [T(F32, 3)], {"iota_dimension": 1}), "iota_dimension out of range")


def test_select_and_clamp_rules():
    x = V(F32, 3)
    verify_op(make_op("select", [V(BOOL), x, x], [T(F32, 3)]))
    verify_op(make_op("select", [V(BOOL, 3), x, x], [T(F32, 3)]))
    expect_rejected(make_op("select", [V(I32, 3), x, x], [T(F32, 3)]), "predicate must be bool, not i32")
    expect_rejected(make_op("select", [V(BOOL, 2), x, x], [T(F32, 3)]), "predicate shape (2,) must be () or (3,)")
    expect_rejected(make_op("select", [V(BOOL), x, V(F32, 2)], [T(F32, 3)]), "on_true and on_false types differ")
    verify_op(make_op("clamp", [V(F32), x, V(F32, 3)], [T(F32, 3)]))
    expect_rejected(make_op("clamp", [V(F64), x, V(F32)], [T(F32, 3)]), "min dtype f64 differs")
    expect_rejected(make_op("clamp", [V(F32), x, V(F32, 1)], [T(F32, 3)]), "max shape (1,) must be () or (3,)")


def test_constant_rules():
    verify_op(make_op("constant", [], [T(dtypes.BF16, 2)], {"value": np.zeros(2, dtypes.BF16.numpy)}))
    expect_rejected(make_op("constant", [], [T(F32, 2)], {"value": np.zeros(3, np.float32)}),
                    "result types (f32[2]) should be (f32[3])")
    expect_rejected(make_op("constant", [], [T(F32)], {"value": np.array("x")}), "malformed op (KeyError")


def test_convert_and_bitcast_rules():
    verify_op(make_op("convert", [V(F32, 2)], [T(dtypes.U8, 2)]))
    expect_rejected(make_op("convert", [V(F32, 2)], [T(dtypes.U8, 3)]), "result shape (3,) differs")
    verify_op(make_op("bitcast_convert", [V(F32, 2)], [T(I32, 2)]))
    verify_op(make_op("bitcast_convert", [V(F32, 2)], [T(dtypes.U8, 2, 4)]))
    verify_op(make_op("bitcast_convert", [V(dtypes.U16, 5, 4)], [T(F64, 5)]))
    expect_rejected(make_op("bitcast_convert", [V(F32, 2)], [T(dtypes.U8, 2)]), "result shape (2,) must be (2, 4)")
    expect_rejected(make_op("bitcast_convert", [V(dtypes.U16, 5, 2)], [T(F64, 5)]), "must end in 4")


# -- shape rules --

shape_st = S.shapes(max_rank=3, max_dim=3)


@MEDIUM
@given(st.tuples(S.dtype_strategy(), shape_st), st.tuples(S.dtype_strategy(), shape_st),
       st.sampled_from(["add", "maximum", "compare", "select"]))
def test_binary_ops_need_equal_types(a, b, name):
    ta, tb = TensorType(a[1], a[0]), TensorType(b[1], b[0])
    operands = [Value(ta), Value(tb)]
    attrs = {"comparison_direction": "NE"} if name == "compare" else {}
    result = TensorType(ta.shape, BOOL) if name == "compare" else ta
    if name == "select":
        operands.insert(0, V(BOOL))
    op = make_op(name, operands, [result], attrs)
    if ta == tb:
        verify_op(op)
    else:
        expect_rejected(op, "types differ")


@MEDIUM
@given(shape_st, shape_st)
def test_reshape_needs_equal_size(a, b):
    op = make_op("reshape", [V(F32, *a)], [T(F32, *b)])
    if math.prod(a) == math.prod(b):
        verify_op(op)
    else:
        expect_rejected(op, f"cannot reshape f32[{','.join(map(str, a))}]")


@MEDIUM
@given(S.shapes(max_rank=4), st.lists(st.integers(-1, 4), max_size=5))
def test_transpose_needs_a_permutation(shape, perm):
    ok = sorted(perm) == list(range(len(shape)))
    result = [shape[p] for p in perm] if ok else list(shape)
    op = make_op("transpose", [V(F32, *shape)], [T(F32, *result)], {"permutation": tuple(perm)})
    if ok:
        verify_op(op)
    else:
        expect_rejected(op, f"permutation {perm} is not a permutation of rank {len(shape)}")


@MEDIUM
@given(shape_st, S.shapes(max_rank=4, max_dim=3), st.lists(st.integers(-1, 4), max_size=4))
def test_broadcast_in_dim_rules(operand, result, dims):
    ok = (len(dims) == len(operand) and len(set(dims)) == len(dims)
          and all(0 <= d < len(result) for d in dims)
          and all(operand[i] in (1, result[d]) for i, d in enumerate(dims)))
    op = make_op("broadcast_in_dim", [V(F32, *operand)], [T(F32, *result)], {"broadcast_dimensions": tuple(dims)})
    if ok:
        verify_op(op)
    elif len(dims) != len(operand):
        expect_rejected(op, f"broadcast_dimensions {dims} must have {len(operand)} entries")
    elif len(set(dims)) != len(dims) or not all(0 <= d < len(result) for d in dims):
        expect_rejected(op, f"broadcast_dimensions {dims} must be distinct dimensions of the result")
    else:
        expect_rejected(op, "cannot broadcast to")


@MEDIUM
@given(shape_st, st.data())
def test_slice_rules(shape, data):
    n = len(shape) + data.draw(st.sampled_from([0, 0, 0, 1, -1]))
    assume(n >= 0)
    start = data.draw(st.lists(st.integers(-1, 4), min_size=n, max_size=n))
    limit = data.draw(st.lists(st.integers(-1, 4), min_size=n, max_size=n))
    strides = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    ok = n == len(shape) and all(0 <= s <= e <= d and k > 0 for s, e, k, d in zip(start, limit, strides, shape))
    result = [len(range(s, e, k)) for s, e, k in zip(start, limit, strides)] if ok else list(shape)
    op = make_op("slice", [V(F32, *shape)], [T(F32, *result)],
                 {"start_indices": tuple(start), "limit_indices": tuple(limit), "strides": tuple(strides)})
    if ok:
        verify_op(op)
    elif n != len(shape):
        expect_rejected(op, "slice attributes must have one entry per dimension")
    else:
        expect_rejected(op, "out of range for dimension")


@MEDIUM
@given(st.lists(st.tuples(st.sampled_from([F32, I32]), S.shapes(max_rank=2, max_dim=3)), min_size=1, max_size=3),
       st.integers(-1, 2))
def test_concatenate_rules(parts, dim):
    types = [TensorType(s, d) for d, s in parts]
    first = types[0]
    ok = 0 <= dim < first.rank and all(
        t.dtype == first.dtype and t.rank == first.rank
        and all(a == b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != dim) for t in types)
    result = first
    if ok:
        shape = list(first.shape)
        shape[dim] = sum(t.shape[dim] for t in types)
        result = first.with_shape(shape)
    op = make_op("concatenate", [Value(t) for t in types], [result], {"dimension": dim})
    if ok:
        verify_op(op)
    else:
        expect_rejected(op, "dimension" if not 0 <= dim < first.rank else "does not concatenate")


@MEDIUM
@given(shape_st, st.data())
def test_pad_rules(shape, data):
    n = len(shape)
    lo = data.draw(st.lists(st.integers(-3, 2), min_size=n, max_size=n))
    hi = data.draw(st.lists(st.integers(-3, 2), min_size=n, max_size=n))
    interior = data.draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n))
    pv = data.draw(st.sampled_from([T(F32), T(F32, 1), T(F64)]))
    sizes = [a + b + d + max(d - 1, 0) * i for d, a, b, i in zip(shape, lo, hi, interior)]
    ok = pv == T(F32) and all(i >= 0 for i in interior) and all(x >= 0 for x in sizes)
    op = make_op("pad", [V(F32, *shape), Value(pv)], [T(F32, *(sizes if ok else shape))],
                 {"edge_padding_low": tuple(lo), "edge_padding_high": tuple(hi), "interior_padding": tuple(interior)})
    if ok:
        verify_op(op)
        # the formula: a value of each dimension, `interior` fillers between neighbours
        x = np.zeros(shape, np.float32)
        assert sizes == list(_numpy_pad_shape(x, lo, hi, interior))
    elif pv != T(F32):
        expect_rejected(op, f"padding value must be a f32 scalar, not {pv}")
    elif any(i < 0 for i in interior):
        expect_rejected(op, "interior_padding must be non-negative")
    else:
        expect_rejected(op, "padding gives a negative dimension")


def _numpy_pad_shape(x, lo, hi, interior):
    for axis, i in enumerate(interior):
        if i and x.shape[axis] > 1:
            idx = np.repeat(np.arange(1, x.shape[axis]), i)
            x = np.insert(x, idx, 0, axis=axis)
    for axis, (a, b) in enumerate(zip(lo, hi)):
        x = np.concatenate([np.zeros(x.shape[:axis] + (max(a, 0),) + x.shape[axis + 1:]), x,
                            np.zeros(x.shape[:axis] + (max(b, 0),) + x.shape[axis + 1:])], axis=axis)
        x = np.take(x, range(max(-a, 0), x.shape[axis] - max(-b, 0)), axis=axis)
    return x.shape


def test_pad_and_reverse_messages():
    x = V(F32, 3)
    expect_rejected(make_op("pad", [x, V(F32)], [T(F32, 3)], {"edge_padding_low": (0,), "edge_padding_high": (0,),
                                                           "interior_padding": (-1,)}), "interior_padding must be non-negative")
    expect_rejected(make_op("pad", [x, V(F32)], [T(F32, 3)], {"edge_padding_low": (-3,), "edge_padding_high": (-1,),
                                                           "interior_padding": (0,)}), "negative dimension (-1)")
    expect_rejected(make_op("pad", [x, V(I32)], [T(F32, 3)], {"edge_padding_low": (0,), "edge_padding_high": (0,),
                                                           "interior_padding": (0,)}), "padding value must be a f32 scalar")
    verify_op(make_op("reverse", [V(F32, 2, 3)], [T(F32, 2, 3)], {"dimensions": (1, 0)}))
    expect_rejected(make_op("reverse", [x], [T(F32, 3)], {"dimensions": (0, 0)}), "bad dimensions [0, 0]")
    expect_rejected(make_op("reverse", [x], [T(F32, 3)], {"dimensions": (1,)}), "bad dimensions [1]")


@MEDIUM
@given(st.data())
def test_dot_general_rules(data):
    lrank, rrank = data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))
    lshape = data.draw(st.lists(st.integers(1, 3), min_size=lrank, max_size=lrank))
    rshape = data.draw(st.lists(st.integers(1, 3), min_size=rrank, max_size=rrank))
    dims = st.lists(st.integers(-1, 3), max_size=2, unique=True)
    lb, rb, lc, rc = (tuple(data.draw(dims)) for _ in range(4))
    distinct = not set(lb) & set(lc) and not set(rb) & set(rc)
    ok = (len(lb) == len(rb) and len(lc) == len(rc) and distinct
          and all(0 <= x < lrank and 0 <= y < rrank and lshape[x] == rshape[y]
                  for x, y in list(zip(lb, rb)) + list(zip(lc, rc))))
    if ok:
        shape = ([lshape[i] for i in lb] + [lshape[i] for i in range(lrank) if i not in lb + lc]
                 + [rshape[i] for i in range(rrank) if i not in rb + rc])
    else:
        shape = []
    op = make_op("dot_general", [V(F32, *lshape), V(dtypes.BF16, *rshape)], [T(F32, *shape)],
                 {"lhs_batching_dimensions": lb, "rhs_batching_dimensions": rb,
                  "lhs_contracting_dimensions": lc, "rhs_contracting_dimensions": rc})
    if ok:
        verify_op(op)
        # the result dtype is free (an accumulation type), the shape is not
        op.results[0].type = T(F64, *shape)
        verify_op(op)
        op.results[0].type = T(F32, *shape, 2)
        expect_rejected(op, f"result shape must be {tuple(shape)}")
    elif len(lb) != len(rb) or len(lc) != len(rc):
        expect_rejected(op, "batching/contracting dimension lists differ in length")
    elif not distinct:
        expect_rejected(op, "batching and contracting dimensions", "must be distinct")
    else:
        expect_rejected(op, "dimension")
        assert "dimension out of range" in str_error(op) or " != rhs dimension " in str_error(op)


def str_error(op) -> str:
    with pytest.raises(VerificationError) as ei:
        verify_op(op)
    return str(ei.value)


def test_dot_general_messages():
    def dg(l, r, lc, rc, result):
        return make_op("dot_general", [l, r], [result], {"lhs_contracting_dimensions": lc,
                                                         "rhs_contracting_dimensions": rc})
    verify_op(dg(V(F32, 4, 8), V(F32, 8, 3), (1,), (0,), T(F32, 4, 3)))
    expect_rejected(dg(V(F32, 4, 8), V(F32, 7, 3), (1,), (0,), T(F32, 4, 3)), "lhs dimension 1 (8) != rhs dimension 0 (7)")
    expect_rejected(dg(V(F32, 4, 8), V(F32, 8, 3), (1,), (), T(F32, 4, 3)), "differ in length")
    expect_rejected(dg(V(F32, 4, 8), V(F32, 8, 3), (2,), (0,), T(F32, 4, 3)), "dimension out of range")
    expect_rejected(dg(V(F32, 4, 8), V(F32, 8, 3), (1,), (0,), T(F32, 3, 4)), "result shape must be (4, 3), not (3, 4)")
    expect_rejected(dg(V(F32, 4, 8), V(I32, 8, 3), (1,), (0,), T(F32, 4, 3)), "operand dtypes f32 and i32 do not mix")
    verify_op(dg(V(dtypes.I8, 4, 8), V(dtypes.U8, 8, 3), (1,), (0,), T(I32, 4, 3)))
    # a dimension both contracted and batched, or contracted twice (used to pass)
    both = make_op("dot_general", [V(F32, 4, 4), V(F32, 4, 4)], [T(F32, 4, 4)],
                   {"lhs_batching_dimensions": (0,), "rhs_batching_dimensions": (0,),
                    "lhs_contracting_dimensions": (0,), "rhs_contracting_dimensions": (1,)})
    expect_rejected(both, "lhs batching and contracting dimensions [0, 0] must be distinct")
    expect_rejected(dg(V(F32, 4, 4), V(F32, 4, 4), (0, 1), (1, 1), T(F32)),
                    "rhs batching and contracting dimensions [1, 1] must be distinct")
    verify_op(dg(V(dtypes.BF16, 4, 8), V(dtypes.F8E4M3FN, 8, 3), (1,), (0,), T(F32, 4, 3)))


def _gather_attrs(**kw):
    attrs = {"offset_dims": (1,), "collapsed_slice_dims": (0,), "start_index_map": (0,),
             "index_vector_dim": 1, "slice_sizes": (1, 6)}
    attrs.update(kw)
    return attrs


def test_gather_rules():
    operand, idx = V(F32, 5, 6), V(I32, 3, 1)
    good = make_op("gather", [operand, idx], [T(F32, 3, 6)], _gather_attrs())
    verify_op(good)
    assert ops.make("gather", [operand, idx], _gather_attrs()).result_types == [T(F32, 3, 6)]
    cases = [
        ({}, [V(F32, 3, 1)], "start_indices must be integers"),
        ({"slice_sizes": (1,)}, None, "slice_sizes [1] must have 2 entries"),
        ({"slice_sizes": (1, 7)}, None, "slice_sizes [1, 7] exceed f32[5,6]"),
        ({"slice_sizes": (2, 6)}, None, "collapsed/batching dimension 0 must have slice size 1"),
        ({"collapsed_slice_dims": (2,)}, None, "collapsed/batching dimension 2"),
        ({"offset_dims": (1, 2)}, None, "offset_dims [1, 2] must have 1 entries"),
        ({"offset_dims": (2,)}, None, "offset_dims [2]"),
        ({"index_vector_dim": 3}, None, "index_vector_dim out of range"),
        # start_index_map: one distinct operand dimension per index component (used to pass)
        ({"start_index_map": (0, 1)}, None, "start_index_map [0, 1] must be 1 distinct dimensions"),
        ({"start_index_map": ()}, None, "start_index_map [] must be 1 distinct dimensions"),
        ({"start_index_map": (2,)}, None, "start_index_map [2] must be 1 distinct dimensions"),
        ({"start_index_map": (0, 0), "index_vector_dim": 0}, [V(I32, 2, 3)], "start_index_map [0, 0] must be 2"),
    ]
    for attrs, indices, fragment in cases:
        op = make_op("gather", [operand, indices[0] if indices else idx], [T(F32, 3, 6)], _gather_attrs(**attrs))
        expect_rejected(op, fragment)
    expect_rejected(make_op("gather", [operand, idx], [T(F32, 6, 3)], _gather_attrs()),
                    "result types (f32[6,3]) should be (f32[3,6])")


def test_gather_index_vector_forms():
    operand = V(F32, 5, 6)
    # index vector along dimension 0 of the indices, two components
    op = ops.make("gather", [operand, V(I32, 2, 3)], _gather_attrs(
        start_index_map=(1, 0), index_vector_dim=0, collapsed_slice_dims=(0, 1), offset_dims=(),
        slice_sizes=(1, 1)), loc=LOC)
    assert op.result_types == [T(F32, 3)]
    verify_op(op)
    # implicit trailing index vector of size 1
    op = ops.make("gather", [operand, V(dtypes.U8, 4)], _gather_attrs(index_vector_dim=1), loc=LOC)
    assert op.result_types == [T(F32, 4, 6)]
    verify_op(op)


def test_gather_repeated_offset_dims():
    """Regression: a repeated offset dimension made the verifier raise StopIteration."""
    op = make_op("gather", [V(F32, 5, 6), V(I32, 3, 1)], [T(F32, 3, 2, 6)],
                 _gather_attrs(offset_dims=(1, 1), collapsed_slice_dims=(), slice_sizes=(2, 6)))
    expect_rejected(op, "offset_dims [1, 1] must be distinct")


def _conv1d_attrs(**kw):
    attrs = {"window_strides": (1,), "padding": ((0, 0),), "lhs_dilation": (1,), "rhs_dilation": (1,),
             "window_reversal": (False,), "input_batch_dimension": 0, "input_feature_dimension": 1,
             "input_spatial_dimensions": (2,), "kernel_input_feature_dimension": 1,
             "kernel_output_feature_dimension": 0, "kernel_spatial_dimensions": (2,),
             "output_batch_dimension": 0, "output_feature_dimension": 1, "output_spatial_dimensions": (2,)}
    attrs.update(kw)
    return attrs


@pytest.mark.parametrize("lhs,rhs,attrs,out", [
    ((2, 3, 10), (4, 3, 3), {}, (2, 4, 8)),
    ((2, 3, 10), (4, 3, 3), {"window_strides": (2,)}, (2, 4, 4)),
    ((2, 3, 10), (4, 3, 3), {"padding": ((1, 1),)}, (2, 4, 10)),
    ((2, 3, 10), (4, 3, 3), {"rhs_dilation": (2,)}, (2, 4, 6)),
    ((2, 3, 10), (4, 3, 3), {"lhs_dilation": (2,)}, (2, 4, 17)),
    ((2, 3, 2), (4, 3, 3), {}, (2, 4, 0)),
    ((2, 6, 10), (4, 3, 3), {"feature_group_count": 2}, (2, 4, 8)),
    ((4, 3, 10), (4, 3, 3), {"batch_group_count": 2}, (2, 4, 8)),
    ((10, 2, 3), (3, 3, 4), {"input_batch_dimension": 1, "input_feature_dimension": 2, "input_spatial_dimensions": (0,),
                             "kernel_input_feature_dimension": 1, "kernel_output_feature_dimension": 2,
                             "kernel_spatial_dimensions": (0,), "output_batch_dimension": 2,
                             "output_feature_dimension": 0, "output_spatial_dimensions": (1,)}, (4, 8, 2)),
])
def test_convolution_shapes(lhs, rhs, attrs, out):
    op = make_op("convolution", [V(F32, *lhs), V(F32, *rhs)], [T(F32, *out)], _conv1d_attrs(**attrs))
    verify_op(op)
    wrong = list(out)
    wrong[-1] += 1
    op.results[0].type = T(F32, *wrong)
    expect_rejected(op, f"result shape must be {out}")


@pytest.mark.parametrize("lhs,rhs,attrs,fragment", [
    ((2, 3, 10), (4, 2, 3), {}, "input features 3 != kernel input features 2 x feature_group_count 1"),
    ((2, 3, 10, 1), (4, 3, 3), {}, "input and kernel must have rank 3"),
    ((2, 3, 10), (4, 3, 3), {"window_strides": (1, 1)}, "window_strides must have 1 entries"),
    ((2, 3, 10), (4, 3, 3), {"padding": ()}, "padding must have 1 entries"),
    ((2, 6, 10), (3, 3, 3), {"feature_group_count": 2}, "kernel output features must divide"),
    ((3, 3, 10), (4, 3, 3), {"batch_group_count": 2}, "batch 3 must divide by batch_group_count 2"),
    ((2, 3, 10), (4, 3, 3), {"batch_group_count": 2, "feature_group_count": 3}, "one of them 1"),
    ((2, 3, 10), (4, 3, 3), {"feature_group_count": 0}, "must be >= 1"),
    # dimension numbers that are not a permutation (used to pass, or to index from the end)
    ((2, 3, 10), (4, 3, 3), {"input_feature_dimension": 0}, "input dimension numbers [0, 0, 2] must be a permutation"),
    ((2, 3, 10), (4, 3, 3), {"input_spatial_dimensions": (-1,)}, "input dimension numbers [0, 1, -1]"),
    ((2, 3, 10), (4, 3, 3), {"kernel_spatial_dimensions": (3,)}, "kernel dimension numbers [1, 0, 3]"),
    ((2, 3, 10), (4, 3, 3), {"output_feature_dimension": 2}, "output dimension numbers [0, 2, 2]"),
    # regressions: a zero stride or dilation used to raise ZeroDivisionError
    ((2, 3, 10), (4, 3, 3), {"window_strides": (0,)}, "window_strides [0] must be positive"),
    ((2, 3, 10), (4, 3, 3), {"lhs_dilation": (0,)}, "lhs_dilation [0] must be positive"),
    ((2, 3, 10), (4, 3, 3), {"rhs_dilation": (-1,)}, "rhs_dilation [-1] must be positive"),
])
def test_convolution_errors(lhs, rhs, attrs, fragment):
    op = make_op("convolution", [V(F32, *lhs), V(F32, *rhs)], [T(F32, 2, 4, 8)], _conv1d_attrs(**attrs))
    expect_rejected(op, fragment)


def test_reduce_window_zero_stride():
    """Regression: reduce_window with a zero stride raised ZeroDivisionError."""
    attrs = {"window_dimensions": (2,), "window_strides": (1,), "base_dilations": (1,),
             "window_dilations": (1,), "padding": ((0, 0),)}
    x, init = V(F32, 5), V(F32)
    verify_op(make_op("reduce_window", [x, init], [T(F32, 4)], attrs, [add_region(F32)]))
    expect_rejected(make_op("reduce_window", [x, init], [T(F32, 4)], {**attrs, "window_strides": (0,)},
                            [add_region(F32)]), "window_strides [0] must be positive")
    expect_rejected(make_op("reduce_window", [x, init], [T(F32, 4)], {**attrs, "window_dilations": (0,)},
                            [add_region(F32)]), "window_dilations [0] must be positive")


def test_reduce_and_sort_rules():
    x, init = V(F32, 3, 4), V(F32)
    verify_op(make_op("reduce", [x, init], [T(F32, 3)], {"dimensions": (1,)}, [add_region(F32)]))
    expect_rejected(make_op("reduce", [x, init], [T(F32, 3)], {"dimensions": (2,)}, [add_region(F32)]),
                    "bad dimensions [2]")
    expect_rejected(make_op("reduce", [x, V(F32, 1)], [T(F32, 3)], {"dimensions": (1,)}, [add_region(F32)]),
                    "init value must be a scalar")
    expect_rejected(make_op("reduce", [x], [T(F32, 3)], {"dimensions": (1,)}, [add_region(F32)]),
                    "needs N inputs and N init values")
    two = make_op("reduce", [x, V(I32, 3, 4), init, V(I32)], [T(F32, 3), T(I32, 3)], {"dimensions": (1,)},
                  [region_of([T(F32), T(I32), T(F32), T(I32)], lambda a: (
                      [p := ops.make("add", [a[0], a[2]]), q := ops.make("maximum", [a[1], a[3]])],
                      [p.result, q.result]))])
    verify_op(two)
    expect_rejected(make_op("reduce", [x, V(I32, 4, 3), init, V(I32)], [T(F32, 3), T(I32, 3)],
                            {"dimensions": (1,)}, two.regions), "inputs differ in shape")
    expect_rejected(make_op("sort", [x, V(I32, 4, 3)], [T(F32, 3, 4), T(I32, 4, 3)], {"dimension": 0},
                            [less_region(F32, I32)]), "operands differ in shape")
    expect_rejected(make_op("sort", [x], [T(F32, 3, 4)], {"dimension": 2}, [less_region(F32)]),
                    "dimension 2 out of range")
    verify_op(make_op("sort", [x], [T(F32, 3, 4)], {"dimension": -1}, [less_region(F32)]))


def test_dynamic_slice_rules():
    x = V(F32, 5, 6)
    i, j = V(I32), V(dtypes.U8)
    verify_op(make_op("dynamic_slice", [x, i, j], [T(F32, 2, 6)], {"slice_sizes": (2, 6)}))
    expect_rejected(make_op("dynamic_slice", [x, i], [T(F32, 2, 6)], {"slice_sizes": (2, 6)}), "needs 2 start indices, got 1")
    expect_rejected(make_op("dynamic_slice", [x, i, V(F32)], [T(F32, 2, 6)], {"slice_sizes": (2, 6)}),
                    "start index must be an integer scalar, not f32[]")
    expect_rejected(make_op("dynamic_slice", [x, i, j], [T(F32, 2, 7)], {"slice_sizes": (2, 7)}), "do not fit f32[5,6]")
    expect_rejected(make_op("dynamic_slice", [], [T(F32)], {"slice_sizes": ()}), "malformed op")
    verify_op(make_op("dynamic_update_slice", [x, V(F32, 2, 6), i, j], [T(F32, 5, 6)]))
    expect_rejected(make_op("dynamic_update_slice", [x, V(F32, 2, 7), i, j], [T(F32, 5, 6)]), "does not fit operand")


def test_verify_walks_into_regions():
    """A broken op inside a region is found, named with its own location."""
    x = V(F32, 3)
    inner_loc = Location("inner.py", 7, 1, "body/add")
    bad_body = region_of([T(F32)] * 2, lambda a: ([ops.make("add", [a[0], x], result_types=[T(F32)], loc=inner_loc)], None))
    bad_body.ops.append(Op("return", [bad_body.ops[0].result], []))
    op = make_op("reduce", [x, V(F32)], [T(F32)], {"dimensions": (0,)}, [bad_body])
    g = graph_of([op], inputs=[x, op.operands[1]])
    with pytest.raises(VerificationError, match=r"op 'add' at inner.py:7:1 \(body/add\): operand types differ"):
        verify(g)


@FAST
@given(S.graphs(max_ops=5), st.data())
def test_verifier_catches_a_corrupted_result_type(g, data):
    """Change one op's declared result type to another one: the verifier notices unless the
    op's result type is free (convert, bitcast_convert, iota, reshape dtype-preserving, ...)."""
    candidates = [op for op in g.walk() if op.results and op.name in _INFERRED]
    assume(candidates)
    op = data.draw(st.sampled_from(candidates))
    r = data.draw(st.sampled_from(op.results))
    old = r.type
    r.type = old.with_shape(old.shape + (7,))
    op.loc = op.loc or LOC
    with pytest.raises(VerificationError) as ei:
        verify(g)
    assert str(ei.value).startswith(f"op {op.where()}: "), (str(ei.value), op.where())


# ops whose results are fully determined by operands and attributes
_INFERRED = set(S.UNARY) | set(S.BINARY) | {
    "complex", "compare", "select", "clamp", "reduce_precision", "constant", "transpose", "slice",
    "concatenate", "pad", "reverse", "gather", "dynamic_slice", "dynamic_update_slice", "reduce", "sort",
    "optimization_barrier", "dot_general", "convolution", "while", "if", "case"}


def _random_attr(kind: str):
    small = st.integers(-3, 5)
    return {
        "int": small, "float": st.floats(), "bool": st.booleans(), "str": st.text(max_size=3),
        "ints": st.lists(small, max_size=4).map(tuple), "bools": st.lists(st.booleans(), max_size=4).map(tuple),
        "strs": st.lists(st.sampled_from(["DEFAULT", "HIGH", "x"]), max_size=3).map(tuple),
        "pairs": st.lists(st.tuples(small, small), max_size=4).map(tuple),
        "tensor": S.tensor_types(max_rank=2).flatmap(lambda t: S.arrays(t.dtype, t.shape)),
    }[kind]


@MEDIUM
@given(S.graphs(max_ops=5), st.data())
def test_verifier_never_crashes(g, data):
    """Corrupt one attribute, operand type or result type of a valid graph: verify() passes or
    raises VerificationError naming an op, never another exception."""
    candidates = [op for op in g.walk() if op.name != "return"]
    assume(candidates)
    op = data.draw(st.sampled_from(candidates))
    attrs = ops.spec(op.name).attrs
    what = data.draw(st.sampled_from(["attr", "operand", "result"]))
    if what == "attr" and attrs:
        a = data.draw(st.sampled_from(attrs))
        op.attrs[a.name] = data.draw(_random_attr(a.kind))
    elif what == "operand" and op.operands:
        i = data.draw(st.integers(0, len(op.operands) - 1))
        op.operands[i] = Value(data.draw(S.tensor_types()))
        g.body.args.append(op.operands[i])  # defined: an input of the graph
    elif op.results:
        data.draw(st.sampled_from(op.results)).type = data.draw(S.tensor_types())
    try:
        verify(g)
    except VerificationError as e:
        assert str(e).startswith("op '") or " in op '" in str(e), str(e)


# --- the strategies reach what they promise ---------------------------------------------------

def _captures(g: Graph) -> bool:
    """Some op in a while/if/case region uses a value defined outside that region."""
    def region_captures(r: Region, outer: set) -> bool:
        local = set(r.args)
        for op in r.ops:
            if any(v in outer and v not in local for v in op.operands):
                return True
            if any(region_captures(q, outer | local) for q in op.regions):
                return True
            local.update(op.results)
        return False

    def walk(r: Region, scope: set) -> bool:
        scope = scope | set(r.args)
        for op in r.ops:
            if op.name in ("while", "if", "case") and any(region_captures(q, scope) for q in op.regions):
                return True
            if any(walk(q, scope) for q in op.regions):
                return True
            scope |= set(op.results)
        return False

    return walk(g.body, set())


def _constants(g: Graph):
    return [op.attrs["value"] for op in g.walk() if op.name == "constant"]


def _is_odd_nan(a: np.ndarray) -> bool:
    if a.dtype.kind not in "fV":  # float16/32/64, and ml_dtypes' bf16 and f8 types
        return False
    flat = a.reshape(-1)
    canon = np.array(np.nan).astype(a.dtype).tobytes()
    return any(np.isnan(x.astype(np.float64)) and x.tobytes() != canon for x in flat)


@pytest.mark.parametrize("what,pred", [
    ("a region capturing an outer value", _captures),
    ("a multi-result op", lambda g: any(len(op.results) > 1 for op in g.walk())),
    ("a zero-size tensor", lambda g: any(0 in r.type.shape for op in g.walk() for r in op.results)),
    ("a rank-0 input", lambda g: any(t.rank == 0 for t in g.input_types)),
    ("an op in a region in a region", lambda g: any(q.ops and any(o.regions for o in q.ops)
                                                    for op in g.body.ops for q in op.regions)),
    ("a NaN with a sign or payload", lambda g: any(_is_odd_nan(a) for a in _constants(g))),
    ("-0.0", lambda g: any(a.dtype.kind in "fV" and (np.signbit(a.astype(np.float64)) & (a == 0)).any()
                           for a in _constants(g))),
    ("a huge uint64", lambda g: any(a.dtype == np.uint64 and (a > 2**63).any() for a in _constants(g))),
    ("a location with a quote and a line", lambda g: any(op.loc and op.loc.line is not None and '"' in (op.loc.file or "")
                                                         for op in g.walk())),
])
def test_strategy_reaches(what, pred):
    find(S.graphs(max_ops=5), pred, settings=_FIND)


_FIND = settings(max_examples=3000, deadline=None, database=None, phases=[Phase.generate], derandomize=True,
                 suppress_health_check=_SLOW_OK)


def test_strategy_reaches_every_dtype_and_op():
    for d in dtypes.ALL:
        find(S.tensor_types(), lambda t: t.dtype == d and t.rank > 0, settings=_FIND)
    generated = {"return"} | set(S.UNARY) | set(S.BINARY)
    for gen in S.GENERATORS:
        g = find(S.graphs_with(gen), lambda g: True, settings=_FIND)
        generated |= {op.name for op in g.walk()}
    not_generated = {"scatter", "reduce_window", "select_and_scatter"}
    assert generated == set(ops.SPECS) - not_generated


def test_graph_names_that_are_not_plain_symbols_round_trip_quoted():
    from xchip.ir import Graph, Op, Region, TensorType, parse_graph, print_graph
    g = Graph('<lambda> "x"', Region([TensorType((2,), "f32")]))
    g.body.append(Op("return", [g.body.args[0]], []))
    text = print_graph(g)
    assert text.startswith('func @"<lambda> \\"x\\""(')
    assert parse_graph(text).name == g.name and print_graph(parse_graph(text)) == text


def test_reduce_init_must_match_input_dtype():
    import pytest
    from xchip.errors import VerificationError
    from xchip.ir import Op, Region, TensorType, ops, scalar, verify_op
    x = Region([TensorType((4,), "f32"), scalar("f16")])
    body = Region([scalar("f16"), scalar("f16")])
    add = body.append(ops.make("add", body.args))
    body.append(Op("return", [add.result], []))
    op = Op("reduce", x.args, [TensorType((), "f16")], {"dimensions": (0,)}, [body])
    with pytest.raises(VerificationError, match="init value f16\\[\\] does not match input dtype f32"):
        verify_op(op)
