"""Target descriptors: every target loads, names and aliases resolve, known facts from
shared/research/chips.md hold, every number carries a source, and the CLI prints them."""

import argparse
import json
import tomllib
from importlib import resources

import pytest

from xchip.errors import TargetError
from xchip.targets import (PEAK_KEYS, Capabilities, DescriptorError, all_targets, capabilities_of, get, host,
                           names, registry)
from xchip.targets.commands import register
from xchip.targets.loader import parse_descriptor
from xchip.targets.quantity import CONFIDENCES

ISSUE_NAMES = ("cpu", "a100", "a800", "h100-sxm", "h800-sxm", "h800-pcie", "h20", "l20", "l2", "h200",
               "ascend910b", "ascend910b2", "ascend910b3", "ascend910c", "mlu370-x8", "mlu590", "dcu-z100",
               "dcu-k100", "kunlun-r200", "kunlun-p800", "mtt-s4000", "iluvatar-bi-v150", "metax-c500",
               "biren-br100")

FAKE_MEASUREMENT = host.HostMeasurement(fp32_gflops=200.0, fp64_gflops=100.0, memory_gbs=30.0,
                                        call_overhead_us=0.5, measured_at="2025-01-01T00:00:00",
                                        numpy_version="test", method="fake numbers for tests")


@pytest.fixture(autouse=True, scope="module")
def host_from_a_prepared_cache(tmp_path_factory):
    """`get("cpu")` reads a cache entry written here, so these tests never run the benchmark."""
    cache = tmp_path_factory.mktemp("xchip-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("XCHIP_CACHE_DIR", str(cache))
    info = host.detect()
    record = {"fingerprint": host.fingerprint(info), "measurement": FAKE_MEASUREMENT.__dict__}
    (cache / f"host-{host.fingerprint(info)}.json").write_text(json.dumps(record))
    mp.setattr(host, "run_benchmark", lambda *a, **k: pytest.fail("benchmark ran despite the cache"))
    registry._host_target.cache_clear()
    yield
    registry._host_target.cache_clear()
    mp.undo()


def test_every_listed_target_loads():
    assert set(ISSUE_NAMES) <= set(names())
    assert names()[0] == "cpu"
    for target in all_targets():
        assert target.name in names()
        caps = target.capabilities
        assert isinstance(caps, Capabilities) and caps.name == target.name
        assert set(caps.matmul_dtypes) <= set(caps.dtypes)
        assert set(target.peak_tflops) == set(PEAK_KEYS)


def test_verification_levels_are_honest():
    assert get("cpu").verification_level == "executed"
    # kunpeng920: the CPU backend's kernels, cross-compiled, run under qemu-aarch64 (tests/test_cpu_arm64.py)
    assert get("kunpeng920").verification_level == "emulated"
    from xchip.backends.triton.program import GPU_TARGETS, HYGON_TARGETS
    levels = {t.name: t.verification_level for t in all_targets(include_host=False)}
    # what the Triton backend compiles (tests/test_triton_kernels.py) and emulates, or only writes
    assert {n for n, level in levels.items() if level == "compiled + emulated"} == set(GPU_TARGETS)
    assert {n for n, level in levels.items() if level == "emitted"} == set(HYGON_TARGETS)
    assert {level for n, level in levels.items()
            if n not in GPU_TARGETS and n not in HYGON_TARGETS and n != "kunpeng920"} == {"none"}


@pytest.mark.parametrize("alias, canonical", [
    ("h800", "h800-sxm"), ("H800", "h800-sxm"), ("h800_sxm", "h800-sxm"), ("h100", "h100-sxm"),
    ("910b3", "ascend910b3"), ("host", "cpu"), ("BI150", "iluvatar-bi-v150"), ("mlu370", "mlu370-x8"),
])
def test_aliases(alias, canonical):
    assert get(alias).name == canonical


@pytest.mark.parametrize("wrong, expected", [("h2o", "h20"), ("h8000", "h800"), ("ascend910", "ascend910b"),
                                              ("mlu-590", "mlu590"), ("a8OO", "a800")])
def test_unknown_names_list_the_closest(wrong, expected):
    with pytest.raises(TargetError) as e:
        get(wrong)
    message = str(e.value)
    assert f"unknown target '{wrong}'" in message
    closest = message.split("closest:")[1].split(".")[0]
    assert expected in closest


def _value(name, path):
    target = get(name)
    q = dict(target.quantities())[path]
    return q.value


# (target, field, value) straight from shared/research/chips.md.
KNOWN_FACTS = [
    ("a100", "peak_tflops.bf16", 312), ("a100", "interconnect.nominal_gbs", 600), ("a100", "compute_units", 108),
    ("a800", "interconnect.nominal_gbs", 400), ("a800", "memory_bandwidth_gbs", 2039), ("a800", "onchip_kb", 164),
    ("h100-sxm", "peak_tflops.bf16", 989.4), ("h100-sxm", "interconnect.nominal_gbs", 900),
    ("h800-sxm", "peak_tflops.fp64", 1), ("h800-sxm", "interconnect.nominal_gbs", 400),
    ("h800-sxm", "interconnect.effective_gbs", 160), ("h800-sxm", "scale_out.effective_gbs", 50),
    ("h800-sxm", "compute_units", 132), ("h800-pcie", "compute_units", 114), ("h800-pcie", "peak_tflops.bf16", 756),
    ("h20", "peak_tflops.bf16", 148), ("h20", "memory_bandwidth_gbs", 4000), ("h20", "compute_units", 78),
    ("h20", "memory_gb", 96), ("h20", "interconnect.nominal_gbs", 900),
    ("l20", "peak_tflops.bf16", 119.5), ("l20", "memory_bandwidth_gbs", 864), ("l20", "onchip_kb", 100),
    ("l2", "peak_tflops.bf16", 96.5), ("l2", "memory_bandwidth_gbs", 300),
    ("h200", "memory_bandwidth_gbs", 4800), ("h200", "memory_gb", 141), ("h200", "peak_tflops.bf16", 989.4),
    ("ascend910b", "peak_tflops.bf16", 313), ("ascend910b", "onchip_kb", 192), ("ascend910b", "l2_mb", 192),
    ("ascend910b", "onchip_other.L1 per AI Cube core", 512), ("ascend910b2", "compute_units", 24),
    ("ascend910b2", "vector_units", 48), ("ascend910b3", "compute_units", 20), ("ascend910b3", "peak_tflops.bf16", 313),
    ("ascend910b3", "memory_bandwidth_gbs", 1600), ("ascend910c", "peak_tflops.bf16", 752),
    ("ascend910c", "memory_bandwidth_gbs", 3200), ("mlu370-x8", "memory_bandwidth_gbs", 614.4),
    ("mlu370-x8", "onchip_kb", 640), ("mlu370-x8", "peak_tflops.bf16", 96), ("mlu590", "memory_bandwidth_gbs", 2764.8),
    ("mlu590", "onchip_kb", 320), ("mlu590", "compute_units", 48), ("dcu-z100", "warp_size", 64),
    ("dcu-k100", "warp_size", 64), ("dcu-k100-ai", "memory_gb", 64), ("kunlun-r200", "peak_tflops.fp16", 128),
    ("kunlun-p800", "memory_gb", 96), ("mtt-s4000", "peak_tflops.bf16", 100), ("mtt-s4000", "memory_bandwidth_gbs", 768),
    ("mtt-s4000", "interconnect.nominal_gbs", 240), ("iluvatar-bi-v150", "peak_tflops.bf16", 192),
    ("iluvatar-bi-v150", "tdp_w", 350), ("metax-c500", "warp_size", 64), ("metax-c500", "memory_bandwidth_gbs", 1800),
    ("biren-br100", "peak_tflops.bf16", 1024), ("biren-br100", "interconnect.nominal_gbs", 512),
]


@pytest.mark.parametrize("name, path, value", KNOWN_FACTS)
def test_known_facts(name, path, value):
    assert _value(name, path) == value


# chips.md says null (no usable source): the descriptors must not carry a number.
KNOWN_NULLS = [
    ("l2", "compute_units"), ("l2", "l2_mb"), ("l2", "peak_tflops.fp32"), ("l20", "peak_tflops.fp64"),
    ("ascend910b", "peak_tflops.fp32"), ("ascend910b", "peak_tflops.int8"), ("mlu590", "peak_tflops.bf16"),
    ("dcu-z100", "memory_bandwidth_gbs"), ("dcu-k100", "peak_tflops.fp16"), ("kunlun-r200", "memory_bandwidth_gbs"),
    ("kunlun-r200", "interconnect.nominal_gbs"), ("kunlun-p800", "peak_tflops.bf16"), ("metax-c500", "peak_tflops.bf16"),
    ("iluvatar-bi-v150", "memory_bandwidth_gbs"), ("biren-br100", "peak_tflops.fp16"), ("mtt-s4000", "compute_units"),
]


@pytest.mark.parametrize("name, path", KNOWN_NULLS)
def test_unknowns_stay_null(name, path):
    q = dict(get(name).quantities())[path]
    assert q.value is None and q.status == "unknown"


def test_a800_is_an_a100_with_a_slower_link():
    a100, a800 = get("a100"), get("a800")
    for key in PEAK_KEYS:
        assert a800.peak(key).value == a100.peak(key).value, key
    assert a800.memory_bandwidth_gbs.value == a100.memory_bandwidth_gbs.value
    assert (a800.interconnect.nominal_gbs.value, a100.interconnect.nominal_gbs.value) == (400, 600)


def test_unsupported_is_not_unknown():
    assert get("a100").peak("fp8").status == "unsupported"
    assert get("ascend910b").peak("fp64").status == "unsupported"
    assert "f8e4m3fn" not in get("a100").capabilities.dtypes
    assert "f8e4m3fn" in get("h800").capabilities.matmul_dtypes


def test_ridge_points():
    assert round(get("h20").ridge_point("bf16")) == 37
    assert round(get("h800").ridge_point("bf16")) == 295
    assert get("mlu590").ridge_point("bf16") is None


def test_every_number_has_a_source():
    for target in all_targets():
        for path, q in target.quantities():
            where = f"{target.name}.{path}"
            if q.status in ("known", "unsupported"):
                assert q.sources, where
                assert all(s in target.sources for s in q.sources), where
                assert q.confidence in CONFIDENCES, where
            else:
                assert q.value is None, where
        assert target.dtypes_sources and all(s in target.sources for s in target.dtypes_sources)


def test_derived_numbers_say_so():
    units = get("ascend910c").compute_units
    assert units.value == 48 and "2 dies" in units.derived


def test_a_number_without_a_source_is_refused():
    raw = tomllib.loads((resources.files("xchip.targets") / "data" / "h20.toml").read_text())
    parse_descriptor(raw, "h20")   # as shipped: fine
    del raw["peak_tflops"]["bf16"]["source"]
    with pytest.raises(DescriptorError, match="peak_tflops.bf16: a known fact needs a source"):
        parse_descriptor(raw, "h20")
    raw = tomllib.loads((resources.files("xchip.targets") / "data" / "h20.toml").read_text())
    del raw["peak_tflops"]["fp8"]
    with pytest.raises(DescriptorError, match="must state every one"):
        parse_descriptor(raw, "h20")


def test_capabilities_for_passes():
    caps = capabilities_of("metax-c500")
    assert caps.warp_size == 64 and caps.onchip_bytes == 64 * 1024
    assert capabilities_of("h800").tile_multiple == 16
    assert capabilities_of("cpu").warp_size is None


def _run(argv, capsys):
    parser = argparse.ArgumentParser(prog="xchip")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(argv)
    assert ns.handler(ns) == 0
    return capsys.readouterr().out


def test_cli_table(capsys):
    out = _run(["targets"], capsys)
    header = out.splitlines()[0].split()
    assert header[:3] == ["name", "vendor", "arch"] and "level" in header
    for name in ISSUE_NAMES:
        assert f"\n{name} " in out or out.startswith(name)
    h20 = next(line for line in out.splitlines() if line.startswith("h20 "))
    assert "148" in h20 and "4000" in h20 and "nvidia" in h20 and h20.endswith("compiled + emulated")
    h800 = next(line for line in out.splitlines() if line.startswith("h800-sxm "))
    assert "400 GB/s (eff. 160)" in h800
    assert "executed" in next(line for line in out.splitlines() if line.startswith("cpu "))


def test_cli_show(capsys):
    out = _run(["targets", "show", "h20"], capsys)
    assert out.startswith("h20: NVIDIA H20")
    assert "peak bf16" in out and "148" in out and "tomshardware" in out
    assert "ridge point (FLOP/byte)" in out and "bf16 37" in out
    assert "https://www.tomshardware.com/" in out


def test_cli_compare(capsys):
    out = _run(["targets", "compare", "h800", "h20", "a800"], capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["h800-sxm", "h20", "a800"]
    ridge = next(line for line in lines if line.startswith("ridge bf16"))
    assert ridge.split()[-3:] == ["295", "37", "153"]
    assert next(line for line in lines if line.startswith("link effective")).split()[-3:] == ["160", "?", "?"]


def test_cli_unknown_name_is_a_target_error(capsys):
    parser = argparse.ArgumentParser(prog="xchip")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["targets", "show", "h2O"])
    with pytest.raises(TargetError, match="closest: h20"):
        ns.handler(ns)
