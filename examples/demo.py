"""The README's demo: compile every example model with xchip, print its IR and kernel list,
run it on the CPU on fresh random inputs and check it against `jax.jit`, estimate it on
several chips with the cost model, and write a report.

    python -m examples.demo [--out DIR] [--models mlp,cnn] [--targets h800,h20] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

import xchip
from xchip import targets
from xchip.kernels import format_kernel_table
from xchip.numerics import compare
from xchip.targets.estimate import format_seconds

from .registry import EXAMPLES

DTYPES = ("f32", "bf16")
# Export-reduced Nvidia parts and domestic accelerators: what the kernel graph would cost
# there according to the cost model (nothing executes on them yet).
DEFAULT_TARGETS = ("a800", "h800", "h20", "l20", "ascend910b3", "dcu-z100")


def run_example(name: str, dtype: str, rng: np.random.Generator, out: Path, verbose: bool,
                estimate_on: tuple[str, ...]) -> dict:
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
    start = time.perf_counter()
    got = jax.tree_util.tree_leaves(compiled(*args))
    run_s = time.perf_counter() - start
    want = jax.tree_util.tree_leaves(jax.jit(ex.fn)(*args))
    checks = [compare(np.asarray(g), np.asarray(w), ex.rtol[dtype], ex.atol[dtype]) for g, w in zip(got, want)]
    ok = len(got) == len(want) and all(c.ok for c in checks)
    worst = max(checks, key=lambda c: c.max_abs_error)
    estimates = {t: compiled.estimate(t) for t in estimate_on}
    print(f"{name:12s} {dtype:5s} {'ok' if ok else 'MISMATCH':8s} {len(compiled.kernels):3d} kernels  "
          f"vs jax.jit: {worst}  (rtol {ex.rtol[dtype]:g}, atol {ex.atol[dtype]:g})", flush=True)
    return {"model": name, "dtype": dtype, "ok": ok, "kernels": len(compiled.kernels),
            "groups": compiled.kernel_graph.counts(), "estimates": estimates,
            "mflop": sum(k.flops for k in compiled.kernels) / 1e6, "max_abs_error": worst.max_abs_error,
            "max_rel_error": worst.max_rel_error, "rtol": ex.rtol[dtype], "atol": ex.atol[dtype],
            "compile_s": compile_s, "run_s": run_s}


def write_report(rows: list[dict], out: Path, seed: int) -> Path:
    lines = [
        "# xchip demo report", "",
        f"Target `cpu`: kernels run on the numpy reference executor; verification level **executed** "
        f"(results checked against `jax.jit` on the CPU, jax {jax.__version__}). Inputs: fresh random, seed {seed}.",
        "Times are measured on this machine with the numpy reference executor: they say how long the "
        "demo took, not how fast compiled xchip code is.", "",
        "| model | dtype | result | kernel groups | MFLOP | max abs error | rtol / atol | compile s | run s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        groups = ", ".join(f"{n} {k}" for k, n in sorted(r["groups"].items()))
        lines.append(f"| {r['model']} | {r['dtype']} | {'ok' if r['ok'] else '**MISMATCH**'} | {groups} | "
                     f"{r['mflop']:.3f} | {r['max_abs_error']:.3g} | {r['rtol']:g} / {r['atol']:g} | "
                     f"{r['compile_s']:.2f} | {r['run_s']:.2f} |")
    names = list(rows[0]["estimates"]) if rows else []
    if names:
        lines += ["", "## Modeled time per target", "",
                  "Cost-model estimates of the fused kernel graph (modeled, not measured; nothing executes on "
                  "these chips yet, verification level *none*). `>=` marks lower bounds where a figure the "
                  "model needs is unknown (see `xchip targets show NAME`).", "",
                  "| model | dtype | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for r in rows:
            cells = []
            for t in names:
                e = r["estimates"][t]
                cells.append(("&ge;" if e.lower_bound and e.total_s is not None else "") + format_seconds(e.total_s))
            lines.append(f"| {r['model']} | {r['dtype']} | " + " | ".join(cells) + " |")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/demo", help="folder for the report and the IR files")
    parser.add_argument("--models", default=",".join(EXAMPLES), help="comma-separated example names")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="chips to estimate on with the cost model (comma-separated)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the random inputs (default: fresh)")
    parser.add_argument("--quiet", "-q", action="store_true", help="do not print IR and kernel lists")
    ns = parser.parse_args(argv)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    seed = ns.seed if ns.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    rows = []
    for name in ns.models.split(","):
        for dtype in DTYPES:
            rows.append(run_example(name, dtype, rng, out, verbose=not ns.quiet and dtype == "f32",
                                    estimate_on=tuple(targets.resolve_name(t) for t in ns.targets.split(",") if t)))
    report = write_report(rows, out, seed)
    failed = [f"{r['model']}/{r['dtype']}" for r in rows if not r["ok"]]
    print(f"\nreport: {report}  ({len(rows) - len(failed)} of {len(rows)} match jax.jit)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
