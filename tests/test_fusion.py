"""The `fuse` pass: each group kind and pattern on small graphs, the example models' group
counts, and properties over random graphs (a valid execution order, every op computed)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xchip.ir import Region, TensorType, ops, print_graph
from xchip.ir.graph import Graph

from fusion_helpers import (Builder, check_partition, example_graph, fuse, fusible_graphs, group_counts,
                            less_than, run_passes, trace_graph)
from ir_strategies import graphs

# Group counts per kind for each example model at O2, with `fuse` alone and with the whole
# O2 pipeline (cleanup, folding, CSE, ... first): the same today. docs/fusion.md shows the
# same table; update both together.
EXAMPLE_GROUPS = {
    ("mlp", "f32"): {"matmul": 3},
    ("mlp", "bf16"): {"matmul": 3},
    ("transformer", "f32"): {"attention": 1, "matmul": 6, "reduction": 2},
    ("transformer", "bf16"): {"attention": 1, "matmul": 6, "reduction": 2},
    ("cnn", "f32"): {"conv": 2, "matmul": 1, "reduction": 2},
    ("cnn", "bf16"): {"conv": 2, "matmul": 1, "reduction": 2},
    ("scan_rnn", "f32"): {"elementwise": 5, "matmul": 2, "opaque": 3},
    ("scan_rnn", "bf16"): {"elementwise": 5, "matmul": 2, "opaque": 3},
}


def only_group(kg):
    assert len(kg.groups) == 1, [g for g in kg.groups]
    return kg.groups[0]


# --- matmul --------------------------------------------------------------------------------


def test_matmul_with_bias_and_relu_is_one_group():
    b = Builder("f32[4,8]", "f32[8,16]", "f32[16]")
    x, w, bias = b.args
    y = b.dot(x, w)
    y = b.op("add", y, b.op("broadcast_in_dim", bias, result="f32[4,16]", broadcast_dimensions=(1,)))
    y = b.op("maximum", y, b.splat(0.0, y))
    kg = fuse(b.graph(y))
    g = only_group(kg)
    assert g.kind == "matmul" and g.anchor.name == "dot_general"
    assert g.info["activation"] == "relu" and g.info["epilogue_ops"] == 2
    assert g.inputs == [x, w, bias] and g.outputs == [y]
    check_partition(kg)


def test_batched_matmul_with_scale_and_convert():
    b = Builder("f32[2,4,8]", "f32[2,8,5]")
    x, w = b.args
    y = b.dot(x, w, contract=((2,), (1,)), batch=((0,), (0,)))
    y = b.op("multiply", y, b.splat(0.5, y))
    y = b.op("convert", y, result="bf16[2,4,5]")
    g = only_group(fuse(b.graph(y)))
    assert g.kind == "matmul" and g.op_names.count("dot_general") == 1
    assert g.flops == 2 * 2 * 4 * 5 * 8 + 2 * 4 * 5 * 2
    assert g.bytes == (2 * 4 * 8 + 2 * 8 * 5) * 4 + 2 * 4 * 5 * 2


def test_matmul_prologue_takes_a_weight_transpose_used_only_there():
    b = Builder("f32[4,8]", "f32[16,8]")
    x, w = b.args
    wt = b.op("transpose", w, permutation=(1, 0))
    g = only_group(fuse(b.graph(b.dot(x, wt))))
    assert g.info["prologue_ops"] == 1 and g.inputs == [w, x]  # in the order the ops read them


def test_shared_transpose_stays_outside_both_matmuls():
    b = Builder("f32[4,8]", "f32[16,8]")
    x, w = b.args
    wt = b.op("transpose", w, permutation=(1, 0))
    kg = fuse(b.graph(b.dot(x, wt), b.dot(x, wt)))
    assert group_counts(kg) == {"elementwise": 1, "matmul": 2}
    check_partition(kg)


def test_matmul_epilogue_stops_at_a_reduction_and_a_shape_change():
    b = Builder("f32[4,8]", "f32[8,16]")
    x, w = b.args
    y = b.op("exponential", b.dot(x, w))
    s = b.reduce(y, (1,))
    r = b.op("reshape", y, result="f32[64]")
    kg = fuse(b.graph(s, r))
    assert group_counts(kg) == {"elementwise": 1, "matmul": 1, "reduction": 1}
    matmul = next(g for g in kg.groups if g.kind == "matmul")
    assert matmul.op_names == ["dot_general", "exponential"] and matmul.outputs == [y]
    check_partition(kg)


def test_gelu_both_forms_fuse_into_the_matmul():
    def dense(x, w, b):
        h = jax.nn.gelu(x @ w + b, approximate=False)
        return jax.nn.gelu(h @ w.T[:, :8] + b[:8], approximate=True)

    args = [np.ones((4, 8), np.float32), np.ones((8, 8), np.float32), np.ones((8,), np.float32)]
    kg = fuse(trace_graph(dense, *args))
    assert [(g.kind, g.info.get("activation")) for g in kg.groups] == [
        ("matmul", "gelu_erf"), ("matmul", "gelu_tanh")]
    check_partition(kg)


# --- conv ----------------------------------------------------------------------------------


def test_conv_batch_norm_relu_is_one_group():
    def block(x, w, mean, var, scale, offset):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = (y - mean) * (scale * jax.lax.rsqrt(var + 1e-5)) + offset
        return jax.nn.relu(y)

    c = np.ones((4,), np.float32)
    kg = fuse(trace_graph(block, np.ones((1, 6, 6, 3), np.float32), np.ones((3, 3, 3, 4), np.float32), c, c, c, c))
    g = only_group(kg)
    assert g.kind == "conv" and g.info["activation"] == "relu"
    assert "rsqrt" in g.op_names  # the per-channel scale is computed in the epilogue
    check_partition(kg)


# --- reductions ----------------------------------------------------------------------------


def layernorm(x, scale, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias


def rmsnorm(x, w):
    return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * w


ROWS = np.ones((6, 16), np.float32)
VEC = np.ones((16,), np.float32)


@pytest.mark.parametrize("fn, args, pattern", [
    (lambda x: jax.nn.softmax(x, axis=-1), (ROWS,), "softmax"),
    (lambda x: jax.nn.log_softmax(x, axis=-1), (ROWS,), "log_softmax"),
    (layernorm, (ROWS, VEC, VEC), "layernorm"),
    (rmsnorm, (ROWS, VEC), "rmsnorm"),
    (lambda x: jnp.sqrt(jnp.sum(x * x, -1)), (ROWS,), "reduce"),
    (lambda x: x.max(-1) - x.min(-1), (ROWS,), "reduce"),
    (lambda x: jax.nn.softmax(x.astype(jnp.float32), axis=-1).astype(jnp.bfloat16),
     (ROWS.astype(jnp.bfloat16),), "softmax"),
], ids=["softmax", "log_softmax", "layernorm", "rmsnorm", "l2norm", "range", "softmax_bf16"])
def test_row_patterns_are_one_reduction_group(fn, args, pattern):
    kg = fuse(trace_graph(fn, *args))
    g = only_group(kg)
    assert g.kind == "reduction" and g.info["pattern"] == pattern
    check_partition(kg)


def test_layernorm_from_variance_of_squares_merges_sibling_reduces():
    def ln(x):
        mean = x.mean(-1, keepdims=True)
        var = (x * x).mean(-1, keepdims=True) - mean * mean
        return (x - mean) * jax.lax.rsqrt(var + 1e-5)

    g = only_group(fuse(trace_graph(ln, ROWS)))
    assert g.info["pattern"] == "layernorm" and g.op_names.count("reduce") == 2


def test_sibling_reduces_of_the_same_rows_merge_without_a_common_consumer():
    b = Builder("f32[4,8]")
    (x,) = b.args
    kg = fuse(b.graph(b.reduce(x, (1,), "maximum", -np.inf), b.reduce(x, (1,))))
    g = only_group(kg)
    assert g.kind == "reduction" and len(g.outputs) == 2
    check_partition(kg)


def test_reduces_over_different_rows_stay_apart():
    b = Builder("f32[4,8]")
    (x,) = b.args
    kg = fuse(b.graph(b.reduce(x, (1,)), b.reduce(x, (0,))))
    assert group_counts(kg) == {"reduction": 2}


def test_statistic_broadcast_across_rows_breaks_the_row_group():
    # The row sums of x (shape [4]) broadcast along dimension 1 of a [4,4] value: rows
    # become columns, which one row-wise kernel cannot compute.
    b = Builder("f32[4,4]")
    (x,) = b.args
    s = b.reduce(x, (1,))
    crossed = b.op("broadcast_in_dim", s, result="f32[4,4]", broadcast_dimensions=(1,))
    kg = fuse(b.graph(b.op("subtract", x, crossed)))
    assert group_counts(kg) == {"elementwise": 1, "reduction": 1}
    check_partition(kg)


def test_pooling_with_epilogue():
    b = Builder("f32[1,6,6,2]")
    (x,) = b.args
    scalar = TensorType((), x.dtype)
    body = Region([scalar, scalar])
    body.append(ops.make("return", [body.append(ops.make("add", body.args)).result], result_types=[]))
    pooled = b.emit("reduce_window", b.op("exponential", x), b.const(0.0), regions=[body],
                    window_dimensions=(1, 2, 2, 1), window_strides=(1, 2, 2, 1), base_dilations=(1, 1, 1, 1),
                    window_dilations=(1, 1, 1, 1), padding=((0, 0),) * 4).result
    y = b.op("divide", pooled, b.splat(4.0, pooled))
    g = only_group(fuse(b.graph(y)))
    assert g.kind == "reduction" and g.op_names == [
        "exponential", "constant", "reduce_window", "constant", "broadcast_in_dim", "divide"]


# --- attention -----------------------------------------------------------------------------


def test_attention_without_mask_is_one_group():
    def attention(q, k, v):
        return jax.nn.softmax(q @ k.T * 0.25, axis=-1) @ v

    m = np.ones((8, 16), np.float32)
    kg = fuse(trace_graph(attention, m, m, m))
    g = only_group(kg)
    assert g.kind == "attention" and g.info["pattern"] == "attention"
    assert g.op_names.count("dot_general") == 2 and len(g.inputs) == 3


def test_softmax_output_needed_elsewhere_is_not_attention():
    def attention(q, k, v):
        p = jax.nn.softmax(q @ k.T, axis=-1)
        return p @ v, p

    m = np.ones((8, 16), np.float32)
    kg = fuse(trace_graph(attention, m, m, m))
    assert group_counts(kg) == {"matmul": 2, "reduction": 1}
    check_partition(kg)


def test_transformer_attention_with_causal_mask_is_one_group():
    kg = fuse(example_graph("transformer", "f32"))
    (att,) = [g for g in kg.groups if g.kind == "attention"]
    names = att.op_names
    assert names.count("dot_general") == 2 and names.count("reduce") == 2
    assert {"iota", "compare", "select", "exponential"} <= set(names)  # the mask is computed inside
    assert [v.type.shape for v in att.inputs] == [(2, 10, 4, 12)] * 3  # Q, K, V
    assert [v.type.shape for v in att.outputs] == [(2, 4, 12, 10)]


# --- elementwise, opaque, constants --------------------------------------------------------


def test_elementwise_chain_with_reshape_and_transpose_is_one_group():
    b = Builder("f32[4,6]", "f32[6,4]")
    x, y = b.args
    t = b.op("transpose", b.op("exponential", x), permutation=(1, 0))
    r = b.op("reshape", b.op("add", t, y), result="f32[24]")
    g = only_group(fuse(b.graph(b.op("negate", r))))
    assert g.kind == "elementwise" and g.anchor is None


def test_opaque_ops_are_alone_and_split_their_neighbours():
    b = Builder("f32[8]", "i32[2,1]")
    x, idx = b.args
    e = b.op("exponential", x)
    sorted_ = b.emit("sort", b.op("negate", e), regions=[less_than()], dimension=0).result
    gathered = b.op("gather", sorted_, idx, offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,),
                    index_vector_dim=1, slice_sizes=(1,), result="f32[2]")
    kg = fuse(b.graph(b.op("add", gathered, gathered), e))
    assert [g.kind for g in kg.groups] == ["elementwise", "opaque", "opaque", "elementwise"]
    check_partition(kg)


def test_splat_constants_are_immediates_and_tensor_constants_inputs():
    b = Builder("f32[4]")
    (x,) = b.args
    table = b.const([1.0, 2.0, 3.0, 4.0])
    splat = b.const(np.full((4,), 2.0, np.float32))
    y = b.op("multiply", b.op("add", x, table), splat)
    g = only_group(fuse(b.graph(y)))
    assert g.inputs == [x, table]
    assert table.producer not in g.ops and splat.producer in g.ops


def test_shared_bias_broadcast_is_copied_into_each_group_and_counted():
    b = Builder("f32[4,8]", "f32[8,8]", "f32[8]")
    x, w, bias = b.args
    wide = b.op("broadcast_in_dim", bias, result="f32[4,8]", broadcast_dimensions=(1,))
    y1 = b.op("add", b.dot(x, w), wide)
    y2 = b.op("add", b.dot(y1, w), wide)
    kg, _, stats = run_passes(b.graph(y2), passes=("fuse",))
    assert group_counts(kg) == {"matmul": 2}
    assert all(wide.producer in g.ops for g in kg.groups)
    assert stats["fuse"]["ops_duplicated"] == 1
    check_partition(kg)


def test_values_opaque_ops_need_are_materialized_once():
    b = Builder("f32[4]")
    (x,) = b.args
    zeros = b.splat(0.0, x)
    sorted_ = b.emit("sort", zeros, regions=[less_than()], dimension=0).result
    kg, _, stats = run_passes(b.graph(b.op("add", sorted_, zeros), zeros), passes=("fuse",))
    fill = kg.groups[0]
    assert fill.kind == "elementwise" and fill.info == {"materialize": True} and fill.outputs == [zeros]
    assert stats["fuse"]["values_materialized"] == 1
    check_partition(kg)


def test_a_group_never_swallows_a_path_through_another_group():
    # d -> sort -> add and d -> add: putting the add with the matmul would make the
    # matmul's group both feed and wait for the sort.
    b = Builder("f32[4,8]", "f32[8,8]")
    x, w = b.args
    d = b.dot(x, w)
    s = b.emit("sort", d, regions=[less_than()], dimension=1).result
    kg = fuse(b.graph(b.op("add", d, s)))
    assert [g.kind for g in kg.groups] == ["matmul", "opaque", "elementwise"]
    check_partition(kg)


def test_wider_convert_moves_to_the_consumer_that_reads_it():
    # x + y is written anyway (it is returned); the f32 copy for the reduction is made
    # while the reduction loads it, not written by the matmul.
    b = Builder("bf16[4,8]", "bf16[8,8]", "bf16[4,8]")
    x, w, r = b.args
    y = b.op("add", b.dot(x, w), r)
    s = b.reduce(b.op("convert", y, result="f32[4,8]"), (1,))
    kg = fuse(b.graph(y, s))
    matmul, reduction = kg.groups
    assert matmul.outputs == [y] and "convert" in reduction.op_names
    check_partition(kg)


# --- levels, statistics, the examples ------------------------------------------------------


def test_O0_puts_every_op_in_its_own_group_with_its_kind():
    graph = example_graph("cnn", "f32")
    kg = fuse(graph, "O0")
    non_constant = [op for op in graph.body.ops if op.name not in ("constant", "iota", "return")]
    assert len(kg.groups) == len(non_constant)
    kinds = {g.kind for g in kg.groups}
    assert kinds == {"conv", "reduction", "elementwise", "matmul"}
    check_partition(kg, "O0")


def test_statistics():
    _, _, stats = run_passes(example_graph("transformer", "f32"), passes=("fuse",))
    s = stats["fuse"]
    assert s["groups"] == 9 and s["groups_attention"] == 1 and s["groups_matmul"] == 6
    assert s["pattern_layernorm"] == 2 and s["pattern_attention"] == 1 and s["pattern_gelu_tanh"] == 1
    assert s["ops_fused"] <= s["ops"] and s["ops_duplicated"] == 0


def test_fusion_leaves_the_graph_unchanged():
    graph = example_graph("transformer", "bf16")
    before = print_graph(graph)
    fuse(graph)
    assert print_graph(graph) == before


@pytest.mark.parametrize("pipeline", ["fuse", "O2"])
@pytest.mark.parametrize("name, dtype", sorted(EXAMPLE_GROUPS))
def test_example_group_counts(name, dtype, pipeline):
    kg, _, _ = run_passes(example_graph(name, dtype), "O2", ("fuse",) if pipeline == "fuse" else None)
    assert group_counts(kg) == EXAMPLE_GROUPS[name, dtype]
    check_partition(kg)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_mlp_is_three_matmuls_with_their_activations(dtype):
    kg = fuse(example_graph("mlp", dtype))
    assert [g.info.get("activation") for g in kg.groups] == ["gelu_erf", "gelu_tanh", None]
    assert [len(g.outputs) for g in kg.groups] == [1, 1, 1]


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_transformer_groups_in_order(dtype):
    kg = fuse(example_graph("transformer", dtype))
    assert [g.info.get("pattern", g.kind) for g in kg.groups] == [
        "layernorm", "matmul", "matmul", "matmul", "attention", "matmul", "layernorm", "matmul", "matmul"]


def test_transformer_pipeline_is_fast():
    graph = example_graph("transformer", "f32")
    start = time.perf_counter()
    run_passes(graph, "O2", passes=None)  # the whole O2 pipeline: about 15 ms here
    assert time.perf_counter() - start < 0.5


# --- random graphs -------------------------------------------------------------------------

_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(graphs(max_ops=12), st.sampled_from(["O0", "O2"]))
def test_random_graphs_partition_validly(graph, level):
    before = print_graph(graph)
    check_partition(fuse(graph, level), level)
    assert print_graph(graph) == before


@_SETTINGS
@given(fusible_graphs())
def test_random_fusible_graphs_partition_validly(graph):
    kg = fuse(graph)
    check_partition(kg)
    fused = fuse(Graph(graph.name, graph.body), "O0")
    assert len(kg.groups) <= len(fused.groups)


def test_check_partition_catches_a_wrong_order():
    kg = fuse(example_graph("mlp", "f32"))
    kg.groups.reverse()
    for i, g in enumerate(kg.groups):
        g.id = i
    with pytest.raises(AssertionError):
        check_partition(kg)
