"""ARM64 (Huawei Kunpeng 920) kernels: TVM TensorIR cross-compiled with LLVM for
aarch64-linux-gnu / tsv110, linked with backends/cpu/harness/tvm_harness.c and run under
qemu-aarch64, checked against numpy (and, for the example models, the reference executor).

Run on purpose: `pytest -m arm64` (or `make test-arm64`). The tests fail, naming the apt
command, when the cross compiler or qemu is missing: a machine meant to run them must have them.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import tvm  # noqa: E402  (a pinned dependency)
from tvm import te  # noqa: E402

from xchip.backends.cpu import cross  # noqa: E402

pytestmark = pytest.mark.arm64

RNG = np.random.default_rng(20240920)


@pytest.fixture(autouse=True)
def _toolchain():
    # Excluded from the default run by pyproject's addopts; `make test-arm64` installs the tools.
    problem = cross.arm64_toolchain_available()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def _schedule(func, name: str) -> tvm.s_tir.Schedule:
    mod = tvm.IRModule({name: func.with_attr("global_symbol", name)})
    sch = tvm.s_tir.Schedule(mod)
    sch.work_on(name)
    return sch


def _elf_machine(path) -> int:
    header = open(path, "rb").read(20)
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


EM_AARCH64 = 183


# --------------------------------------------------------------------------- kernels

def elementwise(n: int = 1000, dtype: str = "float32"):
    """C = exp(A) * 0.5 + B, split 8-wide (tail of 1000 % 8 = 0; 1003 exercises the tail)."""
    A = te.placeholder((n,), dtype, name="A")
    B = te.placeholder((n,), dtype, name="B")
    C = te.compute((n,), lambda i: te.exp(A[i]) * tvm.tirx.const(0.5, dtype) + B[i], name="C")
    sch = _schedule(te.create_prim_func([A, B, C]), "ew")
    (i,) = sch.get_loops(sch.get_sblock("C"))
    io, ii = sch.split(i, [None, 8])
    sch.parallel(io)
    sch.vectorize(ii)
    return sch.mod


def parallel_sum(n: int = 1 << 16, parts: int = 64):
    """S[0] = sum(A): rfactor into `parts` partial sums computed in parallel, then combined."""
    A = te.placeholder((n,), "float32", name="A")
    k = te.reduce_axis((0, n), name="k")
    S = te.compute((1,), lambda i: te.sum(A[k], axis=k), name="S")
    sch = _schedule(te.create_prim_func([A, S]), "total")
    _, kk = sch.get_loops(sch.get_sblock("S"))
    ko, _ = sch.split(kk, [parts, None])
    rf = sch.rfactor(ko, 0)
    i, k0, _ = sch.get_loops(rf)
    sch.reorder(k0, i)
    sch.parallel(k0)
    return sch.mod


def row_softmax_denominator(m: int = 37, n: int = 300):
    """R[i] = sum_j exp(A[i, j]), rows in parallel."""
    A = te.placeholder((m, n), "float32", name="A")
    k = te.reduce_axis((0, n), name="k")
    R = te.compute((m,), lambda i: te.sum(te.exp(A[i, k]), axis=k), name="R")
    sch = _schedule(te.create_prim_func([A, R]), "rowsum")
    i, _ = sch.get_loops(sch.get_sblock("R"))
    sch.parallel(i)
    return sch.mod


def matmul(m: int = 96, k: int = 80, n: int = 128, panel: int = 16, rows: int = 4):
    """C = A @ B with B packed in `panel`-wide panels (a workspace buffer), a rows x panel
    accumulator tile in registers, rows in parallel, the panel vectorized."""
    A = te.placeholder((m, k), "float32", name="A")
    B = te.placeholder((k, n), "float32", name="B")
    Bp = te.compute((n // panel, k, panel), lambda no, kk, ni: B[kk, no * panel + ni], name="Bp")
    r = te.reduce_axis((0, k), name="r")
    C = te.compute((m, n), lambda i, j: te.sum(A[i, r] * Bp[j // panel, r, j % panel], axis=r), name="C")
    sch = _schedule(te.create_prim_func([A, B, C]), "matmul")
    no, _, ni = sch.get_loops(sch.get_sblock("Bp"))
    sch.parallel(no)
    sch.vectorize(ni)
    block = sch.get_sblock("C")
    i, j, rr = sch.get_loops(block)
    io, ii = sch.split(i, [None, rows])
    jo, ji = sch.split(j, [None, panel])
    sch.reorder(io, jo, rr, ii, ji)
    local = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(local, jo)
    sch.parallel(io)
    sch.vectorize(ji)
    sch.decompose_reduction(block, rr)
    sch.vectorize(sch.get_loops(local)[-1])
    return sch.mod


# --------------------------------------------------------------------------- tests

def test_toolchain_and_descriptor():
    from xchip import targets

    assert cross.arm64_toolchain_available() is None
    t = targets.get("kunpeng920")
    assert (t.backend, t.verification_level) == ("cpu", "emulated")
    assert targets.get("kunpeng").name == "kunpeng920"
    assert "bf16" not in t.capabilities.dtypes and "f16" in t.capabilities.dtypes
    assert tvm.target.codegen.llvm_is_valid_cpu(cross.DEFAULT_MCPU, cross.DEFAULT_TRIPLE)


def test_elementwise_vectorized(tmp_path):
    so = cross.cross_compile(elementwise(1000), tmp_path, dump=True)
    assert _elf_machine(so) == EM_AARCH64 and _elf_machine(so.with_suffix(".o")) == EM_AARCH64
    assert cross.kernel_functions(so) == ("ew", "main")
    asm = so.with_suffix(".s").read_text()
    assert ".4s" in asm, "expected NEON 4 x f32 vector instructions"
    a, b = RNG.standard_normal(1000).astype("f4"), RNG.standard_normal(1000).astype("f4")
    (c,) = cross.run_under_qemu(so, "ew", [a, b], [((1000,), "float32")])
    np.testing.assert_allclose(c, np.exp(a) * 0.5 + b, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("dtype, tol", [("float16", 4e-3), ("bfloat16", 2e-2)])
def test_elementwise_half_precision_with_a_tail(tmp_path, dtype, tol):
    # tsv110 has FP16 arithmetic (bf16 is computed in f32); 1003 is not a multiple of the
    # vector width, so the tail path runs too.
    import ml_dtypes  # noqa: F401 - registers bfloat16 with numpy

    so = cross.cross_compile(elementwise(1003, dtype), tmp_path)
    a = RNG.uniform(-2, 2, 1003).astype(dtype)
    b = RNG.uniform(-2, 2, 1003).astype(dtype)
    (c,) = cross.run_under_qemu(so, "ew", [a, b], [((1003,), dtype)])
    assert c.dtype == np.dtype(dtype)
    want = np.exp(a.astype("f4")) * 0.5 + b.astype("f4")
    np.testing.assert_allclose(c.astype("f4"), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("threads", [1, 4, 7])
def test_parallel_reduction(tmp_path, threads):
    so = cross.cross_compile(parallel_sum(), tmp_path)
    a = RNG.standard_normal(1 << 16).astype("f4")
    run = cross.run_under_qemu_detailed(so, "total", [a], [((1,), "float32")], num_threads=threads)
    assert "parallel_launches=1" in run.stdout, run.stdout
    np.testing.assert_allclose(run.outputs[0][0], a.sum(dtype=np.float64), rtol=1e-5, atol=1e-3)


def test_parallel_rows_with_exp(tmp_path):
    so = cross.cross_compile(row_softmax_denominator(), tmp_path)
    a = RNG.standard_normal((37, 300)).astype("f4")
    (r,) = cross.run_under_qemu(so, "rowsum", [a], [((37,), "float32")])
    np.testing.assert_allclose(r, np.exp(a.astype("f8")).sum(1), rtol=1e-5)


def test_matmul_vectorized_parallel_with_workspace(tmp_path):
    so = cross.cross_compile(matmul(), tmp_path, dump=True)
    asm = so.with_suffix(".s").read_text()
    assert "fmla" in asm, "expected NEON fused multiply-add"
    obj_symbols = cross._run(["aarch64-linux-gnu-nm", str(so.with_suffix(".o"))], "nm").stdout
    assert "__TVMBackendAllocWorkspace" in obj_symbols and "__TVMBackendParallelLaunch" in obj_symbols
    a = RNG.standard_normal((96, 80)).astype("f4")
    b = RNG.standard_normal((80, 128)).astype("f4")
    for artifact in (so, so.with_suffix(".o")):   # dynamic against the .so, static with the .o
        (c,) = cross.run_under_qemu(artifact, "matmul", [a, b], [((96, 128), "float32")])
        np.testing.assert_allclose(c, a.astype("f8") @ b.astype("f8"), rtol=1e-4, atol=1e-4)


def test_kernel_errors_come_back_with_tvms_message(tmp_path):
    so = cross.cross_compile(elementwise(1000), tmp_path)
    a = np.zeros(999, "f4")
    with pytest.raises(cross.CrossError, match=r"Invalid A.shape\[0\]"):
        cross.run_under_qemu(so, "ew", [a, a], [((999,), "float32")])
    with pytest.raises(cross.CrossError, match="no function 'nope'"):
        cross.run_under_qemu(so, "nope", [a], [])


# --------------------------------------------------------------------------- kernel graphs

def _check_graph(fn, args, tmp_path):
    """Every kernel group of `fn`'s kernel graph for kunpeng920 under qemu; all must match."""
    import jax

    import xchip

    lowered = xchip.jit(fn, target="kunpeng920").lower(*args)
    flat = [np.asarray(a) for a in jax.tree_util.tree_leaves((args, {}))]
    start = time.perf_counter()
    checks = cross.check_kernel_graph_under_qemu(lowered.kernel_graph, flat, tmp_path, target="kunpeng920")
    summary = (f"{len(checks)} groups in {time.perf_counter() - start:.1f} s: "
               + ", ".join(f"{c.name}={c.status}" for c in checks))
    # The host compiles every group of these graphs (loops and dynamic slices too), so none
    # may be left to the reference executor here.
    failed = [f"{c.name}: {c.status}: {c.detail}" for c in checks if c.status != "ok"]
    assert not failed, "\n".join(failed)
    return lowered.kernel_graph, checks, summary


def test_dynamic_slices_with_0d_int32_starts_and_bool_tensors(tmp_path):
    # the starts are 0-d int32 tensors (8 is clamped to 7); masks travel as bool tensors
    from jax import lax
    import jax.numpy as jnp

    def f(x, i, m):
        y = lax.dynamic_slice(x, (i, 0), (3, 8))
        u = lax.dynamic_update_slice(x, y * 2, (i + 1, 0))
        return y, u, jnp.where(m, x, -x) > 0.5, jnp.logical_not(m)

    x = RNG.standard_normal((10, 8)).astype("f4")
    m = RNG.standard_normal((10, 8)) > 0
    graph, checks, summary = _check_graph(f, (x, np.int32(8), m), tmp_path)
    print(summary)
    ops = {op.name for g in graph.groups for op in g.ops}
    assert {"dynamic_slice", "dynamic_update_slice"} <= ops


def test_loop_with_a_0d_trip_count_runs_as_one_kernel(tmp_path):
    from jax import lax
    import jax.numpy as jnp

    from xchip.backends.cpu import loops

    def f(x, n, flag):
        c = lax.fori_loop(0, n, lambda k, c: c * 0.5 + lax.dynamic_slice(x, (k, 0), (1, 8))[0],
                          jnp.zeros(8, jnp.float32))
        return jnp.where(flag, c, -c), c > 0

    x = RNG.standard_normal((10, 8)).astype("f4")
    graph, checks, summary = _check_graph(f, (x, np.int32(13), np.array(True)), tmp_path)
    print(summary)
    assert sum(loops.lowers(g) for g in graph.groups) == 1


def test_bf16_broadcast_stores_get_the_hosts_pipeline(tmp_path):
    # TVM's own pipeline fails to type-check these vectorized stores (a bf16 broadcast into a
    # buffer its storage pass made uint16); the cross build must take lower.build's fix
    import jax.numpy as jnp

    def f(y):
        row = jnp.broadcast_to(y.astype(jnp.bfloat16)[:, :, None], (3, 4, 32))
        return row, jnp.full((5, 64), 1.5, jnp.bfloat16) * y[0, 0].astype(jnp.bfloat16)

    _, checks, summary = _check_graph(f, (RNG.standard_normal((3, 4)).astype("f4"),), tmp_path)
    print(summary)


# --------------------------------------------------------------------------- example models

@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("model", ["mlp", "transformer", "cnn", "scan_rnn"])
def test_example_model_groups_match_the_reference(tmp_path, model, dtype):
    """Every kernel group of an example model, made as the CPU backend makes it (loops and
    dynamic slices included) for kunpeng920, cross-compiled, run under qemu and compared with
    the reference."""
    from examples.registry import get

    from xchip.backends.cpu import loops

    ex = get(model)
    params, x = ex.make_args(np.random.default_rng(0), dtype)
    graph, checks, summary = _check_graph(ex.fn, (params, x), tmp_path)
    n_loops = sum(loops.lowers(g) for g in graph.groups)
    print(f"{model} {dtype}: {summary} ({n_loops} loops)")
    assert checks and (model != "scan_rnn" or n_loops >= 1)


def test_every_example_is_covered():
    from examples.registry import EXAMPLES

    assert set(EXAMPLES) == {"mlp", "transformer", "cnn", "scan_rnn"}, \
        "a new example: add it to test_example_model_groups_match_the_reference"
