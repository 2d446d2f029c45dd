"""The CPU backend: TVM TensorIR lowered with LLVM for the host (x86-64) and cross-compiled
for ARM64. `CpuProgram` runs a kernel graph: compiled kernels, and the reference executor
for the groups that cannot be lowered (with a `FallbackWarning` listing them).

Loaded on first use, so that what does not need TVM (the tuning database's kernel keys, the
GPU backends on a machine without TVM) does not import it."""

__all__ = ["BACKEND_COMPILED", "BACKEND_REFERENCE", "CpuProgram", "FallbackWarning"]


def __getattr__(name: str):
    if name in __all__:
        from . import executable
        return getattr(executable, name)
    raise AttributeError(name)
