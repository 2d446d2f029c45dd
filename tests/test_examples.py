"""The example models: they run under jax.jit, lower for "xchip" to the ops they are meant to
exercise, and jax.jit itself stays within their tolerances of a float64 evaluation."""

from __future__ import annotations

import collections
import functools
import re

import jax
import numpy as np
import pytest

from examples.registry import EXAMPLES, get

DTYPES = ("f32", "bf16")
NP_DTYPES = {"f32": np.dtype("float32"), "bf16": np.dtype("bfloat16")}

OUTPUT_SHAPES = {"mlp": (4, 10), "transformer": (2, 10, 48), "cnn": (2, 10), "scan_rnn": (3, 20, 8)}

# Ops each model is meant to exercise: {op: exact count, or None for "at least one"}.
EXPECTED_OPS = {
    "mlp": {"stablehlo.dot_general": 3, "chlo.erfc": 1, "stablehlo.tanh": 1},
    "transformer": {"stablehlo.dot_general": 8, "stablehlo.reduce": None, "stablehlo.exponential": 1,
                    "stablehlo.rsqrt": 2, "stablehlo.iota": None, "stablehlo.select": None},
    "cnn": {"stablehlo.dot_general": 1, "stablehlo.convolution": 2, "stablehlo.reduce_window": 2,
            "stablehlo.rsqrt": 2, "stablehlo.maximum": None},
    "scan_rnn": {"stablehlo.dot_general": None, "stablehlo.while": 2, "stablehlo.dynamic_slice": None,
                 "stablehlo.dynamic_update_slice": None, "stablehlo.tanh": None},
}
FORBIDDEN_OPS = ("stablehlo.custom_call", "stablehlo.scatter", "stablehlo.gather")

# An op in operation position: `%r = stablehlo.add ...`, `"stablehlo.scatter"(...)`,
# `stablehlo.return ...`; not the reducer named inside a one-line `stablehlo.reduce`.
OP_NAME = re.compile(r'^\s*(?:%[^=]*=\s*)?"?((?:stablehlo|chlo)\.\w+)', re.M)


@functools.cache
def _jitted(name: str):
    return jax.jit(get(name).fn)


def _args(name: str, dtype: str, seed: int = 0):
    return get(name).make_args(np.random.default_rng(seed), dtype)


def _lowered_ops(name: str, dtype: str) -> collections.Counter:
    text = _jitted(name).trace(*_args(name, dtype)).lower(lowering_platforms=("xchip",)).as_text()
    return collections.Counter(OP_NAME.findall(text))


def test_registry_names():
    assert set(EXAMPLES) == set(OUTPUT_SHAPES)
    for name, ex in EXAMPLES.items():
        assert ex.name == name and ex.description
        assert set(ex.rtol) == set(ex.atol) == set(DTYPES)


def test_get_unknown_name_lists_the_names():
    with pytest.raises(KeyError, match="mlp.*transformer.*cnn.*scan_rnn"):
        get("resnet")


@pytest.mark.parametrize("name", sorted(OUTPUT_SHAPES))
def test_make_args_rejects_unknown_dtype(name):
    with pytest.raises(ValueError, match="f16"):
        _args(name, "f16")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OUTPUT_SHAPES))
def test_make_args(name, dtype):
    leaves = jax.tree.leaves(_args(name, dtype))
    for leaf in leaves:
        assert isinstance(leaf, np.ndarray) and leaf.dtype == NP_DTYPES[dtype]
        assert np.all(np.isfinite(leaf.astype(np.float32))) and np.any(leaf != 0)
    same = jax.tree.leaves(_args(name, dtype))
    other = jax.tree.leaves(_args(name, dtype, seed=1))
    assert all(np.array_equal(a, b) for a, b in zip(leaves, same))
    assert not any(np.array_equal(a, b) for a, b in zip(leaves, other))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OUTPUT_SHAPES))
def test_runs_under_jit(name, dtype):
    out = np.asarray(_jitted(name)(*_args(name, dtype)))
    assert out.shape == OUTPUT_SHAPES[name]
    assert out.dtype == NP_DTYPES[dtype]
    assert np.all(np.isfinite(out.astype(np.float32)))
    assert np.std(out.astype(np.float32)) > 0.05  # activations neither vanished nor saturated


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OUTPUT_SHAPES))
def test_lowering_ops(name, dtype):
    ops = _lowered_ops(name, dtype)
    for op, count in EXPECTED_OPS[name].items():
        if count is None:
            assert ops[op] >= 1, f"{name}/{dtype} lowers without {op}: {dict(ops)}"
        else:
            assert ops[op] == count, f"{name}/{dtype}: {ops[op]} x {op}, expected {count}: {dict(ops)}"
    for op in FORBIDDEN_OPS:
        assert ops[op] == 0, f"{name}/{dtype} lowers to {op}"
    # Nothing beyond the one intended chlo op (exact GELU's erfc).
    assert {op for op in ops if op.startswith("chlo.")} <= {"chlo.erfc"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OUTPUT_SHAPES))
def test_jit_within_tolerance_of_float64(name, dtype):
    """The registry's tolerances are 4x what jax.jit's own error needs, so jax.jit meets them."""
    ex = get(name)
    args = _args(name, dtype)
    out = np.asarray(_jitted(name)(*args)).astype(np.float64)
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda a: a.astype(np.float64), args)
        ref = np.asarray(_jitted(name)(*wide))
    assert ref.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=ex.rtol[dtype] / 4, atol=ex.atol[dtype] / 4)


@pytest.mark.parametrize("name", ["transformer", "scan_rnn"])
def test_sequence_models_are_causal(name):
    """Changing the last input step changes the outputs from that step on, and none before."""
    params, x = _args(name, "f32")
    fn = _jitted(name)
    before = np.asarray(fn(params, x))
    x = x.copy()
    x[:, -1] += 1.0
    after = np.asarray(fn(params, x))
    last = x.shape[1] - 1
    np.testing.assert_array_equal(after[:, :last], before[:, :last])
    assert np.all(np.abs(after[:, last:] - before[:, last:]).max(axis=-1) > 1e-3)
