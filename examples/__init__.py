"""Example models for xchip: plain, jit-able JAX functions of arrays.

`examples.registry` collects them (`EXAMPLES`, `get`). This module holds only what the model
modules share, so that importing a model never imports the registry.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

DTYPES = {"f32": np.dtype(np.float32), "bf16": np.dtype(ml_dtypes.bfloat16)}


def np_dtype(dtype: str) -> np.dtype:
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}") from None


def normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, scale: float = 1.0) -> np.ndarray:
    """Standard normal draws times `scale`, rounded once to `dtype` (numpy arrays, so that
    xchip's interpreter and jax.jit get the very same bits)."""
    return (rng.standard_normal(shape) * scale).astype(np_dtype(dtype))
