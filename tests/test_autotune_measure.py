"""Measuring tuning candidates in worker processes (autotune/measure.py): a good config is
timed, a wrong one rejected, a crashing or hanging one recorded as such; the search goes on."""

from __future__ import annotations

import os
import signal
import time

import jax.numpy as jnp
import numpy as np
import pytest

import xchip
from xchip.autotune.measure import check_outputs, measure, run_isolated


def _dense(x, w, b):
    return jnp.maximum(x @ w + b, 0.0)


@pytest.fixture(scope="module")
def dense_graph():
    rng = np.random.default_rng()
    args = (rng.standard_normal((48, 64)).astype(np.float32), rng.standard_normal((64, 96)).astype(np.float32),
            rng.standard_normal(96).astype(np.float32))
    lowered = xchip.jit(_dense, target="cpu").lower(*args)
    (group,) = [g for g in lowered.kernel_graph.groups if g.kind == "matmul"]
    return lowered.graph, group.name


def test_default_and_tuned_configs_are_timed_and_checked(dense_graph):
    graph, name = dense_graph
    for config in (None, {"mr": 4, "nv": 1, "kc": 0, "mc": 16, "pack_a": True, "pack_b": False,
                          "unroll_k": 1, "parallel": "n"}):
        m = measure(graph, name, config, timeout=300, repeats=5, min_seconds=0.01)
        assert m.status == "ok", m.reason
        assert 0 < m.stats.min_s <= m.stats.median_s and m.stats.repeats >= 5
        assert m.error["max_abs_error"] < 1e-3          # outputs are O(10)


def test_an_unknown_group_fails_with_its_name(dense_graph):
    graph, _ = dense_graph
    m = measure(graph, "matmul_99", None, timeout=300)
    assert m.status == "failed" and "matmul_99" in m.reason


def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def _hang():
    time.sleep(600)


def _raise():
    raise RuntimeError("first line\nthe line that says why")


def test_a_crashing_hanging_or_raising_candidate_is_recorded():
    crashed = run_isolated(_segfault, (), timeout=120)
    assert crashed["status"] == "crashed" and "signal 11" in crashed["reason"]
    start = time.monotonic()
    hung = run_isolated(_hang, (), timeout=3)
    assert hung["status"] == "timeout" and time.monotonic() - start < 60
    failed = run_isolated(_raise, (), timeout=120)
    assert failed == {"status": "failed", "reason": "RuntimeError: the line that says why"}


def test_wrong_numbers_are_rejected_sum_order_is_not():
    rng = np.random.default_rng()
    want = rng.standard_normal((32, 32)).astype(np.float32) * 30
    reordered = (want.astype(np.float64) * (1 + 1e-7)).astype(np.float32)
    assert check_outputs([reordered], [want])[0] == ""
    bad = want.copy()
    bad[3, 4] += 0.5                  # in f32: the planted error is 0.5 within one rounding
    why, error = check_outputs([bad], [want])
    assert "output 0" in why and error["max_abs_error"] >= abs(float(bad[3, 4]) - float(want[3, 4])) > 0.49
    ints = np.arange(6, dtype=np.int32)
    assert check_outputs([ints + (ints == 5)], [ints])[0]


def test_measuring_from_a_script_without_a_main_guard(tmp_path):
    """The worker is a fresh interpreter: the caller's script is not imported again (with
    multiprocessing's spawn it was, and every candidate 'crashed')."""
    import subprocess
    import sys
    script = tmp_path / "tune_me.py"
    script.write_text(
        "import numpy as np, jax.numpy as jnp, xchip\n"
        "from xchip.autotune.measure import measure\n"
        "x = np.ones((8, 16), np.float32)\n"
        "low = xchip.jit(lambda x: jnp.tanh(x) + 1.0, target='cpu').lower(x)\n"
        "print(measure(low.graph, low.kernel_graph.groups[0].name, None, timeout=300).status)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "ok", r.stderr[-2000:]
