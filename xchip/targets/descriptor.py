"""`Target`: everything xchip knows about one chip, as typed data.

Descriptors are data files (`data/*.toml`, read by `loader.py`) or, for the host CPU,
detected and measured at run time (`host.py`). The cost model reads a `Target`; graph passes
read only its `capabilities`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping

from ..ir import dtypes as ir_dtypes
from .capabilities import Capabilities
from .quantity import Link, Quantity

# Peak-throughput keys, in the order tables print them (int8 is TOPS).
PEAK_KEYS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")

# Verification levels (docs/verification.md), plus "none": nothing of xchip's has been
# emitted, compiled, emulated or run for the target yet; its timings can only be modeled.
# "compiled + emulated": every kernel is machine code for the target and runs in an
# emulator against the reference, but nothing ran on the chip (the GPU family today).
VERIFICATION_LEVELS = ("executed", "compiled + emulated", "compiled", "emulated", "emitted", "none")

BACKEND_FAMILIES = ("cpu", "nvidia", "ascend", "cambricon", "dcu", "kunlun", "mthreads", "iluvatar",
                    "metax", "biren")

INTEGER_DTYPES = ("bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")


@dataclass(frozen=True, eq=False)
class Target:
    name: str                           # canonical name: "h800-sxm"
    aliases: tuple[str, ...]
    full_name: str                      # "NVIDIA H800 SXM5 80GB"
    vendor: str
    architecture: str                   # "Hopper GH100"
    arch_label: str                     # short form for tables: "Hopper sm_90"
    isa: str                            # "sm_90", "gfx906", "dav-c220", "x86-64 (avx2 fma ...)"
    backend: str                        # xchip backend family, one of BACKEND_FAMILIES
    verification_level: str             # one of VERIFICATION_LEVELS
    kernel_language: str
    toolchain: str
    triton_backend: str | None
    host_link: str | None               # PCIe generation and width, as text
    confidence: str                     # of the descriptor as a whole (chips.md's rating)
    notes: str
    sources: Mapping[str, str]          # key -> URL (or a description where there is no URL)

    compute_units: Quantity             # unit says what a unit is: SM, AI Cube core, MLU core, core
    peak_tflops: Mapping[str, Quantity]  # PEAK_KEYS -> dense peak per device (int8 in TOPS)
    memory_gb: Quantity
    memory_bandwidth_gbs: Quantity
    onchip_kb: Quantity                 # software-managed on-chip memory per unit
    onchip_name: str                    # "shared memory per SM", "UB per AI Vector core", ...
    l2_mb: Quantity
    register_file_kb: Quantity          # per unit
    warp_size: Quantity                 # threads per warp/wavefront; not_applicable off SIMT
    interconnect: Link                  # scale-up (within a node)
    dtypes: tuple[str, ...]             # IR dtypes computed natively
    matmul_dtypes: tuple[str, ...]      # IR dtypes with a matrix-unit path
    dtypes_sources: tuple[str, ...]

    vector_units: Quantity = field(default_factory=Quantity.unknown)   # Ascend's AI Vector cores
    clock_ghz: Quantity = field(default_factory=Quantity.unknown)
    onchip_other: Mapping[str, Quantity] = field(default_factory=dict)   # other levels: L1, L0C, SRAM
    matmul_tile_memory: str | None = None   # key of onchip_other that holds matmul tiles, if not onchip_kb
    matrix_tile: Quantity = field(default_factory=Quantity.unknown)      # matrix-unit tile edge (16)
    scale_out: Link | None = None       # between nodes
    devices_per_node: Quantity = field(default_factory=Quantity.unknown)
    tdp_w: Quantity = field(default_factory=Quantity.unknown)
    launch_overhead_us: Quantity = field(default_factory=Quantity.unknown)
    computes_as: Mapping[str, str] = field(default_factory=dict)   # dtype -> dtype it is computed in
    vector_bits: int | None = None      # SIMD width on CPUs
    host: object | None = None          # host.HostInfo for the cpu target

    @property
    def is_simt(self) -> bool:
        """GPU-like: threads grouped in warps/wavefronts (occupancy, wave quantization apply)."""
        return self.warp_size.known

    @property
    def capabilities(self) -> Capabilities:
        onchip = self.onchip_kb.value * 1024 if self.onchip_kb.known else None
        return Capabilities(
            name=self.name,
            dtypes=frozenset(self.dtypes),
            matmul_dtypes=frozenset(self.matmul_dtypes),
            onchip_bytes=int(onchip) if onchip is not None else None,
            vector_bits=self.vector_bits,
            warp_size=int(self.warp_size.value) if self.warp_size.known else None,
            tile_multiple=int(self.matrix_tile.value) if self.matrix_tile.known else 1,
            fused_attention=self.is_simt,      # GPUs: the Triton backends' flash attention
        )

    def quantities(self) -> Iterator[tuple[str, Quantity]]:
        """Every fact with its path (`peak_tflops.bf16`, `interconnect.effective_gbs`)."""
        for name in ("compute_units", "vector_units", "clock_ghz", "memory_gb", "memory_bandwidth_gbs",
                     "onchip_kb", "l2_mb", "register_file_kb", "warp_size", "matrix_tile",
                     "devices_per_node", "tdp_w", "launch_overhead_us"):
            yield name, getattr(self, name)
        for key, q in self.peak_tflops.items():
            yield f"peak_tflops.{key}", q
        for key, q in self.onchip_other.items():
            yield f"onchip_other.{key}", q
        for prefix, link in (("interconnect", self.interconnect), ("scale_out", self.scale_out)):
            if link is not None:
                for attr in ("nominal_gbs", "effective_gbs", "latency_us"):
                    yield f"{prefix}.{attr}", getattr(link, attr)

    def peak(self, key: str) -> Quantity:
        q = self.peak_tflops.get(key)
        return q if q is not None else Quantity.unknown(unit="TFLOPS")

    def ridge_point(self, key: str = "bf16") -> float | None:
        """FLOP per byte of DRAM traffic at which compute and memory time are equal."""
        peak, bw = self.peak(key), self.memory_bandwidth_gbs
        if not (peak.known and bw.known):
            return None
        return peak.value * 1e12 / (bw.value * 1e9)

    def with_values(self, **values) -> "Target":
        """A copy with some fields replaced: plain numbers become `Quantity`s marked as
        overrides (for what-if estimates and tests), `Quantity`s and other values pass as is."""
        out = {}
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "vector_bits":
                unit = getattr(self, name).unit if isinstance(getattr(self, name), Quantity) else ""
                value = Quantity(value, unit, "known", ("override",), "low", "set by the caller")
            out[name] = value
        sources = dict(self.sources, override="value set by the caller, not a sourced fact")
        return replace(self, sources=sources, **out)

    def __repr__(self) -> str:
        return f"<Target {self.name}: {self.full_name}>"


def check_dtypes(names: tuple[str, ...], where: str) -> None:
    known = set(ir_dtypes.names())
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"{where}: unknown IR dtypes {bad}; known: {sorted(known)}")
