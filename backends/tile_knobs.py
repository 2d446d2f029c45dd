"""Knobs of the tiled matmul and convolution kernels that GPU-like targets run (Triton's
block sizes, warps, pipeline stages, split-K and group-M; the names the cost model and
`backends/triton/kernels.py` read), so that targets without a device here can be tuned by
the cost model (`autotune/modeled.py`).

    space = tile_space(group, target)     # None: not a matmul or convolution
    default_tile(space)                   # what an untuned kernel would use

Legality comes from the target: the operand tiles of every pipeline stage must fit the
on-chip memory that holds them (shared memory per SM, Ascend's L1/UB, ...), as the cost
model checks it; tile edges are multiples of the matrix unit's tile.
"""

from __future__ import annotations

import math

from xchip.ir.kernel_graph import KernelGroup
from xchip.knobs import Constraint, Knob, SearchSpace

TILE_EDGES = (16, 32, 64, 128, 256)
TILE_K = (16, 32, 64, 128)
# candidates in the order ties are broken: the model has no term for warps (without a
# register count) and only a legality term for stages, so equal times keep Triton's usual
# 4 warps and 3 stages
STAGES = (3, 2, 4, 1, 5)
NUM_WARPS = (4, 8, 2)
SPLIT_K = (1, 2, 4, 8)
GROUP_M = (8, 1, 4, 16)
# The cost model has no term for how busy a tile keeps the tensor cores (only for how well
# tiles fill the units), so on its own it prefers the smallest tiles. A warp's share of the
# tile below 32x32 (four m16n8 fragments, and a wgmma needs 64 rows per warpgroup) leaves
# matrix units idle while the model counts them busy: such tiles are not offered unless one
# tile covers the whole output.
WARP_TILE = 32
# A thread has at most 255 registers (NVIDIA; 256 VGPRs on AMD): an accumulator above half
# of them leaves too few for the operand fragments and addresses, and ptxas spills.
ACC_REGISTERS = 128
PREFERRED_DEFAULTS = ({"tile_m": 128, "tile_n": 128, "tile_k": 32, "stages": 3, "num_warps": 4, "split_k": 1, "group_m": 8},
                      {"tile_m": 64, "tile_n": 64, "tile_k": 32, "stages": 2, "num_warps": 4, "split_k": 1, "group_m": 8},
                      {"tile_m": 32, "tile_n": 32, "tile_k": 16, "stages": 1, "num_warps": 4, "split_k": 1, "group_m": 8})

KNOB_DOCS = {
    "tile_m": "rows of the output tile one program computes (BLOCK_M)",
    "tile_n": "columns of the output tile (BLOCK_N)",
    "tile_k": "depth of one step of the K loop (BLOCK_K)",
    "stages": "software pipeline depth: operand tiles in flight in on-chip memory (num_stages)",
    "num_warps": "warps (wavefronts) per program",
    "split_k": "programs sharing one output tile's K loop, their partial sums added after",
    "group_m": "rows of output tiles visited together, so that programs running at once share "
               "B's column panels in L2 (no term in the cost model: searched only where measured)",
}


def _edges(extent: int, multiple: int, values: tuple[int, ...]) -> tuple[int, ...]:
    """Tile edges that are multiples of `multiple` and not far past `extent` (one tile
    covering it, rounded up to a power of two)."""
    cover = 1 << max(0, (max(1, extent) - 1).bit_length())
    out = tuple(v for v in values if v % multiple == 0 and v <= max(cover, values[0]))
    return out or (max(values[0], multiple),)


def tile_space(group: KernelGroup, target, modeled: bool = False) -> SearchSpace | None:
    """The group's tile knobs on `target`; `modeled`: only the knobs the cost model can tell
    apart (group_m then stays at its default)."""
    from xchip.targets.cost_model import _anchor, _gemm, estimate_kernel
    if group.kind not in ("matmul", "conv"):
        return None
    anchor = _anchor(group)
    if anchor is None:
        return None
    g = _gemm(anchor)
    multiple = int(target.matrix_tile.value) if target.matrix_tile.known else 16
    splits = tuple(s for s in SPLIT_K if s == 1 or g.k // s >= 64)
    knobs = (
        Knob("tile_m", _edges(g.m, multiple, TILE_EDGES), KNOB_DOCS["tile_m"]),
        Knob("tile_n", _edges(g.n, multiple, TILE_EDGES), KNOB_DOCS["tile_n"]),
        Knob("tile_k", _edges(g.k, multiple, TILE_K), KNOB_DOCS["tile_k"]),
        Knob("stages", STAGES, KNOB_DOCS["stages"]),
        Knob("num_warps", NUM_WARPS, KNOB_DOCS["num_warps"]),
        Knob("split_k", splits, KNOB_DOCS["split_k"]),
        Knob("group_m", GROUP_M[:1] if modeled else GROUP_M, KNOB_DOCS["group_m"]),
    )
    fits = Constraint(f"the operand tiles of all stages fit {target.name}'s on-chip memory (cost model)",
                      lambda c: estimate_kernel(group, target, c).legal)
    constraints = [fits]
    if target.is_simt:
        cover_m = 1 << max(0, (max(1, g.m) - 1).bit_length())
        cover_n = 1 << max(0, (max(1, g.n) - 1).bit_length())
        threads = int(target.warp_size.value) if target.warp_size.known else 32
        constraints.append(Constraint(
            f"each warp holds at least a {WARP_TILE}x{WARP_TILE} accumulator, or the tile covers the output",
            lambda c: c["tile_m"] * c["tile_n"] >= c["num_warps"] * WARP_TILE * WARP_TILE
            or (c["tile_m"] >= cover_m and c["tile_n"] >= cover_n)))
        constraints.append(Constraint(
            f"the f32 accumulator takes at most {ACC_REGISTERS} of a thread's 255 registers",
            lambda c: c["tile_m"] * c["tile_n"] <= c["num_warps"] * threads * ACC_REGISTERS))
    if target.isa.startswith("sm_90") and g.m >= 64:
        constraints.append(Constraint(
            "warpgroup MMA: Triton uses wgmma on sm_90 only for tiles of 64+ rows in whole warpgroups "
            "(others fall back to mma.sync, which the cost model cannot rate)",
            lambda c: c["tile_m"] >= 64 and c["num_warps"] % 4 == 0))
    return SearchSpace(group.kind, knobs, tuple(constraints))


TIE = 0.03     # modeled times this close are a tie (the model's own error is far larger)


def preferred(timed: list[tuple[dict, float]]) -> tuple[dict, float] | None:
    """The config to use from (config, modeled seconds) pairs: the fastest, or among those
    within TIE of it: no split-K (atomics and a workspace for nothing), the largest tile
    (fewer operand re-reads from L2 and more work per tensor-core instruction, which the
    model does not count), a K step near 64, Triton's usual 3 stages and 4 warps."""
    timed = [(c, t) for c, t in timed if t is not None]
    if not timed:
        return None
    best = min(t for _, t in timed)
    close = [(c, t) for c, t in timed if t <= best * (1 + TIE)]
    return min(close, key=lambda ct: (ct[0].get("split_k", 1), -ct[0]["tile_m"] * ct[0]["tile_n"],
                                      abs(math.log2(ct[0].get("tile_k", 64) / 64)), ct[0].get("stages", 3) != 3,
                                      ct[0].get("num_warps", 4) != 4))


def default_tile(space: SearchSpace) -> dict | None:
    """The first of Triton's usual configs that is legal here, else the first legal one."""
    for c in PREFERRED_DEFAULTS:
        fitted = {k.name: (c[k.name] if c[k.name] in k.values else k.values[0]) for k in space.knobs}
        if space.is_legal(fitted):
            return fitted
    return next(iter(space), None)
