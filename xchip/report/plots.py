"""The report's plots, drawn with matplotlib as SVG text to embed in report.html.

Each function takes part of the report dict and returns `(svg, None)` or `(None, why not)`:
a target whose descriptor has no peak or bandwidth has no roofline, and the page says so
instead of showing an empty frame.
"""

from __future__ import annotations

import io
import itertools

import numpy as np

from ..targets.estimate import format_seconds

KIND_COLORS = {"matmul": "#1f77b4", "conv": "#9467bd", "attention": "#d62728", "reduction": "#2ca02c",
               "elementwise": "#ff7f0e", "opaque": "#7f7f7f"}
_PEAK_KEY = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "f8e4m3fn": "fp8", "f8e5m2": "fp8", "f64": "fp64",
             "i8": "int8"}
_ids = itertools.count()


def _svg(fig) -> str:
    import matplotlib
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    # ids inside each SVG must not collide with another SVG's on the same page
    with matplotlib.rc_context({"svg.hashsalt": f"xchip-plot-{next(_ids)}", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float, height: float):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=(width, height), dpi=96)


def time_per_target(program: dict) -> tuple[str | None, str | None]:
    """Whole-program time on each target, measured or modeled, on a log scale."""
    rows = [(t["target"], t["time"], t["verification_level"]) for t in program["targets"]
            if t["time"]["seconds"]]
    if not rows:
        return None, "no target has a known time for this program"
    fig, ax = _figure(7.5, 0.45 * len(rows) + 1.2)
    names = [f"{name}\n({level})" for name, _, level in rows]
    seconds = [tm["seconds"] * 1e6 for _, tm, _ in rows]
    colors = ["#2b6cb0" if tm["source"] == "measured" else "#a0aec0" for _, tm, _ in rows]
    bars = ax.barh(names, seconds, color=colors)
    for bar, (_, tm, _) in zip(bars, rows):
        label = f"{'>= ' if tm['lower_bound'] else ''}{format_seconds(tm['seconds'])} {tm['source']}"
        ax.annotate(label, (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("time per call (us, log scale); dark: measured here, light: modeled by the cost model")
    ax.margins(x=0.35)
    ax.tick_params(axis="y", labelsize=8)
    return _svg(fig), None


def roofline(target: dict) -> tuple[str | None, str | None]:
    """Kernels as points (arithmetic intensity, achieved TFLOP/s) under the target's roofs."""
    peaks = target["peaks"]
    bw = peaks["bandwidth_gbs"]
    # the peaks of the dtypes these kernels compute in, and the f32 vector units every target has
    used = {_PEAK_KEY.get(d) for k in target["kernels"] for d in k["dtypes"]} | {"fp32"}
    roofs = {f"{key} {unit}": v for unit in ("matrix", "vector")
             for key, v in peaks[f"{unit}_tflops"].items() if key in used}
    if bw is None or not roofs:
        peak = f"peak TFLOP/s for {' or '.join(sorted(k for k in used if k))}"
        missing = " and ".join(x for x, ok in (("memory bandwidth", bw is not None), (peak, bool(roofs))) if not ok)
        return None, f"{target['target']}'s descriptor lacks its {missing}: no roofline can be drawn"
    points = [k for k in target["kernels"] if k["flops"] > 0 and k["bytes"] > 0 and k["time"]["seconds"]]
    if not points:
        return None, "no kernel has both FLOPs and a known time"
    fig, ax = _figure(7.5, 4.6)
    intensities = [k["flops"] / k["bytes"] for k in points]
    lo, hi = min(intensities + [0.1]) / 3, max(intensities + [1e3]) * 3
    x = np.geomspace(lo, hi, 200)
    for i, (name, tflops) in enumerate(sorted(roofs.items(), key=lambda kv: -kv[1])):
        y = np.minimum(tflops, x * bw / 1e3)
        ax.plot(x, y, color="#444", lw=1.4 - 0.3 * i, ls="-" if i == 0 else "--")
        ax.annotate(f"{name} {tflops:g} TFLOP/s", (hi, tflops), xytext=(-4, 3), textcoords="offset points",
                    ha="right", fontsize=7, color="#444")
    ax.annotate(f"{bw:g} GB/s", (lo * 2, lo * 2 * bw / 1e3), xytext=(2, 6), textcoords="offset points",
                fontsize=7, color="#444", rotation=0)
    for k, ai in zip(points, intensities):
        tflops = k["flops"] / k["time"]["seconds"] / 1e12
        marker = "o" if k["time"]["source"] == "measured" else "s"
        ax.scatter([ai], [tflops], color=KIND_COLORS.get(k["kind"], "#000"), marker=marker, s=28, zorder=3,
                   edgecolors="white", linewidths=0.5)
        ax.annotate(k["name"], (ai, tflops), xytext=(4, -3), textcoords="offset points", fontsize=6.5)
    for kind in sorted({k["kind"] for k in points}):
        ax.scatter([], [], color=KIND_COLORS.get(kind, "#000"), label=kind, s=28)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("achieved TFLOP/s")
    source = points[0]["time"]["source"]
    ax.set_title(f"{target['target']}: kernels at their {source} times ({target['verification_level']})",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", alpha=0.25)
    return _svg(fig), None


def convergence(target: dict) -> tuple[str | None, str | None]:
    """Per kernel, the best time found so far after each trial, relative to its first trial
    (the database's measured trials in the order they ran)."""
    curves = [t for t in target["tuning"] if sum(s is not None for s in t["trials"]) >= 2]
    if not curves and target.get("tuning_note"):
        return None, target["tuning_note"]
    if not curves:
        return None, (f"no measured tuning trials in the tuning database for these kernels on "
                      f"{target['target']} (`xchip autotune` records them)")
    fig, ax = _figure(7.5, 3.6)
    for c in curves:
        best, ys = None, []
        for s in c["trials"]:
            if s is not None:
                best = s if best is None else min(best, s)
            ys.append(best)
        first = next(y for y in ys if y is not None)
        xs = [i + 1 for i, y in enumerate(ys) if y is not None]
        ax.step(xs, [y / first for y in ys if y is not None], where="post", label=c["kernel"], lw=1.2)
    ax.set_xlabel("trial (in the order measured)")
    ax.set_ylabel("best time so far / first trial")
    ax.set_title(f"{target['target']}: tuning convergence (measured trials from the tuning database)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, alpha=0.25)
    return _svg(fig), None

