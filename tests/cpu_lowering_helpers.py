"""Shared by the CPU lowering tests: tracing JAX functions into kernel graphs, computing every
group's input values with the reference executor, building groups through
lower_group -> schedule_group -> build (cached per session), and comparing with ULPs."""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from xchip.ir import Graph
from xchip.ir.kernel_graph import KernelGraph, KernelGroup
from xchip.numerics import ulp_distance
from xchip.runtime import reference


def kernel_graph_of(fn, *args, level: str = "O2") -> KernelGraph:
    """The optimized, fused kernel graph of a JAX function (as `xchip.jit(fn).lower` gives)."""
    import xchip
    return xchip.jit(fn, opt_level=level).lower(*args).kernel_graph


def constant_array(v) -> np.ndarray:
    op = v.producer
    return np.asarray(op.attrs["value"], v.type.dtype.numpy).reshape(v.type.shape)


def all_values(kg: KernelGraph, args) -> dict:
    """Every value the groups read or write, computed group by group with the reference
    executor (the same order and the same group inputs a backend sees)."""
    graph: Graph = kg.graph
    env = {v: np.asarray(a) for v, a in zip(graph.inputs, args)}
    for g in kg.groups:
        inputs = {}
        for v in g.inputs:
            if v not in env and v.producer is not None and v.producer.name == "constant":
                env[v] = constant_array(v)
            inputs[v] = env[v]
        results = reference.evaluate_ops(g.ops, inputs)
        env.update(results)
    return env


@functools.lru_cache(maxsize=None)
def _target():
    from xchip import targets
    return targets.get("cpu")


_BUILT: dict[str, object] = {}


def build_group(group: KernelGroup, config=None, use_matmul_schedule: bool = False):
    """(lowered, compiled function) for a group, built once per session per TIR text.
    Matmul groups use this backend's own simple schedule unless asked (the tuned schedule of
    matmul_schedule.py is tested in its own file)."""
    from xchip.backends.cpu.lower import build, lower_group, schedule_group
    lowered = lower_group(group)
    mod = schedule_group(lowered, config, _target(), use_matmul_schedule=use_matmul_schedule)
    key = hashlib.sha256(mod.script().encode()).hexdigest()
    lib = _BUILT.get(key)
    if lib is None:
        lib = _BUILT[key] = build(mod, _target())
    return lowered, lib[group.name]


def run_group(group: KernelGroup, env: dict, config=None, use_matmul_schedule: bool = False
              ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(actual, expected) outputs of one group on the inputs in `env`."""
    import tvm
    lowered, fn = build_group(group, config, use_matmul_schedule)
    dev = tvm.cpu()
    # reshaped: np.ascontiguousarray makes a rank-0 array rank 1
    ins = [tvm.runtime.tensor(np.ascontiguousarray(env[v]).reshape(v.type.shape), dev) for v in lowered.inputs]
    outs = [tvm.runtime.tensor(np.zeros(v.type.shape, v.type.dtype.numpy), dev) for v in lowered.outputs]
    fn(*ins, *outs)
    # TVM hands bf16 back as its own numpy dtype: view the bits as the IR's dtype
    actual = [o.numpy().view(v.type.dtype.numpy) for o, v in zip(outs, lowered.outputs)]
    return actual, [np.asarray(env[v]) for v in lowered.outputs]


def max_ulps(actual: np.ndarray, expected: np.ndarray) -> int:
    if actual.dtype.kind in "iub":
        return 0 if np.array_equal(actual, expected) else 1 << 62
    return int(ulp_distance(actual, expected).max()) if actual.size else 0


def assert_close(actual, expected, ulps: int = 0, atol: float = 0.0, what: str = ""):
    """Bit-exact (ulps=0), or within `ulps` units in the last place, or |a - e| <= atol (a
    number, or an array of per-element bounds)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, \
        f"{what}: got {actual.dtype}{list(actual.shape)}, expected {expected.dtype}{list(expected.shape)}"
    if actual.dtype.kind in "iub":
        bad = actual != expected
        assert not bad.any(), f"{what}: {int(bad.sum())} mismatches, first at {np.argwhere(bad)[0].tolist()}: " \
                              f"got {actual[bad][:4]}, expected {expected[bad][:4]}"
        return
    d = ulp_distance(actual, expected)
    if np.any(atol):
        a64, e64 = actual.astype(np.float64), expected.astype(np.float64)
        with np.errstate(invalid="ignore"):
            close = np.abs(a64 - e64) <= atol
        d = np.where(close, 0, d)
    worst = int(np.argmax(d)) if d.size else 0
    assert d.size == 0 or d.max() <= ulps, (
        f"{what}: {int((d > ulps).sum())} elements beyond {ulps} ULP; worst {int(d.reshape(-1)[worst])} ULP "
        f"at {np.unravel_index(worst, d.shape)}: got {actual.reshape(-1)[worst]!r}, "
        f"expected {expected.reshape(-1)[worst]!r}")


def whole_group(graph: Graph, kind: str = "elementwise", anchor_name: str | None = None) -> KernelGroup:
    """Every top-level op of `graph` as ONE kernel group (bypassing fusion: a test can put
    forty sibling ops in one kernel and build it once)."""
    ops = [op for op in graph.body.ops if op.name != "return"]
    anchor = next((op for op in ops if op.name == anchor_name), None) if anchor_name else None
    return KernelGroup(id=0, kind=kind, ops=ops, inputs=list(graph.inputs), outputs=list(graph.outputs),
                       anchor=anchor)


def check_group(group: KernelGroup, graph: Graph, args, ulps=0, atol=0.0, config=None, **kw):
    """Run `group` (all of `graph`) and compare each output with the reference executor.
    `ulps`/`atol` may be dicts keyed by the name of the op producing the output."""
    args = [np.asarray(a) for a in args]
    expected = reference.evaluate(graph, args)
    env = dict(zip(graph.inputs, args))
    env.update(zip(graph.outputs, expected))
    actual, expected = run_group(group, env, config, **kw)
    for a, e, v in zip(actual, expected, group.outputs):
        name = v.producer.name if v.producer is not None else "input"
        u = ulps.get(name, 0) if isinstance(ulps, dict) else ulps
        t = atol.get(name, 0.0) if isinstance(atol, dict) else atol
        assert_close(a, e, ulps=u, atol=t, what=f"{group.name}: '{name}' -> {v.type}")
    return actual


def check_function(fn, *args, ulps: int = 0, atol: float = 0.0, kinds=None, level: str = "O2"):
    """Every group of `fn`'s kernel graph that lowers (all but the opaque groups of control
    flow and data-dependent ops) against the reference executor; returns the kernel graph."""
    from xchip.backends.cpu.lower import LoweringError, lower_group
    kg = kernel_graph_of(fn, *args, level=level)
    env = all_values(kg, [np.asarray(a) for a in args])
    checked = 0
    for g in kg.groups:
        if g.kind == "opaque":
            try:
                lower_group(g)      # fusion's pad and concatenate copy kernels lower
            except LoweringError:
                continue
        if kinds is not None:
            assert g.kind in kinds, f"{g.name}: unexpected kind"
        actual, expected = run_group(g, env)
        for a, e, v in zip(actual, expected, g.outputs):
            assert_close(a, e, ulps=ulps, atol=atol, what=f"{g.name} output {v.type}")
        checked += 1
    assert checked, "no group was checked"
    return kg


# --- benchmark: row reductions against jax.jit ----------------------------------------------
#
#   python tests/cpu_lowering_helpers.py [ROWS COLS]
#
# times softmax and layernorm over (ROWS, COLS) f32 (default 4096 x 1024) with this backend's
# default schedule and with jax.jit, each engine in its own process (their thread pools would
# otherwise steal each other's cores), and prints the minimum over repeats and the ratio.

def _bench_fns():
    import jax
    import jax.numpy as jnp

    def softmax(x):
        return jax.nn.softmax(x, axis=-1)

    def layernorm(x, g, b):
        m = jnp.mean(x, -1, keepdims=True)
        v = jnp.mean(jnp.square(x - m), -1, keepdims=True)
        return (x - m) * jax.lax.rsqrt(v + 1e-5) * g + b

    return {"softmax": softmax, "layernorm": layernorm}


def _bench_args(name, rows, cols):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    if name == "softmax":
        return (x,)
    return x, rng.standard_normal(cols).astype(np.float32), rng.standard_normal(cols).astype(np.float32)


def _min_time(fn, repeats=30, number=5) -> float:
    import time
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def _bench_engine(engine, rows, cols) -> dict:
    import json
    out = {}
    for name, fn in _bench_fns().items():
        args = _bench_args(name, rows, cols)
        if engine == "jax":
            import jax
            jitted = jax.jit(fn)
            dev_args = [jax.device_put(a) for a in args]
            out[name] = _min_time(lambda: jitted(*dev_args).block_until_ready())
        else:
            import tvm
            kg = kernel_graph_of(fn, *args)
            (group,) = [g for g in kg.groups if g.kind != "opaque"]
            lowered, kernel = build_group(group)
            env = {v: a for v, a in zip(kg.graph.inputs, args)}
            ins = [tvm.runtime.tensor(env[v]) for v in lowered.inputs]
            outs = [tvm.runtime.tensor(np.empty(v.type.shape, v.type.dtype.numpy)) for v in lowered.outputs]
            out[name] = _min_time(lambda: kernel(*ins, *outs))
    print(json.dumps(out))
    return out


def bench(rows: int = 4096, cols: int = 1024) -> dict:
    import json
    import subprocess
    import sys
    times = {}
    import os
    env = dict(os.environ)
    # TVM's pool defaults to half the logical CPUs (it assumes hyperthreads): use them all,
    # as XLA does
    env.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    for engine in ("xchip", "jax"):
        proc = subprocess.run([sys.executable, __file__, "--engine", engine, str(rows), str(cols)],
                              capture_output=True, text=True, check=True, env=env)
        times[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in times["xchip"]:
        x, j = times["xchip"][name], times["jax"][name]
        print(f"{name} ({rows}x{cols} f32): xchip {x * 1e3:.3f} ms, jax.jit {j * 1e3:.3f} ms, "
              f"xchip/jax time ratio {x / j:.2f}")
    return times


if __name__ == "__main__":
    import sys
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    argv = sys.argv[1:]
    if argv and argv[0] == "--engine":
        _bench_engine(argv[1], *(int(a) for a in argv[2:4]))
    else:
        bench(*(int(a) for a in argv[:2]))
