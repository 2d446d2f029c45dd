"""Unit tests of `inline`, `dce` and `cse`: each rewrite, the cases each must leave alone
(side effects, barriers, values of nested regions, -0.0 vs 0.0 constants), and results
bit for bit against the original graph."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from pass_strategies import apply, assert_equivalent, ir, op_names
from xchip.ir import TensorType, dtypes, ops
from xchip.ir.rewrite import Rewriter, has_side_effect, splat_ops, splat_scalar
from xchip.passes.cleanup import attr_key, region_key


def run(text, names):
    graph = ir(text)
    before, stats = apply(graph, names)
    if "custom_call" not in text:
        assert_equivalent(before, graph)
    return graph, stats


# --- inline ----------------------------------------------------------------------------------

IF_ON = """
func @main(%0: f32[3], %1: f32[3]) -> (f32[3], f32[3]) {
  %2 = constant() {value = dense<bool[]: PRED>} : bool[]
  %3, %4 = if(%2) : f32[3], f32[3] {
    ^():
      %5 = add(%0, %1) : f32[3]
      %6 = multiply(%5, %0) : f32[3]
      return(%6, %5)
  }, {
    ^():
      %7 = subtract(%0, %1) : f32[3]
      return(%7, %1)
  }
  %8 = negate(%3) : f32[3]
  return(%8, %4)
}
"""


@pytest.mark.parametrize("pred,ops_left", [("true", ["add", "multiply", "negate"]),
                                           ("false", ["subtract", "negate"])])
def test_if_with_a_constant_predicate_becomes_the_taken_branch(pred, ops_left):
    g, stats = run(IF_ON.replace("PRED", pred), "inline")
    assert stats == {"if_constant": 1}
    assert [n for n in op_names(g) if n not in ("constant", "return")] == ops_left


CASE = """
func @main(%0: f32[2]) -> (f32[2]) {
  %1 = constant() {value = dense<i32[]: INDEX>} : i32[]
  %2 = case(%1) : f32[2] {
    ^():
      %3 = exponential(%0) : f32[2]
      return(%3)
  }, {
    ^():
      %4 = sine(%0) : f32[2]
      return(%4)
  }, {
    ^():
      %5 = cosine(%0) : f32[2]
      return(%5)
  }
  return(%2)
}
"""


@pytest.mark.parametrize("index,taken", [(0, "exponential"), (1, "sine"), (2, "cosine"),
                                         (3, "cosine"), (-1, "cosine"), (2**31 - 1, "cosine")])
def test_case_with_a_constant_index_takes_that_branch_or_the_last(index, taken):
    g, stats = run(CASE.replace("INDEX", str(index)), "inline")
    assert stats == {"case_constant": 1}
    assert op_names(g) == ["constant", taken, "return"]


def test_case_with_one_branch_is_that_branch():
    text = """
func @main(%0: f32[2], %1: i32[]) -> (f32[2]) {
  %2 = case(%1) : f32[2] {
    ^():
      %3 = sine(%0) : f32[2]
      return(%3)
  }
  return(%2)
}
"""
    g, stats = run(text, "inline")
    assert stats == {"case_single_branch": 1}
    assert op_names(g) == ["sine", "return"]


def test_if_with_identical_branches_needs_no_predicate():
    text = """
func @main(%0: f32[2], %1: bool[]) -> (f32[2]) {
  %2 = if(%1) : f32[2] {
    ^():
      %3 = constant() {value = dense<f32[]: -0.0>} : f32[]
      %4 = broadcast_in_dim(%3) {broadcast_dimensions = []} : f32[2]
      %5 = add(%0, %4) : f32[2]
      return(%5)
  }, {
    ^():
      %6 = constant() {value = dense<f32[]: -0.0>} : f32[]
      %7 = broadcast_in_dim(%6) {broadcast_dimensions = []} : f32[2]
      %8 = add(%0, %7) : f32[2]
      return(%8)
  }
  return(%2)
}
"""
    g, stats = run(text, "inline")
    assert stats == {"identical_branches": 1}
    assert "if" not in op_names(g)


def test_branches_differing_in_a_constant_sign_are_not_identical():
    text = """
func @main(%0: f32[2], %1: bool[]) -> (f32[2]) {
  %2 = if(%1) : f32[2] {
    ^():
      %3 = constant() {value = dense<f32[2]: splat -0.0>} : f32[2]
      %4 = add(%0, %3) : f32[2]
      return(%4)
  }, {
    ^():
      %5 = constant() {value = dense<f32[2]: splat 0.0>} : f32[2]
      %6 = add(%0, %5) : f32[2]
      return(%6)
  }
  return(%2)
}
"""
    g, stats = run(text, "inline")
    assert stats == {}
    assert "if" in op_names(g)


def test_a_branch_with_an_optimization_barrier_is_not_inlined():
    text = """
func @main(%0: f32[2]) -> (f32[2]) {
  %1 = constant() {value = dense<bool[]: true>} : bool[]
  %2 = if(%1) : f32[2] {
    ^():
      %3 = optimization_barrier(%0) : f32[2]
      return(%3)
  }, {
    ^():
      return(%0)
  }
  return(%2)
}
"""
    g, stats = run(text, "inline")
    assert stats == {}


WHILE = """
func @main(%0: f32[2], %1: i32[]) -> (f32[2], i32[]) {
  %2, %3 = while(%0, %1) : f32[2], i32[] {
    ^(%4: f32[2], %5: i32[]):
      COND
      return(%6)
  }, {
    ^(%7: f32[2], %8: i32[]):
      %9 = add(%7, %7) : f32[2]
      return(%9, %8)
  }
  return(%2, %3)
}
"""


def test_while_whose_condition_is_constant_false_never_runs():
    g, stats = run(WHILE.replace("COND", '%6 = constant() {value = dense<bool[]: false>} : bool[]'), "inline")
    assert stats == {"while_never_runs": 1}
    assert g.outputs == g.inputs


def test_while_whose_false_condition_has_a_side_effect_stays():
    cond = ('custom_call() {call_target_name = "log", has_side_effect = true} : ()\n'
            '      %6 = constant() {value = dense<bool[]: false>} : bool[]')
    g, stats = run(WHILE.replace("COND", cond), "inline")
    assert stats == {}
    assert "while" in op_names(g)


def test_nested_ifs_inline_from_the_inside_out():
    text = """
func @main(%0: f32[2]) -> (f32[2]) {
  %1 = constant() {value = dense<bool[]: false>} : bool[]
  %2 = if(%1) : f32[2] {
    ^():
      return(%0)
  }, {
    ^():
      %3 = constant() {value = dense<bool[]: true>} : bool[]
      %4 = if(%3) : f32[2] {
        ^():
          %5 = tanh(%0) : f32[2]
          return(%5)
      }, {
        ^():
          return(%0)
      }
      return(%4)
  }
  return(%2)
}
"""
    g, stats = run(text, "inline")
    assert stats == {"if_constant": 2}
    assert op_names(g) == ["constant", "constant", "tanh", "return"]


# --- dce -------------------------------------------------------------------------------------

def test_dce_removes_unused_chains():
    text = """
func @main(%0: f32[2]) -> (f32[2]) {
  %1 = exponential(%0) : f32[2]
  %2 = add(%1, %1) : f32[2]
  %3 = sine(%0) : f32[2]
  return(%3)
}
"""
    g, stats = run(text, "dce")
    assert stats == {"removed_ops": 2}
    assert op_names(g) == ["sine", "return"]


def test_dce_keeps_side_effects_and_removes_pure_custom_calls():
    text = """
func @main(%0: f32[2]) -> (f32[2]) {
  custom_call(%0) {call_target_name = "print", has_side_effect = true} : ()
  %1 = custom_call(%0) {call_target_name = "pure"} : f32[2]
  custom_call(%0) {call_target_name = "pure_no_result"} : ()
  return(%0)
}
"""
    g, stats = run(text, "dce")
    assert stats == {"removed_ops": 2}
    assert op_names(g) == ["custom_call", "return"]
    assert g.body.ops[0].attrs["call_target_name"] == "print"


def test_dce_keeps_an_op_whose_region_has_a_side_effect():
    text = """
func @main(%0: f32[2], %1: bool[]) -> (f32[2]) {
  %2 = if(%1) : f32[2] {
    ^():
      custom_call(%0) {call_target_name = "print", has_side_effect = true} : ()
      return(%0)
  }, {
    ^():
      return(%0)
  }
  return(%0)
}
"""
    g, stats = run(text, "dce")
    assert stats == {"removed_ops": 0}
    assert "if" in op_names(g)


def test_dce_removes_dead_ops_inside_regions():
    text = """
func @main(%0: f32[4]) -> (f32[]) {
  %1 = constant() {value = dense<f32[]: 0.0>} : f32[]
  %2 = exponential(%0) : f32[4]
  %3 = reduce(%0, %1) {dimensions = [0]} : f32[] {
    ^(%4: f32[], %5: f32[]):
      %6 = multiply(%4, %5) : f32[]
      %7 = log(%2) : f32[4]
      %8 = add(%4, %5) : f32[]
      return(%8)
  }
  return(%3)
}
"""
    g, stats = run(text, "dce")
    # the dead log inside the body was the exponential's only user
    assert stats == {"removed_ops": 3}
    assert op_names(g) == ["constant", "reduce", "add", "return", "return"]


def test_dce_removes_unused_loops_and_their_bodies():
    g, stats = run(WHILE.replace("COND", '%6 = constant() {value = dense<bool[]: false>} : bool[]')
                   .replace("return(%2, %3)", "return(%0, %1)").replace("-> (f32[2], i32[])", "-> (f32[2], i32[])"),
                   "dce")
    assert stats == {"removed_ops": 5}   # while + constant + return in cond, add + return in body
    assert op_names(g) == ["return"]


# --- cse -------------------------------------------------------------------------------------

def test_cse_reuses_identical_ops():
    text = """
func @main(%0: f32[2], %1: f32[2]) -> (f32[2], f32[2]) {
  %2 = add(%0, %1) : f32[2]
  %3 = add(%0, %1) : f32[2]
  %4 = multiply(%2, %0) : f32[2]
  %5 = multiply(%3, %0) : f32[2]
  return(%4, %5)
}
"""
    g, stats = run(text, ["cse", "dce"])
    g2, cse_stats = run(text, "cse")
    assert cse_stats == {"reused_ops": 2}
    assert g.outputs[0] is g.outputs[1]
    assert op_names(g) == ["add", "multiply", "return"]


def test_cse_keeps_apart_operand_order_attributes_and_result_types():
    text = """
func @main(%0: f32[2], %1: f32[2], %2: i32[2]) -> (f32[2], f32[2], bool[2], bool[2], f16[2], bf16[2], i32[2], i64[2]) {
  %3 = subtract(%0, %1) : f32[2]
  %4 = subtract(%1, %0) : f32[2]
  %5 = compare(%0, %1) {comparison_direction = "LT"} : bool[2]
  %6 = compare(%0, %1) {comparison_direction = "LT", compare_type = "TOTALORDER"} : bool[2]
  %7 = convert(%0) : f16[2]
  %8 = convert(%0) : bf16[2]
  %9 = iota() {iota_dimension = 0} : i32[2]
  %10 = iota() {iota_dimension = 0} : i64[2]
  return(%3, %4, %5, %6, %7, %8, %9, %10)
}
"""
    g, stats = run(text, "cse")
    assert stats == {}


@pytest.mark.parametrize("a,b,same", [
    ("splat 0.0", "splat 0.0", True),
    ("splat 0.0", "splat -0.0", False),
    ("0x0000C07F0000C07F", "0x0000C07F0000C07F", True),    # the same NaN
    ("0x0000C07F0000C07F", "0x0100C07F0100C07F", False),   # NaNs with other payloads
])
def test_cse_compares_constants_bit_for_bit(a, b, same):
    text = f"""
func @main() -> (f32[2], f32[2]) {{
  %0 = constant() {{value = dense<f32[2]: {a}>}} : f32[2]
  %1 = constant() {{value = dense<f32[2]: {b}>}} : f32[2]
  return(%0, %1)
}}
"""
    g, stats = run(text, "cse")
    assert stats == ({"reused_ops": 1} if same else {})


def test_constants_of_other_dtypes_with_the_same_bytes_stay_apart():
    assert attr_key(np.zeros(2, np.int32)) != attr_key(np.zeros(2, np.float32))
    assert attr_key(np.zeros(2, ml_dtypes.float8_e4m3fn)) != attr_key(np.zeros(2, ml_dtypes.float8_e5m2))
    assert attr_key(0.0) != attr_key(-0.0) and attr_key(1) != attr_key(True)


NESTED = """
func @main(%0: f32[2], %1: bool[]) -> (f32[2], f32[2]) {
  %2 = exponential(%0) : f32[2]
  %3 = if(%1) : f32[2] {
    ^():
      %4 = exponential(%0) : f32[2]
      %5 = sine(%0) : f32[2]
      %6 = add(%4, %5) : f32[2]
      return(%6)
  }, {
    ^():
      %7 = sine(%0) : f32[2]
      return(%7)
  }
  %8 = sine(%0) : f32[2]
  %9 = add(%8, %3) : f32[2]
  return(%9, %2)
}
"""


def test_cse_reuses_outer_values_inside_regions_never_the_reverse():
    g, stats = run(NESTED, "cse")
    # the exponential inside the branch reuses the outer one; the sines in the two branches
    # and the one after the `if` stay three separate ops
    assert stats == {"reused_ops": 1}
    assert op_names(g).count("sine") == 3
    assert op_names(g).count("exponential") == 1


def test_cse_merges_ops_with_identical_regions():
    text = """
func @main(%0: f32[4]) -> (f32[], f32[], f32[]) {
  %1 = constant() {value = dense<f32[]: 0.0>} : f32[]
  %2 = reduce(%0, %1) {dimensions = [0]} : f32[] {
    ^(%3: f32[], %4: f32[]):
      %5 = add(%3, %4) : f32[]
      return(%5)
  }
  %6 = reduce(%0, %1) {dimensions = [0]} : f32[] {
    ^(%7: f32[], %8: f32[]):
      %9 = add(%7, %8) : f32[]
      return(%9)
  }
  %10 = reduce(%0, %1) {dimensions = [0]} : f32[] {
    ^(%11: f32[], %12: f32[]):
      %13 = add(%12, %11) : f32[]
      return(%13)
  }
  return(%2, %6, %10)
}
"""
    g, stats = run(text, "cse")
    assert stats == {"reused_ops": 1}   # the third body adds in the other order
    assert g.outputs[0] is g.outputs[1] and g.outputs[2] is not g.outputs[0]


def test_cse_leaves_side_effects_and_barriers_alone():
    text = """
func @main(%0: f32[2]) -> (f32[2], f32[2], f32[2], f32[2]) {
  %1 = custom_call(%0) {call_target_name = "rng", has_side_effect = true} : f32[2]
  %2 = custom_call(%0) {call_target_name = "rng", has_side_effect = true} : f32[2]
  %3 = optimization_barrier(%0) : f32[2]
  %4 = optimization_barrier(%0) : f32[2]
  return(%1, %2, %3, %4)
}
"""
    g, stats = run(text, "cse")
    assert stats == {}


def test_region_keys_number_inner_values_and_name_outer_ones():
    g = ir(NESTED)
    (if_op,) = [op for op in g.body.ops if op.name == "if"]
    then_key, else_key = (region_key(r) for r in if_op.regions)
    assert then_key != else_key
    assert region_key(if_op.regions[0]) == then_key   # deterministic


# --- the rewrite helpers the passes share (xchip.ir.rewrite) ---------------------------------

def test_splat_scalar_compares_bits():
    assert splat_scalar(np.full((2, 3), -0.0, np.float32)).tobytes() == np.float32(-0.0).tobytes()
    assert splat_scalar(np.array([0.0, -0.0], np.float32)) is None
    assert splat_scalar(np.zeros((0,), np.float32)) is None
    nan = np.array([0x7FC00001, 0x7FC00001], np.uint32).view(np.float32)
    assert splat_scalar(nan) is not None
    assert splat_scalar(np.array([0x7FC00001, 0x7FC00002], np.uint32).view(np.float32)) is None


def test_splat_ops_respect_the_size_limit():
    t = TensorType((4, 4), dtypes.BF16)
    small = splat_ops(np.array(1.5).astype(t.dtype.numpy), t, 16)
    assert [op.name for op in small] == ["constant"] and small[0].result.type == t
    big = splat_ops(np.array(1.5).astype(t.dtype.numpy), t, 15)
    assert [op.name for op in big] == ["constant", "broadcast_in_dim"] and big[-1].result.type == t


def test_rewriter_replaces_uses_at_every_depth_in_one_walk():
    class SineToCosine(Rewriter):
        def visit(self, op):
            if op.name != "sine":
                return None
            self.count("replaced")
            return [self.insert(ops.make("cosine", op.operands, loc=op.loc)).result]

    text = """
func @main(%0: f32[2], %1: bool[]) -> (f32[2]) {
  %2 = sine(%0) : f32[2]
  %3 = if(%1) : f32[2] {
    ^():
      %4 = add(%2, %2) : f32[2]
      return(%4)
  }, {
    ^():
      return(%2)
  }
  return(%3)
}
"""
    g = ir(text)
    assert SineToCosine().run(g) == {"replaced": 1}
    assert "sine" not in op_names(g)
    cos = g.body.ops[0].result
    if_op = g.body.ops[1]
    assert if_op.regions[0].ops[0].operands == [cos, cos] and if_op.regions[1].outputs == [cos]


def test_has_side_effect_looks_into_regions():
    g = ir(WHILE.replace("COND", 'custom_call() {call_target_name = "log", has_side_effect = true} : ()\n'
                                 '      %6 = constant() {value = dense<bool[]: false>} : bool[]'))
    assert has_side_effect(g.body.ops[0])
    g = ir(WHILE.replace("COND", '%6 = constant() {value = dense<bool[]: false>} : bool[]'))
    assert not has_side_effect(g.body.ops[0])
