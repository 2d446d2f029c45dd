"""Tensor types: a static shape and an element type. Text form: `f32[64,256]`, `i32[]`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import dtypes
from .dtypes import DType


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: DType

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"negative dimension in shape {shape}")
        object.__setattr__(self, "shape", shape)
        if isinstance(self.dtype, str):
            object.__setattr__(self, "dtype", dtypes.get(self.dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: DType | str) -> "TensorType":
        return TensorType(self.shape, dtype if isinstance(dtype, DType) else dtypes.get(dtype))

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(str(s) for s in self.shape)}]"

    def __repr__(self) -> str:
        return f"TensorType({self})"

    @staticmethod
    def parse(text: str) -> "TensorType":
        """`f32[64,256]` -> TensorType. Raises ValueError on malformed text."""
        text = text.strip()
        if not text.endswith("]") or "[" not in text:
            raise ValueError(f"expected a type like 'f32[64,256]', got '{text}'")
        name, dims = text[:-1].split("[", 1)
        dims = dims.strip()
        shape = tuple(int(d) for d in dims.split(",")) if dims else ()
        try:
            dtype = dtypes.get(name.strip())
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        return TensorType(shape, dtype)


def scalar(dtype: DType | str) -> TensorType:
    return TensorType((), dtype)
