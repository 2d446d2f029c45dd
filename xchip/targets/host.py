"""The host CPU as a target: what it is (read from the OS) and how fast it is (measured once).

Detection reads /proc/cpuinfo and /sys (Linux; elsewhere the platform module's little). Peak
FLOP/s and memory bandwidth come from a micro-benchmark of about a second: numpy matmuls
(f32, f64) through the BLAS numpy ships with, and a large array copy. These are what a good
library reaches on this machine, not a datasheet peak, and are labelled `measured`. Results
are cached as JSON under $XCHIP_CACHE_DIR (default ~/.cache/xchip), keyed by a fingerprint of
the CPU model, core count, ISA flags and numpy version, so a different machine (or numpy)
measures again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Flags worth showing (the full list goes into the fingerprint).
NOTABLE_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                 "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimdhp",
                 "asimddp", "bf16", "i8mm", "sve", "sve2", "sme")

CACHE_VERSION = 2   # bump when the benchmark's method changes


@dataclass(frozen=True)
class CacheLevel:
    level: int
    kind: str                 # Data, Instruction, Unified
    size_kb: int
    shared_by: int            # logical CPUs sharing one instance


@dataclass(frozen=True)
class HostInfo:
    vendor: str
    model: str
    machine: str              # x86_64, aarch64, ...
    flags: tuple[str, ...]    # every ISA flag the OS reports
    logical_cpus: int         # CPUs this process may run on
    physical_cores: int | None
    caches: tuple[CacheLevel, ...]
    memory_gb: float | None

    @property
    def isa_extensions(self) -> tuple[str, ...]:
        return tuple(f for f in NOTABLE_FLAGS if f in self.flags)

    @property
    def vector_bits(self) -> int | None:
        if "avx512f" in self.flags:
            return 512
        if "avx2" in self.flags or "avx" in self.flags:
            return 256
        if "sse2" in self.flags or "asimd" in self.flags:
            return 128
        return None     # SVE's length is implementation-defined and not in the flags

    def cache(self, level: int, kind: str = "Data") -> CacheLevel | None:
        for c in self.caches:
            if c.level == level and c.kind in (kind, "Unified"):
                return c
        return None


@dataclass(frozen=True)
class HostMeasurement:
    fp32_gflops: float
    fp64_gflops: float
    memory_gbs: float          # copy bandwidth, read + write bytes counted (STREAM convention)
    call_overhead_us: float    # one numpy ufunc call on 1-element arrays
    measured_at: str           # ISO date and time
    numpy_version: str
    method: str

    def describe(self) -> str:
        return f"xchip micro-benchmark, {self.measured_at}, numpy {self.numpy_version}: {self.method}"


# --- detection -------------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cpuinfo() -> list[dict[str, str]]:
    text = _read("/proc/cpuinfo") or ""
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                entry[key.strip()] = value.strip()
        if entry:
            blocks.append(entry)
    return blocks


def _size_kb(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1, "M": 1024, "G": 1024 * 1024}.get(text[-1:], None)
    return int(text[:-1]) * scale if scale else int(text) // 1024


def _cpu_list_count(text: str) -> int:
    count = 0
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            count += int(hi) - int(lo) + 1
        elif part:
            count += 1
    return count


def _caches() -> tuple[CacheLevel, ...]:
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    out = []
    for index in sorted(base.glob("index*")) if base.is_dir() else []:
        level, kind, size = (_read(str(index / n)) for n in ("level", "type", "size"))
        shared = _read(str(index / "shared_cpu_list"))
        if level and kind and size:
            out.append(CacheLevel(int(level), kind.strip(), _size_kb(size),
                                  _cpu_list_count(shared) if shared else 1))
    return tuple(out)


def _memory_gb() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def detect() -> HostInfo:
    """What the OS says about this machine's CPU (cheap: no measurement)."""
    blocks = _cpuinfo()
    first = blocks[0] if blocks else {}
    flags = tuple(sorted(set((first.get("flags") or first.get("Features") or "").split())))
    model = first.get("model name") or first.get("Model") or platform.processor() or "unknown"
    vendor = first.get("vendor_id") or ""
    if not vendor and first.get("CPU implementer"):
        vendor = {"0x41": "Arm", "0x48": "HiSilicon", "0x51": "Qualcomm", "0x61": "Apple",
                  "0xc0": "Ampere"}.get(first["CPU implementer"], f"implementer {first['CPU implementer']}")
    vendor = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel", "HygonGenuine": "Hygon"}.get(vendor, vendor or "unknown")
    if model == "unknown" and first.get("CPU part"):
        model = f"{vendor} CPU part {first['CPU part']}"
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:
        logical = os.cpu_count() or 1
    cores = {(b.get("physical id"), b.get("core id")) for b in blocks if "core id" in b}
    return HostInfo(vendor=vendor, model=model, machine=platform.machine() or "unknown", flags=flags,
                    logical_cpus=logical, physical_cores=len(cores) or None, caches=_caches(),
                    memory_gb=_memory_gb())


def fingerprint(info: HostInfo, numpy_version: str | None = None) -> str:
    """Changes when anything that moves the measured numbers changes: CPU model, cores, ISA
    flags, numpy (and so its BLAS)."""
    if numpy_version is None:
        import numpy
        numpy_version = numpy.__version__
    key = json.dumps([CACHE_VERSION, info.model, info.logical_cpus, list(info.flags), numpy_version])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# --- measurement -----------------------------------------------------------------------------

def _best_seconds(fn, budget_s: float, min_runs: int = 3) -> float:
    fn()   # warm-up: page faults, BLAS thread start-up
    best, runs, start = float("inf"), 0, time.perf_counter()
    while runs < min_runs or (time.perf_counter() - start < budget_s and runs < 100):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def _matmul_gflops(np, dtype, budget_s: float) -> tuple[float, int]:
    # Grow the problem until one warm product takes ~20 ms (long enough to time well and for
    # BLAS to reach its plateau) or n reaches 2048, then keep the best of the repeats.
    n = 512
    while True:
        a = np.ones((n, n), dtype)
        if n >= 2048 or _best_seconds(lambda: a @ a, 0.0, min_runs=2) >= 0.02:
            break
        n *= 2
    seconds = _best_seconds(lambda: a @ a, budget_s)
    return 2 * n ** 3 / seconds / 1e9, n


def run_benchmark(info: HostInfo, budget_s: float = 1.0) -> HostMeasurement:
    """Measure peak-ish FLOP/s and copy bandwidth with numpy; takes about `budget_s`."""
    import numpy as np

    fp32, n32 = _matmul_gflops(np, np.float32, budget_s * 0.35)
    fp64, n64 = _matmul_gflops(np, np.float64, budget_s * 0.25)
    if not plausible_peaks(fp32, fp64):
        # a busy machine or a cold BLAS spoiled the first f32 run: once more, keep the best
        again, n32 = _matmul_gflops(np, np.float32, budget_s * 0.35)
        fp32 = max(fp32, again)
    # Source and destination together must not fit in the last-level cache: each is twice its
    # largest instance, 32-128 MiB, and at most an eighth of memory.
    llc_kb = max((c.size_kb for c in info.caches), default=32 * 1024)
    size = min(max(2 * llc_kb * 1024, 32 << 20), 128 << 20)
    if info.memory_gb:
        size = min(size, int(info.memory_gb * (1 << 30) / 8))
    src = np.ones(size // 8, np.float64)
    dst = np.empty_like(src)
    copy_s = _best_seconds(lambda: np.copyto(dst, src), budget_s * 0.3)
    del src, dst
    one = np.ones(1, np.float32)
    out = np.empty(1, np.float32)
    calls = 2000

    def many_calls():
        for _ in range(calls):
            np.add(one, one, out=out)

    call_us = _best_seconds(many_calls, budget_s * 0.05) / calls * 1e6
    method = (f"f32 matmul {n32}^3 and f64 matmul {n64}^3 (best of repeats), copy of "
              f"{size >> 20} MiB counted as read + write, numpy ufunc call on 1-element arrays")
    return HostMeasurement(fp32_gflops=fp32, fp64_gflops=fp64, memory_gbs=2 * size / copy_s / 1e9,
                           call_overhead_us=call_us,
                           measured_at=datetime.datetime.now().isoformat(timespec="seconds"),
                           numpy_version=np.__version__, method=method)


def plausible_peaks(fp32_gflops: float, fp64_gflops: float) -> bool:
    """f32 has twice the SIMD lanes of f64 on every CPU: an f32 rate below the f64 one was
    measured while something else ran (one such record once put this machine's f32 peak at
    13 GFLOP/s, a tenth of what it is, and every estimate built on it followed)."""
    return fp32_gflops >= fp64_gflops


# Set in this process, these hold numpy's BLAS to fewer threads than the machine has (the
# autotuner's workers set them on purpose): the machine's rate must be measured elsewhere.
BLAS_THREAD_LIMITS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "BLIS_NUM_THREADS")


def _benchmark_with_all_threads(info: HostInfo) -> HostMeasurement:
    """`run_benchmark`, in a fresh interpreter without the BLAS thread limits when this
    process has one (a run with OPENBLAS_NUM_THREADS=1 once cached half this machine's rate
    as its peak)."""
    if not any(v in os.environ for v in BLAS_THREAD_LIMITS):
        return run_benchmark(info)
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_LIMITS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    code = ("import dataclasses, json; from xchip.targets import host; "
            "print(json.dumps(dataclasses.asdict(host.run_benchmark(host.detect()))))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"host benchmark failed in a fresh interpreter: {done.stderr.strip()[-500:]}")
    return HostMeasurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def cache_dir() -> Path:
    return Path(os.environ.get("XCHIP_CACHE_DIR") or Path.home() / ".cache" / "xchip")


def measure(info: HostInfo | None = None, *, refresh: bool = False) -> HostMeasurement:
    """The host's measured numbers: from the cache when this machine's fingerprint has an
    entry there, otherwise measured now and written to the cache."""
    info = info or detect()
    path = cache_dir() / f"host-{fingerprint(info)}.json"
    if not refresh:
        try:
            cached = HostMeasurement(**json.loads(path.read_text())["measurement"])
            if plausible_peaks(cached.fp32_gflops, cached.fp64_gflops):
                return cached
        except (OSError, ValueError, KeyError, TypeError):
            pass    # absent, unreadable or implausible: measure again
    result = _benchmark_with_all_threads(info)
    record = {"fingerprint": fingerprint(info), "host": asdict(info), "measurement": asdict(result)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a concurrent reader never sees half a file.
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(record, f, indent=1)
        os.replace(f.name, path)
    except OSError:
        pass        # a read-only home still gets its numbers, just not cached
    return result


# --- the host as a Target --------------------------------------------------------------------

# The reference executor computes these in f32 and rounds once (as XLA:CPU does), so on this
# target their cost is the f32 cost.
COMPUTED_AS_F32 = ("f16", "bf16", "f8e4m3fn", "f8e5m2")


def host_target(info: HostInfo | None = None, measurement: HostMeasurement | None = None):
    """The `cpu` Target: detected facts, measured throughput."""
    from ..ir import dtypes as ir_dtypes
    from .capabilities import HOST_REFERENCE
    from .descriptor import Target
    from .quantity import Link, Quantity

    info = info or detect()
    m = measurement or measure(info)

    def detected(value, unit, note=""):
        return Quantity(value, unit, "known", ("detected",), "high", note) if value is not None \
            else Quantity.unknown("not reported by the OS", unit)

    def measured(value, unit, note="", **kw):
        return Quantity.measured(float(f"{value:.3g}"), unit, "measured", note, **kw)

    as_f32 = "no native path measured; the reference executor computes it in f32 (see computes_as)"
    na = "not_applicable"
    l2 = info.cache(2)
    caches = {f"L{c.level} {c.kind.lower()} (shared by {c.shared_by})": detected(c.size_kb, "KiB")
              for c in info.caches}
    extensions = " ".join(info.isa_extensions) or "no notable extensions reported"
    return Target(
        name="cpu", aliases=("host",), full_name=info.model, vendor=info.vendor,
        architecture=info.machine, arch_label=info.machine, isa=f"{info.machine} ({extensions})", backend="cpu",
        verification_level="executed",
        kernel_language="TVM TensorIR, compiled by LLVM (the reference executor for what does not lower)",
        toolchain="TVM TensorIR + LLVM (backends/cpu)",
        triton_backend=None, host_link=None, confidence="measured",
        notes=("Peaks and bandwidth are measured with numpy (its BLAS, all threads it uses) and "
               "cached per machine fingerprint; they are what a good library reaches here, not "
               "datasheet peaks."),
        sources={"detected": "/proc/cpuinfo and /sys/devices/system/cpu, read at run time",
                 "measured": m.describe()},
        compute_units=detected(info.logical_cpus, "logical CPU",
                               f"{info.physical_cores} physical cores" if info.physical_cores else ""),
        peak_tflops={
            "fp64": measured(m.fp64_gflops / 1e3, "TFLOPS", path="vector"),
            "fp32": measured(m.fp32_gflops / 1e3, "TFLOPS", path="vector"),
            "tf32": Quantity(None, "TFLOPS", na, note="TF32 is a GPU tensor-core mode"),
            "bf16": Quantity.unknown(as_f32, "TFLOPS"),
            "fp16": Quantity.unknown(as_f32, "TFLOPS"),
            "fp8": Quantity.unknown(as_f32, "TFLOPS"),
            "int8": Quantity.unknown("not measured", "TOPS"),
        },
        memory_gb=detected(info.memory_gb, "GB", "MemTotal"),
        memory_bandwidth_gbs=measured(m.memory_gbs, "GB/s", "copy, read + write counted"),
        onchip_kb=Quantity(None, "KiB", na, note="caches, not software-managed memory"),
        onchip_name="software-managed memory (none on a CPU)",
        onchip_other=caches,
        l2_mb=detected(round(l2.size_kb / 1024, 3) if l2 else None, "MiB", "per instance"),
        register_file_kb=Quantity(None, "KiB", na),
        warp_size=Quantity(None, "threads", na, note="SIMD lanes, not warps"),
        interconnect=Link("none (one host)", *(Quantity(None, u, na) for u in ("GB/s", "GB/s", "us"))),
        launch_overhead_us=measured(m.call_overhead_us, "us", "one numpy ufunc call"),
        dtypes=tuple(d for d in ir_dtypes.names() if d in HOST_REFERENCE.dtypes),
        matmul_dtypes=tuple(d for d in ir_dtypes.names() if d in HOST_REFERENCE.matmul_dtypes),
        dtypes_sources=("detected",), computes_as={d: "f32" for d in COMPUTED_AS_F32},
        vector_bits=info.vector_bits, host=info,
    )
