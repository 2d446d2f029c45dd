"""The CPU backend: TVM TensorIR lowered with LLVM for the host (x86-64) and cross-compiled
for ARM64. `CpuProgram` runs a kernel graph: compiled kernels, and the reference executor
for the groups that cannot be lowered (with a `FallbackWarning` listing them)."""

from .executable import BACKEND_COMPILED, BACKEND_REFERENCE, CpuProgram, FallbackWarning

__all__ = ["BACKEND_COMPILED", "BACKEND_REFERENCE", "CpuProgram", "FallbackWarning"]
