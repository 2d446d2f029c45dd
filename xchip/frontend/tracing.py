"""From a JAX function and example arguments to portable StableHLO text.

Lowering for the platform name "xchip" (a name JAX does not know) gives StableHLO without
the CPU-specific custom calls (LAPACK, ...) that lowering for "cpu" would insert.
`keep_unused=True` keeps one `@main` parameter per dynamic leaf, so the flattened call
arguments and the graph inputs line up one to one.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax

from ..errors import ArgumentError, XchipError

LOWERING_PLATFORM = "xchip"


def hide_frames_of(path: str) -> None:
    """JAX attributes ops it creates outside user code (constants, the jit call) to the
    nearest frame that is not JAX's own; without this that is xchip's tracing code (or the
    `xchip` command's entry script), and locations would point into xchip instead of at
    the user's call."""
    try:
        from jax._src import source_info_util
    except ImportError:  # private module moved: locations get less precise, nothing breaks
        return
    source_info_util.register_exclusion(path)


hide_frames_of(os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep)


@dataclass(frozen=True)
class TracedProgram:
    stablehlo: str            # text with locations (debug info)
    in_tree: Any              # pytree of the dynamic (args, kwargs)
    out_tree: Any
    in_avals: tuple           # flat jax ShapedArrays of the dynamic leaves
    arg_names: tuple[str, ...]  # one per flat input: "x", "params['w1']"
    fun_name: str


def _static_positions(static_argnums: Sequence[int], nargs: int) -> set[int]:
    return {i % nargs if nargs else i for i in static_argnums if -nargs <= i < nargs}


def dynamic_arg_names(fn: Callable, args: tuple, kwargs: dict, static_argnums: Sequence[int],
                      static_argnames: Sequence[str]) -> list[str]:
    """Readable names of the flat dynamic leaves, for error messages: `x`, `params['w1']`."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    statics = _static_positions(static_argnums, len(args))
    names = []
    for i, a in enumerate(args):
        if i in statics:
            continue
        base = params[i] if i < len(params) and not params[i].startswith("*") else f"args[{i}]"
        for path, _ in jax.tree_util.tree_flatten_with_path(a)[0]:
            names.append(base + jax.tree_util.keystr(path))
    for k in sorted(kwargs):
        if k in static_argnames:
            continue
        for path, _ in jax.tree_util.tree_flatten_with_path(kwargs[k])[0]:
            names.append(k + jax.tree_util.keystr(path))
    return names


def trace(fn: Callable, args: tuple, kwargs: dict, *, static_argnums: Sequence[int] = (),
          static_argnames: Sequence[str] = ()) -> TracedProgram:
    """Trace `fn` on `args`/`kwargs` (arrays or `jax.ShapeDtypeStruct`s) and lower it."""
    jitted = jax.jit(fn, static_argnums=tuple(static_argnums), static_argnames=tuple(static_argnames),
                     keep_unused=True)
    try:
        traced = jitted.trace(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"cannot trace {getattr(fn, '__name__', fn)!s} with these arguments: {e}") from e
    lowered = traced.lower(lowering_platforms=(LOWERING_PLATFORM,))
    const_args = getattr(lowered._lowering, "const_args", [])
    if const_args:
        # JAX can hoist large closed-over constants into extra arguments; xchip's graphs
        # take only the user's arguments, so this must be handled before it can be allowed.
        raise XchipError(f"JAX hoisted {len(const_args)} constants out of the program; "
                         "pass them as arguments instead of closing over them")
    return TracedProgram(
        stablehlo=lowered.as_text(debug_info=True),
        in_tree=lowered.in_tree,
        out_tree=lowered.out_tree,
        in_avals=tuple(jax.tree_util.tree_leaves(traced.in_avals)),
        arg_names=tuple(dynamic_arg_names(fn, args, kwargs, static_argnums, static_argnames)),
        fun_name=getattr(fn, "__name__", "fn"),
    )
