"""The `jax_plugins` entry point: registers the JAX platform "xchip" when asked to.

JAX imports this module and calls `initialize()` in every process that has xchip
installed, the first time it looks for backends. Unless `XCHIP_JAX_PLUGIN=1` is set it
does nothing (and imports nothing), so installing xchip leaves plain JAX untouched.

The priority is below the CPU backend's (0): the default device stays `cpu` and code
opts in with `jax.devices("xchip")` / `jax.default_device(...)`, or `JAX_PLATFORMS=xchip`
(only xchip; `JAX_PLATFORMS=xchip,cpu` keeps cpu too, with xchip the default).
"""

from __future__ import annotations

import os

ENV_VAR = "XCHIP_JAX_PLUGIN"
PLATFORM = "xchip"
PRIORITY = -100

_registered = False


def enabled() -> bool:
    return os.environ.get(ENV_VAR, "").strip() == "1"


def initialize() -> None:
    if enabled():
        register()


def register():
    """Registers the platform with JAX (once per process; JAX must not have created its
    backends yet). Returns the capsule JAX holds."""
    global _registered
    from jax._src import xla_bridge

    from . import api_table
    capsule = api_table.capsule()
    if not _registered:
        xla_bridge.register_plugin(PLATFORM, priority=PRIORITY, c_api=capsule)
        _registered = True
    return capsule
