"""Property tests: every pass, alone and in the pipelines of each optimization level, leaves
the reference executor's results bit for bit unchanged (NaN equal to NaN) on random graphs
and random inputs, and leaves IR that verifies. `fast_math` is checked with a tolerance on
graphs made of the patterns it rewrites.

A fast profile by default; `XCHIP_PASS_EXAMPLES=10000` runs that many examples per test.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pass_strategies as P
from xchip.ir import Graph, Region, TensorType, dtypes, ops, parse_graph, print_graph
from xchip.passes import PassOptions, optimize, pipeline

EXAMPLES = int(os.environ.get("XCHIP_PASS_EXAMPLES", "0")) or None
_HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]


def profile(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, suppress_health_check=_HEALTH)


def check_pass_sequence(data, names, options=None):
    graph = data.draw(P.graphs())
    assume(P.size_ok(graph))
    args = data.draw(P.inputs_for(graph))
    before = P.evaluate_or_none(graph, args)
    assume(before is not None)
    original = print_graph(graph)
    P.run_passes(graph, names, options)
    after = P.evaluate_or_none(graph, args)
    assert after is not None, f"the executor refuses the rewritten graph\n{original}\n{graph}"
    P.assert_same_results(before, after, f"after {', '.join(names)}\n--- before\n{original}--- after\n{graph}")
    text = print_graph(graph)
    assert print_graph(parse_graph(text)) == text   # new constants print exactly
    return graph


@pytest.mark.parametrize("name", P.MY_PASSES)
@profile(40)
@given(data=st.data())
def test_each_pass_keeps_results_bit_exact(name, data):
    check_pass_sequence(data, [name])


@pytest.mark.parametrize("level", ["O1", "O2", "O3"])
@profile(30)
@given(data=st.data())
def test_level_pipelines_keep_results_bit_exact(level, data):
    """The graph passes of each level, without fusion and memory planning (the next test
    runs those too)."""
    names = [n for n in pipeline(PassOptions(level=level)) if n in P.MY_PASSES]
    check_pass_sequence(data, names)


@pytest.mark.parametrize("level", ["O0", "O1", "O2", "O3"])
@profile(20)
@given(data=st.data())
def test_optimize_keeps_results_bit_exact(level, data):
    graph = data.draw(P.graphs())
    assume(P.size_ok(graph))
    args = data.draw(P.inputs_for(graph))
    before = P.evaluate_or_none(graph, args)
    assume(before is not None)
    result = optimize(graph, PassOptions(level=level, debug=True))
    after = P.evaluate_or_none(result.graph, args)
    assert after is not None
    P.assert_same_results(before, after, f"at {level}\n{result.graph}")


@profile(30)
@given(data=st.data())
def test_second_round_does_not_grow_the_graph(data):
    """The rewrites do not undo each other: a second O2 round never adds ops."""
    graph = data.draw(P.graphs())
    names = [n for n in pipeline(PassOptions(level="O2")) if n in P.MY_PASSES]
    P.run_passes(graph, names)
    first = P.op_count(graph)
    P.run_passes(graph, names)
    assert P.op_count(graph) <= first


@profile(30)
@given(data=st.data())
def test_fast_math_pipeline_verifies(data):
    """fast_math may change values; it must still give valid IR of the same signature."""
    graph = data.draw(P.graphs())
    types = (graph.input_types, graph.output_types)
    P.run_passes(graph, [n for n in pipeline(PassOptions(level="O3")) if n in P.MY_PASSES],
                 PassOptions(level="O3", fast_math=True))
    assert (graph.input_types, graph.output_types) == types


# --- fast_math with a tolerance -------------------------------------------------------------

@st.composite
def reassociation_graphs(draw):
    """x → a chain of multiplications, additions and divisions by finite constants."""
    dt = draw(st.sampled_from([dtypes.F32, dtypes.F64]))
    shape = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
    t = TensorType(shape, dt)
    body = Region([t])
    x = body.args[0]
    finite = st.floats(0.25, 4.0).map(lambda v: v * draw(st.sampled_from([1, -1])))
    for _ in range(draw(st.integers(1, 5))):
        name = draw(st.sampled_from(["multiply", "add", "divide"]))
        c = body.append(ops.make("constant", [], {"value": np.full(shape, draw(finite), dt.numpy)})).result
        x = body.append(ops.make(name, [x, c])).result
    body.append(ops.make("return", [x], result_types=[]))
    return Graph("main", body)


@profile(60)
@given(graph=reassociation_graphs(), seed=st.integers(0, 2**32 - 1))
def test_fast_math_stays_close(graph, seed):
    t = graph.input_types[0]
    x = np.random.default_rng(seed).uniform(-4, 4, t.shape).astype(t.dtype.numpy)
    before = P.evaluate_or_none(graph, [x])
    P.run_passes(graph, ["fold-constants", "simplify", "dce"], PassOptions(fast_math=True))
    after = P.evaluate_or_none(graph, [x])
    eps = np.finfo(t.dtype.numpy).eps
    # each of up to five ops rounds once; the terms stay below 4**5 in magnitude
    np.testing.assert_allclose(after[0], before[0], rtol=64 * eps, atol=64 * eps * 4.0**6)
