"""Unit tests of `fold-constants`: what it folds (with the executor's bits: NaN payloads,
-0.0, integer wrap-around, x/0 for integers), and what it must not fold (loops, side
effects, results beyond `fold_limit`, regions that read outside values)."""

from __future__ import annotations

import numpy as np
import pytest

from pass_strategies import Builder, apply, assert_equivalent, ir, op_names, same_bits
from xchip.ir import TensorType, dtypes
from xchip.passes import PassOptions
from xchip.runtime.reference import evaluate


def folded(graph, options=None):
    before, stats = apply(graph, "fold-constants", options)
    assert_equivalent(before, graph)
    return stats


def constant_output(graph, i=0) -> np.ndarray:
    op = graph.outputs[i].producer
    assert op is not None and op.name == "constant", graph
    return op.attrs["value"]


@pytest.mark.parametrize("name,a,b,dtype", [
    ("add", -0.0, -0.0, np.float32),
    ("add", 65504.0, 65504.0, np.float16),     # overflows to inf in f16
    ("multiply", np.inf, 0.0, np.float32),     # NaN
    ("add", 127, 1, np.int8),                  # wraps to -128
    ("divide", 7, 0, np.int32),                # -1, as XLA
    ("remainder", -7, 0, np.int32),            # x % 0 == x
    ("subtract", 0, 1, np.uint8),              # 255
    ("maximum", np.nan, 1.0, np.float32),
    ("power", 3, 64, np.int64),
])
def test_binary_ops_on_constants_fold_to_the_executors_bits(name, a, b, dtype):
    bld = Builder()
    x = bld.constant(np.full((3,), a, dtype))
    y = bld.constant(np.full((3,), b, dtype))
    g = bld.graph(bld.op(name, x, y))
    expected = evaluate(g, [])[0]
    assert folded(g) == {"folded_ops": 1}
    assert same_bits(constant_output(g), expected)


def test_nan_payloads_survive_folding():
    payload = np.array([0x7FC00001, 0xFFC00002], np.uint32).view(np.float32)
    b = Builder()
    c = b.constant(payload)
    g = b.graph(b.op("reshape", c, result_type=TensorType((2, 1), dtypes.F32)))
    folded(g)
    assert constant_output(g).tobytes() == payload.tobytes()


def test_chains_fold_in_one_pass_and_keep_locations():
    text = """
func @main(%0: f32[2]) -> (f32[2]) {
  %1 = constant() {value = dense<f32[2]: [1.0, 2.0]>} : f32[2]
  %2 = exponential(%1) : f32[2] loc("jit(f)/exp" @ "model.py":3:4)
  %3 = multiply(%2, %1) : f32[2]
  %4 = add(%0, %3) : f32[2]
  return(%4)
}
"""
    g = ir(text)
    assert folded(g) == {"folded_ops": 2}
    ops_ = [op for op in g.walk() if op.name == "constant"]
    assert any(op.loc and op.loc.name == "jit(f)/exp" for op in ops_)
    apply(g, "dce")
    assert op_names(g) == ["constant", "add", "return"]


def test_results_over_the_fold_limit_stay():
    b = Builder()
    c = b.constant(np.array(1.5, np.float32))
    g = b.graph(b.op("broadcast_in_dim", c, result_type=TensorType((10, 10), dtypes.F32), broadcast_dimensions=()))
    assert folded(g, PassOptions(fold_limit=99)) == {"too_large": 1}
    assert folded(g, PassOptions(fold_limit=100)) == {"folded_ops": 1}


def test_expensive_evaluations_stay_even_with_small_results():
    b = Builder()
    lhs = b.constant(np.ones((4, 512), np.float32))
    rhs = b.constant(np.ones((512, 4), np.float32))
    g = b.graph(b.op("dot_general", lhs, rhs, lhs_contracting_dimensions=(1,), rhs_contracting_dimensions=(0,)))
    assert folded(g, PassOptions(fold_limit=16)) == {"too_large": 1}


def test_reduce_of_constants_folds():
    text = """
func @main() -> (f32[2]) {
  %0 = constant() {value = dense<f32[2,3]: [1.0, 2.0, 3.0, -0.0, -0.0, -0.0]>} : f32[2,3]
  %1 = constant() {value = dense<f32[]: -0.0>} : f32[]
  %2 = reduce(%0, %1) {dimensions = [1]} : f32[2] {
    ^(%3: f32[], %4: f32[]):
      %5 = add(%3, %4) : f32[]
      return(%5)
  }
  return(%2)
}
"""
    g = ir(text)
    assert folded(g) == {"folded_ops": 1}
    out = constant_output(g)
    assert out[0] == 6.0 and np.signbit(out[1])


def test_a_region_reading_an_outer_value_is_not_folded():
    text = """
func @main(%0: f32[]) -> (f32[]) {
  %1 = constant() {value = dense<f32[3]: [1.0, 2.0, 3.0]>} : f32[3]
  %2 = constant() {value = dense<f32[]: 0.0>} : f32[]
  %3 = reduce(%1, %2) {dimensions = [0]} : f32[] {
    ^(%4: f32[], %5: f32[]):
      %6 = add(%4, %5) : f32[]
      %7 = multiply(%6, %0) : f32[]
      return(%7)
  }
  return(%3)
}
"""
    g = ir(text)
    assert folded(g) == {}


@pytest.mark.parametrize("text", [
    """
func @main() -> (i32[]) {
  %0 = constant() {value = dense<i32[]: 0>} : i32[]
  %1 = while(%0) : i32[] {
    ^(%2: i32[]):
      %3 = constant() {value = dense<i32[]: 3>} : i32[]
      %4 = compare(%2, %3) {comparison_direction = "LT"} : bool[]
      return(%4)
  }, {
    ^(%5: i32[]):
      %6 = constant() {value = dense<i32[]: 1>} : i32[]
      %7 = add(%5, %6) : i32[]
      return(%7)
  }
  return(%1)
}
""",
    """
func @main() -> (f32[2]) {
  %0 = constant() {value = dense<f32[2]: splat 1.0>} : f32[2]
  %1 = custom_call(%0) {call_target_name = "double"} : f32[2]
  return(%1)
}
""",
    """
func @main() -> (f32[2]) {
  %0 = constant() {value = dense<f32[2]: splat 1.0>} : f32[2]
  %1 = optimization_barrier(%0) : f32[2]
  return(%1)
}
""",
    """
func @main() -> (i32[4]) {
  %0 = iota() {iota_dimension = 0} : i32[4]
  return(%0)
}
""",
], ids=["while", "custom_call", "optimization_barrier", "iota"])
def test_never_folded(text):
    g = ir(text)
    before, stats = apply(g, "fold-constants")
    assert stats == {}
    assert op_names(g) == op_names(before)


def test_folds_inside_regions_with_outer_constants():
    text = """
func @main(%0: f32[2], %1: bool[]) -> (f32[2]) {
  %2 = constant() {value = dense<f32[2]: [0.5, -0.0]>} : f32[2]
  %3 = if(%1) : f32[2] {
    ^():
      %4 = negate(%2) : f32[2]
      %5 = add(%0, %4) : f32[2]
      return(%5)
  }, {
    ^():
      return(%0)
  }
  return(%3)
}
"""
    g = ir(text)
    before, stats = apply(g, "fold-constants")
    assert stats == {"folded_ops": 1}
    for pred in (True, False):
        args = [np.array([1.0, -0.0], np.float32), np.array(pred)]
        assert all(same_bits(a, b) for a, b in zip(evaluate(before, args), evaluate(g, args)))


def test_multi_result_ops_fold_every_result():
    text = """
func @main() -> (f32[3], i32[3]) {
  %0 = constant() {value = dense<f32[3]: [3.0, 1.0, 2.0]>} : f32[3]
  %1 = constant() {value = dense<i32[3]: [0, 1, 2]>} : i32[3]
  %2, %3 = sort(%0, %1) {dimension = 0} : f32[3], i32[3] {
    ^(%4: f32[], %5: f32[], %6: i32[], %7: i32[]):
      %8 = compare(%4, %5) {comparison_direction = "LT"} : bool[]
      return(%8)
  }
  return(%2, %3)
}
"""
    g = ir(text)
    assert folded(g) == {"folded_ops": 1}
    assert list(constant_output(g, 1)) == [1, 2, 0]
