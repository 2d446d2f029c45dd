"""Compiled kernels cached on disk, so a second process compiles nothing.

The key is the scheduled TensorIR itself (its TVMScript text), the LLVM target string and
the TVM version: the same TIR built for the same target gives the same machine code, so
nothing else (xchip's version, the schedule code that produced it) needs to be in the key,
and a change to any of them that changes the TIR misses the cache as it should.

Entries are shared objects written to a temporary name and renamed into place, so processes
compiling the same kernel at once never see a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import tvm

from xchip.targets.host import cache_dir


def kernel_cache_dir() -> Path:
    return cache_dir() / "cpu-kernels"


def cache_key(mod: tvm.IRModule, llvm_target: str) -> str:
    text = f"tvm {tvm.__version__}\n{llvm_target}\n{mod.script()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_or_build(mod: tvm.IRModule, llvm_target: str, build) -> tuple[tvm.runtime.Module, bool]:
    """The module for `mod`, from the cache or by `build(mod)` (then stored). Returns the
    loaded module and whether it came from the cache."""
    folder = kernel_cache_dir()
    path = folder / f"{cache_key(mod, llvm_target)}.so"
    if path.exists():
        try:
            return tvm.runtime.load_module(str(path)), True
        except Exception:  # noqa: BLE001 - a truncated or foreign file: rebuild and replace it
            pass
    lib = build(mod)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    try:
        lib.export_library(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    # Load the exported file rather than keep `lib`: what runs is then exactly what the next
    # process will load.
    return tvm.runtime.load_module(str(path)), False
