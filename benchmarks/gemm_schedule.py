"""Micro-benchmark of the CPU matmul schedule (backends/cpu/matmul_schedule.py) against
jax.jit (XLA:CPU) on the same shapes.

    python benchmarks/gemm_schedule.py                # every shape, 3 process pairs
    python benchmarks/gemm_schedule.py --shapes gemm1024,mlp_b1 --processes 5
    python benchmarks/gemm_schedule.py --engine xchip --json     # one engine, this process

Each engine runs in its own subprocess, one after the other (never both at once, never both
in one process: a thread pool that spins after a call steals the other engine's cores). The
driver alternates the engines `--processes` times and keeps, per shape, the best time of
each engine over all its processes (each process: warm-up, then the minimum over repeats
of a timed loop of about 20 ms). With `--wait-quiet` (default on Linux) every timed loop
first waits (up to 5 s) until the machine's other load is below 15% of its CPUs, because
these machines are shared.

Printed per shape: GFLOP/s of both engines, the xchip schedule's share of the fp32 peak
(`--peak`, default 234 GFLOP/s: the FMA peak measured on the 2-core Zen 4 machines; the
measured peak of this machine is printed too when `--measure-peak` is given) and the ratio
xchip / XLA. The xchip kernels are the schedule's default config for the host target, built
by TVM + LLVM for the host CPU; TVM's thread pool gets one thread per core
(TVM_NUM_THREADS, which TVM otherwise sets to half the logical CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# (name, batch, M, K, N, rhs transposed, epilogue)
SHAPES = [
    ("gemm512", 0, 512, 512, 512, False, None),
    ("gemm1024", 0, 1024, 1024, 1024, False, None),
    ("mlp_b1", 0, 1, 512, 2048, False, "bias_relu"),
    ("mlp_b64", 0, 64, 512, 2048, False, "bias_relu"),
    ("proj_512", 0, 128, 512, 512, True, None),
    ("proj_2048", 0, 128, 512, 2048, True, None),
    ("attn_qk", 8, 128, 64, 128, True, None),
    ("attn_bmm", 8, 128, 64, 128, False, None),
]

PEAK_GFLOPS = 234.0


def flops(shape) -> float:
    _, b, m, k, n, _, _ = shape
    return 2.0 * max(1, b) * m * k * n


def _inputs(shape, seed=0):
    import numpy as np
    _, b, m, k, n, tb, epi = shape
    rng = np.random.default_rng(seed)
    pre = (b,) if b else ()
    a = rng.standard_normal(pre + (m, k)).astype("float32")
    w = rng.standard_normal(pre + ((n, k) if tb else (k, n))).astype("float32")
    out = [a, w]
    if epi:
        out.append(rng.standard_normal((n,)).astype("float32"))
    return out


def _reference(shape, args):
    import numpy as np
    _, b, m, k, n, tb, epi = shape
    a, w = args[0].astype(np.float64), args[1].astype(np.float64)
    r = a @ (np.swapaxes(w, -1, -2) if tb else w)
    if epi == "bias_relu":
        r = np.maximum(r + args[2], 0.0)
    return r


def _cpu_busy(interval=0.1) -> float:
    """Share of the machine's CPU time used by *other* processes over `interval` (this
    process's own thread pools spin for a while after each call; they do not count)."""
    def stat():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])          # utime + stime, all threads
        return sum(v), v[3] + v[4], own
    a = stat()
    time.sleep(interval)
    b = stat()
    total = max(1, b[0] - a[0])
    busy = total - (b[1] - a[1]) - (b[2] - a[2])
    return max(0.0, busy / total)


def wait_quiet(enabled: bool, max_wait=5.0, threshold=0.15) -> None:
    if not enabled or not os.path.exists("/proc/stat"):
        return
    end = time.time() + max_wait
    while _cpu_busy() > threshold and time.time() < end:
        pass


def time_fn(fn, shape, rounds: int, quiet: bool) -> float:
    """Best seconds per call: warm-up, then `rounds` timed loops of ~20 ms each."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(1e-6, time.perf_counter() - t0)
    inner = max(1, int(0.02 / once))
    best = float("inf")
    for _ in range(rounds):
        wait_quiet(quiet)
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


# --- engines -------------------------------------------------------------------------------

class _Dims:
    def __init__(self, batch, lhs_free, rhs_free, contracting):
        self.batch, self.lhs_free, self.rhs_free, self.contracting = batch, lhs_free, rhs_free, contracting


def xchip_primfunc(shape):
    """The PrimFunc the CPU lowering makes for this dot_general (+ epilogue): one TE compute
    named "matmul" over (batch, M, N) reducing K, then elementwise computes."""
    from tvm import te
    _, b, m, k, n, tb, epi = shape
    pre = (b,) if b else ()
    A = te.placeholder(pre + (m, k), "float32", name="lhs")
    W = te.placeholder(pre + ((n, k) if tb else (k, n)), "float32", name="rhs")
    r = te.reduce_axis((0, k), name="k0")

    def body(*idx):
        bi, i, j = idx[:-2], idx[-2], idx[-1]
        w = W[(*bi, j, r)] if tb else W[(*bi, r, j)]
        return te.sum(A[(*bi, i, r)] * w, axis=r)

    C = te.compute(pre + (m, n), body, name="matmul")
    args, out = [A, W], C
    if epi == "bias_relu":
        bias = te.placeholder((n,), "float32", name="bias")
        args.append(bias)
        D = te.compute(C.shape, lambda *i: C(*i) + bias[i[-1]], name="add")
        out = te.compute(C.shape, lambda *i: te.max(D(*i), 0.0), name="relu")
    return te.create_prim_func(args + [out]), _Dims(1 if b else 0, 1, 1, 1)


def run_xchip(shapes, rounds, quiet):
    from xchip import targets
    os.environ.setdefault("TVM_NUM_THREADS", str(_cores(targets.get("cpu"))))
    import numpy as np
    import tvm

    from xchip.backends.cpu import matmul_schedule as ms
    target = targets.get("cpu")
    llvm = tvm.target.Target({"kind": "llvm", "mcpu": _host_mcpu()})
    out = {}
    for shape in shapes:
        func, dims = xchip_primfunc(shape)
        sch = tvm.s_tir.Schedule(func)
        ms.schedule_matmul(sch, dims, None, target)
        lib = tvm.compile(sch.mod, target=llvm)
        fn = lib.mod["main"]
        args = _inputs(shape)
        ref = _reference(shape, args)
        targs = [tvm.runtime.tensor(x) for x in args] + [tvm.runtime.tensor(np.zeros(ref.shape, "float32"))]
        fn(*targs)
        err = float(np.abs(targs[-1].numpy() - ref).max() / max(1e-30, np.abs(ref).max()))
        seconds = time_fn(lambda: fn(*targs), shape, rounds, quiet)
        _, b, m, k, n, _, _ = shape
        out[shape[0]] = {"seconds": seconds, "rel_err": err,
                         "config": ms.default_matmul_config(m, n, k, max(1, b), "float32", target)}
    return out


def run_xla(shapes, rounds, quiet):
    import jax
    import jax.numpy as jnp
    out = {}
    for shape in shapes:
        _, b, m, k, n, tb, epi = shape

        def f(a, w, *bias, tb=tb, epi=epi):
            r = a @ (jnp.swapaxes(w, -1, -2) if tb else w)
            if epi == "bias_relu":
                r = jnp.maximum(r + bias[0], 0.0)
            return r

        jf = jax.jit(f)
        args = [jnp.asarray(x) for x in _inputs(shape)]
        jf(*args).block_until_ready()
        seconds = time_fn(lambda: jf(*args).block_until_ready(), shape, rounds, quiet)
        out[shape[0]] = {"seconds": seconds}
    return out


def _cores(target) -> int:
    host = getattr(target, "host", None)
    return int(getattr(host, "physical_cores", None) or getattr(host, "logical_cpus", None) or os.cpu_count() or 1)


def _host_mcpu() -> str:
    try:
        from xchip.backends.cpu.lower import host_mcpu
        return host_mcpu()
    except Exception:  # noqa: BLE001 - the lowering module is optional here
        from tvm.target import codegen
        return str(codegen.llvm_get_system_cpu())


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for mod in ("numpy", "tvm", "jax", "jaxlib"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    return out


def measure_peak() -> float | None:
    """fp32 FMA peak of this machine on all its CPUs, AVX2 (a C loop of 12 independent FMA
    chains per thread, built with gcc -mavx2 -mfma -fopenmp; the best of 3 runs); None
    without gcc."""
    import shutil
    import tempfile
    if not shutil.which("gcc"):
        return None
    src = r"""
#include <immintrin.h>
#include <stdio.h>
#include <omp.h>
int main(){ long it=100000000; double best=1e9;
 for(int r=0;r<3;r++){ double t0=omp_get_wtime();
  #pragma omp parallel
  { __m256 b=_mm256_set1_ps(0.999999f), c=_mm256_set1_ps(1e-7f), a[12];
    for(int i=0;i<12;i++) a[i]=_mm256_set1_ps(1.0f+i);
    for(long i=0;i<it;i++){
      #pragma GCC unroll 12
      for(int j=0;j<12;j++) a[j]=_mm256_fmadd_ps(a[j],b,c);
      __asm__ volatile("" :: "x"(a[0]),"x"(a[1]),"x"(a[2]),"x"(a[3]),"x"(a[4]),"x"(a[5]),
                       "x"(a[6]),"x"(a[7]),"x"(a[8]),"x"(a[9]),"x"(a[10]),"x"(a[11])); }
  }
  double t=omp_get_wtime()-t0; if(t<best) best=t; }
 printf("%f\n", omp_get_max_threads()*it*12.0*16/best/1e9); return 0; }
"""
    with tempfile.TemporaryDirectory() as d:
        c, exe = os.path.join(d, "peak.c"), os.path.join(d, "peak")
        with open(c, "w") as f:
            f.write(src)
        if subprocess.run(["gcc", "-O2", "-mavx2", "-mfma", "-fopenmp", c, "-o", exe],
                          capture_output=True).returncode:
            return None
        best = None
        for _ in range(3):
            wait_quiet(True)
            r = subprocess.run([exe], capture_output=True, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1)))
            try:
                v = float(r.stdout.strip())
            except ValueError:
                continue
            best = v if best is None else max(best, v)
        return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("xchip", "xla"), help="run one engine in this process")
    p.add_argument("--json", action="store_true", help="print the engine's results as JSON")
    p.add_argument("--shapes", default="", help="comma-separated names (default: all)")
    p.add_argument("--processes", type=int, default=3, help="process pairs per engine")
    p.add_argument("--rounds", type=int, default=15, help="timed loops per shape per process")
    p.add_argument("--peak", type=float, default=PEAK_GFLOPS, help="fp32 peak GFLOP/s for the %% column")
    p.add_argument("--measure-peak", action="store_true", help="also measure this machine's FMA peak")
    p.add_argument("--no-wait-quiet", action="store_true", help="do not wait for other load to settle")
    a = p.parse_args(argv)
    names = [s for s in a.shapes.split(",") if s]
    shapes = [s for s in SHAPES if not names or s[0] in names]
    quiet = not a.no_wait_quiet
    if a.engine:
        res = (run_xchip if a.engine == "xchip" else run_xla)(shapes, a.rounds, quiet)
        print(json.dumps(res) if a.json else res)
        return 0

    best = {"xchip": {}, "xla": {}}
    extra = {}
    for _ in range(a.processes):
        for engine in ("xchip", "xla"):
            cmd = [sys.executable, os.path.abspath(__file__), "--engine", engine, "--json",
                   "--shapes", ",".join(s[0] for s in shapes), "--rounds", str(a.rounds)]
            if not quiet:
                cmd.append("--no-wait-quiet")
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                print(f"{engine} failed:\n{r.stderr[-3000:]}", file=sys.stderr)
                return 1
            res = json.loads(r.stdout.strip().splitlines()[-1])
            for name, v in res.items():
                if v["seconds"] < best[engine].get(name, float("inf")):
                    best[engine][name] = v["seconds"]
                if engine == "xchip":
                    extra[name] = v
    measured = measure_peak() if a.measure_peak else None
    v = versions()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  " + "  ".join(f"{k} {x}" for k, x in v.items()))
    print(f"# best of {a.processes} processes per engine x {a.rounds} timed loops; peak {a.peak:.0f} GFLOP/s"
          + (f" (measured now: {measured:.0f})" if measured else ""))
    print(f"{'shape':10s} {'B':>2s} {'M':>5s} {'K':>5s} {'N':>5s} {'xchip GF/s':>10s} {'%peak':>6s} "
          f"{'XLA GF/s':>9s} {'xchip/XLA':>9s}  config")
    ratios = []
    for s in shapes:
        name, b, m, k, n, tb, epi = s
        f = flops(s)
        gx = f / best["xchip"][name] / 1e9
        gj = f / best["xla"][name] / 1e9
        ratios.append(gx / gj)
        cfg = extra[name]["config"]
        print(f"{name:10s} {b:2d} {m:5d} {k:5d} {n:5d} {gx:10.1f} {100 * gx / a.peak:5.1f}% {gj:9.1f} "
              f"{gx / gj:9.2f}  {json.dumps(cfg, separators=(',', ':'))}"
              + ("" if extra[name]["rel_err"] < 1e-4 else f"  REL ERR {extra[name]['rel_err']:.1e}"))
    geo = 1.0
    for r in ratios:
        geo *= r
    print(f"geometric mean xchip/XLA: {geo ** (1 / len(ratios)):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
