"""The CPU benchmark's harness (benchmarks/harness.py, benchmarks/cpu_vs_xla.py): its
arithmetic on synthetic timings, workload selection, the correctness gate, crash handling, and
two tiny end-to-end runs. The benchmark itself never runs in the test suite."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from benchmarks import cpu_vs_xla, harness
from benchmarks import workloads as wl

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "cpu_vs_xla.py"


def _round(min_s, median_s, status="ok", **kw):
    return {"status": status, "min_s": min_s, "median_s": median_s, "calls": 10, **kw}


def _raw(per_engine: dict[str, dict[str, list[dict]]]) -> dict:
    """{engine: {workload: [round results]}} -> run_rounds' shape."""
    raw = {}
    for engine, by_workload in per_engine.items():
        n = max(len(v) for v in by_workload.values())
        raw[engine] = [{"round": r, "position": 0, "info": {},
                        "results": {w: v[r] for w, v in by_workload.items() if r < len(v)}} for r in range(n)]
    return raw


# --- arithmetic ---------------------------------------------------------------------------------

def test_summarize_engine_min_of_minima_median_of_medians():
    s = harness.summarize_engine([_round(2.0, 3.0), _round(1.5, 4.0), _round(2.5, 5.0)])
    assert s.status == "ok" and s.rounds == s.rounds_ok == 3
    assert s.min_s == 1.5 and s.median_s == 4.0
    assert s.spread == pytest.approx(5.0 / 3.0 - 1)
    assert s.calls == 30


def test_summarize_engine_any_bad_round_fails_the_workload():
    s = harness.summarize_engine([_round(1.0, 1.0), {"status": "failed", "error": "Boom: x"}])
    assert s.status == "failed" and s.min_s is None
    assert s.error == "Boom: x (in 1 of 2 rounds)"
    w = harness.summarize_engine([{"status": "wrong", "error": "wrong result: err"}])
    assert w.status == "wrong" and w.error == "wrong result: err"
    assert harness.summarize_engine([]).status == "absent"


def test_ratio_geomean_gflops():
    ok = harness.summarize_engine
    xla, xchip = ok([_round(2e-3, 3e-3)]), ok([_round(1e-3, 4e-3)])
    assert harness.ratio(xla, xchip) == pytest.approx(2.0)          # XLA min / xchip min: xchip 2x faster
    assert harness.ratio(xla, ok([{"status": "failed", "error": "e"}])) is None
    assert harness.geomean([2.0, 0.5, 4.0]) == pytest.approx(4.0 ** (1 / 3))
    assert harness.geomean([None, 3.0]) == pytest.approx(3.0)
    assert harness.geomean([]) is None
    assert harness.gflops(2 * 512 ** 3, 2e-3) == pytest.approx(134.217728)
    assert harness.gflops(None, 1.0) is None


def test_fmt_ms():
    assert harness.fmt_ms(None) == "-"
    assert harness.fmt_ms(1.5) == "1,500"
    assert harness.fmt_ms(0.1234) == "123"
    assert harness.fmt_ms(0.01234) == "12.3"
    assert harness.fmt_ms(0.001234) == "1.23"
    assert harness.fmt_ms(0.0001234) == "0.123"
    assert harness.fmt_ms(0.0000052) == "0.0052"


def test_summary_table_and_geomean_with_a_failed_workload():
    chosen = wl.select("mlp_b1,cnn,gemm512,trivial")
    raw = _raw({
        "xla": {"mlp_b1": [_round(1e-3, 2e-3), _round(1.2e-3, 1.8e-3)],
                "cnn": [_round(4e-3, 5e-3), _round(4e-3, 5e-3)],
                "gemm512": [_round(2e-3, 2.5e-3), _round(2.2e-3, 2.4e-3)],
                "trivial": [_round(1e-5, 2e-5), _round(1e-5, 2e-5)]},
        "xchip": {"mlp_b1": [_round(0.5e-3, 1e-3, info={"runner": "compiled",
                                                         "kernels": {"tvm-llvm": 3, "reference": 1}}),
                             _round(0.6e-3, 1e-3)],
                  "cnn": [{"status": "failed", "error": "LoweringError: conv not supported"}] * 2,
                  "gemm512": [_round(4e-3, 5e-3), _round(8e-3, 9e-3)],
                  "trivial": [_round(3e-5, 5e-5), _round(3e-5, 5e-5)]},
    })
    summary = harness.summarize(raw, chosen, ["xla", "xchip"])
    rows = {r["name"]: r for r in summary["rows"]}
    assert rows["mlp_b1"]["ratio"] == pytest.approx(2.0)
    assert rows["gemm512"]["ratio"] == pytest.approx(0.5)
    assert rows["cnn"]["ratio"] is None
    g = summary["geomean"]
    # trivial is a dispatch-overhead row, cnn failed: two workloads count.
    assert g["n"] == 2 and g["workloads"] == ["mlp_b1", "gemm512"]
    assert g["value"] == pytest.approx(1.0)
    assert g["excluded"] == [("cnn", "xchip failed")]

    table = harness.format_results(summary, ["xla", "xchip"], peak_gflops=234.0)
    header = table[0]
    assert header.index("xchip min ms") < header.index("XLA min ms") < header.index("XLA/xchip")
    text = "\n".join(table)
    assert "trivial" not in text
    cnn_line = next(l for l in table if l.startswith("cnn"))
    assert "FAILED" in cnn_line and "xchip failed: LoweringError: conv not supported" in cnn_line
    assert "xchip kernels: 1 reference, 3 tvm-llvm" in next(l for l in table if l.startswith("mlp_b1"))
    gemm_line = next(l for l in table if l.startswith("gemm512")).split()
    # min ms: xchip 4.00, XLA 2.00; ratio 0.50; GFLOP/s 67.1 / 134.2; %peak 29 / 57
    assert gemm_line[1:] == ["4.00", "7.00", "2.00", "2.45", "0.50", "67.1", "134.2", "29", "57"]

    overhead = harness.format_overhead(summary, ["xla", "xchip"], wl.OVERHEAD_ROWS)
    trivial_line = next(l for l in overhead if l.startswith("trivial"))
    assert "30.0 / 50.0" in trivial_line and "10.0 / 20.0" in trivial_line and "+30.0" in trivial_line

    lines = harness.format_geomean(summary, ["xla", "xchip"])
    assert lines[0] == "excluded from the geometric mean: cnn (xchip failed)"
    assert lines[-1] == "geometric-mean ratio (XLA/xchip) over 2 workloads: 1.00"


def test_geomean_line_with_one_engine():
    summary = harness.summarize(_raw({"xla": {"gemm512": [_round(1e-3, 1e-3)]}}), wl.select("gemm512"), ["xla"])
    assert harness.format_geomean(summary, ["xla"])[-1].startswith(
        "geometric-mean ratio (XLA/xchip) over 0 workloads: n/a")


def test_round_orders():
    assert harness.round_orders(["xla", "xchip"], 3) == [["xla", "xchip"], ["xchip", "xla"], ["xla", "xchip"]]
    assert harness.round_orders(["xla", "xchip"], 2, "fixed") == [["xla", "xchip"]] * 2
    rnd = harness.round_orders(["xla", "xchip"], 8, "random", seed=1)
    assert all(sorted(o) == ["xchip", "xla"] for o in rnd)
    assert rnd == harness.round_orders(["xla", "xchip"], 8, "random", seed=1)


# --- selection -------------------------------------------------------------------------------------

def test_only_selects_in_registry_order():
    assert [w.name for w in wl.select(" gemm512, softmax ")] == ["softmax", "gemm512"]
    names = [w.name for w in wl.select("gemm512,mlp_b1")]
    assert names == ["mlp_b1", "gemm512"]
    assert [w.name for w in wl.select("")] == list(wl.WORKLOADS)
    with pytest.raises(KeyError, match="unknown workload.*resnet.*known: mlp_b1"):
        wl.select("gemm512,resnet")


def test_cli_only_and_list(capsys):
    assert cpu_vs_xla.main(["--list", "--only", "gemm1024,softmax"]) == 0
    out = capsys.readouterr().out
    listed = [l.split()[0] for l in out.splitlines() if l and not l.startswith(" ")]
    assert listed == ["softmax", "gemm1024"]
    with pytest.raises(SystemExit):
        cpu_vs_xla.main(["--list", "--only", "nope"])


def test_cli_rejects_unknown_engine():
    with pytest.raises(SystemExit):
        cpu_vs_xla.parser().parse_args(["--engines", "xla,tpu"])
    assert cpu_vs_xla.parser().parse_args(["--engines", "xla"]).engines == ["xla"]


def test_workload_inputs_are_seeded_nonzero_f32():
    for w in wl.WORKLOADS.values():
        if w.name in ("transformer", "mlp_b64"):
            continue   # same code path as mlp_b1, larger
        a, b = w.args(), w.args()
        la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
        assert all(x.dtype == np.float32 and np.any(x != 0) for x in la), w.name
        assert all(np.array_equal(x, y) for x, y in zip(la, lb)), w.name


# --- the correctness gate ----------------------------------------------------------------------------

class _WrongEngine(harness.XlaEngine):
    name = "wrong"

    def compile(self, fn):
        import jax
        return jax.jit(lambda *a: jax.tree_util.tree_map(lambda y: y * 1.01, fn(*a)))


class _BrokenEngine(harness.XlaEngine):
    name = "broken"

    def compile(self, fn):
        def f(*a):
            raise NotImplementedError("no kernel for add\nsecond line")
        return f


def test_worker_flags_a_wrong_result_and_does_not_time_it(monkeypatch):
    monkeypatch.setitem(harness.ENGINES, "wrong", _WrongEngine)
    monkeypatch.setitem(harness.ENGINES, "broken", _BrokenEngine)
    wrong = harness.run_worker("wrong", ["trivial"], seconds=0.01)["results"]["trivial"]
    assert wrong["status"] == "wrong" and "min_s" not in wrong
    assert wrong["error"].startswith("wrong result: max |y - ref| / max |ref|")
    assert wrong["check_error"] > wl.WORKLOADS["trivial"].tol
    broken = harness.run_worker("broken", ["trivial"], seconds=0.01)["results"]["trivial"]
    assert broken == {"status": "failed", "error": "NotImplementedError: no kernel for add"}
    good = harness.run_worker("xla", ["trivial"], seconds=0.01)["results"]["trivial"]
    assert good["status"] == "ok" and good["calls"] >= 5 and 0 < good["min_s"] <= good["median_s"]


def test_first_line():
    assert harness.first_line(ValueError("bad shape\nmore")) == "ValueError: bad shape"
    assert harness.first_line(ValueError("ValueError: twice")) == "ValueError: twice"
    assert harness.first_line(KeyError()) == "KeyError"


def test_check():
    w = wl.WORKLOADS["gemm512"]
    ref = [np.array([[1.0, -2.0], [3.0, 4.0]])]
    assert wl.check(w, [np.array([[1.0, -2.0], [3.0, 4.0]], np.float32)], ref)[0]
    assert not wl.check(w, [np.array([[1.0, -2.0], [3.0, 4.01]], np.float32)], ref)[0]
    assert "non-finite" in wl.check(w, [np.array([[np.nan, -2.0], [3.0, 4.0]])], ref)[2]
    assert "shape" in wl.check(w, [np.zeros((2, 3))], ref)[2]
    assert "outputs" in wl.check(w, [ref[0], ref[0]], ref)[2]


# --- worker processes -------------------------------------------------------------------------------

FAKE_WORKER = textwrap.dedent("""
    import json, os, sys
    argv = sys.argv[1:]
    names = argv[argv.index("--only") + 1].split(",")
    path = argv[argv.index("--result") + 1]
    record = {"engine": argv[argv.index("--worker") + 1], "results": {}}
    for n in names:
        if n == "b":
            print("fatal: segfault-ish in b", file=sys.stderr, flush=True)
            os._exit(3)
        record["results"][n] = {"status": "ok", "min_s": 1.0, "median_s": 1.0, "calls": 5}
        json.dump(record, open(path, "w"))
""")


def test_a_crashing_worker_fails_only_its_workload(tmp_path, capsys):
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    out = harness.run_engine_process([sys.executable, str(script)], "xchip", ["a", "b", "c"], seconds=0.1,
                                     min_calls=5, round_index=0, rounds=1, timeout=60)
    res = out["results"]
    assert res["a"]["status"] == "ok" and res["c"]["status"] == "ok"
    assert res["b"] == {"status": "failed", "error": "worker process died (exit code 3): fatal: segfault-ish in b"}
    assert [p["rc"] for p in out["info"]["processes"]] == [3, 0]
    assert "segfault-ish" in capsys.readouterr().err      # the worker's stderr is passed through


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_end_to_end_xla_gemm512(tmp_path):
    out = tmp_path / "r.json"
    p = _run("--only", "gemm512", "--rounds", "1", "--seconds", "0.05", "--engines", "xla", "--json", str(out))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[-1] == "geometric-mean ratio (XLA/xchip) over 0 workloads: n/a (engines run: xla)"
    assert "Every time below is measured" in lines[0]
    assert any(l.startswith("gemm512") for l in lines)
    assert "round 1/1 xla" in p.stderr and "gemm512" in p.stderr
    record = json.loads(out.read_text())
    row = record["summary"][0]
    assert row["name"] == "gemm512" and row["stats"]["xla"]["status"] == "ok"
    assert row["stats"]["xla"]["calls"] >= 5
    assert record["environment"]["versions"]["jax"]
    assert record["peak"]["gflops"] == harness.DEFAULT_PEAK_GFLOPS


def test_end_to_end_both_engines_trivial(tmp_path):
    out = tmp_path / "r.json"
    p = _run("--only", "trivial", "--rounds", "1", "--seconds", "0.02", "--json", str(out), "--peak-gflops", "100")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[-1] == "geometric-mean ratio (XLA/xchip) over 0 workloads: n/a"
    assert any(l.startswith("dispatch overhead") for l in lines)
    record = json.loads(out.read_text())
    stats = record["summary"][0]["stats"]
    assert stats["xla"]["status"] == "ok"
    # The harness's job is to report xchip either way: timed, or failed/wrong with its reason
    # (whether xchip itself works is for xchip's own tests).
    if stats["xchip"]["status"] == "ok":
        assert record["xchip_runner"] and stats["xchip"]["calls"] >= 5
    else:
        assert stats["xchip"]["status"] in ("failed", "wrong") and stats["xchip"]["error"]
        assert f"xchip {stats['xchip']['status']}: " in p.stdout
    assert [r["position"] for r in record["raw"]["xla"]] == [0] and [r["position"] for r in record["raw"]["xchip"]] == [1]
    assert math.isclose(record["peak"]["gflops"], 100.0)
