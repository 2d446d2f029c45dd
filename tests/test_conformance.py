"""The StableHLO conformance set through the importer and the reference executor, run the
way users run it (`python -m xchip.conformance`), and the runner's own robustness."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xchip.conformance import expect_almost_eq, expect_close, expect_eq, run_directory, summary_line

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "tests" / "conformance" / "stablehlo"
BASELINE = json.loads((ROOT / "tests" / "conformance_baseline.json").read_text())


@pytest.mark.parametrize("level", ["none", "O2"])
def test_conformance_set_does_not_regress(tmp_path, level):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "xchip.conformance", str(CONFORMANCE), "--json", str(out),
                           "--jobs", "2", "-O", level], capture_output=True, text=True, timeout=1800)
    summary = json.loads(out.read_text())["summary"]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == f"{summary['passed']} passed, {summary['failed']} failed, {summary['unsupported']} unsupported"
    assert summary["total"] == BASELINE["total"]
    failed = {f["file"]: f["detail"] for f in json.loads(out.read_text())["files"] if f["status"] != "passed"}
    unexpected = {f: d for f, d in failed.items() if f not in BASELINE["known_failures"]}
    assert not unexpected, f"files that newly fail: {unexpected}"
    assert summary["passed"] >= BASELINE["passed"], proc.stdout[-3000:]
    print(f"\nconformance: {last}")


MODULE = """
module @m {{
  func.func public @main() -> tensor<2xf32> {{
    %0 = stablehlo.constant dense<[1.0, 2.0]> : tensor<2xf32>
    %1 = stablehlo.constant dense<[{expected}]> : tensor<2xf32>
    {body}
    stablehlo.custom_call @check.expect_eq(%0, %1) {{has_side_effect = true}} : (tensor<2xf32>, tensor<2xf32>) -> ()
    return %0 : tensor<2xf32>
  }}
}}
"""


def _write(folder: Path, name: str, expected="1.0, 2.0", body="") -> None:
    (folder / name).write_text(textwrap.dedent(MODULE.format(expected=expected, body=body)))


def test_runner_reports_each_kind_of_outcome_and_survives_hangs(tmp_path):
    _write(tmp_path, "a_pass.mlir")
    _write(tmp_path, "b_wrong.mlir", expected="1.0, 3.0")
    _write(tmp_path, "c_unsupported.mlir", body="""
    %m = stablehlo.constant dense<[[2.0, 0.0], [0.0, 2.0]]> : tensor<2x2xf32>
    %2 = stablehlo.cholesky %m, lower = true : tensor<2x2xf32>
    """)
    (tmp_path / "d_garbage.mlir").write_text("this is not MLIR")
    hang = """
    %c = stablehlo.constant dense<true> : tensor<i1>
    %w = stablehlo.while(%it = %c) : tensor<i1>
      cond { stablehlo.return %it : tensor<i1> }
      do { stablehlo.return %it : tensor<i1> }
    stablehlo.custom_call @check.expect_eq(%w, %c) {has_side_effect = true} : (tensor<i1>, tensor<i1>) -> ()
    """
    _write(tmp_path, "e_hang.mlir", body=hang)
    results = {r.file: r for r in run_directory(tmp_path, jobs=2, timeout=8)}
    assert results["a_pass.mlir"].status == "passed"
    assert results["b_wrong.mlir"].status == "failed" and "expect_eq" in results["b_wrong.mlir"].detail
    assert results["c_unsupported.mlir"].status == "unsupported"
    assert "stablehlo.cholesky" in results["c_unsupported.mlir"].detail
    assert results["d_garbage.mlir"].status == "failed" and "ParseError" in results["d_garbage.mlir"].detail
    assert results["e_hang.mlir"].status == "failed" and "timed out" in results["e_hang.mlir"].detail
    assert summary_line(list(results.values())) == "1 passed, 3 failed, 1 unsupported"


def test_check_rules():
    x = np.array([1.0, np.nan, -0.0], np.float32)
    assert expect_eq(x, x.copy()) == ""
    assert "differ" in expect_eq(x, np.array([1.0, np.nan, 0.0], np.float32))   # -0.0 is not +0.0
    assert expect_close(np.nextafter(x, np.float32(2)) * np.array([1, 1, 0], np.float32),
                        x * np.array([1, 1, 0], np.float32)) == ""
    assert "differ" in expect_close(np.array([1.001], np.float32), np.array([1.0], np.float32))
    assert expect_close(np.array([1e-9], np.float32), np.array([0.0], np.float32)) == ""  # near zero
    assert expect_almost_eq(np.array([1.0009]), np.array([1.0])) == ""
    assert "differ" in expect_almost_eq(np.array([1.002]), np.array([1.0]))
    c = np.array([1 + 2j], np.complex64)
    assert "differ" in expect_close(c + np.complex64(0.01j), c)


def _cpu_backend_run(tmp_path, files):
    folder = tmp_path / "set"
    folder.mkdir()
    for f in files:
        (folder / f.name).write_text(f.read_text())
    return {r.file: r for r in run_directory(folder, jobs=2, timeout=600, opt_level="O0", executor="cpu")}


def _assert_same_as_reference(results):
    newly_failing = {f: r.detail for f, r in results.items()
                     if r.status != "passed" and f not in BASELINE["known_failures"]}
    assert not newly_failing, newly_failing
    assert sum(r.compiled for r in results.values()) >= len(results)   # the op under test, at least
    return {k: sum(getattr(r, k) for r in results.values()) for k in ("compiled", "opaque", "fallback")}


def test_a_sample_through_the_cpu_backend(tmp_path):
    """Every 60th file at O0 (one kernel per op, nothing folded away), compiled by TVM/LLVM."""
    results = _cpu_backend_run(tmp_path, sorted(CONFORMANCE.glob("*.mlir"))[::60])
    print(f"\nsample on the CPU backend: {_assert_same_as_reference(results)}")


@pytest.mark.slow
def test_whole_set_through_the_cpu_backend(tmp_path):
    results = _cpu_backend_run(tmp_path, sorted(CONFORMANCE.glob("*.mlir")))
    kernels = _assert_same_as_reference(results)
    passed = sum(r.status == "passed" for r in results.values())
    print(f"\nconformance on the CPU backend: {passed} passed of {len(results)}; kernels {kernels}")
