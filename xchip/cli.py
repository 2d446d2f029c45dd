"""The `xchip` command line.

    xchip compile FILE.py:NAME --args 'f32[64,256],bf16[256,512]' --target cpu [--run]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import XchipError


def _module_from_file(path: Path):
    """Import a file as the module it is: `examples/mlp.py` inside the package `examples`
    becomes `examples.mlp` (so its relative imports work), a lone script its own module."""
    path = path.resolve()
    parts = [path.stem]
    root = path.parent
    while (root / "__init__.py").exists():
        parts.insert(0, root.name)
        root = root.parent
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(".".join(parts))
    finally:
        sys.path.remove(str(root))


def load_function(ref: str) -> Callable:
    """`path/to/model.py:NAME` or `package.module:NAME` -> the callable."""
    if ":" not in ref:
        raise XchipError(f"expected FILE.py:NAME or module:NAME, got {ref!r}")
    where, name = ref.rsplit(":", 1)
    if where.endswith(".py"):
        if not Path(where).is_file():
            raise XchipError(f"no such file: {where}")
        module = _module_from_file(Path(where))
    else:
        # Like `python -m`, a module is looked up from the current directory too.
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            raise XchipError(f"cannot import module '{where}': {e}") from None
        finally:
            sys.path.remove(os.getcwd())
    try:
        fn = getattr(module, name)
    except AttributeError:
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise XchipError(f"{where} has no '{name}'; callables there: {', '.join(public) or 'none'}") from None
    from .api import XchipFunction
    return fn.fn if isinstance(fn, XchipFunction) else fn


def _cmd_compile(ns: argparse.Namespace) -> int:
    import jax

    from . import api
    from .argspec import parse_args_spec, random_arrays
    from .kernels import format_kernel_table
    from .numerics import compare

    fn = load_function(ns.function)
    types = parse_args_spec(ns.args)
    specs = [jax.ShapeDtypeStruct(t.shape, t.dtype.numpy) for t in types]
    status = 0
    for target in ns.target.split(","):
        info = api.target_info(target)
        lowered = api.jit(fn, target=target).lower(*specs)
        compiled = lowered.compile()
        if not ns.quiet:
            print(lowered.as_text())
        print(f"target {target}: kernels run on the {info.backend} backend "
              f"(verification level: {info.level})")
        print(format_kernel_table(compiled.kernels))
        if ns.run:
            seed = ns.seed if ns.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
            inputs = random_arrays(types, np.random.default_rng(seed))
            got = jax.tree_util.tree_leaves(compiled(*inputs))
            want = jax.tree_util.tree_leaves(jax.jit(fn)(*inputs))
            print(f"run on random inputs (seed {seed}) against jax.jit on the CPU:")
            for i, (g, w) in enumerate(zip(got, want)):
                c = compare(np.asarray(g), np.asarray(w))
                print(f"  output {i}: {'ok' if c.ok else 'MISMATCH'}: {c}")
                status |= 0 if c.ok else 1
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xchip", description="xchip: one JAX model, many chips")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="compile a JAX function, print its IR and kernels")
    c.add_argument("function", help="FILE.py:NAME or module:NAME")
    c.add_argument("--args", required=True, help="argument types, e.g. 'f32[64,256],bf16[256,512]'")
    c.add_argument("--target", default="cpu", help="target name (comma-separated for several)")
    c.add_argument("--run", action="store_true", help="run on random inputs and compare with jax.jit")
    c.add_argument("--seed", type=int, help="seed for --run's random inputs (default: fresh)")
    c.add_argument("--quiet", "-q", action="store_true", help="do not print the IR")
    c.set_defaults(handler=_cmd_compile)
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.handler(ns)
    except XchipError as e:
        print(f"xchip: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
