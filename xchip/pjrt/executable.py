"""PJRT_Client_Compile's work: the StableHLO that jaxlib sends, through xchip's pipeline.

jaxlib sends a StableHLO portable artifact (VHLO bytecode). It goes the way every xchip
program goes: `import_stablehlo` -> `optimize` (the pass options `xchip.jit` uses for the
host) -> `host_program` (the CPU backend, which reads the tuning database). JAX caches
executables per jitted function itself; the caches here catch what JAX's does not (the
same program from a new `jax.jit` object or another call site), keyed on the artifact's
bytes and, after import, on the program without its source locations.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from collections import OrderedDict

import numpy as np

from . import abi
from .abi import Code
from .objects import MEMORY_KIND, CString, PjrtError

# What the tests and the docs read: PJRT compile requests, pipeline runs (compiles), and
# requests a cache answered instead (the same artifact, or the same program from another
# call site).
STATS = {"compile_requests": 0, "compiles": 0, "cache_hits": 0, "executions": 0}

_CACHE: OrderedDict[str, "Executable"] = OrderedDict()          # artifact bytes -> executable
_PROGRAMS: OrderedDict[str, tuple] = OrderedDict()              # program without locations -> (program, lock)
_CACHE_SIZE = 256
_COMPILE_LOCK = threading.Lock()   # jaxlib compiles on its own threads; the pipeline and TVM are not re-entrant


class Executable:
    """A compiled program and what PJRT's executable queries report about it."""

    def __init__(self, name: str, program, lock, in_types, out_types, fingerprint: str):
        self.program = program
        self.in_types = in_types       # [(shape, numpy dtype)] per parameter
        self.out_types = out_types     # [(shape, numpy dtype)] per result
        self.name = CString(name)
        self.fingerprint = CString(fingerprint)
        self.lock = lock               # a program's scratch buffers are shared by all its calls
        n = len(out_types)
        self.output_types = (ctypes.c_int * max(1, n))(*[abi.type_of(d) for _, d in out_types])
        flat = [d for shape, _ in out_types for d in shape]
        self.output_dims = (ctypes.c_int64 * max(1, len(flat)))(*flat)
        self.output_ranks = (ctypes.c_size_t * max(1, n))(*[len(s) for s, _ in out_types])
        self.memory_kind = CString(MEMORY_KIND)
        most = max(n, len(in_types), 1)
        self.memory_kinds = (ctypes.c_void_p * most)(*[self.memory_kind.ptr] * most)
        self.memory_kind_sizes = (ctypes.c_size_t * most)(*[self.memory_kind.size] * most)
        self.generated_code_bytes = 0

    @property
    def num_outputs(self) -> int:
        return len(self.out_types)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if len(arrays) != len(self.in_types):
            raise PjrtError(Code.INVALID_ARGUMENT, f"{_text(self.name)} takes {len(self.in_types)} arguments, "
                                                   f"got {len(arrays)}")
        for i, (a, (shape, dtype)) in enumerate(zip(arrays, self.in_types)):
            if a.shape != shape or a.dtype != dtype:
                raise PjrtError(Code.INVALID_ARGUMENT, f"{_text(self.name)}: argument {i} is {a.dtype}{list(a.shape)}, "
                                                       f"the program takes {dtype}{list(shape)}")
        try:
            with self.lock:
                outs = list(self.program(arrays))
        except PjrtError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure inside a kernel becomes the caller's error
            raise PjrtError(Code.INTERNAL, f"xchip: running {_text(self.name)} failed: {type(e).__name__}: "
                                           f"{e}") from e
        if len(outs) != len(self.out_types):
            raise PjrtError(Code.INTERNAL, f"xchip: {_text(self.name)} returned {len(outs)} results, declared "
                                           f"{len(self.out_types)}")
        for i, (a, (shape, dtype)) in enumerate(zip(outs, self.out_types)):
            if type(a) is not np.ndarray:   # a numpy scalar has no buffer to copy from
                a = outs[i] = np.asarray(a)
            if a.shape != shape or a.dtype != dtype:
                raise PjrtError(Code.INTERNAL, f"xchip: {_text(self.name)} returned {a.dtype}{list(a.shape)} for "
                                               f"result {i}, declared {dtype}{list(shape)}")
        STATS["executions"] += 1
        return outs


def _text(s: CString) -> str:
    return s.buffer.value.decode()


def pass_options():
    """The options `xchip.jit(fn, target="cpu")` compiles with by default."""
    from ..api import HOST, pass_options
    return pass_options(HOST)


def _module_name(code: bytes) -> str:
    """The module's name (`jit_f`), for messages and PJRT_Executable_Name."""
    try:
        from ..frontend import mlir_attrs
        from ..frontend.mlir_context import new_context, parse_module
        with new_context() as ctx:
            module = parse_module(code, ctx)
            attr = mlir_attrs.get(module.operation, "sym_name")
            return mlir_attrs.string(attr) if attr is not None else "main"
    except Exception:  # noqa: BLE001 - a name is a nicety; the import reports real problems
        return "main"


def compile_stablehlo(code: bytes) -> Executable:
    """The executable for a StableHLO module (text, bytecode or portable artifact), from
    the cache or compiled now. Raises PjrtError naming what xchip could not compile."""
    from ..errors import UnsupportedOpError, XchipError

    options = pass_options()
    key = _digest(code, options)
    with _COMPILE_LOCK:
        STATS["compile_requests"] += 1
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            STATS["cache_hits"] += 1
            return hit
        name = _module_name(code)
        try:
            exe = _compile(code, name, options)
        except UnsupportedOpError as e:
            raise PjrtError(Code.UNIMPLEMENTED, f"xchip cannot compile {name}: {e}",
                            payloads={"xchip/unsupported-op": e.op}) from e
        except XchipError as e:
            raise PjrtError(Code.INVALID_ARGUMENT, f"xchip cannot compile {name}: {type(e).__name__}: {e}") from e
        except Exception as e:  # noqa: BLE001 - a compiler bug must reach the user as an error, not a crash
            raise PjrtError(Code.INTERNAL, f"xchip failed compiling {name}: {type(e).__name__}: {e}") from e
        _remember(_CACHE, key, exe)
        return exe


def _digest(data: bytes, options) -> str:
    return hashlib.sha256(data + b"\0" + repr(options).encode()).hexdigest()


def _remember(cache: OrderedDict, key: str, value) -> None:
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


def _without_locations(graph) -> str:
    """The graph's text with every op's location left out: JAX writes the caller's
    traceback into the program, so one function called from two places arrives as two
    different artifacts that compile to the same code."""
    from ..ir import print_graph
    ops = list(graph.walk())
    locs = [op.loc for op in ops]
    try:
        for op in ops:
            op.loc = None
        return print_graph(graph)
    finally:
        for op, loc in zip(ops, locs):
            op.loc = loc


def _compile(code: bytes, name: str, options) -> Executable:
    from ..api import host_program
    from ..frontend.stablehlo_import import import_stablehlo
    from ..passes import optimize

    graph = import_stablehlo(code)
    in_types = [(v.type.shape, np.dtype(v.type.dtype.numpy)) for v in graph.inputs]
    out_types = [(v.type.shape, np.dtype(v.type.dtype.numpy)) for v in graph.outputs]
    key = _digest(_without_locations(graph).encode(), options)
    compiled = _PROGRAMS.get(key)
    if compiled is None:
        compiled = (host_program(optimize(graph, options)), threading.Lock())
        STATS["compiles"] += 1
        _remember(_PROGRAMS, key, compiled)
    else:
        _PROGRAMS.move_to_end(key)
        STATS["cache_hits"] += 1
    program, lock = compiled
    return Executable(name, program, lock, in_types, out_types, fingerprint=f"xchip-{key[:32]}")


def clear_cache() -> None:
    with _COMPILE_LOCK:
        _CACHE.clear()
        _PROGRAMS.clear()
