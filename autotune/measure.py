"""Measuring one tuning candidate (a kernel group built with one schedule config) on the host,
in a worker process, so that a candidate that crashes, hangs or computes garbage costs one
trial and not the search.

    m = measure(graph, group_name, config, level="O2", timeout=60)
    m.status    # "ok" | "wrong" | "failed" | "timeout" | "crashed"
    m.stats     # db.Stats (median, min, stdev, repeats) when ok

The worker (a fresh interpreter, `worker.py`) gets the optimized graph as IR text (the printer and parser round-trip exactly)
and fuses it again, deterministically, to find the group by name: no IR objects cross the
process boundary. It draws random non-zero inputs, builds the candidate (lower -> schedule
with `config` -> LLVM), times it, then computes the group's outputs with the reference
executor and checks every output against them (a candidate that is fast and wrong is
rejected).

Timing (protocol `PROTOCOL`, part of the tuning database's key): warm-up calls, then
`repeats` timed calls whose inputs rotate over enough copies to overflow L2 but not L3. Inside
a program a kernel's inputs were just written by the kernel before it, or are weights read
every call: in L3 when they fit, not in L1 or L2. Timing from memory instead (protocol 1
rotated past L3) misjudged memory-bound kernels: one thread is as fast as two when DRAM is the
limit, and the tuner picked single-threaded layernorm and softmax kernels that ran 2.4x
slower in the program. The reference runs after the timing, with BLAS on one thread
(`worker.py`): a BLAS pool still spinning from the reference made the first candidate of
every kernel (the default, its kernel cached, so timed at once) read 4 ms instead of 0.6.
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
PROTOCOL = 2                     # how candidates are timed; results of other protocols are not compared
ROTATE_L2_TIMES = 4              # input copies cycled through: this many times L2


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


def run_isolated(fn, args: tuple, timeout: float, env: dict | None = None) -> dict:
    """fn(*args) -> dict, in a fresh interpreter (`autotune/worker.py`; fn must be importable
    by name). A hang gives {"status": "timeout"}, a dead process {"status": "crashed"}, an
    exception {"status": "failed"}, each with a reason. `env`: variables to add."""
    payload = pickle.dumps((list(sys.path), pickle.dumps((fn, args))))
    with tempfile.TemporaryDirectory(prefix="xchip-measure-") as tmp:
        result_path = os.path.join(tmp, "result.pickle")
        proc = subprocess.Popen([sys.executable, "-m", "xchip.autotune.worker", result_path],
                                env=dict(worker_env(), **(env or {})),
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


def worker_env() -> dict:
    """The worker's environment: BLAS on one thread (the reference executor's matmuls are
    small, and a multi-threaded BLAS keeps spinning on the cores the candidate is timed on)."""
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


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
    result = [a.copy() for a in outputs]
    stats = _time(fn, inputs, outputs, repeats, min_seconds, _rotate_bytes(target))
    expected = reference.evaluate_ops(group.ops, env)
    wrong, error = check_outputs(result, [expected[v] for v in params[n_in:]])
    if wrong:
        return {"status": "wrong", "reason": wrong, "compile_s": compile_s, "error": error}
    return {"status": "ok", "stats": stats, "compile_s": compile_s, "error": error}


def _rotate_bytes(target) -> int:
    l2 = target.host.cache(2) if getattr(target, "host", None) is not None else None
    return ROTATE_L2_TIMES * (l2.size_kb if l2 is not None and l2.size_kb else 1024) * 1024


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


def _time(fn, inputs, outputs, repeats: int, min_seconds: float, rotate_bytes: int) -> dict:
    from xchip.backends.cpu.executable import device_view
    nbytes = sum(a.nbytes for a in inputs) or 1
    copies = max(1, min(64, rotate_bytes // nbytes))
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
