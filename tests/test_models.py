"""The example models through xchip against jax.jit on the CPU, f32 and bf16, on fresh
random inputs, with the tolerances each example measured (examples/registry.py)."""

import jax
import numpy as np
import pytest

import xchip
from examples.registry import EXAMPLES
from xchip.numerics import compare


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_matches_jax(name, dtype):
    ex = EXAMPLES[name]
    seed = int(np.random.SeedSequence().entropy % 2**32)
    args = ex.make_args(np.random.default_rng(seed), dtype)
    got = jax.tree_util.tree_leaves(xchip.jit(ex.fn)(*args))
    want = jax.tree_util.tree_leaves(jax.jit(ex.fn)(*args))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        c = compare(np.asarray(g), np.asarray(w), ex.rtol[dtype], ex.atol[dtype])
        assert c.ok, f"{name}/{dtype} (seed {seed}): {c}"
