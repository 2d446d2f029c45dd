"""The reference executor's interface: arguments, errors, custom calls, control flow,
regions that read enclosing values, and that every op of the IR has an implementation."""

import time

import numpy as np
import pytest
from jax import lax

from reference_oracle import Builder, T, assert_same, graph, rand, rng_for, run_op, scalar_region, xla, xla_stablehlo
from xchip.errors import ArgumentError, UnsupportedOpError
from xchip.ir import Graph, Location, Op, Region, ops, verify
from xchip.runtime import reference
from xchip.runtime.reference import evaluate, evaluate_op, evaluate_region


def _add_graph():
    return graph([T((2, 3), "f32"), T((3,), "i32")], lambda b, x, i: [b.op("add", [x, x]), i])


def test_every_op_of_the_ir_has_an_implementation():
    missing = set(ops.op_names()) - {"return"} - set(reference.supported_ops())
    assert not missing


def test_wrong_argument_count_shape_and_dtype():
    g = _add_graph()
    x, i = np.ones((2, 3), np.float32), np.arange(3, dtype=np.int32)
    with pytest.raises(ArgumentError, match="takes 2 argument"):
        evaluate(g, [x])
    with pytest.raises(ArgumentError, match=r"argument 1 .*expected i32\[3\].*got int64\[3\]"):
        evaluate(g, [x, np.arange(3)])
    with pytest.raises(ArgumentError, match=r"argument 0 .*expected f32\[2,3\].*got float32\[3, 2\]"):
        evaluate(g, [x.T, i])
    out = evaluate(g, [x, i])
    assert out[0].dtype == np.float32 and out[1].dtype == np.int32


def test_outputs_are_fresh_arrays_and_inputs_stay_untouched():
    g = graph([T((4,), "i32")], lambda b, x: [
        b.const(np.array([1, 2, 3, 4], np.int32), "i32"),
        b.op("dynamic_update_slice", [x, b.const(np.array([9], np.int32), "i32"), b.const(1, "i32")]), x])
    x = np.zeros(4, np.int32)
    c, updated, same = evaluate(g, [x])
    assert updated.tolist() == [0, 9, 0, 0] and x.tolist() == [0, 0, 0, 0]
    c[0] = 100
    same[0] = 5
    assert evaluate(g, [x])[0].tolist() == [1, 2, 3, 4] and x[0] == 0


def test_unknown_op_raises_unsupported_op_error_with_location():
    loc = Location("model.py", 12, 4, "jit(f)/mystery")
    x = Region([T((2,), "f32")])
    bogus = Op("mystery_op", [x.args[0]], [T((2,), "f32")], loc=loc)
    x.append(bogus)
    x.append(ops.make("return", [bogus.results[0]], result_types=[]))
    with pytest.raises(UnsupportedOpError) as info:
        evaluate(Graph("main", x), [np.zeros(2, np.float32)])
    assert info.value.op == "mystery_op" and info.value.target == "reference"
    assert "model.py:12:4" in str(info.value)


def test_custom_call_handlers_and_missing_handler():
    loc = Location("check.py", 3)
    g = graph([T((3,), "f32")], lambda b, x: [b.op("custom_call", [x, x], {"call_target_name": "my.double_add"},
                                                   [T((3,), "f32"), T((), "i32")])
                                              .results[0]])
    g.body.ops[0].loc = loc
    seen = []

    def handler(op, a, b):
        seen.append(op.attrs["call_target_name"])
        return [a + b, np.array(7, np.int32)]

    x = np.array([1.0, 2.0, 3.0], np.float32)
    (out,) = evaluate(g, [x], custom_calls={"my.double_add": handler})
    assert out.tolist() == [2.0, 4.0, 6.0] and seen == ["my.double_add"]
    with pytest.raises(UnsupportedOpError, match=r"custom_call.*check.py:3.*my\.double_add"):
        evaluate(g, [x])


def test_custom_call_without_results_may_return_none():
    def build(b, x):
        b.op("custom_call", [x], {"call_target_name": "sink"}, [])
        return [x]
    g = graph([T((2,), "i32")], build)
    got = []
    (out,) = evaluate(g, [np.array([4, 5], np.int32)], custom_calls={"sink": lambda op, a: got.append(a.copy())})
    assert out.tolist() == [4, 5] and got[0].tolist() == [4, 5]


def _while_sum_graph(n_dtype="i32"):
    """i, acc = 0, 0; while i < n: acc += x[i % 4] * step; i += 1  (x, step read from outside)."""
    def build(b, x, n, step):
        cond = Builder([T((), "i32"), T((), "f32")])
        i, _ = cond.args
        cond_region = cond.ret(cond.op("compare", [i, n], {"comparison_direction": "LT", "compare_type": "SIGNED"}))
        body = Builder([T((), "i32"), T((), "f32")])
        i, acc = body.args
        four = body.const(4, "i32")
        pick = body.op("dynamic_slice", [x, body.op("remainder", [i, four])], {"slice_sizes": (1,)})
        term = body.op("multiply", [body.op("reshape", [pick], result_types=[T((), "f32")]), step])
        body_region = body.ret(body.op("add", [i, body.const(1, "i32")]), body.op("add", [acc, term]))
        loop = b.op("while", [b.const(0, "i32"), b.const(0.0, "f32")], regions=[cond_region, body_region])
        return [loop.results[1]]
    return graph([T((4,), "f32"), T((), "i32"), T((), "f32")], build)


def test_while_loop_reads_enclosing_values_and_matches_xla():
    g = _while_sum_graph()
    x = np.array([1.0, -2.0, 0.5, 4.0], np.float32)
    n, step = np.array(10, np.int32), np.array(0.25, np.float32)

    def f(x, n, step):
        def body(carry):
            i, acc = carry
            return i + 1, acc + lax.dynamic_slice(x, (i % 4,), (1,))[0] * step
        return lax.while_loop(lambda c: c[0] < n, body, (np.int32(0), np.float32(0.0)))[1]

    (got,) = evaluate(g, [x, n, step])
    assert_same(got, xla(f, x, n, step), exact=True)


def test_a_few_hundred_loop_iterations_run_well_under_a_second():
    g = _while_sum_graph()
    args = [np.array([1.0, -2.0, 0.5, 4.0], np.float32), np.array(300, np.int32), np.array(1.0, np.float32)]
    evaluate(g, args)
    start = time.perf_counter()
    (got,) = evaluate(g, args)
    elapsed = time.perf_counter() - start
    assert got == 75 * 3.5
    assert elapsed < 0.5, f"300 iterations took {elapsed:.2f} s"


def test_if_and_case_pick_branches_and_case_clamps_to_the_last():
    def build(b, p, k, x):
        def branch(op_name):
            r = Builder([])
            return r.ret(r.op(op_name, [x]))
        picked = b.op("if", [p], regions=[branch("negate"), branch("abs")])
        chosen = b.op("case", [k], regions=[branch("floor"), branch("ceil"), branch("sign")])
        return [picked, chosen]
    g = graph([T((), "bool"), T((), "i32"), T((3,), "f32")], build)
    x = np.array([-1.5, 2.25, 0.0], np.float32)
    for p in (True, False):
        for k in (-5, 0, 1, 2, 3, 100):
            picked, chosen = evaluate(g, [np.array(p), np.array(k, np.int32), x])
            assert_same(picked, -x if p else np.abs(x), exact=True)
            fn = [np.floor, np.ceil, np.sign][k if 0 <= k < 3 else 2]
            assert_same(chosen, fn(x).astype(np.float32), exact=True)
    body = ("%0 = \"stablehlo.case\"(%a0) ({\n %c = stablehlo.constant dense<1.0> : tensor<f32>\n"
            " stablehlo.return %c : tensor<f32>\n}, {\n %c = stablehlo.constant dense<2.0> : tensor<f32>\n"
            " stablehlo.return %c : tensor<f32>\n}) : (tensor<i32>) -> tensor<f32>\nreturn %0 : tensor<f32>")
    for k in (-1, 0, 1, 7):
        (want,) = xla_stablehlo(body, [np.array(k, np.int32)], [((), np.float32)])
        assert want == (1.0 if k == 0 else 2.0)   # XLA agrees: out of range runs the last


def test_optimization_barrier_passes_values_through():
    g = graph([T((2,), "f32"), T((), "i8")], lambda b, x, y: list(b.op("optimization_barrier", [x, y]).results))
    x, y = np.array([1.0, np.nan], np.float32), np.array(-3, np.int8)
    a, c = evaluate(g, [x, y])
    assert_same(a, x, exact=True)
    assert c.dtype == np.int8 and c == -3


def test_evaluate_region_and_evaluate_op():
    region = scalar_region("f32", "maximum")
    (got,) = evaluate_region(region, [np.array(1.0, np.float32), np.array(np.nan, np.float32)])
    assert np.isnan(got)
    outer = Builder([T((), "f32")])
    b = Builder([T((), "f32")])
    captured = outer.args[0]
    reg = b.ret(b.op("add", [b.args[0], captured]))
    (got,) = evaluate_region(reg, [np.array(2.0, np.float32)], {captured: np.array(0.5, np.float32)})
    assert got == 2.5
    operands = Builder([T((3,), "i32"), T((), "i32")]).args
    op = ops.make("reduce", operands, {"dimensions": (0,)}, regions=[scalar_region("i32", "add")])
    (got,) = evaluate_op(op, [np.array([1, 2, 3], np.int32), np.array(10, np.int32)])
    assert got == 16


def test_region_that_cannot_run_batched_falls_back_to_one_call_per_element():
    """A reduce body with a reshape inside: not elementwise, so it runs element by element."""
    b = Builder([T((), "f32")] * 2)
    x, y = b.args
    r = b.op("reshape", [b.op("add", [x, y])], result_types=[T((), "f32")])
    region = b.ret(r)
    data = rand("f32", (3, 40), rng_for("fallback"))
    (got,) = run_op("reduce", [data, np.array(0.0, np.float32)], {"dimensions": (1,)}, regions=[region])
    (fast,) = run_op("reduce", [data, np.array(0.0, np.float32)], {"dimensions": (1,)},
                     regions=[scalar_region("f32", "add")])
    assert_same(got, fast, exact=True)


def test_nested_regions_see_every_enclosing_scope():
    """A sort comparator inside a while body reads a value defined in the graph body."""
    def build(b, x, flip):
        cond = Builder([T((), "i32"), T((5,), "f32")])
        cond_region = cond.ret(cond.op("compare", [cond.args[0], cond.const(2, "i32")],
                                       {"comparison_direction": "LT", "compare_type": "SIGNED"}))
        body = Builder([T((), "i32"), T((5,), "f32")])
        i, v = body.args
        cmp = Builder([T((), "f32")] * 2)
        lt = cmp.op("compare", list(cmp.args), {"comparison_direction": "LT", "compare_type": "FLOAT"})
        comparator = cmp.ret(cmp.op("xor", [lt, flip]))
        sorted_v = body.op("sort", [v], {"dimension": 0}, regions=[comparator])
        body_region = body.ret(body.op("add", [i, body.const(1, "i32")]), body.op("negate", [sorted_v]))
        return [b.op("while", [b.const(0, "i32"), x], regions=[cond_region, body_region]).results[1]]
    g = verify(graph([T((5,), "f32"), T((), "bool")], build))
    x = np.array([3.0, -1.0, 2.0, 5.0, 0.5], np.float32)
    (got,) = evaluate(g, [x, np.array(False)])
    # sort ascending, negate, sort ascending, negate: descending order of x
    assert got.tolist() == sorted(x.tolist())[::-1]
