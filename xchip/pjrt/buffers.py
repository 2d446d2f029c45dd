"""PJRT buffers: one numpy array in host memory per `PJRT_Buffer`.

xchip's CPU backend runs on host memory, so "device memory" is a numpy array the plugin
owns. A buffer's array is never written after it is made (no donation, no aliasing, no
mutable zero-copy), which is what lets copies between buffers share one array.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from . import abi
from .abi import Code
from .objects import Client, PjrtError

_MINOR_TO_MAJOR: dict = {}   # rank -> the row-major minor_to_major, as ctypes, shared by all buffers


class Buffer:
    __slots__ = ("array", "shape", "client", "type", "deleted", "_dims")

    def __init__(self, array: np.ndarray, client: Client, pjrt_type: int | None = None):
        self.array = array
        self.shape = array.shape
        self.client = client
        self.type = abi.type_of(array.dtype) if pjrt_type is None else pjrt_type
        self.deleted = False
        self._dims = None

    def live_array(self) -> np.ndarray:
        if self.deleted:
            raise PjrtError(Code.FAILED_PRECONDITION, "the buffer was deleted (or donated) and has no data")
        return self.array

    @property
    def dims(self):
        """`int64_t[]` of the shape, kept for as long as the buffer (PJRT_Buffer_Dimensions)."""
        if self._dims is None:
            self._dims = (ctypes.c_int64 * max(1, len(self.shape)))(*self.shape)
        return self._dims

    def fill_layout(self, layout) -> None:
        """The dense row-major layout, the only one these buffers have."""
        rank = len(self.shape)
        m2m = _MINOR_TO_MAJOR.get(rank)
        if m2m is None:
            m2m = _MINOR_TO_MAJOR[rank] = (ctypes.c_int64 * max(1, rank))(*range(rank - 1, -1, -1))
        ctypes.memset(ctypes.addressof(layout), 0, ctypes.sizeof(layout))
        layout.struct_size = ctypes.sizeof(abi.MemoryLayout)
        layout.type = abi.LAYOUT_TILED
        layout.tiled.struct_size = ctypes.sizeof(layout.tiled)
        layout.tiled.minor_to_major = ctypes.addressof(m2m)
        layout.tiled.minor_to_major_size = rank

    def delete(self) -> None:
        # the shape and type stay queryable after PJRT_Buffer_Delete; the data goes
        self.deleted = True
        self.array = None

    @property
    def nbytes(self) -> int:
        return 0 if self.deleted else self.array.nbytes


DENSE, PERMUTED, STRIDED = "dense", "permuted", "strided"


def read_layout(address: int, rank: int, what: str) -> tuple[str, tuple[int, ...] | None]:
    """What a `PJRT_Buffer_MemoryLayout*` asks for: (DENSE, None) for row-major (also when
    `address` is null), (PERMUTED, minor_to_major) or (STRIDED, byte strides). Tiled
    layouts with tiles are refused."""
    if not address:
        return DENSE, None
    layout = abi.MemoryLayout.from_address(address)
    if layout.type == abi.LAYOUT_STRIDES:
        s = layout.strides
        return STRIDED, _ints(s.byte_strides, s.num_byte_strides)
    if layout.type != abi.LAYOUT_TILED:
        raise PjrtError(Code.UNIMPLEMENTED, f"{what}: memory layout type {layout.type} is not supported")
    t = layout.tiled
    if t.num_tiles:
        raise PjrtError(Code.UNIMPLEMENTED, f"{what}: tiled memory layouts are not supported (xchip buffers are "
                                            "dense)")
    m2m = _ints(t.minor_to_major, t.minor_to_major_size)
    if m2m == tuple(range(rank - 1, -1, -1)):
        return DENSE, None
    if sorted(m2m) != list(range(rank)):
        raise PjrtError(Code.INVALID_ARGUMENT, f"{what}: minor_to_major {m2m} is not a permutation of {rank} dims")
    return PERMUTED, m2m


def _ints(address: int, count: int) -> tuple[int, ...]:
    if count == 0:
        return ()
    return tuple((ctypes.c_int64 * count).from_address(address))


def from_host(client: Client, data: int, pjrt_type: int, dims_ptr: int, num_dims: int,
              strides_ptr: int, num_strides: int) -> Buffer:
    """A buffer holding a copy of the host array at `data`. Copying is right for every
    PJRT host-buffer semantics: the caller may reuse its memory as soon as we return."""
    dtype = abi.dtype_of(pjrt_type)
    shape = _ints(dims_ptr, num_dims)
    if any(d < 0 for d in shape):
        raise PjrtError(Code.INVALID_ARGUMENT, f"negative dimension in shape {shape}")
    count = math.prod(shape)
    if count == 0:
        return Buffer(np.empty(shape, dtype), client, pjrt_type)
    if not data:
        raise PjrtError(Code.INVALID_ARGUMENT, "PJRT_Client_BufferFromHostBuffer: data is null")
    strides = _ints(strides_ptr, num_strides) if strides_ptr and num_strides else None
    dense = tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) * dtype.itemsize for i in range(len(shape)))
    if strides is None or strides == dense:
        raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(data)
        return Buffer(np.frombuffer(raw, dtype, count).reshape(shape).copy(), client, pjrt_type)
    if len(strides) != len(shape) or any(s < 0 for s in strides):
        raise PjrtError(Code.UNIMPLEMENTED, f"byte strides {strides} for shape {shape} are not supported")
    span = sum((d - 1) * s for d, s in zip(shape, strides)) + dtype.itemsize
    view = np.ndarray(shape, dtype, buffer=(ctypes.c_char * span).from_address(data), strides=strides)
    return Buffer(view.copy(order="C"), client, pjrt_type)


def to_host(buffer: Buffer, dst: int, dst_size: int, host_layout: int) -> int:
    """Copies the buffer into `dst`, laid out as `host_layout` asks; returns the bytes
    needed (all that a caller passing a null `dst` wants)."""
    array = buffer.live_array()
    need = array.nbytes
    if not dst:
        return need
    if dst_size < need:
        raise PjrtError(Code.INVALID_ARGUMENT, f"PJRT_Buffer_ToHostBuffer: the destination holds {dst_size} "
                                               f"bytes, the buffer has {need}")
    kind, detail = read_layout(host_layout, array.ndim, "PJRT_Buffer_ToHostBuffer")
    if need == 0:
        return need
    memory = (ctypes.c_char * dst_size).from_address(dst)
    if kind == DENSE:
        ctypes.memmove(dst, array.ctypes.data, need)
    elif kind == PERMUTED:
        order = tuple(reversed(detail))   # minor_to_major reversed: the dims, slowest first
        out = np.ndarray(tuple(array.shape[d] for d in order), array.dtype, buffer=memory)
        np.copyto(out, array.transpose(order))
    else:
        np.copyto(np.ndarray(array.shape, array.dtype, buffer=memory, strides=detail), array)
    return need
