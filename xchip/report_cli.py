"""`xchip report`: kernel performance reports, and what changed between two of them.

    xchip report FILE.py:NAME --args SPEC [--targets cpu,a800,h800,h20,dcu-z100,ascend910b] [--out DIR]
    xchip report --example transformer[,mlp] [--dtype bf16] [--targets ...] [--out DIR]
    xchip report --diff OLD.json NEW.json [--threshold 0.1] [--fail-on-regression]
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import XchipError
from .targets.estimate import format_seconds

DEFAULT_TARGETS = "cpu,a800,h800,h20,dcu-z100,ascend910b"


def _programs(ns: argparse.Namespace) -> list:
    import jax

    from .report import Program
    if ns.example:
        sys.path.insert(0, os.getcwd())
        try:
            from examples.registry import get
        except ModuleNotFoundError:
            raise XchipError("--example: the example models are in the repository's examples/ folder; "
                             "run from the repository root") from None
        finally:
            sys.path.remove(os.getcwd())
        import numpy as np
        programs = []
        for name in ns.example.split(","):
            try:
                ex = get(name)
            except KeyError as e:
                raise XchipError(e.args[0]) from None
            args = ex.make_args(np.random.default_rng(ns.seed), ns.dtype)
            programs.append(Program(f"{name} ({ns.dtype})", ex.fn, args, source=f"examples/{name}.py",
                                    rtol=ex.rtol[ns.dtype], atol=ex.atol[ns.dtype], seed=ns.seed))
        return programs
    if not ns.function or not ns.args:
        raise XchipError("give FILE.py:NAME with --args SPEC, or --example NAME, or --diff OLD NEW")
    from .argspec import parse_args_spec
    from .cli import load_function
    fn = load_function(ns.function)
    specs = tuple(jax.ShapeDtypeStruct(t.shape, t.dtype.numpy) for t in parse_args_spec(ns.args))
    return [Program(ns.function.rsplit(":", 1)[-1], fn, specs, source=ns.function, seed=ns.seed)]


def _cmd_report(ns: argparse.Namespace) -> int:
    from . import report
    if ns.diff:
        old, new = (report.load(p) for p in ns.diff)
        changes = report.diff(old, new, ns.threshold)
        print(report.format_diff(changes, ns.threshold))
        return 1 if ns.fail_on_regression and any(c.status == "regression" for c in changes) else 0
    programs = _programs(ns)
    data = report.collect(programs, [t for t in ns.targets.split(",") if t],
                          progress=lambda m: print(f"xchip report: {m}", file=sys.stderr, flush=True))
    paths = report.write(data, ns.out)
    for p in data["programs"]:
        for t in p["targets"]:
            tm = t["time"]
            when = (f"{'>= ' if tm['lower_bound'] else ''}{format_seconds(tm['seconds'])}" if tm['seconds'] else "unknown")
            print(f"{p['name']:20s} {t['target']:12s} {when:>12s} {tm['source']:8s} "
                  f"(verification level: {t['verification_level']})")
    print(f"report: {paths['html']}, {paths['md'].name}, {paths['json'].name}")
    checks = [t["check"]["ok"] for p in data["programs"] for t in p["targets"] if "check" in t]
    return 0 if all(checks) else 1


def register(sub) -> None:
    r = sub.add_parser("report", help="kernel performance report (HTML, Markdown, JSON) across targets, "
                                      "or --diff of two reports")
    r.add_argument("function", nargs="?", help="FILE.py:NAME or module:NAME")
    r.add_argument("--args", help="argument types, e.g. 'f32[64,256],bf16[256,512]' (random values)")
    r.add_argument("--example", metavar="NAME[,NAME]", help="example models instead (mlp, transformer, cnn, scan_rnn)")
    r.add_argument("--dtype", default="f32", choices=["f32", "bf16"], help="--example's dtype (default f32)")
    r.add_argument("--targets", default=DEFAULT_TARGETS, help=f"comma-separated (default {DEFAULT_TARGETS})")
    r.add_argument("--out", default="out/report", help="folder for report.html, report.md, report.json")
    r.add_argument("--seed", type=int, default=0, help="seed for the random inputs (default 0)")
    r.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"), help="compare two report.json files per kernel")
    r.add_argument("--threshold", type=float, default=0.10,
                   help="--diff: a change counts beyond this fraction (default 0.10)")
    r.add_argument("--fail-on-regression", action="store_true", help="--diff: exit 1 if any kernel got slower")
    r.set_defaults(handler=_cmd_report)
