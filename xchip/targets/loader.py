"""Reads the chip descriptors in `data/*.toml` into `Target`s, and finds targets by name.

A file may `extends = "other"`: it starts from that file's tables (sources included) and
overrides what it states. Every number must carry a source and a confidence; the loader
refuses a file that breaks that rule, so the check cannot be forgotten.
"""

from __future__ import annotations

import difflib
import functools
import tomllib
from importlib import resources
from typing import Any

from ..errors import TargetError
from .descriptor import (BACKEND_FAMILIES, INTEGER_DTYPES, PEAK_KEYS, VERIFICATION_LEVELS, Target,
                         check_dtypes)
from .quantity import CONFIDENCES, DIRECTIONS, PATHS, Link, Quantity

# The order `xchip targets` lists them in: the host, Nvidia by generation, then the other
# vendors. Descriptors not named here follow in alphabetical order.
LISTING_ORDER = (
    "cpu", "a100", "a800", "h100-sxm", "h800-sxm", "h800-pcie", "h20", "l20", "l2", "h200",
    "ascend910b", "ascend910b2", "ascend910b3", "ascend910c", "mlu370-x8", "mlu590", "dcu-z100",
    "dcu-k100", "dcu-k100-ai", "kunlun-r200", "kunlun-p800", "mtt-s4000", "iluvatar-bi-v150",
    "metax-c500", "biren-br100",
)

_UNITS = {
    "vector_units": None, "compute_units": None, "clock_ghz": "GHz", "memory_gb": "GB",
    "memory_bandwidth_gbs": "GB/s", "onchip_kb": "KiB", "l2_mb": "MiB", "register_file_kb": "KiB",
    "warp_size": "threads", "matrix_tile": "elements", "devices_per_node": "devices", "tdp_w": "W",
    "launch_overhead_us": "us",
}
_LINK_UNITS = {"nominal_gbs": "GB/s", "effective_gbs": "GB/s", "latency_us": "us"}
_TEXT_FIELDS = ("name", "full_name", "vendor", "architecture", "isa", "backend", "verification_level",
                "kernel_language", "toolchain", "confidence")
_OPTIONAL_TEXT = ("arch_label", "triton_backend", "host_link", "notes", "onchip_name", "matmul_tile_memory", "extends")
_TABLES = ("sources", "dtypes", "peak_tflops", "onchip_other", "interconnect", "scale_out")
_STATUS_KEYS = {"value": "known", "unknown": "unknown", "unsupported": "unsupported",
                "not_applicable": "not_applicable"}
_QUANTITY_KEYS = set(_STATUS_KEYS) | {"unit", "source", "confidence", "note", "derived", "path", "direction"}


class DescriptorError(TargetError):
    """A descriptor file that breaks the rules (a number without a source, a typo in a key)."""


def _is_quantity_table(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in _STATUS_KEYS)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _is_quantity_table(value):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _quantity(raw: Any, where: str, unit: str | None, sources: dict) -> Quantity:
    if not _is_quantity_table(raw):
        raise DescriptorError(f"{where}: expected a table with one of value/unknown/unsupported/"
                              f"not_applicable, got {raw!r}")
    extra = set(raw) - _QUANTITY_KEYS
    if extra:
        raise DescriptorError(f"{where}: unknown keys {sorted(extra)}")
    stated = [k for k in _STATUS_KEYS if k in raw]
    if len(stated) != 1:
        raise DescriptorError(f"{where}: exactly one of value/unknown/unsupported/not_applicable, got {stated}")
    status = _STATUS_KEYS[stated[0]]
    value = raw.get("value")
    if status == "known" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise DescriptorError(f"{where}: value must be a number, got {value!r}")
    refs = raw.get("source", ())
    refs = (refs,) if isinstance(refs, str) else tuple(refs)
    confidence = raw.get("confidence")
    if status in ("known", "unsupported"):
        if not refs:
            raise DescriptorError(f"{where}: a {status} fact needs a source")
        if confidence not in CONFIDENCES:
            raise DescriptorError(f"{where}: confidence must be one of {CONFIDENCES}, got {confidence!r}")
    missing = [r for r in refs if r not in sources]
    if missing:
        raise DescriptorError(f"{where}: source keys {missing} are not in [sources]")
    if raw.get("path") not in (None, *PATHS) or raw.get("direction") not in (None, *DIRECTIONS):
        raise DescriptorError(f"{where}: path must be one of {PATHS}, direction one of {DIRECTIONS}")
    note = raw.get("note", "")
    for key in ("unknown", "unsupported", "not_applicable"):
        if isinstance(raw.get(key), str):
            note = raw[key] + (f"; {note}" if note else "")
    unit = raw.get("unit", unit)
    if unit is None:
        raise DescriptorError(f"{where}: needs a unit (what one unit is)")
    return Quantity(value if status == "known" else None, unit, status, refs, confidence, note,
                    raw.get("derived"), raw.get("path"), raw.get("direction"))


def _link(raw: dict | None, where: str, sources: dict) -> Link | None:
    if raw is None:
        return None
    extra = set(raw) - {"name", *_LINK_UNITS}
    if extra:
        raise DescriptorError(f"{where}: unknown keys {sorted(extra)}")
    parts = {k: _quantity(raw[k], f"{where}.{k}", u, sources) if k in raw else Quantity.unknown(unit=u)
             for k, u in _LINK_UNITS.items()}
    return Link(raw.get("name"), **parts)


def _dtypes(raw: dict, where: str, sources: dict) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    def expand(names):
        out = []
        for n in names:
            out.extend(INTEGER_DTYPES if n == "integers" else [n])
        return tuple(out)

    compute, matmul = expand(raw.get("compute", ())), expand(raw.get("matmul", ()))
    check_dtypes(compute + matmul, where)
    if not set(matmul) <= set(compute):
        raise DescriptorError(f"{where}: matmul dtypes {sorted(set(matmul) - set(compute))} are not in compute")
    refs = raw.get("source", ())
    refs = (refs,) if isinstance(refs, str) else tuple(refs)
    if not refs or any(r not in sources for r in refs):
        raise DescriptorError(f"{where}: needs source keys from [sources], got {refs}")
    return compute, matmul, refs


def parse_descriptor(raw: dict, where: str) -> Target:
    """A `Target` from one descriptor's tables (after `extends` is resolved)."""
    known = set(_TEXT_FIELDS) | set(_OPTIONAL_TEXT) | set(_TABLES) | set(_UNITS) | {"aliases"}
    extra = set(raw) - known
    if extra:
        raise DescriptorError(f"{where}: unknown keys {sorted(extra)}")
    missing = [k for k in (*_TEXT_FIELDS, "sources", "dtypes", "peak_tflops", "interconnect",
                           "compute_units", "memory_gb", "memory_bandwidth_gbs", "onchip_kb", "l2_mb",
                           "register_file_kb", "warp_size") if k not in raw]
    if missing:
        raise DescriptorError(f"{where}: missing {missing}")
    if raw["verification_level"] not in VERIFICATION_LEVELS:
        raise DescriptorError(f"{where}: verification_level must be one of {VERIFICATION_LEVELS}")
    if raw["backend"] not in BACKEND_FAMILIES:
        raise DescriptorError(f"{where}: backend must be one of {BACKEND_FAMILIES}")
    sources = dict(raw["sources"])
    peaks_raw = raw["peak_tflops"]
    if set(peaks_raw) != set(PEAK_KEYS):
        raise DescriptorError(f"{where}: peak_tflops must state every one of {PEAK_KEYS} "
                              f"(unknown ones as unknown), got {sorted(peaks_raw)}")
    peaks = {k: _quantity(peaks_raw[k], f"{where}: peak_tflops.{k}", "TOPS" if k == "int8" else "TFLOPS",
                          sources) for k in PEAK_KEYS}
    quantities = {k: _quantity(raw[k], f"{where}: {k}", u, sources) for k, u in _UNITS.items() if k in raw}
    onchip_other = {k: _quantity(v, f"{where}: onchip_other.{k}", "KiB", sources)
                    for k, v in raw.get("onchip_other", {}).items()}
    if raw.get("matmul_tile_memory") and raw["matmul_tile_memory"] not in onchip_other:
        raise DescriptorError(f"{where}: matmul_tile_memory names no onchip_other entry")
    compute, matmul, dtype_refs = _dtypes(raw["dtypes"], f"{where}: dtypes", sources)
    return Target(
        name=raw["name"], aliases=tuple(raw.get("aliases", ())), full_name=raw["full_name"],
        vendor=raw["vendor"], architecture=raw["architecture"], arch_label=raw.get("arch_label", ""),
        isa=raw["isa"], backend=raw["backend"],
        verification_level=raw["verification_level"], kernel_language=raw["kernel_language"],
        toolchain=raw["toolchain"], triton_backend=raw.get("triton_backend"), host_link=raw.get("host_link"),
        confidence=raw["confidence"], notes=" ".join(raw.get("notes", "").split()), sources=sources,
        peak_tflops=peaks, onchip_name=raw.get("onchip_name", "on-chip memory per unit"),
        onchip_other=onchip_other, matmul_tile_memory=raw.get("matmul_tile_memory"),
        interconnect=_link(raw["interconnect"], f"{where}: interconnect", sources),
        scale_out=_link(raw.get("scale_out"), f"{where}: scale_out", sources),
        dtypes=compute, matmul_dtypes=matmul, dtypes_sources=dtype_refs, **quantities)


def _data_files() -> dict[str, dict]:
    folder = resources.files(__package__) / "data"
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            with entry.open("rb") as f:
                try:
                    out[entry.name[:-5]] = tomllib.load(f)
                except tomllib.TOMLDecodeError as e:
                    raise DescriptorError(f"data/{entry.name}: {e}") from None
    return out


def _resolve(stem: str, files: dict[str, dict], seen: tuple[str, ...] = ()) -> dict:
    raw = files[stem]
    base_name = raw.get("extends")
    if base_name is None:
        return raw
    if base_name in seen or base_name not in files:
        raise DescriptorError(f"data/{stem}.toml: extends '{base_name}', which is "
                              f"{'a cycle' if base_name in seen else 'not a descriptor'}")
    base = {k: v for k, v in _resolve(base_name, files, seen + (stem,)).items() if k not in ("aliases", "extends")}
    return _merge(base, raw)


@functools.lru_cache(maxsize=None)
def descriptors() -> dict[str, Target]:
    """Every data-file target by canonical name (the host CPU is added by `registry`)."""
    files = _data_files()
    out = {}
    for stem in files:
        target = parse_descriptor(_resolve(stem, files), f"data/{stem}.toml")
        if target.name != stem:
            raise DescriptorError(f"data/{stem}.toml: name '{target.name}' differs from the file name")
        out[target.name] = target
    return out


def normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _order(name: str) -> tuple[int, str]:
    return (LISTING_ORDER.index(name), "") if name in LISTING_ORDER else (len(LISTING_ORDER), name)


def names() -> list[str]:
    """Canonical target names, host first."""
    return sorted(["cpu", *descriptors()], key=_order)


@functools.lru_cache(maxsize=None)
def aliases() -> dict[str, str]:
    """alias -> canonical name (canonical names map to themselves)."""
    out = {"cpu": "cpu", "host": "cpu"}
    for target in descriptors().values():
        for alias in (target.name, *target.aliases):
            alias = normalize(alias)
            if out.get(alias, target.name) != target.name:
                raise DescriptorError(f"alias '{alias}' names both {out[alias]} and {target.name}")
            out[alias] = target.name
    return out


def resolve_name(name: str) -> str:
    """The canonical name for `name` or an alias of it; `TargetError` listing the closest names."""
    key = normalize(name)
    table = aliases()
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, list(table), n=4, cutoff=0.5)
    close += [n for n in table if key and (key in n or n in key) and n not in close]
    suggestion = ", ".join(dict.fromkeys(table[c] if c == table[c] else f"{c} ({table[c]})" for c in close[:5]))
    hint = f"closest: {suggestion}" if suggestion else "no close match"
    raise TargetError(f"unknown target '{name}'; {hint}. Known targets: {', '.join(names())}")
