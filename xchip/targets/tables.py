"""Text for `xchip targets`: the list, one target in full, several side by side."""

from __future__ import annotations

from .descriptor import PEAK_KEYS, Target
from .quantity import Quantity, format_number

LEGEND = ("? = unknown (no usable source), n/s = not supported in hardware, n/a = does not apply; "
          "* = low confidence, ~ = derived")


def _cell(q: Quantity) -> str:
    text = q.text()
    if q.known:
        text += "~" if q.derived else ""
        text += "*" if q.confidence == "low" else ""
    return text


def _bf16_cell(t: Target) -> str:
    q = t.peak("bf16")
    if not q.known and "bf16" in t.computes_as:
        alt = t.peak({"f32": "fp32"}.get(t.computes_as["bf16"], t.computes_as["bf16"]))
        if alt.known:
            return f"{format_number(alt.value, 3)} (as {t.computes_as['bf16']})"
    return _cell(q)


def _grid(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def targets_table(targets: list[Target]) -> str:
    rows = [("name", "vendor", "arch", "bf16 TFLOPS", "mem GB/s", "interconnect", "backend", "level")]
    for t in targets:
        arch = t.arch_label or t.isa.split(" ")[0]
        rows.append((t.name, t.vendor, arch, _bf16_cell(t), _cell(t.memory_bandwidth_gbs), t.interconnect.summary(),
                     t.backend, t.verification_level))
    return "\n".join(_grid(rows) + ["", LEGEND,
                                    "level: verification level (docs/verification.md); 'none' = nothing of xchip "
                                    "runs on it yet, timings for it are modeled"])


def _quantity_rows(t: Target) -> list[tuple[str, ...]]:
    rows = []

    def add(label: str, q: Quantity) -> None:
        unit = q.unit if q.known else ""
        extra = "; ".join(x for x in (q.note, f"derived: {q.derived}" if q.derived else "",
                                      f"{q.path} path" if q.path and q.known else "",
                                      q.direction if q.direction and q.known else "") if x)
        refs = ", ".join(q.sources)
        rows.append((label, _cell(q), unit, q.confidence or "", refs, extra))

    add(f"compute units ({t.compute_units.unit})", t.compute_units)
    if t.vector_units.known or t.vector_units.note:
        add(f"vector units ({t.vector_units.unit})", t.vector_units)
    if t.clock_ghz.known:
        add("clock", t.clock_ghz)
    for key in PEAK_KEYS:
        add(f"peak {key}", t.peak(key))
    add("memory", t.memory_gb)
    add("memory bandwidth", t.memory_bandwidth_gbs)
    add(t.onchip_name, t.onchip_kb)
    for name, q in t.onchip_other.items():
        add(name, q)
    add("L2", t.l2_mb)
    add("register file per unit", t.register_file_kb)
    add("warp width", t.warp_size)
    if t.matrix_tile.known:
        add("matrix tile edge", t.matrix_tile)
    for prefix, link in (("link", t.interconnect), ("scale-out", t.scale_out)):
        if link is None:
            continue
        add(f"{prefix} nominal", link.nominal_gbs)
        add(f"{prefix} effective", link.effective_gbs)
        add(f"{prefix} latency", link.latency_us)
    if t.devices_per_node.known:
        add("devices per node", t.devices_per_node)
    add("TDP", t.tdp_w)
    if t.launch_overhead_us.known:
        add("launch overhead", t.launch_overhead_us)
    return rows


def target_details(t: Target) -> str:
    lines = [f"{t.name}: {t.full_name}"]
    fields = [("aliases", ", ".join(t.aliases) or "-"), ("vendor", t.vendor), ("architecture", t.architecture),
              ("isa", t.isa), ("backend", t.backend), ("verification level", t.verification_level),
              ("kernel language", t.kernel_language), ("toolchain", t.toolchain),
              ("triton backend", t.triton_backend or "-"), ("host link", t.host_link or "-"),
              ("interconnect", t.interconnect.name or "?"),
              ("scale-out", t.scale_out.name if t.scale_out else "-"),
              ("dtypes", " ".join(t.dtypes)), ("matrix dtypes", " ".join(t.matmul_dtypes) or "none known"),
              ("confidence", t.confidence)]
    if t.computes_as:
        fields.append(("computed as", ", ".join(f"{a} -> {b}" for a, b in t.computes_as.items())))
    width = max(len(k) for k, _ in fields)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in fields]
    lines.append("")
    lines += ["  " + line for line in _grid([("quantity", "value", "unit", "confidence", "sources", "note"),
                                             *_quantity_rows(t)])]
    ridges = [f"{k} {format_number(r, 3)}" for k in ("fp32", "bf16", "fp8", "int8")
              if (r := t.ridge_point(k)) is not None]
    ridge_text = ", ".join(ridges) if ridges else "? (a peak or the bandwidth is unknown)"
    lines.append(f"  ridge point (FLOP/byte): {ridge_text}")
    if t.notes:
        lines += ["", "notes:", f"  {t.notes}"]
    lines += ["", "sources:"] + [f"  {k}: {v}" for k, v in t.sources.items()]
    lines += ["", LEGEND]
    return "\n".join(lines)


def compare_table(targets: list[Target]) -> str:
    rows: list[tuple[str, ...]] = [("", *(t.name for t in targets))]

    def row(label: str, cells) -> None:
        rows.append((label, *cells))

    row("vendor", [t.vendor for t in targets])
    row("architecture", [t.architecture for t in targets])
    row("isa", [t.isa.split(" ")[0] for t in targets])
    row("compute units", [f"{_cell(t.compute_units)} {t.compute_units.unit}" for t in targets])
    for key in PEAK_KEYS:
        row(f"{key} {'TOPS' if key == 'int8' else 'TFLOPS'}", [_cell(t.peak(key)) for t in targets])
    row("memory GB", [_cell(t.memory_gb) for t in targets])
    row("memory GB/s", [_cell(t.memory_bandwidth_gbs) for t in targets])
    row("on-chip KiB/unit", [_cell(t.onchip_kb) for t in targets])
    row("L2 MiB", [_cell(t.l2_mb) for t in targets])
    row("warp width", [_cell(t.warp_size) for t in targets])
    row("link", [t.interconnect.name or "?" for t in targets])
    row("link nominal GB/s", [_cell(t.interconnect.nominal_gbs) for t in targets])
    row("link effective GB/s", [_cell(t.interconnect.effective_gbs) for t in targets])
    row("scale-out eff. GB/s", [_cell(t.scale_out.effective_gbs) if t.scale_out else "-" for t in targets])
    for key in ("fp32", "bf16", "fp8"):
        row(f"ridge {key} FLOP/B", [format_number(r, 3) if (r := t.ridge_point(key)) is not None else "?"
                                    for t in targets])
    row("backend", [t.backend for t in targets])
    row("verification level", [t.verification_level for t in targets])
    row("confidence", [t.confidence for t in targets])
    return "\n".join(_grid(rows) + ["", LEGEND])
