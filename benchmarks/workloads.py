"""The workloads of the CPU benchmark: a function of arrays, seeded inputs, and what it counts.

Every workload is float32 with fresh random non-zero inputs drawn from a generator seeded by
the workload's name, so both engines, every round and every process see the very same bits.
The model workloads call the example models' own functions (`examples/`) with parameters of
benchmark size; the row-wise and GEMM shapes come from `/work/shared/research/
benchmark_shapes.json` (copied into each `source` below), scaled to a 2-core host where noted.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import jax
import numpy as np

from examples import cnn, mlp, normal, scan_rnn, transformer

GROUPS = ("main", "overhead")


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    fn: Callable                                  # fn(*args): pure, jit-able
    make_args: Callable[[np.random.Generator], tuple]
    flops: float | None = None                    # counted for GEMMs only (2*M*N*K)
    group: str = "main"                           # "overhead": dispatch rows, outside the geomean
    tol: float = 1e-4                             # max |y - ref| / max |ref| allowed (f64 reference)
    source: str = ""                              # where the shape comes from, and any scaling
    tags: tuple[str, ...] = field(default=())

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())

    def args(self) -> tuple:
        return self.make_args(np.random.default_rng(self.seed))


# --- the models ------------------------------------------------------------------------------

MLP_SIZES = (512, 2048, 512, 512)


def mlp_args(batch: int, sizes: tuple[int, ...] = MLP_SIZES):
    """Parameters for `examples.mlp.mlp` (three dense layers, exact then tanh GELU) at other
    widths, drawn as its `make_args` draws them (He scaling, biases of 0.1)."""
    def make(rng):
        params = {}
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            params[f"w{i}"] = normal(rng, (n_in, n_out), "f32", np.sqrt(2.0 / n_in))
            params[f"b{i}"] = normal(rng, (n_out,), "f32", 0.1)
        return params, normal(rng, (batch, sizes[0]), "f32")
    return make


def transformer_args(batch: int, seq: int, d_model: int, heads: int, d_ff: int):
    """Parameters for `examples.transformer.transformer_block` at other sizes, drawn as its
    `make_args` draws them. (The block scales scores by the module's HEAD_DIM ** -0.5, a
    constant: the same work whatever its value.)"""
    head_dim = d_model // heads

    def make(rng):
        params = {
            "wq": normal(rng, (d_model, heads, head_dim), "f32", d_model ** -0.5),
            "wk": normal(rng, (d_model, heads, head_dim), "f32", d_model ** -0.5),
            "wv": normal(rng, (d_model, heads, head_dim), "f32", d_model ** -0.5),
            "wo": normal(rng, (heads, head_dim, d_model), "f32", (heads * head_dim) ** -0.5),
            "w1": normal(rng, (d_model, d_ff), "f32", d_model ** -0.5),
            "b1": normal(rng, (d_ff,), "f32", 0.1),
            "w2": normal(rng, (d_ff, d_model), "f32", d_ff ** -0.5),
            "b2": normal(rng, (d_model,), "f32", 0.1),
        }
        for name in ("ln1", "ln2"):
            params[f"{name}_scale"] = (1.0 + normal(rng, (d_model,), "f32", 0.1)).astype(np.float32)
            params[f"{name}_bias"] = normal(rng, (d_model,), "f32", 0.1)
        return params, normal(rng, (batch, seq, d_model), "f32")
    return make


# --- row-wise and GEMM kernels ---------------------------------------------------------------

def layernorm_rows(x, scale, bias):
    return transformer.layer_norm(x, scale, bias)


def softmax_rows(x):
    return jax.nn.softmax(x, axis=-1)


def gemm(a, b):
    return a @ b


def trivial(x):
    return x + 1.0


def _layernorm_args(rows: int, width: int):
    def make(rng):
        return (normal(rng, (rows, width), "f32"),
                (1.0 + normal(rng, (width,), "f32", 0.1)).astype(np.float32),
                normal(rng, (width,), "f32", 0.1))
    return make


def _softmax_args(rows: int, width: int):
    def make(rng):
        return (normal(rng, (rows, width), "f32", 2.0),)
    return make


def _gemm_args(m: int, n: int, k: int):
    def make(rng):
        return normal(rng, (m, k), "f32"), normal(rng, (k, n), "f32")
    return make


def _gemm(n: int) -> Workload:
    return Workload(f"gemm{n}", f"fp32 GEMM {n}x{n}x{n} (a @ b)", gemm, _gemm_args(n, n, n),
                    flops=2.0 * n ** 3, tags=("gemm",),
                    source=f"square GEMM, TVM MetaSchedule GMM [1, {n}, {n}, {n}] / Triton tutorial M=N=K")


LN_ROWS, LN_WIDTH = 4096, 1024
SM_ROWS, SM_WIDTH = 4096, 1024

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("mlp_b1", f"examples.mlp.mlp {'-'.join(map(str, MLP_SIZES))}, batch 1", mlp.mlp, mlp_args(1),
             tags=("model",), source="examples/mlp.py's function at width 512-2048-512-512"),
    Workload("mlp_b64", f"examples.mlp.mlp {'-'.join(map(str, MLP_SIZES))}, batch 64", mlp.mlp, mlp_args(64),
             tags=("model",), source="examples/mlp.py's function at width 512-2048-512-512"),
    Workload("transformer", "examples.transformer block: batch 1, seq 128, width 512, 8 heads of 64, MLP 2048",
             transformer.transformer_block, transformer_args(1, 128, 512, 8, 2048), tags=("model",),
             source="examples/transformer.py's function; sizes as asked (GPT-2-small-like)"),
    Workload("cnn", "examples.cnn as shipped: (2, 12, 16, 3) NHWC images", cnn.cnn,
             lambda rng: cnn.make_args(rng, "f32"), tags=("model",), source="examples/cnn.py make_args"),
    Workload("scan_rnn", "examples.scan_rnn as shipped: a 16-step lax.scan GRU and a 4-step fori_loop forecast",
             scan_rnn.scan_rnn, lambda rng: scan_rnn.make_args(rng, "f32"), tags=("model",),
             source="examples/scan_rnn.py make_args (small loop bodies: where per-iteration overhead shows)"),
    Workload("layernorm", f"layernorm over rows: {LN_ROWS} x {LN_WIDTH} (scale, bias)", layernorm_rows,
             _layernorm_args(LN_ROWS, LN_WIDTH), tags=("rows",),
             source="triton_layernorm M=4096 x N=1024..15872 and TVM NRM [1, 4096, 1024]: M kept, N at the "
                    "sweep's low end (16 MiB in and out; ~3 ms per XLA call on 2 cores, the sweep's top "
                    "end would take ~15x longer)"),
    Workload("softmax", f"softmax over rows: {SM_ROWS} x {SM_WIDTH}", softmax_rows, _softmax_args(SM_ROWS, SM_WIDTH),
             tags=("rows",),
             source="triton_softmax M=4096 x N=256..12672: M kept, N=1024 near the sweep's low end "
                    "(16 MiB in and out; ~5 ms per XLA call on 2 cores); flaggems' [4096, 4096] would "
                    "take ~4x longer"),
    _gemm(512),
    _gemm(1024),
    Workload("trivial", "x + 1 on f32[8]: per-call dispatch cost", trivial,
             lambda rng: (normal(rng, (8,), "f32"),), group="overhead", tags=("overhead",),
             source="dispatch overhead"),
)}

# mlp_b1 appears in the dispatch-overhead section too (a small real model's per-call cost).
OVERHEAD_ROWS = ("trivial", "mlp_b1")


def select(only: str | None) -> list[Workload]:
    """The workloads named in a comma-separated list (all of them for None or ""), in the
    registry's order; unknown names fail with the known ones listed."""
    if not only:
        return list(WORKLOADS.values())
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise KeyError(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    return [w for w in WORKLOADS.values() if w.name in names]


# --- the float64 reference -------------------------------------------------------------------

def reference(workload: Workload, args: tuple) -> list[np.ndarray]:
    """The workload evaluated in float64 (jax.jit with x64 enabled, inputs widened from the
    very same f32 values), as a flat list of numpy arrays. Both engines' workers compute it
    this same way."""
    def widen(a):
        a = np.asarray(a)
        return a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a

    with jax.enable_x64(True):
        wide = jax.tree_util.tree_map(widen, args)
        out = jax.jit(workload.fn)(*wide)
        return [np.asarray(o, np.float64) for o in jax.tree_util.tree_leaves(out)]


def check(workload: Workload, out, ref: list[np.ndarray]) -> tuple[bool, float, str]:
    """(ok, error, message): error = max |y - ref| / max |ref| over every output; non-finite
    values, a wrong shape or a different number of outputs fail outright."""
    leaves = jax.tree_util.tree_leaves(out)
    if len(leaves) != len(ref):
        return False, float("inf"), f"{len(leaves)} outputs, expected {len(ref)}"
    worst = 0.0
    for i, (y, r) in enumerate(zip(leaves, ref)):
        y = np.asarray(y)
        if y.shape != r.shape:
            return False, float("inf"), f"output {i}: shape {y.shape}, expected {r.shape}"
        y = y.astype(np.float64)
        if not np.all(np.isfinite(y)):
            return False, float("inf"), f"output {i}: non-finite values"
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        err = float(np.max(np.abs(y - r))) / (scale if scale > 0 else 1.0) if r.size else 0.0
        worst = max(worst, err)
    if worst > workload.tol:
        return False, worst, f"max |y - ref| / max |ref| = {worst:.3g} > tolerance {workload.tol:g}"
    return True, worst, ""
