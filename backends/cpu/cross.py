"""Cross-compiling TVM kernels for ARM64 servers (Huawei Kunpeng 920) and running them under qemu.

No ARM64 machine and no ARM64 build of libtvm_runtime are needed. The stages, each a plain
function that can be called (and its output inspected) on its own:

  build      an already scheduled IRModule compiled by `lower.build` (the host's pipeline,
             with its fixes) for triple `aarch64-linux-gnu`, mcpu `tsv110`
  export     the module's ARM64 object (`kernels.o`) and a shared object linked with the
             cross compiler (`kernels.so`, what a Kunpeng host would load with TVM's runtime);
             optionally the LLVM IR and assembly (`kernels.ll`, `kernels.s`)
  link       harness/tvm_harness.c (a stand-in for the few runtime entry points TVM's code
             calls: workspace, parallel launch, errors) + a generated table of the kernel
             entry points + the kernel, into an ARM64 executable: static from the `.o`,
             dynamic against the `.so` (then run with the cross sysroot)
  run        `qemu-aarch64 harness SPEC`: inputs from raw files, outputs back to raw files

The kernels are called through the tvm_ffi "safe call" ABI TVM 0.27's LLVM codegen emits
(`int __tvm_ffi_<name>(void*, const TVMFFIAny* args, int32_t n, TVMFFIAny* result)`), with
tensors passed as `kTVMFFIDLTensorPtr`. Verification level: *emulated* (qemu-user runs the
real ARM64 machine code; timings under qemu mean nothing and are not reported).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import tvm

from xchip.errors import XchipError

DEFAULT_TRIPLE = "aarch64-linux-gnu"
DEFAULT_MCPU = "tsv110"             # Kunpeng 920's TaiShan v110 cores, as LLVM names them
QEMU = "qemu-aarch64"
APT_PACKAGES = ("qemu-user", "gcc-aarch64-linux-gnu")
INSTALL_COMMAND = "apt-get install -y " + " ".join(APT_PACKAGES)
HARNESS_DIR = Path(__file__).resolve().parent / "harness"
HARNESS_SOURCE = HARNESS_DIR / "tvm_harness.c"
DEFAULT_THREADS = 4                 # tasks per TVMBackendParallelLaunch in the harness


class CrossError(XchipError):
    """Cross-compiling, linking or running a kernel under qemu failed."""


# ------------------------------------------------------------------------------ toolchain

def cross_cc(triple: str = DEFAULT_TRIPLE) -> str:
    return f"{triple}-gcc"


def sysroot(triple: str = DEFAULT_TRIPLE) -> Path:
    """Where Debian's cross packages put the target's libc (for qemu's -L)."""
    return Path("/usr") / triple


def arm64_toolchain_available(triple: str = DEFAULT_TRIPLE) -> str | None:
    """None when everything needed to cross-compile and emulate is here; otherwise what is
    missing and the command that installs it."""
    missing = [tool for tool in (cross_cc(triple), QEMU) if shutil.which(tool) is None]
    if not missing and not (sysroot(triple) / "lib" / "libc.a").exists():
        missing.append(f"{sysroot(triple)}/lib/libc.a (the static ARM64 libc)")
    if not missing:
        return None
    return (f"ARM64 toolchain missing: {', '.join(missing)}. Install it with "
            f"`{INSTALL_COMMAND}` (Debian/Ubuntu, as root)")


def _require_toolchain(triple: str) -> None:
    problem = arm64_toolchain_available(triple)
    if problem is not None:
        raise CrossError(problem)


def _run(cmd: Sequence[str], what: str, timeout: float | None = None, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        raise CrossError(f"{what} timed out after {timeout} s: {' '.join(map(str, cmd))}") from e
    if proc.returncode != 0:
        raise CrossError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
                         f"{proc.stdout}{proc.stderr}")
    return proc


# ------------------------------------------------------------------------------ build + export

def build(mod: tvm.IRModule, triple: str = DEFAULT_TRIPLE, mcpu: str = DEFAULT_MCPU):
    """Stage 1: the scheduled module compiled by LLVM for the ARM64 target (a runtime module).
    The host's build, so ARM64 kernels get the same TIR pipeline and its fixes."""
    from . import lower
    return lower.build(mod, None, triple=triple, mcpu=mcpu)


@dataclass(frozen=True)
class CrossArtifact:
    so: Path                    # shared object, linked by the cross gcc
    obj: Path                   # the relocatable object TVM's codegen wrote
    functions: tuple[str, ...]  # kernel entry points (names without the __tvm_ffi_ prefix)
    triple: str
    mcpu: str


def export(executable, out_dir: str | os.PathLike, *, name: str = "kernels", triple: str = DEFAULT_TRIPLE,
           mcpu: str = DEFAULT_MCPU, dump: bool = False) -> CrossArtifact:
    """Stage 2: write `<name>.o` and `<name>.so` (and with `dump`, `<name>.ll` / `<name>.s`) of
    a built module (`build`'s runtime module, or a `tvm.compile` Executable)."""
    from tvm.support import cc   # tvm.contrib.cc moved here in 0.27

    _require_toolchain(triple)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # not hasattr: a runtime module's attribute lookup is a function lookup, which JIT-loads
    # the module and fails for a foreign architecture
    rt_mod = executable.mod if isinstance(executable, tvm.runtime.Executable) else executable
    obj, so = out / f"{name}.o", out / f"{name}.so"
    rt_mod.write_to_file(str(obj))
    executable.export_library(str(so), fcompile=cc.cross_compiler(cross_cc(triple)))
    if dump:
        (out / f"{name}.ll").write_text(rt_mod.inspect_source("ll"))
        (out / f"{name}.s").write_text(rt_mod.inspect_source("s"))
    return CrossArtifact(so, obj, kernel_functions(obj, triple), triple, mcpu)


def cross_compile(mod: tvm.IRModule, out_dir: str | os.PathLike, *, triple: str = DEFAULT_TRIPLE,
                  mcpu: str = DEFAULT_MCPU, name: str = "kernels", dump: bool = False) -> Path:
    """Build an (already scheduled) IRModule for ARM64 and export it; returns the `.so`. The
    object file (`<name>.o`) lies next to it; `run_under_qemu` takes either."""
    return export(build(mod, triple, mcpu), out_dir, name=name, triple=triple, mcpu=mcpu, dump=dump).so


# ------------------------------------------------------------------------------ link

_SYMBOL = re.compile(r"^\S*\s+([TWV])\s+__tvm_ffi_([A-Za-z0-9]\w*)$")


def kernel_functions(artifact: str | os.PathLike, triple: str = DEFAULT_TRIPLE) -> tuple[str, ...]:
    """Names of the kernel entry points an ARM64 object or shared object defines."""
    nm = shutil.which(f"{triple}-nm") or "nm"
    path = Path(artifact)
    flags = ["--defined-only"] + (["-D"] if path.suffix == ".so" else [])
    proc = _run([nm, *flags, str(path)], "listing symbols")
    names = []
    for line in proc.stdout.splitlines():
        m = _SYMBOL.match(line.strip())
        if m and m.group(1) in "TW":
            names.append(m.group(2))
    return tuple(sorted(set(names)))


def _table_source(functions: Sequence[str]) -> str:
    decls = "".join(f"extern int __tvm_ffi_{f}(void*, const TVMFFIAny*, int32_t, TVMFFIAny*);\n"
                    for f in functions)
    rows = "".join(f'  {{"{f}", __tvm_ffi_{f}}},\n' for f in functions)
    return ("/* generated by backends/cpu/cross.py: the kernel entry points of one object */\n"
            "#include <stddef.h>\n#include <tvm/ffi/c_api.h>\n"
            "typedef struct { const char* name; TVMFFISafeCallType fn; } xchip_kernel_entry;\n"
            f"{decls}const xchip_kernel_entry xchip_kernels[] = {{\n{rows}  {{NULL, NULL}}\n}};\n")


def _ffi_include() -> Path:
    import tvm_ffi
    inc = Path(tvm_ffi.__file__).resolve().parent / "include"
    if not (inc / "tvm" / "ffi" / "c_api.h").exists():
        raise CrossError(f"tvm_ffi's C headers are not at {inc}")
    return inc


def _harness_object(triple: str, cache: Path) -> Path:
    """harness/tvm_harness.c compiled for `triple`, cached by its text."""
    src = HARNESS_SOURCE.read_text()
    key = hashlib.sha256(f"{triple}\n{tvm.__version__}\n{src}".encode()).hexdigest()[:16]
    obj = cache / f"tvm_harness-{triple}-{key}.o"
    if not obj.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".o", dir=cache)
        os.close(fd)
        try:
            _run([cross_cc(triple), "-O2", "-std=gnu11", "-Wall", "-c", "-I", str(_ffi_include()),
                  str(HARNESS_SOURCE), "-o", tmp], "compiling the harness")
            os.replace(tmp, obj)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return obj


def _harness_cache() -> Path:
    from xchip.targets.host import cache_dir
    return cache_dir() / "arm64-harness"


def link_harness(artifact: str | os.PathLike, *, triple: str = DEFAULT_TRIPLE) -> Path:
    """Stage 3: an ARM64 executable that runs the kernels of `artifact` (`.o`: linked
    statically; `.so`: linked dynamically against it). Rebuilt only when older than the
    artifact or the harness source."""
    _require_toolchain(triple)
    artifact = Path(artifact).resolve()
    if not artifact.exists():
        raise CrossError(f"no artifact at {artifact}")
    exe = artifact.with_name(artifact.name + ".harness")
    newest = max(artifact.stat().st_mtime, HARNESS_SOURCE.stat().st_mtime)
    if exe.exists() and exe.stat().st_mtime >= newest:
        return exe
    functions = kernel_functions(artifact, triple)
    if not functions:
        raise CrossError(f"{artifact} defines no __tvm_ffi_* kernel entry point")
    harness = _harness_object(triple, _harness_cache())
    with tempfile.TemporaryDirectory(prefix="xchip-arm64-") as tmp:
        table = Path(tmp) / "table.c"
        table.write_text(_table_source(functions))
        out = Path(tmp) / "harness"
        if artifact.suffix == ".so":
            cmd = [cross_cc(triple), "-rdynamic", "-I", str(_ffi_include()), str(table), str(harness),
                   str(artifact), f"-Wl,-rpath,{artifact.parent}", "-o", str(out), "-lpthread", "-lm"]
        else:
            cmd = [cross_cc(triple), "-static", "-I", str(_ffi_include()), str(table), str(harness),
                   str(artifact), "-o", str(out), "-lpthread", "-lm"]
        _run(cmd, "linking the harness")
        shutil.move(str(out), exe)
    return exe


# ------------------------------------------------------------------------------ run

def _dl_type(dtype: np.dtype) -> tuple[int, int, int]:
    try:
        dt = tvm.runtime.DataType(np.dtype(dtype).name)
    except Exception as e:  # noqa: BLE001 - TVM's message is unhelpful; name the dtype
        raise CrossError(f"no DLPack type for numpy dtype {np.dtype(dtype)}") from e
    return int(dt.type_code), int(dt.bits), int(dt.lanes)


def _tensor_line(direction: str, path: Path, shape: Sequence[int], dtype: np.dtype) -> str:
    code, bits, lanes = _dl_type(dtype)
    dims = " ".join(str(int(d)) for d in shape)
    return f"tensor {direction} {path} {code} {bits} {lanes} {len(shape)} {dims}".rstrip()


@dataclass(frozen=True)
class QemuRun:
    outputs: list[np.ndarray]
    stdout: str
    seconds: float               # wall time of the qemu process (emulated: not a kernel timing)


def run_under_qemu_detailed(artifact: str | os.PathLike, func_name: str, inputs: Sequence,
                            output_specs: Sequence[tuple[Sequence[int], object]], *,
                            triple: str = DEFAULT_TRIPLE, num_threads: int = DEFAULT_THREADS,
                            timeout: float = 600.0) -> QemuRun:
    """`run_under_qemu`, also returning the harness's report and the wall time."""
    exe = link_harness(artifact, triple=triple)
    with tempfile.TemporaryDirectory(prefix="xchip-qemu-") as tmp:
        tmp = Path(tmp)
        lines = [f"func {func_name}"]
        for i, x in enumerate(inputs):
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
                a = np.asarray(x)   # not ascontiguousarray: it makes a 0-d array 1-d; tobytes is C order
                path = tmp / f"in{i}.bin"
                path.write_bytes(a.tobytes())
                lines.append(_tensor_line("in", path, a.shape, a.dtype))
            elif isinstance(x, (int, np.integer)):
                lines.append(f"int {int(x)}")
            else:
                lines.append(f"float {float(x)!r}")
        outs = []
        for i, (shape, dtype) in enumerate(output_specs):
            shape, dtype = tuple(int(d) for d in shape), np.dtype(dtype)
            path = tmp / f"out{i}.bin"
            outs.append((path, shape, dtype))
            lines.append(_tensor_line("out", path, shape, dtype))
        spec = tmp / "spec.txt"
        spec.write_text("\n".join(lines) + "\n")
        cmd = [QEMU]
        if Path(artifact).suffix == ".so":
            cmd += ["-L", str(sysroot(triple))]
        cmd += [str(exe), str(spec)]
        env = dict(os.environ, XCHIP_NUM_THREADS=str(num_threads))
        start = time.perf_counter()
        proc = _run(cmd, f"running {func_name} under qemu", timeout=timeout, env=env)
        seconds = time.perf_counter() - start
        results = [np.fromfile(path, dtype=dtype).reshape(shape) for path, shape, dtype in outs]
    return QemuRun(results, proc.stdout, seconds)


def run_under_qemu(artifact: str | os.PathLike, func_name: str, inputs: Sequence,
                   output_specs: Sequence[tuple[Sequence[int], object]], **kw) -> list[np.ndarray]:
    """Run kernel `func_name` of an ARM64 artifact (`.so` or `.o` from `cross_compile`) under
    qemu-aarch64. The kernel is called with `inputs` (arrays; Python ints/floats become scalar
    arguments) followed by one fresh output tensor per `(shape, dtype)` in `output_specs`, in
    that order; the outputs are returned. Keyword options: `triple`, `num_threads` (tasks per
    parallel launch in the harness, default 4), `timeout` (seconds)."""
    return run_under_qemu_detailed(artifact, func_name, inputs, output_specs, **kw).outputs


# ------------------------------------------------------------------------------ kernel graphs

@dataclass
class GroupCheck:
    """One kernel group of a kernel graph, cross-compiled and run under qemu (or why not)."""
    name: str
    status: str                  # "ok", "mismatch", "skipped" (left to the reference executor), "error"
    detail: str = ""
    max_abs_err: float = 0.0
    compile_s: float = 0.0
    run_s: float = 0.0


DEFAULT_TOLERANCE = {"f": (2e-5, 2e-5), "bf16": (2e-2, 2e-2), "f16": (2e-3, 2e-3)}   # (rtol, atol)


def _tolerance(dtype: np.dtype, tolerance: dict) -> tuple[float, float] | None:
    dtype = np.dtype(dtype)
    if dtype.name in tolerance:
        return tolerance[dtype.name]
    if dtype.name == "bfloat16":
        return tolerance.get("bf16")
    if dtype.name == "float16":
        return tolerance.get("f16")
    if dtype.kind == "f" or dtype.kind == "c":
        return tolerance.get("f")
    return None   # integers, bool: exact


def _value_array(value, env: dict) -> np.ndarray:
    """`env[value]`, evaluating a constant's producer when it is not there yet."""
    from xchip.runtime import reference

    if value not in env:
        op = value.producer
        if op is None or op.name != "constant":
            raise CrossError(f"value {value} is neither computed by an earlier group nor a constant")
        env.update(reference.evaluate_ops([op], {}))
    return env[value]


def _host_build_problem(group, config) -> str | None:
    """None when the group schedules and builds for the host; else why not (a failure shared
    by every CPU target is the lowering's, not the cross-compiler's)."""
    from .executable import schedule_kernel
    from .lower import build

    try:
        build(schedule_kernel(group, config, None)[0])
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1][:300]}"
    return None


def check_kernel_graph_under_qemu(kernel_graph, inputs: Sequence[np.ndarray], out_dir: str | os.PathLike, *,
                                  target="kunpeng920", triple: str = DEFAULT_TRIPLE, mcpu: str = DEFAULT_MCPU,
                                  num_threads: int = DEFAULT_THREADS, tolerance: dict | None = None,
                                  configs: dict | None = None) -> list[GroupCheck]:
    """Cross-compile every kernel group of `kernel_graph` that the CPU backend compiles (loops
    and dynamic slices included) for ARM64, run each under qemu on the inputs the reference
    executor computes for it, and compare with the reference's outputs. `inputs` are the
    graph's flat input arrays. Groups run in order on the reference first (those left to it
    too), so every group sees the values it would see in the full program. Returns one
    `GroupCheck` per group: `ok` means every output matched within `tolerance`
    ({"f": (rtol, atol), "bf16": ..., "f16": ...}; integers must match exactly), `skipped`
    that the backend runs the group on the reference executor (the detail says why).

    Kernels are made as the host's `CpuProgram` makes them (executable.py's `schedule_kernel`,
    then `lower.build`); `target` is the xchip target they are scheduled for (a name is
    resolved with `xchip.targets.get`)."""
    from xchip import targets as xtargets
    from xchip.runtime import reference

    from .executable import schedule_kernel
    from .lower import LoweringError

    tolerance = dict(DEFAULT_TOLERANCE, **(tolerance or {}))
    target_obj = xtargets.get(target) if isinstance(target, str) else target
    graph = kernel_graph.graph
    if len(inputs) != len(graph.inputs):
        raise CrossError(f"the graph has {len(graph.inputs)} inputs, got {len(inputs)} arrays")
    env = {v: np.asarray(a) for v, a in zip(graph.inputs, inputs)}
    out_dir = Path(out_dir)
    results = []
    for group in kernel_graph.groups:
        for v in group.inputs:
            _value_array(v, env)
        env.update(reference.evaluate_ops(group.ops, {v: env[v] for v in group.inputs}))
        start = time.perf_counter()
        config = (configs or {}).get(group.name)
        try:
            mod, params = schedule_kernel(group, config, target_obj)
        except LoweringError as e:
            results.append(GroupCheck(group.name, "skipped", f"runs on the reference executor: {e}"))
            continue
        except Exception as e:  # noqa: BLE001 - TVM raises many kinds
            first = (str(e).strip().splitlines() or [""])[-1][:300]
            results.append(GroupCheck(group.name, "error", f"scheduling failed: {type(e).__name__}: {first}",
                                      compile_s=time.perf_counter() - start))
            continue
        n_out = len(group.outputs)
        in_values, out_values = params[:len(params) - n_out], params[len(params) - n_out:]
        try:
            so = cross_compile(mod, out_dir / group.name, triple=triple, mcpu=mcpu, name=group.name)
        except Exception as e:  # noqa: BLE001 - TVM raises many kinds; tell ARM64 problems from shared ones
            first = (str(e).strip().splitlines() or [""])[-1][:300]
            host_problem = _host_build_problem(group, config)
            status, detail = (("skipped", f"fails for the host too, not ARM64-specific: {host_problem}")
                              if host_problem else ("error", f"{type(e).__name__}: {first}"))
            results.append(GroupCheck(group.name, status, detail, compile_s=time.perf_counter() - start))
            continue
        compile_s = time.perf_counter() - start
        try:
            # arrays always, 0-d ones included: a numpy scalar would be passed as a scalar argument
            args = [np.asarray(_value_array(v, env), v.type.dtype.numpy) for v in in_values]
            specs = [(v.type.shape, v.type.dtype.numpy) for v in out_values]
            run = run_under_qemu_detailed(so, group.name, args, specs, triple=triple, num_threads=num_threads)
        except CrossError as e:
            results.append(GroupCheck(group.name, "error", str(e), compile_s=time.perf_counter() - start))
            continue
        check = GroupCheck(group.name, "ok", compile_s=compile_s, run_s=run.seconds)
        problems = []
        for v, got in zip(out_values, run.outputs):
            want = np.asarray(env[v])
            tol = _tolerance(want.dtype, tolerance)
            g64, w64 = got.astype(np.float64), want.astype(np.float64)
            same_nan = np.isnan(g64) & np.isnan(w64)
            err = np.where(same_nan, 0.0, np.abs(g64 - w64))
            finite = err[np.isfinite(err)]
            check.max_abs_err = max(check.max_abs_err, float(finite.max()) if finite.size else 0.0)
            if tol is None:
                bad = ~(same_nan | (g64 == w64))
            else:
                rtol, atol = tol
                bad = ~(same_nan | (g64 == w64) | (err <= atol + rtol * np.abs(w64)))
            if bad.any():
                problems.append(f"{v}: {int(bad.sum())} of {bad.size} elements differ "
                                f"(max abs err {check.max_abs_err:.3g})")
        if problems:
            check.status, check.detail = "mismatch", "; ".join(problems)
        results.append(check)
    return results
