"""While loops compiled into one native function (backends/cpu/loops.py) and the dynamic
slices their bodies use (te_dynamic.py), against jax.jit on fresh random inputs."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import xchip
from xchip.backends.cpu import BACKEND_COMPILED, BACKEND_REFERENCE, FallbackWarning


@pytest.fixture
def rng():
    return np.random.default_rng()


def compiled_and_checked(fn, *args, rtol=2e-6, atol=1e-6):
    """Compile `fn` for the CPU with no fallback allowed, compare with jax.jit, return the
    compiled program."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        compiled = xchip.jit(fn, target="cpu").lower(*args).compile()
    assert all(k.backend == BACKEND_COMPILED for k in compiled.kernels), \
        [(k.name, k.backend) for k in compiled.kernels]
    got = compiled(*args)
    want = jax.jit(fn)(*args)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)
    return compiled


def test_scan_with_matmul_body_and_stacked_outputs(rng):
    def f(h, xs, w):
        def step(h, x):
            h = jnp.tanh(h @ w + x)
            return h, h * 2.0
        return lax.scan(step, h, xs)
    h = rng.standard_normal((4, 16)).astype(np.float32)
    xs = rng.standard_normal((7, 4, 16)).astype(np.float32)
    w = (rng.standard_normal((16, 16)) / 4).astype(np.float32)
    compiled = compiled_and_checked(f, h, xs, w)
    assert any(k.kind == "opaque" and "while" in k.ops for k in compiled.kernels)


def test_carries_that_swap_and_pass_through(rng):
    def f(a, b, c):
        def body(i, carry):
            a, b, c = carry
            return b, a * 2.0 + i.astype(a.dtype), c      # a and b swap; c passes through
        return lax.fori_loop(0, 5, body, (a, b, c))
    a, b, c = (rng.standard_normal((3, 5)).astype(np.float32) for _ in range(3))
    compiled_and_checked(f, a, b, c)


def test_data_dependent_condition_and_zero_trips(rng):
    def f(x, limit):
        return lax.while_loop(lambda x: jnp.max(x) < limit, lambda x: x * 1.5 + 0.25, x)
    x = np.abs(rng.standard_normal(33)).astype(np.float32)
    compiled_and_checked(f, x, np.float32(1000.0))
    compiled_and_checked(f, x, np.float32(-1.0))        # the body never runs


def test_nested_loops(rng):
    def f(x):
        def outer(i, x):
            return lax.fori_loop(0, 3, lambda j, y: y * 0.5 + (i * j).astype(y.dtype), x) + 1.0
        return lax.fori_loop(0, 4, outer, x)
    compiled_and_checked(f, rng.standard_normal((2, 8)).astype(np.float32))


def test_integer_counters_and_bf16_state(rng):
    def f(x):
        def body(i, carry):
            x, n = carry
            return (x * x.dtype.type(0.75) + x.dtype.type(1)).astype(x.dtype), n + i
        return lax.fori_loop(0, 6, body, (x, jnp.int32(0)))
    x = rng.standard_normal(64).astype(jnp.bfloat16)
    compiled_and_checked(f, x, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("start", [-3, 0, 2, 5, 40])
def test_dynamic_slices_clamp_their_starts(rng, start):
    """Out-of-range starts are clamped into [0, dim - size], in and out of loops."""
    def f(x, u, i):
        piece = lax.dynamic_slice(x, (i, jnp.int32(1)), (3, 4))
        return piece * 2.0, lax.dynamic_update_slice(x, u, (jnp.int32(1), i))
    x = rng.standard_normal((6, 9)).astype(np.float32)
    u = rng.standard_normal((2, 5)).astype(np.float32)
    compiled_and_checked(f, x, u, np.int32(start), rtol=0, atol=0)


def test_a_loop_body_that_does_not_lower_falls_back_whole_and_says_why(rng):
    def f(x):
        return lax.fori_loop(0, 3, lambda i, y: jnp.sort(y * -1.0), x)
    x = rng.standard_normal(10).astype(np.float32)
    with pytest.warns(FallbackWarning, match="sort"):
        compiled = xchip.jit(f, target="cpu").lower(x).compile()
    loop = next(k for k in compiled.kernels if "while" in k.ops)
    assert loop.backend == BACKEND_REFERENCE
    np.testing.assert_array_equal(np.asarray(compiled(x)), np.asarray(jax.jit(f)(x)))


def test_scan_rnn_example_runs_its_loops_natively():
    from examples.registry import EXAMPLES
    ex = EXAMPLES["scan_rnn"]
    args = ex.make_args(np.random.default_rng(), "f32")
    compiled = compiled_and_checked(ex.fn, *args, rtol=1e-5, atol=1e-5)
    assert sum("while" in k.ops for k in compiled.kernels) == 2
