"""The CPU matmul cost model (backends/cpu/matmul_model.py) orders configs the way the
schedule's structure says it must. How well it ranks measured times is a benchmark
(benchmarks/tuning_model.py), not a test: timings on these machines are too noisy."""

from __future__ import annotations

import pytest

from xchip.backends.cpu.matmul_model import predict
from xchip.backends.cpu.matmul_schedule import default_matmul_config, matmul_space
from xchip.targets import get

TARGET = get("cpu")


def cfg(M, N, K, **changes):
    return dict(default_matmul_config(M, N, K, 1, "float32", TARGET), **changes)


def test_the_default_register_tile_beats_small_ones():
    M = N = K = 512
    default = predict(M, N, K, 1, "float32", cfg(M, N, K), TARGET)
    one = predict(M, N, K, 1, "float32", cfg(M, N, K, mr=1, nv=1, mc=24), TARGET)
    assert one > 4 * default          # latency-bound single accumulator vs 12 in flight
    assert predict(M, N, K, 1, "float32", cfg(M, N, K, mr=2, nv=2), TARGET) > default


def test_positive_and_finite_over_a_space():
    space = matmul_space(96, 200, 300, 2, "float32", TARGET)
    times = [predict(96, 200, 300, 2, "float32", c, TARGET) for c in list(space)[::50]]
    assert times and all(0 < t < 1 for t in times)


@pytest.mark.skipif(TARGET.compute_units.value < 2, reason="needs a target with two or more cores")
def test_one_column_chunk_leaves_cores_idle():
    # N = 16 is one register panel: split by columns, only one core works
    M, N, K = 1024, 16, 512
    by_rows = predict(M, N, K, 1, "float32", cfg(M, N, K, parallel="m", mc=96), TARGET)
    by_cols = predict(M, N, K, 1, "float32", cfg(M, N, K, parallel="n", mc=96), TARGET)
    assert by_cols > 1.5 * by_rows


def test_unpacked_power_of_two_rows_conflict_in_cache():
    M, N, K = 240, 1024, 1024          # whole register tiles: nothing forces packing
    packed = predict(M, N, K, 1, "float32", cfg(M, N, K, pack_b=True), TARGET)
    unpacked = predict(M, N, K, 1, "float32", cfg(M, N, K, pack_b=False), TARGET)
    assert unpacked > 1.3 * packed


def test_matrix_vector_products_are_memory_bound():
    small = predict(1, 4096, 4096, 1, "float32", cfg(1, 4096, 4096), TARGET)
    assert small > (4096 * 4096 * 4) / (TARGET.memory_bandwidth_gbs.value * 1e9) * 0.5
