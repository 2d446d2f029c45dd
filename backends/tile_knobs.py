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
    return SearchSpace(group.kind, knobs, (fits,))


def default_tile(space: SearchSpace) -> dict | None:
    """The first of Triton's usual configs that is legal here, else the first legal one."""
    for c in PREFERRED_DEFAULTS:
        fitted = {k.name: (c[k.name] if c[k.name] in k.values else k.values[0]) for k in space.knobs}
        if space.is_legal(fitted):
            return fitted
    return next(iter(space), None)
