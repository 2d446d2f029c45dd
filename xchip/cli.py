"""The `xchip` command line.

    xchip compile FILE.py:NAME --args 'f32[64,256],bf16[256,512]' --target cpu[,h800,...] [--run] [--estimate]
    xchip targets [show NAME | compare A B ...]
    xchip db [ls | show KEY_PREFIX | export FILE | import FILE | prune ...]
    xchip autotune FILE.py:NAME --args SPEC [--budget 40 | 5m] [--kernels NAME,...]
    xchip report FILE.py:NAME --args SPEC [--targets ...] [--out DIR] | --diff OLD.json NEW.json
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
from .autotune_cli import register_autotune_command
from .db_cli import register as register_db_command
from .report_cli import register as register_report_command
from .targets.commands import register as register_targets_command


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
    from .frontend.tracing import hide_frames_of
    from .kernels import format_kernel_table
    from .numerics import compare

    from .passes import format_stats
    from .targets import format_estimate

    if sys.argv and sys.argv[0]:
        hide_frames_of(os.path.abspath(sys.argv[0]))   # the `xchip` entry script is not user code

    fn = load_function(ns.function)
    types = parse_args_spec(ns.args)
    specs = [jax.ShapeDtypeStruct(t.shape, t.dtype.numpy) for t in types]
    status = 0
    for target in ns.target.split(","):
        options = api.pass_options(target, opt_level=ns.opt_level, fast_math=ns.fast_math, precision=ns.precision,
                                   debug=ns.debug, print_after=tuple(ns.print_after))
        lowered = api.XchipFunction(fn, target=target, static_argnums=(), static_argnames=(),
                                    options=options).lower(*specs)
        compiled = lowered.compile()
        if not ns.quiet:
            print(lowered.as_text())
        if ns.pass_stats:
            print(format_stats(lowered.pass_stats))
        for note in lowered.notes:
            print(f"note: {note}")
        print(f"target {compiled.target}: kernels run on: {compiled.runner} "
              f"(verification level: {compiled.verification_level})")
        print(format_kernel_table(compiled.kernels))
        plan = compiled.memory_plan
        if plan is not None:
            print(f"memory: {plan.summary()}")
        if ns.estimate:
            print(format_estimate(compiled.estimate()))
        if ns.emit_dir:
            _emit(compiled, ns.emit_dir, len(ns.target.split(",")) > 1)
        if ns.run and compiled.runner == "none":
            print(f"run: skipped on {compiled.target}: nothing executes there yet (use --target cpu)")
        elif ns.run:
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


def _emit(compiled, emit_dir: str, per_target: bool) -> None:
    """Machine code and a manifest for a GPU-family target."""
    artifacts = compiled.artifacts
    if artifacts is None:
        raise XchipError(f"--emit-dir: no machine code is generated for target '{compiled.target}' "
                         "(GPU-family targets: a800, l20, h800-sxm, h800-pcie, h20, dcu-z100; "
                         "dcu-k100 and dcu-k100-ai as source only)")
    path = artifacts.write(os.path.join(emit_dir, compiled.target) if per_target else emit_dir)
    print(f"kernels: {artifacts.summary()}; manifest {path}")
    for k in artifacts.kernels:
        a = k.artifact
        if a is not None:
            print(f"  {k.group:16s} {a.binary_kind} {a.elf_arch:7s} registers {a.registers}, spills {a.spills} B, "
                  f"shared {a.shared_bytes} B, tiles from {k.tiles_from} (compiled)")
        else:
            print(f"  {k.group:16s} {k.status}: {k.reason}")


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
    c.add_argument("-O", dest="opt_level", default="O2", choices=["O0", "O1", "O2", "O3"],
                   type=lambda s: s if s.startswith("O") else f"O{s}", help="optimization level (default O2)")
    c.add_argument("--fast-math", action="store_true", help="allow rewrites that change rounding")
    c.add_argument("--precision", help="run f32 matmuls/convs in this dtype (bf16, f16, f8e4m3fn, ...)")
    c.add_argument("--pass-stats", action="store_true", help="print each pass's time and statistics")
    c.add_argument("--print-after", action="append", default=[], metavar="PASS",
                   help="print the IR after this pass (repeatable)")
    c.add_argument("--debug", action="store_true", help="verify the IR after every pass")
    c.add_argument("--emit-dir", metavar="DIR",
                   help="GPU-family targets: write each kernel's .ptx/.cubin (.amdgcn/.hsaco) and manifest.json "
                        "(a subfolder per target when several are given)")
    c.add_argument("--estimate", action="store_true",
                   help="print the cost model's (modeled) time per kernel on each target")
    c.set_defaults(handler=_cmd_compile)
    register_targets_command(sub)
    register_db_command(sub)
    register_autotune_command(sub)
    register_report_command(sub)
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
