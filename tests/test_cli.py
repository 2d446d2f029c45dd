"""The `xchip compile` command, run as a user would (a subprocess with the console script's module)."""

import subprocess
import sys
from pathlib import Path

import pytest

from xchip.cli import main

ROOT = Path(__file__).resolve().parents[1]
MODEL = f"{ROOT / 'examples' / 'mlp.py'}:dense_gelu"
ARGS = "f32[4,24],f32[24,64],f32[64]"


def test_compile_prints_ir_and_kernels(capsys):
    assert main(["compile", MODEL, "--args", ARGS, "--target", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "func @main(%0: f32[4,24], %1: f32[24,64], %2: f32[64])" in out
    assert "dot_general" in out and "matmul" in out
    assert "verification level: executed" in out
    assert "1 kernels (1 matmul)" in out and "memory:" in out


def test_compile_run_compares_with_jax(capsys):
    assert main(["compile", MODEL, "--args", ARGS, "--run", "--quiet", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "seed 7" in out and "output 0: ok" in out
    assert "func @main" not in out


@pytest.mark.parametrize("argv, message", [
    (["compile", MODEL, "--args", "f32[4,24]"], "cannot trace"),
    (["compile", MODEL, "--args", ARGS, "--target", "h9000"], "unknown target 'h9000'"),
    (["compile", f"{ROOT / 'examples' / 'mlp.py'}:nope", "--args", ARGS], "has no 'nope'"),
    (["compile", "missing.py:f", "--args", ARGS], "no such file"),
    (["compile", "no_such_module:f", "--args", ARGS], "cannot import module 'no_such_module'"),
    (["compile", MODEL, "--args", "f32[4,24"], "bad --args spec"),
])
def test_errors_are_clear(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_pass_stats_print_after_and_estimates_on_several_targets(capsys):
    argv = ["compile", MODEL, "--args", ARGS, "-q", "--pass-stats", "--print-after", "fuse",
            "--target", "cpu,h20,a800", "--estimate", "--run", "--seed", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "// IR after fuse" in out and "// matmul_0" in out
    assert "fuse" in out and "total" in out and "ms" in out
    for target in ("cpu", "h20", "a800"):
        assert f"target {target}:" in out
    assert "run: skipped on h20" in out and "output 0: ok" in out
    assert "modeled" in out.lower()


def test_unknown_pass_and_level(capsys):
    assert main(["compile", MODEL, "--args", ARGS, "--print-after", "nope"]) == 2
    assert "unknown pass(es) nope" in capsys.readouterr().err


def test_module_reference_from_the_working_directory(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["compile", "examples.mlp:dense_gelu", "--args", ARGS, "-q"]) == 0
    assert "matmul" in capsys.readouterr().out


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "xchip.cli", "compile", MODEL, "--args", ARGS, "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "matmul" in proc.stdout
