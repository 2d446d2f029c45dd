"""Whole programs run with their Triton kernels (backends/triton/execute.py), each kernel
fed by the ones before it, in Triton's interpreter: the mlp, the transformer and the cnn match
jax.jit on the CPU within the examples' tolerances; groups without a kernel run on the
reference executor, say so, and the program still matches; while loops run from the
host. And scripts/gpu_check.py without a GPU: it says so in one line and exits 2, and it
imports this checkout with no xchip install and no TVM. Every program runs in one
interpreter process (each start costs seconds)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xchip
from examples.registry import get
from xchip.backends.triton.execute import TritonProgram, emulate_many
from xchip.errors import FallbackWarning
from xchip.numerics import compare

ROOT = Path(__file__).resolve().parent.parent
TARGET = "h800-sxm"
EXAMPLES = [("mlp", "f32"), ("mlp", "bf16"), ("transformer", "f32"), ("transformer", "bf16"), ("cnn", "f32"), ("cnn", "bf16")]
W = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)


def sort_then_dense(x, w):
    # sort has no Triton kernel; W is a constant that no group writes; x comes back as it is
    return jnp.tanh(jnp.sort(x, axis=-1) @ w) + (x @ W).sum(-1, keepdims=True), x


def _example(name: str, dtype: str):
    ex = get(name)
    params, x = ex.make_args(np.random.default_rng(), dtype)
    leaves = [np.asarray(a) for a in jax.tree_util.tree_leaves((params, x))]
    want = [np.asarray(a) for a in jax.tree_util.tree_leaves(jax.jit(ex.fn)(params, x))]
    return ex, xchip.jit(ex.fn, target=TARGET).lower(params, x), leaves, want


@pytest.fixture(scope="module")
def runs():
    """key -> (program, expected outputs, rtol, atol, result)."""
    cases, lowered = {}, {}
    for name, dtype in EXAMPLES:
        ex, low, leaves, want = _example(name, dtype)
        # the mlp as gpu_check runs it: its compiled artifacts' kernels (Triton's ptxas takes
        # seconds); the transformer generated with the tiles compile_graph would pick
        artifacts = low.compile().artifacts if name == "mlp" else None
        program = TritonProgram(low.kernel_graph, low.target, artifacts=artifacts)
        cases[name, dtype] = (program, leaves, want, ex.rtol[dtype], ex.atol[dtype])
        lowered[name, dtype] = low, artifacts

    rng = np.random.default_rng()
    x, w = rng.standard_normal((8, 64)).astype(np.float32), rng.standard_normal((64, 16)).astype(np.float32)
    low = xchip.jit(sort_then_dense, target=TARGET).lower(x, w)
    with pytest.warns(FallbackWarning, match=r"1 of \d+ kernel groups .*opaque_0 \(not generated: .*'sort'"):
        program = TritonProgram(low.kernel_graph, TARGET)
    cases["sort"] = (program, [x, w], [np.asarray(a) for a in jax.jit(sort_then_dense)(x, w)], 1e-5, 1e-5)

    # while loops run from the host, their condition's and body's kernels launched per
    # iteration (named in the artifacts after their loop)
    ex, low, leaves, want = _example("scan_rnn", "f32")
    program = TritonProgram(low.kernel_graph, low.target, artifacts=low.compile().artifacts)
    cases["loops"] = (program, leaves, want, ex.rtol["f32"], ex.atol["f32"])

    # a kernel that did not compile (as ptxas may refuse one) runs on the reference too
    low, artifacts = lowered["mlp", "f32"]
    kernels = list(artifacts.kernels)
    kernels[1] = dataclasses.replace(kernels[1], status="failed", reason="ptxas: simulated")
    with pytest.warns(FallbackWarning, match="matmul_1 .failed: ptxas: simulated"):
        program = TritonProgram(low.kernel_graph, low.target, artifacts=dataclasses.replace(artifacts, kernels=kernels))
    cases["failed"] = (program, *cases["mlp", "f32"][1:])

    results = emulate_many([(program, inputs) for program, inputs, *_ in cases.values()])
    return {key: (program, want, rtol, atol, result)
            for (key, (program, _, want, rtol, atol)), result in zip(cases.items(), results)}


def _matches(want, rtol, atol, result):
    assert len(result.outputs) == len(want)
    for k, (got, expected) in enumerate(zip(result.outputs, want)):
        c = compare(got, expected, rtol, atol)
        assert c.ok, f"output {k}: {c}"


@pytest.mark.parametrize("name,dtype", EXAMPLES)
def test_example_programs_match_jax_in_the_interpreter(runs, name, dtype):
    program, want, rtol, atol, result = runs[name, dtype]
    assert result.mode == "interpreter"
    assert result.on_reference == [] and all(s.kernel is not None for s in program.steps)
    if name == "transformer":
        assert "attention" in [s.group.kind for s in program.steps]
    _matches(want, rtol, atol, result)


def test_a_group_without_a_kernel_runs_on_the_reference_executor_and_the_program_matches(runs):
    program, want, rtol, atol, result = runs["sort"]
    (name, why), = result.on_reference
    assert name == "opaque_0" and "sort" in why
    assert [s.kernel is None for s in program.steps].count(True) == 1
    assert list(program.constants.values())[0].shape == W.shape     # read by a kernel, written by none
    _matches(want, rtol, atol, result)


def test_while_loops_run_from_the_host_with_their_kernels(runs):
    program, want, rtol, atol, result = runs["loops"]
    loops = [s.loop for s in program.steps if s.loop is not None]
    assert len(loops) == 2 and result.on_reference == []
    assert all(s.kernel is not None or s.loop is not None for lp in loops for s in lp.body.steps)
    _matches(want, rtol, atol, result)


def test_a_kernel_that_did_not_compile_runs_on_the_reference_executor(runs):
    program, want, rtol, atol, result = runs["failed"]
    assert result.on_reference == [("matmul_1", "failed: ptxas: simulated")]
    assert [s.kernel is not None for s in program.steps] == [True, False, True]
    _matches(want, rtol, atol, result)


def _no_gpu_env() -> dict:
    # no GPU even where the tests run on a machine that has one; nothing but the script's
    # own search path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    return dict(env, CUDA_VISIBLE_DEVICES="")


def test_gpu_check_without_a_gpu_says_so_in_one_line_and_exits_2(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(out), "--quick"],
                          capture_output=True, text=True, cwd=tmp_path, env=_no_gpu_env(), timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA GPU"), lines
    assert not out.exists()


# Run from an empty directory with the editable install's finder taken away and TVM made
# unimportable: the script's shim alone must make the checkout's xchip importable, well
# enough to compile a model for the target and plan its program.
_WITHOUT_INSTALL = """
import importlib.abc, importlib.util, json, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()

class NoTVM(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tvm":
            raise ImportError("TVM is not installed here")

sys.meta_path.insert(0, NoTVM())
report = {"importable_before": importlib.util.find_spec("xchip") is not None}
spec = importlib.util.spec_from_file_location("gpu_check", sys.argv[1])
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)
report["how"] = gpu_check.import_xchip()

import numpy as np
import xchip
from examples.registry import get
from xchip.backends.triton.execute import TritonProgram
ex = get("mlp")
params, x = ex.make_args(np.random.default_rng(0), "bf16")
low = xchip.jit(ex.fn, target="h800-sxm").lower(params, x)
artifacts = low.compile().artifacts
program = TritonProgram(low.kernel_graph, low.target, artifacts=artifacts)
report["targets"] = [gpu_check.pick_target(name, *cc)[0] for name, cc in
                     (("NVIDIA H200", (9, 0)), ("NVIDIA H800 PCIe", (9, 0)), ("NVIDIA A100-SXM4-80GB", (8, 0)),
                      ("NVIDIA GH200 480GB", (9, 0)), ("NVIDIA A10", (8, 6)), ("Tesla T4", (7, 5)))]
report.update(statuses=[k.status for k in artifacts.kernels], kernels=[s.kernel is not None for s in program.steps],
              backends_file=xchip.backends.__file__, tvm="tvm" in sys.modules,
              rc=gpu_check.main(["--out", "gpu_check.json"]))
print(json.dumps(report))
"""


def test_gpu_check_imports_the_checkout_without_an_install_or_tvm(tmp_path):
    script = str(ROOT / "scripts" / "gpu_check.py")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_WITHOUT_INSTALL), script], capture_output=True,
                          text=True, cwd=tmp_path, env=_no_gpu_env(), timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["importable_before"]
    assert "aliased" in report["how"] and "xchip.backends" in report["how"], report["how"]
    assert report["backends_file"] == str(ROOT / "backends" / "__init__.py")
    assert report["statuses"] == ["compiled"] * 3 and all(report["kernels"])
    assert not report["tvm"] and report["rc"] == 2
    # the target a GPU is, else one of its architecture, else an older one; none before sm_80
    assert report["targets"] == ["h200", "h800-pcie", "a100", "h800-sxm", "a800", None]


def test_estimate_names_the_tiles_of_attention_groups_too():
    # Compiled.estimate used to format every chosen tile as a matmul's (tile_m x tile_n):
    # a KeyError for the transformer's attention group on any GPU target.
    ex = get("transformer")
    compiled = xchip.jit(ex.fn, target="h800").lower(*ex.make_args(np.random.default_rng(0), "f32")).compile()
    estimate = compiled.estimate()
    assert any(k.kind == "attention" for k in estimate.kernels)
    assert any(n.startswith("attention") and "tile" in n for n in estimate.notes), estimate.notes
    assert estimate.total_s is not None and estimate.total_s > 0
