"""Tuning a program's kernels on the host (autotune/tune.py): candidates measured and
recorded as they come, a resumed run skips what was tried, and compiling afterwards uses the
best config without tuning."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import xchip
from xchip.autotune.db import TuningDB
from xchip.autotune.search import Budget
from xchip.autotune.tune import host_identity, kernel_key, tune, tuned_configs


def _dense(x, w, b):
    return jnp.tanh(x @ w + b)


@pytest.fixture
def lowered(tmp_path, monkeypatch):
    # a database of its own; the kernel cache and the host measurement stay shared
    monkeypatch.setenv("XCHIP_TUNING_DB", str(tmp_path / "tuning.db"))
    rng = np.random.default_rng()
    args = (rng.standard_normal((40, 64)).astype(np.float32), rng.standard_normal((64, 48)).astype(np.float32),
            rng.standard_normal(48).astype(np.float32))
    return xchip.jit(_dense, target="cpu").lower(*args), args


def test_tuning_records_every_trial_resumes_and_compile_uses_the_best(lowered, tmp_path):
    low, args = lowered
    db = TuningDB(tmp_path / "tuning.db")
    first = tune(low, db=db, budget=Budget(trials=3, patience=None))
    (matmul,) = [r for r in first if r.search is not None]
    assert len(matmul.search.trials) == 3 and matmul.default_s > 0
    group = next(g for g in low.kernel_graph.groups if g.name == matmul.name)
    sku, versions = host_identity()
    tried = db.tried(kernel_key(group), sku, versions)
    assert len(tried) == 3 and matmul.best is not None

    second = tune(low, db=db, budget=Budget(trials=5, patience=None), groups=[matmul.name])
    assert len(db.tried(kernel_key(group), sku, versions)) == 5      # two new ones, none repeated
    assert len(second[0].search.trials) == 5                         # the budget counts the first run's
    best = second[0].best

    configs = tuned_configs(low.kernel_graph, db)
    assert configs == {matmul.name: best.config}
    compiled = low.compile()                          # finds the database in XCHIP_CACHE_DIR
    kernel = next(k for k in compiled._program.kernels if k.group.name == matmul.name)
    assert kernel.config == best.config
    np.testing.assert_allclose(np.asarray(compiled(*args)), np.tanh(args[0].astype(np.float64) @ args[1] + args[2]),
                               rtol=1e-5, atol=1e-5)


def test_without_a_database_compile_uses_the_defaults(lowered, tmp_path):
    low, _ = lowered
    assert tuned_configs(low.kernel_graph) == {}
    assert not (tmp_path / "tuning.db").exists()       # looking up creates nothing


def test_a_damaged_database_warns_and_compiles_with_defaults(lowered, tmp_path):
    low, args = lowered
    (tmp_path / "tuning.db").write_bytes(b"not a database at all" * 100)
    with pytest.warns(UserWarning, match="tuning database not used"):
        compiled = low.compile()
    assert all(k.config is None for k in compiled._program.kernels)
    assert (tmp_path / "tuning.db").read_bytes() == b"not a database at all" * 100     # left as it was
    np.testing.assert_allclose(np.asarray(compiled(*args)), np.tanh(args[0].astype(np.float64) @ args[1] + args[2]),
                               rtol=1e-5, atol=1e-5)


def test_jit_autotune_tunes_a_miss_once_and_a_hit_costs_no_tuning(tmp_path, monkeypatch, capsys):
    # a database of its own; the kernel cache and the host measurement stay shared
    monkeypatch.setenv("XCHIP_TUNING_DB", str(tmp_path / "tuning.db"))
    rng = np.random.default_rng()
    args = (rng.standard_normal((24, 40)).astype(np.float32), rng.standard_normal((40, 56)).astype(np.float32),
            rng.standard_normal(56).astype(np.float32))
    want = np.tanh(args[0].astype(np.float64) @ args[1] + args[2])
    f = xchip.jit(_dense, autotune=2)
    np.testing.assert_allclose(np.asarray(f(*args)), want, rtol=1e-5, atol=1e-5)
    assert "autotuning" in capsys.readouterr().err
    db = TuningDB(tmp_path / "tuning.db")
    sku, versions = host_identity()
    low = xchip.jit(_dense).lower(*args)
    group = next(g for g in low.kernel_graph.groups if g.kind == "matmul")
    best = db.best(kernel_key(group), sku, versions)
    assert best is not None

    import xchip.autotune.tune as tune_module

    def no_tuning(*a, **k):
        raise AssertionError("a cache hit must not tune")
    monkeypatch.setattr(tune_module, "tune", no_tuning)
    g = xchip.jit(_dense, autotune=True)                # a new function: same kernels, found in the database
    np.testing.assert_allclose(np.asarray(g(*args)), want, rtol=1e-5, atol=1e-5)
    assert "autotuning" not in capsys.readouterr().err
    compiled = g.lower(*args).compile()
    kernel = next(k for k in compiled._program.kernels if k.group.name == group.name)
    assert kernel.config == best.config


def test_jit_autotune_rejects_what_it_cannot_do():
    with pytest.raises(xchip.errors.XchipError, match="xchip autotune"):
        xchip.jit(_dense, target="h800", autotune=True)
    with pytest.raises(xchip.errors.XchipError, match="autotune must be"):
        xchip.jit(_dense, autotune="yes")
