"""xchip.jit(target="cpu") against jax.jit (XLA:CPU), side by side, on this host.

    python benchmarks/cpu_vs_xla.py                       # everything, 3 rounds (minutes)
    python benchmarks/cpu_vs_xla.py --only gemm512,gemm1024 --rounds 5
    python benchmarks/cpu_vs_xla.py --engines xla --json out/xla.json
    python benchmarks/cpu_vs_xla.py --list
    python benchmarks/cpu_vs_xla.py --tune 16             # autotune xchip's kernels first, then time

Each engine runs in its own worker process (this script with `--worker ENGINE`), one per
engine per round, the engines' order flipping every round. See benchmarks/README.md for the
method; progress goes to stderr, the report to stdout, ending with the line
`geometric-mean ratio (XLA/xchip) over N workloads: X.XX` (> 1: xchip faster).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: make `benchmarks`, `examples`, `xchip` importable
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402


def _engines(text: str) -> list[str]:
    names = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in names if e not in harness.ENGINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {', '.join(unknown) or '(none)'}; "
                                         f"known: {', '.join(harness.ENGINES)}")
    return list(dict.fromkeys(names))


def _peak(text: str) -> str | float:
    if text == "host":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number of GFLOP/s, or 'host'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="xchip.jit(target='cpu') vs jax.jit (XLA:CPU): measured, "
                                            "one process per engine per round",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", metavar="NAME[,NAME]", default="", help="workloads to run (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--rounds", type=_positive(int), default=3, help="rounds; each runs one process per engine")
    p.add_argument("--seconds", type=_positive(float), default=0.5,
                   help="timed seconds per workload per engine per round (adaptive call count)")
    p.add_argument("--min-calls", type=_positive(int), default=5, help="timed calls at least, however slow")
    p.add_argument("--engines", type=_engines, default=["xla", "xchip"], help="comma-separated: xla,xchip")
    p.add_argument("--order", choices=("alternate", "fixed", "random"), default="alternate",
                   help="engine order per round: alternate flips it every round")
    p.add_argument("--seed", type=int, default=0, help="seed for --order random")
    p.add_argument("--peak-gflops", type=_peak, default=None,
                   help=f"fp32 peak for %%peak (default {harness.DEFAULT_PEAK_GFLOPS:g}, DESIGN.md's measured FMA "
                        "peak); 'host' uses xchip.targets.host's measured f32 matmul rate")
    p.add_argument("--json", metavar="OUT", help="also write machine-readable results here")
    p.add_argument("--tune", metavar="BUDGET", default=None,
                   help="before timing, autotune every workload's kernels on this host into the tuning "
                        "database xchip.jit reads (trials per kernel, e.g. 16, or a time, e.g. 2m); already "
                        "tuned kernels continue up to the budget")
    p.add_argument("--worker-timeout", type=_positive(float), default=1800.0,
                   help="seconds one worker process may run before its current workload is failed")
    # Internal: the worker side.
    p.add_argument("--worker", metavar="ENGINE", help=argparse.SUPPRESS)
    p.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


def _peak_info(choice) -> dict:
    host = harness.host_measurement(measure=choice == "host")
    if choice == "host":
        if host is None:
            raise SystemExit("--peak-gflops host: xchip's host measurement is not available")
        return {"gflops": host["fp32_gflops"], "source": f"xchip.targets.host measured, {host['measured_at']}: "
                f"{host['method']}", "host_measurement": host}
    if choice is not None:
        return {"gflops": float(choice), "source": "--peak-gflops", "host_measurement": host}
    note = _peak_note(host)
    return {"gflops": harness.DEFAULT_PEAK_GFLOPS, "source": harness.PEAK_SOURCE_DEFAULT + note,
            "host_measurement": host}


def _peak_note(host: dict | None) -> str:
    if not host:
        return ""
    return (f"; xchip.targets.host's cached measurement, {host['fp32_gflops']:.1f} GFLOP/s "
            f"({host['measured_at']}), is a numpy BLAS matmul rate, not the FMA peak: "
            "--peak-gflops host uses it")


def _runner(raw: dict) -> str | None:
    runners = set()
    for rd in raw.get("xchip", []):
        for res in rd["results"].values():
            r = (res.get("info") or {}).get("runner")
            if r:
                runners.add(r)
    return ", ".join(sorted(runners)) or None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from benchmarks import workloads as wl

    if args.worker:
        if args.worker not in harness.ENGINES:
            raise SystemExit(f"unknown engine {args.worker!r}")
        tag = f"round {args.round + 1}/{args.rounds} {args.worker}"
        harness.run_worker(args.worker, [w.name for w in wl.select(args.only)], args.seconds, args.min_calls,
                           args.result, tag=tag)
        return 0

    try:
        selected = wl.select(args.only)
    except KeyError as e:
        raise SystemExit(str(e.args[0]))
    if args.list:
        for w in selected:
            print(f"{w.name:12s} {w.description}\n{'':12s} shape source: {w.source}")
        return 0

    env = harness.environment()
    peak = _peak_info(args.peak_gflops)
    tuning = _tune(selected, args.tune) if args.tune else None
    start = time.perf_counter()
    raw = harness.run_rounds([sys.executable, str(Path(__file__).resolve())], args.engines,
                             [w.name for w in selected], rounds=args.rounds, seconds=args.seconds,
                             min_calls=args.min_calls, order=args.order, seed=args.seed,
                             timeout=args.worker_timeout)
    wall = time.perf_counter() - start
    summary = harness.summarize(raw, selected, args.engines)
    options = {"rounds": args.rounds, "seconds": args.seconds, "min_calls": args.min_calls, "order": args.order}
    descriptions = {e: getattr(harness.ENGINES[e], "description", "") for e in args.engines}
    runner = _runner(raw) if "xchip" in args.engines else None

    out = harness.format_header(env, peak, args.engines, descriptions, runner, options)
    out.append(f"run took {wall:.0f} s; load average at end {harness._loadavg()}")
    out.append(_tuned_note(raw))
    if tuning:
        out += ["", f"autotuned before timing (--tune {args.tune}; measured, median ms per kernel call):"] + tuning["report"]
    out += ["", "measured, ms per call (min: fastest call of all rounds; median: median of the per-round medians):"]
    out += harness.format_results(summary, args.engines, peak["gflops"])
    overhead = harness.format_overhead(summary, args.engines, wl.OVERHEAD_ROWS)
    if overhead:
        out += ["", "dispatch overhead (measured per call, including block-until-ready):"] + overhead
    spread = harness.format_spread(summary, args.engines)
    if spread:
        out += ["", "round-to-round spread of the per-round medians (trust only differences above it):"] + spread
    out.append("")
    out += harness.format_geomean(summary, args.engines)
    print("\n".join(out), flush=True)

    if args.json:
        record = {
            "environment": env, "options": {**options, "engines": args.engines, "only": args.only},
            "peak": peak, "xchip_runner": runner, "wall_s": wall,
            "workloads": {w.name: {"description": w.description, "source": w.source, "flops": w.flops,
                                   "group": w.group, "tolerance": w.tol} for w in selected},
            "summary": [{**{k: v for k, v in row.items() if k != "stats"},
                         "stats": {e: s.as_dict() for e, s in row["stats"].items()}} for row in summary["rows"]],
            "geomean": summary["geomean"], "raw": raw, "report": out, "tuning": tuning,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, default=str))
    return 0


def _tune(selected, budget_text: str) -> dict:
    """Tune each workload's kernels (measured, in worker processes) into the default tuning
    database, which the xchip engine's processes then read; per-kernel default vs tuned."""
    import xchip
    from xchip.autotune.db import TuningDB
    from xchip.autotune.tune import tune
    from xchip.autotune_cli import parse_budget
    budget = parse_budget(budget_text)
    db = TuningDB()
    rows, report = [], []
    for w in selected:
        lowered = xchip.jit(w.fn, target="cpu").lower(*w.args())
        print(f"tuning {w.name}: {len(lowered.kernel_graph.groups)} kernel(s)", file=sys.stderr, flush=True)
        for r in tune(lowered, db=db, budget=budget, time_untunable=False):
            if r.search is None:
                continue
            tuned = r.best.stats.median_s if r.best is not None and r.best.stats else None
            rows.append({"workload": w.name, "kernel": r.name, "default_s": r.default_s, "tuned_s": tuned,
                         "speedup": r.speedup, "trials": len(r.search.trials), "stopped": r.search.stopped,
                         "config": r.best.config if r.best is not None else None})
            speed = f"{r.speedup:.2f}x" if r.speedup else "-"
            line = (f"  {w.name:12s} {r.name:14s} {1e3 * (r.default_s or float('nan')):9.3f} -> "
                    f"{1e3 * (tuned or float('nan')):9.3f}  {speed:>6s}  {len(r.search.trials):3d} trials")
            report.append(line)
            print(line, file=sys.stderr, flush=True)
    return {"budget": budget_text, "database": str(db.path), "kernels": rows, "report": report}


def _tuned_note(raw: dict) -> str:
    tuned = total = 0
    for rd in raw.get("xchip", [])[:1]:
        for res in rd["results"].values():
            info = res.get("info") or {}
            tuned += info.get("tuned_kernels", 0)
            total += sum((info.get("kernels") or {}).values())
    return f"xchip kernels with a tuned config from the tuning database: {tuned} of {total}"


if __name__ == "__main__":
    sys.exit(main())
