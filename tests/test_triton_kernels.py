"""Triton kernels generated from kernel groups (backends/triton: elementwise, matmul with
epilogues and computed operands, row reductions; attention in test_triton_attention.py): checked in Triton's
interpreter against the reference executor (emulated), and compiled to machine code for
sm_80 / sm_89 / sm_90 (cubin) and gfx906 (hsaco) with Triton's own toolchain (compiled).
No GPU is needed for either."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xchip
from xchip.backends.triton import runtime
from xchip.backends.triton.kernels import generate
from xchip.errors import UnsupportedOpError
from xchip.numerics import compare
from xchip.runtime import reference


def dense_gelu_residual(x, w, b, r):
    return jax.nn.gelu(x @ w + b) + r


def broadcast_transpose(x, y, s):
    return jnp.maximum(x * 2.0, y.T) - jnp.exp(x) + s


def batched_scores(q, k):
    return jnp.einsum("bqd,bkd->bqk", q, k) * 0.125


def layer_norm(x, scale, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias


def row_max(x):
    return jnp.max(x, axis=-1)


def strided_dilated_conv_nchw(x, w):
    y = jax.lax.conv_general_dilated(x, w, (2, 1), ((2, 1), (0, 2)), rhs_dilation=(1, 2),
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return jax.nn.relu(y)


def pools(x):
    """Max pooling with padding (padded positions never win) and average pooling."""
    m = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (0, 1), (0, 0)))
    return jax.lax.reduce_window(m, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 1, 1, 1), "VALID") * 0.25


def slices_and_concatenation(x, y):
    return jnp.concatenate([x[1:7:2] * 2, jnp.tanh(y)], axis=0)[:, ::2] + 1


# sizes that are not multiples of the blocks (64x64 tiles, 1024-element blocks)
PROGRAMS = {
    "matmul_epilogue": (dense_gelu_residual, [(50, 70), (70, 90), (90,), (50, 90)]),
    "elementwise": (broadcast_transpose, [(33, 65), (65, 33), (65,)]),
    "batched_matmul": (batched_scores, [(3, 40, 16), (3, 24, 16)]),
    "softmax": (jax.nn.softmax, [(6, 50)]),
    "layernorm": (layer_norm, [(2, 5, 40), (40,), (40,)]),
    "log_softmax": (jax.nn.log_softmax, [(3, 1000)]),
    "conv": (strided_dilated_conv_nchw, [(2, 5, 9, 11), (7, 5, 3, 3)]),
    "pooling": (pools, [(2, 9, 12, 5)]),
    "slice_concatenate": (slices_and_concatenation, [(9, 10), (4, 10)]),
}


def _groups(name, target="h800"):
    fn, shapes = PROGRAMS[name]
    rng = np.random.default_rng()
    args = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    low = xchip.jit(fn, target=target).lower(*args)
    return low, dict(zip(low.graph.body.args, args))


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_generated_kernels_match_the_reference_in_the_interpreter(name):
    low, env = _groups(name)
    env.update(reference.evaluate_ops(low.graph.body.ops, dict(env)))
    groups = low.kernel_graph.groups
    sources = [generate(g, None, "h800") for g in groups]
    results = runtime.emulate_many([(ks, [env[v] for v in g.inputs], [v.type for v in g.outputs])
                                    for g, ks in zip(groups, sources)])
    for group, ks, got in zip(groups, sources, results):
        for v, out in zip(group.outputs, got):
            c = compare(out, env[v], 1e-5, 1e-5)
            assert c.ok, f"{group.name}: {c}\n{ks.source}"


@pytest.mark.parametrize("backend,arch,warp", [("cuda", 80, 32), ("cuda", 89, 32), ("cuda", 90, 32),
                                               ("hip", "gfx906", 64)])
def test_kernels_compile_to_machine_code_for_the_architecture(backend, arch, warp):
    from triton.backends.compiler import GPUTarget
    low, _ = _groups("matmul_epilogue")
    group = low.kernel_graph.groups[0]
    art = runtime.compile_for(generate(group, {"tile_m": 32, "tile_n": 32, "tile_k": 32}, "h800"),
                              GPUTarget(backend, arch, warp), num_warps=4, num_stages=2)
    expected = f"sm_{arch}" if backend == "cuda" else arch
    assert art.arch == expected and art.elf_arch == expected        # read back from the ELF header
    assert art.binary_kind == ("cubin" if backend == "cuda" else "hsaco")
    assert art.registers and art.registers > 0 and art.spills is not None
    assert art.shared_bytes is not None and art.shared_bytes > 0    # the operand tiles
    assert ("ptx" if backend == "cuda" else "amdgcn") in art.text


def test_a_matmul_operand_computed_in_the_kernel_is_computed_tile_by_tile():
    """x @ w.astype(bf16): the convert is a prologue of the matmul group, computed on each
    K tile of w inside the loop (no bf16 copy of w in memory)."""
    from xchip.numerics import default_tolerance
    rng = np.random.default_rng()
    x = rng.standard_normal((50, 70)).astype(jnp.bfloat16)
    w = rng.standard_normal((70, 90)).astype(np.float32)
    fn = lambda x, w: x @ w.astype(jnp.bfloat16)  # noqa: E731
    low = xchip.jit(fn, target="h800").lower(x, w)
    (group,) = low.kernel_graph.groups
    assert [op.name for op in group.ops] == ["convert", "dot_general"]
    env = dict(zip(low.graph.body.args, [x, w]))
    want = np.asarray(jax.jit(fn)(x, w))    # XLA:CPU adds bf16 products in f32, as GPUs do
    ks = generate(group, {"tile_m": 16, "tile_n": 32, "tile_k": 16}, "h800")
    assert ".to(tl.bfloat16)" in ks.source.split("for k0")[1]
    (got,) = runtime.emulate(ks, [env[v] for v in group.inputs], [v.type for v in group.outputs])
    c = compare(got.astype(np.float32), want.astype(np.float32), *default_tolerance(want.dtype))
    assert c.ok, str(c)


def test_row_maxima_propagate_nan_like_the_reference():
    x = np.random.default_rng().standard_normal((7, 9)).astype(np.float32)
    x[2, 4] = np.nan
    low = xchip.jit(row_max, target="h800").lower(x)
    (group,) = low.kernel_graph.groups
    (got,) = runtime.emulate(generate(group, None, "h800"), [x], [v.type for v in group.outputs])
    assert np.isnan(got[2]) and not np.isnan(np.delete(got, 2)).any()
    np.testing.assert_array_equal(np.delete(got, 2), np.delete(x.max(axis=1), 2))


@pytest.mark.parametrize("backend,arch,warp", [("cuda", 80, 32), ("hip", "gfx906", 64)])
def test_row_kernels_compile(backend, arch, warp):
    from triton.backends.compiler import GPUTarget
    low, _ = _groups("layernorm")
    art = runtime.compile_for(generate(low.kernel_graph.groups[0], None, "h800"), GPUTarget(backend, arch, warp))
    assert art.elf_arch == (f"sm_{arch}" if backend == "cuda" else arch) and art.registers > 0


def test_what_is_not_generated_names_the_op_its_location_and_the_target():
    rng = np.random.default_rng()
    x = rng.standard_normal((8, 16)).astype(np.float32)
    low = xchip.jit(lambda x: jnp.sum(x, axis=0), target="h800").lower(x)      # not the last axis
    group = low.kernel_graph.groups[0]
    with pytest.raises(UnsupportedOpError) as e:
        generate(group, None, "h800")
    message = str(e.value)
    assert "'reduce'" in message and "h800" in message and "test_triton_kernels.py" in message


def test_the_mlp_examples_gelu_kernel_matches_in_the_interpreter():
    from examples.mlp import dense_gelu
    rng = np.random.default_rng()
    args = [rng.standard_normal(s).astype(np.float32) for s in [(20, 48), (48, 72), (72,)]]
    low = xchip.jit(dense_gelu, target="h20").lower(*args)
    env = dict(zip(low.graph.body.args, args))
    (group,) = low.kernel_graph.groups
    want = reference.evaluate_ops(group.ops, {v: env[v] for v in group.inputs})
    (got,) = runtime.emulate(generate(group, {"tile_m": 16, "tile_n": 32, "tile_k": 16}, "h20"),
                             [env[v] for v in group.inputs], [v.type for v in group.outputs])
    c = compare(got, want[group.outputs[0]], 1e-5, 1e-5)
    assert c.ok, str(c)


def test_compile_emits_machine_code_and_a_manifest(tmp_path, capsys):
    import json

    from xchip.cli import main
    assert main(["compile", "examples/mlp.py:dense_gelu", "--args", "f32[64,128],f32[128,256],f32[256]",
                 "--target", "h800,dcu-z100", "-q", "--emit-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 kernels compiled for h800-sxm (sm_90)" in out and "compiled for dcu-z100 (gfx906)" in out
    for target, arch, binary in (("h800-sxm", "sm_90", "cubin"), ("dcu-z100", "gfx906", "hsaco")):
        manifest = json.loads((tmp_path / target / "manifest.json").read_text())
        (kernel,) = manifest["kernels"]
        assert kernel["status"] == "compiled" and kernel["binary_arch"] == arch == manifest["arch"]
        assert (tmp_path / target / f"{kernel['kernel']}.{binary}").read_bytes()[:4] == b"\x7fELF"
        assert kernel["registers"] > 0 and kernel["verification"] == "compiled"


def test_emit_dir_on_a_target_without_machine_code_says_so(tmp_path, capsys):
    from xchip.cli import main
    assert main(["compile", "examples/mlp.py:dense_gelu", "--args", "f32[4,8],f32[8,16],f32[16]",
                 "--target", "ascend910b", "-q", "--emit-dir", str(tmp_path)]) == 2
    assert "no machine code is generated for target 'ascend910b'" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("example", ["mlp", "transformer", "cnn", "scan_rnn"])
def test_every_kernel_of_an_example_model_matches_in_the_interpreter(example, dtype):
    """Every kernel of the example models (the fused attention, convolutions and pooling
    included) is generated and runs in Triton's interpreter as the reference computes it,
    within the model's tolerance for the dtype."""
    from examples.registry import get
    ex = get(example)
    params, x = ex.make_args(np.random.default_rng(), dtype)
    low = xchip.jit(ex.fn, target="h800").lower(params, x)
    values = dict(zip(low.graph.body.args, [np.asarray(a) for a in jax.tree_util.tree_leaves((params, x))]))
    values.update(reference.evaluate_ops(low.graph.body.ops, dict(values)))
    groups = list(_kernels(low.kernel_graph, values))
    sources = [generate(g, {"tile_m": 16, "tile_n": 32, "tile_k": 16}, "h800") for g, _ in groups]
    results = runtime.emulate_many([(ks, [env[v] for v in g.inputs], [v.type for v in g.outputs])
                                    for (g, env), ks in zip(groups, sources)])
    for (group, env), got in zip(groups, results):
        for v, out in zip(group.outputs, got):
            c = compare(out.astype(np.float32), env[v].astype(np.float32), ex.rtol[dtype], ex.atol[dtype])
            assert c.ok, f"{group.name}: {c}"
    kinds = [g.kind for g in low.kernel_graph.groups]
    assert {"transformer": "attention", "cnn": "conv", "scan_rnn": "opaque"}.get(example, "matmul") in kinds


def _kernels(kernel_graph, values):
    """(group, values it reads) for every kernel of the graph; a loop's condition and body
    kernels with the values of its first iteration."""
    from xchip.backends.triton.loops import loop_op, regions
    for group in kernel_graph.groups:
        if loop_op(group) is None:
            yield group, values
            continue
        loop = regions(group)
        env = dict(values)
        for region in loop.op.regions:
            env.update(zip(region.args, [values[v] for v in loop.op.operands]))
        for part in (loop.cond, loop.body):
            env.update(reference.evaluate_ops(part.graph.body.ops, dict(env)))
            yield from _kernels(part, env)


def test_dcus_that_need_hygons_toolchain_get_source_only_and_say_why(tmp_path, capsys, monkeypatch):
    import json

    from xchip.cli import main
    for var in ("DTK_HOME", "ROCM_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")                 # no Hygon hipcc
    assert main(["compile", "examples/mlp.py:dense_gelu", "--args", "f32[16,32],f32[32,64],f32[64]",
                 "--target", "dcu-k100", "-q", "--emit-dir", str(tmp_path)]) == 0
    assert "emitted as Triton source for dcu-k100 (gfx926)" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (kernel,) = manifest["kernels"]
    assert kernel["status"] == "emitted" and kernel["verification"] == "emitted"
    assert "Hygon's toolchain" in kernel["reason"] and "none was found" in kernel["reason"]
    assert "def matmul_0(" in (tmp_path / "matmul_0.py").read_text()


GPU_FAMILY = {"a800": "sm_80", "l20": "sm_89", "h800": "sm_90", "h20": "sm_90", "dcu-z100": "gfx906"}
# every example for one cubin and the hsaco target in the default run (cold, Triton compiles
# the transformer's kernels for all five in ~60 s); the whole matrix with -m slow
COMPILE_CASES = [pytest.param(example, target, marks=() if target in ("h800", "dcu-z100") or example == "mlp"
                              else pytest.mark.slow)
                 for example in ("mlp", "transformer", "cnn", "scan_rnn") for target in GPU_FAMILY]


@pytest.mark.parametrize("example,target", COMPILE_CASES)
def test_every_example_model_compiles_for_every_gpu_family_target(example, target, tmp_path):
    """Every kernel of every example model (a loop's condition and body kernels too) is
    machine code for the target, the binary's architecture read back from its ELF header."""
    import json

    from examples.registry import get
    ex = get(example)
    args = ex.make_args(np.random.default_rng(), "f32")
    arch = GPU_FAMILY[target]
    manifest = json.loads(xchip.jit(ex.fn, target=target).lower(*args).compile().artifacts.write(tmp_path).read_text())
    kernels = [k for top in manifest["kernels"] for k in [top] + top.get("parts", [])]
    assert manifest["compiled"] == manifest["total"] > 0
    for k in kernels:
        assert k["status"] == "compiled", (target, k["kernel"], k["reason"])
        if k["kind"] != "loop":
            assert k["binary_arch"] == arch and k["verification"] == "compiled"
            assert (tmp_path / k["files"][1]).read_bytes()[:4] == b"\x7fELF"


def test_fp8_products_only_where_the_precision_policy_asks_and_the_target_has_them():
    """precision="f8e4m3fn": the matmul's operands are rounded to fp8 in the kernel (the
    prologue) and multiplied on fp8 tensor cores (sm_89, sm_90); the A800 has none and
    refuses; without the policy the same matmul stays f32."""
    from xchip.errors import TargetError
    rng = np.random.default_rng()
    x, w = rng.standard_normal((40, 96)).astype(np.float32), rng.standard_normal((96, 72)).astype(np.float32)
    fn = lambda x, w: jax.nn.relu(x @ w)  # noqa: E731
    low = xchip.jit(fn, target="h800", precision="f8e4m3fn").lower(x, w)
    (group,) = low.kernel_graph.groups
    ks = generate(group, {"tile_m": 32, "tile_n": 32, "tile_k": 32}, "h800")
    assert ks.source.count(".to(tl.float8e4nv)") == 2
    env = dict(zip(low.graph.body.args, [x, w]))
    want = reference.evaluate_ops(low.graph.body.ops, dict(env))[group.outputs[0]]
    (got,) = runtime.emulate(ks, [env[v] for v in group.inputs], [v.type for v in group.outputs])
    assert compare(got, want, 1e-5, 1e-5).ok                  # exact fp8 products, f32 sums
    assert not compare(got, np.asarray(jax.jit(fn)(x, w)), 1e-2, 1e-2).ok   # and not f32's
    (kernel,) = low.compile().artifacts.kernels
    assert kernel.status == "compiled" and kernel.artifact.elf_arch == "sm_90"
    with pytest.raises(TargetError, match="no fast f8e4m3fn matmul"):
        xchip.jit(fn, target="a800", precision="f8e4m3fn").lower(x, w)
    assert "float8" not in generate(xchip.jit(fn, target="h800").lower(x, w).kernel_graph.groups[0]).source


@pytest.mark.parametrize("config", [{"split_k": 4, "group_m": 2}, {"split_k": 3, "group_m": 1}, {"split_k": 1, "group_m": 8}])
def test_split_k_and_grouped_tile_order_keep_the_result(config):
    """split-K: partial sums meet in a zeroed workspace and the last program applies the
    (nonlinear) epilogue; group-M only reorders which program computes which tile."""
    low, env = _groups("matmul_epilogue")
    env.update(reference.evaluate_ops(low.graph.body.ops, dict(env)))
    (group,) = low.kernel_graph.groups
    ks = generate(group, {"tile_m": 16, "tile_n": 16, "tile_k": 16, **config}, "h800")
    assert ("tl.atomic_add" in ks.source) == (config["split_k"] > 1)
    (got,) = runtime.emulate(ks, [env[v] for v in group.inputs], [v.type for v in group.outputs])
    c = compare(got, env[group.outputs[0]], 1e-5, 1e-5)
    assert c.ok, str(c)


def test_default_gemm_tiles_follow_each_target_and_compile_without_spills():
    """Tiles are the cost model's pick within what the hardware runs well: on sm_90 whole
    warpgroups of 64+ rows (wgmma), accumulators within half the register file, no split-K
    where the model cannot tell it apart; the H20 (low compute) and H800 differ."""
    from xchip.backends.triton.program import compile_graph
    a = np.zeros((4096, 4096), jnp.bfloat16)
    chosen = {}
    for target in ("h800-sxm", "h20"):
        low = xchip.jit(lambda x, y: x @ y, target=target).lower(a, a)
        (kernel,) = compile_graph(low.kernel_graph, target).kernels
        c = kernel.config
        assert kernel.tiles_from == "cost model" and kernel.artifact.spills == 0, (target, c, kernel.reason)
        assert c["tile_m"] >= 64 and c["num_warps"] % 4 == 0 and c["split_k"] == 1, c
        assert c["tile_m"] * c["tile_n"] <= c["num_warps"] * 32 * 128
        chosen[target] = (c["tile_m"], c["tile_n"])
    assert chosen["h800-sxm"] != chosen["h20"], chosen
