"""`xchip report`: the report's content, its JSON Schema, the HTML in a real browser
(headless Chromium: no console errors, every plot drawn), and `--diff` on real reports."""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import jax
import jsonschema
import numpy as np
import pytest

from examples.registry import get
from xchip import report
from xchip.autotune.db import Stats, TuningDB
from xchip.autotune.tune import host_identity, kernel_key
from xchip.cli import main as cli_main

TARGETS = ["cpu", "h800", "ascend910b", "dcu-z100"]


# The times of a tuning search, in the order it would have measured them (real trials cost
# ~9 s each here: a worker process per trial); the configs are the kernel's own legal ones.
TRIAL_TIMES = [40e-6, None, 31e-6, 35e-6, 22e-6]


@pytest.fixture(scope="module")
def mlp_report(tmp_path_factory):
    """The mlp's report on four targets, with a tuning database (the one xchip.jit reads,
    pointed at a fresh file) holding a search's history for its first kernel."""
    import xchip
    from xchip.backends.cpu.tuning import tunable
    from xchip.targets import get as get_target

    ex = get("mlp")
    group = xchip.jit(ex.fn).lower(*ex.make_args(np.random.default_rng(1), "f32")).kernel_graph.groups[0]
    configs = list(itertools.islice(iter(tunable(group, get_target("cpu")).space), len(TRIAL_TIMES)))
    assert len(configs) == len(TRIAL_TIMES)
    path = tmp_path_factory.mktemp("db") / "tuning.db"
    sku, versions = host_identity()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XCHIP_TUNING_DB", str(path))
        db = TuningDB()
        for config, seconds in zip(configs, TRIAL_TIMES):
            stats = Stats(seconds, seconds, 5) if seconds else None
            db.record(kernel_key(group), sku, versions, config, stats, "measured", "ok" if seconds else "failed")
        program = report.Program("mlp (f32)", ex.fn, ex.make_args(np.random.default_rng(2), "f32"),
                                 source="examples/mlp.py", rtol=ex.rtol["f32"], atol=ex.atol["f32"])
        data = report.collect([program], TARGETS)
    paths = report.write(data, tmp_path_factory.mktemp("report"))
    return data, paths


def _target(data, name):
    return next(t for t in data["programs"][0]["targets"] if t["target"] == name)


# ---- content -----------------------------------------------------------------------------

def test_report_json_follows_its_schema(mlp_report):
    data, paths = mlp_report
    report.validate(json.loads(paths["json"].read_text()))
    assert [t["target"] for t in data["programs"][0]["targets"]] == ["cpu", "h800-sxm", "ascend910b", "dcu-z100"]


def test_the_schema_rejects_what_a_report_must_not_say(mlp_report):
    data, _ = mlp_report
    for mutate in (lambda d: _target(d, "cpu")["kernels"][0]["time"].update(source="guessed"),
                   lambda d: _target(d, "h800-sxm").update(verification_level="executed-ish"),
                   lambda d: _target(d, "cpu")["time"].update(seconds=None),   # measured needs a number
                   lambda d: _target(d, "cpu")["kernels"][0].pop("bound")):
        bad = copy.deepcopy(data)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            report.validate(bad)


def test_host_times_are_measured_with_provenance_and_checked_against_jax(mlp_report):
    data, _ = mlp_report
    cpu = _target(data, "cpu")
    assert cpu["verification_level"] == "executed" and cpu["check"]["ok"]
    assert cpu["time"]["source"] == "measured" and cpu["time"]["repeats"] >= 5
    on = cpu["time"]["measured_on"]
    assert on["device"] and on["date"] and on["versions"]["jax"] == jax.__version__
    for k in cpu["kernels"]:
        assert k["time"]["source"] == "measured" and k["time"]["seconds"] > 0 and k["time"]["repeats"] >= 5
        assert k["tflops"] == pytest.approx(k["flops"] / k["time"]["seconds"] / 1e12)
        assert k["gbps"] == pytest.approx(k["bytes"] / k["time"]["seconds"] / 1e9)
        assert k["bound"] in ("compute", "memory", "latency")
        assert k["roofline"]["percent"] == pytest.approx(100 * k["roofline"]["seconds"] / k["time"]["seconds"])
    # the first kernel's search history, in the order measured, and its best config in use
    assert cpu["tuning"] == [{"kernel": cpu["kernels"][0]["name"], "source": "measured", "trials": TRIAL_TIMES}]
    assert cpu["kernels"][0]["config_source"] == "tuning database (measured)"
    assert all(k["config_source"] == "default schedule" for k in cpu["kernels"][1:])


def test_gpu_targets_report_what_the_compiler_says_and_modeled_times(mlp_report):
    data, _ = mlp_report
    h800 = _target(data, "h800-sxm")
    assert h800["verification_level"] == "compiled + emulated"
    for k in h800["kernels"]:
        assert k["time"]["source"] == "modeled" and k["time"]["seconds"] > 0
        gpu = k["gpu"]
        assert gpu["status"] == "compiled" and gpu["arch"] == "sm_90"
        assert 0 < gpu["registers"] <= 255 and gpu["spill_bytes"] == 0 and gpu["shared_bytes"] >= 0
        assert k["config"] and k["config_source"]
    # an unknown peak is said, not guessed: no roofline and no time on the DCU Z100
    dcu = _target(data, "dcu-z100")
    assert all(k["roofline"]["seconds"] is None and k["bound"] == "unknown" for k in dcu["kernels"])
    assert dcu["time"]["seconds"] is None and dcu["furthest"] is None
    assert _target(data, "ascend910b")["verification_level"] == "none"


def test_markdown_puts_source_and_level_next_to_every_time(mlp_report):
    data, paths = mlp_report
    sections = paths["md"].read_text().split("\n### ")[1:]
    assert len(sections) == len(data["programs"][0]["targets"])
    for t, section in zip(data["programs"][0]["targets"], sections):
        assert f" on {t['target']} " in section.splitlines()[0]
        rows = [line for line in section.splitlines() if any(line.startswith(f"| {k['name']} |") for k in t["kernels"])]
        assert len(rows) == len(t["kernels"])
        for row in rows:
            assert f"| {t['verification_level']} |" in row and re.search(r"\| (measured|modeled) \|", row)


# ---- the HTML in Chromium ----------------------------------------------------------------

def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: `make test` installs it (Debian package `chromium`)")
    return path


def render_in_chromium(page: Path, out: Path) -> dict:
    """Open `page` headless: its screenshot, console errors, and how many plots drew."""
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", f"--user-data-dir={out / 'profile'}"]
    shot = out / "screenshot.png"
    run = subprocess.run(base + ["--window-size=1400,2000", f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    dom = subprocess.run(base + ["--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    console = [line for line in (run.stderr + dom.stderr).splitlines()
               if "CONSOLE" in line and ("Uncaught" in line or "Error" in line or "error" in line)]
    plots = re.search(r'data-plots="(\d+)/(\d+)"', dom.stdout)
    return {"screenshot": shot, "console_errors": console,
            "plots": (int(plots[1]), int(plots[2])) if plots else None}


def test_html_renders_in_chromium_with_every_plot(mlp_report, tmp_path):
    import matplotlib.image

    data, paths = mlp_report
    got = render_in_chromium(paths["html"], tmp_path)
    assert got["console_errors"] == []
    # the time-per-target plot, a roofline for each target that has the bandwidth and the
    # f32 peak (cpu, h800), the cpu's convergence curve
    assert got["plots"] is not None
    drawn, total = got["plots"]
    assert drawn == total == 4
    html = paths["html"].read_text()
    assert "dcu-z100&#x27;s descriptor lacks its memory bandwidth and peak TFLOP/s for fp32: no roofline" in html
    assert "ascend910b&#x27;s descriptor lacks its peak TFLOP/s for fp32: no roofline" in html
    pixels = matplotlib.image.imread(got["screenshot"])
    assert pixels.shape[0] >= 2000 and pixels.std() > 0.05     # a page, not a blank frame


def test_the_browser_check_fails_on_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(f"<html><head><script>{_check_script()}</script></head><body>"
                    "<figure class='plot'><p>no svg here</p></figure>"
                    "<script>notDefinedAnywhere();</script></body></html>")
    got = render_in_chromium(page, tmp_path)
    assert got["console_errors"] and got["plots"] == (0, 1)


def _check_script() -> str:
    from xchip.report.render import CHECK_SCRIPT
    return CHECK_SCRIPT


# ---- --diff on two real reports ----------------------------------------------------------

def test_diff_of_two_real_reports(mlp_report, tmp_path, capsys):
    old, old_paths = mlp_report
    # a second real report of the same program, on two of the targets
    ex = get("mlp")
    args = ex.make_args(np.random.default_rng(3), "f32")
    new = report.collect([report.Program("mlp (f32)", ex.fn, args)], ["cpu", "h800"])
    report.validate(new)
    changes = report.diff(old, new)
    by = {(c.target, c.kernel): c for c in changes}
    cpu = _target(old, "cpu")
    for k in cpu["kernels"]:
        c = by[("cpu", k["name"])]
        ratio = c.new_s / c.old_s
        assert c.source == "measured"
        assert c.status == ("regression" if ratio > 1.1 else "improvement" if ratio < 1 / 1.1 else "unchanged")
    # the same compiler and model on h800: the same modeled times
    assert all(by[("h800-sxm", k["name"])].status == "unchanged" for k in _target(old, "h800-sxm")["kernels"])
    assert {c.status for c in changes if c.target in ("ascend910b", "dcu-z100")} == {"removed"}

    # a kernel twice as slow is a regression, and --fail-on-regression says so in the exit code
    slower = copy.deepcopy(old)
    k0 = _target(slower, "cpu")["kernels"][0]
    k0["time"]["seconds"] *= 2
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "slower.json").write_text(json.dumps(slower))
    assert cli_main(["report", "--diff", str(tmp_path / "old.json"), str(tmp_path / "slower.json")]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"regression\s+mlp \(f32\)\s+cpu\s+{k0['name']}\s.*2\.00x", out)
    assert "1 regressions" in out
    assert cli_main(["report", "--diff", str(tmp_path / "old.json"), str(tmp_path / "slower.json"),
                     "--fail-on-regression"]) == 1
    assert cli_main(["report", "--diff", str(tmp_path / "old.json"), str(old_paths["md"])]) == 2


def test_cli_writes_the_three_files(tmp_path, capsys):
    assert cli_main(["report", "examples/mlp.py:dense_gelu", "--args", "f32[8,32],f32[32,64],f32[64]",
                     "--targets", "cpu,h20", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"dense_gelu\s+cpu\s+.*measured \(verification level: executed\)", out)
    assert re.search(r"dense_gelu\s+h20\s+.*modeled\s+\(verification level: compiled \+ emulated\)", out)
    data = report.load(tmp_path / "report.json")
    report.validate(data)
    assert data["programs"][0]["arguments"] == ["f32[8,32]", "f32[32,64]", "f32[64]"]
    assert (tmp_path / "report.html").read_text().count("<svg") >= 3


def test_cli_errors_name_what_is_wrong(tmp_path, capsys):
    assert cli_main(["report", "examples/mlp.py:no_such_fn", "--args", "f32[4,24]", "--out", str(tmp_path)]) == 2
    assert "has no 'no_such_fn'" in capsys.readouterr().err
    assert cli_main(["report", "--example", "resnet"]) == 2
    assert "no example named 'resnet'" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


def test_the_demo_writes_the_report(tmp_path, capsys):
    from examples import demo
    assert demo.main(["--out", str(tmp_path), "--models", "mlp", "--targets", "cpu,l20", "--seed", "5", "-q"]) == 0
    assert "2 of 2 match jax.jit" in capsys.readouterr().out
    data = report.load(tmp_path / "report.json")
    report.validate(data)
    assert [t["target"] for t in data["programs"][0]["targets"]] == ["cpu", "l20"]
    assert "| mlp | bf16 | ok |" in (tmp_path / "checks.md").read_text()
    assert (tmp_path / "report.html").stat().st_size > 10_000 and (tmp_path / "report.md").exists()


def test_compiled_report_of_a_function_with_pytrees_and_statics(tmp_path):
    import jax.numpy as jnp

    import xchip

    def layer(params, x, activation):
        h = x @ params["w"] + params["b"]
        return jnp.tanh(h) if activation == "tanh" else jax.nn.relu(h)

    rng = np.random.default_rng(4)
    params = {"w": rng.standard_normal((16, 8)).astype(np.float32), "b": rng.standard_normal(8).astype(np.float32)}
    x = rng.standard_normal((4, 16)).astype(np.float32)
    compiled = xchip.jit(layer, static_argnums=2, opt_level="O1").lower(params, x, "tanh").compile()
    paths = compiled.report(tmp_path, targets=["a800"])
    data = report.load(paths["json"])
    report.validate(data)
    cpu, a800 = data["programs"][0]["targets"]
    assert (cpu["target"], a800["target"]) == ("cpu", "a800")
    assert cpu["check"]["ok"] and cpu["time"]["source"] == "measured"
    assert data["programs"][0]["arguments"] == ["f32[8]", "f32[16,8]", "f32[4,16]"]
    assert any("tanh" in k["ops"] for k in cpu["kernels"])       # the static argument chose tanh


@pytest.mark.slow
def test_the_transformer_report_across_six_targets_renders(tmp_path):
    """What docs/report-transformer.png shows (`xchip report --example transformer`)."""
    assert cli_main(["report", "--example", "transformer", "--out", str(tmp_path)]) == 0
    data = report.load(tmp_path / "report.json")
    report.validate(data)
    assert len(data["programs"][0]["targets"]) == 6
    got = render_in_chromium(tmp_path / "report.html", tmp_path)
    assert got["console_errors"] == [] and got["plots"] is not None
    drawn, total = got["plots"]
    assert drawn == total >= 5      # time per target, and cpu, a800, h800, h20 rooflines
