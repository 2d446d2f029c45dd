"""Host CPU detection, the micro-benchmark's cache, and the `cpu` target built from them."""

import dataclasses
import json
import platform

import pytest

from xchip.targets import host

FAKE = host.HostMeasurement(fp32_gflops=200.0, fp64_gflops=100.0, memory_gbs=30.0, call_overhead_us=0.5,
                            measured_at="2025-01-01T00:00:00", numpy_version="test", method="fake")


@pytest.fixture
def counted_benchmark(monkeypatch, tmp_path):
    """A temporary cache directory and a benchmark stub that counts its runs."""
    monkeypatch.setenv("XCHIP_CACHE_DIR", str(tmp_path))
    runs = []

    def fake_benchmark(info, budget_s=1.2):
        runs.append(info)
        return FAKE

    monkeypatch.setattr(host, "run_benchmark", fake_benchmark)
    return runs


def test_detection_fields():
    info = host.detect()
    assert info.logical_cpus >= 1
    assert info.model and info.vendor and info.machine == (platform.machine() or "unknown")
    assert isinstance(info.flags, tuple)
    assert set(info.isa_extensions) <= set(info.flags)
    if platform.system() == "Linux":
        assert info.memory_gb and info.memory_gb > 0
        assert info.caches and all(c.size_kb > 0 and c.level >= 1 for c in info.caches)
        assert info.cache(1) is not None
    if "avx2" in info.flags:
        assert info.vector_bits in (256, 512)


def test_fingerprint_follows_what_moves_the_numbers():
    info = host.detect()
    base = host.fingerprint(info, "2.0")
    assert host.fingerprint(info, "2.0") == base
    assert host.fingerprint(info, "2.1") != base
    assert host.fingerprint(dataclasses.replace(info, model="Other CPU"), "2.0") != base
    assert host.fingerprint(dataclasses.replace(info, logical_cpus=info.logical_cpus + 1), "2.0") != base
    assert host.fingerprint(dataclasses.replace(info, flags=info.flags + ("zz_new",)), "2.0") != base


def test_second_call_hits_the_cache(counted_benchmark, tmp_path):
    info = host.detect()
    first = host.measure(info)
    second = host.measure(info)
    assert first == second == FAKE
    assert len(counted_benchmark) == 1
    (entry,) = tmp_path.glob("host-*.json")
    record = json.loads(entry.read_text())
    assert record["fingerprint"] == host.fingerprint(info)
    assert record["host"]["model"] == info.model
    assert record["measurement"]["fp32_gflops"] == 200.0


def test_a_new_fingerprint_measures_again(counted_benchmark, tmp_path):
    info = host.detect()
    host.measure(info)
    host.measure(dataclasses.replace(info, model="A different CPU"))
    assert len(counted_benchmark) == 2
    assert len(list(tmp_path.glob("host-*.json"))) == 2
    host.measure(info, refresh=True)
    assert len(counted_benchmark) == 3


def test_an_implausible_cached_peak_is_measured_again(counted_benchmark, tmp_path):
    info = host.detect()
    host.measure(info)
    (entry,) = tmp_path.glob("host-*.json")
    record = json.loads(entry.read_text())
    record["measurement"].update(fp32_gflops=13.0, fp64_gflops=24.0)    # f32 below f64: polluted
    entry.write_text(json.dumps(record))
    assert host.measure(info) == FAKE
    assert len(counted_benchmark) == 2


def test_a_blas_thread_limit_in_this_process_is_not_measured_as_the_machine(counted_benchmark, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    fresh = []
    monkeypatch.setattr(host.subprocess, "run", lambda argv, env, **kw: fresh.append(env) or
                        type("Done", (), {"returncode": 0, "stdout": json.dumps(dataclasses.asdict(FAKE)),
                                          "stderr": ""})())
    assert host.measure(host.detect()) == FAKE
    assert not counted_benchmark and len(fresh) == 1           # measured in a fresh interpreter...
    assert "OPENBLAS_NUM_THREADS" not in fresh[0]              # ...without the limit


def test_a_corrupt_cache_entry_is_measured_again(counted_benchmark, tmp_path):
    info = host.detect()
    (tmp_path / f"host-{host.fingerprint(info)}.json").write_text("{not json")
    assert host.measure(info) == FAKE
    assert len(counted_benchmark) == 1


def test_the_real_benchmark_in_short():
    info = host.detect()
    m = host.run_benchmark(info, budget_s=0.2)
    assert m.fp32_gflops > 0 and m.fp64_gflops > 0 and m.memory_gbs > 0 and m.call_overhead_us > 0
    assert "matmul" in m.method and m.numpy_version


def test_cpu_target_from_detection_and_measurement():
    info = host.detect()
    t = host.host_target(info, FAKE)
    assert t.name == "cpu" and t.backend == "cpu" and t.verification_level == "executed"
    assert t.peak("fp32").value == pytest.approx(0.2) and t.peak("fp32").confidence == "measured"
    assert t.peak("fp64").value == pytest.approx(0.1)
    assert t.memory_bandwidth_gbs.value == 30.0
    assert t.launch_overhead_us.value == 0.5
    assert t.compute_units.value == info.logical_cpus
    assert t.peak("bf16").status == "unknown" and t.computes_as["bf16"] == "f32"
    assert t.capabilities.vector_bits == info.vector_bits and t.capabilities.onchip_bytes is None
    assert "fake" in t.sources["measured"]
    for path, q in t.quantities():
        if q.known:
            assert q.sources and all(s in t.sources for s in q.sources), path
