"""Measuring one tuning candidate (a kernel group built with one schedule config) on the host,
in a worker process, so that a candidate that crashes, hangs or computes garbage costs one
trial and not the search.

    m = measure(graph, group_name, config, level="O2", timeout=60)
    m.status    # "ok" | "wrong" | "failed" | "timeout" | "crashed"
    m.stats     # db.Stats (median, min, stdev, repeats) when ok

The worker (a fresh interpreter, `worker.py`) gets the optimized graph as IR text (the printer and parser round-trip exactly)
and fuses it again, deterministically, to find the group by name: no IR objects cross the
process boundary. It draws random non-zero inputs, computes the group's outputs with the
reference executor, builds the candidate (lower -> schedule with `config` -> LLVM), checks
every output against the reference (a candidate that is fast and wrong is rejected), then
times it: warm-up calls, then `repeats` timed calls whose inputs rotate over enough copies
to overflow the last-level cache, so a small kernel is not timed on cache-hot data.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .db import Stats

STATUSES = ("ok", "wrong", "failed", "timeout", "crashed")
ROTATE_BYTES = 64 << 20          # input copies cycled through per timed call: past any L3 here


@dataclass(frozen=True)
class Measurement:
    status: str                    # one of STATUSES
    stats: Stats | None = None
    reason: str = ""               # why not ok
    compile_s: float = 0.0
    error: dict = field(default_factory=dict)   # the correctness check: max_abs_error, max_rel_error


def measure(graph, group_name: str, config: dict | None, *, level: str = "O2", timeout: float = 60.0,
            repeats: int = 20, min_seconds: float = 0.05, seed: int | None = None) -> Measurement:
    """Build and time `config` for the group named `group_name` of `graph`'s kernel graph
    (fused at `level` for the host) in a fresh worker process."""
    from xchip.ir.printer import print_graph
    seed = int(np.random.SeedSequence().entropy % 2 ** 32) if seed is None else seed
    result = run_isolated(run_candidate, (print_graph(graph), group_name, config, level, repeats, min_seconds, seed), timeout)
    stats = result.pop("stats", None)
    return Measurement(stats=Stats(**stats) if stats else None, **result)


def run_isolated(fn, args: tuple, timeout: float) -> dict:
    """fn(*args) -> dict, in a fresh interpreter (`autotune/worker.py`; fn must be importable
    by name). A hang gives {"status": "timeout"}, a dead process {"status": "crashed"}, an
    exception {"status": "failed"}, each with a reason."""
    payload = pickle.dumps((list(sys.path), pickle.dumps((fn, args))))
    with tempfile.TemporaryDirectory(prefix="xchip-measure-") as tmp:
        result_path = os.path.join(tmp, "result.pickle")
        proc = subprocess.Popen([sys.executable, "-m", "xchip.autotune.worker", result_path],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"status": "timeout", "reason": f"no result within {timeout:g} s"}
        if proc.returncode != 0 or not os.path.exists(result_path):
            code = proc.returncode
            why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            return {"status": "crashed", "reason": f"the worker died ({why})" + (f": {tail[0]}" if tail else "")}
        with open(result_path, "rb") as f:
            return pickle.load(f)


def kernel_graph_of(graph, level: str):
    """The host's kernel graph of an optimized graph (fusion as the CPU target does it)."""
    from xchip.passes.fusion import build_kernel_graph, partition
    from xchip.targets import capabilities_of
    analysis, part = partition(graph, level, capabilities_of("cpu").fused_attention)
    return build_kernel_graph(graph, analysis, part)


def run_candidate(text, group_name, config, level, repeats, min_seconds, seed) -> dict:
    from xchip.backends.cpu.executable import device_view, schedule_kernel
    from xchip.backends.cpu.lower import LoweringError, build
    from xchip.ir.parser import parse_graph
    from xchip.runtime import reference
    from xchip.targets import get

    target = get("cpu")
    group = next((g for g in kernel_graph_of(parse_graph(text), level).groups if g.name == group_name), None)
    if group is None:
        return {"status": "failed", "reason": f"no kernel group {group_name} at {level}"}
    rng = np.random.default_rng(seed)
    env = {v: random_array(v.type, rng) for v in group.inputs}
    expected = reference.evaluate_ops(group.ops, env)
    start = time.perf_counter()
    try:
        mod, params = schedule_kernel(group, config, target)
        fn = build(mod, target)[group.name]
    except LoweringError as e:
        return {"status": "failed", "reason": f"does not lower: {e}"}
    compile_s = time.perf_counter() - start
    n_in = len(params) - len(group.outputs)
    outputs = [np.zeros(v.type.shape, v.type.dtype.numpy) for v in params[n_in:]]
    inputs = [np.ascontiguousarray(env[v]) for v in params[:n_in]]
    fn(*[device_view(a) for a in inputs + outputs])
    wrong, error = check_outputs(outputs, [expected[v] for v in params[n_in:]])
    if wrong:
        return {"status": "wrong", "reason": wrong, "compile_s": compile_s, "error": error}
    stats = _time(fn, inputs, outputs, repeats, min_seconds)
    return {"status": "ok", "stats": stats, "compile_s": compile_s, "error": error}


def check_outputs(actual: list[np.ndarray], expected: list[np.ndarray]) -> tuple[str, dict]:
    """("", worst errors) when every output matches the reference, else (why, errors).
    Schedules sum in different orders, so floats compare within a tolerance scaled by the
    output's magnitude; integers and bools exactly."""
    from xchip.numerics import compare
    worst = {"max_abs_error": 0.0, "max_rel_error": 0.0}
    for k, (got, want) in enumerate(zip(actual, expected)):
        rtol, atol = _TOLERANCE.get(np.dtype(want.dtype).name, (None, None))
        scale = float(np.max(np.abs(want.astype(np.float64)), initial=0.0)) if atol is not None else 0.0
        c = compare(got, want, rtol, None if atol is None else atol * max(1.0, scale))
        worst = {"max_abs_error": max(worst["max_abs_error"], c.max_abs_error),
                 "max_rel_error": max(worst["max_rel_error"], c.max_rel_error)}
        if not c.ok:
            return f"output {k} ({want.dtype}{list(want.shape)}): {c}", worst
    return "", worst


_TOLERANCE = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12), "bfloat16": (3e-2, 1e-2),
              "float16": (5e-3, 1e-3)}


def random_array(t, rng: np.random.Generator) -> np.ndarray:
    """Non-zero values of the type's dtype: normal floats, small integers, random bools."""
    dt = np.dtype(t.dtype.numpy)
    if dt.kind == "b":
        return rng.integers(0, 2, t.shape).astype(bool)
    if dt.kind in "iu":
        return rng.integers(1, 8, t.shape).astype(dt)
    return rng.standard_normal(t.shape).astype(dt)


def _time(fn, inputs, outputs, repeats: int, min_seconds: float) -> dict:
    from xchip.backends.cpu.executable import device_view
    nbytes = sum(a.nbytes for a in inputs) or 1
    copies = max(1, min(64, ROTATE_BYTES // nbytes))
    sets = [[device_view(a.copy()) for a in inputs] for _ in range(copies)]
    outs = [device_view(a) for a in outputs]
    for args in sets[:3]:                                   # warm-up (thread pool, page faults)
        fn(*args, *outs)
    times = []
    deadline = time.perf_counter() + min_seconds
    k = 0
    while len(times) < repeats or time.perf_counter() < deadline:
        args = sets[k % copies]
        t0 = time.perf_counter()
        fn(*args, *outs)
        times.append(time.perf_counter() - t0)
        k += 1
        if len(times) >= 10 * repeats:
            break
    return asdict(Stats.from_times(times))
