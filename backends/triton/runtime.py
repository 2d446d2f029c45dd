"""Generated Triton kernels, loaded, emulated and compiled.

    fn = load(ks)                                   # the kernel's Python function (from a file:
                                                    # Triton reads its source back)
    outs = emulate(ks, inputs)                      # TRITON_INTERPRET: numpy in, numpy out
    art = compile_for(ks, GPUTarget("cuda", 90, 32), num_warps=4, num_stages=3)

Emulation runs the kernel in Triton's interpreter on torch CPU tensors (it takes no numpy
arrays); it is how kernels for chips that are not here are checked against the reference
executor. Compilation runs Triton's real pipeline (ttir -> ttgir -> llir -> ptx -> cubin,
or amdgcn -> hsaco) with its bundled ptxas / LLVM; no GPU is needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .kernels import KernelSource


def _source_dir():
    from xchip.targets.host import cache_dir
    d = cache_dir() / "triton-src"
    d.mkdir(parents=True, exist_ok=True)
    return d


def load(ks: KernelSource):
    """The undecorated kernel function, from a file named by the source's hash."""
    digest = hashlib.sha256(ks.source.encode()).hexdigest()[:16]
    module_name = f"xchip_triton_{ks.name}_{digest}"
    if module_name in sys.modules:
        return getattr(sys.modules[module_name], ks.name)
    path = _source_dir() / f"{module_name}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(ks.source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return getattr(module, ks.name)


# numpy <-> torch by bytes: torch.from_numpy knows no ml_dtypes types (bf16, fp8)

def torch_dtype(dtype):
    import torch
    name = np.dtype(dtype).name
    t = getattr(torch, name, None)
    if not isinstance(t, torch.dtype):
        from xchip.errors import XchipError
        raise XchipError(f"no torch dtype for {name}")
    return t


def to_torch(a: np.ndarray, device="cpu"):
    import torch
    # a copy: the interpreter writes every argument's storage back, and the caller's array
    # may be read-only
    flat = np.array(a, order="C").reshape(-1).view(np.uint8)
    t = torch.from_numpy(flat).view(torch_dtype(a.dtype)).reshape(a.shape)
    return t.to(device) if t.device != torch.device(device) else t


def to_numpy(t, dtype) -> np.ndarray:
    import torch
    dtype = np.dtype(dtype)
    flat = t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
    return flat.view(dtype).reshape(tuple(t.shape)).copy()


def emulate(ks: KernelSource, inputs: list[np.ndarray], out_types, timeout: float = 300.0) -> list[np.ndarray]:
    """Run the kernel in Triton's interpreter on `inputs`; the outputs as numpy arrays
    (`out_types`: the group's output TensorTypes)."""
    return emulate_many([(ks, inputs, out_types)], timeout)[0]


def emulate_many(runs, timeout: float = 600.0) -> list[list[np.ndarray]]:
    """`emulate` for several (kernel source, inputs, output types), in one fresh interpreter:
    TRITON_INTERPRET must be set before triton.language is imported (its library functions
    are decorated then), and a process that compiles kernels must not have it."""
    from xchip.autotune.measure import run_isolated
    jobs = [(ks, inputs, [(tuple(t.shape), t.dtype.name) for t in out_types]) for ks, inputs, out_types in runs]
    result = run_isolated(_emulate_here, (jobs,), timeout, env={"TRITON_INTERPRET": "1"})
    if result.get("status") != "ok":
        names = ", ".join(ks.name for ks, _, _ in runs)
        raise RuntimeError(f"emulating {names} failed ({result.get('status')}): {result.get('reason')}")
    return result["outputs"]


def _faithful_narrow_floats() -> None:
    """Make Triton's interpreter (3.9) compute bf16 and fp8 as a GPU does. It keeps those
    tensors as their unsigned-int bit patterns, and (1) its dot multiplies bf16 patterns as
    integers, (2) its f32 -> bf16 cast truncates where `.to(tl.bfloat16)` compiles to
    round-to-nearest-even, (3) its fp8 rounding does not carry into the exponent. Dots get
    f32 operands widened exactly (a GPU multiplies these exactly and adds in f32); casts go
    through ml_dtypes, which rounds to nearest even. The kernel's text stays the one that is
    compiled."""
    import ml_dtypes
    import triton.language as tl
    from triton.runtime import interpreter as it
    builder = it.InterpreterBuilder
    if getattr(builder.create_dot, "xchip_narrow", False):
        return
    narrow = {tl.bfloat16: ml_dtypes.bfloat16, tl.float8e4nv: ml_dtypes.float8_e4m3fn,
              tl.float8e5: ml_dtypes.float8_e5m2}
    dot, cast, fp_to_fp = builder.create_dot, builder.cast_impl, builder.create_fp_to_fp

    def widened(h):
        if h.dtype.scalar not in narrow:
            return h
        return it.TensorHandle(h.data.view(narrow[h.dtype.scalar]).astype(np.float32), tl.float32)

    def create_dot(self, a, b, d, *rest):
        return dot(self, widened(a), widened(b), d, *rest)

    def cast_impl(self, src, dst_type):
        s, d = src.dtype.scalar, dst_type.scalar
        if s == d or not (s.is_floating() and d.is_floating()) or (s not in narrow and d not in narrow):
            return cast(self, src, dst_type)
        data = src.data.view(narrow[s]) if s in narrow else src.data
        if d in narrow:
            return it.TensorHandle(data.astype(narrow[d]).view(it._get_np_dtype(d)), d)
        return it.TensorHandle(data.astype(it._get_np_dtype(d)), d)

    def create_fp_to_fp(self, src, dst_type, rounding_mode):
        if src.dtype.scalar in narrow or dst_type.scalar in narrow:
            return cast_impl(self, src, dst_type)
        return fp_to_fp(self, src, dst_type, rounding_mode)

    create_dot.xchip_narrow = True
    builder.create_dot, builder.cast_impl, builder.create_fp_to_fp = create_dot, cast_impl, create_fp_to_fp
    for name in ("create_fp_ext", "create_fp_trunc"):
        setattr(builder, name, cast_impl)


def scratch_buffers(ks: KernelSource, device: str = "cpu") -> list:
    """The zero-filled work buffers a launch of `ks` takes after its outputs (split-K's
    partial sums and arrival counters), fresh for every launch."""
    import torch
    return [torch.zeros(n, dtype=getattr(torch, dt), device=device) for dt, n in ks.scratch.values()]


def _emulate_here(jobs) -> dict:
    import torch
    from triton.runtime.interpreter import InterpretedFunction

    from xchip.ir import dtypes
    _faithful_narrow_floats()
    results = []
    for ks, inputs, out_types in jobs:
        fn = InterpretedFunction(load(ks))
        args = [to_torch(a) for a in inputs]
        np_types = [np.dtype(dtypes.get(name).numpy) for _, name in out_types]
        outs = [torch.empty(shape, dtype=torch_dtype(d)) for (shape, _), d in zip(out_types, np_types)]
        fn[ks.grid](*args, *outs, *scratch_buffers(ks), **ks.constexprs)
        results.append([to_numpy(o, d).reshape(shape) for o, d, (shape, _) in zip(outs, np_types, out_types)])
    return {"status": "ok", "outputs": results}


@dataclass
class Artifact:
    """One kernel compiled for one GPU architecture."""
    name: str
    arch: str                          # "sm_90", "gfx906", ... as the target asked
    binary_kind: str                   # "cubin" | "hsaco"
    binary: bytes
    text: dict[str, str] = field(default_factory=dict)     # ptx / amdgcn / ttgir / llir ...
    registers: int | None = None
    spills: int | None = None
    shared_bytes: int | None = None
    num_warps: int = 4
    num_stages: int = 3

    @property
    def elf_arch(self) -> str:
        """The architecture written in the binary's ELF header (not the one asked for)."""
        return elf_arch(self.binary)


def compile_for(ks: KernelSource, target, *, num_warps: int = 4, num_stages: int = 3) -> Artifact:
    """Compile with Triton for `target` (a `triton.backends.compiler.GPUTarget`)."""
    import triton
    from triton.compiler import ASTSource
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    jit = triton.jit(load(ks))
    src = ASTSource(fn=jit, signature=ks.signature, constexprs=dict(ks.constexprs))
    compiled = triton.compile(src, target=target, options={"num_warps": num_warps, "num_stages": num_stages})
    kind = "cubin" if target.backend == "cuda" else "hsaco"
    text = {k: v for k, v in compiled.asm.items() if isinstance(v, str)}
    arch = f"sm_{target.arch}" if target.backend == "cuda" else str(target.arch)
    registers, spills = (_ptxas_usage(text["ptx"], arch) if kind == "cubin" else _amdgcn_usage(text["amdgcn"]))
    return Artifact(ks.name, arch, kind, compiled.asm[kind], text, registers, spills,
                    getattr(compiled.metadata, "shared", None), num_warps, num_stages)


def _ptxas_usage(ptx: str, arch: str) -> tuple[int | None, int | None]:
    """(registers per thread, spill bytes) as Triton's bundled ptxas reports them (the
    driver reports them only when a GPU loads the kernel)."""
    import re
    import subprocess
    import tempfile
    from pathlib import Path

    from triton.backends.nvidia.compiler import get_ptxas
    ptxas = Path(get_ptxas(int(arch[3:5])).path)      # the ptxas Triton itself used for this arch
    if not ptxas.exists():
        return None, None
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        gpu = arch + ("a" if arch == "sm_90" else "")     # Triton targets sm_90a for wgmma
        done = subprocess.run([str(ptxas), "-v", f"--gpu-name={gpu}", str(src), "-o", str(Path(d) / "k.cubin")],
                              capture_output=True, text=True)
    info = done.stderr + done.stdout
    regs = re.search(r"Used (\d+) registers", info)
    spill = re.findall(r"(\d+) bytes spill stores", info)
    return (int(regs.group(1)) if regs else None), (sum(map(int, spill)) if spill else None)


def _amdgcn_usage(asm: str) -> tuple[int | None, int | None]:
    """(vector registers, scratch bytes) from the assembler comments of an AMD kernel."""
    import re
    regs = re.search(r"; NumVgprs: (\d+)", asm)
    scratch = re.search(r"; ScratchSize: (\d+)", asm)
    return (int(regs.group(1)) if regs else None), (int(scratch.group(1)) if scratch else None)


def elf_arch(binary: bytes) -> str:
    """sm_XX from a cubin's ELF flags, gfxNNN from an AMD code object's."""
    import struct
    if binary[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    machine = struct.unpack_from("<H", binary, 18)[0]
    flags = struct.unpack_from("<I", binary, 48)[0]
    if machine == 190:                       # EM_CUDA
        # ELF ABI version >= 8 keeps the SM in bits 8-15, older ones in bits 0-7
        sm = (flags >> 8) & 0xFF if binary[8] >= 8 else flags & 0xFF
        return f"sm_{sm}"
    if machine == 224:                       # EM_AMDGPU: EF_AMDGPU_MACH in the low byte
        mach = flags & 0xFF
        return _AMDGPU_MACH.get(mach, f"amdgpu mach 0x{mach:x}")
    return f"elf machine {machine}"


_AMDGPU_MACH = {0x2F: "gfx906", 0x30: "gfx908", 0x3F: "gfx90a", 0x40: "gfx942", 0x2C: "gfx900"}
