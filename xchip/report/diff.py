"""`xchip report --diff OLD.json NEW.json`: per kernel, what got slower or faster.

Kernels are matched by program, target and kernel name. A change counts only past
`threshold` (10% by default: repeated host measurements here differ by that much), and only
between times of the same source: a measured time is never compared with a modeled one. A
kernel whose shapes or dtypes changed is listed as changed, not compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..targets.estimate import format_seconds

THRESHOLD = 0.10


@dataclass(frozen=True)
class KernelChange:
    program: str
    target: str
    kernel: str
    status: str                   # regression | improvement | unchanged | added | removed | changed | not comparable
    old_s: float | None
    new_s: float | None
    source: str                   # measured | modeled | "measured -> modeled" ...
    detail: str = ""

    @property
    def ratio(self) -> float | None:
        """new / old: above 1 is slower."""
        return self.new_s / self.old_s if self.old_s and self.new_s else None


def diff(old: dict, new: dict, threshold: float = THRESHOLD) -> list[KernelChange]:
    out = []
    old_k, new_k = _kernels(old), _kernels(new)
    for key in list(old_k) + [k for k in new_k if k not in old_k]:
        program, target, kernel = key
        a, b = old_k.get(key), new_k.get(key)
        if a is None or b is None:
            k = a or b
            out.append(KernelChange(program, target, kernel, "removed" if b is None else "added",
                                    a and a["time"]["seconds"], b and b["time"]["seconds"], k["time"]["source"]))
            continue
        ta, tb = a["time"], b["time"]
        source = ta["source"] if ta["source"] == tb["source"] else f"{ta['source']} -> {tb['source']}"
        if (a["inputs"], a["outputs"]) != (b["inputs"], b["outputs"]):
            out.append(KernelChange(program, target, kernel, "changed", ta["seconds"], tb["seconds"], source,
                                    f"{', '.join(a['inputs'])} -> {', '.join(b['inputs'])}"))
            continue
        if ta["source"] != tb["source"] or not ta["seconds"] or not tb["seconds"]:
            out.append(KernelChange(program, target, kernel, "not comparable", ta["seconds"], tb["seconds"], source))
            continue
        ratio = tb["seconds"] / ta["seconds"]
        status = ("regression" if ratio > 1 + threshold else
                  "improvement" if ratio < 1 / (1 + threshold) else "unchanged")
        detail = "" if a["config"] == b["config"] else f"config {a['config']} -> {b['config']}"
        out.append(KernelChange(program, target, kernel, status, ta["seconds"], tb["seconds"], source, detail))
    return out


def _kernels(report: dict) -> dict[tuple[str, str, str], dict]:
    return {(p["name"], t["target"], k["name"]): k
            for p in report["programs"] for t in p["targets"] for k in t["kernels"]}


def format_diff(changes: list[KernelChange], threshold: float = THRESHOLD) -> str:
    order = ("regression", "improvement", "changed", "added", "removed", "not comparable", "unchanged")
    rows = [("status", "program", "target", "kernel", "old", "new", "new/old", "source", "detail")]
    for c in sorted(changes, key=lambda c: (order.index(c.status), -(c.ratio or 0))):
        rows.append((c.status, c.program, c.target, c.kernel, format_seconds(c.old_s) if c.old_s else "",
                     format_seconds(c.new_s) if c.new_s else "", f"{c.ratio:.2f}x" if c.ratio else "",
                     c.source, c.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    counts = {s: sum(c.status == s for c in changes) for s in order}
    lines.append(f"{counts['regression']} regressions, {counts['improvement']} improvements "
                 f"(beyond {threshold:.0%}), {counts['unchanged']} unchanged, "
                 + ", ".join(f"{n} {s}" for s, n in counts.items()
                             if n and s not in ("regression", "improvement", "unchanged")))
    return "\n".join(lines).rstrip(", ")
