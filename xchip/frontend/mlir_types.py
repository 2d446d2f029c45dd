"""MLIR tensor types to xchip `TensorType`s, read from their printed form
(`tensor<20x20xcomplex<f32>>`): cheaper than the bindings' type classes and the same
in every jaxlib version."""

from __future__ import annotations

import re
from functools import lru_cache

from ..ir import dtypes
from ..ir.types import TensorType

_STATIC_TENSOR = re.compile(r"tensor<((?:\d+x)*)([a-z][\w<>]*)>")


class TypeNotSupported(Exception):
    """A type xchip has no equivalent for; the message says which and why."""


@lru_cache(maxsize=1024)
def tensor_type_from_text(text: str) -> TensorType:
    m = _STATIC_TENSOR.fullmatch(text)
    if m is None:
        raise TypeNotSupported(_why_not(text))
    dims, element = m.groups()
    dt = dtypes.from_mlir(element)
    if dt is None:
        if "quant." in element:
            raise TypeNotSupported(f"quantized element type {element} is not supported")
        raise TypeNotSupported(
            f"element type {element} is not supported; xchip has {', '.join(d.mlir for d in dtypes.ALL)}")
    shape = tuple(int(d) for d in dims.split("x") if d)
    return TensorType(shape, dt)


def _why_not(text: str) -> str:
    if "!quant." in text:
        return f"quantized type {text} is not supported"
    if text.startswith("!stablehlo.token") or text.startswith("!mhlo.token"):
        return "tokens (ordered side effects) are not supported"
    if text.startswith("tuple<"):
        return "tuples are not supported"
    if text.startswith("tensor<*"):
        return "unranked tensors are not supported; xchip needs static shapes"
    if re.match(r"tensor<(?:[\d?]+x)*\?", text):
        return f"dynamic shape {text} is not supported; xchip needs static shapes"
    if text.startswith("tensor<") and "," in text:
        return f"tensor encoding in {text} (bounded dynamism or sparsity) is not supported"
    return f"type {text} is not supported; xchip takes ranked tensors of static shape"
