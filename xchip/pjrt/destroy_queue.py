"""The native half of the `*_Destroy` entries (destroy_queue.c) and its Python drain.

The C side only queues handles (no Python may run inside a C++ destructor); `drain()`
drops the queued objects. The plugin drains at the start of the entries that allocate
(compile, execute, host-to-device transfer, copies), so memory is returned about as soon
as JAX lets go of it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from .objects import HANDLES, Client

_LIB = None
_SLOTS = 1024
_OUT = (ctypes.c_uint64 * _SLOTS)()
_DRAIN = None


def library() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        from ..native import shared_library
        path = shared_library(Path(__file__).with_name("destroy_queue.c"), key="xchip.pjrt destroy queue")
        # PyDLL: calls keep the GIL, so two threads never drain into `_OUT` at once
        lib = ctypes.PyDLL(str(path))
        lib.xchip_pjrt_drain.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
        lib.xchip_pjrt_drain.restype = ctypes.c_size_t
        lib.xchip_pjrt_lost.restype = ctypes.c_size_t
        _LIB = lib
    return _LIB


def destroy_entry() -> int:
    """The address every `*_Destroy` slot of the API table points at."""
    return ctypes.cast(library().xchip_pjrt_deferred_destroy, ctypes.c_void_p).value


def noop_deleter() -> int:
    return ctypes.cast(library().xchip_pjrt_noop_deleter, ctypes.c_void_p).value


def drain() -> int:
    """Drops every object whose handle was destroyed since the last drain; returns how many."""
    global _DRAIN
    if _DRAIN is None:
        _DRAIN = library().xchip_pjrt_drain
    total = 0
    while True:
        n = _DRAIN(_OUT, _SLOTS)
        for i in range(n):
            obj = HANDLES.peek(_OUT[i])
            if isinstance(obj, Client):
                obj.release()
            HANDLES.release(_OUT[i])
        total += n
        if n < _SLOTS:
            return total
