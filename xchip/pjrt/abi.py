"""The PJRT C API's struct layouts, taken from pypjrt's generated ABI module.

pypjrt 0.1.1 ships `pypjrt/_abi/pjrt_0_114.py`: a ctypes mirror of OpenXLA's
`pjrt_c_api.h` at API version 0.114 whose offsets were generated with libclang and are
asserted against ctypes when the module loads. `pjrt_c_api.h` itself is not in jaxlib, so
this is the cheapest correct source of the layouts; the module is private to pypjrt,
which is why pyproject pins pypjrt exactly.

0.114 sits between the frameworks we run under (jaxlib 0.10.2 speaks 0.112, jaxlib
0.12.0.1 speaks 0.116); PJRT accepts any minor of the same major in both directions, and
the entries check each caller's `struct_size` before touching a field (`api_table.impl`).
"""

from __future__ import annotations

import ctypes

import ml_dtypes
import numpy as np

from ..errors import XchipError

try:
    from pypjrt._abi import pjrt_0_114 as _abi
except ImportError as e:   # pragma: no cover - the dependency is pinned
    raise XchipError(f"the xchip JAX plugin needs pypjrt==0.1.1 for the PJRT struct layouts ({e}); "
                     "pip install 'pypjrt==0.1.1'") from None

API_MAJOR = 0
API_MINOR = 114

# Sizes this plugin's code was written against. A different pypjrt (or a regenerated ABI
# module) that moved any of them must fail here, at import, not corrupt memory later.
EXPECTED_SIZES = {
    "PJRT_Api": 1144,
    "PJRT_Api_Version": 24,
    "PJRT_NamedValue": 56,
    "PJRT_Program": 48,
    "PJRT_LogicalDeviceIds": 8,
    "PJRT_Buffer_MemoryLayout": 80,
    "PJRT_Buffer_MemoryLayout_Tiled": 56,
    "PJRT_Buffer_MemoryLayout_Strides": 32,
    "PJRT_ExecuteOptions": 144,
    "PJRT_Client_Compile_Args": 56,
    "PJRT_Client_BufferFromHostBuffer_Args": 120,
    "PJRT_Buffer_ToHostBuffer_Args": 56,
    "PJRT_LoadedExecutable_Execute_Args": 80,
    "PJRT_Device_GetAttributes_Args": 56,
    "PJRT_LoadedExecutable_GetDeviceAssignment_Args": 56,
    "PJRT_LoadedExecutable_AddressableDeviceLogicalIds_Args": 40,
    "PJRT_Error_ForEachPayload_Args": 40,
    "PJRT_Executable_OutputDimensions_Args": 48,
    "PJRT_Executable_OutputElementTypes_Args": 40,
    "PJRT_Executable_OutputMemoryKinds_Args": 48,
    "PJRT_Device_MemoryStats_Args": 208,
}
# Every `*_Destroy_Args` is {struct_size, extension_start, handle}: the native queue reads
# the handle at this offset for all of them.
DESTROY_HANDLE_OFFSET = 16


def _check_layouts() -> None:
    if (_abi.PJRT_API_MAJOR, _abi.PJRT_API_MINOR) != (API_MAJOR, API_MINOR):
        raise XchipError(f"pypjrt's ABI module is PJRT {_abi.PJRT_API_MAJOR}.{_abi.PJRT_API_MINOR}, "
                         f"the xchip plugin was written for {API_MAJOR}.{API_MINOR}: install pypjrt==0.1.1")
    wrong = [f"{name}: {ctypes.sizeof(getattr(_abi, name))} bytes, expected {size}"
             for name, size in EXPECTED_SIZES.items() if ctypes.sizeof(getattr(_abi, name)) != size]
    for name in FUNCTIONS:
        if name.endswith("_Destroy"):
            fields = args_type(name)._fields_
            if len(fields) != 3 or getattr(args_type(name), fields[2][0]).offset != DESTROY_HANDLE_OFFSET:
                wrong.append(f"{name}_Args: the handle is not the only field after the header")
    if wrong:
        raise XchipError("pypjrt's PJRT struct layouts differ from what the xchip plugin expects "
                         f"(install pypjrt==0.1.1): {'; '.join(wrong)}")


FUNCTIONS: tuple[str, ...] = _abi.FUNCTIONS

PJRT_Api = _abi.PJRT_Api
ApiVersion = _abi.PJRT_Api_Version
NamedValue = _abi.PJRT_NamedValue
Program = _abi.PJRT_Program
LogicalDeviceIds = _abi.PJRT_LogicalDeviceIds
MemoryLayout = _abi.PJRT_Buffer_MemoryLayout
LAYOUT_TILED = _abi.PJRT_Buffer_MemoryLayout_Type_Tiled
LAYOUT_STRIDES = _abi.PJRT_Buffer_MemoryLayout_Type_Strides

NV_STRING = _abi.PJRT_NamedValue_kString
NV_INT64 = _abi.PJRT_NamedValue_kInt64
NV_INT64_LIST = _abi.PJRT_NamedValue_kInt64List
NV_BOOL = _abi.PJRT_NamedValue_kBool


def args_type(function: str):
    return getattr(_abi, function + "_Args")


class Code:
    """PJRT_Error_Code (absl status codes)."""
    INVALID_ARGUMENT = _abi.PJRT_Error_Code_INVALID_ARGUMENT
    NOT_FOUND = _abi.PJRT_Error_Code_NOT_FOUND
    FAILED_PRECONDITION = _abi.PJRT_Error_Code_FAILED_PRECONDITION
    UNIMPLEMENTED = _abi.PJRT_Error_Code_UNIMPLEMENTED
    INTERNAL = _abi.PJRT_Error_Code_INTERNAL
    RESOURCE_EXHAUSTED = _abi.PJRT_Error_Code_RESOURCE_EXHAUSTED


# PJRT_Buffer_Type <-> numpy. Sub-byte integer types (S1/S2/S4, U1/U2/U4) travel packed in
# PJRT and unpacked in numpy/ml_dtypes; xchip has no use for them, so they are refused.
_TYPES = {
    "PRED": np.bool_, "S8": np.int8, "S16": np.int16, "S32": np.int32, "S64": np.int64,
    "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
    "F16": np.float16, "F32": np.float32, "F64": np.float64, "BF16": ml_dtypes.bfloat16,
    "C64": np.complex64, "C128": np.complex128,
    "F8E5M2": ml_dtypes.float8_e5m2, "F8E4M3FN": ml_dtypes.float8_e4m3fn,
    "F8E4M3B11FNUZ": ml_dtypes.float8_e4m3b11fnuz, "F8E5M2FNUZ": ml_dtypes.float8_e5m2fnuz,
    "F8E4M3FNUZ": ml_dtypes.float8_e4m3fnuz, "F8E4M3": ml_dtypes.float8_e4m3,
    "F8E3M4": ml_dtypes.float8_e3m4, "F8E8M0FNU": ml_dtypes.float8_e8m0fnu,
}
DTYPE_OF_TYPE: dict[int, np.dtype] = {getattr(_abi, f"PJRT_Buffer_Type_{k}"): np.dtype(v) for k, v in _TYPES.items()}
TYPE_OF_DTYPE: dict[np.dtype, int] = {v: k for k, v in DTYPE_OF_TYPE.items()}
TYPE_NAMES: dict[int, str] = {getattr(_abi, n): n[len("PJRT_Buffer_Type_"):]
                              for n in dir(_abi) if n.startswith("PJRT_Buffer_Type_")}


def dtype_of(pjrt_type: int) -> np.dtype:
    try:
        return DTYPE_OF_TYPE[pjrt_type]
    except KeyError:
        from .objects import PjrtError
        raise PjrtError(Code.UNIMPLEMENTED, f"element type {TYPE_NAMES.get(pjrt_type, pjrt_type)} "
                                            "is not supported by the xchip plugin") from None


def type_of(dtype) -> int:
    try:
        return TYPE_OF_DTYPE[np.dtype(dtype)]
    except KeyError:
        from .objects import PjrtError
        raise PjrtError(Code.INTERNAL, f"numpy dtype {dtype} has no PJRT element type") from None


_check_layouts()
