"""The JAX platform "xchip": a PJRT plugin whose C API table is filled from Python.

    XCHIP_JAX_PLUGIN=1 python -c 'import jax; print(jax.devices("xchip"))'

`plugin.initialize()` is the `jax_plugins` entry point; `api_table` holds the PJRT
functions; `executable` sends programs through xchip's pipeline; `buffers` keeps device
data as host numpy arrays; `destroy_queue.c` is the one native piece (see docs/jax.md).
Nothing here is imported by `import xchip`.
"""

from __future__ import annotations


def stats() -> dict:
    """Counters of this process's plugin: compile requests, pipeline runs (compiles),
    compile-cache hits, executions."""
    from .executable import STATS
    return dict(STATS)
