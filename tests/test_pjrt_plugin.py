"""The "xchip" JAX platform (xchip.pjrt): plain JAX code on the xchip device, compared with
XLA:CPU in the same process.

Registering a PJRT plugin is process-global and must happen before JAX creates its
backends, so the scenarios run in child processes: this file is also the child script
(`python tests/test_pjrt_plugin.py SEED SCENARIO...` prints one JSON line of results),
started with `XCHIP_JAX_PLUGIN=1` in its environment. Each child is started once per
session (a fixture) and the tests assert on its results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "XCHIP_PJRT_RESULT "
SEED = int(os.environ.get("XCHIP_TEST_SEED", "8613"))
# a Python 3.12 for the slow cross-version test, and the jax 0.12 venv it runs in
PY312 = Path(os.environ.get("XCHIP_PY312") or shutil.which("python3.12") or "python3.12")
VENV312 = Path(os.environ.get("XCHIP_PY312_VENV") or ROOT / ".venv-py312")


# ------------------------------------------------------------------------------------------
# The child: scenarios that run with the plugin registered. Each returns JSON-able data.
# ------------------------------------------------------------------------------------------

def _xdev():
    import jax
    return jax.devices("xchip")[0]


def _platforms(array) -> list[str]:
    return sorted(d.platform for d in array.devices())


def _ratio(out, ref, rtol: float, atol: float) -> float:
    """max |out - ref| / (atol + rtol |ref|): within tolerance when <= 1."""
    import numpy as np
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        return float("inf")
    if out.size == 0:
        return 0.0
    return float(np.max(np.abs(out - ref) / (atol + rtol * np.abs(ref))))


def scenario_devices(seed):
    import jax
    import numpy as np
    xs = jax.devices("xchip")
    held = jax.device_put(np.full((1000,), 2.5, np.float32), xs[0])
    return {"xchip": [repr(d) for d in xs], "platforms": [d.platform for d in xs], "kind": xs[0].device_kind,
            "default_backend": jax.default_backend(), "default_platforms": [d.platform for d in jax.devices()],
            "local": [d.platform for d in jax.local_devices(backend="xchip")],
            "memory_stats": xs[0].memory_stats(), "held_bytes": held.nbytes}


def scenario_device_put(seed):
    import jax
    import ml_dtypes
    import numpy as np
    rng = np.random.default_rng(seed)
    dev, cpu = _xdev(), jax.devices("cpu")[0]
    wide = rng.standard_normal((4, 6)).astype(np.float32)
    cases = {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "scalar": np.float32(rng.uniform(1, 2)),
        "i32": rng.integers(-50, 50, (7,)).astype(np.int32),
        "bool": rng.random((2, 3)) > 0.5,
        "bf16": rng.standard_normal((4, 4)).astype(ml_dtypes.bfloat16),
        "f64_canonicalized": rng.standard_normal((2, 2)),   # x64 off: lands as f32, like on cpu
        "strided_view": wide[:, ::2],
        "empty": np.ones((0, 3), np.float32),
    }
    out = {}
    for name, host in cases.items():
        x = jax.device_put(host, dev)
        back = np.asarray(x)
        expected = np.asarray(jax.device_put(host, cpu))
        on_cpu = jax.device_put(x, cpu)
        from_cpu = jax.device_put(jax.device_put(host, cpu), dev)
        out[name] = {
            "platforms": _platforms(x), "shape": list(back.shape), "dtype": str(back.dtype),
            "expected_shape": list(expected.shape), "expected_dtype": str(expected.dtype),
            "equal": bool(np.array_equal(back, expected)), "nonzero": bool(host.size == 0 or np.any(host != 0)),
            "to_cpu_platforms": _platforms(on_cpu), "to_cpu_equal": bool(np.array_equal(np.asarray(on_cpu), expected)),
            "from_cpu_platforms": _platforms(from_cpu),
            "from_cpu_equal": bool(np.array_equal(np.asarray(from_cpu), expected)),
        }
    x = jax.device_put(cases["f32"], dev)
    x.delete()
    out["deleted"] = {"is_deleted": x.is_deleted()}
    return out


def scenario_examples(seed, dtype="f32"):
    import jax
    import numpy as np
    from examples.registry import EXAMPLES
    out = {}
    for name, ex in EXAMPLES.items():
        args = ex.make_args(np.random.default_rng(seed), dtype)
        ref = jax.jit(ex.fn)(*args)                     # XLA:CPU, the default device
        with jax.default_device(_xdev()):
            got = jax.jit(ex.fn)(*args)
        out[name] = {"ratio": _ratio(got, ref, ex.rtol[dtype], ex.atol[dtype]), "platforms": _platforms(got),
                     "ref_platforms": _platforms(ref), "shape": list(np.shape(got)),
                     "ref_nonzero": bool(np.any(np.asarray(ref, np.float32) != 0))}
    return out


def scenario_examples_bf16(seed):
    return scenario_examples(seed, "bf16")


def _loss(params, x):
    from examples.mlp import mlp
    return (mlp(params, x) ** 2).mean()


def scenario_grad(seed):
    import jax
    import numpy as np
    from examples.mlp import make_args
    params, x = make_args(np.random.default_rng(seed), "f32")
    grad = jax.jit(jax.grad(_loss))
    ref = grad(params, x)
    with jax.default_device(_xdev()):
        got = jax.jit(jax.grad(_loss))(params, x)
        value_and_grad = jax.jit(jax.value_and_grad(_loss))(params, x)
    # f32 gradients through two GELUs: XLA and xchip round differently (fusion, erf
    # approximation); 1e-5 relative plus a floor for entries that cancel to ~0
    return {"keys": sorted(got), "platforms": sorted({p for leaf in jax.tree.leaves(got) for p in _platforms(leaf)}),
            "ratio": max(_ratio(got[k], ref[k], 1e-5, 1e-6) for k in ref),
            "value_ratio": _ratio(value_and_grad[0], _loss(params, x), 1e-5, 1e-6),
            "ref_nonzero": all(bool(np.any(np.asarray(v) != 0)) for v in ref.values())}


def _tree_fn(tree):
    import jax.numpy as jnp
    a, (b, c), d = tree["a"], tree["pair"], tree["list"][0]
    return {"sum": a + b, "nested": ({"prod": a * c}, [jnp.tanh(d), d.sum()]), "scalar": (a * b).sum()}


def scenario_pytree(seed):
    import jax
    import numpy as np
    rng = np.random.default_rng(seed)
    tree = {"a": rng.standard_normal((3, 4)).astype(np.float32), "pair": (
        rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)),
        "list": [rng.standard_normal((5,)).astype(np.float32)]}
    ref = jax.jit(_tree_fn)(tree)
    with jax.default_device(_xdev()):
        got = jax.jit(_tree_fn)(tree)
    return {"same_structure": jax.tree.structure(got) == jax.tree.structure(ref),
            "structure": str(jax.tree.structure(got)),
            "ratio": max(_ratio(g, r, 1e-6, 1e-6) for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref))),
            "platforms": sorted({p for leaf in jax.tree.leaves(got) for p in _platforms(leaf)})}


def _make_affine():
    return lambda x: x * 3.0 - 1.0


def _call_jitted(fn, *args):
    # one call site for both twins: the call's source location is part of the program
    import jax
    return jax.jit(fn)(*args)


def scenario_compile_cache(seed):
    import jax
    import numpy as np
    from xchip.pjrt import stats
    rng = np.random.default_rng(seed)
    dev = _xdev()
    f = jax.jit(lambda x, y: jax.numpy.tanh(x) @ y + 1.0)
    xs = [(rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((8, 3)).astype(np.float32))
          for _ in range(6)]
    v = rng.standard_normal((5,)).astype(np.float32)
    s0 = stats()
    with jax.default_device(dev):
        first = f(*xs[0])
        s1 = stats()
        outs = [f(*args) for args in xs[1:]]
        jax.block_until_ready(outs)
        s2 = stats()
        # two function objects with one source: JAX compiles each, xchip's cache answers the second
        ra = _call_jitted(_make_affine(), v)
        rb = _call_jitted(_make_affine(), v)
        s3 = stats()
    ratio = max(_ratio(o, np.tanh(a) @ b + 1.0, 1e-5, 1e-6) for o, (a, b) in zip([first] + outs, xs))
    delta = lambda s, t: {k: t[k] - s[k] for k in s}  # noqa: E731
    return {"first": delta(s0, s1), "repeat": delta(s1, s2), "twin": delta(s2, s3), "ratio": ratio,
            "twin_equal": bool(np.array_equal(np.asarray(ra), np.asarray(rb)))}


def scenario_unsupported_op(seed):
    import jax
    import jax.numpy as jnp
    import numpy as np
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((4, 4)).astype(np.float32)
    spd = m @ m.T + 4 * np.eye(4, dtype=np.float32)
    out = {}
    with jax.default_device(_xdev()):
        try:
            jax.jit(jnp.linalg.cholesky)(spd).block_until_ready()
            out["raised"] = None
        except Exception as e:  # noqa: BLE001 - what JAX raises is what is checked
            out["raised"] = type(e).__name__
            out["module"] = type(e).__module__
            out["message"] = str(e)
        x = rng.standard_normal((6,)).astype(np.float32)
        after = jax.jit(lambda v: v * 2.0 + 1.0)(x)
    out["after_ok"] = bool(np.allclose(np.asarray(after), x * 2 + 1, rtol=1e-6))
    out["after_platforms"] = _platforms(after)
    return out


def scenario_runtime_error(seed):
    import jax
    import numpy as np
    from xchip.pjrt import executable
    x = np.random.default_rng(seed).standard_normal((5,)).astype(np.float32)
    f = jax.jit(lambda v: v * 5.0 + 2.0)
    out = {}
    with jax.default_device(_xdev()):
        before = set(executable._CACHE)
        f(x).block_until_ready()
        (key,) = set(executable._CACHE) - before
        exe = executable._CACHE[key]
        program = exe.program

        def broken(arrays):
            raise RuntimeError("injected kernel failure")
        exe.program = broken
        try:
            f(x).block_until_ready()
            out["raised"] = None
        except Exception as e:  # noqa: BLE001
            out["raised"] = type(e).__name__
            out["message"] = str(e)
        exe.program = program
        again = f(x)
    out["after_ok"] = bool(np.allclose(np.asarray(again), x * 5 + 2, rtol=1e-6))
    return out


def scenario_committed_inputs(seed):
    """Without jax.default_device: arrays put on xchip carry the computation there;
    mixing them with arrays committed to cpu is JAX's usual error."""
    import jax
    import numpy as np
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal((3, 3)).astype(np.float32) for _ in range(2))
    f = jax.jit(lambda x, y: x @ y - y)
    got = f(jax.device_put(a, _xdev()), b)
    out = {"platforms": _platforms(got), "ratio": _ratio(got, a @ b - b, 1e-5, 1e-6)}
    try:
        f(jax.device_put(a, _xdev()), jax.device_put(b, jax.devices("cpu")[0]))
        out["mixed"] = None
    except Exception as e:  # noqa: BLE001
        out["mixed"] = type(e).__name__
    return out


def scenario_donation(seed):
    import warnings

    import jax
    import numpy as np
    x = np.random.default_rng(seed).standard_normal((8,)).astype(np.float32)
    with jax.default_device(_xdev()), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arg = jax.device_put(x)
        y = jax.jit(lambda v: v + 1.0, donate_argnums=0)(arg)
        value = np.asarray(y)
    return {"ok": bool(np.allclose(value, x + 1)), "warnings": [str(w.message)[:200] for w in caught]}


def scenario_plugin_off(seed):
    import jax
    try:
        jax.devices("xchip")
        found = True
    except RuntimeError:
        found = False
    return {"default_backend": jax.default_backend(), "platforms": sorted({d.platform for d in jax.devices()}),
            "xchip_found": found}


def scenario_only_xchip(seed):
    """JAX_PLATFORMS=xchip: the default device is xchip, eager jnp ops run there."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from xchip.pjrt import stats
    x = jnp.asarray(np.random.default_rng(seed).uniform(1, 2, (8,)).astype(np.float32))
    y = (x * 2.0 + 1.0).sum()
    z = jax.jit(lambda v: jnp.sqrt(v))(x)
    return {"default_backend": jax.default_backend(), "devices": [d.platform for d in jax.devices()],
            "eager_platforms": _platforms(y), "eager_ok": bool(np.isclose(float(y), float(np.sum(np.asarray(x) * 2 + 1)),
                                                                          rtol=1e-6)),
            "jit_ok": bool(np.allclose(np.asarray(z), np.sqrt(np.asarray(x)), rtol=1e-6)),
            "compiles": stats()["compiles"]}


def _child(seed: int, names: list[str]) -> None:
    results = {}
    for name in names:
        try:
            results[name] = globals()[f"scenario_{name}"](seed)
        except Exception:  # noqa: BLE001 - reported to the parent, which fails the test
            results[name] = {"child_error": traceback.format_exc()}
    import jax
    results["_versions"] = {"jax": jax.__version__, "python": sys.version.split()[0]}
    print(RESULT_TAG + json.dumps(results), flush=True)


# ------------------------------------------------------------------------------------------
# The parent: run children, assert on their results.
# ------------------------------------------------------------------------------------------

def run_child(names: list[str], *, plugin: bool = True, python: str = sys.executable, env: dict | None = None,
              timeout: float = 300) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "XCHIP_JAX_PLUGIN")}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if plugin:
        environ["XCHIP_JAX_PLUGIN"] = "1"
    environ.update(env or {})
    done = subprocess.run([python, __file__, str(SEED), *names], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=timeout)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if done.returncode != 0 or not lines:
        raise AssertionError(f"child {names} exited with {done.returncode}:\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-5000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


# -- in this process: the API table through its C entry points, without JAX ----------------------

def _call(name: str, **fields):
    """Calls PJRT function `name` through the table's function pointer, as jaxlib would;
    returns (the PJRT_Error* it returned, its args struct)."""
    import ctypes

    from xchip.pjrt import abi, api_table
    api_table.capsule()
    api = api_table._TABLE["api"]
    args = abi.args_type(name)()
    args.struct_size = ctypes.sizeof(args)
    for k, v in fields.items():
        setattr(args, k, v)
    fn = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(getattr(api, name))
    return fn(ctypes.addressof(args)), args


def _message(error: int) -> tuple[int, str]:
    import ctypes
    err, code = _call("PJRT_Error_GetCode", error=error)
    assert err is None
    _, msg = _call("PJRT_Error_Message", error=error)
    return code.code, ctypes.string_at(msg.message, msg.message_size).decode()


def test_every_slot_is_filled_and_the_fatal_ones_are_implemented():
    from xchip.pjrt import abi, api_table
    api_table.capsule()
    api = api_table._TABLE["api"]
    assert all(getattr(api, name) for name in abi.FUNCTIONS)
    must = {"PJRT_Device_GetAttributes", "PJRT_LoadedExecutable_AddressableDeviceLogicalIds",
            "PJRT_LoadedExecutable_GetDeviceAssignment", "PJRT_Error_ForEachPayload"}
    assert must <= set(api_table.IMPLEMENTED)
    destroy = {getattr(api, name) for name in abi.FUNCTIONS if name.endswith("_Destroy")}
    assert len(destroy) == 1 and set(api_table.NATIVE) == {n for n in abi.FUNCTIONS if n.endswith("_Destroy")}
    assert api.pjrt_api_version.major_version == 0 and api.pjrt_api_version.minor_version == 114


def test_unimplemented_function_answers_unimplemented_with_its_name():
    from xchip.pjrt import abi, destroy_queue
    from xchip.pjrt.objects import HANDLES
    error, _ = _call("PJRT_Executable_Serialize")
    assert error
    code, message = _message(error)
    assert code == abi.Code.UNIMPLEMENTED and "PJRT_Executable_Serialize" in message
    assert HANDLES.peek(error) is not None
    assert _call("PJRT_Error_Destroy", error=error)[0] is None      # native: only queued ...
    assert HANDLES.peek(error) is not None
    assert destroy_queue.drain() >= 1 and HANDLES.peek(error) is None   # ... and freed by the drain


def test_short_args_struct_is_refused_not_overrun():
    import ctypes

    from xchip.pjrt import abi, api_table
    api_table.capsule()
    args = abi.args_type("PJRT_Client_PlatformName")()
    args.struct_size = 24          # a caller that knows fields up to `client` only
    fn = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(api_table._TABLE["api"].PJRT_Client_PlatformName)
    error = fn(ctypes.addressof(args))
    code, message = _message(error)
    assert code == abi.Code.INVALID_ARGUMENT and "args struct has 24 bytes" in message
    assert args.platform_name is None


def test_error_payloads_reach_the_visitor():
    import ctypes

    from xchip.pjrt.objects import new_error
    error = new_error(12, "xchip: example", {"xchip/unsupported-op": "stablehlo.fft", "k2": "v2"})
    seen = []
    visitor = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                               ctypes.c_void_p)(lambda k, kn, v, vn, _: seen.append(
                                   (ctypes.string_at(k, kn).decode(), ctypes.string_at(v, vn).decode())))
    assert _call("PJRT_Error_ForEachPayload", error=error, visitor=ctypes.cast(visitor, ctypes.c_void_p).value)[0] \
        is None
    assert seen == [("xchip/unsupported-op", "stablehlo.fft"), ("k2", "v2")]


def test_plugin_initialize_is_inert_without_the_variable(monkeypatch):
    from xchip.pjrt import plugin
    monkeypatch.delenv("XCHIP_JAX_PLUGIN", raising=False)
    monkeypatch.setattr(plugin, "register", lambda: pytest.fail("registered without XCHIP_JAX_PLUGIN=1"))
    plugin.initialize()
    monkeypatch.setenv("XCHIP_JAX_PLUGIN", "0")
    plugin.initialize()


# -- in child processes: JAX with the plugin registered ------------------------------------------

MAIN = ["devices", "device_put", "committed_inputs", "examples", "grad", "pytree", "compile_cache",
        "unsupported_op", "runtime_error", "donation"]


@pytest.fixture(scope="module")
def main_results():
    return run_child(MAIN)


def _result(results: dict, name: str) -> dict:
    r = results[name]
    assert "child_error" not in r, r["child_error"]
    return r


def test_xchip_device_is_listed_and_cpu_stays_default(main_results):
    r = _result(main_results, "devices")
    assert r["platforms"] == ["xchip"] and r["local"] == ["xchip"]
    assert r["xchip"] == ["XchipDevice(id=0)"] and r["kind"] == "xchip-cpu"
    assert r["default_backend"] == "cpu" and set(r["default_platforms"]) == {"cpu"}
    stats = r["memory_stats"]
    assert stats["bytes_in_use"] >= r["held_bytes"], stats
    assert all(v == -1 for k, v in stats.items() if k != "bytes_in_use"), stats   # the rest is "not set"


def test_device_put_round_trips(main_results):
    r = _result(main_results, "device_put")
    for name, case in r.items():
        if name == "deleted":
            continue
        assert case["nonzero"], name
        assert case["platforms"] == ["xchip"], (name, case)
        assert (case["shape"], case["dtype"]) == (case["expected_shape"], case["expected_dtype"]), (name, case)
        assert case["equal"] and case["to_cpu_equal"] and case["from_cpu_equal"], (name, case)
        assert case["to_cpu_platforms"] == ["cpu"] and case["from_cpu_platforms"] == ["xchip"], (name, case)
    assert r["scalar"]["shape"] == [] and r["bf16"]["dtype"] == "bfloat16"
    assert r["f64_canonicalized"]["dtype"] == "float32"
    assert r["deleted"]["is_deleted"]


@pytest.mark.parametrize("name", ["mlp", "transformer", "cnn", "scan_rnn"])
def test_example_matches_xla_cpu(main_results, name):
    r = _result(main_results, "examples")[name]
    assert r["platforms"] == ["xchip"] and r["ref_platforms"] == ["cpu"]
    assert r["ref_nonzero"]
    assert r["ratio"] <= 1.0, r


def test_committed_inputs_pick_the_device(main_results):
    r = _result(main_results, "committed_inputs")
    assert r["platforms"] == ["xchip"] and r["ratio"] <= 1.0, r
    assert r["mixed"] == "ValueError", r


def test_grad_under_jit_matches_xla_cpu(main_results):
    r = _result(main_results, "grad")
    assert r["keys"] == ["b0", "b1", "b2", "w0", "w1", "w2"] and r["platforms"] == ["xchip"]
    assert r["ref_nonzero"]
    assert r["ratio"] <= 1.0 and r["value_ratio"] <= 1.0, r


def test_pytree_in_and_out(main_results):
    r = _result(main_results, "pytree")
    assert r["same_structure"], r["structure"]
    assert r["ratio"] <= 1.0 and r["platforms"] == ["xchip"], r


def test_repeated_calls_do_not_recompile(main_results):
    r = _result(main_results, "compile_cache")
    assert r["ratio"] <= 1.0
    assert r["first"]["compiles"] == 1 and r["first"]["executions"] == 1, r
    # JAX's own cache serves repeated calls: xchip is not even asked to compile
    assert r["repeat"]["compile_requests"] == 0 and r["repeat"]["compiles"] == 0, r
    assert r["repeat"]["executions"] == 5, r
    # a second function object with the same program: JAX asks again, xchip's cache answers
    assert r["twin"]["compile_requests"] == 2 and r["twin"]["compiles"] == 1 and r["twin"]["cache_hits"] == 1, r
    assert r["twin_equal"]


def test_unsupported_op_is_a_jax_error_naming_the_op(main_results):
    r = _result(main_results, "unsupported_op")
    assert r["raised"] == "JaxRuntimeError", r
    assert "stablehlo.cholesky" in r["message"] and "UNIMPLEMENTED" in r["message"], r["message"]
    assert "linear-algebra" in r["message"]
    assert "test_pjrt_plugin.py" in r["message"], r["message"]      # the user's source location
    assert r["after_ok"] and r["after_platforms"] == ["xchip"]        # the process is still usable


def test_runtime_error_in_execute_is_a_jax_error(main_results):
    r = _result(main_results, "runtime_error")
    # jaxlib raises execution failures as ValueError (XLA:CPU's too), compile failures as
    # JaxRuntimeError; either way the PJRT status text is the message
    assert r["raised"] in ("ValueError", "JaxRuntimeError"), r
    assert "injected kernel failure" in r["message"] and "INTERNAL" in r["message"], r["message"]
    assert "jit__lambda" in r["message"]
    assert r["after_ok"]


def test_donation_is_ignored_not_fatal(main_results):
    r = _result(main_results, "donation")
    assert r["ok"], r


def test_plugin_is_off_without_the_environment_variable():
    r = _result(run_child(["plugin_off"], plugin=False), "plugin_off")
    assert r == {"default_backend": "cpu", "platforms": ["cpu"], "xchip_found": False}


def test_jax_platforms_xchip_makes_it_the_default():
    r = _result(run_child(["only_xchip"], env={"JAX_PLATFORMS": "xchip"}), "only_xchip")
    assert r["default_backend"] == "xchip" and r["devices"] == ["xchip"], r
    assert r["eager_platforms"] == ["xchip"] and r["eager_ok"] and r["jit_ok"], r
    assert r["compiles"] >= 3      # eager ops are tiny jits, each compiled by xchip


@pytest.mark.slow
def test_examples_bf16_match_xla_cpu():
    results = run_child(["examples_bf16"])
    for name, r in _result(results, "examples_bf16").items():
        assert r["platforms"] == ["xchip"] and r["ratio"] <= 1.0, (name, r)


@pytest.mark.slow
def test_jax_0_12_on_python_3_12():
    """The same scenarios under jax 0.12 (PJRT framework 0.116) on Python 3.12, in the
    venv `python tests/test_pjrt_plugin.py --make-py312-venv` makes."""
    python = VENV312 / "bin" / "python"
    if not PY312.exists():
        pytest.skip(f"no Python 3.12 at {PY312}")
    if not python.exists():
        pytest.skip(f"no jax 0.12 venv at {VENV312}: run `python tests/test_pjrt_plugin.py --make-py312-venv`")
    results = run_child(MAIN, python=str(python))
    assert results["_versions"]["jax"].startswith("0.12"), results["_versions"]
    assert _result(results, "devices")["platforms"] == ["xchip"]
    for name, r in _result(results, "examples").items():
        assert r["platforms"] == ["xchip"] and r["ratio"] <= 1.0, (name, r)
    assert _result(results, "grad")["ratio"] <= 1.0
    assert _result(results, "unsupported_op")["raised"] == "JaxRuntimeError"
    assert _result(results, "compile_cache")["repeat"]["compiles"] == 0


def make_py312_venv() -> None:
    """Makes the venv `test_jax_0_12_on_python_3_12` runs in: Python 3.12, jax/jaxlib
    0.12.0.1 and xchip (editable) with its dependencies."""
    subprocess.run([str(PY312), "-m", "venv", str(VENV312)], check=True)
    pip = [str(VENV312 / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "jax==0.12.0.1", "jaxlib==0.12.0.1", "-e", str(ROOT)], check=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--make-py312-venv"]:
        make_py312_venv()
    else:
        _child(int(sys.argv[1]), sys.argv[2:])
