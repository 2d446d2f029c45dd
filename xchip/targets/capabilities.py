"""What graph passes may know about a target: its capabilities, not its vendor.

Passes (precision policy, fusion) read this and nothing else of a target, so they never
depend on which backend compiles their output.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    name: str                              # canonical target name, for messages
    dtypes: frozenset[str]                 # element types the target computes natively (IR names)
    matmul_dtypes: frozenset[str]          # operand dtypes with a fast matmul path (tensor cores, AMX, ...)
    accumulate_dtype: str = "f32"          # what fast matmuls accumulate in
    onchip_bytes: int | None = None        # software-managed on-chip memory per compute unit
    vector_bits: int | None = None         # SIMD width (CPUs) or None
    warp_size: int | None = None           # 32 (Nvidia), 64 (AMD/Hygon), None for CPUs
    tile_multiple: int = 1                 # preferred multiple for tile sizes
    # matmul -> softmax -> matmul compiles as one kernel (flash attention on GPUs); where it
    # does not, fusion leaves two matmul groups and a softmax, each with its own schedule
    fused_attention: bool = True

    def supports(self, dtype: str) -> bool:
        return dtype in self.dtypes


# The host CPU as the reference executor sees it: every dtype, no fast low-precision path.
# The target-descriptor layer replaces this with what it detects.
HOST_REFERENCE = Capabilities(
    name="cpu",
    dtypes=frozenset({"bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f8e4m3fn",
                      "f8e5m2", "f16", "bf16", "f32", "f64", "c64", "c128"}),
    matmul_dtypes=frozenset({"f32", "f64"}),
)
