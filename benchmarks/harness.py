"""The benchmark harness: engines, the per-process worker, rounds of worker processes, and
the arithmetic and formatting of the results.

Method (see /work/shared/DESIGN.md, "Measuring on these machines"): each engine runs in its
own process, so one engine's thread pool (XLA's, OpenBLAS's under the reference executor,
TVM's) never spins on the cores the other is being timed on. A round runs one worker process
per engine; rounds alternate which engine goes first. A worker, for every workload: computes
a float64 reference, compiles and calls the engine once and checks that result against the
reference (a wrong result is reported, never timed), warms up, then times individual calls
(`time.perf_counter` around call + block-until-ready) until about `seconds` have passed, at
least `min_calls` of them. Per engine and workload the report gives the minimum over all
calls of all rounds and the median of the per-round medians.
"""

from __future__ import annotations

import datetime
import gc
import importlib.metadata
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

DEFAULT_PEAK_GFLOPS = 234.0      # DESIGN.md: measured fp32 FMA peak of this 2-core Zen 4 host
PEAK_SOURCE_DEFAULT = ("DESIGN.md, 'Measuring on these machines': fp32 FMA peak measured on this "
                       "kind of machine (2 cores x 117 GFLOP/s)")
BASE, CANDIDATE = "xla", "xchip"  # ratio = BASE min / CANDIDATE min (> 1: xchip faster)
LABELS = {"xla": "XLA", "xchip": "xchip"}


# --- engines ---------------------------------------------------------------------------------

def block(out) -> None:
    """Wait until every array in `out` is computed (numpy leaves are already)."""
    import jax
    for leaf in jax.tree_util.tree_leaves(out):
        ready = getattr(leaf, "block_until_ready", None)
        if ready is not None:
            ready()


class XlaEngine:
    name = "xla"
    description = "jax.jit on the CPU (XLA:CPU); inputs placed with jax.device_put once"

    def prepare(self, args: tuple) -> tuple:
        import jax
        return jax.device_put(args)

    def compile(self, fn: Callable) -> Callable:
        import jax
        return jax.jit(fn)

    def info(self, compiled: Callable | None = None) -> dict:
        import jax
        return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}


class XchipEngine:
    name = "xchip"
    description = "xchip.jit(fn, target='cpu'); inputs as numpy arrays"

    def prepare(self, args: tuple) -> tuple:
        return args

    def compile(self, fn: Callable) -> Callable:
        import xchip
        return xchip.jit(fn, target="cpu")

    def info(self, compiled: Callable | None = None) -> dict:
        # What executes the kernels: the runner ("reference", "compiled") and how many kernels
        # each backend runs ("tvm-llvm", "reference" for a fallback). Read from the function's
        # compilation cache, defensively: these are informational.
        runners, kernels, tuned = set(), {}, 0
        for c in getattr(compiled, "_cache", {}).values():
            runners.add(str(getattr(c, "runner", "unknown")))
            for k in getattr(c, "kernels", None) or ():
                b = str(getattr(k, "backend", "unknown"))
                kernels[b] = kernels.get(b, 0) + 1
            program = getattr(c, "_program", None)
            tuned += sum(getattr(k, "config", None) is not None for k in getattr(program, "kernels", ()))
        return {"runner": ",".join(sorted(runners)) or "unknown", "kernels": kernels, "tuned_kernels": tuned}


# Name -> engine factory. Tests add engines here (e.g. one that computes a wrong result).
ENGINES: dict[str, Callable[[], object]] = {"xla": XlaEngine, "xchip": XchipEngine}


# --- the worker ------------------------------------------------------------------------------

def first_line(e: BaseException) -> str:
    name, text = type(e).__name__, str(e).strip()
    line = text.splitlines()[0].strip() if text else ""
    if not line:
        return name
    return line if line.startswith(f"{name}:") else f"{name}: {line}"


def time_calls(call: Callable[[], None], seconds: float, min_calls: int = 5,
               max_calls: int = 1_000_000) -> tuple[list[float], int]:
    """Warm up, then time individual calls for about `seconds` (at least `min_calls`).
    Returns (per-call seconds, number of warm-up calls). The garbage collector is off while
    timing, as in `timeit`."""
    warm, start = [], time.perf_counter()
    while len(warm) < 2 or (time.perf_counter() - start < 0.1 * seconds and len(warm) < 1000):
        t0 = time.perf_counter()
        call()
        warm.append(time.perf_counter() - t0)
    per_call = statistics.median(warm)
    n = int(min(max_calls, max(min_calls, math.ceil(seconds / max(per_call, 1e-9)))))
    times = [0.0] * n
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(n):
            t0 = time.perf_counter()
            call()
            times[i] = time.perf_counter() - t0
    finally:
        if was_enabled:
            gc.enable()
    return times, len(warm)


def run_workload(engine, workload, seconds: float, min_calls: int = 5, log: Callable[[str], None] = None) -> dict:
    """One engine on one workload, in this process: reference, compile + check, warm-up, timing."""
    from . import workloads as wl

    log = log or (lambda msg: None)
    res: dict = {"status": "failed", "error": ""}
    try:
        args = workload.args()
        ref = wl.reference(workload, args)
    except Exception as e:             # the workload itself is broken: not the engine's fault
        res["error"] = "reference: " + first_line(e)
        return res
    try:
        inputs = engine.prepare(args)
        f = engine.compile(workload.fn)
        t0 = time.perf_counter()
        out = f(*inputs)
        block(out)
        res["first_call_s"] = time.perf_counter() - t0
        res["info"] = engine.info(f)
    except Exception as e:
        res["error"] = first_line(e)
        log(f"{workload.name}: FAILED: {res['error']}")
        return res
    ok, err, message = wl.check(workload, out, ref)
    res["check_error"] = err if math.isfinite(err) else None
    res["tolerance"] = workload.tol
    if not ok:
        res.update(status="wrong", error=f"wrong result: {message}")
        log(f"{workload.name}: WRONG RESULT ({message}); not timed")
        return res
    log(f"{workload.name}: first call {res['first_call_s']:.3g} s, check ok (error {err:.2g}); timing ~{seconds:g} s")

    def call():
        block(f(*inputs))

    try:
        times, warm = time_calls(call, seconds, min_calls)
    except Exception as e:
        res["error"] = "while timing: " + first_line(e)
        return res
    res.update(status="ok", calls=len(times), warmup_calls=warm, min_s=min(times),
               median_s=statistics.median(times), mean_s=statistics.fmean(times),
               total_s=math.fsum(times))
    return res


def run_worker(engine_name: str, workload_names: Sequence[str], seconds: float, min_calls: int = 5,
               result_path: str | Path | None = None, tag: str = "") -> dict:
    """Run `workload_names` on one engine in this process. With `result_path`, the results so
    far are rewritten there after every workload (so a crash loses only the workload that
    crashed). Returns {"engine", "info", "results": {name: result}}."""
    from . import workloads as wl

    engine = ENGINES[engine_name]()
    record = {"engine": engine_name, "description": getattr(engine, "description", ""),
              "pid": os.getpid(), "results": {}}

    def log(msg):
        print(f"[{tag or engine_name}] {msg}", file=sys.stderr, flush=True)

    for name in workload_names:
        workload = wl.WORKLOADS[name]
        log(f"{name}: {workload.description}")
        record["results"][name] = run_workload(engine, workload, seconds, min_calls, log)
        r = record["results"][name]
        if r["status"] == "ok":
            log(f"{name}: {r['calls']} calls, min {r['min_s'] * 1e3:.4g} ms, median {r['median_s'] * 1e3:.4g} ms")
        if result_path is not None:
            _write_json_atomic(result_path, record)
    return record


def _write_json_atomic(path, obj) -> None:
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(obj, f)
    os.replace(f.name, path)


# --- rounds of worker processes ----------------------------------------------------------------

def round_orders(engines: Sequence[str], rounds: int, order: str = "alternate", seed: int = 0) -> list[list[str]]:
    """Which engine runs first in each round: 'alternate' flips the order every round,
    'fixed' keeps it, 'random' shuffles (seeded)."""
    rng = random.Random(seed)
    out = []
    for r in range(rounds):
        seq = list(engines)
        if order == "alternate" and r % 2 == 1:
            seq.reverse()
        elif order == "random":
            rng.shuffle(seq)
        elif order not in ("alternate", "fixed", "random"):
            raise ValueError(f"unknown order {order!r}: alternate, fixed or random")
        out.append(seq)
    return out


def _loadavg() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def run_engine_process(worker_argv: Sequence[str], engine: str, names: Sequence[str], *, seconds: float,
                       min_calls: int, round_index: int, rounds: int, timeout: float | None) -> dict:
    """Run one engine on `names` in worker processes and return its results. A worker that
    crashes or runs out of time fails the workload it was on; the ones after it run in a fresh
    worker, so one crash does not cost the round."""
    results: dict[str, dict] = {}
    info = {"processes": [], "load_before": _loadavg()}
    pending = list(names)
    with tempfile.TemporaryDirectory(prefix="xchip-bench-") as tmp:
        while pending:
            path = Path(tmp) / f"{engine}-{len(info['processes'])}.json"
            argv = [*worker_argv, "--worker", engine, "--only", ",".join(pending), "--seconds", str(seconds),
                    "--min-calls", str(min_calls), "--round", str(round_index), "--rounds", str(rounds),
                    "--result", str(path)]
            tail: deque[str] = deque(maxlen=20)
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            timed_out = False
            deadline = None if timeout is None else start + timeout
            def pump():
                for line in proc.stderr:
                    sys.stderr.write(line)
                    sys.stderr.flush()
                    tail.append(line.rstrip("\n"))
            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                proc.wait(timeout=None if deadline is None else max(0.0, deadline - time.perf_counter()))
            except subprocess.TimeoutExpired:
                timed_out = True
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                record = {"results": {}}
            results.update(record.get("results", {}))
            info["processes"].append({"pid": proc.pid, "rc": proc.returncode, "wall_s": time.perf_counter() - start,
                                      "timed_out": timed_out, "description": record.get("description", "")})
            rest = [n for n in pending if n not in results]
            if not rest:
                break
            if proc.returncode == 0 and not timed_out:
                # Exited cleanly without results for these: report, do not loop.
                for n in rest:
                    results[n] = {"status": "failed", "error": "worker returned no result"}
                break
            culprit = rest[0]
            why = (f"worker timed out after {timeout:g} s" if timed_out else
                   f"worker process died (exit code {proc.returncode})")
            last = next((l for l in reversed(tail) if l.strip()), "")
            results[culprit] = {"status": "failed", "error": f"{why}: {last}" if last else why}
            pending = rest[1:]
    info["load_after"] = _loadavg()
    return {"results": results, "info": info}


def run_rounds(worker_argv: Sequence[str], engines: Sequence[str], names: Sequence[str], *, rounds: int,
               seconds: float, min_calls: int = 5, order: str = "alternate", seed: int = 0,
               timeout: float | None = None) -> dict:
    """All rounds: {engine: [per-round {"round", "position", "results", "info"}]}."""
    raw: dict[str, list] = {e: [] for e in engines}
    for r, seq in enumerate(round_orders(engines, rounds, order, seed)):
        for position, engine in enumerate(seq):
            print(f"== round {r + 1}/{rounds}: {engine} ({position + 1} of {len(seq)} this round), "
                  f"{len(names)} workload(s), load average {_loadavg()}", file=sys.stderr, flush=True)
            out = run_engine_process(worker_argv, engine, names, seconds=seconds, min_calls=min_calls,
                                     round_index=r, rounds=rounds, timeout=timeout)
            raw[engine].append({"round": r, "position": position, **out})
    return raw


# --- arithmetic --------------------------------------------------------------------------------

@dataclass
class Stat:
    status: str                      # ok | wrong | failed | absent
    min_s: float | None = None
    median_s: float | None = None
    spread: float | None = None      # max / min of the per-round medians, minus 1
    rounds_ok: int = 0
    rounds: int = 0
    error: str = ""
    calls: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def summarize_engine(rounds: Iterable[dict]) -> Stat:
    """One engine on one workload, from its per-round results: ok only if every round was ok;
    min over all rounds' minima, median of the rounds' medians."""
    rounds = list(rounds)
    if not rounds:
        return Stat("absent")
    good = [r for r in rounds if r.get("status") == "ok"]
    bad = [r for r in rounds if r.get("status") != "ok"]
    if bad:
        first = bad[0]
        status = "wrong" if first.get("status") == "wrong" else "failed"
        error = first.get("error") or status
        if good:
            error += f" (in {len(bad)} of {len(rounds)} rounds)"
        return Stat(status, rounds_ok=len(good), rounds=len(rounds), error=error)
    medians = [r["median_s"] for r in good]
    return Stat("ok", min_s=min(r["min_s"] for r in good), median_s=statistics.median(medians),
                spread=max(medians) / min(medians) - 1 if min(medians) > 0 else None,
                rounds_ok=len(good), rounds=len(rounds), calls=sum(r.get("calls", 0) for r in good))


def ratio(base: Stat | None, candidate: Stat | None) -> float | None:
    """base min / candidate min (> 1: the candidate is faster); None unless both are ok."""
    if not base or not candidate or base.status != "ok" or candidate.status != "ok":
        return None
    if not candidate.min_s or not base.min_s:
        return None
    return base.min_s / candidate.min_s


def geomean(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return math.exp(math.fsum(math.log(v) for v in values) / len(values))


def gflops(flops: float | None, seconds: float | None) -> float | None:
    if not flops or not seconds:
        return None
    return flops / seconds / 1e9


def summarize(raw: dict, workloads: Sequence, engines: Sequence[str]) -> dict:
    """{"rows": [...], "geomean": {...}} from run_rounds' output."""
    rows = []
    for w in workloads:
        stats = {e: summarize_engine(rd["results"].get(w.name, {"status": "failed", "error": "no result"})
                                     for rd in raw.get(e, [])) for e in engines}
        info = {}
        for e in engines:
            for rd in raw.get(e, []):
                got = rd["results"].get(w.name, {}).get("info")
                if got:
                    info[e] = got
                    break
        row = {"name": w.name, "description": w.description, "group": w.group, "flops": w.flops,
               "stats": stats, "info": info, "ratio": ratio(stats.get(BASE), stats.get(CANDIDATE))}
        rows.append(row)
    included, excluded = [], []
    if BASE in engines and CANDIDATE in engines:
        for row in rows:
            if row["group"] != "main":
                continue
            if row["ratio"] is not None:
                included.append(row)
            else:
                why = "; ".join(f"{LABELS.get(e, e)} {s.status}" for e, s in row["stats"].items() if s.status != "ok")
                excluded.append((row["name"], why or "no ratio"))
    return {"rows": rows,
            "geomean": {"value": geomean(r["ratio"] for r in included), "n": len(included),
                        "workloads": [r["name"] for r in included], "excluded": excluded}}


# --- formatting ----------------------------------------------------------------------------------

def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    if ms >= 1000:
        return f"{ms:,.0f}"
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    if ms >= 0.1:
        return f"{ms:.3f}"
    return f"{ms:.4f}"


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _table(header: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in body]


def _display_engines(engines: Sequence[str]) -> list[str]:
    # xchip first, then XLA, then anything else (as asked: xchip columns, then XLA's).
    order = [CANDIDATE, BASE]
    return [e for e in order if e in engines] + [e for e in engines if e not in order]


def format_results(summary: dict, engines: Sequence[str], peak_gflops: float) -> list[str]:
    shown = _display_engines(engines)
    has_gemm = any(r["flops"] for r in summary["rows"])
    header = ["workload"]
    for e in shown:
        header += [f"{LABELS.get(e, e)} min ms", f"{LABELS.get(e, e)} median ms"]
    both = BASE in engines and CANDIDATE in engines
    if both:
        header.append("XLA/xchip")
    if has_gemm:
        header += [f"GFLOP/s {LABELS.get(e, e)}" for e in shown] + [f"%peak {LABELS.get(e, e)}" for e in shown]
    header.append("notes")
    body = []
    for row in summary["rows"]:
        if row["group"] != "main":
            continue
        cells, notes = [row["name"]], []
        for e in shown:
            s = row["stats"][e]
            if s.status == "ok":
                cells += [fmt_ms(s.min_s), fmt_ms(s.median_s)]
            else:
                cells += [s.status.upper(), "-"]
                notes.append(f"{LABELS.get(e, e)} {s.status}: {s.error}")
        kernels = row.get("info", {}).get(CANDIDATE, {}).get("kernels")
        if kernels:
            notes.append("xchip kernels: " + ", ".join(f"{n} {b}" for b, n in sorted(kernels.items())))
        if both:
            cells.append(_fmt(row["ratio"], ".2f"))
        if has_gemm:
            rates = [gflops(row["flops"], row["stats"][e].min_s) if row["stats"][e].status == "ok" else None
                     for e in shown]
            cells += [_fmt(g, ".1f") for g in rates]
            cells += [_fmt(None if g is None else 100 * g / peak_gflops, ".0f") for g in rates]
        cells.append("; ".join(notes))
        body.append(cells)
    right = set(range(1, len(header) - 1))
    return _table(header, body, right)


def format_overhead(summary: dict, engines: Sequence[str], names: Sequence[str]) -> list[str]:
    rows = {r["name"]: r for r in summary["rows"]}
    names = [n for n in names if n in rows]
    if not names:
        return []
    shown = _display_engines(engines)
    header = ["workload"] + [f"{LABELS.get(e, e)} min / median us" for e in shown]
    both = BASE in engines and CANDIDATE in engines
    if both:
        header.append("xchip - XLA, median us")
    header.append("notes")
    body = []
    for n in names:
        cells, notes = [n], []
        for e in shown:
            s = rows[n]["stats"][e]
            cells.append(f"{s.min_s * 1e6:.1f} / {s.median_s * 1e6:.1f}" if s.status == "ok" else s.status.upper())
            if s.status != "ok":
                notes.append(f"{LABELS.get(e, e)} {s.status}: {s.error}")
        if both:
            a, b = rows[n]["stats"][CANDIDATE], rows[n]["stats"][BASE]
            cells.append(f"{(a.median_s - b.median_s) * 1e6:+.1f}" if a.status == b.status == "ok" else "-")
        cells.append("; ".join(notes))
        body.append(cells)
    return _table(header, body, set(range(1, len(header) - 1)))


def format_spread(summary: dict, engines: Sequence[str]) -> list[str]:
    out = []
    for e in _display_engines(engines):
        spreads = [(r["stats"][e].spread, r["name"]) for r in summary["rows"]
                   if r["stats"][e].status == "ok" and r["stats"][e].spread is not None and r["stats"][e].rounds > 1]
        if spreads:
            worst, name = max(spreads)
            typical = statistics.median(s for s, _ in spreads)
            out.append(f"  {LABELS.get(e, e)}: median {100 * typical:.0f}%, largest {100 * worst:.0f}% ({name})")
    return out


def format_geomean(summary: dict, engines: Sequence[str]) -> list[str]:
    g = summary["geomean"]
    lines = []
    if not (BASE in engines and CANDIDATE in engines):
        return [f"geometric-mean ratio (XLA/xchip) over 0 workloads: n/a (engines run: {', '.join(engines)})"]
    for name, why in g["excluded"]:
        lines.append(f"excluded from the geometric mean: {name} ({why})")
    value = "n/a" if g["value"] is None else f"{g['value']:.2f}"
    lines.append(f"geometric-mean ratio (XLA/xchip) over {g['n']} workloads: {value}")
    return lines


# --- the environment --------------------------------------------------------------------------

def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> tuple[str, int, int | None]:
    model, cores = platform.processor() or "unknown", set()
    try:
        for block_ in Path("/proc/cpuinfo").read_text().split("\n\n"):
            fields = dict(l.split(":", 1) for l in block_.splitlines() if ":" in l)
            fields = {k.strip(): v.strip() for k, v in fields.items()}
            model = fields.get("model name", model)
            if "core id" in fields:
                cores.add((fields.get("physical id"), fields["core id"]))
    except OSError:
        pass
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:
        logical = os.cpu_count() or 1
    return model, logical, len(cores) or None


def environment() -> dict:
    model, logical, physical = _cpu()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": model, "logical_cpus": logical, "physical_cores": physical,
        "machine": platform.machine(), "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("jax", "jaxlib", "numpy", "apache-tvm", "xchip")},
        "load_average": _loadavg(),
    }


def host_measurement(measure: bool = False) -> dict | None:
    """xchip's own measurement of this host (xchip.targets.host: numpy matmul f32 GFLOP/s,
    cached per machine): read from its cache, or measured now (~1 s) when `measure`."""
    try:
        from xchip.targets import host
        if measure:
            m = host.measure()
        else:
            info = host.detect()
            path = host.cache_dir() / f"host-{host.fingerprint(info)}.json"
            if not path.exists():
                return None
            m = host.HostMeasurement(**json.loads(path.read_text())["measurement"])
        return {"fp32_gflops": m.fp32_gflops, "measured_at": m.measured_at, "method": m.method}
    except Exception:
        return None


def format_header(env: dict, peak: dict, engines: Sequence[str], descriptions: dict[str, str],
                  runner: str | None, options: dict) -> list[str]:
    v = env["versions"]
    cores = f"{env['logical_cpus']} logical CPUs" + (f", {env['physical_cores']} cores" if env["physical_cores"] else "")
    lines = [
        "xchip CPU benchmark: xchip.jit(target='cpu') vs jax.jit (XLA:CPU). Every time below is measured.",
        f"date {env['date']}; {env['cpu']} ({env['machine']}), {cores}; load average at start {env['load_average']}",
        f"python {env['python']}, jax {v['jax']}, jaxlib {v['jaxlib']}, numpy {v['numpy']}, "
        f"tvm (apache-tvm) {v['apache-tvm']}, xchip {v['xchip']}"
        + (f" (xchip runner: {runner})" if runner else ""),
    ]
    for e in _display_engines(engines):
        if descriptions.get(e):
            lines.append(f"engine {LABELS.get(e, e)}: {descriptions[e]}")
    lines.append(f"method: {options['rounds']} round(s), one process per engine per round, order {options['order']}; "
                 f"per workload per round ~{options['seconds']:g} s of timed calls (at least {options['min_calls']}); "
                 "min = fastest call of all rounds, median = median of the per-round medians; "
                 "every result checked against a float64 reference before timing")
    lines.append(f"fp32 peak for %peak: {peak['gflops']:g} GFLOP/s ({peak['source']})")
    return lines
