"""A small CNN on NHWC images: conv, batch-norm (inference), ReLU, max and average pooling, dense.

(2, 12, 16, 3) -> conv 3x3 SAME -> (2, 12, 16, 8) -> max-pool 3x3/2 SAME -> (2, 6, 8, 8)
-> conv 3x3 stride 2 pad 1 -> (2, 3, 4, 16) -> avg-pool 2x2/1 VALID -> (2, 2, 3, 16) -> dense -> (2, 10)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import normal, np_dtype

BATCH, HEIGHT, WIDTH, CHANNELS = 2, 12, 16, 3
C1, C2, CLASSES = 8, 16, 10
FLAT = 2 * 3 * C2                 # the avg-pooled (2, 3, C2) map, flattened
EPS = 1e-5
DIMS = ("NHWC", "HWIO", "NHWC")


def conv(x: jax.Array, w: jax.Array, stride: int, padding) -> jax.Array:
    return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=DIMS)


def batch_norm(x: jax.Array, p: dict) -> jax.Array:
    # Inference form: running statistics are parameters, nothing is computed over the batch.
    return (x - p["mean"]) * (p["scale"] * lax.rsqrt(p["var"] + EPS)) + p["offset"]


def max_pool(x: jax.Array) -> jax.Array:
    init = jnp.array(-jnp.inf, x.dtype)
    return lax.reduce_window(x, init, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")


def avg_pool(x: jax.Array) -> jax.Array:
    # Overlapping windows (stride 1 < window 2), VALID so every window holds 4 elements.
    total = lax.reduce_window(x, jnp.array(0, x.dtype), lax.add, (1, 2, 2, 1), (1, 1, 1, 1), "VALID")
    return total / 4


def cnn(params: dict, x: jax.Array) -> jax.Array:
    h = jax.nn.relu(batch_norm(conv(x, params["conv1"], 1, "SAME"), params["bn1"]))
    h = max_pool(h)
    h = jax.nn.relu(batch_norm(conv(h, params["conv2"], 2, ((1, 1), (1, 1))), params["bn2"]))
    h = avg_pool(h)
    return h.reshape(h.shape[0], -1) @ params["dense_w"] + params["dense_b"]


def make_args(rng: np.random.Generator, dtype: str) -> tuple[dict, np.ndarray]:
    def bn(c):
        return {
            "mean": normal(rng, (c,), dtype, 0.1),
            "var": rng.uniform(0.5, 1.5, (c,)).astype(np_dtype(dtype)),
            "scale": (1.0 + normal(rng, (c,), "f32", 0.1)).astype(np_dtype(dtype)),
            "offset": normal(rng, (c,), dtype, 0.1),
        }

    params = {
        # He scaling (fan-in = 3*3*C_in) keeps post-ReLU activations O(1).
        "conv1": normal(rng, (3, 3, CHANNELS, C1), dtype, np.sqrt(2.0 / (9 * CHANNELS))),
        "bn1": bn(C1),
        "conv2": normal(rng, (3, 3, C1, C2), dtype, np.sqrt(2.0 / (9 * C1))),
        "bn2": bn(C2),
        "dense_w": normal(rng, (FLAT, CLASSES), dtype, np.sqrt(1.0 / FLAT)),
        "dense_b": normal(rng, (CLASSES,), dtype, 0.1),
    }
    return params, normal(rng, (BATCH, HEIGHT, WIDTH, CHANNELS), dtype)


DESCRIPTION = ("CNN on (2, 12, 16, 3) NHWC images: conv + inference batch-norm + ReLU, 3x3/2 max-pool, "
               "strided padded conv + batch-norm + ReLU, 2x2/1 avg-pool, dense to 10 classes")
