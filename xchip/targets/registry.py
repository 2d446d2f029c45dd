"""Looking targets up by name: `get("h800")`, `all_targets()`, `capabilities_of("cpu")`."""

from __future__ import annotations

import functools
from dataclasses import replace

from . import host
from .capabilities import HOST_REFERENCE, Capabilities
from .descriptor import Target
from .loader import descriptors, names, resolve_name


@functools.lru_cache(maxsize=1)
def _host_target() -> Target:
    return host.host_target()


def get(name: str | Target) -> Target:
    """The target called `name` (canonical name or alias, any case). The host CPU is
    detected, and measured once per machine (cached). Unknown names raise `TargetError`
    listing the closest ones."""
    if isinstance(name, Target):
        return name
    canonical = resolve_name(name)
    return _host_target() if canonical == "cpu" else descriptors()[canonical]


def all_targets(include_host: bool = True) -> list[Target]:
    return [get(n) for n in names() if include_host or n != "cpu"]


def capabilities_of(name: str) -> Capabilities:
    """What graph passes may know about a target, without measuring the host."""
    canonical = resolve_name(name)
    if canonical == "cpu":
        # the CPU backend has no fused attention kernel (backends/cpu)
        return replace(HOST_REFERENCE, vector_bits=host.detect().vector_bits, fused_attention=False)
    return descriptors()[canonical].capabilities
