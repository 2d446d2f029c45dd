"""What the Triton backend compiles for realistic kernels on each GPU-family target, as the
compilers report it (no GPU needed): the tile each kernel got and where it came from,
registers per thread, spilled bytes, shared memory. Compiler-reported, not measured: timings
need a GPU (`scripts/gpu_check.py`).

    python -m benchmarks.gpu_kernels [--targets a800,l20,h800,h20,dcu-z100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

import xchip
from xchip.backends.triton.program import tile_text


def causal_attention(q, k, v):
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k) / np.float32(np.sqrt(q.shape[-1]))
    s = jnp.where(jnp.tril(jnp.ones((q.shape[2], k.shape[2]), bool)), s, -jnp.inf)
    return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(s, axis=-1), v)


def layer_norm(x):
    return (x - x.mean(-1, keepdims=True)) * jax.lax.rsqrt(x.var(-1, keepdims=True) + 1e-5)


KERNELS = {   # name: (function, argument shapes), all bf16
    "gemm 4096^3": (lambda a, b: a @ b, [(4096, 4096), (4096, 4096)]),
    "llama qkv decode 16x12288x4096": (lambda a, b: a @ b, [(16, 4096), (4096, 12288)]),
    "causal attention b4 h16 s2048 d64": (causal_attention, [(4, 16, 2048, 64)] * 3),
    "layernorm 4096x4096": (layer_norm, [(4096, 4096)]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="a800,l20,h800,h20,dcu-z100")
    parser.add_argument("--json", help="write the rows here")
    ns = parser.parse_args(argv)
    rows = []
    print(f"{'kernel':36s} {'target':9s} {'tile':46s} {'from':11s} {'regs':>4s} {'spill':>5s} {'smem KB':>7s}  note")
    for name, (fn, shapes) in KERNELS.items():
        args = [np.zeros(s, ml_dtypes.bfloat16) for s in shapes]
        for target in ns.targets.split(","):
            for k in xchip.jit(fn, target=target).lower(*args).compile().artifacts.kernels:
                a = k.artifact
                tile = tile_text(k.config) if k.config else "default"
                extra = " ".join(f"{t}={k.config[t]}" for t in ("num_warps", "stages", "split_k") if t in k.config)
                row = {"kernel": name, "target": target, "group": k.group, "status": k.status, "config": k.config,
                       "tiles_from": k.tiles_from, "registers": a.registers if a else None,
                       "spill_bytes": a.spills if a else None, "shared_bytes": a.shared_bytes if a else None,
                       "binary_arch": a.elf_arch if a else None, "note": k.reason, "source": "compiler-reported"}
                rows.append(row)
                smem = f"{a.shared_bytes / 1024:.0f}" if a and a.shared_bytes is not None else "-"
                print(f"{name:36s} {target:9s} {tile + ' ' + extra:46.46s} "
                      f"{k.tiles_from:11s} {row['registers'] or '-':>4} {row['spill_bytes'] if a else '-':>5} "
                      f"{smem:>7s}  {k.reason}")
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
