"""Per-call overhead of the ways to run a small function from JAX: plain `jax.jit` on
XLA:CPU, an xchip function inside `jax.jit` through the native FFI trampoline, the same
through `jax.pure_callback` (the route for outer programs not on the CPU backend), plain
`jax.jit` on the xchip platform (the PJRT plugin, registered by this script), and xchip's
own eager call. Every number is measured on the machine that runs this script.

    python -m benchmarks.jax_overhead                      # affine16 and mlp, all routes
    python -m benchmarks.jax_overhead --calls 5000 --only affine16 --json out/jax-overhead.json

Method: one process, routes one after the other in the order given (`--routes`); per route
and workload: build and call once (compiles), `--warmup` calls, then `--calls` calls timed
one by one (`time.perf_counter` around call + block-until-ready on every jax array of the
result) with the garbage collector off. Each call's result is checked against plain
`jax.jit` first. The table gives the median and the minimum, and the median minus plain
`jax.jit`'s median (the overhead). Inputs to the `jax.jit` routes are placed once with
`jax.device_put`; the eager route gets numpy arrays (what it converts to anyway).

A route is a function `route(fn, args) -> callable` below (`ROUTES`), with the platform
its inputs are placed on (`PLATFORM`).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: make `benchmarks`, `examples`, `xchip` importable
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import xchip  # noqa: E402
from xchip.interop import staging  # noqa: E402


# --- workloads: (function, arguments) --------------------------------------------------------

def _affine16():
    x = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    return (lambda x: x * 2 + 1), (x,)


def _mlp():
    from examples.registry import EXAMPLES
    example = EXAMPLES["mlp"]
    return example.fn, example.make_args(np.random.default_rng(0), "f32")


WORKLOADS: dict[str, Callable] = {
    "affine16": _affine16,   # x * 2 + 1 on f32[16]: dispatch only
    "mlp": _mlp,             # examples/mlp.py: 24-64-48-10 on a batch of 4
}


# --- routes: route(fn, args) -> a callable taking args ------------------------------------------

def xla_jit(fn, args):
    """Plain jax.jit on XLA:CPU."""
    return jax.jit(fn)


def xchip_ffi(fn, args):
    """jax.jit around the xchip function as a user gets it on the CPU backend: the native
    FFI trampoline (XLA:CPU calls xchip)."""
    xf = xchip.jit(fn)
    return jax.jit(lambda *a: xf(*a))


def xchip_callback(fn, args):
    """jax.jit around the xchip function through jax.pure_callback (the non-CPU route)."""
    xf = xchip.jit(fn)
    with staging.forced_route("callback"):
        jitted = jax.jit(lambda *a: xf(*a))
        jitted(*args)      # trace now, inside the forced route; later calls hit jit's cache
    return jitted


def xchip_eager(fn, args):
    """xchip.jit's own call on numpy arrays (no JAX program around it)."""
    return xchip.jit(fn)


def xchip_plugin(fn, args):
    """Plain jax.jit on the xchip platform (the PJRT plugin; inputs placed on the xchip
    device): JAX's dispatch, xchip's compile and kernels."""
    return jax.jit(fn)


ROUTES: dict[str, Callable] = {
    "xla": xla_jit,
    "xchip-ffi": xchip_ffi,
    "xchip-callback": xchip_callback,
    "xchip-plugin": xchip_plugin,
    "xchip-eager": xchip_eager,
}
# where each JAX route's inputs are placed once (the eager route takes numpy arrays)
PLATFORM = {"xla": "cpu", "xchip-ffi": "cpu", "xchip-callback": "cpu", "xchip-plugin": "xchip"}


def _block(out) -> None:
    for leaf in jax.tree_util.tree_leaves(out):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()


def time_route(route: str, fn, args, *, warmup: int, calls: int, want) -> dict:
    call = ROUTES[route](fn, args)
    inputs = jax.device_put(args, jax.devices(PLATFORM[route])[0]) if route in PLATFORM else args
    got = call(*inputs)
    _block(got)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)
    for _ in range(warmup):
        _block(call(*inputs))
    times = []
    gc.disable()
    try:
        for _ in range(calls):
            start = time.perf_counter()
            _block(call(*inputs))
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return {"median_us": statistics.median(times) * 1e6, "min_us": min(times) * 1e6, "calls": calls}


def _jaxlib_version() -> str:
    import jaxlib
    return getattr(jaxlib, "__version__", "?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.jax_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    parser.add_argument("--routes", default=",".join(ROUTES), help="routes, comma-separated, in this order")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per route and workload")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--json", help="also write the results here")
    ns = parser.parse_args(argv)
    routes = [r for r in ns.routes.split(",") if r]
    unknown = [r for r in routes if r not in ROUTES] + [w for w in ns.only.split(",") if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown route or workload: {', '.join(unknown)}; routes: {', '.join(ROUTES)}; "
                     f"workloads: {', '.join(WORKLOADS)}")
    import os
    if "xchip-plugin" in routes:
        from xchip.pjrt.plugin import register
        register()     # before JAX creates its backends (nothing above has touched a device)
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or
           platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "jax": jax.__version__, "jaxlib": _jaxlib_version(),
           "numpy": np.__version__, "load_start": os.getloadavg()[0]}
    print(f"# measured {env['date']} on {env['machine']} ({env['cpus']} cpus), python {env['python']}, "
          f"jax {env['jax']}, jaxlib {env['jaxlib']}, numpy {env['numpy']}; load average {env['load_start']:.2f}")
    print(f"# {ns.calls} timed calls after {ns.warmup} warm-up calls, one process, routes in order: "
          f"{', '.join(routes)}")
    rows = []
    print(f"{'workload':10s} {'route':15s} {'median us':>10s} {'min us':>9s} {'+median us':>11s} {'+min us':>8s}")
    for name in ns.only.split(","):
        fn, args = WORKLOADS[name]()
        want = jax.jit(fn)(*args)
        base = None
        for route in routes:
            r = time_route(route, fn, args, warmup=ns.warmup, calls=ns.calls, want=want)
            if route == "xla":
                base = r
            r.update(workload=name, route=route,
                     overhead_median_us=None if base is None else r["median_us"] - base["median_us"],
                     overhead_min_us=None if base is None else r["min_us"] - base["min_us"])
            rows.append(r)
            over = ("", "") if base is None or route == "xla" else (f"{r['overhead_median_us']:+.1f}",
                                                                    f"{r['overhead_min_us']:+.1f}")
            print(f"{name:10s} {route:15s} {r['median_us']:10.1f} {r['min_us']:9.1f} {over[0]:>11s} {over[1]:>8s}",
                  flush=True)
    env["load_end"] = os.getloadavg()[0]
    print(f"# load average at the end {env['load_end']:.2f}; +median, +min: the route's median (minimum) minus "
          "xla's (the overhead); under load trust the minima")
    if ns.json:
        Path(ns.json).write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
