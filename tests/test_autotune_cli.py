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
    # a database of its own; the kernel cache and the host measurement stay shared
    monkeypatch.setenv("XCHIP_TUNING_DB", str(tmp_path / "tuning.db"))
    assert main(["autotune", "examples/mlp.py:dense_gelu", "--args", "f32[8,32],f32[32,64],f32[64]",
                 "--budget", "2"]) == 0
    out = capsys.readouterr()
    row = next(line for line in out.out.splitlines() if line.startswith("matmul_0"))
    assert "measured" in row and "budget of 2 trials" in row
    assert "trial 2" in out.err and (tmp_path / "tuning.db").exists()


def test_absent_targets_are_tuned_by_the_model_and_say_so(tmp_path, capsys, monkeypatch):
    # a database of its own; the kernel cache and the host measurement stay shared
    monkeypatch.setenv("XCHIP_TUNING_DB", str(tmp_path / "tuning.db"))
    assert main(["autotune", "examples/mlp.py:dense_gelu", "--args", "f32[256,512],f32[512,1024],f32[1024]",
                 "--target", "h800,h20"]) == 0
    out = capsys.readouterr()
    for target in ("h800", "h20"):
        section = out.out.split(f"# {target}")[1].split("# ")[0]
        row = next(line for line in section.splitlines() if line.startswith("matmul_0"))
        assert "modeled" in row and "space exhausted" in row
    assert "cost model only" in out.err


@pytest.mark.slow   # 50 s of real trials; resumption is also covered by test_autotune_tune in the default run
def test_progress_bar_and_lines(tmp_path, capsys, monkeypatch):
    # a database of its own; the kernel cache and the host measurement stay shared
    monkeypatch.setenv("XCHIP_TUNING_DB", str(tmp_path / "tuning.db"))
    args = ["autotune", "examples/mlp.py:dense_gelu", "--args", "f32[8,32],f32[32,64],f32[64]", "--budget", "2"]
    assert main(args + ["--progress", "bar"]) == 0
    err = capsys.readouterr().err
    assert "matmul_0" in err and "2/2" in err and "best" in err       # the bar's last frame
    assert main(args + ["--progress", "lines", "--budget", "3"]) == 0
    err = capsys.readouterr().err
    assert "trial 3:" in err and "trial 2:" not in err                # resumed: two trials were done


def test_autotune_refuses_unknown_kernels(tmp_path, capsys, monkeypatch):
    # a database of its own; the kernel cache and the host measurement stay shared
    monkeypatch.setenv("XCHIP_TUNING_DB", str(tmp_path / "tuning.db"))
    assert main(["autotune", "examples/mlp.py:dense_gelu", "--args", "f32[8,32],f32[32,64],f32[64]",
                 "--kernels", "matmul_7"]) == 2
    assert "no kernel matmul_7" in capsys.readouterr().err
