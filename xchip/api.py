"""The public API: `xchip.jit` (mirrors `jax.jit`), `import_stablehlo`, `run`.

This module and the CLI are the only places that wire the pipeline's stages together:
trace (frontend) -> import (frontend) -> optimize (passes) -> run on the target. Until the
backends arrive only the host CPU executes programs, on the reference executor; other
targets compile to kernel graphs for the cost model, and say so when called.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import numpy as np

from .errors import ArgumentError, TargetError, XchipError
from .frontend.stablehlo_import import import_stablehlo
from .frontend.tracing import TracedProgram, trace
from .ir import Graph, dtypes, print_graph
from .kernels import KernelRecord, kernel_records
from .passes import PassOptions, PipelineResult, optimize
from .runtime import reference
from . import targets


HOST = "cpu"


def _runner(target: str) -> str:
    """What executes kernels on `target` (a canonical name): "compiled" (the host's CPU
    backend: TVM kernels, with the reference executor for groups it cannot lower) or
    "none" (other targets compile to kernel graphs that the cost model can estimate, and
    say so when called)."""
    return "compiled" if target == HOST else "none"


def _verification_level(target: str) -> str:
    # The host's level is known without detecting and measuring it (which `get` would do).
    return "executed" if target == HOST else targets.get(target).verification_level


def target_capabilities(target: str):
    return targets.capabilities_of(target)


def pass_options(target: str, *, opt_level: str = "O2", fast_math: bool = False, precision: str | None = None,
                 debug: bool = False, **more) -> PassOptions:
    """The pass pipeline's options for `target`, as `jit` takes them (its defaults too)."""
    return PassOptions(level=opt_level, fast_math=fast_math, precision=precision, debug=debug,
                       capabilities=target_capabilities(target), **more)


def run(graph: Graph, *arrays, target: str = "cpu") -> list[np.ndarray]:
    """Run an xchip graph, as it is, on the numpy reference executor (the oracle every
    backend is tested against) with numpy (or array-like) inputs."""
    _check_runs(targets.resolve_name(target))
    return reference.evaluate(graph, [np.asarray(a) for a in arrays])


def _check_runs(target: str) -> None:
    if _runner(target) == "none":
        raise TargetError(f"nothing executes on target '{target}' yet (verification level: "
                          f"{_verification_level(target)}): run on target 'cpu', or estimate with the cost model "
                          f"(`xchip compile ... --target {target} --estimate`)")


def _describe(shape, dtype) -> str:
    try:
        name = dtypes.from_numpy(dtype).name
    except KeyError:
        name = str(dtype)
    return f"{name}[{','.join(str(s) for s in shape)}]"


def host_program(optimized: PipelineResult):
    """The CPU backend's executable for an optimized program: call it with a list of numpy
    arrays, get a list back. Kernels use the tuning database's config for this host where it
    has one."""
    from .autotune.tune import tuned_configs
    from .backends.cpu import CpuProgram
    return CpuProgram(optimized.kernel_graph, optimized.memory_plan, targets.get(HOST),
                      configs=tuned_configs(optimized.kernel_graph))


class Compiled:
    """A program compiled for one target and one input signature. Call it with the
    dynamic arguments (static ones were fixed at lowering, as with `jax.jit`)."""

    def __init__(self, optimized: PipelineResult, traced: TracedProgram, target: str):
        self.graph = optimized.graph
        self.kernel_graph = optimized.kernel_graph
        self.memory_plan = optimized.memory_plan
        self.target = target
        self._traced = traced
        self._expected_dtypes = [np.dtype(aval.dtype) for aval in traced.in_avals]
        self._program = None
        self._artifacts = None
        self._origin = None           # (XchipFunction, static arguments) it was compiled from
        if self.runner == "compiled":
            self._program = host_program(optimized)
            backends = {k.group.name: k.backend for k in self._program.kernels}
        else:
            backends = {g.name: "none" for g in self.kernel_graph.groups}
        self.kernels: list[KernelRecord] = kernel_records(self.kernel_graph, backends)

    @property
    def runner(self) -> str:
        """What executes the kernels: "compiled" (each kernel's `backend` says by what) or
        "none"."""
        return _runner(self.target)

    @property
    def verification_level(self) -> str:
        return _verification_level(self.target)

    def estimate(self, target: str | None = None):
        """The cost model's (modeled, not measured) time for every kernel on `target`
        (default: the compiled target), with the tile configs `xchip autotune --target`
        stored for it where the tuning database has them (else ideal tiling)."""
        target = targets.resolve_name(target or self.target)
        if target == HOST:
            return targets.estimate_kernel_graph(self.kernel_graph, target)
        from .backends.triton.program import supports, tile_configs, tile_text
        if supports(target):
            # the tiles the Triton backend compiles with: modeled tunings, else the cost model's pick
            chosen = {name: c for name, c in tile_configs(self.kernel_graph, target).items() if c[0]}
        else:
            from .autotune.modeled import modeled_configs
            chosen = {name: (c, "tuning database (modeled)")
                      for name, c in modeled_configs(self.kernel_graph, target).items()}
        estimate = targets.estimate_kernel_graph(self.kernel_graph, target, {n: c for n, (c, _) in chosen.items()})
        for name, (c, source) in chosen.items():
            estimate.notes.insert(0, f"{name}: tile {tile_text(c)}, {c.get('stages', 3)} stages from the {source}")
        return estimate

    def as_text(self) -> str:
        return print_graph(self.graph, self.kernel_graph.annotations())

    def report(self, path, *, targets: Sequence[str] = (), seed: int = 0) -> dict:
        """Write the kernel performance report of this program (report.html, report.md,
        report.json in folder `path`; docs/report.md) on its target and on `targets`, with
        fresh random inputs of its argument types (`seed`): measured on the host CPU,
        compiled and modeled elsewhere. Returns the paths written."""
        from .report import Program, collect, write
        if self._origin is None:
            raise XchipError("report() needs the function this program was compiled from: compile it with "
                             "xchip.jit(fn).lower(...).compile()")
        xfn, static = self._origin
        specs = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in self._traced.in_avals)
        o = xfn.options
        program = Program(self._traced.fun_name, xfn.flat_function(static, self._traced.in_tree), specs, seed=seed,
                          jit_options=dict(opt_level=o.level, fast_math=o.fast_math, precision=o.precision))
        return write(collect([program], list(dict.fromkeys([self.target, *targets]))), path)

    @property
    def artifacts(self):
        """Machine code for a GPU-family target (`backends/triton`): per kernel the binary
        (cubin / hsaco) with its registers, spills and shared memory, or why it was not
        generated; compiled on first access. None for targets without a Triton backend."""
        if self._artifacts is None:
            from .backends.triton.program import compile_graph, supports
            if not supports(self.target):
                return None
            self._artifacts = compile_graph(self.kernel_graph, self.target)
        return self._artifacts

    def _flat_inputs(self, leaves: list) -> list[np.ndarray]:
        flat = []
        for i, (leaf, aval, name, expected) in enumerate(zip(leaves, self._traced.in_avals, self._traced.arg_names,
                                                             self._expected_dtypes)):
            if type(leaf) is np.ndarray and leaf.dtype == expected and leaf.shape == aval.shape:
                flat.append(leaf)     # the common case, checked in full
                continue
            _reject_tracer(leaf, name)
            a = np.asarray(leaf)
            if a.shape != aval.shape:
                raise ArgumentError(f"argument '{name}' (#{i}): expected {_describe(aval.shape, expected)}, "
                                    f"got {_describe(a.shape, a.dtype)}")
            if a.dtype != expected:
                # Python scalars and JAX's x64 canonicalization (f64 -> f32 when x64 is off)
                # convert silently in jax.jit too; anything else is a real mismatch.
                canonical = np.dtype(jax.dtypes.canonicalize_dtype(a.dtype))
                if not (aval.weak_type or canonical == expected):
                    raise ArgumentError(f"argument '{name}' (#{i}): expected {_describe(aval.shape, expected)}, "
                                        f"got {_describe(a.shape, a.dtype)}")
                a = a.astype(expected)
            flat.append(a)
        return flat

    def __call__(self, *args, **kwargs):
        """Run on concrete arrays; with JAX tracers (inside jax.jit/vmap), stage the program
        into the outer JAX program (see docs/jax.md; not differentiable: xchip compiles
        gradients from the function, so differentiate the `xchip.jit` function instead)."""
        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        if tree != self._traced.in_tree:
            raise ArgumentError(f"{self._traced.fun_name} was compiled for arguments {self._traced.in_tree}, "
                                f"called with {tree}")
        return self._call_flat(leaves)

    def _call_flat(self, leaves: list):
        try:
            inputs = self._flat_inputs(leaves)
        except _TracerArgument:
            from .interop.staging import call_compiled
            return call_compiled(self, leaves)
        _check_runs(self.target)
        # numpy arrays in host memory, not jax.Arrays: wrapping each costs a device_put
        # (~100 us), and every jax function takes numpy arrays as they are.
        return jax.tree_util.tree_unflatten(self._traced.out_tree, self._program(inputs))


class Lowered:
    """A traced, imported and optimized program, before code generation."""

    def __init__(self, traced: TracedProgram, optimized: PipelineResult, target: str):
        self._traced = traced
        self._optimized = optimized
        self.graph = optimized.graph
        self.kernel_graph = optimized.kernel_graph
        self.pass_stats = optimized.stats
        self.notes = optimized.notes
        self.target = target
        self._origin = None           # (XchipFunction, static arguments) it was lowered from

    def as_text(self) -> str:
        """The optimized program in xchip IR, each op marked with its kernel group."""
        return print_graph(self.graph, self.kernel_graph.annotations())

    def stablehlo(self) -> str:
        """The StableHLO the program was imported from (with locations)."""
        return self._traced.stablehlo

    def compile(self) -> Compiled:
        compiled = Compiled(self._optimized, self._traced, self.target)
        compiled._origin = self._origin
        return compiled


class XchipFunction:
    """What `xchip.jit` returns: call it like the function, or `.lower(...)` it."""

    def __init__(self, fn: Callable, *, target: str, static_argnums: Sequence[int],
                 static_argnames: Sequence[str], options: PassOptions, autotune=None):
        self.fn = fn
        self.target = targets.resolve_name(target)  # unknown names fail here, with the closest names
        if autotune is not None and self.target != HOST:
            raise XchipError(f"autotune=... measures on the host, and target '{self.target}' does not run here; "
                             f"tune it by the cost model with `xchip autotune FILE.py:NAME --args ... "
                             f"--target {self.target}`")
        self.autotune = autotune                   # None, or the search budget per untuned kernel
        self.static_argnums = tuple(static_argnums)
        self.static_argnames = tuple(static_argnames)
        self.options = options
        self._cache: dict[Any, Compiled] = {}
        functools.update_wrapper(self, fn)

    def _statics(self, args: tuple, kwargs: dict) -> tuple[tuple, dict, tuple]:
        if not (self.static_argnums or self.static_argnames):
            return args, kwargs, _NO_STATICS
        n = len(args)
        positions = {i % n for i in self.static_argnums if -n <= i < n}
        dyn_args = tuple(a for i, a in enumerate(args) if i not in positions)
        dyn_kwargs = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
        static = (tuple((i, args[i]) for i in sorted(positions)),
                  tuple(sorted((k, v) for k, v in kwargs.items() if k in self.static_argnames)))
        try:
            hash(static)
        except TypeError as e:
            raise ArgumentError(f"static arguments must be hashable: {e}") from None
        return dyn_args, dyn_kwargs, static

    def lower(self, *args, **kwargs) -> Lowered:
        traced = trace(self.fn, args, kwargs, static_argnums=self.static_argnums,
                       static_argnames=self.static_argnames)
        graph = import_stablehlo(traced.stablehlo)  # verified by the importer
        lowered = Lowered(traced, optimize(graph, self.options), self.target)
        lowered._origin = (self, self._statics(args, kwargs)[2])
        return lowered

    def flat_function(self, static: tuple, in_tree) -> Callable:
        """`fn` as a function of the flat dynamic leaves (in `in_tree`'s order) returning its
        flat outputs, with the static arguments `static` put back where they were."""
        static_positions, static_kwargs = static

        def flat(*leaves):
            dyn_args, dyn_kwargs = jax.tree_util.tree_unflatten(in_tree, leaves)
            args, dyn = [], iter(dyn_args)
            positions = dict(static_positions)
            for i in range(len(dyn_args) + len(positions)):
                args.append(positions[i] if i in positions else next(dyn))
            return jax.tree_util.tree_leaves(self.fn(*args, **dyn_kwargs, **dict(static_kwargs)))

        flat.__name__ = self.__name__
        return flat

    def __call__(self, *args, **kwargs):
        dyn_args, dyn_kwargs, static = self._statics(args, kwargs)
        leaves, tree = jax.tree_util.tree_flatten((dyn_args, dyn_kwargs))
        try:
            signature = (static, tree, tuple(_aval_key(x) for x in leaves))
        except _TracerArgument:
            # inside jax.jit/grad/vmap: the program becomes an op of the outer JAX program
            from .interop.staging import call_function
            return call_function(self, args, kwargs, static, leaves, tree)
        compiled = self._cache.get(signature) or self._compiled(signature, *args, **kwargs)
        return compiled._call_flat(leaves)   # the signature fixed the tree

    def _compiled(self, signature: tuple, *args, **kwargs) -> Compiled:
        """The cached program for `signature` (eager and staged calls share it), compiled now
        if needed from `args` (arrays or `jax.ShapeDtypeStruct`s)."""
        compiled = self._cache.get(signature)
        if compiled is None:
            lowered = self.lower(*args, **kwargs)
            if self.autotune is not None:
                _tune_missing(lowered, self.autotune)
            compiled = lowered.compile()
            self._cache[signature] = compiled
        return compiled


def _tune_missing(lowered: Lowered, budget) -> None:
    """Tune, on the host, the kernels the tuning database has no measured result for (a hit
    costs nothing), one progress line per kernel on stderr: tuning takes seconds per trial."""
    import sys

    from .autotune.db import TuningDB
    from .autotune.tune import kernel_key, host_identity, tune
    db = TuningDB()
    sku, versions = host_identity()
    missing = [g.name for g in lowered.kernel_graph.groups if db.best(kernel_key(g), sku, versions) is None]
    if not missing:
        return
    print(f"xchip: autotuning {len(missing)} kernel(s) of {lowered._traced.fun_name} on the host "
          f"(results kept in {db.path})", file=sys.stderr, flush=True)
    for r in tune(lowered, db=db, budget=budget, groups=missing, time_untunable=False):
        if r.search is not None and r.speedup is not None:
            print(f"xchip:   {r.name}: {r.default_s * 1e3:.3f} -> {r.best.stats.median_s * 1e3:.3f} ms "
                  f"({r.speedup:.2f}x, {len(r.search.trials)} trials)", file=sys.stderr, flush=True)


class _TracerArgument(XchipError):
    """An argument is a JAX tracer: the call stages into the outer JAX program instead of
    running now (callers catch this; it is never meant to reach the user)."""


def _reject_tracer(x, name: str | None) -> None:
    if isinstance(x, jax.core.Tracer):
        who = f"argument '{name}'" if name else "an argument"
        raise _TracerArgument(f"{who} is a JAX tracer")


_NO_STATICS = ((), ())


def _aval_key(x) -> tuple:
    if type(x) is np.ndarray:   # the common case, without building an abstract value
        return x.shape, x.dtype, False
    _reject_tracer(x, None)
    aval = jax.typeof(x)
    return aval.shape, aval.dtype, aval.weak_type


def jit(fn: Callable | None = None, *, target: str = "cpu", static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (), opt_level: str = "O2", fast_math: bool = False,
        precision: str | None = None, debug: bool = False, autotune=False) -> XchipFunction:
    """Compile `fn` with xchip for `target`, like `jax.jit`: pytrees in and out, one
    compilation per input signature, `.lower(*args).compile()` ahead of time.

    `opt_level` picks the pass pipeline (O0-O3); `fast_math` allows rewrites that change
    rounding; `precision="bf16"` (or "f16", "f8e4m3fn", ...) runs f32 matmuls and convolutions
    in that dtype with f32 accumulation where the target has it, and fails where it has not;
    `debug` verifies the IR after every pass.

    `autotune=True` (or a number of trials, or an `xchip.autotune.search.Budget`): at the
    first call with a new signature, kernels the tuning database has no result for on this
    host are tuned first (measured, about a second per trial; 16 trials per kernel for
    `True`), and every later compile finds them there. Without it, compile uses the
    database's results where it has them and the heuristic defaults elsewhere."""
    if isinstance(static_argnums, int):
        static_argnums = (static_argnums,)
    if isinstance(static_argnames, str):
        static_argnames = (static_argnames,)
    if fn is None:
        return functools.partial(jit, target=target, static_argnums=static_argnums, static_argnames=static_argnames,
                                 opt_level=opt_level, fast_math=fast_math, precision=precision, debug=debug,
                                 autotune=autotune)
    options = pass_options(target, opt_level=opt_level, fast_math=fast_math, precision=precision, debug=debug)
    return XchipFunction(fn, target=target, static_argnums=static_argnums, static_argnames=static_argnames,
                         options=options, autotune=_budget(autotune))


def _budget(autotune):
    """jit's `autotune` argument as a search budget (None: no tuning)."""
    from .autotune.search import Budget
    if autotune is False or autotune is None:
        return None
    if autotune is True:
        return Budget(trials=16)
    if isinstance(autotune, Budget):
        return autotune
    if isinstance(autotune, int) and not isinstance(autotune, bool) and autotune > 0:
        return Budget(trials=autotune)
    raise XchipError(f"autotune must be True, False, a positive number of trials or a Budget, got {autotune!r}")
