"""Unit tests of `precision`: f32 matmuls and convolutions with operands in a lower dtype and
f32 results, the refusal on targets without that fast path, and the note for the user."""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from pass_strategies import Builder, apply, ir, op_names, run_passes
from xchip.errors import TargetError, XchipError
from xchip.ir import TensorType, dtypes
from xchip.passes import PassContext, PassOptions, pipeline
from xchip.passes.precision import precision as precision_pass
from xchip.runtime.reference import evaluate
from xchip.targets.capabilities import HOST_REFERENCE

FAST_LOW = dataclasses.replace(HOST_REFERENCE, name="tensorcore-like",
                               matmul_dtypes=frozenset({"f32", "bf16", "f16", "f8e4m3fn", "f8e5m2"}))
F32 = dtypes.F32


def options(name, caps=FAST_LOW):
    return PassOptions(precision=name, capabilities=caps)


def matmul_graph(dtype=F32, result=F32):
    b = Builder(TensorType((4, 8), dtype), TensorType((8, 3), dtype))
    x, w = b.inputs
    y = b.op("dot_general", x, w, result_type=TensorType((4, 3), result),
             lhs_contracting_dimensions=(1,), rhs_contracting_dimensions=(0,))
    return b.graph(y)


def inputs(graph, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(t.shape).astype(t.dtype.numpy) for t in graph.input_types]


NUMPY = {"bf16": ml_dtypes.bfloat16, "f16": np.float16, "f8e4m3fn": ml_dtypes.float8_e4m3fn,
         "f8e5m2": ml_dtypes.float8_e5m2}


@pytest.mark.parametrize("name", ["bf16", "f16", "f8e4m3fn", "f8e5m2"])
def test_matmul_operands_are_converted_and_the_result_stays_f32(name):
    g = matmul_graph()
    before, stats = apply(g, "precision", options(name))
    assert stats == {"matmuls": 1}
    dot = g.outputs[0].producer
    assert dot.result.type == TensorType((4, 3), F32)
    assert [v.dtype.name for v in dot.operands] == [name, name]
    assert op_names(g) == ["convert", "convert", "dot_general", "return"]
    # the executor accumulates in f64 and rounds once: exactly the original graph run on
    # operands rounded to the low dtype
    args = inputs(before)
    rounded = [a.astype(NUMPY[name]).astype(np.float32) for a in args]
    assert evaluate(g, args)[0].tobytes() == evaluate(before, rounded)[0].tobytes()


CONV_2D = dict(window_strides=(1, 1), padding=((0, 0), (0, 0)), lhs_dilation=(1, 1), rhs_dilation=(1, 1),
               window_reversal=(False, False), input_batch_dimension=0, input_feature_dimension=1,
               input_spatial_dimensions=(2, 3), kernel_input_feature_dimension=1,
               kernel_output_feature_dimension=0, kernel_spatial_dimensions=(2, 3), output_batch_dimension=0,
               output_feature_dimension=1, output_spatial_dimensions=(2, 3))


def test_the_note_says_how_many_ops_changed():
    b = Builder(TensorType((2, 2), F32), TensorType((1, 1, 3, 3), F32), TensorType((1, 1, 2, 2), F32))
    x, image, kernel = b.inputs
    contract = dict(lhs_contracting_dimensions=(1,), rhs_contracting_dimensions=(0,))
    y = b.op("dot_general", x, x, **contract)
    g = b.graph(y, b.op("dot_general", y, x, **contract), b.op("convolution", image, kernel, **CONV_2D))
    before = ir(str(g))
    ctx = PassContext(options("bf16"))
    stats = precision_pass(g, ctx)
    assert stats == {"matmuls": 2, "convolutions": 1}
    assert ctx.notes == ["precision: 2 matmuls and 1 convolution in bf16 with f32 accumulation"]
    # x feeds both matmuls (three times) but is converted once
    assert op_names(g).count("convert") == 4
    args = inputs(before)
    rounded = [a.astype(ml_dtypes.bfloat16).astype(np.float32) for a in args]
    expected = evaluate(before, rounded)
    # the second matmul's lhs is the first one's f32 result, rounded to bf16 only in `g`
    assert evaluate(g, args)[2].tobytes() == expected[2].tobytes()
    assert evaluate(g, args)[0].tobytes() == expected[0].tobytes()


def test_the_note_for_matmuls_only():
    ctx = PassContext(options("f16"))
    precision_pass(matmul_graph(), ctx)
    assert ctx.notes == ["precision: 1 matmul in f16 with f32 accumulation"]


@pytest.mark.parametrize("dtype,result", [(dtypes.F64, dtypes.F64), (dtypes.BF16, F32), (dtypes.I8, dtypes.I32)])
def test_other_matmuls_are_left_alone(dtype, result):
    g = matmul_graph(dtype, result)
    _, stats = apply(g, "precision", options("bf16"))
    assert stats == {}
    assert "convert" not in op_names(g)


def test_refuses_a_target_without_that_matmul_dtype():
    with pytest.raises(TargetError) as e:
        apply(matmul_graph(), "precision", options("bf16", HOST_REFERENCE))
    message = str(e.value)
    assert "'cpu'" in message and "bf16" in message and "f32, f64" in message


def test_refuses_an_unknown_dtype():
    with pytest.raises(XchipError, match="unknown precision 'f4'"):
        apply(matmul_graph(), "precision", options("f4"))


def test_without_the_option_nothing_changes_and_nothing_is_noted():
    g = matmul_graph()
    ctx = PassContext(PassOptions())
    assert precision_pass(g, ctx) == {}
    assert ctx.notes == [] and "convert" not in op_names(g)


def test_values_already_from_the_low_dtype_are_not_converted_twice():
    b = Builder(TensorType((4, 8), dtypes.BF16), TensorType((8, 3), F32))
    x16, w = b.inputs
    x = b.op("convert", x16, result_type=TensorType((4, 8), F32))
    g = b.graph(b.op("dot_general", x, w, lhs_contracting_dimensions=(1,), rhs_contracting_dimensions=(0,)))
    apply(g, "precision", options("bf16"))
    dot = g.outputs[0].producer
    assert dot.operands[0] is x16


def test_matmuls_inside_regions_reuse_outer_converts():
    text = """
func @main(%0: f32[2,2], %1: bool[]) -> (f32[2,2]) {
  %2 = dot_general(%0, %0) {lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [0]} : f32[2,2]
  %3 = if(%1) : f32[2,2] {
    ^():
      %4 = dot_general(%0, %2) {lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [0]} : f32[2,2]
      return(%4)
  }, {
    ^():
      return(%2)
  }
  return(%3)
}
"""
    g = ir(text)
    _, stats = apply(g, "precision", options("bf16"))
    assert stats == {"matmuls": 2}
    assert op_names(g) == ["convert", "dot_general", "if", "convert", "dot_general", "return", "return", "return"]


def test_runs_last_in_the_pipeline_when_asked():
    names = pipeline(options("bf16"))
    assert names.index("precision") > names.index("dce")
    g = matmul_graph()
    ctx = run_passes(g, [n for n in names if n not in ("fuse", "plan-memory")], options("bf16"))
    assert ctx.notes == ["precision: 1 matmul in bf16 with f32 accumulation"]
