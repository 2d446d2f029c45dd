"""`xchip autotune`: budgets, errors, and the default vs tuned table (a tiny real run)."""

from __future__ import annotations

import argparse

import pytest

from xchip.autotune_cli import parse_budget
from xchip.cli import main


def test_budget_is_trials_or_time():
    assert parse_budget("40").trials == 40
    b = parse_budget("5m")
    assert b.trials is None and b.seconds == 300
    for bad in ("0", "5 minutes", "-3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_budget(bad)


def test_autotune_prints_default_and_tuned_per_kernel(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XCHIP_CACHE_DIR", str(tmp_path))
    assert main(["autotune", "examples/mlp.py:dense_gelu", "--args", "f32[8,32],f32[32,64],f32[64]",
                 "--budget", "2"]) == 0
    out = capsys.readouterr()
    row = next(line for line in out.out.splitlines() if line.startswith("matmul_0"))
    assert "measured" in row and "budget of 2 trials" in row
    assert "trial 2" in out.err and (tmp_path / "tuning.db").exists()


def test_autotune_refuses_what_it_cannot_measure(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XCHIP_CACHE_DIR", str(tmp_path))
    assert main(["autotune", "examples/mlp.py:dense_gelu", "--args", "f32[8,32],f32[32,64],f32[64]",
                 "--target", "h800"]) == 2
    assert "host only" in capsys.readouterr().err
    assert main(["autotune", "examples/mlp.py:dense_gelu", "--args", "f32[8,32],f32[32,64],f32[64]",
                 "--kernels", "matmul_7"]) == 2
    assert "no kernel matmul_7" in capsys.readouterr().err
