"""The `--args` syntax shared by every command that takes a function, and random inputs.

`--args 'f32[64,256],bf16[256,512],i32[]'`: one tensor type per positional argument, dtype
short names as in the IR, shapes in brackets, comma-separated.
"""

from __future__ import annotations

import re

import numpy as np

from .errors import ParseError
from .ir import TensorType, dtypes

_ONE = re.compile(r"\s*([A-Za-z0-9_]+)\s*\[\s*([0-9,\s]*)\]\s*")


def parse_args_spec(spec: str) -> list[TensorType]:
    """`'f32[64,256],bf16[256,512]'` -> [TensorType, TensorType]."""
    types, pos = [], 0
    spec = spec.strip()
    if not spec:
        return types
    while pos < len(spec):
        m = _ONE.match(spec, pos)
        if not m:
            raise ParseError(f"bad --args spec at character {pos + 1}: expected a type like f32[64,256] "
                             f"in {spec!r}")
        name, dims = m.group(1), m.group(2).strip()
        try:
            dt = dtypes.get(name)
        except KeyError as e:
            raise ParseError(f"bad --args spec: {e.args[0]}") from None
        shape = tuple(int(d) for d in dims.split(",") if d.strip()) if dims else ()
        if dims and len(shape) != len(dims.split(",")):
            raise ParseError(f"bad --args spec: empty dimension in {m.group(0).strip()!r}")
        types.append(TensorType(shape, dt))
        pos = m.end()
        if pos < len(spec):
            if spec[pos] != ",":
                raise ParseError(f"bad --args spec at character {pos + 1}: expected ',' in {spec!r}")
            pos += 1
    return types


def format_args_spec(types) -> str:
    return ",".join(str(t) for t in types)


def random_array(t: TensorType, rng: np.random.Generator) -> np.ndarray:
    """Fresh random values of type `t`: normal floats, small integers (so sums and products
    of a few stay in range), random booleans; never all zeros for non-empty tensors."""
    d = t.dtype
    if d.kind == "bool":
        return rng.random(t.shape) < 0.5
    if d.is_integer:
        lo, hi = (0, 16) if d.kind == "uint" else (-8, 9)
        a = rng.integers(lo, hi, size=t.shape)
        if a.size and not a.any():
            a.flat[0] = 1
        return a.astype(d.numpy)
    if d.is_complex:
        return (rng.standard_normal(t.shape) + 1j * rng.standard_normal(t.shape)).astype(d.numpy)
    return rng.standard_normal(t.shape).astype(d.numpy)


def random_arrays(types, rng: np.random.Generator) -> list[np.ndarray]:
    return [random_array(t, rng) for t in types]
