"""Check xchip's Triton backend on a real NVIDIA GPU, in one command:

    python scripts/gpu_check.py [--out gpu_check.json] [--quick]

For a machine lent for minutes, with a GPU, jax, triton and torch but possibly no package
index, no xchip install and no TVM: this checkout is imported as it is. It

- picks the xchip target the GPU is (or one with its architecture);
- compiles the example models for it (per kernel: status, registers, spills);
- runs each whole program on the GPU (backends/triton/execute.py) and checks it against
  jax.jit on the same GPU, with the example's tolerances;
- times the program against jax.jit (XLA:GPU), an xchip GEMM against torch.matmul
  (cuBLAS), and xchip's fused causal attention against jax.jit and torch's SDPA.

Every step is guarded: a failure is recorded in the table and the JSON, and the next step
runs. Times are wall clock per call over batches of calls between synchronizations,
median over repetitions, after warm-up; each is labelled with what was measured where.
Exit status: 0 all checks passed, 1 some step failed or mismatched, 2 no CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

# Before jax is imported: XLA takes 75% of the GPU's memory at start by default, and torch
# allocates on the same GPU. A TRITON_INTERPRET left in the shell would run every kernel on
# the CPU instead.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.pop("TRITON_INTERPRET", None)

ROOT = Path(__file__).resolve().parent.parent
MAPPED = ("passes", "autotune", "backends")     # top-level folders installed as xchip.<name> (setup.py)
SEED = 0
DEVICE = "cuda"                                 # torch's name for the GPU the check runs on
BUDGET_S = 270.0                                # stop starting new steps past this (the check must end < 5 min)

GEMM_N = 4096
ATTENTION = {"batch": 4, "heads": 16, "seq": 2048, "head_dim": 64}
# a GEMM tile as hand-written Triton GEMMs use on sm_80/sm_90, to tell xchip's tile choice
# apart from the quality of its kernel
FIXED_GEMM_TILES = {"tile_m": 128, "tile_n": 128, "tile_k": 64, "num_warps": 8, "stages": 3}


def import_xchip() -> str:
    """Make this checkout's xchip importable, whether or not it is installed: its root on
    sys.path, and xchip.passes / xchip.autotune / xchip.backends bound to the top-level
    folders as setup.py maps them, where no installed finder does. Says how."""
    import importlib.util
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))           # also for examples/
    import xchip
    if Path(xchip.__file__).resolve().parent != ROOT / "xchip":
        raise ImportError(f"'import xchip' found {xchip.__file__}, not this checkout's ({ROOT})")
    missing = []
    for name in MAPPED:
        full = f"xchip.{name}"
        if full in sys.modules:
            continue
        spec = importlib.util.find_spec(full)
        if spec is None or spec.origin is None or Path(spec.origin).resolve().parent != ROOT / name:
            missing.append(name)
    # register every alias before running any: one package's __init__ may import another
    modules = []
    for name in missing:
        spec = importlib.util.spec_from_file_location(f"xchip.{name}", ROOT / name / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / name)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        setattr(xchip, name, module)
        modules.append((spec, module))
    for spec, module in modules:
        spec.loader.exec_module(module)
    if missing:
        return f"checkout {ROOT} on sys.path, {', '.join('xchip.' + m for m in missing)} aliased to its folders"
    return f"installed, from {ROOT}"


# -- the machine ---------------------------------------------------------------------------------

def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:  # noqa: BLE001 - not installed, or not as a distribution
        return None


def environment() -> dict:
    import torch
    return {"python": platform.python_version(), "platform": platform.platform(),
            "jax": _version("jax"), "jaxlib": _version("jaxlib"), "triton": _version("triton"),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda, "numpy": _version("numpy")}


def _driver() -> str | None:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
        return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
    except Exception:  # noqa: BLE001 - no nvidia-smi: the driver stays unknown
        return None


def gpu() -> dict:
    import torch
    index = torch.cuda.current_device()
    p = torch.cuda.get_device_properties(index)
    return {"name": p.name, "capability": [p.major, p.minor], "arch": f"sm_{p.major}{p.minor}",
            "memory_gib": round(p.total_memory / 2 ** 30, 1), "sms": p.multi_processor_count,
            "driver": _driver(), "index": index}


def pick_target(name: str, major: int, minor: int) -> tuple[str | None, str]:
    """The xchip target to compile for, and why: the one the device's name names (an
    "NVIDIA H200" is "h200", an "NVIDIA A100-SXM4-80GB" "a100"), else one of the same
    architecture, else the newest older one."""
    from xchip.backends.triton.program import GPU_TARGETS
    arch = major * 10 + minor
    named = []
    for target, (backend, a, _) in GPU_TARGETS.items():
        model, _, variant = target.partition("-")
        if backend == "cuda" and a == arch and re.search(rf"\b{model}\b", name, re.IGNORECASE):
            fits = 2 if variant and re.search(variant, name, re.IGNORECASE) else int(variant in ("", "sxm"))
            named.append((fits, target))
    if named:
        target = max(named)[1]
        if re.search("pcie", name, re.IGNORECASE) and "pcie" not in target:
            return target, f"{name} is taken as xchip target {target} (sm_{arch}; none for its PCIe variant)"
        return target, f"{name} is xchip target {target} (sm_{arch})"
    same = {90: "h800-sxm", 80: "a800", 89: "l20"}
    if arch in same:
        t = same[arch]
        return t, (f"{name} (sm_{arch}) is not an xchip target; using {t}, the target with the same "
                   f"architecture: its tile choices, and kernels compiled for sm_{arch}")
    cuda = sorted((a, t) for t, (backend, a, _) in GPU_TARGETS.items() if backend == "cuda" and t in same.values())
    older = [(a, t) for a, t in cuda if a // 10 == major and a <= arch] or \
            ([(a, t) for a, t in cuda if a <= arch] if arch > 90 else [])
    if not older:
        return None, f"{name} (sm_{arch}): no xchip target shares its architecture"
    a, t = older[-1]
    return t, (f"{name} (sm_{arch}) is not an xchip target and none has its architecture; using {t} "
               f"(sm_{a}) for tile choices and artifacts; Triton compiles the kernels it runs for sm_{arch}")


# -- measuring -----------------------------------------------------------------------------------

def time_calls(call, sync, reps: int, batch: int, warmup: int = 3) -> dict:
    """Median wall-clock seconds per call: `batch` calls between synchronizations, `reps` times."""
    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        for _ in range(batch):
            call()
        sync()
        times.append((time.perf_counter() - start) / batch)
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "reps": reps, "batch": batch}


def _torch_sync():
    import torch
    torch.cuda.synchronize()


def _jax_timer(fn, args):
    """(call, sync) for a jitted function on device-resident arguments."""
    import jax
    last = []

    def call():
        last[:] = [fn(*args)]

    def sync():
        jax.block_until_ready(last)
    return call, sync


def _matmul_precision(precision: str):
    import contextlib

    import jax
    if precision == "default" or not hasattr(jax, "default_matmul_precision"):
        return contextlib.nullcontext()
    return jax.default_matmul_precision(precision)


def _error(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"


def _kernel_rows(kernels) -> list[dict]:
    """One row per kernel; a while loop's row (kind "loop") is followed by its condition's
    and body's kernels."""
    rows = []
    for k in kernels:
        a = k.artifact
        rows.append({"kernel": k.group, "kind": k.kind, "status": k.status, "reason": k.reason, "config": k.config,
                     "tiles_from": k.tiles_from, "registers": a.registers if a else None,
                     "spill_bytes": a.spills if a else None, "shared_bytes": a.shared_bytes if a else None,
                     "num_warps": a.num_warps if a else None, "num_stages": a.num_stages if a else None})
        rows += _kernel_rows(getattr(k, "parts", ()))
    return rows


class Check:
    """Shared state of one run: the target, the deadline, where jax runs."""

    def __init__(self, target: str, quick: bool, device: dict, env: dict, budget_s: float):
        import jax
        self.target = target
        self.quick = quick
        self.device = device
        self.env = env
        self.deadline = time.monotonic() + budget_s
        self.reps = 7 if quick else 15
        jax_device = jax.devices()[0]
        self.jax_device = f"{jax_device.platform}: {getattr(jax_device, 'device_kind', jax_device)}"
        self.jax_on_gpu = jax_device.platform in ("gpu", "cuda")

    def late(self) -> bool:
        return time.monotonic() > self.deadline

    def labels(self, what: str) -> dict:
        e, d = self.env, self.device
        return {"kind": "measured", "what": what,
                "xchip_on": f"{d['name']} ({d['arch']}), driver {d['driver'] or '?'}, CUDA {e['torch_cuda']}; "
                            f"Triton {e['triton']}, torch {e['torch']}",
                "jax_on": f"{self.jax_device}; jax {e['jax']}, jaxlib {e['jaxlib']}",
                "method": "wall clock per call, batches of calls between synchronizations, median of reps "
                          "after warm-up"}

    def program(self, fn, args: tuple, rec: dict, matmul_tiles: dict | None = None):
        """The TritonProgram of fn on args, with its per-kernel table in rec: compiled by
        xchip for the target, or (`matmul_tiles`, not xchip's choice) with those tiles for
        every matmul, compiled here only to read registers and spills."""
        import xchip
        from xchip.backends.triton.execute import TritonProgram
        from xchip.errors import FallbackWarning
        rec["stage"] = "compile"
        lowered = xchip.jit(fn, target=self.target).lower(*args)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FallbackWarning)     # listed in the record instead
            if matmul_tiles is None:
                artifacts = lowered.compile().artifacts
                rec["kernels"] = _kernel_rows(artifacts.kernels)
                program = TritonProgram(lowered.kernel_graph, self.target, artifacts=artifacts)
            else:
                configs = {g.name: matmul_tiles for g in lowered.kernel_graph.groups if g.kind == "matmul"}
                program = TritonProgram(lowered.kernel_graph, self.target, configs=configs)
                rec["kernels"] = [self._compile_step(s) for s in program.steps]
        rec["on_reference"] = [{"kernel": n, "reason": r} for n, r in program.on_reference]
        return program

    def _compile_step(self, step) -> dict:
        from xchip.backends.triton.program import gpu_target
        from xchip.backends.triton.runtime import compile_for
        row = {"kernel": step.name, "kind": step.group.kind, "constexprs": step.kernel and step.kernel.constexprs,
               "status": "compiled" if step.kernel else "not generated", "reason": step.reason}
        if step.kernel is not None:
            try:
                a = compile_for(step.kernel, gpu_target(self.target), num_warps=step.num_warps,
                                num_stages=step.num_stages)
                row.update(registers=a.registers, spill_bytes=a.spills, shared_bytes=a.shared_bytes,
                           num_warps=a.num_warps, num_stages=a.num_stages)
            except Exception as e:  # noqa: BLE001 - the kernel may still run; say why there are no numbers
                row.update(status="failed", reason=_error(e))
        return row

    # -- the example models ----------------------------------------------------------------

    def model(self, name: str, dtype: str) -> dict:
        import jax
        import numpy as np

        from examples.registry import get
        from xchip.numerics import compare
        rec = {"model": name, "dtype": dtype, "seed": SEED}
        try:
            ex = get(name)
            params, x = ex.make_args(np.random.default_rng(SEED), dtype)
            leaves = [np.asarray(a) for a in jax.tree_util.tree_leaves((params, x))]
            program = self.program(ex.fn, (params, x), rec)
            rec["stage"] = "run on the GPU"
            got = program.run(leaves).outputs
            rec["stage"] = "jax.jit"
            # XLA:GPU runs f32 dots in TF32 by default; xchip's f32 kernels do not round
            precision = "highest" if dtype == "f32" else "default"
            with _matmul_precision(precision):
                jitted = jax.jit(ex.fn)
                args = jax.device_put((params, x))
                want = [np.asarray(w) for w in jax.tree_util.tree_leaves(jitted(*args))]
                rec["stage"] = "check"
                rec["check"] = []
                for k, (a, w) in enumerate(zip(got, want)):
                    c = compare(a, w, ex.rtol[dtype], ex.atol[dtype])
                    rec["check"].append({"output": k, "ok": c.ok, "max_abs_error": c.max_abs_error,
                                         "max_rel_error": c.max_rel_error, "rtol": ex.rtol[dtype],
                                         "atol": ex.atol[dtype], "detail": str(c)})
                rec["ok"] = all(c["ok"] for c in rec["check"])
                if self.late():
                    rec.pop("stage")
                    rec["timing"] = "skipped: past the time budget"
                    return rec
                rec["stage"] = "timing"
                call = program.prepare(leaves)
                xc = time_calls(call, _torch_sync, self.reps, 20)
                jx = time_calls(*_jax_timer(jitted, args), self.reps, 20)
            loops = sum(st.loop is not None for st in program.steps)
            rec["timing"] = dict(self.labels("whole program, inputs already on the device"
                                             + (f"; {len(program.on_reference)} group(s) on the host reference "
                                                "executor, with copies" if program.on_reference else "")
                                             + (f"; {loops} while loop(s) run from the host, the condition read "
                                                "back every iteration" if loops else "")),
                                 xchip=xc, jax=jx, xchip_over_jax=xc["median_ms"] / jx["median_ms"],
                                 jax_matmul_precision=precision)
            rec.pop("stage")
        except Exception as e:  # noqa: BLE001 - one model's failure must not stop the others
            rec["error"] = f"{rec.get('stage', 'setup')}: {_error(e)}"
            rec["traceback"] = traceback.format_exc(limit=8)
        return rec

    # -- one GEMM --------------------------------------------------------------------------

    def gemm(self, n: int) -> dict:
        import ml_dtypes
        import numpy as np
        import torch

        from xchip.backends.triton.runtime import to_torch
        rec = {"what": f"bf16 GEMM {n}x{n}x{n}, f32 accumulation", "tflop": 2 * n ** 3 / 1e12}
        try:
            rng = np.random.default_rng(SEED)
            a, b = (rng.standard_normal((n, n), np.float32).astype(ml_dtypes.bfloat16) for _ in range(2))
            ta, tb = to_torch(a, DEVICE), to_torch(b, DEVICE)
            rec["stage"] = "torch.matmul"
            want = torch.matmul(ta, tb).float()
            scale = float(want.abs().max())
            t_cublas = time_calls(lambda: torch.matmul(ta, tb), _torch_sync, self.reps, 10)
            rec["torch_matmul"] = dict(t_cublas, tflops=rec["tflop"] / (t_cublas["median_ms"] / 1e3))
            for label, tiles in (("xchip", None), ("xchip_fixed_tiles", FIXED_GEMM_TILES)):
                if self.late():
                    rec[label] = "skipped: past the time budget"
                    continue
                sub = {} if tiles is None else {"tiles": tiles, "note": "not xchip's choice"}
                rec[label] = sub
                try:
                    program = self.program(lambda x, y: x @ y, (a, b), sub, tiles)
                    call = program.prepare([a, b])
                    sub["stage"] = "run"
                    got = call()[0].float()
                    err = float((got - want).abs().max()) / scale
                    # bf16 output: one rounding (2^-8 relative) plus summation order
                    sub.update(max_error_over_max=err, ok=err < 1e-2)
                    sub["stage"] = "timing"
                    t = time_calls(call, _torch_sync, self.reps, 10)
                    sub.update(t, tflops=rec["tflop"] / (t["median_ms"] / 1e3),
                               over_cublas_time=t["median_ms"] / t_cublas["median_ms"])
                    sub.pop("stage")
                except Exception as e:  # noqa: BLE001
                    sub["error"] = f"{sub.get('stage', 'setup')}: {_error(e)}"
            rec["labels"] = self.labels("one GEMM, operands on the device") | {"baseline": "torch.matmul (cuBLAS)"}
            rec.pop("stage")
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{rec.get('stage', 'setup')}: {_error(e)}"
        return rec

    # -- causal attention ------------------------------------------------------------------

    def attention(self, batch: int, heads: int, seq: int, head_dim: int) -> dict:
        import jax
        import ml_dtypes
        import numpy as np
        import torch

        from examples.registry import get
        from xchip.backends.triton.runtime import to_torch

        from examples.transformer import causal_attention      # [batch, seq, heads, head_dim]

        shape = (batch, seq, heads, head_dim)
        # causal: half of the 4*B*H*S^2*D of two full products
        rec = {"what": f"causal attention bf16, batch {batch}, {heads} heads, seq {seq}, head dim {head_dim}",
               "tflop": 2 * batch * heads * seq * seq * head_dim / 1e12}
        try:
            rng = np.random.default_rng(SEED)
            q, k, v = (rng.standard_normal(shape, np.float32).astype(ml_dtypes.bfloat16) for _ in range(3))
            program = self.program(causal_attention, (q, k, v), rec)
            rec["stage"] = "run on the GPU"
            call = program.prepare([q, k, v])
            got = call()[0]
            rec["stage"] = "jax.jit"
            jitted = jax.jit(causal_attention)
            args = jax.device_put((q, k, v))
            want = np.asarray(jitted(*args))
            rec["stage"] = "check"
            from xchip.backends.triton.runtime import to_numpy
            from xchip.numerics import compare
            tol = get("transformer").rtol["bf16"]
            c = compare(to_numpy(got, ml_dtypes.bfloat16), want, tol, tol)
            rec["check"] = {"ok": c.ok, "max_abs_error": c.max_abs_error, "rtol": tol, "atol": tol, "detail": str(c)}
            rec["ok"] = c.ok
            if self.late():
                rec.pop("stage")
                rec["timing"] = "skipped: past the time budget"
                return rec
            rec["stage"] = "timing"
            xc = time_calls(call, _torch_sync, self.reps, 5)
            # XLA:CPU takes seconds per call at this size
            jx = time_calls(*_jax_timer(jitted, args), *((self.reps, 5) if self.jax_on_gpu else (2, 1)), warmup=1)
            rec["timing"] = dict(self.labels("one attention, operands on the device"),
                                 xchip=dict(xc, tflops=rec["tflop"] / (xc["median_ms"] / 1e3)),
                                 jax=dict(jx, tflops=rec["tflop"] / (jx["median_ms"] / 1e3)),
                                 xchip_over_jax=xc["median_ms"] / jx["median_ms"])
            rec["stage"] = "torch sdpa"
            tq, tk, tv = (to_torch(a, DEVICE).transpose(1, 2).contiguous() for a in (q, k, v))
            sdpa = torch.nn.functional.scaled_dot_product_attention
            ts = time_calls(lambda: sdpa(tq, tk, tv, is_causal=True), _torch_sync, self.reps, 5)
            rec["timing"]["torch_sdpa"] = dict(ts, tflops=rec["tflop"] / (ts["median_ms"] / 1e3),
                                               note="[batch, heads, seq, dim] layout, is_causal=True")
            rec.pop("stage")
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{rec.get('stage', 'setup')}: {_error(e)}"
            rec["traceback"] = traceback.format_exc(limit=8)
        return rec


# -- the report ----------------------------------------------------------------------------------

def _ms(t) -> str:
    return f"{t['median_ms']:.3f}" if isinstance(t, dict) and "median_ms" in t else "-"


def print_table(report: dict) -> None:
    d = report["device"]
    print(f"gpu_check: {d['name']} ({d['arch']}, driver {d['driver'] or '?'}), {report['target_note']}")
    print(f"  xchip imported: {report['xchip_import']}; jax.jit runs on {report['jax_device']}")
    print(f"  {'model':<12} {'dtype':<5} {'kernels':>8} {'host':>4}  {'check':<26} {'xchip ms':>9} {'jax ms':>8} "
          f"{'xchip/jax':>9}")
    for r in report["models"]:
        kernels = [k for k in r.get("kernels") or [] if k["kind"] != "loop"]
        built = f"{sum(k['status'] == 'compiled' for k in kernels)}/{len(kernels)}" if kernels else "-"
        host = str(len(r["on_reference"])) if "on_reference" in r else "-"
        if "error" in r:
            check = f"ERROR {r['error']}"[:60]
        elif "check" in r:
            worst = max((c["max_abs_error"] for c in r["check"]), default=0.0)
            check = f"{'ok' if r['ok'] else 'MISMATCH'} (max abs {worst:.2g})"
        else:
            check = "-"
        t = r.get("timing") if isinstance(r.get("timing"), dict) else {}
        ratio = f"{t['xchip_over_jax']:.2f}x" if "xchip_over_jax" in t else "-"
        print(f"  {r['model']:<12} {r['dtype']:<5} {built:>8} {host:>4}  {check:<26} {_ms(t.get('xchip')):>9} "
              f"{_ms(t.get('jax')):>8} {ratio:>9}")
    g = report.get("gemm")
    if g:
        if "error" in g:
            print(f"  {g['what']}: ERROR {g['error']}")
        else:
            line = f"  {g['what']}: cuBLAS {g['torch_matmul']['tflops']:.0f} TFLOP/s"
            for label in ("xchip", "xchip_fixed_tiles"):
                s = g.get(label)
                if isinstance(s, dict) and "tflops" in s:
                    line += (f"; {label} {s['tflops']:.0f} TFLOP/s ({s['over_cublas_time']:.2f}x cuBLAS time, "
                             f"{'ok' if s['ok'] else 'MISMATCH'})")
                elif isinstance(s, dict):
                    line += f"; {label} ERROR {s.get('error')}"
            print(line)
    a = report.get("attention")
    if a:
        if "error" in a:
            print(f"  {a['what']}: ERROR {a['error']}")
        elif isinstance(a.get("timing"), dict):
            t = a["timing"]
            sdpa = f", torch SDPA {t['torch_sdpa']['median_ms']:.3f} ms" if "torch_sdpa" in t else ""
            print(f"  {a['what']}: xchip {t['xchip']['median_ms']:.3f} ms ({t['xchip']['tflops']:.0f} TFLOP/s, "
                  f"{'ok' if a['ok'] else 'MISMATCH'}), jax.jit {t['jax']['median_ms']:.3f} ms{sdpa}")
    print(f"  {report['elapsed_s']:.0f} s; {'all checks passed' if report['passed'] else 'SOME CHECKS FAILED'}")


def passed(report: dict) -> bool:
    """Every step ran (none failed, none skipped) and every check matched."""
    def ok(r):
        return isinstance(r, dict) and "error" not in r and bool(r.get("ok"))
    gemm = report.get("gemm") or {}
    return (all(ok(r) for r in report["models"]) and ok(report.get("attention"))
            and "error" not in gemm and all(ok(gemm.get(k)) for k in ("xchip", "xchip_fixed_tiles")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check.json", help="where to write the JSON report")
    ap.add_argument("--quick", action="store_true", help="mlp and transformer only, fewer repetitions")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help="start no new step after this many seconds")
    args = ap.parse_args(argv)
    start = time.monotonic()
    try:
        how = import_xchip()
        import torch

        import xchip.backends.triton.execute  # noqa: F401 - fail here, before the GPU, if it does not import
        from examples.registry import EXAMPLES
    except Exception as e:  # noqa: BLE001
        print(f"gpu_check: cannot import xchip from {ROOT}: {_error(e)}", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        why = "a CPU-only build" if torch.version.cuda is None else "a CUDA build that sees no device"
        print(f"gpu_check: no CUDA GPU (torch {torch.__version__} is {why}); nothing checked", file=sys.stderr)
        return 2
    device = gpu()
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(), "device": device,
              "xchip_import": how, "quick": args.quick, "models": []}
    target, note = pick_target(device["name"], *device["capability"])
    report.update(target=target, target_note=note)
    if target is None:
        print(f"gpu_check: {note}", file=sys.stderr)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
        return 1
    check = Check(target, args.quick, device, report["environment"], args.budget_s - (time.monotonic() - start))
    report["jax_device"] = check.jax_device
    # the most telling steps first, so that a slow machine runs out of budget on the others
    first = ["mlp", "transformer"]
    rest = [] if args.quick else [n for n in EXAMPLES if n not in first]
    steps = [("model", (n, d)) for n in first for d in ("f32", "bf16")] + [("gemm", (GEMM_N,)), ("attention", ())] + \
            [("model", (n, d)) for n in rest for d in ("f32", "bf16")]
    for kind, step_args in steps:
        label = " ".join(map(str, step_args)) if kind == "model" else kind
        if check.late():
            skipped = {"error": "skipped: past the time budget"}
            if kind == "model":
                report["models"].append(dict(model=step_args[0], dtype=step_args[1], **skipped))
            else:
                report[kind] = dict(what=kind, **skipped)
            continue
        print(f"gpu_check: {label} ...", file=sys.stderr, flush=True)
        if kind == "model":
            report["models"].append(check.model(*step_args))
        elif kind == "gemm":
            report["gemm"] = check.gemm(*step_args)
        else:
            report["attention"] = check.attention(**ATTENTION)
    report["elapsed_s"] = time.monotonic() - start
    report["passed"] = passed(report)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print_table(report)
    print(f"gpu_check: wrote {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
