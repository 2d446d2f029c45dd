"""report.md and report.html from a report dict (see collect.py). Both say, next to every
time, whether it was measured or modeled and the target's verification level."""

from __future__ import annotations

import html

from ..targets.estimate import format_seconds
from . import plots

READING = (
    "Times marked measured ran here, on the host CPU, inside the compiled program (median of "
    "repeated calls). Times marked modeled are the cost model's: nothing ran on that chip. "
    "The verification level says what was checked for the target (docs/verification.md). "
    "% roofline is the kernel's ideal time (FLOPs at the target's peak, bytes at its memory "
    "bandwidth, whichever is longer) over its time; on the host CPU the peak is the measured "
    "BLAS rate, so a matmul can pass 100. Bound: what limits the kernel (compute, memory, or "
    "latency when fixed per-call costs dominate a tiny kernel). A time marked >= is a lower "
    "bound, and a % roofline marked ~ rests on one: the descriptor lacks a number the model needs.")


# ---- shared cells ------------------------------------------------------------------------

def _time(t: dict) -> str:
    if t["seconds"] is None:
        return "unknown"
    return f"{'>= ' if t['lower_bound'] else ''}{format_seconds(t['seconds'])}"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "" if x is None else format(x, fmt)


def _config(k: dict) -> str:
    c = k["config"]
    if not c:
        return k["config_source"] or "default"
    keys = [key for key in ("tile_m", "tile_n", "tile_k", "tile_q") if key in c]
    text = "x".join(str(c[key]) for key in keys) if keys else ", ".join(f"{a}={b}" for a, b in sorted(c.items()))
    return f"{text} ({k['config_source']})" if k["config_source"] else text


def _shapes(k: dict) -> str:
    return f"{', '.join(k['inputs'])} -> {', '.join(k['outputs'])}"


def _gpu(k: dict) -> tuple[str, str, str]:
    g = k["gpu"]
    if not g:
        return "", "", ""
    if g["status"] != "compiled":
        return g["status"], "", ""
    return (str(g["registers"] if g["registers"] is not None else "?"),
            f"{g['shared_bytes'] / 1024:.1f} KiB" if g["shared_bytes"] is not None else "?",
            f"{g['spill_bytes']} B" if g["spill_bytes"] is not None else "?")


def _furthest(t: dict) -> str:
    f = t["furthest"]
    if f is None:
        return "unknown (no roofline)"
    pct = f"{f['percent']:.1f}% of roofline" if f["percent"] is not None else "roofline unknown"
    return f"{f['kernel']} ({pct}, {f['bound']}, {format_seconds(f['lost_seconds'])} above it)"


def _headline(t: dict) -> str:
    check = t.get("check")
    if not check:
        return ""
    state = "match" if check["ok"] else "DO NOT MATCH"
    return f"Results {state} {check['against']} (max abs error {check['max_abs_error']:.3g})"


KERNEL_COLUMNS = ("kernel", "kind", "shapes (in -> out)", "dtypes", "config", "time", "source", "level", "TFLOP/s",
                  "GB/s", "% roofline", "bound", "registers", "shared", "spills")


def _kernel_row(k: dict, level: str) -> list[str]:
    regs, smem, spills = _gpu(k)
    pct = k["roofline"]["percent"]
    pattern = f" ({k['pattern']})" if k["pattern"] else ""
    return [k["name"], k["kind"] + pattern, _shapes(k), ",".join(k["dtypes"]), _config(k), _time(k["time"]),
            k["time"]["source"], level, _num(k["tflops"]), _num(k["gbps"]),
            "" if pct is None else f"{'~' if k['roofline']['lower_bound'] or k['time']['lower_bound'] else ''}{pct:.1f}", k["bound"],
            regs, smem, spills]


# ---- markdown ----------------------------------------------------------------------------

def markdown(report: dict) -> str:
    env = report["environment"]
    lines = ["# xchip kernel performance report", "",
             f"Created {report['created']}; xchip {env['xchip']}, jax {env['jax']}, TVM {env['tvm']}, "
             f"Triton {env['triton']}, Python {env['python']}.", "", READING, ""]
    for p in report["programs"]:
        lines += [f"## {p['name']}", ""]
        if p["source"]:
            lines.append(f"Source `{p['source']}`; arguments {', '.join(p['arguments'])}.")
            lines.append("")
        lines += ["| target | level | time per call | source | kernels | furthest from its roofline |",
                  "|---|---|---|---|---|---|"]
        for t in p["targets"]:
            lines.append(f"| {t['target']} | {t['verification_level']} | {_time(t['time'])} | "
                         f"{t['time']['source']} | {len(t['kernels'])} | {_furthest(t)} |")
        for t in p["targets"]:
            lines += ["", f"### {p['name']} on {t['target']} ({t['full_name']}; level: {t['verification_level']})",
                      "", f"Runs on: {t['runs_on']}. " + _headline(t)]
            measured = t["time"].get("measured_on")
            if measured:
                lines.append(f"Measured on {measured['device']}, {measured['date']}.")
            lines += ["", "| " + " | ".join(KERNEL_COLUMNS) + " |", "|" + "---|" * len(KERNEL_COLUMNS)]
            for k in t["kernels"]:
                lines.append("| " + " | ".join(c.replace("|", "/") for c in _kernel_row(k, t["verification_level"]))
                             + " |")
            if t["notes"]:
                lines += ["", "Cost model notes:", *(f"- {n}" for n in t["notes"])]
        lines.append("")
    return "\n".join(lines)


# ---- html --------------------------------------------------------------------------------

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, 'DejaVu Sans', sans-serif; margin: 24px auto; max-width: 1500px;
       color: #1a202c; padding: 0 16px; }
h1 { font-size: 24px; } h2 { font-size: 20px; margin-top: 36px; border-bottom: 2px solid #cbd5e0; }
h3 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 12.5px; }
th, td { border: 1px solid #e2e8f0; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #edf2f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; border-radius: 3px; padding: 0 5px; font-size: 11px; white-space: nowrap; }
.measured { background: #c6f6d5; } .modeled { background: #e2e8f0; }
.level { background: #bee3f8; } .bad { background: #fed7d7; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
figure.plot { margin: 0; border: 1px solid #e2e8f0; padding: 6px; }
figure.plot svg { max-width: 720px; height: auto; display: block; }
figcaption, .note { font-size: 12px; color: #4a5568; }
.reading { background: #f7fafc; border-left: 4px solid #a0aec0; padding: 8px 12px; font-size: 13px; }
"""

# Checks, in the browser, that every plot drew something; the screenshot test reads the result.
CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var figs = document.querySelectorAll('figure.plot');
  var drawn = 0;
  figs.forEach(function (f) {
    var svg = f.querySelector('svg');
    if (svg) { var r = svg.getBoundingClientRect(); if (r.width > 50 && r.height > 50) { drawn++; } }
  });
  document.body.setAttribute('data-plots', drawn + '/' + figs.length);
});
"""


def _e(x) -> str:
    return html.escape(str(x))


def _badges(source: str, level: str) -> str:
    return f'<span class="badge {_e(source)}">{_e(source)}</span> <span class="badge level">{_e(level)}</span>'


def _figure(svg: str | None, why: str | None, caption: str) -> str:
    if svg is None:
        return f'<p class="note no-plot">{_e(caption)}: {_e(why)}</p>'
    return f'<figure class="plot">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


def _table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(report: dict) -> str:
    env = report["environment"]
    parts = [f"<h1>xchip kernel performance report</h1><p>Created {_e(report['created'])}; xchip {_e(env['xchip'])}, "
             f"jax {_e(env['jax'])}, TVM {_e(env['tvm'])}, Triton {_e(env['triton'])}, Python {_e(env['python'])}."
             f"</p><p class=\"reading\">{_e(READING)}</p>"]
    for p in report["programs"]:
        parts.append(f"<h2>{_e(p['name'])}</h2>")
        if p["source"]:
            parts.append(f"<p>Source <code>{_e(p['source'])}</code>; arguments {_e(', '.join(p['arguments']))}.</p>")
        rows = []
        for t in p["targets"]:
            rows.append([_e(t["target"]), _e(t["full_name"]), _e(_time(t["time"])),
                         _badges(t["time"]["source"], t["verification_level"]), str(len(t["kernels"])),
                         _e(_furthest(t))])
        parts.append(_table(["target", "chip", "time per call", "source / level", "kernels",
                             "furthest from its roofline"], rows, {2, 4}))
        svg, why = plots.time_per_target(p)
        parts.append('<div class="plots">' + _figure(svg, why, f"{p['name']}: time per call on each target") + "</div>")
        for t in p["targets"]:
            level = t["verification_level"]
            parts.append(f"<h3>{_e(p['name'])} on {_e(t['target'])} ({_e(t['full_name'])}) "
                         f"<span class=\"badge level\">{_e(level)}</span></h3>")
            headline = _headline(t)
            cls = ' class="bad"' if t.get("check") and not t["check"]["ok"] else ""
            parts.append(f"<p>Runs on: {_e(t['runs_on'])}. <span{cls}>{_e(headline)}</span></p>")
            measured = t["time"].get("measured_on")
            if measured:
                parts.append(f"<p class=\"note\">Measured on {_e(measured['device'])}, {_e(measured['date'])}.</p>")
            rows = []
            for k in t["kernels"]:
                cells = [_e(c) for c in _kernel_row(k, level)]
                cells[6] = _badges(k["time"]["source"], level)
                rows.append(cells[:7] + cells[8:])
            header = [c for c in KERNEL_COLUMNS if c != "level"]
            header[6] = "source / level"
            parts.append(_table(header, rows, {5, 7, 8, 9, 11, 12, 13}))
            figs = [_figure(*plots.roofline(t), f"{t['target']}: roofline, kernels as points"),
                    _figure(*plots.convergence(t), f"{t['target']}: tuning convergence")]
            parts.append('<div class="plots">' + "".join(figs) + "</div>")
            if t["notes"]:
                parts.append("<details><summary>cost model notes</summary><ul>"
                             + "".join(f"<li>{_e(n)}</li>" for n in t["notes"]) + "</ul></details>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>xchip kernel performance report</title>"
            f"<style>{CSS}</style><script>{CHECK_SCRIPT}</script></head><body>"
            + "".join(parts) + "</body></html>\n")
