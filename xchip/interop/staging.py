"""An xchip program as an operation of a JAX trace: what `xchip.jit` functions (and AOT
`Compiled` objects) do when called with tracers, inside `jax.jit`, `jax.grad`, `jax.vmap`.

The program is compiled by xchip at trace time, exactly as an eager call would compile it
(and shares the function's cache with eager calls), and becomes, in the outer program:

    custom_vjp(                       gradients: the VJP is another xchip function
      custom_vmap(                    vmap: xchip recompiles jax.vmap(fn) for the batched axes
        platform_dependent(
          cpu=ffi_call,               the outer program runs on XLA:CPU: the native trampoline
          xchip=fn,                   lowered by xchip itself (nested xchip.jit): inlined
          default=pure_callback)))    elsewhere (GPU, ...): a host callback, inputs copied over

Forward-mode autodiff (`jax.jvp`, `jax.jacfwd`, `jax.linearize`, `jax.hessian`) stops at
the custom_vjp, as for any custom_vjp function: JAX raises TypeError "can't apply
forward-mode autodiff (jvp) to a custom_vjp function".
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ArgumentError, TargetError, XchipError
from ..frontend.tracing import LOWERING_PLATFORM
from . import ffi

HOST = "cpu"

# "ffi" or "callback" forces one route at trace time (tests; benchmarks); None: by platform.
_forced_route: str | None = None


@contextlib.contextmanager
def forced_route(route: str | None) -> Iterator[None]:
    """Within the block, xchip programs traced into JAX programs take `route` ("ffi": the
    native trampoline, "callback": `jax.pure_callback`) whatever platform they lower for.
    It acts at trace time: a `jax.jit` function traced before keeps the route it got."""
    global _forced_route
    if route not in (None, "ffi", "callback"):
        raise ValueError(f"route must be 'ffi', 'callback' or None, got {route!r}")
    before, _forced_route = _forced_route, route
    try:
        yield
    finally:
        _forced_route = before


def _check_target(target: str, what: str) -> None:
    if target != HOST:
        from ..api import _verification_level
        raise TargetError(f"{what} is compiled for target '{target}' (verification level: "
                          f"{_verification_level(target)}), which does not execute in this process: inside "
                          "jax.jit/grad/vmap only target 'cpu' programs run (natively when the outer program runs on "
                          "the CPU backend, through a host callback elsewhere). Use xchip.jit(..., target='cpu') "
                          f"there, or `.lower(...).compile()` to inspect or estimate the '{target}' program")


def _aval_key(x) -> tuple:
    aval = jax.typeof(x)
    return aval.shape, aval.dtype, aval.weak_type


def _spec(x):
    """A tracer as the shape and type to trace xchip's program with."""
    if isinstance(x, jax.core.Tracer):
        aval = jax.typeof(x)
        return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)
    return x


def _as_operands(compiled, leaves: list) -> list:
    """The leaves as operands of the program's call: the compiled types, checked as an eager
    call checks them (Python scalars and weak types convert; other mismatches fail)."""
    traced = compiled._traced
    out = []
    for i, (leaf, aval, name) in enumerate(zip(leaves, traced.in_avals, traced.arg_names)):
        have = jax.typeof(leaf)
        if have.shape != aval.shape or (have.dtype != aval.dtype and not (
                have.weak_type or aval.weak_type or jax.dtypes.canonicalize_dtype(have.dtype) == aval.dtype)):
            from ..api import _describe
            raise ArgumentError(f"argument '{name}' (#{i}): expected {_describe(aval.shape, aval.dtype)}, "
                                f"got {_describe(have.shape, have.dtype)}")
        out.append(leaf if isinstance(leaf, jax.core.Tracer) and have.dtype == aval.dtype
                   else jnp.asarray(leaf, aval.dtype))
    return out


def call_function(xfn, args: tuple, kwargs: dict, static: tuple, leaves: list, in_tree) -> object:
    """`XchipFunction.__call__` where some argument is a tracer."""
    _check_target(xfn.target, f"xchip function '{xfn.__name__}'")
    signature = (static, in_tree, tuple(_aval_key(x) for x in leaves))
    specs = jax.tree_util.tree_map(_spec, (args, kwargs))
    compiled = xfn._compiled(signature, *specs[0], **specs[1])
    with _staged_lock:
        staged = _staged.get(compiled)
        if staged is None:
            staged = _staged[compiled] = StagedProgram(compiled, xfn.flat_function(static, in_tree), xfn)
    return jax.tree_util.tree_unflatten(compiled._traced.out_tree, staged(*_as_operands(compiled, leaves)))


def call_compiled(compiled, leaves: list) -> object:
    """`Compiled.__call__` (ahead of time) where some argument is a tracer: the forward
    program stages as it is (vmap runs it once per batch element); it cannot be
    differentiated, as xchip no longer has the function to compile its VJP from."""
    _check_target(compiled.target, f"compiled xchip program '{compiled._traced.fun_name}'")
    with _staged_lock:
        staged = _staged.get(compiled)
        if staged is None:
            staged = _staged[compiled] = StagedProgram(compiled, None, None)
    return jax.tree_util.tree_unflatten(compiled._traced.out_tree, staged(*_as_operands(compiled, leaves)))


_staged: dict = {}       # Compiled -> StagedProgram (both live as long as the process: see ffi.Program)
_staged_lock = threading.Lock()


def _inexact(dtype) -> bool:
    return jax.dtypes.issubdtype(dtype, jnp.inexact)


class StagedProgram:
    """One compiled program as a JAX-traceable function of its flat leaves."""

    def __init__(self, compiled, flat_fn: Callable | None, xfn):
        self.compiled = compiled
        self.program_id = ffi.register(compiled)
        self.out_types = [jax.ShapeDtypeStruct(v.type.shape, np.dtype(v.type.dtype.numpy))
                          for v in compiled.graph.outputs]
        self.flat_fn = flat_fn            # None: an AOT program (no VJP, sequential vmap)
        self._xfn = xfn                   # the xchip function it came from: options for derived ones
        self._vjp = None
        self._batched: dict[tuple[bool, ...], object] = {}
        self._diff_in = [i for i, a in enumerate(compiled._traced.in_avals) if _inexact(a.dtype)]
        self._diff_out = [j for j, t in enumerate(self.out_types) if _inexact(t.dtype)]
        self._call = self._differentiable(self._batchable(self._run))

    def __call__(self, *leaves) -> list:
        if not self.out_types:
            return []
        return list(self._call(*leaves))

    # -- the two routes ----------------------------------------------------------------

    def _run(self, *leaves):
        route = _forced_route
        if route == "ffi":
            return self._ffi(*leaves)
        if route == "callback":
            return self._callback(*leaves)
        # decided per platform when the outer program is lowered: only the branch for
        # its platform is emitted. Lowered for "xchip" (an xchip.jit function calling this
        # one, or the xchip platform), the function's own body goes in: xchip compiles it
        # with the rest.
        per_platform = {"cpu": self._ffi}
        if self.flat_fn is not None:
            per_platform[LOWERING_PLATFORM] = self.flat_fn
        return jax.lax.platform_dependent(*leaves, default=self._callback, **per_platform)

    @property
    def _vmap_method(self) -> str | None:
        # With a function, custom_vmap batches before the call is ever batched itself.
        return None if self.flat_fn is not None else "sequential"

    def _ffi(self, *leaves):
        return ffi.ffi_call(self.program_id, self.out_types, leaves, vmap_method=self._vmap_method)

    def _callback(self, *leaves):
        program = ffi.program(self.program_id)

        def on_host(*arrays):
            return program([np.asarray(a) for a in arrays])

        return jax.pure_callback(on_host, self.out_types, *leaves, vmap_method=self._vmap_method or "sequential")

    # -- vmap: recompile the batched function ------------------------------------------

    def _batchable(self, fn: Callable) -> Callable:
        if self.flat_fn is None:
            return fn
        batchable = jax.custom_batching.custom_vmap(fn)

        @batchable.def_vmap
        def rule(axis_size, in_batched, *leaves):
            outs = self._batched_function(tuple(in_batched))(*leaves)
            return list(outs), [True] * len(outs)

        return batchable

    def _batched_function(self, in_batched: tuple[bool, ...]):
        """xchip's compilation of vmap(fn) for batch axes at the front of the batched leaves
        (custom_vmap moves them there), every output batched at axis 0; cached."""
        xfn = self._batched.get(in_batched)
        if xfn is None:
            in_axes = tuple(0 if b else None for b in in_batched)
            xfn = self._batched[in_batched] = self._derived(jax.vmap(self.flat_fn, in_axes=in_axes, out_axes=0),
                                                            f"vmap_{self.flat_fn.__name__}")
        return xfn

    # -- grad: the VJP compiled by xchip -----------------------------------------------

    def _differentiable(self, fn: Callable) -> Callable:
        differentiable = jax.custom_vjp(fn)

        def fwd(*leaves):
            # through `differentiable`, not `fn`: forward mode over this (jax.hessian) then
            # meets the custom_vjp and fails with JAX's forward-mode error, not inside fn
            return differentiable(*leaves), leaves

        def bwd(leaves, cts):
            # Cotangents only for inexact inputs (None: zero for integer ones), from those
            # of inexact outputs (integer outputs' are float0 zeros).
            grads = [None] * len(leaves)
            if self._diff_in and self._diff_out:
                got = self._vjp_function()(list(leaves), [cts[j] for j in self._diff_out])
                for i, g in zip(self._diff_in, got):
                    grads[i] = g
            return tuple(grads)

        differentiable.defvjp(fwd, bwd)
        return differentiable

    def _vjp_function(self):
        if self.flat_fn is None:
            raise XchipError(f"cannot differentiate the ahead-of-time compiled xchip program "
                             f"'{self.compiled._traced.fun_name}': xchip compiles gradients from the function; "
                             "call the xchip.jit function inside jax.grad instead of its .lower(...).compile()")
        if self._vjp is None:
            flat_fn, diff_in, diff_out = self.flat_fn, self._diff_in, self._diff_out

            def vjp(primals, cts):
                def of_inexact(*d):
                    full = list(primals)
                    for i, v in zip(diff_in, d):
                        full[i] = v
                    outs = flat_fn(*full)
                    return [outs[j] for j in diff_out]

                _, pullback = jax.vjp(of_inexact, *[primals[i] for i in diff_in])
                return list(pullback(list(cts)))

            self._vjp = self._derived(vjp, f"vjp_{flat_fn.__name__}")
        return self._vjp

    def _derived(self, fn: Callable, name: str):
        from ..api import XchipFunction
        fn.__name__ = name
        return XchipFunction(fn, target=HOST, static_argnums=(), static_argnames=(), options=self._xfn.options,
                             autotune=self._xfn.autotune)
