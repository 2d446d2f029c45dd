"""The README's demo: compile every example model with xchip, print its IR and kernel list,
run it on the CPU on fresh random inputs and check it against `jax.jit`, then write the
kernel performance report (`xchip report`) of the f32 models on the host CPU (measured) and
on several chips (compiled by Triton where xchip has a GPU backend; times modeled).

    python -m examples.demo [--out DIR] [--models mlp,cnn] [--targets h800,h20] [--seed N]

Writes DIR/report.html (plots inline), DIR/report.md, DIR/report.json, DIR/checks.md (the
comparison with jax.jit) and each model's xchip IR and StableHLO.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

import xchip
from xchip import report
from xchip.kernels import format_kernel_table
from xchip.numerics import compare

from .registry import EXAMPLES

DTYPES = ("f32", "bf16")
# Export-reduced Nvidia parts and domestic accelerators, next to the host CPU.
DEFAULT_TARGETS = ("cpu", "a800", "h800", "h20", "l20", "dcu-z100", "ascend910b3")


def run_example(name: str, dtype: str, rng: np.random.Generator, out: Path, verbose: bool) -> dict:
    ex = EXAMPLES[name]
    args = ex.make_args(rng, dtype)
    fn = xchip.jit(ex.fn, target="cpu")
    start = time.perf_counter()
    lowered = fn.lower(*args)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    (out / f"{name}_{dtype}.xchip").write_text(lowered.as_text())
    (out / f"{name}_{dtype}.stablehlo.mlir").write_text(lowered.stablehlo())
    if verbose:
        print(lowered.as_text())
        print(format_kernel_table(compiled.kernels))
    got = jax.tree_util.tree_leaves(compiled(*args))
    want = jax.tree_util.tree_leaves(jax.jit(ex.fn)(*args))
    checks = [compare(np.asarray(g), np.asarray(w), ex.rtol[dtype], ex.atol[dtype]) for g, w in zip(got, want)]
    ok = len(got) == len(want) and all(c.ok for c in checks)
    worst = max(checks, key=lambda c: c.max_abs_error)
    print(f"{name:12s} {dtype:5s} {'ok' if ok else 'MISMATCH':8s} {len(compiled.kernels):3d} kernels  "
          f"vs jax.jit: {worst}  (rtol {ex.rtol[dtype]:g}, atol {ex.atol[dtype]:g})", flush=True)
    return {"model": name, "dtype": dtype, "ok": ok, "groups": compiled.kernel_graph.counts(),
            "backends": sorted({k.backend for k in compiled.kernels}),
            "mflop": sum(k.flops for k in compiled.kernels) / 1e6, "max_abs_error": worst.max_abs_error,
            "rtol": ex.rtol[dtype], "atol": ex.atol[dtype], "compile_s": compile_s}


def write_checks(rows: list[dict], out: Path, seed: int) -> Path:
    lines = [
        "# xchip demo: results against jax.jit", "",
        f"Target `cpu`: kernels compiled by TVM/LLVM (`tvm-llvm`; `reference` marks groups run on the numpy "
        f"reference executor); verification level **executed**: results checked against `jax.jit` on the CPU "
        f"(jax {jax.__version__}). Inputs: fresh random, seed {seed}. Compile times include TVM builds the "
        "kernel cache did not have.", "",
        "| model | dtype | result | kernel groups | run by | MFLOP | max abs error | rtol / atol | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        groups = ", ".join(f"{n} {k}" for k, n in sorted(r["groups"].items()))
        lines.append(f"| {r['model']} | {r['dtype']} | {'ok' if r['ok'] else '**MISMATCH**'} | {groups} | "
                     f"{', '.join(r['backends'])} | {r['mflop']:.3f} | {r['max_abs_error']:.3g} | "
                     f"{r['rtol']:g} / {r['atol']:g} | {r['compile_s']:.2f} |")
    path = out / "checks.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_performance_report(models: list[str], target_names: list[str], out: Path, seed: int) -> Path:
    """`xchip report` for the f32 models: measured on the host, compiled or modeled elsewhere."""
    programs = []
    for name in models:
        ex = EXAMPLES[name]
        programs.append(report.Program(f"{name} (f32)", ex.fn, ex.make_args(np.random.default_rng(seed), "f32"),
                                       source=f"examples/{name}.py", rtol=ex.rtol["f32"], atol=ex.atol["f32"]))
    data = report.collect(programs, target_names, progress=lambda m: print(f"report: {m}", flush=True))
    return report.write(data, out)["html"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/demo", help="folder for the report and the IR files")
    parser.add_argument("--models", default=",".join(EXAMPLES), help="comma-separated example names")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="targets of the performance report (comma-separated)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the random inputs (default: fresh)")
    parser.add_argument("--quiet", "-q", action="store_true", help="do not print IR and kernel lists")
    ns = parser.parse_args(argv)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    seed = ns.seed if ns.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    models = ns.models.split(",")
    rows = [run_example(name, dtype, rng, out, verbose=not ns.quiet and dtype == "f32")
            for name in models for dtype in DTYPES]
    checks = write_checks(rows, out, seed)
    html = write_performance_report(models, [t for t in ns.targets.split(",") if t], out, seed)
    failed = [f"{r['model']}/{r['dtype']}" for r in rows if not r["ok"]]
    print(f"\nchecks: {checks}  ({len(rows) - len(failed)} of {len(rows)} match jax.jit)")
    print(f"report: {html} (and report.md, report.json)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
