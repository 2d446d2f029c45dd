"""The CPU matmul schedule (backends/cpu/matmul_schedule.py): every path computes the right
result on the host (executed), epilogues run per tile, narrow operands are converted while
packing, and every config of the search space builds and is correct.

The PrimFuncs are built here with TE the way the lowering builds a dot_general (one compute
named "matmul" over batch, M, N iterators reducing K; bf16 operands converted inside it;
prologue and epilogue computes around it), plus a few through the real lowering when it is
importable. Sizes are small: the whole file runs in well under 40 s.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

import numpy as np
import pytest

import tvm  # noqa: E402  (a pinned dependency)
from tvm import te, tirx  # noqa: E402

from xchip import targets  # noqa: E402
from xchip.backends.cpu import matmul_schedule as ms  # noqa: E402


@dataclass
class Dims:
    batch: int
    lhs_free: int
    rhs_free: int
    contracting: int


@pytest.fixture(scope="module")
def target():
    return targets.get("cpu")


def _llvm():
    try:
        from xchip.backends.cpu.lower import host_mcpu
        mcpu = host_mcpu()
    except Exception:  # noqa: BLE001 - the lowering module is optional for these tests
        from tvm.target import codegen
        mcpu = str(codegen.llvm_get_system_cpu())
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu})


LLVM = None


def build(func, dims, target, config=None):
    """(scheduled module, compiled main)"""
    global LLVM
    LLVM = LLVM or _llvm()
    sch = tvm.s_tir.Schedule(func)
    ms.schedule_matmul(sch, dims, config, target)
    lib = tvm.compile(sch.mod, target=LLVM)
    return sch, lib.mod["main"]


def run(fn, args, out_shape, out_dtype="float32"):
    tensors = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]
    out = tvm.runtime.tensor(np.zeros(out_shape, out_dtype))
    fn(*tensors, out)
    return out.numpy()


def assert_matmul_close(actual, expected, scale, what=""):
    """|actual - expected| <= 1e-5 * (|A| @ |B|): f32 accumulation error, relative to K."""
    err = np.abs(actual.astype(np.float64) - expected)
    bound = 1e-5 * np.maximum(scale, 1e-30)
    worst = float((err / bound).max()) if err.size else 0.0
    assert worst <= 1.0, f"{what}: error {worst:.2f}x the bound"


# --- TE builders (as the lowering builds dot_general) ------------------------------------------

def bf16_to_f32(x):
    u = tirx.reinterpret("uint16", x).astype("uint32")
    return tirx.reinterpret("float32", u << tirx.const(16, "uint32"))


def to_acc(x, dtype, acc):
    if dtype == acc:
        return x
    if dtype == "bfloat16" and acc == "float32":
        return bf16_to_f32(x)
    return x.astype(acc)


def gemm_func(M, N, K, *, dtype="float32", acc=None, transb=False, batch=0, epilogue=None,
              prologue=None):
    """lhs [batch, M, K] x rhs [batch, K, N] (or [batch, N, K] with transb) -> [batch, M, N]
    in `acc`, then the epilogue computes."""
    acc = acc or ("float32" if dtype in ("float32", "float16", "bfloat16") else dtype)
    pre = (batch,) if batch else ()
    A = te.placeholder(pre + (M, K), dtype, name="lhs")
    B = te.placeholder(pre + ((N, K) if transb else (K, N)), dtype, name="rhs")
    args = [A, B]
    a_src, b_src, a_dt, b_dt = A, B, dtype, dtype
    if prologue == "convert_transpose_scale":
        # separate prologue computes: convert lhs to f32 then scale it; transpose rhs
        a32 = te.compute(A.shape, lambda *i: to_acc(A(*i), dtype, "float32"), name="lhs_convert")
        a_src = te.compute(A.shape, lambda *i: a32(*i) * tirx.const(0.5, "float32"), name="lhs_scale")
        bt_shape = pre + ((K, N) if transb else (N, K))
        b_src = te.compute(bt_shape, lambda *i: to_acc(B(*i[:-2], i[-1], i[-2]), dtype, "float32"),
                           name="rhs_transpose")
        transb = not transb
        a_dt = b_dt = "float32"
    k = te.reduce_axis((0, K), name="k0")

    def body(*idx):
        b, i, j = idx[:-2], idx[-2], idx[-1]
        bv = b_src[(*b, j, k)] if transb else b_src[(*b, k, j)]
        return te.sum(to_acc(a_src[(*b, i, k)], a_dt, acc) * to_acc(bv, b_dt, acc), axis=k)

    C = te.compute(pre + (M, N), body, name="matmul")
    out = C
    if epilogue in ("bias_relu", "bias_relu_bf16"):
        bias = te.placeholder((N,), "float32", name="bias")
        args.append(bias)
        D = te.compute(C.shape, lambda *i: C(*i) + bias[i[-1]], name="bias_add")
        out = te.compute(C.shape, lambda *i: te.max(D(*i), tirx.const(0.0, "float32")), name="relu")
        if epilogue == "bias_relu_bf16":
            r = out
            out = te.compute(C.shape, lambda *i: r(*i).astype("bfloat16"), name="to_bf16")
    elif epilogue == "residual_gelu":
        res = te.placeholder(C.shape, "float32", name="residual")
        args.append(res)
        c = tirx.const

        def gelu(*i):
            x = C(*i)
            return x * c(0.5, "float32") * (c(1.0, "float32") + te.tanh(
                c(0.7978845608, "float32") * (x + c(0.044715, "float32") * x * x * x))) + res(*i)
        out = te.compute(C.shape, gelu, name="gelu_residual")
    elif epilogue == "scale":
        out = te.compute(C.shape, lambda *i: C(*i) * tirx.const(0.125, acc), name="scale")
    return te.create_prim_func(args + [out]), Dims(1 if batch else 0, 1, 1, 1)


def np_inputs(M, N, K, *, dtype="float32", transb=False, batch=0, epilogue=None, seed=0):
    import ml_dtypes
    rng = np.random.default_rng(seed)
    pre = (batch,) if batch else ()
    npdt = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}.get(dtype, np.dtype(dtype))
    if dtype.startswith("int"):
        a = rng.integers(-8, 8, pre + (M, K)).astype(npdt)
        b = rng.integers(-8, 8, pre + ((N, K) if transb else (K, N))).astype(npdt)
    else:
        # non-zero values away from 0: no cancellation hides a wrong term
        a = (rng.uniform(0.5, 1.5, pre + (M, K)) * rng.choice([-1, 1], pre + (M, K))).astype(npdt)
        b = (rng.uniform(0.5, 1.5, pre + ((N, K) if transb else (K, N)))
             * rng.choice([-1, 1], pre + ((N, K) if transb else (K, N)))).astype(npdt)
    args = [a, b]
    if epilogue in ("bias_relu", "bias_relu_bf16"):
        args.append(rng.standard_normal(N).astype("float32"))
    elif epilogue == "residual_gelu":
        args.append(rng.standard_normal(pre + (M, N)).astype("float32"))
    return args


def np_reference(args, *, transb=False, epilogue=None, prologue=None):
    a = args[0].astype(np.float64)
    b = args[1].astype(np.float64)
    bt = np.swapaxes(b, -1, -2) if transb else b
    if prologue == "convert_transpose_scale":
        a = a * 0.5
    ref = a @ bt
    scale = np.abs(a) @ np.abs(bt)
    if epilogue in ("bias_relu", "bias_relu_bf16"):
        ref = np.maximum(ref + args[2], 0.0)
    elif epilogue == "residual_gelu":
        ref = ref * 0.5 * (1.0 + np.tanh(0.7978845608 * (ref + 0.044715 * ref ** 3))) + args[2]
        scale = scale * 1.2 + np.abs(args[2])
    elif epilogue == "scale":
        ref = ref * 0.125
        scale = scale * 0.125
    return ref, scale


def check(target, M, N, K, *, config=None, expect_plan=None, **kw):
    func, dims = gemm_func(M, N, K, **kw)
    sch, fn = build(func, dims, target, config)
    if expect_plan:
        assert ms.last_plan == expect_plan, f"took the {ms.last_plan} path"
    data_kw = {k: v for k, v in kw.items() if k in ("dtype", "transb", "batch", "epilogue")}
    args = np_inputs(M, N, K, **data_kw)
    ref, scale = np_reference(args, transb=kw.get("transb", False), epilogue=kw.get("epilogue"),
                              prologue=kw.get("prologue"))
    out_dtype = "bfloat16" if kw.get("epilogue") == "bias_relu_bf16" else \
        (kw.get("acc") or ("float32" if kw.get("dtype", "float32") in ("float32", "float16", "bfloat16")
                          else kw["dtype"]))
    actual = run(fn, args, ref.shape, out_dtype)
    if out_dtype == "bfloat16":
        import ml_dtypes
        actual = actual.view(ml_dtypes.bfloat16).astype(np.float64) if actual.dtype != np.float64 else actual
        assert np.all(np.abs(actual - ref) <= 2 ** -7 * np.abs(ref) + 1e-5 * scale), "bf16 result"
    elif out_dtype.startswith("int"):
        np.testing.assert_array_equal(actual, ref.astype(out_dtype))
    else:
        assert_matmul_close(actual, ref, scale, f"{M}x{N}x{K} {kw}")
    return sch


# --- correctness of every path -----------------------------------------------------------------

@pytest.mark.parametrize("M,N,K,kw,plan", [
    (64, 64, 64, {}, "gemm"),                                        # GEMM, M padded (6 ∤ 64)
    (96, 128, 96, {"epilogue": "bias_relu"}, "gemm"),                 # no padding
    (37, 29, 41, {"transb": True, "epilogue": "bias_relu"}, "gemm"),  # ragged M, N; x @ W.T
    (1, 512, 128, {"epilogue": "bias_relu"}, "gemv"),                 # MLP at batch 1
    (1, 256, 128, {"transb": True}, "gemv"),                          # x @ W.T at batch 1
    (70, 1, 64, {}, "gemv"),                                          # matrix x vector
    (16, 256, 128, {"epilogue": "bias_relu"}, "gemm"),               # MLP at batch 16
    (32, 128, 128, {"transb": True}, "gemm"),                         # projection, x @ W.T
    (48, 48, 32, {"batch": 4, "transb": True, "epilogue": "scale"}, "gemm"),   # attention q k^T
    (48, 32, 48, {"batch": 4}, "gemm"),                               # attention p v
    (5, 100, 7, {}, "gemm"),                                          # M < mr: wide tile
])
def test_f32_paths(target, M, N, K, kw, plan):
    check(target, M, N, K, expect_plan=plan, **kw)


def test_k_blocked_accumulates_across_blocks(target):
    # K blocks (kc < K): the tile is reloaded and stored per block
    check(target, 24, 32, 256, config={"kc": 64}, expect_plan="gemm", epilogue="bias_relu")


def test_epilogue_residual_gelu(target):
    check(target, 40, 64, 48, epilogue="residual_gelu", expect_plan="gemm")


def test_epilogue_runs_per_tile(target):
    sch = check(target, 96, 64, 64, epilogue="bias_relu", expect_plan="gemm")
    text = sch.mod.script()
    # the intermediate epilogue block is inlined, the result block sits under the tile loops
    assert 'sblock("bias_add")' not in text
    relu_loops = sch.get_loops(sch.get_sblock("relu"))
    mm_loops = sch.get_loops(sch.get_sblock("matmul_update"))
    assert sch.get(relu_loops[0]).same_as(sch.get(mm_loops[0])), "relu runs in a separate pass"
    assert len(relu_loops) > 2


def test_prologue_folded_into_packing(target):
    sch = check(target, 30, 40, 24, prologue="convert_transpose_scale", dtype="bfloat16",
                expect_plan="gemm")
    text = sch.mod.script()
    for name in ("lhs_convert", "lhs_scale", "rhs_transpose"):
        assert f'sblock("{name}")' not in text, f"{name} is still a pass of its own"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_narrow_operands_convert_while_packing(target, dtype):
    sch = check(target, 50, 48, 40, dtype=dtype, transb=True, expect_plan="gemm")
    update = _block_text(sch, "matmul_update")
    assert "reinterpret" not in update and "Cast" not in update, update
    check(target, 1, 64, 40, dtype=dtype, expect_plan="gemv")


def test_bf16_result_epilogue(target):
    check(target, 24, 32, 40, dtype="bfloat16", epilogue="bias_relu_bf16", expect_plan="gemm")


def test_f64(target):
    check(target, 33, 20, 17, dtype="float64", expect_plan="gemm")
    check(target, 1, 16, 17, dtype="float64", expect_plan="gemv")


def test_integers(target):
    check(target, 30, 20, 40, dtype="int32", expect_plan="gemm")
    check(target, 30, 20, 40, dtype="int8", acc="int32", expect_plan="gemm")


def _block_text(sch, name):
    return sch.get(sch.get_sblock(name)).script()


def test_multi_dim_iterators(target):
    # [B, S, H, D] x [B, T, H, D] -> [B, H, S, T]: two batch dims, reads with a permuted index map
    B, S, T, H, D = 2, 20, 12, 3, 16
    q = te.placeholder((B, S, H, D), "float32", name="q")
    kk = te.placeholder((B, T, H, D), "float32", name="k")
    d = te.reduce_axis((0, D), name="d")
    C = te.compute((B, H, S, T), lambda b, h, s, t: te.sum(q[b, s, h, d] * kk[b, t, h, d], axis=d),
                   name="matmul")
    sch, fn = build(te.create_prim_func([q, kk, C]), Dims(2, 1, 1, 1), target)
    assert ms.last_plan == "gemm"
    rng = np.random.default_rng(1)
    qa, ka = rng.standard_normal((B, S, H, D)).astype("float32"), rng.standard_normal((B, T, H, D)).astype("float32")
    ref = np.einsum("bshd,bthd->bhst", qa.astype(np.float64), ka.astype(np.float64))
    scale = np.einsum("bshd,bthd->bhst", np.abs(qa).astype(np.float64), np.abs(ka).astype(np.float64))
    assert_matmul_close(run(fn, [qa, ka], ref.shape), ref, scale, "attention scores")

    # [B, S, K] x [K1, K2 -> K] two M dims and two contracting dims, with an epilogue
    Bt, St, K1, K2, N = 3, 10, 4, 8, 24
    x = te.placeholder((Bt, St, K1, K2), "float32", name="x")
    w = te.placeholder((K1, K2, N), "float32", name="w")
    r1, r2 = te.reduce_axis((0, K1), name="k1"), te.reduce_axis((0, K2), name="k2")
    C = te.compute((Bt, St, N), lambda b, s, n: te.sum(x[b, s, r1, r2] * w[r1, r2, n], axis=[r1, r2]),
                   name="matmul")
    E = te.compute(C.shape, lambda *i: C(*i) * tirx.const(2.0, "float32"), name="double")
    sch, fn = build(te.create_prim_func([x, w, E]), Dims(0, 2, 1, 2), target)
    assert ms.last_plan == "gemm"
    xa, wa = rng.standard_normal((Bt, St, K1, K2)).astype("float32"), rng.standard_normal((K1, K2, N)).astype("float32")
    ref = 2 * np.einsum("bsij,ijn->bsn", xa.astype(np.float64), wa.astype(np.float64))
    scale = 2 * np.einsum("bsij,ijn->bsn", np.abs(xa).astype(np.float64), np.abs(wa).astype(np.float64))
    assert_matmul_close(run(fn, [xa, wa], ref.shape), ref, scale, "two M and two K dims")


def test_operand_read_twice_falls_back(target):
    # x @ x.T reads one buffer twice: not the fast path, still right
    M, K = 20, 12
    x = te.placeholder((M, K), "float32", name="x")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, M), lambda i, j: te.sum(x[i, k] * x[j, k], axis=k), name="matmul")
    sch, fn = build(te.create_prim_func([x, C]), Dims(0, 1, 1, 1), target)
    xa = np.random.default_rng(2).standard_normal((M, K)).astype("float32")
    ref = xa.astype(np.float64) @ xa.T.astype(np.float64)
    assert_matmul_close(run(fn, [xa], ref.shape), ref, np.abs(xa) @ np.abs(xa).T, "x @ x.T")


# --- the search space --------------------------------------------------------------------------

def test_default_config_is_legal(target):
    for M, N, K, batch in [(1024, 1024, 1024, 1), (1, 2048, 512, 1), (64, 2048, 512, 1),
                           (128, 128, 64, 8), (37, 29, 41, 3), (5, 100, 7, 1), (4096, 64, 4096, 1)]:
        space = ms.matmul_space(M, N, K, batch, "f32", target)
        cfg = ms.default_matmul_config(M, N, K, batch, "f32", target)
        assert space.is_legal(cfg), (M, N, K, batch, space.violations(cfg))


def test_space_configs_build_and_are_correct(target):
    M, N, K, batch = 26, 40, 64, 2
    space = ms.matmul_space(M, N, K, batch, "f32", target)
    configs = list(space)
    assert configs and all(space.is_legal(c) for c in configs[:50])
    rng = random.Random(0)
    picks = rng.sample(configs, 6) + [ms.default_matmul_config(M, N, K, batch, "f32", target)]
    for cfg in picks:
        check(target, M, N, K, batch=batch, epilogue="bias_relu", config=cfg)


def test_space_rejects_spilling_tiles(target):
    space = ms.matmul_space(256, 256, 256, 1, "f32", target)
    mrs, nvs = space.knobs[0].values, space.knobs[1].values
    regs = 32 if (target.vector_bits or 0) >= 512 else 16
    base = ms.default_matmul_config(256, 256, 256, 1, "f32", target)
    too_big = [(mr, nv) for mr in mrs for nv in nvs if mr * nv + nv + 1 > regs]
    fits = [(mr, nv) for mr in mrs for nv in nvs if mr * nv + nv + 1 <= regs]
    assert too_big and fits
    for mr, nv in too_big[:5]:
        assert not space.is_legal(dict(base, mr=mr, nv=nv, mc=mr)), (mr, nv)
    for mr, nv in fits[-5:]:
        assert space.is_legal(dict(base, mr=mr, nv=nv, mc=mr)), (mr, nv)


def test_default_tiles_follow_the_target(target):
    from dataclasses import replace
    avx512 = replace(target, vector_bits=512)
    cfg = ms.default_matmul_config(1024, 1024, 1024, 1, "f32", avx512)
    assert cfg["mr"] * cfg["nv"] + cfg["nv"] + 1 <= 32 and cfg["mr"] * cfg["nv"] >= 16
    avx2 = replace(target, vector_bits=256)
    cfg = ms.default_matmul_config(1024, 1024, 1024, 1, "f32", avx2)
    assert (cfg["mr"], cfg["nv"]) == (6, 2)
    assert ms.lanes("f64", avx2) == 4 and ms.lanes("bf16", avx2) == 8


# --- the machine code --------------------------------------------------------------------------

def test_micro_kernel_is_vector_fma(target):
    import platform
    if platform.machine() not in ("x86_64", "AMD64") or "fma" not in (target.host.flags if target.host else ()):
        pytest.skip("x86 FMA host only")
    func, dims = gemm_func(96, 64, 64)
    sch = tvm.s_tir.Schedule(func)
    ms.schedule_matmul(sch, dims, None, target)
    asm = tvm.compile(sch.mod, target=_llvm()).mod.inspect_source("asm")
    reg = "zmm" if (target.vector_bits or 0) >= 512 else "ymm"
    fmas = re.findall(rf"vfmadd\d+ps\s+[^\n]*%{reg}", asm)
    assert len(fmas) >= 12, "no vector FMA micro-kernel in the assembly"
    # the accumulators stay in registers: no spill to the stack between the FMAs
    loop = asm[asm.find(fmas[0].split()[0]):][:4000]
    assert "(%rsp)" not in loop.split("jne")[0], "accumulators spilled to the stack"


def test_thread_pool_gets_every_core(target, monkeypatch):
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    n = ms.ensure_thread_pool(target)
    assert os.environ["TVM_NUM_THREADS"] == str(n) and n >= 1
    monkeypatch.setenv("TVM_NUM_THREADS", "1")
    assert ms.ensure_thread_pool(target) == 1


# --- through the real lowering ------------------------------------------------------------------

def _lowered_cases():
    import jax
    import jax.numpy as jnp
    import ml_dtypes
    r = np.random.default_rng(3)

    def f32(*s):
        return r.standard_normal(s).astype("float32")
    return [
        ("dense_gelu", lambda x, w, b: jax.nn.gelu(x @ w + b), (f32(2, 30, 64), f32(64, 48), f32(48))),
        ("bf16", lambda x, w: x @ w, (f32(40, 64).astype(ml_dtypes.bfloat16), f32(64, 32).astype(ml_dtypes.bfloat16))),
        ("attention", lambda q, k: jnp.einsum("bshd,bthd->bhst", q, k), (f32(2, 16, 2, 8), f32(2, 24, 2, 8))),
        ("matvec", lambda x, w: x @ w.T, (f32(1, 64), f32(96, 64))),
    ]


@pytest.mark.parametrize("case", range(4))
def test_through_the_lowering(target, case):
    from cpu_lowering_helpers import all_values, kernel_graph_of
    from xchip.backends.cpu.lower import build as lower_build
    from xchip.backends.cpu.lower import lower_group
    name, fn, args = _lowered_cases()[case]
    kg = kernel_graph_of(fn, *args)
    env = all_values(kg, [np.asarray(a) for a in args])
    groups = [g for g in kg.groups if g.kind == "matmul"]
    assert groups, "no matmul group"
    for g in groups:
        lw = lower_group(g)
        sch = tvm.s_tir.Schedule(lw.func)
        ms.schedule_matmul(sch, lw.matmul, None, target)
        assert ms.last_plan in ("gemm", "gemv"), f"{name}: {ms.last_plan}"
        lib = lower_build(sch.mod)
        ins = [tvm.runtime.tensor(np.ascontiguousarray(env[v])) for v in lw.inputs]
        outs = [tvm.runtime.tensor(np.zeros(v.type.shape, v.type.dtype.numpy)) for v in lw.outputs]
        lib[g.name](*ins, *outs)
        for o, v in zip(outs, lw.outputs):
            a = o.numpy().view(v.type.dtype.numpy).astype(np.float64)
            e = np.asarray(env[v]).astype(np.float64)
            tol = 2 ** -7 if v.type.dtype.name == "bf16" else 1e-5
            assert np.abs(a - e).max() <= tol * max(1.0, np.abs(e).max()), name
