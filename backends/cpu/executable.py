"""A program compiled for the host CPU: one compiled kernel per kernel group, run in order
over buffers allocated once from the memory plan.

Each group lowers to TensorIR, is scheduled (its tuned config, or the defaults) and built
with LLVM into a cached shared object. A `while` loop's group becomes one function running
the whole loop natively (loops.py); dynamic slices, pads and concatenations compile too. A
group the backend cannot lower (sort, scatter, gather, custom calls, an op or dtype the
lowering does not know) runs on the reference executor instead; the program warns once,
listing those groups with the reason, and each kernel says which backend runs it.

Per call, Python does little: the argument lists of every compiled kernel are bound at
construction, and only the graph inputs (taken as they are: kernels need only element
alignment) and the outputs (fresh arrays the caller keeps) change between calls.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from xchip.errors import FallbackWarning, XchipError  # FallbackWarning: re-exported by the package
from xchip.ir.graph import Value
from xchip.ir.kernel_graph import KernelGraph, KernelGroup
from xchip.runtime import reference

from .module_cache import load_or_build

BACKEND_COMPILED = "tvm-llvm"
BACKEND_REFERENCE = "reference"
ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype, nbytes: int | None = None) -> np.ndarray:
    """An uninitialized array whose data starts on a 64-byte boundary (`nbytes`, when the
    caller knows it, saves recomputing it on every call)."""
    dtype = np.dtype(dtype)
    if nbytes is None:
        nbytes = dtype.itemsize * math.prod(shape)
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


@dataclass
class Kernel:
    group: KernelGroup
    backend: str                          # BACKEND_COMPILED or BACKEND_REFERENCE
    params: list[Value]                   # compiled: the function's parameters, in order
    fn: Callable | None = None            # compiled: the packed function
    reason: str = ""                      # reference: why it was not compiled
    config: Mapping | None = None         # compiled: the schedule config (None: defaults)
    from_cache: bool = False
    compile_s: float = 0.0


def _numpy_native(dtype: np.dtype) -> bool:
    return dtype.kind != "V" and dtype.type.__module__ == "numpy"


def device_view(a: np.ndarray):
    """What a compiled kernel takes for array `a`: the array itself, except for dtypes
    numpy cannot hand over through DLPack (bfloat16, float8), which travel as a TVM tensor
    view with the right dtype over the same memory."""
    if _numpy_native(a.dtype):
        return a
    import tvm
    bits = np.dtype(a.dtype).itemsize * 8
    raw = tvm.runtime.from_dlpack(a.view(f"uint{bits}"))
    return raw._create_view(a.shape, dtype=_tvm_dtype(a.dtype))


def _tvm_dtype(dtype: np.dtype) -> str:
    name = np.dtype(dtype).name
    return {"bfloat16": "bfloat16", "float8_e4m3fn": "float8_e4m3fn", "float8_e5m2": "float8_e5m2"}.get(name, name)


class CpuProgram:
    """Callable with the graph's inputs (numpy arrays of the exact types); returns its
    outputs as fresh numpy arrays."""

    def __init__(self, kernel_graph: KernelGraph, memory_plan, target, *,
                 configs: Mapping[str, Mapping] | None = None,
                 custom_calls: Mapping[str, Callable] | None = None,
                 progress: Callable[[str], None] | None = None):
        from .lower import LoweringError, build, llvm_target

        self.graph = kernel_graph.graph
        self.target = target
        self.custom_calls = dict(custom_calls or {})
        self.kernels: list[Kernel] = []
        configs = configs or {}
        llvm = llvm_target(target)
        for i, group in enumerate(kernel_graph.groups):
            if progress:
                progress(f"[{i + 1}/{len(kernel_graph.groups)}] {group.name}")
            start = time.perf_counter()
            config = configs.get(group.name)
            try:
                try:
                    mod, params = schedule_kernel(group, config, target)
                except Exception as e:  # noqa: BLE001 - a stale tuned config must not cost compiled code
                    if config is None or isinstance(e, LoweringError):
                        raise
                    warnings.warn(f"{group.name}: tuned config {config} does not apply ({type(e).__name__}: "
                                  f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}); "
                                  "using the default schedule", stacklevel=3)
                    config = None
                    mod, params = schedule_kernel(group, None, target)
                lib, hit = load_or_build(mod, llvm, lambda m: build(m, target))
            except LoweringError as e:
                self.kernels.append(Kernel(group, BACKEND_REFERENCE, [], reason=str(e)))
                continue
            except Exception as e:  # noqa: BLE001 - TVM raises many kinds; a bug of ours, but the program still runs
                first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                self.kernels.append(Kernel(group, BACKEND_REFERENCE, [],
                                           reason=f"TVM could not schedule or build it ({type(e).__name__}: {first})"))
                continue
            self.kernels.append(Kernel(group, BACKEND_COMPILED, params,
                                       lib[group.name], config=config, from_cache=hit,
                                       compile_s=time.perf_counter() - start))
        fallback = [k for k in self.kernels if k.backend == BACKEND_REFERENCE]
        if fallback:
            listed = "; ".join(f"{k.group.name} ({k.reason})" for k in fallback)
            warnings.warn(f"{len(fallback)} of {len(self.kernels)} kernel groups run on the reference executor, "
                          f"not compiled code: {listed}", FallbackWarning, stacklevel=3)
        self._bind(memory_plan)

    # -- buffers ---------------------------------------------------------------------------

    def _bind(self, plan) -> None:
        """Allocate every temporary buffer of the plan once and give each value a view."""
        graph = self.graph
        self._returned = list(graph.outputs)
        outputs = set(graph.outputs)
        inputs = set(graph.inputs)
        storage: dict[int, np.ndarray] = {}
        self._static: dict[Value, np.ndarray] = {}
        for value, buffer_id in plan.assignment.items():
            buffer = plan.buffers[buffer_id]
            if buffer.role == "constant":      # returned ones too: no kernel writes them
                self._static[value] = _constant_array(value)
                continue
            if value in inputs or value in outputs:
                continue   # per call: the caller's arrays, fresh result arrays
            if buffer_id not in storage:
                storage[buffer_id] = aligned_empty((buffer.size,), np.uint8)
            t = value.type
            nbytes = t.nbytes
            self._static[value] = storage[buffer_id][:nbytes].view(t.dtype.numpy).reshape(t.shape)
        self._storage = storage
        self._not_written = inputs | set(self._static)   # values no kernel writes per call
        # new result arrays per call; only those that travel through DLPack need 64-byte alignment
        self._fresh = [(v, v.type.shape, np.dtype(v.type.dtype.numpy), v.type.nbytes,
                        _numpy_native(np.dtype(v.type.dtype.numpy)))
                       for v in dict.fromkeys(self._returned) if v not in self._not_written]
        self._inputs = [(v, _numpy_native(np.dtype(v.type.dtype.numpy))) for v in graph.inputs]
        self._static_views = {v: device_view(a) for v, a in self._static.items()}
        self._calls = [(k.fn, k.params) if k.backend == BACKEND_COMPILED else (None, k.group) for k in self.kernels]

    # -- running ---------------------------------------------------------------------------

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays, views = self._buffers(inputs)
        for fn, params in self._calls:
            if fn is not None:
                fn(*[views[p] for p in params])
            else:
                self._run_reference(params, arrays, self.custom_calls)
        # A returned graph input or constant is returned as a copy: the caller owns results.
        return [np.array(arrays[v]) if v in self._not_written else arrays[v] for v in self._returned]

    def profile(self, inputs: Sequence[np.ndarray], *, min_repeats: int = 5,
                min_seconds: float = 0.02) -> dict[str, list[float]]:
        """Each kernel's times in seconds, measured here, inside this program: one run
        records every kernel's inputs as they are when it starts; then each kernel is called
        on private copies of them (buffers the memory plan shares would otherwise hand it
        data a later kernel overwrote) at least `min_repeats` times and `min_seconds`, after
        one untimed call. Its inputs are warm in cache, as just after their producers."""
        arrays, views = self._buffers(inputs)
        times: dict[str, list[float]] = {}
        for kernel, (fn, params) in zip(self.kernels, self._calls):
            group = kernel.group
            outputs = set(group.outputs)
            needed = dict.fromkeys([*group.inputs, *group.outputs, *(params if fn is not None else ())])
            private = {v: _copy_of(arrays[v], empty=v in outputs) for v in needed}
            if fn is not None:
                args = [device_view(private[p]) for p in params]
                call = lambda fn=fn, args=args: fn(*args)  # noqa: E731
            else:
                call = lambda group=group, private=private: self._run_reference(group, private, self.custom_calls)  # noqa: E731
            call()
            samples: list[float] = []
            start = time.perf_counter()
            while len(samples) < min_repeats or time.perf_counter() - start < min_seconds:
                t0 = time.perf_counter()
                call()
                samples.append(time.perf_counter() - t0)
            times[group.name] = samples
            # then the real run goes on, so the next kernel's inputs are the program's
            if fn is not None:
                fn(*[views[p] for p in params])
            else:
                self._run_reference(params, arrays, self.custom_calls)
        return times

    def _buffers(self, inputs: Sequence[np.ndarray]) -> tuple[dict, dict]:
        """(arrays, views) for one call: the inputs, constants and fresh outputs, each as
        a numpy array and as what a compiled kernel takes."""
        arrays = dict(self._static)
        views = dict(self._static_views)
        for (v, native), a in zip(self._inputs, inputs):
            # DLPack cannot export read-only arrays (np.asarray of a jax.Array is one): copy those
            if native:
                if not (a.flags.c_contiguous and a.flags.writeable):
                    a = np.array(a, order="C")
                arrays[v] = views[v] = a
                continue
            if not (a.flags.c_contiguous and a.flags.writeable) or a.ctypes.data % ALIGNMENT:
                # TVM takes bf16 and f8 arrays only through DLPack, which wants 64-byte alignment
                copy = aligned_empty(a.shape, a.dtype)
                np.copyto(copy, a)
                a = copy
            arrays[v] = a
            views[v] = device_view(a)
        for v, shape, dtype, nbytes, native in self._fresh:
            if native:
                arrays[v] = views[v] = np.empty(shape, dtype)
            else:
                a = arrays[v] = aligned_empty(shape, dtype, nbytes)
                views[v] = device_view(a)
        return arrays, views

    @staticmethod
    def _run_reference(group: KernelGroup, arrays: dict[Value, np.ndarray], custom_calls) -> None:
        env = {v: arrays[v] for v in group.inputs}
        results = reference.evaluate_ops(group.ops, env, custom_calls=custom_calls)
        for v in group.outputs:
            np.copyto(arrays[v], results[v])


def _copy_of(a: np.ndarray, empty: bool = False) -> np.ndarray:
    out = aligned_empty(a.shape, a.dtype)
    if not empty:
        np.copyto(out, a)
    return out


def _constant_array(value: Value) -> np.ndarray:
    op = value.producer
    if op is None or op.name != "constant":
        raise XchipError(f"value {value} has a constant buffer but is not a constant")
    data = np.asarray(op.attrs["value"], value.type.dtype.numpy).reshape(value.type.shape)
    out = aligned_empty(data.shape, data.dtype)
    np.copyto(out, data)
    return out


def schedule_kernel(group: KernelGroup, config, target):
    """(scheduled module, its function's parameter values in order) for one group."""
    from . import loops, te_dynamic
    from .lower import lower_group, schedule_group
    from .matmul_schedule import ensure_thread_pool
    if getattr(target, "host", None) is not None:
        # every kind's parallel loops, not only matmuls': TVM's default pool is half the
        # logical CPUs, one thread on a 2-vCPU machine
        ensure_thread_pool(target)
    if loops.lowers(group):
        mod, inputs, outputs = loops.lower_loop(group, target)
        params = inputs + outputs
    else:
        lowered = te_dynamic.lower_dynamic(group) if te_dynamic.lowers(group) else lower_group(group)
        mod = schedule_group(lowered, config, target, use_matmul_schedule=not _slow_to_schedule(group))
        params = lowered.inputs + lowered.outputs
    return _element_aligned(mod, group.name), params


def _element_aligned(mod, name: str):
    """The kernel with parameters that need only element alignment. TVM assumes 64-byte
    aligned arguments without checking them, and numpy's large arrays start 16 bytes into a
    page: the kernel's own buffers are declared over these parameters instead, so its loads
    are unaligned ones (as fast on aligned data) and no argument is ever copied to align it."""
    import tvm
    from tvm import tirx as tir
    func = mod[name]
    params, decls = [], []
    for p in func.params:
        q = tir.decl_buffer(p.shape, p.dtype, p.name, data_alignment=max(1, p.dtype.bits // 8))
        params.append(q)
        decls.append(tir.DeclBuffer(p, data=q.data))
    wrapped = tir.PrimFunc(params, tir.SeqStmt(decls + [func.body]), attrs=func.attrs)
    return tvm.IRModule({name: wrapped})


def _slow_to_schedule(group: KernelGroup) -> bool:
    """Known problem: the packed GEMM schedule with a long f16/bf16 epilogue (the transformer's
    bf16 tanh-GELU projection) runs for minutes inside TVM's scheduling, because the rounding
    after every epilogue op is inlined into every use. Such groups take the simple matmul
    schedule until that is fixed."""
    if group.kind != "matmul" or not group.outputs:
        return False
    low = any(v.type.dtype.name in ("bf16", "f16") for v in group.outputs)
    return low and group.info.get("epilogue_ops", 0) > 4
