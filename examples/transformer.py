"""One pre-norm transformer block: causal multi-head self-attention and a GELU MLP.

Batch 2, sequence 10, model width 48, 4 heads of 12, MLP width 128.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import normal, np_dtype

BATCH, SEQ, D_MODEL, HEADS, HEAD_DIM, D_FF = 2, 10, 48, 4, 12, 128
EPS = 1e-5


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    # Statistics in at least f32 even for bf16 inputs, as real models (Flax, PyTorch AMP) do:
    # a bf16 variance of a 48-wide row loses most of its digits. The result goes back to x's
    # dtype. (promote_types rather than f32 so that a float64 reference stays float64.)
    wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = wide.mean(-1, keepdims=True)
    centered = wide - mean
    var = (centered * centered).mean(-1, keepdims=True)  # jnp.square would lower to chlo.square
    y = (centered * jax.lax.rsqrt(var + EPS)).astype(x.dtype)
    return y * scale + bias


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(d) + causal mask) v over [batch, seq, heads, head_dim]."""
    # A Python float, which takes q's dtype; a numpy scalar would promote bf16 to f32.
    scores = jnp.einsum("bqhk,bshk->bhqs", q, k) * q.shape[-1] ** -0.5
    seq = q.shape[1]
    # Additive mask, large but finite: a fully masked row (padding) then gives uniform weights, not NaN.
    mask = jnp.where(jnp.tril(jnp.ones((seq, seq), bool)), 0.0, -1e9).astype(q.dtype)
    scores = scores + mask
    # Softmax written out so that the lowering shows every step.
    weights = jnp.exp(scores - scores.max(-1, keepdims=True))
    weights = weights / weights.sum(-1, keepdims=True)
    return jnp.einsum("bhqs,bshk->bqhk", weights, v)


def causal_self_attention(p: dict, x: jax.Array) -> jax.Array:
    q = jnp.einsum("bsd,dhk->bshk", x, p["wq"])
    k = jnp.einsum("bsd,dhk->bshk", x, p["wk"])
    v = jnp.einsum("bsd,dhk->bshk", x, p["wv"])
    return jnp.einsum("bqhk,hkd->bqd", causal_attention(q, k, v), p["wo"])


def transformer_block(params: dict, x: jax.Array) -> jax.Array:
    x = x + causal_self_attention(params, layer_norm(x, params["ln1_scale"], params["ln1_bias"]))
    h = layer_norm(x, params["ln2_scale"], params["ln2_bias"])
    h = jax.nn.gelu(h @ params["w1"] + params["b1"], approximate=True)  # GPT-2 style
    return x + h @ params["w2"] + params["b2"]


def make_args(rng: np.random.Generator, dtype: str) -> tuple[dict, np.ndarray]:
    params = {
        "wq": normal(rng, (D_MODEL, HEADS, HEAD_DIM), dtype, D_MODEL ** -0.5),
        "wk": normal(rng, (D_MODEL, HEADS, HEAD_DIM), dtype, D_MODEL ** -0.5),
        "wv": normal(rng, (D_MODEL, HEADS, HEAD_DIM), dtype, D_MODEL ** -0.5),
        "wo": normal(rng, (HEADS, HEAD_DIM, D_MODEL), dtype, (HEADS * HEAD_DIM) ** -0.5),
        "w1": normal(rng, (D_MODEL, D_FF), dtype, D_MODEL ** -0.5),
        "b1": normal(rng, (D_FF,), dtype, 0.1),
        "w2": normal(rng, (D_FF, D_MODEL), dtype, D_FF ** -0.5),
        "b2": normal(rng, (D_MODEL,), dtype, 0.1),
    }
    for name in ("ln1", "ln2"):
        params[f"{name}_scale"] = (1.0 + normal(rng, (D_MODEL,), "f32", 0.1)).astype(np_dtype(dtype))
        params[f"{name}_bias"] = normal(rng, (D_MODEL,), dtype, 0.1)
    return params, normal(rng, (BATCH, SEQ, D_MODEL), dtype)


DESCRIPTION = ("Pre-norm transformer block (batch 2, seq 10, width 48, 4 heads of 12, MLP 128): "
               "layernorm, causal softmax attention via einsum, residuals, GELU MLP")
