"""Tuning absent targets by the cost model alone (autotune/modeled.py, backends/tile_knobs.py):
legal spaces from the target's on-chip memory, results stored as `modeled` and never mixed
with measured ones, and targets whose descriptors lack numbers say so instead of guessing."""

from __future__ import annotations

import numpy as np
import pytest

import xchip
from xchip.autotune.db import TuningDB
from xchip.autotune.modeled import MODEL_VERSIONS, modeled_configs, tune_modeled
from xchip.autotune.tune import host_identity, kernel_key
from xchip.backends.tile_knobs import default_tile, tile_space
from xchip.targets import get
from xchip.targets.cost_model import estimate_kernel


def _gemm(target, m, k, n):
    return xchip.jit(lambda a, b: a @ b, target=target).lower(np.ones((m, k), np.float32), np.ones((k, n), np.float32))


def _matmul(lowered):
    return next(g for g in lowered.kernel_graph.groups if g.kind == "matmul")


def test_tile_space_is_legal_by_the_targets_onchip_memory():
    low = _gemm("h800", 1024, 1024, 1024)
    group, target = _matmul(low), get("h800")
    space = tile_space(group, target)
    configs = list(space)
    assert 100 < len(configs) < space.size                       # some pruned, many left
    assert all(c["tile_m"] % 16 == 0 and c["tile_k"] % 16 == 0 for c in configs)
    assert all(estimate_kernel(group, target, c).legal for c in configs[::37])
    too_big = {"tile_m": 256, "tile_n": 256, "tile_k": 128, "stages": 5, "num_warps": 4, "split_k": 1}
    assert not space.is_legal(too_big) and not estimate_kernel(group, target, too_big).legal
    assert space.is_legal(default_tile(space))
    assert tile_space(next(g for g in low.kernel_graph.groups if g.kind != "matmul"), target) is None \
        if any(g.kind != "matmul" for g in low.kernel_graph.groups) else True


@pytest.mark.parametrize("target", ["h800", "h20", "a800"])
def test_modeled_tuning_stores_modeled_results_only(target, tmp_path):
    low = _gemm(target, 4096, 1024, 4096)
    db = TuningDB(tmp_path / "t.db")
    (r,) = [r for r in tune_modeled(low, target, db=db) if r.search is not None]
    assert r.source == "modeled" and r.best is not None and r.best.source == "modeled"
    assert r.best.stats.median_s <= r.default_s                  # exhaustive over the model: never worse
    key, sku = kernel_key(_matmul(low)), get(target).name          # h800 is h800-sxm
    assert r.best.target == sku
    assert db.best(key, sku, MODEL_VERSIONS, source="measured") is None
    assert 1 < len(db.records(key, sku, MODEL_VERSIONS, source="modeled")) <= 8
    assert modeled_configs(low.kernel_graph, target, db) == {r.name: r.best.config}
    sku, versions = host_identity()
    assert db.best(key, sku, versions) is None                   # the host's measured tunings are apart


def test_a_target_without_the_numbers_stores_nothing_and_says_why(tmp_path):
    low = _gemm("dcu-z100", 1024, 1024, 1024)
    db = TuningDB(tmp_path / "t.db")
    (r,) = [r for r in tune_modeled(low, "dcu-z100", db=db) if r.search is not None]
    assert r.best is None and "cannot tell these configs apart" in r.note and "unknown" in r.note
    assert db.records() == []


def test_estimates_use_the_stored_modeled_tiles(tmp_path, monkeypatch):
    # a database of its own; the kernel cache and the host measurement stay shared
    monkeypatch.setenv("XCHIP_TUNING_DB", str(tmp_path / "tuning.db"))
    low = _gemm("h20", 2048, 512, 2048)
    before = low.compile().estimate()
    assert not any("tuning database" in n for n in before.notes)
    assert any("from the cost model" in n for n in before.notes)     # the tiles the backend would pick
    (r,) = [r for r in tune_modeled(low, "h20", db=TuningDB()) if r.search is not None]
    after = low.compile().estimate()
    assert any(n.startswith(f"{r.name}: tile") and "tuning database (modeled)" in n for n in after.notes)
    kernel = next(k for k in after.kernels if k.group == r.name)
    assert kernel.time_s == pytest.approx(r.best.stats.median_s)
