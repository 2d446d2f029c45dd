"""A 3-layer MLP with GELU: 24 -> 64 -> 48 -> 10, batch 4."""

from __future__ import annotations

import jax
import numpy as np

from . import normal

BATCH, SIZES = 4, (24, 64, 48, 10)


def mlp(params: dict, x: jax.Array) -> jax.Array:
    # Both GELU forms on purpose: the exact one lowers to `chlo.erfc`, the tanh one to plain
    # elementwise ops, so the example covers both.
    h = jax.nn.gelu(x @ params["w0"] + params["b0"], approximate=False)
    h = jax.nn.gelu(h @ params["w1"] + params["b1"], approximate=True)
    return h @ params["w2"] + params["b2"]


def make_args(rng: np.random.Generator, dtype: str) -> tuple[dict, np.ndarray]:
    params = {}
    for i, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:])):
        # He-style scaling keeps activations O(1) through the GELUs.
        params[f"w{i}"] = normal(rng, (n_in, n_out), dtype, np.sqrt(2.0 / n_in))
        params[f"b{i}"] = normal(rng, (n_out,), dtype, 0.1)
    return params, normal(rng, (BATCH, SIZES[0]), dtype)


DESCRIPTION = "MLP 24-64-48-10 on a batch of 4: dense + exact GELU, dense + tanh GELU, dense"


def dense_gelu(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """One layer of the MLP as a function of plain arrays, for the command line:
    `xchip compile examples/mlp.py:dense_gelu --args 'f32[4,24],f32[24,64],f32[64]' --run`."""
    return jax.nn.gelu(x @ w + b, approximate=False)
