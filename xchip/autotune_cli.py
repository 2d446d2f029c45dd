"""`xchip autotune FILE.py:NAME --args SPEC [--target cpu,h800] [--budget 5m | --budget 40]`:
tune a function's kernels and record every trial in the tuning database; print default vs
tuned per kernel.

The host (`cpu`) is tuned by measurement; every other target by the cost model alone
(`autotune/modeled.py`), stored as `modeled`, and the table says which is which.

Resumable: every trial is committed as it finishes, and earlier trials count towards the
budget, so a killed run started again continues the search where it stopped.

Progress goes to stderr: a live bar (rich) on a terminal, one line per trial otherwise
(logs, CI).
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
    p = sub.add_parser("autotune", help="tune a function's kernels (measured on the host, modeled for "
                                        "other targets), recording every trial in the tuning database")
    p.add_argument("function", help="FILE.py:NAME or module:NAME")
    p.add_argument("--args", required=True, help="argument types, e.g. 'f32[64,256],f32[256,512]'")
    p.add_argument("--target", default="cpu",
                   help="comma-separated targets: cpu is measured here, the others are tuned by the cost model")
    p.add_argument("--budget", type=parse_budget, default="32",
                   help="per kernel on the host: trials (40) or wall-clock time (90s, 5m); default 32 trials")
    p.add_argument("--kernels", default="", help="comma-separated kernel names (default: all with knobs)")
    p.add_argument("--db", help="tuning database (default $XCHIP_CACHE_DIR/tuning.db)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per candidate")
    p.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto",
                   help="live bar (rich) or one line per trial; auto: a bar on a terminal")
    p.set_defaults(handler=_cmd_autotune)


def _cmd_autotune(ns: argparse.Namespace) -> int:
    import jax

    from . import api
    from .argspec import parse_args_spec
    from .autotune.db import TuningDB
    from .cli import load_function
    from .targets import resolve_name

    names = [resolve_name(t) for t in ns.target.split(",") if t.strip()]
    fn = load_function(ns.function)
    specs = [jax.ShapeDtypeStruct(t.shape, t.dtype.numpy) for t in parse_args_spec(ns.args)]
    wanted = [k for k in ns.kernels.split(",") if k] or None
    db = TuningDB(ns.db)
    for target in names:
        lowered = api.jit(fn, target=target).lower(*specs)
        known = {g.name for g in lowered.kernel_graph.groups}
        if wanted and set(wanted) - known:
            raise XchipError(f"no kernel {', '.join(sorted(set(wanted) - known))} on {target}; "
                             f"kernels: {', '.join(sorted(known))}")
        how = "measured on the host" if target == "cpu" else "modeled (cost model only; nothing runs here)"
        print(f"{target}: tuning {len(wanted or known)} kernel(s) of {ns.function}, {how}; database {db.path}",
              file=sys.stderr)
        with _progress_reporter(ns.progress, ns.budget if target == "cpu" else None) as progress:
            if target == "cpu":
                from .autotune.tune import tune
                results = tune(lowered, db=db, budget=ns.budget, groups=wanted, timeout=ns.timeout,
                               progress=progress)
            else:
                from .autotune.modeled import tune_modeled
                results = tune_modeled(lowered, target, db=db, groups=wanted, progress=progress)
        print(f"# {target}")
        print("\n".join(format_table(results)))
    return 0


def format_table(results) -> list[str]:
    lines = [f"{'kernel':16s} {'default ms':>11s} {'tuned ms':>9s} {'speedup':>8s} {'trials':>7s}  {'source':8s} notes"]
    for r in results:
        default = _ms(r.default_s)
        if r.search is None:
            lines.append(f"{r.name:16s} {default:>11s} {'-':>9s} {'-':>8s} {'-':>7s}  {'-':8s} "
                         f"{r.note or 'nothing to tune'}")
            continue
        tuned = _ms(r.best.stats.median_s if r.best is not None else None)
        speedup = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
        notes = "; ".join(x for x in (r.search.stopped, r.note) if x)
        lines.append(f"{r.name:16s} {default:>11s} {tuned:>9s} {speedup:>8s} {len(r.search.trials):>7d}  "
                     f"{r.source:8s} {notes}")
    return lines


def _ms(seconds: float | None) -> str:
    """Milliseconds to four significant digits (modeled GPU kernels take microseconds)."""
    return "-" if seconds is None else f"{seconds * 1e3:.4g}"


class _Lines:
    """One line per trial on stderr."""

    def __init__(self, budget):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, name, result):
        best = result.best_time
        last = result.trials[-1] if result.trials else None
        if last is None:
            return
        if result.strategy.startswith("modeled"):
            print(f"  {name}: {len(result.trials)} configs modeled; best {best * 1e3:.4f} ms" if best is not None
                  else f"  {name}: {len(result.trials)} configs, none modeled", file=sys.stderr, flush=True)
            return
        outcome = f"{last.seconds * 1e3:.3f} ms" if last.seconds is not None else "failed"
        tail = f"; best {best * 1e3:.3f} ms" if best is not None else ""
        print(f"  {name}: trial {len(result.trials)}: {outcome}{tail}", file=sys.stderr, flush=True)


class _Bar:
    """A rich progress bar per kernel: trials done (of the budget), best so far."""

    def __init__(self, budget):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self.total = budget.trials if budget is not None else None
        self.bar = Progress(TextColumn("{task.description:16s}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[best]}"), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=False)
        self.tasks = {}

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, name, result):
        if name not in self.tasks:
            total = len(result.trials) if result.strategy.startswith("modeled") else self.total
            self.tasks[name] = self.bar.add_task(name, total=total, best="")
        best = result.best_time
        text = f"best {best * 1e3:.3f} ms" if best is not None else "no working config yet"
        self.bar.update(self.tasks[name], completed=len(result.trials), best=text)


def _progress_reporter(mode: str, budget):
    bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
    return (_Bar if bar else _Lines)(budget)
