"""Whole jax programs: lowered by jax, imported into xchip IR, run on the reference executor,
compared with jax.jit on the CPU. These exercise the executor on the op mixes that jax
really emits (and the importer with it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from reference_oracle import assert_same, rand, rng_for
from xchip.ir import verify
from xchip.runtime.reference import evaluate

from xchip.frontend import stablehlo_import


def _run_both(fn, *args):
    with jax.enable_x64(True), jax.default_device(jax.devices("cpu")[0]):
        text = jax.jit(fn).lower(*args).as_text()
        want = jax.tree.leaves(jax.jit(fn)(*args))
    graph = verify(stablehlo_import.import_stablehlo(text))
    got = evaluate(graph, [np.asarray(a) for a in jax.tree.leaves(args)])
    assert len(got) == len(want)
    return got, [np.asarray(w) for w in want]


def _mlp(params, x):
    for w, b in params[:-1]:
        x = jax.nn.gelu(x @ w + b)
    w, b = params[-1]
    return jax.nn.log_softmax(x @ w + b, axis=-1)


def _scan_cumulative(xs):
    def step(carry, x):
        carry = carry * 0.9 + x
        return carry, jnp.tanh(carry)
    return lax.scan(step, jnp.zeros(xs.shape[1:], xs.dtype), xs)


def _indexing(x, idx, upd):
    y = x.at[idx].add(upd)
    z = y[idx[::-1], 1:3]
    return y, z, jnp.take_along_axis(x, jnp.argsort(x, axis=1), axis=1)


def _conv_net(x, k):
    y = lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = jax.nn.relu(y)
    pooled = lax.reduce_window(y, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return pooled.mean(axis=(1, 2))


def _top_k_and_cumsum(x):
    values, indices = lax.top_k(x, 3)
    return values, indices, jnp.cumsum(x, axis=-1), jnp.cumprod(x[:, :4], axis=-1)


def _integer_program(a, b):
    return (a // jnp.where(b == 0, 1, b), a % 7, jnp.right_shift(a, 3), (a * b).sum(axis=0),
            jnp.argmax(a, axis=1), jnp.clip(a, -20, 20))


def test_mlp_matches_jax():
    rng = rng_for("mlp")
    sizes = [8, 16, 16, 4]
    params = [(rand("f32", (m, n), rng, low=-0.5, high=0.5), rand("f32", (n,), rng, low=-0.1, high=0.1))
              for m, n in zip(sizes[:-1], sizes[1:])]
    x = rand("f32", (5, 8), rng, low=-1, high=1)
    got, want = _run_both(_mlp, params, x)
    for g, w in zip(got, want):
        assert_same(g, w, rtol=1e-5, atol=1e-6)


def test_scan_matches_jax():
    xs = rand("f32", (50, 3), rng_for("scan"), low=-1, high=1)
    got, want = _run_both(_scan_cumulative, xs)
    for g, w in zip(got, want):
        assert_same(g, w, rtol=1e-5, atol=1e-6)


def test_indexing_scatter_gather_sort_match_jax():
    rng = rng_for("indexing")
    x = rand("f32", (6, 5), rng)
    idx = np.array([0, 3, 3, 5], np.int32)
    upd = rand("f32", (4, 5), rng)
    got, want = _run_both(_indexing, x, idx, upd)
    for g, w in zip(got, want):
        assert_same(g, w, rtol=1e-6, atol=1e-6)


def test_conv_net_matches_jax():
    rng = rng_for("conv-net")
    x, k = rand("f32", (2, 8, 8, 3), rng, low=-1, high=1), rand("f32", (3, 3, 3, 4), rng, low=-1, high=1)
    got, want = _run_both(_conv_net, x, k)
    assert_same(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_top_k_and_cumulative_ops_match_jax():
    x = rand("f32", (3, 9), rng_for("topk"), low=-2, high=2)
    got, want = _run_both(_top_k_and_cumsum, x)
    for g, w in zip(got, want):
        assert_same(g, w, rtol=1e-5, atol=1e-6)


def test_integer_program_matches_jax_exactly():
    rng = rng_for("ints")
    a, b = rand("i32", (4, 6), rng, low=-1000, high=1000), rand("i32", (4, 6), rng, low=-5, high=5)
    got, want = _run_both(_integer_program, a, b)
    for g, w in zip(got, want):
        assert_same(g, w)


@pytest.mark.parametrize("dt", ["bf16", "f16", "f64", "c64"])
def test_elementwise_chain_in_other_dtypes_matches_jax(dt):
    x = rand(dt, (4, 7), rng_for("chain", dt), low=0.1, high=3)

    def f(v):
        return jnp.exp(-v) * jnp.sin(v) + jnp.sqrt(v) / (1 + v * v)

    got, want = _run_both(f, x)
    assert_same(got[0], want[0])
