"""Element types of xchip IR, with their numpy and StableHLO spellings."""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    name: str          # the IR's short name, also used by `--args` specs: "f32", "bf16", "c64"
    kind: str          # "bool" | "int" | "uint" | "float" | "complex"
    bits: int
    mlir: str          # StableHLO element type spelling: "f32", "ui8", "complex<f32>"
    numpy: np.dtype

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"DType({self.name})"

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_complex(self) -> bool:
        return self.kind == "complex"

    @property
    def is_integer(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind in ("int", "float", "complex")

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)


def _d(name: str, kind: str, bits: int, mlir: str, npdt) -> DType:
    return DType(name, kind, bits, mlir, np.dtype(npdt))


ALL: tuple[DType, ...] = (
    _d("bool", "bool", 8, "i1", np.bool_),
    _d("i8", "int", 8, "i8", np.int8),
    _d("i16", "int", 16, "i16", np.int16),
    _d("i32", "int", 32, "i32", np.int32),
    _d("i64", "int", 64, "i64", np.int64),
    _d("u8", "uint", 8, "ui8", np.uint8),
    _d("u16", "uint", 16, "ui16", np.uint16),
    _d("u32", "uint", 32, "ui32", np.uint32),
    _d("u64", "uint", 64, "ui64", np.uint64),
    _d("f8e4m3fn", "float", 8, "f8E4M3FN", ml_dtypes.float8_e4m3fn),
    _d("f8e5m2", "float", 8, "f8E5M2", ml_dtypes.float8_e5m2),
    _d("f16", "float", 16, "f16", np.float16),
    _d("bf16", "float", 16, "bf16", ml_dtypes.bfloat16),
    _d("f32", "float", 32, "f32", np.float32),
    _d("f64", "float", 64, "f64", np.float64),
    _d("c64", "complex", 64, "complex<f32>", np.complex64),
    _d("c128", "complex", 128, "complex<f64>", np.complex128),
)

_BY_NAME = {d.name: d for d in ALL}
_BY_MLIR = {d.mlir: d for d in ALL}
_BY_NUMPY = {d.numpy: d for d in ALL}
_ALIASES = {
    "pred": "bool", "i1": "bool", "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64",
    "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64", "float16": "f16",
    "bfloat16": "bf16", "float32": "f32", "float64": "f64", "complex64": "c64",
    "complex128": "c128", "float8_e4m3fn": "f8e4m3fn", "float8_e5m2": "f8e5m2",
}

BOOL, I8, I16, I32, I64 = (_BY_NAME[n] for n in ("bool", "i8", "i16", "i32", "i64"))
U8, U16, U32, U64 = (_BY_NAME[n] for n in ("u8", "u16", "u32", "u64"))
F8E4M3FN, F8E5M2, F16, BF16, F32, F64 = (
    _BY_NAME[n] for n in ("f8e4m3fn", "f8e5m2", "f16", "bf16", "f32", "f64"))
C64, C128 = _BY_NAME["c64"], _BY_NAME["c128"]


def names() -> list[str]:
    return [d.name for d in ALL]


def get(name: str) -> DType:
    """The dtype called `name` (IR short name or a common long name such as "float32")."""
    key = _ALIASES.get(name, name)
    try:
        return _BY_NAME[key]
    except KeyError:
        raise KeyError(f"unknown dtype '{name}'; known: {', '.join(names())}") from None


def from_mlir(spelling: str) -> DType | None:
    """The dtype for a StableHLO element type spelling, or None if xchip has none."""
    return _BY_MLIR.get(spelling)


def from_numpy(dtype) -> DType:
    dt = np.dtype(dtype)
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        raise KeyError(f"numpy dtype {dt} has no xchip dtype") from None


def real_part(d: DType) -> DType:
    """f32 for c64, f64 for c128; the dtype itself otherwise."""
    return {"c64": F32, "c128": F64}.get(d.name, d)


def complex_of(d: DType) -> DType:
    """c64 for f32, c128 for f64."""
    return {"f32": C64, "f64": C128}[d.name]
