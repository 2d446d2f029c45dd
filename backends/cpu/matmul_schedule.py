"""The CPU matmul schedule: a BLIS-style register-blocked GEMM in TensorIR.

    schedule_matmul(sch, dims, config, target)    # rewrites `sch` in place
    matmul_space(M, N, K, batch, dtype, target)   # the knobs and their legality constraints
    default_matmul_config(M, N, K, batch, dtype, target)

`sch` wraps one PrimFunc whose block "matmul" iterates batch, M-side (lhs free), N-side (rhs
free) and K-side (contracting) iterators, in that order (`dims` says how many of each).
Blocks before it (elementwise, transposes, converts of the operands) are folded into the
packing copies; blocks after it (bias, activation, residual, convert of the result) run per
output tile, while the tile is in registers or L1.

How the schedule goes, and why:

* canonical form: each group of iterators (batch, M, N, K) is fused into one
  (`transform_block_layout`), so [B, S, D] x [D, F] is a [B*S, D] x [D, F] product.
* packing: each operand is copied once per call into panels -- A as [M/mr, K, mr], B as
  [N/nr, K, nr] -- by its own block (`reindex`; the operand's producers are inlined into
  that copy, and a bf16/f16/i8 operand is converted there, not in the inner loop). M and N
  are padded to multiples of mr and nr (`pad_einsum`) so the micro-kernel never tests
  bounds; the padding is zeros and is never stored.
* micro-kernel: an mr x nr tile of the result (nr = nv SIMD vectors) accumulates in a local
  buffer over all of K: mr and nv unrolled, the lanes vectorized, so LLVM keeps the mr*nv
  accumulators in registers and emits, per k, nv vector loads of B and mr broadcasts of A:
  6x16 (12 ymm accumulators of 16) with AVX2, 8x24 or 12x32 with 32 registers.
* cache blocking: mc rows of packed A (half of L2) per task; the B micro-panel (K x nr)
  is reused by every micro-tile of the row block. For K > 2048, K blocks of kc (the tile
  then accumulates in the output buffer, which LLVM promotes to registers per K block).
* parallelism: TVM's thread pool over (batch x row blocks), or over column chunks when all
  of A fits L2 (then B is read once, and packed by the thread that uses it). TVM sizes its
  pool to half the logical CPUs unless TVM_NUM_THREADS is set: `schedule_matmul` sets
  TVM_NUM_THREADS to the core count when it is unset (see `ensure_thread_pool`).
* matrix-vector products (M == 1 or N == 1) get a memory-bound schedule: no packing; the
  weight streamed once, in its own layout (an axpy over contiguous rows, or dot products of
  contiguous rows with an rfactor over two vectors of K).

What the fast paths cannot express gets a simple correct schedule (`_schedule_simple`);
`last_plan` says which path the last call took.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import tvm
from tvm import s_tir
from tvm.tirx.analysis import undefined_vars

from xchip.knobs import Constraint, Knob, SearchSpace

__all__ = ["schedule_matmul", "matmul_space", "default_matmul_config", "ensure_thread_pool",
           "MatmulShape", "KNOB_DOCS"]

last_plan: str | None = None      # "gemm" | "gemv" | "simple": the path the last call took

# --- target facts ------------------------------------------------------------------------------

_BITS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16, "int64": 64, "int32": 32,
         "int16": 16, "int8": 8, "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64, "bool": 8}

_IR_TO_TVM = {"f32": "float32", "f64": "float64", "f16": "float16", "bf16": "bfloat16",
              "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64", "u8": "uint8",
              "u16": "uint16", "u32": "uint32", "u64": "uint64"}


def _tvm_dtype(dtype) -> str:
    d = str(getattr(dtype, "name", dtype))
    return _IR_TO_TVM.get(d, d)


def _acc_dtype(dtype) -> str:
    """What the micro-kernel accumulates in for operands of `dtype` (as dot_general's lowering
    does: f32 for f16/bf16/f32, f64 for f64, the integer itself otherwise)."""
    d = _tvm_dtype(dtype)
    return "float32" if d in ("float16", "bfloat16") else d


def _vector_bits(target) -> int:
    bits = getattr(target, "vector_bits", None) if target is not None else None
    return int(bits) if bits else 128


def _machine(target) -> str:
    host = getattr(target, "host", None)
    return str(getattr(host, "machine", "") or getattr(target, "architecture", "") or
               getattr(target, "isa", "") or "")


def _num_registers(target) -> int:
    """SIMD registers: 32 with AVX-512 (zmm) or on ARM64 (NEON/SVE), 16 with AVX/AVX2/SSE."""
    if _machine(target).startswith(("aarch64", "arm")):
        return 32
    return 32 if _vector_bits(target) >= 512 else 16


def _cores(target) -> int:
    host = getattr(target, "host", None)
    n = None
    if host is not None:
        n = getattr(host, "physical_cores", None) or getattr(host, "logical_cpus", None)
    cu = getattr(target, "compute_units", None)
    if not n and cu is not None and getattr(cu, "known", False):
        n = int(cu.value)
    return max(1, int(n or os.cpu_count() or 1))


def _cache_kb(target, level: int, default: int) -> int:
    host = getattr(target, "host", None)
    if host is not None:
        c = host.cache(level)
        if c is not None and c.size_kb:
            return int(c.size_kb)
    return default


def lanes(dtype, target) -> int:
    """SIMD lanes of the accumulator type."""
    return max(1, _vector_bits(target) // _BITS.get(_acc_dtype(dtype), 32))


def ensure_thread_pool(target=None) -> int:
    """Give TVM's thread pool one thread per core unless TVM_NUM_THREADS says otherwise.
    TVM's default is half the logical CPUs (it assumes two hardware threads per core), which
    on a 2-vCPU machine is one thread. Takes effect if called before the process's first
    parallel TVM call; returns the thread count asked for."""
    if "TVM_NUM_THREADS" not in os.environ:
        os.environ["TVM_NUM_THREADS"] = str(_cores(target))
    return int(os.environ["TVM_NUM_THREADS"])


# --- configs -----------------------------------------------------------------------------------

KNOB_DOCS = {
    "mr": "rows of the register tile (rows of A broadcast per k step)",
    "nv": "SIMD vectors per row of the register tile (nr = nv * lanes columns)",
    "kc": "depth of a K block (0: all of K in one block, the tile in registers throughout)",
    "mc": "rows of A per cache block and parallel task (a multiple of mr)",
    "pack_a": "copy A into [M/mr, K, mr] panels first",
    "pack_b": "copy B into [N/nr, K, nr] panels first",
    "unroll_k": "unroll of the k loop inside the micro-kernel",
    "parallel": "the parallel tile loop: 'm' (batch x row blocks) or 'n' (column chunks)",
}


def _divisors_le(n: int, cap: int) -> int:
    """The largest divisor of n that is <= cap (at least 1)."""
    cap = max(1, min(n, cap))
    for d in range(cap, 0, -1):
        if n % d == 0:
            return d
    return 1


def _register_tile(regs: int, vbits: int, M: int, N: int, L: int) -> tuple[int, int]:
    """(mr, nv): the register tile with mr*nv accumulators + nv B vectors + one broadcast in
    the register file and at least 8 independent FMAs per k step (two FMA pipes x 4 cycles
    of latency)."""
    if regs >= 32:
        mr, nv = (12, 2) if vbits >= 512 else (8, 3)
    else:
        mr, nv = 6, 2
    if M < mr:
        # few rows: widen the tile along N instead
        mr = max(1, M)
        nv = max(1, min((regs - 2) // (mr + 1), -(-N // L), 4 if regs < 32 else 6))
    return mr, nv


def _balance(tasks: int, cores: int) -> float:
    """Share of the cores' time spent working when `tasks` equal tasks run on `cores`."""
    return tasks / (-(-tasks // cores) * cores)


def _row_block_balance(tiles_m: int, d: int, batch: int, cores: int) -> float:
    """Mean over max of the row tiles each core gets when `batch` x ceil(tiles_m / d) row
    blocks of d tiles (the last of each batch short) are split into contiguous equal runs,
    as TVM's parallel loop splits them."""
    per_batch = -(-tiles_m // d)
    sizes = ([d] * (per_batch - 1) + [tiles_m - d * (per_batch - 1)]) * batch
    run = -(-len(sizes) // cores)
    loads = [sum(sizes[i:i + run]) for i in range(0, len(sizes), run)]
    return (sum(sizes) / cores) / max(loads)


def default_matmul_config(M, N, K, batch, dtype, target) -> dict:
    """A fast config without tuning, from the target's vector width, register count, core
    count and L2 size. `dtype` is the operands' (IR or TVM name)."""
    M, N, K, batch = max(1, int(M)), max(1, int(N)), max(1, int(K)), max(1, int(batch))
    L = lanes(dtype, target)
    regs = _num_registers(target)
    cores = _cores(target)
    esize = _BITS.get(_acc_dtype(dtype), 32) // 8
    l2 = _cache_kb(target, 2, 512) * 1024
    if M == 1 or N == 1:
        # matrix-vector: the memory-bound schedule reads nv (vectors per task row) and
        # unroll_k; no packing
        return {"mr": 1, "nv": max(1, 64 // L), "kc": 0, "mc": 1, "pack_a": False,
                "pack_b": False, "unroll_k": 4, "parallel": "n"}
    mr, nv = _register_tile(regs, _vector_bits(target), M, N, L)
    nr = nv * L
    # K blocks only for deep K: up to there the tile's accumulators stay in registers over
    # all of K, the B micro-panel (K x nr) streaming from L2.
    kc = 0
    if K > 2048:
        kc = _divisors_le(K, 512)
        if kc < 128:
            kc = 0
    depth = kc or K
    tiles_m, tiles_n = -(-M // mr), -(-N // nr)
    # Row block: mc x depth of packed A in a quarter of L2 (the rest holds the streaming B
    # micro-panels and the output); among those sizes, the best balanced over the cores
    # (the last block of a batch may be short; 2.5% slack), then the largest (B reuse).
    cap = max(1, (l2 // 4) // max(1, depth * mr * esize))
    cands = list(range(1, min(cap, tiles_m) + 1))
    scored = [(_row_block_balance(tiles_m, d, batch, cores), d) for d in cands]
    best = max(b for b, _ in scored)
    mc_t = max(d for b, d in scored if b >= best - 0.025)
    parallel = "m"
    a_fits = tiles_m * mr * depth * esize <= l2 * 3 // 5
    chunks = _divisors_le(tiles_n, cores)
    if a_fits and batch >= cores and _balance(batch, cores) >= 0.95:
        # batches of small products: one whole product per task
        mc_t = tiles_m
    elif a_fits and _balance(batch * chunks, cores) >= max(0.9, best):
        # all of A fits L2: split the columns (one chunk per core), so B is read once and
        # packed by the thread that uses it
        parallel = "n"
        mc_t = tiles_m
    elif best < 0.9 and _balance(batch * chunks, cores) > best:
        parallel = "n"
        mc_t = max(cands)
    return {"mr": mr, "nv": nv, "kc": kc, "mc": mc_t * mr, "pack_a": True, "pack_b": True,
            "unroll_k": 2 if L >= 8 else 4, "parallel": parallel}


def matmul_space(M: int, N: int, K: int, batch: int, dtype: str, target) -> SearchSpace:
    """The knobs of this schedule for one shape, and what makes a config legal. Every legal
    config builds and computes the right result (the schedule adapts what does not divide:
    mc to a divisor of the row tiles, M and N padded to whole tiles)."""
    M, N, K, batch = max(1, int(M)), max(1, int(N)), max(1, int(K)), max(1, int(batch))
    regs = _num_registers(target)
    L = lanes(dtype, target)
    default = default_matmul_config(M, N, K, batch, dtype, target)
    mrs = sorted({v for v in (1, 2, 3, 4, 5, 6, 8, 12, 14) if v <= M} | {default["mr"]})
    nvs = sorted({v for v in (1, 2, 3, 4, 6, 8) if (v - 1) * L < N} | {default["nv"]})
    kcs = sorted({0} | {v for v in (64, 128, 256, 512) if v < K and K % v == 0} | {default["kc"]})
    mcs = sorted({m * t for m in mrs for t in (1, 2, 4, 8, 16) if m * t <= M + m} | {default["mc"]})
    knobs = (
        Knob("mr", tuple(mrs), KNOB_DOCS["mr"]),
        Knob("nv", tuple(nvs), KNOB_DOCS["nv"]),
        Knob("kc", tuple(kcs), KNOB_DOCS["kc"]),
        Knob("mc", tuple(mcs), KNOB_DOCS["mc"]),
        Knob("pack_a", (True, False), KNOB_DOCS["pack_a"]),
        Knob("pack_b", (True, False), KNOB_DOCS["pack_b"]),
        Knob("unroll_k", (1, 2, 4), KNOB_DOCS["unroll_k"]),
        Knob("parallel", ("m", "n"), KNOB_DOCS["parallel"]),
    )
    vector_case = M == 1 or N == 1
    constraints = (
        Constraint("mr * nv accumulators + nv B vectors + 1 broadcast fit the SIMD registers",
                   lambda c: vector_case or c["mr"] * c["nv"] + c["nv"] + 1 <= regs),
        Constraint("mc is a multiple of mr", lambda c: c["mc"] % c["mr"] == 0),
        Constraint("kc divides K (0: no K blocking)", lambda c: c["kc"] == 0 or K % c["kc"] == 0),
        Constraint("mr is at most M", lambda c: c["mr"] <= M),
    )
    return SearchSpace("matmul", knobs, constraints)


def _merge(config: dict | None, default: dict) -> dict:
    out = dict(default)
    out.update(config or {})
    return out


# --- analysis of the "matmul" block ----------------------------------------------------------

# What TVM raises when a schedule primitive does not apply (ScheduleError is a RuntimeError;
# FFI errors arrive as builtin exception types).
_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError)


class _Unsupported(Exception):
    """The fast path cannot schedule this block (the simple schedule will)."""


@dataclass
class _Dims:
    batch: int
    lhs_free: int
    rhs_free: int
    contracting: int


@dataclass
class MatmulShape:
    """The extents of the block's iterators, grouped as `dims` groups them."""

    batch: tuple[int, ...]
    m: tuple[int, ...]
    n: tuple[int, ...]
    k: tuple[int, ...]
    acc: str                    # the accumulator (block output) dtype

    @property
    def sizes(self):
        p = math.prod
        return p(self.m), p(self.n), p(self.k), p(self.batch)

    @property
    def dims(self) -> _Dims:
        return _Dims(len(self.batch), len(self.m), len(self.n), len(self.k))


def _ints(extents) -> tuple[int, ...]:
    return tuple(int(e) for e in extents)


def _analyze(sch, dims) -> MatmulShape:
    block = sch.get(sch.get_sblock("matmul"))
    ivs = list(block.iter_vars)
    nb, nm, nn, nk = int(dims.batch), int(dims.lhs_free), int(dims.rhs_free), int(dims.contracting)
    if len(ivs) != nb + nm + nn + nk:
        raise _Unsupported(f"block 'matmul' has {len(ivs)} iterators, dims say {nb}+{nm}+{nn}+{nk}")
    ext = [iv.dom.extent for iv in ivs]
    if not all(isinstance(e, tvm.tirx.IntImm) for e in ext):
        raise _Unsupported("symbolic extents")
    ext = _ints(ext)
    acc = str(block.writes[0].source.dtype)
    return MatmulShape(ext[:nb], ext[nb:nb + nm], ext[nb + nm:nb + nm + nn], ext[nb + nm + nn:], acc)


def _vars_of(expr) -> set:
    return {v.name for v in undefined_vars(expr)}


def _read_roles(sch, blk, dims) -> dict:
    """{'a': read index, 'b': read index} of the block's two operand reads."""
    block = sch.get(blk)
    ivs = list(block.iter_vars)
    nb, nm, nn = int(dims.batch), int(dims.lhs_free), int(dims.rhs_free)
    mvars = {iv.var.name for iv in ivs[nb:nb + nm]}
    nvars = {iv.var.name for iv in ivs[nb + nm:nb + nm + nn]}
    out_name = block.writes[0].source.name
    roles = {}
    for i, region in enumerate(block.reads):
        if region.source.name == out_name:
            continue
        used = set()
        for r in region.region:
            used |= _vars_of(r.min)
        if used & mvars and not used & nvars:
            role = "a"
        elif used & nvars and not used & mvars:
            role = "b"
        else:
            raise _Unsupported(f"operand {region.source.name} depends on both or neither of M and N")
        if role in roles:
            raise _Unsupported(f"two {role} operands")
        roles[role] = i
    if set(roles) != {"a", "b"}:
        raise _Unsupported(f"operands {sorted(roles)}")
    return roles


def _block_name(sch, blk) -> str:
    return sch.get(blk).name_hint


def _extent(sch, loop):
    e = sch.get(loop).extent
    return int(e) if isinstance(e, tvm.tirx.IntImm) else None


def _fuse(sch, loops):
    loops = [x for x in loops if x is not None]
    if not loops:
        return None
    return loops[0] if len(loops) == 1 else sch.fuse(*loops)


def _depth(sch, loops, loop) -> int:
    """How many of `loops` (a block's loops, outermost first) enclose `loop`, it included."""
    target = sch.get(loop)
    for i, x in enumerate(loops):
        if sch.get(x).same_as(target):
            return i + 1
    return 0


def _linear(idx, ext):
    out = idx[0]
    for i, e in zip(idx[1:], ext[1:]):
        out = out * e + i
    return out


def _panel_fn(nbat: int, t: int):
    """[batch..., free, k] -> [batch..., free // t, k, free % t]"""
    def fn(*i):
        return list(i[:nbat]) + [i[nbat] // t, i[nbat + 1], i[nbat] % t]
    return fn


def _index_map(fn, ndim: int, index_dtype: str):
    # IndexMap.from_func defaults to int64 indices; the block's are int32
    return tvm.tirx.IndexMap.from_func(fn, ndim=ndim, index_dtype=index_dtype)


def _inline_producers(sch, blk, keep=()) -> None:
    """compute_inline every block that feeds `blk` (transitively), as far as it goes; not
    the blocks named in `keep`."""
    progress = True
    while progress:
        progress = False
        for p in sch.get_producers(blk):
            if _block_name(sch, p) in keep:
                continue
            try:
                sch.compute_inline(p)
                progress = True
            except _ERRORS:
                continue


def _consumers_closure(sch, blk) -> list:
    """Blocks reading the matmul output (transitively), in program order."""
    out, frontier, seen = [], [blk], set()
    while frontier:
        b = frontier.pop()
        for c in sch.get_consumers(b):
            name = _block_name(sch, c)
            if name not in seen:
                seen.add(name)
                out.append(c)
                frontier.append(c)
    order = {_block_name(sch, b): i for i, b in enumerate(_all_blocks(sch))}
    out.sort(key=lambda b: order.get(_block_name(sch, b), 0))
    return out


def _all_blocks(sch) -> list:
    try:
        return list(sch.get_child_blocks(sch.get_sblock("root")))
    except _ERRORS:
        return []


def _output_buffers(sch) -> set:
    """Names of the function's parameter buffers (TVM 0.27 PrimFuncs have no buffer_map:
    the params are handles named like their buffers)."""
    gv = sch.func_working_on
    name = gv.name_hint if gv is not None else [g.name_hint for g in sch.mod.functions][0]
    return {p.name for p in sch.mod[name].params}


# --- the schedule ------------------------------------------------------------------------------

def schedule_matmul(sch: s_tir.Schedule, dims, config: dict | None, target) -> None:
    """Schedule the PrimFunc in `sch` (block "matmul" and its prologue/epilogue) for `target`
    with `config` (None or partial: the rest from `default_matmul_config`)."""
    global last_plan
    if getattr(target, "host", None) is not None:     # this machine (not a cross target)
        ensure_thread_pool(target)
    shape = _analyze(sch, dims)
    M, N, K, batch = shape.sizes
    cfg = _merge(config, default_matmul_config(M, N, K, batch, shape.acc, target))
    plans = []
    if shape.k:
        plans.append("gemv" if (M == 1 or N == 1) else "gemm")
    plans.append("simple")
    last_error = None
    for plan in plans:
        trial = sch.copy()
        try:
            _apply(trial, plan, dims, shape, cfg, target)
        except (_Unsupported,) + _ERRORS as e:
            last_error = e
            if os.environ.get("XCHIP_MATMUL_STRICT") and plan != "simple":
                raise
            continue
        _apply(sch, plan, dims, shape, cfg, target)
        last_plan = plan
        return
    raise RuntimeError(f"no matmul schedule applies: {last_error}")


def _apply(sch, plan, dims, shape, cfg, target):
    if plan == "simple":
        _schedule_simple(sch, shape, cfg, target)
        return
    shape = _canonicalize(sch, dims, shape)
    if plan == "gemm":
        _schedule_gemm(sch, shape, cfg, target)
    else:
        _schedule_gemv(sch, shape, cfg, target)


def _canonicalize(sch, dims, shape: MatmulShape) -> MatmulShape:
    """Fuse each iterator group of "matmul" into one (transform_block_layout), and the
    spatial iterators of epilogue blocks over the same space alike."""
    groups = [shape.batch, shape.m, shape.n, shape.k]
    if all(len(g) <= 1 for g in groups):
        return shape
    blk = sch.get_sblock("matmul")
    block = sch.get(blk)
    idx_dtype = str(block.iter_vars[0].var.ty)

    def group_map(gs):
        def fn(*v):
            out, i = [], 0
            for g in gs:
                if g:
                    out.append(_linear(v[i:i + len(g)], g))
                i += len(g)
            return out
        return fn

    ndim = sum(len(g) for g in groups)
    spatial = shape.batch + shape.m + shape.n
    consumers = _consumers_closure(sch, blk)
    sch.transform_block_layout(blk, _index_map(group_map(groups), ndim, idx_dtype))
    # elementwise epilogues over the result space: iterate the fused space too, so a tile's
    # region of them is exact
    for e in consumers:
        ivs = sch.get(e).iter_vars
        if len(ivs) != len(spatial) or any(int(iv.iter_type) != 0 for iv in ivs):
            continue
        if _ints(iv.dom.extent for iv in ivs) != spatial:
            continue
        try:
            sch.transform_block_layout(e, _index_map(group_map(groups[:3]), len(spatial), idx_dtype))
        except _ERRORS:
            pass
    # The product's own buffer, when an epilogue reads it, in the fused layout as well: a tile
    # of fused rows that crosses a row of the unfused layout (rows 8-11 of [2, 10]) covers a
    # non-rectangular region there, and the epilogue computed at the tile would take the
    # bounding box: rows no tile has computed yet.
    written = sch.get(blk).writes[0].source
    if written.name not in _output_buffers(sch) and len(written.shape) == len(spatial) and len(spatial) > sum(
            1 for g in groups[:3] if g):
        sch.transform_layout(blk, ("write", 0), _index_map(group_map(groups[:3]), len(spatial), idx_dtype))
    return MatmulShape(*[(math.prod(g),) if g else () for g in groups], shape.acc)


def _plain_access(region, block) -> bool:
    """Whether every index of the region is one block iterator (what pad_einsum needs)."""
    names = {iv.var.name for iv in block.iter_vars}
    for r in region.region:
        if type(r.min).__name__ != "Var" or r.min.name not in names:
            return False
    return True


def _schedule_gemm(sch, shape: MatmulShape, cfg, target) -> None:
    nb = len(shape.batch)
    if len(shape.m) != 1 or len(shape.n) != 1 or len(shape.k) != 1:
        raise _Unsupported("gemm needs one M, one N and one K iterator")
    M, N, K, batch = shape.sizes
    L = lanes(shape.acc, target)
    mr, nv = max(1, int(cfg["mr"])), max(1, int(cfg["nv"]))
    nr = nv * L
    blk = sch.get_sblock("matmul")
    roles = _read_roles(sch, blk, shape.dims)
    pad_m, pad_n = M % mr != 0, N % nr != 0
    pack = {"a": bool(cfg.get("pack_a", True)) or pad_m or pad_n,
            "b": bool(cfg.get("pack_b", True)) or pad_m or pad_n}

    # 1. packing copies: reindex (a copy in the block's iterator order: [batch, free, k]);
    #    the operand's producers (converts, transposes, scalings) are inlined into the copy,
    #    and a conversion the matmul applies to what it loads moves into the copy too
    buf_names = [r.source.name for r in sch.get(blk).reads]
    pack_blocks = {}
    for role in ("a", "b"):
        if pack[role]:
            rb = sch.reindex(blk, buf_names[roles[role]])
            _inline_producers(sch, rb)
            _hoist_operand_convert(sch, blk, rb)
            pack_blocks[role] = _block_name(sch, rb)
    if not all(pack.values()):
        _inline_producers(sch, blk, keep=set(pack_blocks.values()))

    # 2. M and N padded to whole register tiles
    if pad_m or pad_n:
        block = sch.get(blk)
        if not _plain_access(block.writes[0], block):
            sch.reindex(blk, ("write", 0))
        sch.pad_einsum(blk, [1] * nb + [mr if pad_m else 1, nr if pad_n else 1, 1])
        for role in ("a", "b"):
            cons = sch.get_consumers(pack_blocks[role])
            if cons and _block_name(sch, cons[0]) != "matmul":
                pad_block = cons[0]
                sch.compute_inline(pack_blocks[role])
                pack_blocks[role] = _block_name(sch, pad_block)
        shape = _analyze(sch, shape.dims)
    Mp, Np = shape.m[0], shape.n[0]

    # 3. panel layouts; the packing copies iterate in panel order too
    pack_info = {}
    for role, name in pack_blocks.items():
        pb = sch.get_sblock(name)
        wbuf = sch.get(pb).writes[0].source
        ndim = len(wbuf.shape)
        t = mr if role == "a" else nr
        nbat = ndim - 2
        # is the source contiguous along the free dim (vector copies) or along K?
        contiguous = _pack_source_is_contiguous(sch, pb, nbat)
        imap = _index_map(_panel_fn(nbat, t), ndim, str(wbuf.shape[0].ty))
        sch.transform_layout(pb, ("write", 0), imap)
        if len(sch.get(pb).iter_vars) == ndim:
            sch.transform_block_layout(pb, imap)
        pack_info[role] = (t, contiguous)

    # 4. the loop nest: [batch] x row blocks x column panels x tiles x k x tile
    loops = sch.get_loops(blk)
    b_loop = loops[0] if nb else None
    m_loop, n_loop, k_loop = loops[nb], loops[nb + 1], loops[nb + 2]
    tiles_m, tiles_n = Mp // mr, Np // nr
    mc_t = max(1, min(tiles_m, int(cfg.get("mc", mr)) // mr))
    kc = int(cfg.get("kc") or 0)
    if kc <= 0 or kc >= K or K % kc:
        kc = 0
    mo, mi = sch.split(m_loop, [tiles_m, mr])
    ic, ir = sch.split(mo, [-(-tiles_m // mc_t), mc_t])   # a short last block is predicated
    jo, ji = sch.split(n_loop, [tiles_n, nr])
    jv, jl = sch.split(ji, [nv, L])
    parallel_n = cfg.get("parallel", "m") == "n"
    if parallel_n:
        # column chunks, one per core: inside a chunk, row blocks then panels
        chunks = _divisors_le(tiles_n, _cores(target))
        jc, jr = sch.split(jo, [chunks, tiles_n // chunks])
    else:
        jc, jr = None, jo
    if kc:
        ko, ki = sch.split(k_loop, [K // kc, kc])
    else:
        ko, ki = None, k_loop
    uk = int(cfg.get("unroll_k", 1) or 1)
    ku = None
    if uk > 1 and (kc or K) % uk == 0 and (kc or K) > uk:
        ki, ku = sch.split(ki, [None, uk])
    head = [b_loop] if b_loop is not None else []
    mid = [jc, ic, jr] if parallel_n else [ic, jr]
    order = head + mid + ([ko] if ko is not None else []) + [ir]
    sch.reorder(*order, ki, *([ku] if ku is not None else []), mi, jv, jl)
    sch.vectorize(jl)
    sch.unroll(jv)
    sch.unroll(mi)
    if ku is not None:
        sch.unroll(ku)
    par = sch.fuse(b_loop, order[1]) if b_loop is not None else order[0]
    order = [par] + order[(2 if b_loop is not None else 1):]
    sch.parallel(par)
    # where whole output tiles exist: the loop just outside the K blocks
    anchor = order[order.index(ko) - 1] if ko is not None else ir
    if ko is None and cfg.get("acc_local", True):
        # the tile accumulates in a local [mr, nr] buffer: registers, zeroed in place
        wb = sch.cache_write(blk, 0, "local")
        sch.reverse_compute_at(wb, ir, preserve_unit_loops=False)
        _schedule_tile_copy(sch, wb, ir, L)
    sch.decompose_reduction(blk, ko if ko is not None else ki)
    _schedule_tile_copy(sch, sch.get_sblock("matmul_init"), None, L)

    # 5. epilogue: per output tile (per row block x panel when K is blocked)
    _fuse_epilogue(sch, blk, anchor, fallback=par, lanes_=L)

    # 6. packing: the operand split across the parallel loop is packed inside it, by the
    #    thread that uses it, just before use; the other one before, in a parallel loop
    owned = {"b"} if parallel_n else {"a"}
    if nb and not parallel_n and mc_t == tiles_m:
        owned.add("b")          # one whole product per task: its B is that task's alone
    for role, name in pack_blocks.items():
        pb = sch.get_sblock(name)
        t, contiguous = pack_info[role]
        fused = False
        if role in owned and cfg.get("pack_fused", True):
            try:
                sch.compute_at(pb, par, preserve_unit_loops=False)
                fused = True
            except _ERRORS:
                pass
        _schedule_pack(sch, pb, t, L, contiguous, fused)


def _schedule_tile_copy(sch, blk, anchor, L, unroll: bool = True):
    """The loops of a block that fills or copies a register tile: the innermost loop split
    into SIMD vectors, the rest unrolled. `anchor`: the loop the tile hangs under (None: the
    block's innermost loops that are not parallel, at most three)."""
    loops = sch.get_loops(blk)
    start = _depth(sch, loops, anchor) if anchor is not None else 0
    inner = loops[start:]
    if anchor is None:
        inner = [x for x in inner if sch.get(x).kind != tvm.tirx.ForKind.PARALLEL][-3:]
    if not inner:
        return
    try:
        last = inner[-1]
        ext = _extent(sch, last) or 0
        if ext > L and ext % L == 0:
            lo, li = sch.split(last, [ext // L, L])
            sch.vectorize(li)
            if unroll:
                sch.unroll(lo)
        elif ext > 1:
            sch.vectorize(last)
        for x in inner[:-1] if unroll else ():
            if (_extent(sch, x) or 0) <= 16 and sch.get(x).kind == tvm.tirx.ForKind.SERIAL:
                sch.unroll(x)
    except _ERRORS:
        pass


def _schedule_pack(sch, pb, t, L, contiguous, fused):
    """Loops of a packing copy that iterates in panel order ([batch], panel, k, t after
    `transform_block_layout`): the t loop innermost, vectorized when the source is
    contiguous along it (else unrolled); unless it runs inside the compute's parallel loop
    (`fused`), the loops outside k fused into a parallel loop."""
    loops = sch.get_loops(pb)
    if not loops:
        return
    inner = loops[-1]
    if _extent(sch, inner) != t:
        return
    try:
        if contiguous and t % L == 0 and t > 1:
            fv, fl = sch.split(inner, [t // L, L])
            sch.unroll(fv)
            sch.vectorize(fl)
        elif t > 1:
            sch.unroll(inner)
        if not fused and len(loops) > 2:
            sch.parallel(_fuse(sch, loops[:-2]))
    except _ERRORS:
        pass


def _pack_source_is_contiguous(sch, blk, inner_var_index: int) -> bool:
    """Whether the block's reads have the block iterator `inner_var_index` in their last
    (contiguous) index: then packing along that iterator is a vector copy."""
    block = sch.get(blk)
    var = block.iter_vars[inner_var_index].var.name
    found = False
    for region in block.reads:
        if not region.region:
            continue
        if var not in _vars_of(region.region[-1].min):
            return False
        found = True
    return found


def _fuse_epilogue(sch, blk, anchor, fallback=None, lanes_: int = 8) -> None:
    """Inline the epilogue blocks that write intermediates (copies, elementwise ops) into
    their consumers, then compute the rest under `anchor` (a loop each iteration of which
    leaves whole output tiles), vectorized; what cannot go there runs after, in parallel."""
    params = _output_buffers(sch)
    for e in _consumers_closure(sch, blk):
        if {w.source.name for w in sch.get(e).writes} & params:
            continue
        try:
            sch.compute_inline(e)
        except _ERRORS:
            pass
    for e in _consumers_closure(sch, blk):
        placed = None
        for loop in (anchor, fallback):
            if loop is None:
                continue
            try:
                sch.reverse_compute_at(e, loop, preserve_unit_loops=False)
                placed = loop
                break
            except _ERRORS:
                continue
        if placed is not None:
            _schedule_tile_copy(sch, e, placed, lanes_, unroll=False)
        else:
            _schedule_elementwise(sch, e, lanes_)


def _schedule_elementwise(sch, blk, vec: int = 8) -> None:
    """A block left on its own: its spatial loops fused, vectorized and parallel."""
    loops = sch.get_loops(blk)
    if not loops or any(sch.get(x).kind == tvm.tirx.ForKind.PARALLEL for x in loops):
        return
    try:
        ivs = sch.get(blk).iter_vars
        if any(int(iv.iter_type) != 0 for iv in ivs):
            sch.parallel(loops[0])
            return
        fused = _fuse(sch, loops)
        ext = _extent(sch, fused) or 0
        if ext >= 2 * vec and ext % vec == 0:
            outer, inner = sch.split(fused, [None, vec])
            sch.vectorize(inner)
            sch.parallel(outer)
        elif ext > 1:
            sch.parallel(fused)
    except _ERRORS:
        pass


# --- moving an operand's dtype conversion into its packing copy --------------------------------

_LOADS = ("BufferLoad", "TensorLoad")     # TVM 0.27 calls a buffer load TensorLoad
_CONVERT_NODES = ("Cast", "Call", "LShift", "RShift", "BitwiseAnd", "BitwiseOr") + _LOADS


def _load_buffer(load):
    return load.source if hasattr(load, "source") else load.buffer


def _children(e) -> list:
    kind = type(e).__name__
    if kind == "Cast":
        return [e.value]
    if kind == "Call":
        return list(e.args)
    if kind in ("LShift", "RShift", "BitwiseAnd", "BitwiseOr", "Mul", "Add", "Sub"):
        return [e.a, e.b]
    return []


def _loads_in(e, out=None) -> list:
    out = [] if out is None else out
    if type(e).__name__ in _LOADS:
        out.append(e)
        return out
    for c in _children(e):
        _loads_in(c, out)
    return out


def _is_conversion_of_load(e) -> bool:
    """An expression made only of casts, reinterprets and constant shifts/masks around
    exactly one buffer load (what the lowering wraps around a narrow operand)."""
    kind = type(e).__name__
    if kind in _LOADS or kind in ("IntImm", "FloatImm"):
        return True
    if kind not in _CONVERT_NODES:
        return False
    if kind == "Call" and str(e.op.name) not in ("tirx.reinterpret", "tir.reinterpret"):
        return False
    return all(_is_conversion_of_load(c) for c in _children(e)) and len(_loads_in(e)) == 1


def _operand_exprs(block):
    """(store, accumulator load, lhs factor, rhs factor) of `C[..] = C[..] + X * Y`, or None."""
    store = block.body
    if type(store).__name__ != "BufferStore":
        return None
    v = store.value
    if type(v).__name__ != "Add":
        return None
    if type(v.a).__name__ in _LOADS and _load_buffer(v.a).same_as(store.buffer):
        acc, prod = v.a, v.b
    else:
        acc, prod = v.b, v.a
    if type(prod).__name__ != "Mul":
        return None
    return store, acc, prod.a, prod.b


def _hoist_operand_convert(sch, blk, pack_blk) -> None:
    """When the matmul converts what it loads from the packed copy (bf16/f16 -> f32,
    i8 -> i32), make the copy hold the converted values: the conversion then runs once per
    element while packing, not once per use in the micro-kernel. (`unsafe_set_dtype`
    changes the copy's dtype -- exact for these widening conversions; the matmul's body is
    then rebuilt with a plain load, through ScheduleState.replace.)"""
    buf = sch.get(pack_blk).writes[0].source
    parts = _operand_exprs(sch.get(blk))
    if parts is None:
        return
    _, _, x, y = parts
    for side, e in (("x", x), ("y", y)):
        loads = _loads_in(e)
        if len(loads) == 1 and _load_buffer(loads[0]).same_as(buf):
            break
    else:
        return
    if type(e).__name__ in _LOADS or not _is_conversion_of_load(e):
        return
    target = str(e.ty)
    src = str(buf.dtype)
    widening = (src in ("bfloat16", "float16") and target in ("float32", "float64")) or \
               (src.startswith(("int", "uint")) and target.startswith(("int", "float")) and
                _BITS.get(target, 0) > _BITS.get(src, 64))
    if not widening:
        return
    sch.unsafe_set_dtype(pack_blk, 0, target)
    block = sch.get(blk)
    store, acc, x, y = _operand_exprs(block)
    e = x if side == "x" else y
    (load,) = _loads_in(e)
    if str(_load_buffer(load).dtype) != target:
        raise _Unsupported("the packed copy did not change dtype")
    prod = tvm.tirx.Mul(load, y) if side == "x" else tvm.tirx.Mul(x, load)
    new_store = tvm.tirx.BufferStore(store.buffer, tvm.tirx.Add(acc, prod), store.indices)
    new_block = s_tir.stmt.SBlock(block.iter_vars, block.reads, block.writes, block.name_hint,
                                  new_store, block.init, block.alloc_buffers, block.match_buffers,
                                  block.annotations)
    sch.state.replace(sch.get_sref(blk), new_block, {block: new_block})


# --- matrix-vector products ----------------------------------------------------------------------

def _schedule_gemv(sch, shape: MatmulShape, cfg, target) -> None:
    """M == 1 or N == 1: memory-bound; no packing (the matrix is read once, in place).
    Where the matrix is contiguous along the free dim (x @ W with W[K, N]): parallel column
    blocks of nv vectors, k outside the lanes, the block's partial sums in registers. Where
    it is contiguous along K (x @ W.T, W[N, K]; or A[M, K] @ x): 4 rows at a time, each a
    two-vector accumulation over contiguous K (rfactor), the lanes summed at the end."""
    nb, nm, nn = len(shape.batch), len(shape.m), len(shape.n)
    if len(shape.k) != 1:
        raise _Unsupported("gemv needs one K iterator")
    M, N, K, batch = shape.sizes
    L = lanes(shape.acc, target)
    blk = sch.get_sblock("matmul")
    block = sch.get(blk)
    ivs = list(block.iter_vars)
    # the free side: the long one
    free_is_n = M == 1
    if (free_is_n and nn != 1) or (not free_is_n and nm != 1):
        raise _Unsupported("gemv needs one free iterator")
    free_var = ivs[nb + nm].var.name if free_is_n else ivs[nb].var.name
    F = N if free_is_n else M
    _inline_producers(sch, blk)
    block = sch.get(blk)
    # the matrix operand: the read that uses the free iterator; contiguous along it?
    along_free = False
    for region in block.reads:
        if region.source.name == block.writes[0].source.name or not region.region:
            continue
        if any(free_var in _vars_of(r.min) for r in region.region):
            along_free = free_var in _vars_of(region.region[-1].min)
    loops = sch.get_loops(blk)
    b_loop = loops[0] if nb else None
    m_loop = loops[nb] if nm else None
    n_loop = loops[nb + nm] if nn else None
    k_loop = loops[nb + nm + nn]
    f_loop, other = (n_loop, m_loop) if free_is_n else (m_loop, n_loop)
    pre = [x for x in (b_loop, other) if x is not None]
    if along_free:
        nv = max(1, int(cfg.get("nv") or max(1, 64 // L)))
        nr = nv * L
        while nv > 1 and F % nr:
            nv //= 2
            nr = nv * L
        if F % nr:
            raise _Unsupported("the free dim is not a multiple of the vector width")
        jo, ji = sch.split(f_loop, [F // nr, nr])
        jv, jl = sch.split(ji, [nv, L])
        uk = int(cfg.get("unroll_k") or 1)
        uk = uk if uk > 1 and K % uk == 0 and K > uk else 1
        tail = list(sch.split(k_loop, [K // uk, uk])) if uk > 1 else [k_loop]
        sch.reorder(*pre, jo, *tail, jv, jl)
        par = _fuse(sch, pre + [jo])
        sch.parallel(par)
        sch.vectorize(jl)
        sch.unroll(jv)
        if uk > 1:
            sch.unroll(tail[1])
        sch.decompose_reduction(blk, tail[0])
        _schedule_tile_copy(sch, sch.get_sblock("matmul_init"), None, L)
        anchor = par
    else:
        kl = 2 * L if K % (2 * L) == 0 and K >= 4 * L else L
        rows = 4
        while rows > 1 and F % rows:
            rows //= 2
        if K % kl or K < 2 * kl:
            raise _Unsupported("K is short or not a multiple of the vector width")
        ko, ki = sch.split(k_loop, [K // kl, kl])
        fo, fi = sch.split(f_loop, [F // rows, rows])
        sch.reorder(*pre, fo, ko, fi, ki)
        par = _fuse(sch, pre + [fo])
        sch.parallel(par)
        rf = sch.rfactor(ki, len(ivs) - 1)
        rl = sch.get_loops(rf)
        sch.vectorize(rl[-1])
        sch.unroll(rl[-2])
        rf_name = _block_name(sch, rf)
        sch.decompose_reduction(rf, rl[-3])
        _schedule_tile_copy(sch, sch.get_sblock(rf_name + "_init"), None, L)
        # rfactor left the original loops to the summing block ("matmul"): put it under the
        # rf block's copy of the parallel loop
        blk = sch.get_sblock("matmul")
        anchor = rl[0]
        sch.reverse_compute_at(blk, anchor, preserve_unit_loops=False)
    _fuse_epilogue(sch, blk, anchor, fallback=None, lanes_=L)


# --- anything else -------------------------------------------------------------------------------

def _schedule_simple(sch, shape: MatmulShape, cfg, target) -> None:
    """Correct for anything: prologues inlined, the outer spatial loops parallel, the
    innermost spatial loop vectorized inside the reduction where it divides, epilogues
    after each row."""
    nsp = len(shape.batch) + len(shape.m) + len(shape.n)
    blk = sch.get_sblock("matmul")
    _inline_producers(sch, blk)
    loops = sch.get_loops(blk)
    spatial, red = loops[:nsp], loops[nsp:]
    L = lanes(shape.acc, target)
    anchor = None
    if spatial:
        last = spatial[-1]
        ext = _extent(sch, last) or 1
        vec = None
        if ext % L == 0 and ext >= L and red:
            lo, vec = sch.split(last, [None, L])
            spatial = spatial[:-1] + [lo]
        sch.reorder(*spatial, *red, *([vec] if vec is not None else []))
        par = _fuse(sch, spatial[:max(1, len(spatial) - 1)])
        sch.parallel(par)
        if vec is not None:
            sch.vectorize(vec)
        if red:
            sch.decompose_reduction(blk, red[0])
        anchor = par
    _fuse_epilogue(sch, blk, anchor, lanes_=L)
