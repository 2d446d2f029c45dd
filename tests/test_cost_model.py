"""The cost model on hand-computed cases. Kernel groups are built by hand (one dot_general,
one add, ...), independent of fusion."""

import math

import pytest

from xchip.ir import Graph, Region, TensorType, ops
from xchip.ir.kernel_graph import KernelGraph, KernelGroup
from xchip.passes import PassOptions, optimize
from xchip.targets import (LinkModel, collective_time, estimate_kernel, estimate_kernel_graph, format_estimate, get,
                           host, link_model)


def gemm(m, n, k, dtype="bf16", gid=0):
    body = Region([TensorType((m, k), dtype), TensorType((k, n), dtype)])
    a, b = body.args
    dot = body.append(ops.make("dot_general", [a, b], {"lhs_contracting_dimensions": (1,),
                                                       "rhs_contracting_dimensions": (0,)}))
    body.append(ops.make("return", [dot.result], result_types=[]))
    return KernelGroup(gid, "matmul", [dot], [a, b], [dot.result], anchor=dot)


def add(shape, dtype="f32"):
    body = Region([TensorType(shape, dtype), TensorType(shape, dtype)])
    a, b = body.args
    op = body.append(ops.make("add", [a, b]))
    body.append(ops.make("return", [op.result], result_types=[]))
    return KernelGroup(0, "elementwise", [op], [a, b], [op.result], anchor=op)


H800, H20 = 989.4e12, 148e12          # bf16 dense FLOP/s
H800_BW, H20_BW = 3350e9, 4000e9      # bytes/s


def test_large_gemm_is_compute_bound_on_both():
    n = 8192
    flops, nbytes = 2 * n ** 3, 3 * n * n * 2
    on_h800, on_h20 = estimate_kernel(gemm(n, n, n), get("h800")), estimate_kernel(gemm(n, n, n), get("h20"))
    assert on_h800.compute_s == pytest.approx(flops / H800) and on_h20.compute_s == pytest.approx(flops / H20)
    assert on_h800.memory_s == pytest.approx(nbytes / H800_BW) and on_h20.memory_s == pytest.approx(nbytes / H20_BW)
    assert on_h800.bound == on_h20.bound == "compute"
    assert on_h20.time_s / on_h800.time_s == pytest.approx(989.4 / 148)


def test_a_gemm_between_the_ridge_points_flips():
    # 256 x 8192 x 8192 bf16: intensity 2*256*8192^2 / ((256*8192*2 + 8192^2) * 2 B) = 241 FLOP/B,
    # below the H800's ridge (295) and above the H20's (37).
    m, n, k = 256, 8192, 8192
    flops, nbytes = 2 * m * n * k, (m * k + k * n + m * n) * 2
    assert 37 < flops / nbytes < 295
    on_h800, on_h20 = estimate_kernel(gemm(m, n, k), get("h800")), estimate_kernel(gemm(m, n, k), get("h20"))
    assert on_h800.bound == "memory" and on_h800.time_s == pytest.approx(nbytes / H800_BW)
    assert on_h20.bound == "compute" and on_h20.time_s == pytest.approx(flops / H20)


def test_memory_bound_elementwise():
    group = add((4096, 4096))
    e = estimate_kernel(group, get("h800"))
    nbytes = 3 * 4096 * 4096 * 4
    assert e.bytes == nbytes
    assert e.memory_s == pytest.approx(nbytes / H800_BW)
    assert e.compute_s == pytest.approx(4096 * 4096 / 66.9e12)    # vector FP32 rate, not tensor cores
    assert e.bound == "memory"
    # No launch overhead in the H800's descriptor: the model says so and calls the time a lower bound.
    assert e.lower_bound and "launch_overhead_us" in e.missing
    assert any("launch_overhead_us is unknown" in n for n in e.notes)


def test_launch_overhead_when_known():
    target = get("h800").with_values(launch_overhead_us=5.0)
    e = estimate_kernel(add((8, 8)), target)
    assert e.launch_s == pytest.approx(5e-6) and e.bound == "launch"
    assert e.time_s == pytest.approx(e.memory_s + 5e-6) and not e.lower_bound


# Warp 32 vs 64: tile 128x128x32, 2 stages of bf16 = 32 KiB of shared memory (7 per SM in 228 KiB);
# 4 warps x 128 registers: 32-wide warps need 64 KiB (4 per SM in 256 KiB), 64-wide ones 128 KiB (2 per SM).
# 25 x 24 = 600 tiles on 132 SMs: 528 slots -> 2 waves (600/1056 busy), 264 slots -> 3 waves (600/792).
WAVE_CONFIG = {"tile_m": 128, "tile_n": 128, "tile_k": 32, "stages": 2, "num_warps": 4, "registers_per_thread": 128}


@pytest.mark.parametrize("warp, occupancy, waves", [(32, 4, 2), (64, 2, 3)])
def test_wave_quantization_with_warp_32_and_64(warp, occupancy, waves):
    target = get("h800").with_values(warp_size=warp)
    m, n, k = 128 * 25, 128 * 24, 4096
    e = estimate_kernel(gemm(m, n, k), target, WAVE_CONFIG)
    slots = 132 * occupancy
    assert e.details["onchip_bytes"] == 32 * 1024
    assert e.details["threads_per_tile"] == 4 * warp
    assert (e.details["tiles"], e.details["occupancy"], e.details["slots"], e.details["waves"]) == \
        (600, occupancy, slots, waves)
    efficiency = 600 / (waves * slots)
    assert e.details["wave_efficiency"] == pytest.approx(efficiency)
    assert e.compute_s == pytest.approx(2 * m * n * k / (H800 * efficiency))


def test_padding_of_partial_tiles():
    # 100 rows in one 128-row tile; 132 tiles of 16 KiB (one stage) with 14 resident per SM: one wave.
    e = estimate_kernel(gemm(100, 128 * 132, 1024), get("h800"),
                        {"tile_m": 128, "tile_n": 128, "tile_k": 32})
    assert e.details["padding_efficiency"] == pytest.approx(100 / 128)
    assert e.details["occupancy"] == 14 and e.details["waves"] == 1
    assert e.details["wave_efficiency"] == pytest.approx(132 / (132 * 14))
    assert e.compute_s == pytest.approx(2 * 100 * 128 * 132 * 1024 / (H800 * 100 / 128 / 14))


def test_a_tile_that_does_not_fit_is_rejected_with_the_reason():
    config = {"tile_m": 128, "tile_n": 256, "tile_k": 64, "stages": 4}   # 4 x (16 + 32) KiB = 192 KiB
    assert estimate_kernel(gemm(4096, 4096, 4096), get("h800"), config).legal       # 228 KiB per SM
    e = estimate_kernel(gemm(4096, 4096, 4096), get("a800"), config)                # 164 KiB per SM
    assert not e.legal and e.bound == "illegal" and e.time_s is None
    assert e.reason == "tile 128x256x64 with 4 stage(s) needs 192.0 KiB of shared memory per SM; a800 has 164 KiB"


def test_registers_can_make_a_tile_illegal():
    config = {"tile_m": 64, "tile_n": 64, "tile_k": 32, "num_warps": 16, "registers_per_thread": 255}
    e = estimate_kernel(gemm(1024, 1024, 1024), get("h800").with_values(warp_size=64), config)
    assert not e.legal and "registers" in e.reason


def test_ascend_checks_matmul_tiles_against_l1_not_ub():
    config = {"tile_m": 256, "tile_n": 256, "tile_k": 128, "stages": 2}     # 256 KiB: > UB 192, < L1 512
    e = estimate_kernel(gemm(4096, 4096, 4096), get("ascend910b3"), config)
    assert e.legal and e.details["onchip_bytes"] == 256 * 1024
    # One tile per AI Cube core (no SIMT occupancy): 256 tiles on 20 cores = 13 waves.
    assert e.details["occupancy"] == 1 and e.details["waves"] == math.ceil(256 / 20)
    e = estimate_kernel(gemm(4096, 4096, 4096), get("ascend910b3"), dict(config, stages=5))
    assert not e.legal and "L1 per AI Cube core" in e.reason


def test_l2_decides_re_reads():
    # 8192 x 8192 bf16 operands are 128 MiB each, larger than the H800's 50 MB L2: the left one is
    # re-read once per tile column, the right one once per tile row.
    n = 8192
    e = estimate_kernel(gemm(n, n, n), get("h800"), {"tile_m": 128, "tile_n": 256, "tile_k": 64, "stages": 3})
    operand = n * n * 2
    assert e.details["extra_bytes"] == (n // 256 - 1) * operand + (n // 128 - 1) * operand
    # 1024^3 operands (2 MiB) fit: each is read once.
    e = estimate_kernel(gemm(1024, 1024, 1024), get("h800"), {"tile_m": 128, "tile_n": 128, "tile_k": 64})
    assert e.details["extra_bytes"] == 0


def test_a_null_field_yields_a_note_not_a_number():
    # Hygon publishes neither peak FLOPS nor bandwidth for the K100.
    e = estimate_kernel(gemm(1024, 1024, 1024), get("dcu-k100"))
    assert e.compute_s is None and e.memory_s is None and e.time_s is None and e.bound == "unknown"
    assert {"peak_tflops.bf16", "memory_bandwidth_gbs"} <= set(e.missing)
    assert any("peak_tflops.bf16 is unknown: not published" in n for n in e.notes)
    # The Kunlun R200 has an FP16 peak but no bandwidth: compute is modeled, the rest is a lower bound.
    e = estimate_kernel(gemm(1024, 1024, 1024, "f16"), get("kunlun-r200"))
    assert e.compute_s == pytest.approx(2 * 1024 ** 3 / 128e12) and e.memory_s is None
    assert e.time_s == e.compute_s and e.lower_bound and e.bound == "unknown"
    assert "memory_bandwidth_gbs" in e.missing


def test_a_peak_for_the_wrong_unit_is_not_used():
    # The BR100's FP32 figure is a tensor-path number: elementwise work has no vector peak.
    e = estimate_kernel(add((1024, 1024)), get("biren-br100"))
    assert e.compute_s is None and "peak_tflops.fp32 (vector)" in e.missing
    assert e.memory_s == pytest.approx(3 * 1024 * 1024 * 4 / 1640e9)


def test_unsupported_dtype_and_promoted_dtype():
    e = estimate_kernel(gemm(512, 512, 512, "f8e4m3fn"), get("a100"))
    assert e.compute_s is None and any("fp8 is not supported" in n for n in e.notes)
    cpu = host.host_target(measurement=host.HostMeasurement(200.0, 100.0, 30.0, 0.5, "2025-01-01", "test", "fake"))
    e = estimate_kernel(gemm(512, 512, 512, "bf16"), cpu)
    assert e.compute_s == pytest.approx(2 * 512 ** 3 / 200e9)
    assert any("bf16 is computed as f32" in n for n in e.notes)


def test_units_unknown_skip_wave_quantization_and_say_so():
    e = estimate_kernel(gemm(1024, 1024, 1024), get("l2"), {"tile_m": 128, "tile_n": 128, "tile_k": 32})
    assert "compute_units" in e.missing and "l2_mb" in e.missing and e.lower_bound


# Collectives: 1 GB over the H800's links as DeepSeek-V3 measured them (160 GB/s NVLink, 50 GB/s IB).
GB = 10 ** 9


def test_collectives_use_the_deepseek_effective_bandwidths():
    h800 = get("h800")
    ring = collective_time("all-reduce", GB, 8, h800)
    assert ring.transfer_s == pytest.approx(2 * 7 / 8 * GB / 160e9)      # 10.9 ms, not the nominal 400's
    assert ring.time_s == ring.transfer_s and ring.lower_bound             # latency unknown: left out
    assert any("latency_us is unknown" in n for n in ring.notes)
    tree = collective_time("all-reduce", GB, 8, h800, algorithm="tree")
    assert tree.transfer_s == pytest.approx(2 * 3 * GB / 160e9)
    inter = collective_time("all-reduce", GB, 16, h800, scope="inter-node")
    assert inter.transfer_s == pytest.approx(2 * 15 / 16 * GB / 50e9)
    gather = collective_time("all-gather", GB, 8, h800)
    assert gather.transfer_s == pytest.approx(7 / 8 * GB / 160e9)
    assert collective_time("reduce-scatter", GB, 8, h800).transfer_s == pytest.approx(gather.transfer_s)
    assert collective_time("all-to-all", GB, 8, h800).transfer_s == pytest.approx(gather.transfer_s)
    too_many = collective_time("all-reduce", GB, 16, h800)
    assert any("exceed the 8 per node" in n for n in too_many.notes)


def test_collectives_with_latency():
    link = LinkModel("test link", bandwidth_gbs=100.0, latency_us=10.0)
    ring = collective_time("all-reduce", GB, 4, link)
    assert ring.time_s == pytest.approx(2 * 3 * 10e-6 + 2 * 3 / 4 * GB / 100e9) and not ring.lower_bound
    tree = collective_time("all-gather", GB, 8, link, algorithm="tree")
    assert tree.time_s == pytest.approx(3 * 10e-6 + 7 / 8 * GB / 100e9)
    assert collective_time("all-reduce", GB, 1, link).time_s == 0
    with pytest.raises(ValueError, match="no tree"):
        collective_time("all-to-all", GB, 8, link, algorithm="tree")


def test_collectives_without_effective_or_any_bandwidth():
    h20 = link_model(get("h20"))
    assert h20.bandwidth_gbs == 450 and "interconnect.effective_gbs" in h20.missing    # nominal 900 bidirectional
    assert collective_time("all-gather", GB, 8, get("h20")).lower_bound
    l20 = collective_time("all-reduce", GB, 4, get("l20"))
    assert l20.time_s is None and any("has no bandwidth" in n for n in l20.notes)
    p800 = collective_time("all-reduce", GB, 4, get("kunlun-p800"))
    assert p800.time_s is None and "interconnect.nominal_gbs" in p800.missing


def test_estimate_kernel_graph_and_its_table():
    body = Region([TensorType((256, 8192), "bf16"), TensorType((8192, 8192), "bf16")])
    a, b = body.args
    dot = body.append(ops.make("dot_general", [a, b], {"lhs_contracting_dimensions": (1,),
                                                       "rhs_contracting_dimensions": (0,)}))
    out = body.append(ops.make("add", [dot.result, dot.result]))
    body.append(ops.make("return", [out.result], result_types=[]))
    graph = Graph("main", body)
    per_op = estimate_kernel_graph(optimize(graph, PassOptions(level="O0")).kernel_graph, "h20")
    assert [k.group for k in per_op.kernels] == ["matmul_0", "elementwise_1"]
    assert [k.bound for k in per_op.kernels] == ["compute", "memory"]
    assert per_op.total_s == pytest.approx(sum(k.time_s for k in per_op.kernels)) and per_op.lower_bound
    fused = KernelGraph(graph, [KernelGroup(0, "matmul", [dot, out], [a, b], [out.result], anchor=dot)])
    configs = {"matmul_0": {"tile_m": 512, "tile_n": 512, "tile_k": 64, "stages": 4}}
    illegal = estimate_kernel_graph(fused, "h20", configs)
    assert not illegal.legal and illegal.total_s is None
    text = format_estimate(per_op)
    assert text.startswith("modeled timings on h20 (cost model, not measured")
    assert "matmul_0" in text and "compute" in text and ">=" in text
    assert "h20: launch_overhead_us is unknown" in text
