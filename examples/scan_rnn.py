"""A GRU forecaster: a `lax.scan` encoder over 16 steps, then 4 autoregressive steps in a
`lax.fori_loop` that feed each prediction back as the next input. Both loops lower to
`stablehlo.while`.

x (3, 16, 8) -> per-step predictions (3, 16, 8) followed by 4 forecast steps -> (3, 20, 8).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import normal

BATCH, STEPS, FEATURES, HIDDEN, FORECAST = 3, 16, 8, 32, 4


def gru_cell(p: dict, h: jax.Array, xw: jax.Array) -> jax.Array:
    """One GRU step; `xw` is the input's projection x @ w_in + b, computed by the caller."""
    xz, xr, xn = jnp.split(xw, 3, axis=-1)
    hz, hr, hn = jnp.split(h @ p["u"], 3, axis=-1)
    z = jax.nn.sigmoid(xz + hz)
    r = jax.nn.sigmoid(xr + hr)
    n = jnp.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def scan_rnn(params: dict, x: jax.Array) -> jax.Array:
    def readout(h):
        return h @ params["w_out"] + params["b_out"]

    # The input projection of all steps is one matmul outside the loop; only h @ u stays inside.
    xw = jnp.swapaxes(x, 0, 1) @ params["w_in"] + params["b"]          # (steps, batch, 3*hidden)

    def encode(h, xw_t):
        h = gru_cell(params, h, xw_t)
        return h, h

    h0 = jnp.zeros((x.shape[0], HIDDEN), x.dtype)
    h, hs = lax.scan(encode, h0, xw)
    ys = readout(hs)                                                   # (steps, batch, features)

    def forecast(i, carry):
        h, y, out = carry
        h = gru_cell(params, h, y @ params["w_in"] + params["b"])
        y = readout(h)
        # Rather than out.at[i].set(y), which lowers to a scatter.
        return h, y, lax.dynamic_update_index_in_dim(out, y, i, axis=0)

    out = jnp.zeros((FORECAST,) + ys.shape[1:], x.dtype)
    _, _, out = lax.fori_loop(0, FORECAST, forecast, (h, ys[-1], out))
    return jnp.swapaxes(jnp.concatenate([ys, out]), 0, 1)


def make_args(rng: np.random.Generator, dtype: str) -> tuple[dict, np.ndarray]:
    params = {
        "w_in": normal(rng, (FEATURES, 3 * HIDDEN), dtype, FEATURES ** -0.5),
        "u": normal(rng, (HIDDEN, 3 * HIDDEN), dtype, HIDDEN ** -0.5),
        "b": normal(rng, (3 * HIDDEN,), dtype, 0.1),
        "w_out": normal(rng, (HIDDEN, FEATURES), dtype, HIDDEN ** -0.5),
        "b_out": normal(rng, (FEATURES,), dtype, 0.1),
    }
    return params, normal(rng, (BATCH, STEPS, FEATURES), dtype)


DESCRIPTION = ("GRU forecaster: lax.scan encoder over 16 steps (batch 3, 8 features, hidden 32), "
               "then 4 autoregressive steps in lax.fori_loop; output (3, 20, 8)")
