"""The native route: XLA's CPU backend calls compiled xchip programs through one FFI target.

    program_id = register(compiled)                  # once per compiled program
    outs = ffi_call(program_id, out_types, leaves)   # inside a JAX trace

`trampoline.c` is the FFI handler: built with gcc on first use (`xchip.native`), registered
with JAX once per process as the CPU target "xchip_program". Every custom call it serves
carries the program's id as an i64 attribute and lands in `_run_from_xla` below (a ctypes
callback, so it runs Python on XLA's thread, holding the GIL), which wraps XLA's buffers as
numpy arrays without copying the inputs, runs the program and copies its results into
XLA's output buffers. Any exception comes back to XLA as an FFI error carrying its type and
message, so JAX raises `JaxRuntimeError` in the caller: nothing unwinds into C.

Program ids are a hash of the optimized program's text (and target), not a counter: an
outer executable that JAX's persistent compilation cache brings from another process names
its xchip programs by content, so it either finds the same program here or fails with "no
program with id ..."; it never runs a different one.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

TARGET_NAME = "xchip_program"     # the FFI target; also the attribute that carries the id

# XLA_FFI_Error_Code values (xla/ffi/api/c_api.h)
_NOT_FOUND, _INVALID_ARGUMENT, _UNKNOWN = 5, 3, 2

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int64,                                                          # program id
    ctypes.c_int64, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64),   # inputs, element counts
    ctypes.c_int64, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64),   # outputs, element counts
    ctypes.c_void_p, ctypes.c_size_t)                                        # error message buffer


@dataclass
class _Buffer:
    """How to view one of XLA's buffers as a numpy array."""
    shape: tuple[int, ...]
    dtype: np.dtype
    size: int                     # elements
    raw: type                     # ctypes.c_char * nbytes, built once

    @classmethod
    def of(cls, shape, dtype) -> "_Buffer":
        dtype = np.dtype(dtype)
        size = math.prod(shape)
        return cls(tuple(shape), dtype, size, ctypes.c_char * (size * dtype.itemsize))

    def view(self, address: int | None) -> np.ndarray:
        if not self.size:
            return np.empty(self.shape, self.dtype)   # XLA may pass a null pointer for no data
        return np.frombuffer(self.raw.from_address(address), self.dtype).reshape(self.shape)


@dataclass
class Program:
    """A compiled program as the registry keeps it (alive for the rest of the process: an
    outer XLA executable may call it at any time)."""
    name: str
    run: Callable[[list[np.ndarray]], list[np.ndarray]]
    inputs: list[_Buffer]
    outputs: list[_Buffer]
    # CpuProgram reuses its temporary buffers between calls: one call at a time, whichever
    # thread XLA (or a host callback) runs it on.
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: int = 0                # runs through XLA (the FFI route) and host callbacks

    def __post_init__(self):
        self.input_sizes = [b.size for b in self.inputs]      # what XLA's element counts must be
        self.output_sizes = [b.size for b in self.outputs]

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        with self.lock:
            self.calls += 1
            return self.run(arrays)


_programs: dict[int, Program] = {}
_programs_lock = threading.Lock()


def program_id(compiled) -> int:
    """A positive 62-bit id that names the compiled program by its content."""
    digest = hashlib.sha256(f"{compiled.target}\n{compiled.as_text()}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


def register(compiled) -> int:
    """Keep `compiled` (an `xchip.Compiled` for the host) callable from XLA; its id."""
    pid = program_id(compiled)
    with _programs_lock:
        if pid not in _programs:
            _programs[pid] = Program(
                name=compiled._traced.fun_name,
                run=compiled._program,
                inputs=[_Buffer.of(a.shape, a.dtype) for a in compiled._traced.in_avals],
                outputs=[_Buffer.of(v.type.shape, v.type.dtype.numpy) for v in compiled.graph.outputs])
    return pid


def program(pid: int) -> Program:
    return _programs[pid]


def _error(buffer: int, length: int, code: int, message: str) -> int:
    data = message.encode("utf-8", "replace")[:length - 1] + b"\0"
    ctypes.memmove(buffer, data, len(data))
    return code


def _run_from_xla(pid, n_in, ins, in_sizes, n_out, outs, out_sizes, err, err_len) -> int:
    # Runs on XLA's thread. Nothing may escape: ctypes would print the exception and return
    # 0, and XLA would go on with uninitialized outputs.
    p = None
    try:
        p = _programs.get(pid)
        if p is None:
            return _error(err, err_len, _NOT_FOUND, f"xchip: no program with id {pid} in this process (an "
                          "executable from another process's compilation cache? trace the function again)")
        if in_sizes[:n_in] != p.input_sizes or out_sizes[:n_out] != p.output_sizes:
            return _error(err, err_len, _INVALID_ARGUMENT, f"xchip program '{p.name}': called with buffers of "
                          f"{in_sizes[:n_in]} -> {out_sizes[:n_out]} elements, compiled for {p.input_sizes} -> "
                          f"{p.output_sizes}")
        arrays = [spec.view(address) for spec, address in zip(p.inputs, ins[:n_in])]
        results = p(arrays)
        for spec, address, r in zip(p.outputs, outs[:n_out], results):
            np.copyto(spec.view(address), r, casting="no")
        return 0
    except BaseException as e:  # noqa: BLE001 - every failure must reach XLA as an error
        name = f"'{p.name}' (id {pid})" if p is not None else f"id {pid}"
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = f" [at {Path(where.filename).name}:{where.lineno}]" if where else ""
        try:
            return _error(err, err_len, _UNKNOWN, f"xchip program {name} raised {type(e).__name__}: {e}{at}")
        except BaseException:  # noqa: BLE001
            return _UNKNOWN


_registered: tuple | None = None     # (library, callback): kept alive for the process
_register_lock = threading.Lock()


def header_version() -> tuple[int, int]:
    """The XLA FFI API version (major, minor) the trampoline was built against, which is
    what it reports to XLA: jaxlib rejects a handler with a newer minor than its own."""
    lib = ensure_registered()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.xchip_ffi_header_version(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def ensure_registered() -> ctypes.CDLL:
    """Build (first use: gcc, cached) and register the trampoline with JAX, once per process."""
    global _registered
    with _register_lock:
        if _registered is None:
            from ..native import shared_library
            # the cache key covers c_api.h: each jaxlib's headers get their own build
            path = shared_library(Path(__file__).with_name("trampoline.c"), include_dirs=[jax.ffi.include_dir()])
            lib = ctypes.CDLL(str(path))
            callback = _CALLBACK(_run_from_xla)
            lib.xchip_ffi_set_callback.argtypes = [_CALLBACK]
            lib.xchip_ffi_set_callback(callback)
            jax.ffi.register_ffi_target(TARGET_NAME, jax.ffi.pycapsule(lib.xchip_ffi_handler), platform="cpu")
            _registered = (lib, callback)
        return _registered[0]


def ffi_call(pid: int, out_types: Sequence[jax.ShapeDtypeStruct], leaves: Sequence, *,
             vmap_method: str | None = None) -> list:
    """The custom call that runs program `pid` (registered) on `leaves`, in a JAX trace."""
    ensure_registered()
    call = jax.ffi.ffi_call(TARGET_NAME, list(out_types), vmap_method=vmap_method)
    return list(call(*leaves, xchip_program=np.int64(pid)))
