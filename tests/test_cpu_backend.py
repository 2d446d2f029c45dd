"""The compiled CPU backend as a whole: programs over the memory plan, the reference
fallback (never silent), the on-disk kernel cache, and argument handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xchip
from examples.registry import EXAMPLES
from xchip.backends.cpu import BACKEND_COMPILED, BACKEND_REFERENCE, FallbackWarning
from xchip.ir import Graph, Region, TensorType, ops
from xchip.numerics import compare
from xchip.runtime import reference


@pytest.fixture
def rng():
    return np.random.default_rng()


def test_every_example_group_is_compiled():
    """Loops (scan_rnn's two while loops), dynamic slices and concatenations included: no
    example needs the reference executor."""
    for name, ex in EXAMPLES.items():
        args = ex.make_args(np.random.default_rng(0), "f32")
        with warnings.catch_warnings():
            warnings.simplefilter("error", FallbackWarning)
            compiled = xchip.jit(ex.fn).lower(*args).compile()
        for k in compiled.kernels:
            assert k.backend == BACKEND_COMPILED, f"{name}: {k.name} runs on {k.backend}"


def test_results_are_fresh_arrays_and_repeat_exactly(rng):
    def f(x, w):
        h = jnp.tanh(x @ w)
        return h, h.sum(axis=1), x
    x = rng.standard_normal((16, 32)).astype(np.float32)
    w = rng.standard_normal((32, 24)).astype(np.float32)
    compiled = xchip.jit(f).lower(x, w).compile()
    first = [np.array(o) for o in compiled(x, w)]
    second = compiled(x, w)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, np.asarray(b))
    np.testing.assert_allclose(first[0], np.tanh(x.astype(np.float64) @ w), rtol=2e-5, atol=2e-6)
    assert np.asarray(second[2]) is not x        # a returned input is the caller's own copy


def test_unaligned_and_strided_inputs(rng):
    f = xchip.jit(lambda x, y: x * 2.0 + y)
    base = rng.standard_normal(1025).astype(np.float32)
    x = base[1:].reshape(32, 32)                   # 4 bytes past an aligned start
    y = rng.standard_normal((32, 64)).astype(np.float32)[:, ::2]   # not contiguous
    np.testing.assert_array_equal(np.asarray(f(x, y)), x * np.float32(2.0) + y)


def test_what_does_not_lower_runs_on_the_reference_executor_and_says_so(rng):
    def f(x, idx):
        return jnp.sort(x, axis=-1)[idx] * 2.0
    x = rng.standard_normal((8, 16)).astype(np.float32)
    idx = np.array([3, 1], np.int32)
    with pytest.warns(FallbackWarning, match=r"opaque_\d+ \(.*sort"):
        compiled = xchip.jit(f).lower(x, idx).compile()
    got = compiled(x, idx)
    backends = {k.name: k.backend for k in compiled.kernels}
    assert BACKEND_REFERENCE in backends.values() and BACKEND_COMPILED in backends.values()
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jax.jit(f)(x, idx)))


def test_evaluate_ops_runs_a_group_given_its_inputs(rng):
    body = Region([TensorType((3,), "f32")])
    (x,) = body.args
    e = body.append(ops.make("exponential", [x]))
    n = body.append(ops.make("negate", [e.result]))
    body.append(ops.make("return", [n.result], result_types=[]))
    a = rng.standard_normal(3).astype(np.float32)
    values = reference.evaluate_ops(body.ops[:2], {x: a})
    np.testing.assert_array_equal(values[n.result], reference.evaluate(Graph("main", body), [a])[0])


def test_second_process_compiles_nothing(tmp_path):
    script = textwrap.dedent("""
        import json, numpy as np, xchip
        from examples.registry import EXAMPLES
        ex = EXAMPLES["mlp"]
        args = ex.make_args(np.random.default_rng(0), "f32")
        compiled = xchip.jit(ex.fn).lower(*args).compile()
        kernels = compiled._program.kernels
        print(json.dumps([k.from_cache for k in kernels if k.backend == "tvm-llvm"]))
    """)
    env = dict(os.environ, XCHIP_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=600)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first and not any(first) and all(second)


def test_bf16_example_matches_jax():
    ex = EXAMPLES["transformer"]
    args = ex.make_args(np.random.default_rng(), "bf16")
    got = np.asarray(xchip.jit(ex.fn)(*args))
    want = np.asarray(jax.jit(ex.fn)(*args))
    c = compare(got, want, ex.rtol["bf16"], ex.atol["bf16"])
    assert c.ok, str(c)


def test_a_returned_constant_is_returned(rng):
    """A constant the program returns is written by no kernel: it must come from the
    constant's data, not from a fresh (uninitialized) result array."""
    def f(x):
        return jnp.array([3, -1, 7], jnp.int64 if jax.config.jax_enable_x64 else jnp.int32), x * 2.0
    x = rng.standard_normal(4).astype(np.float32)
    for _ in range(2):
        const, doubled = xchip.jit(f, target="cpu", opt_level="O0")(x)
        np.testing.assert_array_equal(np.asarray(const), [3, -1, 7])
        np.testing.assert_array_equal(np.asarray(doubled), x * 2.0)


@pytest.mark.parametrize("fn", [lambda i: i % 10, lambda i: i // -7, lambda i: (i % -3) * (i != 0)],
                         ids=["mod", "floordiv", "mod_negative_divisor"])
def test_integer_division_by_constants_compiles(rng, fn):
    """jnp's floor division and modulo by a constant: the divisor's bit casts are folded,
    not left as a reinterpret of a constant (LLVM rejected those: the group fell back)."""
    x = rng.integers(-1000, 1000, 64).astype(np.int32)
    x[:3] = [0, np.iinfo(np.int32).min, -1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        got = xchip.jit(fn, target="cpu")(x)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jax.jit(fn)(x)))


def test_a_config_that_does_not_apply_falls_back_to_the_default_schedule(rng):
    """A tuning database entry from an older schedule must not cost compiled code."""
    from xchip.backends.cpu import CpuProgram
    from xchip.targets import get
    x = rng.standard_normal((16, 32)).astype(np.float32)
    compiled = xchip.jit(lambda x: jnp.tanh(x) * 2.0, target="cpu").lower(x).compile()
    (name,) = [g.name for g in compiled.kernel_graph.groups]
    with pytest.warns(UserWarning, match="does not apply"):
        program = CpuProgram(compiled.kernel_graph, compiled.memory_plan, get("cpu"),
                             configs={name: {"vector": 3, "stale_knob": 1}})
    assert program.kernels[0].backend == BACKEND_COMPILED and program.kernels[0].config is None
    np.testing.assert_allclose(program([x])[0], np.tanh(x) * 2.0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,dtype", [("scan_rnn", "bf16")])   # a loop, a dtype DLPack cannot take as is
def test_profile_times_every_kernel_and_leaves_the_program_intact(rng, name, dtype):
    ex = EXAMPLES[name]
    args = ex.make_args(rng, dtype)
    compiled = xchip.jit(ex.fn).lower(*args).compile()
    flat = compiled._flat_inputs(jax.tree_util.tree_leaves(args))
    before = [np.array(a) for a in compiled._program(flat)]
    times = compiled._program.profile(flat, min_repeats=3, min_seconds=0.0)
    assert list(times) == [k.name for k in compiled.kernels]
    assert all(len(t) >= 3 and min(t) > 0 for t in times.values())
    after = compiled._program(flat)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    want = jax.tree_util.tree_leaves(jax.jit(ex.fn)(*args))
    for got, w in zip(after, want):
        assert compare(np.asarray(got), np.asarray(w), ex.rtol[dtype], ex.atol[dtype]).ok


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_jax_arrays_and_read_only_arrays_are_taken_as_inputs(rng, dtype):
    # np.asarray of a jax.Array is read-only, and TVM's DLPack import refuses read-only
    # arrays: xchip.jit(f)(jnp_array) used to fail with BufferError.
    f = xchip.jit(lambda x, y: x * 2 + y)
    x = jnp.asarray(rng.standard_normal((4, 8)), dtype)
    y = rng.standard_normal((4, 8)).astype(x.dtype)
    y.flags.writeable = False
    got = np.asarray(f(x, y), np.float32)
    want = np.asarray(jax.jit(lambda x, y: x * 2 + y)(x, y), np.float32)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("config", [
    dict(mr=4, nv=2, kc=0, mc=4, pack_a=True, pack_b=True, unroll_k=4, parallel="n"),
    dict(mr=4, nv=2, kc=0, mc=20, pack_a=False, pack_b=False, unroll_k=4, parallel="m"),
    dict(mr=2, nv=1, kc=0, mc=4, pack_a=True, pack_b=False, unroll_k=2, parallel="m"),
])
def test_epilogue_of_a_matmul_over_several_row_dims_with_tiles_across_them(rng, config):
    # [2, 10, 48] @ [48, 128] + bias: the rows are two dims fused into 20; register tiles of
    # 4 rows cross from the first 10 to the next. The epilogue, computed per tile, took the
    # bounding box of the tile's rows in the unfused layout (every row) and wrote rows no
    # tile had computed yet (found by the autotuner's check: max abs error 20.8).
    from xchip import targets
    from xchip.backends.cpu import CpuProgram

    def f(x, w, b):
        return jnp.tanh(x @ w + b) * 0.5 + x.sum(axis=-1, keepdims=True)

    args = [rng.standard_normal(s).astype(np.float32) for s in ((2, 10, 48), (48, 128), (128,))]
    lowered = xchip.jit(f).lower(*args)
    group = next(g for g in lowered.kernel_graph.groups if g.kind == "matmul")
    program = CpuProgram(lowered.kernel_graph, lowered._optimized.memory_plan, targets.get("cpu"),
                         configs={group.name: config})
    assert next(k for k in program.kernels if k.group is group).config == config
    got = program(args)[0]
    want = np.asarray(jax.jit(f)(*args))
    assert compare(got, want, 1e-5, 1e-5).ok, compare(got, want)
