"""`xchip autotune FILE.py:NAME --args SPEC [--budget 5m | --budget 40]`: tune a function's
kernels on the host, record every trial in the tuning database, print default vs tuned.

Resumable: every trial is committed as it finishes, so a killed run started again skips the
configs it already measured and continues the search.
"""

from __future__ import annotations

import argparse
import re
import sys

from .errors import XchipError


def parse_budget(text: str):
    """'40' (trials), '90s', '5m', '1h' (wall-clock seconds per kernel)."""
    from .autotune.search import Budget
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError("a number of trials (40) or a time (90s, 5m, 1h)")
    value, unit = float(m.group(1)), m.group(2)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    if not unit:
        return Budget(trials=int(value))
    return Budget(trials=None, seconds=value * {"s": 1, "m": 60, "h": 3600}[unit])


def register_autotune_command(sub) -> None:
    p = sub.add_parser("autotune", help="tune a function's kernels on the host (measured), "
                                        "recording every trial in the tuning database")
    p.add_argument("function", help="FILE.py:NAME or module:NAME")
    p.add_argument("--args", required=True, help="argument types, e.g. 'f32[64,256],f32[256,512]'")
    p.add_argument("--target", default="cpu", help="only cpu (the host) is measured today")
    p.add_argument("--budget", type=parse_budget, default="32",
                   help="per kernel: trials (40) or wall-clock time (90s, 5m); default 32 trials")
    p.add_argument("--kernels", default="", help="comma-separated kernel names (default: all with knobs)")
    p.add_argument("--db", help="tuning database (default $XCHIP_CACHE_DIR/tuning.db)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per candidate")
    p.set_defaults(handler=_cmd_autotune)


def _cmd_autotune(ns: argparse.Namespace) -> int:
    import jax

    from . import api
    from .argspec import parse_args_spec
    from .autotune.db import TuningDB
    from .autotune.tune import tune
    from .cli import load_function
    from .targets import resolve_name

    if resolve_name(ns.target) != "cpu":
        raise XchipError(f"autotune measures on the host only; target {ns.target!r} is not executed here "
                         "(tuning by the cost model alone is not available yet)")
    fn = load_function(ns.function)
    specs = [jax.ShapeDtypeStruct(t.shape, t.dtype.numpy) for t in parse_args_spec(ns.args)]
    lowered = api.jit(fn, target="cpu").lower(*specs)
    wanted = [k for k in ns.kernels.split(",") if k] or None
    known = {g.name for g in lowered.kernel_graph.groups}
    if wanted and set(wanted) - known:
        raise XchipError(f"no kernel {', '.join(sorted(set(wanted) - known))}; kernels: {', '.join(sorted(known))}")
    db = TuningDB(ns.db)
    print(f"tuning {len(wanted or known)} kernel(s) of {ns.function} on the host; database {db.path}",
          file=sys.stderr)

    def progress(name, result):
        best = result.best_time
        last = result.trials[-1]
        outcome = f"{last.seconds * 1e3:.3f} ms" if last.seconds is not None else "failed"
        print(f"  {name}: trial {len(result.trials)}: {outcome}; best {best * 1e3:.3f} ms" if best is not None
              else f"  {name}: trial {len(result.trials)}: {outcome}", file=sys.stderr, flush=True)

    results = tune(lowered, db=db, budget=ns.budget, groups=wanted, timeout=ns.timeout, progress=progress)
    print(f"{'kernel':16s} {'default ms':>11s} {'tuned ms':>9s} {'speedup':>8s} {'trials':>7s}  source  stopped")
    for r in results:
        default = f"{r.default_s * 1e3:.3f}" if r.default_s is not None else "failed"
        if r.search is None:
            print(f"{r.name:16s} {default:>11s} {'-':>9s} {'-':>8s} {'-':>7s}  -       nothing to tune")
            continue
        tuned = f"{r.best.stats.median_s * 1e3:.3f}" if r.best is not None else "-"
        speedup = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
        print(f"{r.name:16s} {default:>11s} {tuned:>9s} {speedup:>8s} {len(r.search.trials):>7d}  measured "
              f"{r.search.stopped}")
    return 0
