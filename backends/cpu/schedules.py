"""Default schedules and knobs for the CPU backend's non-matmul kinds (and a simple matmul
schedule used until, or when, `matmul_schedule.py` declines).

The lowering has already inlined what is worth inlining (lower.py `plan`): the blocks the
schedules see are the values kept in buffers -- outputs, reductions, contraction operands,
expensive values read twice (softmax's exponentials), small values read by larger ones
(row statistics, per-channel scales), and breaks in expressions that would grow too large.

Per kind:
- elementwise: each remaining block's loops split into an outer part (the dimensions before
  the smallest suffix whose size the vector width divides), fused and run in parallel when
  the work is large, and an inner part fused, split by the vector width and vectorized.
- reduction (rows): when every reduce folds the trailing dimensions of the same rows, one
  parallel loop over the rows of the last output holds everything else (`compute_at` /
  `reverse_compute_at`), so a row is read from memory once and stays in L1/L2 across the
  max, exp, sum and divide of softmax, or the mean, variance and normalization of layernorm.
  The reductions' `_partial` blocks (P interleaved lanes, see te_contract) are vectorized
  over the lanes with the init hoisted out of the fold; elementwise blocks over the row are
  vectorized. Anything else (column reductions, pooling) and any failure of the row schedule
  falls back to the generic schedule.
- generic (conv, attention, reduce_window, the fallbacks): every block on its own, the
  innermost spatial loop innermost and vectorized (reduce loops moved outside it, the init
  hoisted), the outer spatial loops fused and parallel when large.

Knobs (`search_space(kind)`): `vector` (lanes of the vectorized loop; 1 = none), `parallel`,
and for reductions `fuse_rows`. `default_config(lowered, target)` derives them from the
target descriptor: the vector width in bits (`target.vector_bits`, twice the f32 lanes so
two vectors are in flight), the core count (`compute_units`), and the work per call (no
thread pool for kernels under ~64K element-operations, whose launch would cost more than it
saves).
"""

from __future__ import annotations

import math
import os

import tvm
import tvm.s_tir as s_tir

from xchip.knobs import Constraint, Knob, SearchSpace

_VECTORS = (16, 8, 32, 4, 1)
_PARALLEL_WORK = 1 << 16       # element-operations below which one thread runs the kernel

SPACES = {
    "elementwise": SearchSpace("elementwise", (
        Knob("vector", _VECTORS, "lanes of the vectorized inner loop (1: scalar)"),
        Knob("parallel", (True, False), "run the outer loop on the thread pool"),
    )),
    "reduction": SearchSpace("reduction", (
        Knob("vector", _VECTORS, "lanes of the vectorized loops over a row"),
        Knob("parallel", (True, False), "rows on the thread pool"),
        Knob("fuse_rows", (True, False), "compute a whole row (every reduce and elementwise step) "
                                         "inside one loop over rows"),
    ), (Constraint("fuse_rows needs vector > 1 or is pointless", lambda c: True),)),
    "conv": SearchSpace("conv", (
        Knob("vector", _VECTORS, "lanes over the innermost output dimension"),
        Knob("parallel", (True, False), "outer output loops on the thread pool"),
    )),
    "attention": SearchSpace("attention", (
        Knob("vector", _VECTORS, "lanes over each block's innermost dimension"),
        Knob("parallel", (True, False), "outer loops on the thread pool"),
    )),
    "matmul": SearchSpace("matmul", (
        Knob("vector", _VECTORS, "lanes over the rhs free dimension (fallback schedule)"),
        Knob("parallel", (True, False), "output rows on the thread pool (fallback schedule)"),
    )),
}


def search_space(kind: str) -> SearchSpace:
    """The knobs of this module's schedule for `kind` (matmul: the fallback's)."""
    return SPACES[kind]


# --- heuristics ----------------------------------------------------------------------------

def _cores(target) -> int:
    try:
        q = target.compute_units
        if q.known:
            return max(1, int(q.value))
    except AttributeError:
        pass
    return os.cpu_count() or 1


def _vector_bits(target) -> int:
    bits = getattr(target, "vector_bits", None)
    return bits or 128


def _work(lowered) -> int:
    total = 0
    for b in lowered.blocks.values():
        total += math.prod(b.spatial) * max(1, b.reduce_extent) * max(1, b.cost)
    return total


def default_config(lowered, target) -> dict:
    kind = lowered.group.kind
    lanes = max(4, _vector_bits(target) // 32)
    cfg = {"vector": min(2 * lanes, 32), "parallel": _cores(target) > 1 and _work(lowered) >= _PARALLEL_WORK}
    if kind == "reduction":
        cfg["fuse_rows"] = True
    return cfg


def _config(lowered, config, target) -> dict:
    kind = lowered.group.kind if lowered.group.kind != "opaque" else "elementwise"
    cfg = default_config(lowered, target)
    if config:
        space = SPACES.get(kind)
        merged = dict(cfg, **config)
        if space is not None:
            bad = space.violations(merged)
            if bad:
                raise ValueError(f"config for {lowered.group.name}: " + "; ".join(bad))
        cfg = merged
    return cfg


# --- entry ---------------------------------------------------------------------------------

def _new_schedule(lowered):
    mod = tvm.IRModule({lowered.group.name: lowered.func})
    sch = s_tir.Schedule(mod)
    sch.work_on(lowered.group.name)
    for name, b in lowered.blocks.items():
        if b.keep:
            # for schedules written elsewhere (matmul_schedule): inlining this block would undo
            # a decision of the lowering (see te_base.BlockInfo.keep)
            sch.annotate(sch.get_sblock(name), "xchip.keep", b.keep)
    return sch


def schedule(lowered, config, target, *, use_matmul_schedule: bool = True) -> tvm.IRModule:
    kind = lowered.group.kind
    if kind == "matmul":
        sch = _new_schedule(lowered)
        matmul_schedule = None
        if use_matmul_schedule:
            try:
                from . import matmul_schedule
            except ModuleNotFoundError as e:
                if e.name and not e.name.endswith("matmul_schedule"):
                    raise
        if matmul_schedule is not None and hasattr(matmul_schedule, "schedule_matmul"):
            try:
                result = matmul_schedule.schedule_matmul(sch, lowered.matmul, config, target)
                return result if isinstance(result, tvm.IRModule) else sch.mod
            except NotImplementedError:
                sch = _new_schedule(lowered)
        cfg = _config(lowered, _own_keys(config, "matmul"), target)
        generic(sch, lowered, cfg)
        return sch.mod
    cfg = _config(lowered, config, target)
    if kind in ("elementwise", "opaque"):
        sch = _new_schedule(lowered)
        elementwise(sch, lowered, cfg)
        return sch.mod
    if kind == "reduction" and cfg.get("fuse_rows", True):
        sch = _new_schedule(lowered)
        try:
            if rows(sch, lowered, cfg):
                return sch.mod
        except Exception as e:  # noqa: BLE001 - any failure: the generic schedule instead
            _last_fallback_reason[lowered.group.name] = str(e).splitlines()[0] if str(e) else type(e).__name__
    sch = _new_schedule(lowered)
    generic(sch, lowered, cfg)
    return sch.mod


_last_fallback_reason: dict[str, str] = {}   # group name -> why the row schedule did not apply (debugging)


def _own_keys(config, kind):
    if not config:
        return None
    names = {k.name for k in SPACES[kind].knobs}
    own = {k: v for k, v in config.items() if k in names}
    return own or None


# --- inlining ------------------------------------------------------------------------------
#
# The lowering already inlined every op worth inlining: its blocks are the values it decided
# to keep in buffers (outputs, reductions, contraction operands, shared expensive values,
# row statistics, breaks in expressions that would grow too large; see lower.py `plan`).
# Inlining them again here would undo those decisions, so the schedules keep every block.

_NEVER_INLINE = ("reduce", "reduce_partial", "matmul", "conv", "window")


def do_inline(sch, lowered) -> list[str]:
    """The blocks that remain (all of them), in creation order."""
    return list(lowered.blocks)


# --- loop helpers --------------------------------------------------------------------------

def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _divisor(n: int, vec: int) -> int:
    """The vector length to use for a loop of n iterations: vec if it divides n, else the
    largest power of two below vec that does (at least 4), else 1."""
    v = vec
    while v >= 4:
        if n % v == 0:
            return v
        v //= 2
    return 1


def _vectorize_tail(sch, loops, vec: int):
    """Fuse `loops` (the innermost ones) and vectorize by `vec` lanes when it divides; returns
    the outer loop of the split (or None)."""
    if not loops or vec <= 1:
        return None
    inner = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    n = _extent(sch, inner)
    v = _divisor(n, vec)
    if v <= 1:
        return None
    if n == v:
        sch.vectorize(inner)
        return None
    outer, lane = sch.split(inner, [None, v])
    sch.vectorize(lane)
    return outer


def _spatial_block(sch, block, shape, cfg, parallel: bool):
    """Elementwise block: outer dims fused (parallel), the smallest suffix of dims whose size
    the vector width divides fused and vectorized."""
    loops = sch.get_loops(block)
    if not loops:
        return
    vec = cfg["vector"]
    extents = [_extent(sch, lp) for lp in loops]
    split_at = len(loops) - 1
    if vec > 1:
        size = 1
        for k in range(len(loops) - 1, -1, -1):
            size *= extents[k]
            split_at = k
            if size % vec == 0 and size >= vec:
                break
    outer, inner = loops[:split_at], loops[split_at:]
    rest = _vectorize_tail(sch, inner, vec)
    if parallel:
        par = list(outer) + ([rest] if rest is not None and not outer else [])
        if par:
            fused = sch.fuse(*par) if len(par) > 1 else par[0]
            sch.parallel(fused)


# --- elementwise ---------------------------------------------------------------------------

def elementwise(sch, lowered, cfg):
    remaining = do_inline(sch, lowered)
    for name in remaining:
        b = lowered.blocks[name]
        _spatial_block(sch, sch.get_sblock(name), b.spatial, _block_cfg(cfg, b), cfg["parallel"])


def _block_cfg(cfg, b):
    return cfg if b.vector_ok else dict(cfg, vector=1)


# --- generic -------------------------------------------------------------------------------

def _reduce_block(sch, name, b, cfg, parallel: bool):
    block = sch.get_sblock(name)
    decompose = None
    loops = sch.get_loops(block)
    ns = len(b.spatial)
    spatial, red = loops[:ns], loops[ns:]
    vec = cfg["vector"]
    if not red:
        _spatial_block(sch, block, b.spatial, cfg, parallel)
        return
    last = spatial[-1] if spatial else None
    if last is not None and vec > 1 and _divisor(_extent(sch, last), vec) > 1:
        outer = spatial[:-1]
        sch.reorder(*outer, *red, last)
        v = _divisor(_extent(sch, last), vec)
        if _extent(sch, last) == v:
            sch.vectorize(last)
        else:
            _, lane = sch.split(last, [None, v])
            sch.vectorize(lane)
        decompose = red[0]
    else:
        outer = spatial
    if parallel and outer:
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        sch.parallel(fused)
    if decompose is not None:
        # the init hoisted out of the fold, last: TVM refuses to vectorize or parallelize a
        # loop around a reduction update without its init
        sch.decompose_reduction(block, decompose)


def generic(sch, lowered, cfg):
    remaining = do_inline(sch, lowered)
    for name in remaining:
        b = lowered.blocks[name]
        if b.role in _NEVER_INLINE:
            _reduce_block(sch, name, b, _block_cfg(cfg, b), cfg["parallel"])
        else:
            _spatial_block(sch, sch.get_sblock(name), b.spatial, _block_cfg(cfg, b), cfg["parallel"])


# --- reduction rows ------------------------------------------------------------------------

def _producers_closure(lowered, name: str, remaining: set[str]) -> set[str]:
    out: set[str] = set()
    stack = [name]
    blocks = lowered.blocks
    while stack:
        n = stack.pop()
        for r in blocks[n].reads:
            if r in blocks and r not in out:
                out.add(r)
                stack.append(r)
    return out & remaining


def rows(sch, lowered, cfg) -> bool:
    """The row schedule; False when the group does not have that shape (nothing changed)."""
    blocks = lowered.blocks
    finals = [n for n, b in blocks.items() if b.role == "reduce"]
    if not finals or any(b.role in ("window", "matmul", "conv") for b in blocks.values()):
        return False
    row_shapes = {blocks[n].rows for n in finals}
    if len(row_shapes) != 1 or None in row_shapes:
        return False
    (row_shape,) = row_shapes
    nk = len(row_shape)
    if nk == 0:
        return False
    remaining = do_inline(sch, lowered)
    # every remaining block must iterate the rows first
    for n in remaining:
        if tuple(blocks[n].spatial[:nk]) != tuple(row_shape):
            raise ValueError(f"block {n} does not iterate the rows {row_shape}")
    outputs = [n for n in lowered.output_blocks if n in remaining]
    full = [n for n in outputs if len(blocks[n].spatial) > nk and math.prod(blocks[n].spatial[nk:]) > 1]
    anchor = (full or outputs)[-1]
    loops = sch.get_loops(sch.get_sblock(anchor))
    row = sch.fuse(*loops[:nk]) if nk > 1 else loops[0]
    others = [n for n in remaining if n != anchor]
    producers = _producers_closure(lowered, anchor, set(remaining))
    for n in reversed(others):
        if n in producers:
            sch.compute_at(sch.get_sblock(n), row, preserve_unit_loops=False)
    for n in others:
        if n not in producers:
            sch.reverse_compute_at(sch.get_sblock(n), row, preserve_unit_loops=False)
    vec = cfg["vector"]
    pending = []
    for n in remaining:
        b = blocks[n]
        block = sch.get_sblock(n)
        inner = sch.get_loops(block)[1:]
        if not inner:
            continue
        if b.role == "reduce_partial":
            # loops: lanes (spatial), fold (reduce)
            lanes_loop, fold = inner[-2], inner[-1]
            sch.reorder(fold, lanes_loop)
            sch.vectorize(lanes_loop)
            pending.append((n, fold))
        elif b.role == "reduce":
            continue
        elif b.role in _NEVER_INLINE:
            continue
        elif b.vector_ok:
            _vectorize_tail(sch, inner, vec)
    if cfg["parallel"] and _extent(sch, row) > 1:
        sch.parallel(row)
    for n, fold in pending:
        sch.decompose_reduction(sch.get_sblock(n), fold)
    return True
