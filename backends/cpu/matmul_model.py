"""Modeled time of the packed-GEMM schedule (`matmul_schedule.py`) for one config: what the
autotuner ranks candidates by before it measures them.

    predict(M, N, K, batch, dtype, config, target) -> seconds

The schedule's structure is known, so the model follows it: per core, the register tile's
inner loop runs at the rate its port that saturates first allows; tiles are padded; row
blocks or column chunks are spread over the cores as TVM's parallel loop spreads them; the
operands are packed once; the right operand streams from L3 or memory once per row block.

    micro-kernel cycles per k step = max(mr*nv / FMA pipes,            # throughput
                                         (nv + mr) / load ports,        # B vectors + A broadcasts
                                         FMA latency)                   # each accumulator's chain
                                     + loop overhead / unroll_k
    + per tile and K block: zeroing/storing (or loading and storing) the mr*nv accumulators
    + packing: each packed operand read and written once, by the thread that uses it when
      the schedule fuses it into the parallel loop, else in a parallel loop of its own
    + B traffic per row block from where B lives (L3 if it fits, else memory), overlapped
      with compute (time = max of the two)
    + a fixed cost per call and per parallel region (thread pool wake-up)

The machine's rates: FMA pipes, load ports and FMA latency of current x86 and ARM64 cores
(2, 2, 4 cycles); the per-core FLOP rate from the target's fp32 peak (measured on the host:
what a good BLAS reaches, so the model is pessimistic by the share of the FMA peak that BLAS
misses); cache sizes from the host. Not modeled: TLB misses, hardware-prefetch quality,
frequency changes, the epilogue's cost (the same for every config of a group), and other
jobs on the machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .matmul_schedule import (_BITS, _acc_dtype, _balance, _cache_kb, _cores, _divisors_le, _num_registers,
                              _row_block_balance, _tvm_dtype, lanes)

FMA_PIPES = 2
LOAD_PORTS = 2
FMA_LATENCY = 4                 # cycles
LOOP_OVERHEAD = 1.0             # cycles per iteration of the (unrolled) k loop not hidden by the FMAs
TILE_SETUP = 20                 # cycles to enter a micro-tile (address arithmetic, loop setup)
L2_BYTES_PER_CYCLE = 32
L3_BYTES_PER_CYCLE = 16         # per core
COPY_BYTES_PER_CYCLE = 8        # packing: strided reads, vector writes
CALL_S = 2e-6                   # a kernel call from Python through TVM's packed function
PARALLEL_REGION_S = 4e-6        # waking TVM's thread pool and joining it
DEFAULT_GFLOPS_PER_CORE = 50.0  # when the target has no measured fp32 peak
LINE = 64                       # cache line bytes
WAYS = 8                        # associativity of L1 and L2 on the cores in question


@dataclass(frozen=True)
class Machine:
    cores: int
    lanes: int
    registers: int
    l1_bytes: int
    l2_bytes: int
    l3_bytes: int
    hz: float                   # cycles per second per core, derived from the fp32 peak
    memory_bytes_per_s: float


def machine(dtype: str, target) -> Machine:
    cores = _cores(target)
    L = lanes(dtype, target)
    peak = getattr(target, "peak", None)
    q = peak("fp32") if peak is not None else None
    per_core = (q.value * 1e12 / cores) if q is not None and q.known else DEFAULT_GFLOPS_PER_CORE * 1e9
    # the measured rate is a BLAS's, not the FMA peak: the clock derived from it (FMA pipes x
    # f32 lanes x 2 FLOPs per cycle) is low by the share of the peak that BLAS misses
    f32_lanes = lanes("float32", target)
    hz = per_core / (FMA_PIPES * f32_lanes * 2)
    bw = getattr(target, "memory_bandwidth_gbs", None)
    mem = bw.value * 1e9 if bw is not None and bw.known else 10e9
    return Machine(cores, L, _num_registers(target), _cache_kb(target, 1, 32) * 1024,
                   _cache_kb(target, 2, 512) * 1024, _cache_kb(target, 3, 8192) * 1024, hz, mem)


def predict(M: int, N: int, K: int, batch: int, dtype, config: dict, target) -> float:
    """Modeled seconds of one call of the GEMM [batch] x M x K x N with `config`."""
    m = machine(dtype, target)
    return predict_on(m, M, N, K, batch, dtype, config)


def predict_on(m: Machine, M: int, N: int, K: int, batch: int, dtype, config: dict) -> float:
    M, N, K, batch = max(1, int(M)), max(1, int(N)), max(1, int(K)), max(1, int(batch))
    esize = _BITS.get(_tvm_dtype(dtype), 32) // 8
    acc_size = _BITS.get(_acc_dtype(dtype), 32) // 8
    if M == 1 or N == 1:
        return _predict_gemv(m, M, N, K, batch, esize)
    mr, nv = int(config["mr"]), int(config["nv"])
    L = m.lanes
    nr = nv * L
    tiles_m, tiles_n = -(-M // mr), -(-N // nr)
    kc = int(config.get("kc") or 0)
    if kc <= 0 or kc >= K or K % kc:
        kc = 0
    depth = kc or K
    k_blocks = K // depth
    uk = int(config.get("unroll_k") or 1)
    parallel_n = config.get("parallel", "m") == "n"
    mc_t = max(1, min(tiles_m, int(config.get("mc", mr)) // mr))
    pack_a = bool(config.get("pack_a", True)) or M % mr or N % nr
    pack_b = bool(config.get("pack_b", True)) or M % mr or N % nr

    # --- the micro-kernel, per k step
    fma = mr * nv / FMA_PIPES
    loads = (nv + mr) / LOAD_PORTS
    spill = max(0, mr * nv + nv + 1 - m.registers)      # values that do not fit: a store and a load each
    step = max(fma, loads + spill, FMA_LATENCY) + LOOP_OVERHEAD / max(1, uk)
    # B micro-panel (depth x nr) read by each tile of a row block: from L1 if it stays there,
    # else from L2 (or L3). Packed, it is contiguous; unpacked, each k step's nr values sit in
    # their own cache lines, N values apart, and a power-of-two row stride maps them all to a
    # few cache sets: the panel gets a fraction of the cache.
    if pack_b:
        l1_fit = depth * nr * esize <= m.l1_bytes
        l2_fit = True
        per_step = nr * esize
    else:
        lines = -(-nr * esize // LINE)
        l1_fit = depth * lines <= _set_capacity(N * esize, m.l1_bytes)
        l2_fit = depth * lines <= _set_capacity(N * esize, m.l2_bytes)
        per_step = lines * LINE
    if not l1_fit:
        rate = L2_BYTES_PER_CYCLE if l2_fit else L3_BYTES_PER_CYCLE
        step = max(step, per_step / rate + (0 if pack_b else fma))
    # A block (mc x depth) is re-read for every column panel: from L2 if it fits, else L3
    a_rows = tiles_m * mr if parallel_n else mc_t * mr
    if a_rows * depth * esize > m.l2_bytes // 2:
        step = max(step, mr * esize / L3_BYTES_PER_CYCLE + fma)
    # accumulators: zeroed and stored once per tile (kc = 0), else loaded and stored per K block
    tile_cycles = TILE_SETUP + mr * nv * (1 if not kc else 2)
    tile = depth * step + tile_cycles

    # --- work per task, spread over the cores as TVM's parallel loop spreads it
    tile_count = batch * tiles_m * tiles_n * k_blocks
    compute_cycles = tile_count * tile
    if parallel_n:
        chunks = _divisors_le(tiles_n, m.cores)
        balance = _balance(batch * chunks, m.cores)
    else:
        balance = _row_block_balance(tiles_m, mc_t, batch, m.cores)
    busy = min(m.cores, batch * (chunks if parallel_n else -(-tiles_m // mc_t)))
    compute_s = compute_cycles / (m.cores * balance) / m.hz

    # --- packing: read + write each packed operand once
    regions = 1
    pack_s = 0.0
    a_bytes = batch * tiles_m * mr * K * esize
    b_bytes = batch * tiles_n * nr * K * esize
    for packed, nbytes, owned in ((pack_a, a_bytes, not parallel_n), (pack_b, b_bytes, parallel_n)):
        if not packed:
            continue
        cycles = 2 * nbytes / COPY_BYTES_PER_CYCLE
        pack_s += cycles / (busy if owned else m.cores) / m.hz
        if not owned:
            regions += 1

    # --- B (and, column-parallel, A) streamed from where it lives, overlapped with compute
    b_total = batch * K * N * esize
    source_bw = m.memory_bytes_per_s if b_total + batch * M * K * esize > m.l3_bytes // 2 else \
        L3_BYTES_PER_CYCLE * m.hz * m.cores
    row_blocks = batch * -(-tiles_m // mc_t)
    streamed = (row_blocks * K * tiles_n * nr * esize) if not parallel_n else b_total
    stream_s = streamed / source_bw
    out_s = batch * M * N * acc_size / m.memory_bytes_per_s if batch * M * N * acc_size > m.l3_bytes // 2 else 0.0
    return CALL_S + regions * PARALLEL_REGION_S + pack_s + max(compute_s, stream_s + out_s)


def _set_capacity(stride_bytes: int, cache_bytes: int) -> int:
    """Cache lines a sequence of accesses `stride_bytes` apart can occupy in a WAYS-way cache:
    only the sets the stride reaches."""
    sets = max(1, cache_bytes // (LINE * WAYS))
    if stride_bytes % LINE:
        return sets * WAYS
    return sets // math.gcd(stride_bytes // LINE, sets) * WAYS


def _predict_gemv(m: Machine, M: int, N: int, K: int, batch: int, esize: int) -> float:
    """Matrix-vector products are memory bound: the matrix streams once."""
    nbytes = batch * (M * K + K * N + M * N) * esize
    bw = m.memory_bytes_per_s if nbytes > m.l3_bytes // 2 else L3_BYTES_PER_CYCLE * m.hz * m.cores
    flops = 2 * batch * M * N * K
    return CALL_S + PARALLEL_REGION_S + max(nbytes / bw, flops / (m.cores * m.hz * FMA_PIPES * m.lanes * 2))
