"""The `plan-memory` pass: exact numbers on hand-made chains, and on every example and on
random graphs: no two values live at the same time share a buffer, graph inputs and
outputs are never reused, peak <= allocated <= naive."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_helpers import Builder, example_graph, fusible_graphs, run_passes
from ir_strategies import graphs
from xchip.errors import XchipError
from xchip.passes import PassOptions, optimize
from xchip.passes.memory import ALIGNMENT, aligned


def check_plan(kg, plan) -> None:
    """Simulate the groups in order: each value a group reads or writes must sit in its
    buffer, untouched since it was written."""
    graph = kg.graph
    holder: dict[int, object] = {}     # buffer id -> the value it holds now
    for v in graph.inputs:
        holder[plan.assignment[v]] = v
    for v, bid in plan.assignment.items():
        if plan.buffers[bid].role == "constant":
            holder[bid] = v
    for g in kg.groups:
        for v in g.inputs:
            assert holder.get(plan.assignment[v]) is v, f"{g.name} reads {v}, overwritten"
        read = {plan.assignment[u] for u in g.inputs}
        for v in g.outputs:
            bid = plan.assignment[v]
            assert plan.buffers[bid].size >= v.type.nbytes
            assert bid not in read, f"{g.name} writes {v} over one of its inputs"
            holder[bid] = v
    for v in graph.outputs:
        assert holder.get(plan.assignment[v]) is v, f"graph output {v} was overwritten"
    roles = [b.role for b in plan.buffers]
    for v, bid in plan.assignment.items():
        if roles[bid] != "temp":
            assert [u for u, b in plan.assignment.items() if b == bid] == [v], "inputs/outputs are never shared"
    for b in plan.buffers:
        assert b.size % ALIGNMENT == 0
    assert len(plan.live_bytes) == len(kg.groups)
    assert plan.peak_bytes <= plan.total_bytes <= plan.naive_bytes


def exp_chain(n: int, shape: str = "f32[16]"):
    b = Builder(shape)
    x = b.args[0]
    for _ in range(n):
        x = b.op("exponential", x)
    return b.graph(x)


def test_chain_numbers():
    # O0: four groups x -> a -> b -> c -> d, 64 bytes each. a and b are live together,
    # c takes a's buffer, d is the output with a buffer of its own.
    kg, plan, stats = run_passes(exp_chain(4), "O0")
    assert [v.type.nbytes for g in kg.groups for v in g.outputs] == [64] * 4
    assert len(plan.buffers) == 4 and plan.reused == 1
    assert [b.role for b in plan.buffers] == ["input", "temp", "temp", "output"]
    a, b_, c, d = (g.outputs[0] for g in kg.groups)
    assert plan.assignment[c] == plan.assignment[a] != plan.assignment[b_]
    assert plan.live_bytes == [128, 192, 192, 192]
    assert plan.peak_bytes == 192 and plan.total_bytes == 256 and plan.naive_bytes == 320
    assert stats["plan-memory"] == {"buffers": 4, "reused": 1, "peak_bytes": 192, "naive_bytes": 320,
                                    "allocated_bytes": 256}
    check_plan(kg, plan)


def test_sizes_round_up_to_the_alignment():
    kg, plan, _ = run_passes(exp_chain(3, "f32[10]"), "O0")   # 40 bytes each
    assert {b.size for b in plan.buffers} == {64}
    assert plan.naive_bytes == 4 * 64
    assert aligned(0) == 0 and aligned(1) == 64 and aligned(64) == 64 and aligned(65) == 128


def test_fused_chain_needs_no_temporaries():
    kg, plan, _ = run_passes(exp_chain(4), "O2")
    assert len(kg.groups) == 1
    assert [b.role for b in plan.buffers] == ["input", "output"] and plan.peak_bytes == 128


def test_best_fit_takes_the_smallest_free_buffer_that_fits():
    # Groups (O0): big = exp(x) [64 floats], small = exp(y) [16 floats], both die at the
    # concatenate; then a 16-float temporary takes the small buffer, not the big one.
    b = Builder("f32[64]", "f32[16]")
    x, y = b.args
    big, small = b.op("exponential", x), b.op("exponential", y)
    joined = b.op("concatenate", big, small, dimension=0)
    t = b.op("exponential", b.op("slice", joined, start_indices=(0,), limit_indices=(16,), strides=(1,)))
    out = b.op("negate", t)
    kg, plan, _ = run_passes(b.graph(out), "O0")
    sliced = t.producer.operands[0]
    assert plan.assignment[sliced] == plan.assignment[small]
    assert plan.assignment[t] == plan.assignment[big]  # 256 bytes free beats 320
    check_plan(kg, plan)


def test_graph_inputs_are_never_reused():
    b = Builder("f32[16]")
    x = b.args[0]
    a = b.op("exponential", x)
    c = b.op("negate", a)
    kg, plan, _ = run_passes(b.graph(b.op("exponential", c)), "O0")
    input_buffer = plan.assignment[x]
    assert all(bid != input_buffer for v, bid in plan.assignment.items() if v is not x)
    check_plan(kg, plan)


def test_returned_input_and_duplicate_outputs_share_nothing_else():
    b = Builder("f32[16]")
    x = b.args[0]
    y = b.op("exponential", x)
    kg, plan, _ = run_passes(b.graph(x, y, y), "O2")
    assert plan.buffer_of(x).role == "input" and plan.buffer_of(y).role == "output"
    check_plan(kg, plan)


def test_summary_mentions_the_numbers():
    _, plan, _ = run_passes(exp_chain(4), "O0")
    text = plan.summary()
    assert "4 buffers" in text and "peak 192 B" in text and "320 B" in text


def test_plan_memory_needs_fuse_first():
    with pytest.raises(XchipError, match="run 'fuse' first"):
        optimize(exp_chain(2), PassOptions(), passes=["plan-memory"])


@pytest.mark.parametrize("level", ["O0", "O2"])
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("name", ["mlp", "transformer", "cnn", "scan_rnn"])
def test_examples(name, dtype, level):
    kg, plan, _ = run_passes(example_graph(name, dtype), level)
    check_plan(kg, plan)
    if level == "O0":
        assert plan.reused > 0 and plan.total_bytes < plan.naive_bytes


_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(graphs(max_ops=12), st.sampled_from(["O0", "O2"]))
def test_random_graphs(graph, level):
    check_plan(*run_passes(graph, level)[:2])


@_SETTINGS
@given(fusible_graphs(), st.sampled_from(["O0", "O2"]))
def test_random_fusible_graphs(graph, level):
    check_plan(*run_passes(graph, level)[:2])
