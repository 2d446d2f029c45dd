"""Runs StableHLO conformance modules on xchip's reference executor or its CPU backend.

    python -m xchip.conformance DIR [--json FILE] [--jobs N] [--timeout SECONDS] [-O LEVEL]
                                    [--executor reference|cpu]

Each program is optimized by xchip's pass pipeline (`-O`, default O2) before it runs. With
`--executor cpu` its kernel groups are compiled by the CPU backend (TVM/LLVM) and only the
groups it cannot lower run on the reference executor; each file's result counts both, and
`-O O0` (one kernel per op, nothing folded away) exercises the backend the most.
Every `.mlir` file in DIR has a `@main` without arguments that computes a value and checks
it with `stablehlo.custom_call @check.<kind>(%actual, %expected)`:

- `check.expect_eq`: bit-exact (NaN matches NaN of any payload);
- `check.expect_close`: within 3 ULP, or within the dtype's epsilon in absolute terms near
  zero (complex numbers part by part);
- `check.expect_almost_eq`: absolute difference at most 1e-3.

Files run in worker processes, so an abort inside a binding or a hang costs one file, not
the run. Prints one line per file that does not pass and ends with
`N passed, M failed, K unsupported`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

CHECKS = ("check.expect_eq", "check.expect_close", "check.expect_almost_eq")
MAX_ULP = 3
ALMOST_EQ_ATOL = 1e-3


@dataclass
class FileResult:
    file: str
    status: str          # passed | failed | unsupported
    detail: str = ""
    seconds: float = 0.0
    compiled: int = 0    # --executor cpu: kernels compiled by the backend
    opaque: int = 0      # --executor cpu: opaque kernels it does not compile (custom calls, sort, ...): reference executor
    fallback: int = 0    # --executor cpu: other kernels the backend could not lower or build: reference executor


# --- the checks ---------------------------------------------------------------------------

def _parts(a: np.ndarray) -> list[np.ndarray]:
    return [a.real, a.imag] if np.iscomplexobj(a) else [a]


def _first_bad(bad: np.ndarray, actual: np.ndarray, expected: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape)) if bad.ndim else ()
    return (f"{int(bad.sum())} of {bad.size} elements differ; first at {list(idx)}: "
            f"got {actual[idx]}, expected {expected[idx]}")


def expect_eq(actual: np.ndarray, expected: np.ndarray) -> str:
    """'' if equal bit for bit (NaN matching any NaN), else what differs."""
    bad = np.zeros(actual.shape, dtype=bool)
    for a, e in zip(_parts(actual), _parts(expected)):
        if a.dtype.kind in "iub":
            bad |= a != e
        else:
            wa, we = a.astype(np.float64), e.astype(np.float64)
            raw_a = np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")
            raw_e = np.ascontiguousarray(e).view(f"u{e.dtype.itemsize}")
            bad |= (raw_a != raw_e) & ~(np.isnan(wa) & np.isnan(we))
    return _first_bad(bad, actual, expected) if bad.any() else ""


def expect_close(actual: np.ndarray, expected: np.ndarray) -> str:
    from .numerics import ulp_distance
    if actual.dtype.kind in "iub":
        return expect_eq(actual, expected)
    bad = np.zeros(actual.shape, dtype=bool)
    for a, e in zip(_parts(actual), _parts(expected)):
        eps = float(ml_dtypes.finfo(a.dtype).eps)  # numpy's finfo does not know bf16/fp8
        with np.errstate(invalid="ignore"):
            near = np.abs(a.astype(np.float64) - e.astype(np.float64)) <= eps
        bad |= (ulp_distance(a, e) > MAX_ULP) & ~near
    return _first_bad(bad, actual, expected) if bad.any() else ""


def expect_almost_eq(actual: np.ndarray, expected: np.ndarray) -> str:
    bad = np.zeros(actual.shape, dtype=bool)
    for a, e in zip(_parts(actual), _parts(expected)):
        wa, we = a.astype(np.float64), e.astype(np.float64)
        with np.errstate(invalid="ignore"):
            bad |= ~((np.abs(wa - we) <= ALMOST_EQ_ATOL) | (np.isnan(wa) & np.isnan(we)) | (wa == we))
    return _first_bad(bad, actual, expected) if bad.any() else ""


_RULES = {"check.expect_eq": expect_eq, "check.expect_close": expect_close,
          "check.expect_almost_eq": expect_almost_eq}


def check_file(path: str | Path, opt_level: str | None = "O2", executor: str = "reference") -> FileResult:
    """Import, optimize (unless `opt_level` is None), run and check one conformance module
    (in this process) on `executor` ("reference" or "cpu")."""
    from .errors import UnsupportedOpError, XchipError
    from .frontend.stablehlo_import import import_stablehlo
    from .passes import PassOptions, optimize
    from .runtime.reference import evaluate

    path = Path(path)
    start = time.perf_counter()
    failures: list[str] = []
    ran = []
    kernels = {"compiled": 0, "opaque": 0, "fallback": 0}

    def handler(kind):
        def apply(op, actual, expected):
            ran.append(kind)
            actual, expected = np.asarray(actual), np.asarray(expected)
            if actual.shape != expected.shape or actual.dtype != expected.dtype:
                failures.append(f"{kind}: got {actual.dtype}{list(actual.shape)}, "
                                f"expected {expected.dtype}{list(expected.shape)}")
                return []
            why = _RULES[kind](actual, expected)
            if why:
                failures.append(f"{kind.split('.', 1)[1]}: {why}")
            return []
        return apply

    try:
        graph = import_stablehlo(path.read_text(), allow_custom_calls=CHECKS)
        custom_calls = {k: handler(k) for k in CHECKS}
        if executor == "cpu":
            kernels = _run_on_cpu_backend(graph, opt_level or "O0", custom_calls)
        else:
            if opt_level is not None:
                graph = optimize(graph, PassOptions(level=opt_level)).graph
            evaluate(graph, [], custom_calls=custom_calls)
    except UnsupportedOpError as e:
        return FileResult(path.name, "unsupported", f"unsupported: {e.op} ({e})", time.perf_counter() - start)
    except XchipError as e:
        return FileResult(path.name, "failed", f"{type(e).__name__}: {e}", time.perf_counter() - start)
    except Exception as e:  # a bug in xchip: report it as this file's failure, keep going
        return FileResult(path.name, "failed", f"internal error {type(e).__name__}: {e}",
                          time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if failures:
        return FileResult(path.name, "failed", "; ".join(failures), seconds, **kernels)
    if not ran:
        return FileResult(path.name, "failed", "no check.* call ran", seconds, **kernels)
    return FileResult(path.name, "passed", "", seconds, **kernels)


def _run_on_cpu_backend(graph, opt_level: str, custom_calls) -> dict[str, int]:
    import warnings

    from .backends.cpu import BACKEND_COMPILED, CpuProgram, FallbackWarning
    from .passes import PassOptions, optimize
    from .targets import get

    result = optimize(graph, PassOptions(level=opt_level))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)   # counted per file instead
        program = CpuProgram(result.kernel_graph, result.memory_plan, get("cpu"), custom_calls=custom_calls)
    program([])
    compiled = sum(k.backend == BACKEND_COMPILED for k in program.kernels)
    opaque = sum(k.backend != BACKEND_COMPILED and k.group.kind == "opaque" for k in program.kernels)
    return {"compiled": compiled, "opaque": opaque, "fallback": len(program.kernels) - compiled - opaque}


# --- workers ------------------------------------------------------------------------------

def _worker(conn, opt_level: str | None, executor: str) -> None:
    while True:
        path = conn.recv()
        if path is None:
            return
        conn.send(asdict(check_file(path, opt_level, executor)))


class _Worker:
    def __init__(self, ctx, opt_level: str | None, executor: str):
        self.parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, opt_level, executor), daemon=True)
        self.proc.start()
        child.close()
        self.path: Path | None = None
        self.started = 0.0

    def submit(self, path: Path) -> None:
        self.path, self.started = path, time.perf_counter()
        self.parent.send(str(path))

    def stop(self) -> None:
        try:
            self.parent.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()


def run_directory(directory: str | Path, *, jobs: int | None = None, timeout: float = 120.0,
                  opt_level: str | None = "O2", executor: str = "reference", progress=None) -> list[FileResult]:
    """Check every `.mlir` file in `directory` in `jobs` worker processes, each program
    optimized at `opt_level` first (None: run the imported graph as it is) and run on
    `executor` ("reference", or "cpu": the compiled CPU backend)."""
    files = sorted(Path(directory).glob("*.mlir"))
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(files) or 1))
    ctx = mp.get_context("spawn")
    pending = list(reversed(files))
    results: list[FileResult] = []
    workers = [_Worker(ctx, opt_level, executor) for _ in range(jobs)]
    try:
        for w in workers:
            if pending:
                w.submit(pending.pop())
        while any(w.path is not None for w in workers):
            for i, w in enumerate(workers):
                if w.path is None:
                    continue
                result = None
                if w.parent.poll(0.02):
                    try:
                        result = FileResult(**w.parent.recv())
                    except (EOFError, OSError):
                        result = None
                if result is None:
                    died = not w.proc.is_alive()
                    late = time.perf_counter() - w.started > timeout
                    if not (died or late):
                        continue
                    why = (f"worker process died (exit code {w.proc.exitcode})" if died
                           else f"timed out after {timeout:.0f} s")
                    result = FileResult(w.path.name, "failed", why, time.perf_counter() - w.started)
                    w.proc.kill()
                    w = workers[i] = _Worker(ctx, opt_level, executor)
                results.append(result)
                if progress:
                    progress(len(results), len(files), result)
                w.path = None
                if pending:
                    w.submit(pending.pop())
    finally:
        for w in workers:
            w.stop()
    return sorted(results, key=lambda r: r.file)


def summarize(results: list[FileResult]) -> dict:
    counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "unsupported")}
    return {**counts, "total": len(results)}


def summary_line(results: list[FileResult]) -> str:
    s = summarize(results)
    return f"{s['passed']} passed, {s['failed']} failed, {s['unsupported']} unsupported"


def kernels_line(results: list[FileResult]) -> str:
    compiled, opaque, fallback = (sum(getattr(r, k) for r in results) for k in ("compiled", "opaque", "fallback"))
    return (f"kernels: {compiled} compiled by the CPU backend; on the reference executor {opaque} opaque "
            f"and {fallback} the backend could not lower or build")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xchip.conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--json", help="write every file's result to this JSON file")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per file")
    parser.add_argument("-O", "--opt-level", default="O2", choices=["none", "O0", "O1", "O2", "O3"],
                        help="optimize each program at this level before running it (default O2; "
                             "none runs the imported graph as it is)")
    parser.add_argument("--executor", default="reference", choices=["reference", "cpu"],
                        help="run on the numpy reference executor (default) or the compiled CPU backend")
    ns = parser.parse_args(argv)
    if not Path(ns.directory).is_dir():
        print(f"not a directory: {ns.directory}", file=sys.stderr)
        return 2
    tty = sys.stderr.isatty()

    def progress(done, total, result):
        if result.status != "passed":
            print(f"{result.file}: {result.status}: {result.detail}" if result.status == "failed"
                  else f"{result.file}: {result.detail}", flush=True)
        if tty:
            print(f"\r[{done}/{total}]", end="", file=sys.stderr, flush=True)

    start = time.perf_counter()
    results = run_directory(ns.directory, jobs=ns.jobs, timeout=ns.timeout,
                            opt_level=None if ns.opt_level == "none" else ns.opt_level, executor=ns.executor,
                            progress=progress)
    if tty:
        print("\r", end="", file=sys.stderr)
    if ns.json:
        Path(ns.json).write_text(json.dumps({
            "summary": {**summarize(results), "seconds": round(time.perf_counter() - start, 1)},
            "files": [asdict(r) for r in results]}, indent=1))
    if ns.executor == "cpu":
        print(kernels_line(results))
    print(summary_line(results))
    return 0 if all(r.status != "failed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
