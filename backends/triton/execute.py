"""A whole kernel graph run with its generated Triton kernels, one group after another.

    program = TritonProgram(lowered.kernel_graph, "h800-sxm", artifacts=compiled.artifacts)
    result = program.run(inputs)            # on the current CUDA GPU, in this process
    result = program.emulate(inputs)        # in Triton's interpreter, in a fresh process
    result.outputs                          # numpy arrays, in the graph's output order
    result.on_reference                     # [(group, why)]: groups the reference executor ran

Checking kernels one by one (test_triton_kernels.py) feeds each kernel the reference's
values; a program fed by its own kernels shows that the groups fit together (every value
a later group reads was written, in the layout it expects) and how rounding accumulates
over a model. The interpreter runs the very launches a GPU gets (under TRITON_INTERPRET=1
`triton.jit` gives the interpreter), so what passes there is what a GPU runs.

A while loop runs as loops.py compiles it: from the host, each iteration running the
condition's kernels, reading its flag back, then running the body's kernels. Groups with
no kernel (not generated, or not compiled for the target) run on the numpy reference
executor on the host, their inputs copied from the device and their outputs back. They
are listed on the program and on every result, and warned about once (`FallbackWarning`),
so that no one counts them as GPU kernels.

The interpreter runs in a fresh process because TRITON_INTERPRET must be set before
triton.language is imported. The kernel graph pickles (values keep their identity within
one pickle), so the plan crosses as it is: kernel sources generated here, groups to run
on the reference with their ops.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from xchip.errors import FallbackWarning, UnsupportedOpError, XchipError
from xchip.ir.graph import Op, Value
from xchip.ir.kernel_graph import KernelGraph, KernelGroup
from xchip.runtime import reference

from .kernels import KernelSource, generate
from .loops import loop_op, regions
from .program import launch_options, tile_configs
from .runtime import to_numpy, to_torch, torch_dtype
from .runtime import scratch_buffers


@dataclass
class Step:
    group: KernelGroup
    name: str                              # the kernel's name in the artifacts ("opaque_3.body.matmul_0")
    kernel: KernelSource | None = None     # None and no loop: the reference executor runs the group
    reason: str = ""                       # why there is no kernel
    num_warps: int = 4
    num_stages: int = 3
    loop: HostLoop | None = None


@dataclass
class HostLoop:
    op: Op                                 # the while
    cond: TritonProgram
    body: TritonProgram


@dataclass
class RunResult:
    outputs: list[np.ndarray]              # the graph's outputs, in order
    on_reference: list[tuple[str, str]]    # (group, why) for groups run on the host's reference executor
    mode: str                              # "cuda" | "interpreter" | another torch device's type
    device: str = ""


class TritonProgram:
    """A kernel graph as steps: a Triton kernel per group that has one, a host loop per
    while loop, the reference executor for the others.

    With `artifacts` (a `ProgramArtifacts` from `compile_graph` / `Compiled.artifacts`)
    the kernels are the compiled ones, with their final tiles, warps and stages; a group
    whose status is not "compiled" runs on the reference. Without, each group is
    generated with `configs` (by kernel name), by default the tiles `compile_graph` would
    pick; no machine code is built."""

    def __init__(self, kernel_graph: KernelGraph, target: str, *, artifacts=None,
                 configs: dict[str, dict] | None = None, warn: bool = True, _prefix: str = ""):
        from xchip.targets import resolve_name
        self.kernel_graph = kernel_graph
        self.graph = kernel_graph.graph
        self.target = resolve_name(target)
        self._artifacts, self._configs = artifacts, configs
        self._kernels = _by_name(artifacts.kernels) if artifacts is not None else None
        if artifacts is None and configs is None:
            configs = {_prefix + n: c for n, (c, _) in tile_configs(kernel_graph, self.target).items()}
        self.steps = [self._plan(g, _prefix + g.name, configs or {}) for g in kernel_graph.groups]
        # a loop's regions may also read values of the enclosing scope: `free`, bound at each run
        self.constants, self.free = _constants(self.graph, self.steps, nested=bool(_prefix))
        if warn and self.on_reference:
            listed = "; ".join(f"{name} ({why})" for name, why in self.on_reference)
            warnings.warn(f"{len(self.on_reference)} of {self.group_count} kernel groups run on the reference "
                          f"executor on the host, not as Triton kernels: {listed}", FallbackWarning, stacklevel=2)
        self._jitted: list | None = None
        self._on_device: dict = {}

    def __getstate__(self) -> dict:
        # Triton's JIT objects and device tensors stay in this process; the artifacts (with
        # their binaries) were only needed to plan
        return dict(self.__dict__, _jitted=None, _on_device={}, _artifacts=None, _kernels=None)

    def _plan(self, group: KernelGroup, name: str, configs: dict) -> Step:
        if loop_op(group) is not None:
            try:
                loop = regions(group)
            except Exception as e:  # noqa: BLE001 - the regions did not partition: the whole loop on the reference
                return Step(group, name, reason=f"its regions did not partition ({type(e).__name__}: {e})")
            parts = [TritonProgram(kg, self.target, artifacts=self._artifacts, configs=self._configs, warn=False,
                                   _prefix=f"{name}.{part}.")
                     for part, kg in (("cond", loop.cond), ("body", loop.body))]
            return Step(group, name, loop=HostLoop(loop.op, *parts))
        if self._kernels is None:
            return self._generate(group, name, configs.get(name) or {}, None)
        kernel = self._kernels.get(name)
        if kernel is None:
            return Step(group, name, reason="not in the compiled artifacts")
        if kernel.status != "compiled":
            return Step(group, name, reason=f"{kernel.status}: {kernel.reason}")
        return self._generate(group, name, kernel.config, kernel.artifact)

    def _generate(self, group: KernelGroup, name: str, config: dict, art) -> Step:
        try:
            ks = generate(group, config, self.target)
        except UnsupportedOpError as e:
            return Step(group, name, reason=f"not generated: {e}")
        # the warps and stages the artifact was compiled with, else those compile_graph would use
        opts = {"num_warps": art.num_warps, "num_stages": art.num_stages} if art is not None else launch_options(config)
        return Step(group, name, ks, "", int(opts["num_warps"]), int(opts["num_stages"]))

    @property
    def group_count(self) -> int:
        """Kernel groups, those of loops' conditions and bodies included (not the loops)."""
        return sum(s.loop.cond.group_count + s.loop.body.group_count if s.loop else 1 for s in self.steps)

    @property
    def on_reference(self) -> list[tuple[str, str]]:
        out = []
        for s in self.steps:
            if s.loop is not None:
                out += s.loop.cond.on_reference + s.loop.body.on_reference
            elif s.kernel is None:
                out.append((s.name, s.reason))
        return out

    # -- running ---------------------------------------------------------------------------

    def run(self, inputs: Sequence[np.ndarray], device=None) -> RunResult:
        """Run in this process with Triton's JIT on `device` (a torch device, default the
        current CUDA device); numpy in, numpy out."""
        import torch
        device = _device(device)
        outs = self.prepare(inputs, device)()
        on_gpu = device.type == "cuda"
        if on_gpu:
            torch.cuda.synchronize(device)
        return RunResult([to_numpy(t, v.type.dtype.numpy) for t, v in zip(outs, self.graph.outputs)],
                         self.on_reference, device.type, torch.cuda.get_device_name(device) if on_gpu else str(device))

    def prepare(self, inputs: Sequence[np.ndarray], device=None) -> Callable[[], list]:
        """A function running the whole program on `inputs` (copied to the device once) and
        returning the outputs as device tensors, without synchronizing: what to time. Triton
        compiles each kernel for the device at its first launch; under TRITON_INTERPRET=1,
        `triton.jit` gives the interpreter instead, and the same launches run on the CPU."""
        device = _device(device)
        if len(inputs) != len(self.graph.inputs):
            raise XchipError(f"{self.graph.name} takes {len(self.graph.inputs)} inputs, got {len(inputs)}")
        args = []
        for k, (v, a) in enumerate(zip(self.graph.inputs, inputs)):
            a = np.asarray(a)
            if a.shape != tuple(v.type.shape) or a.dtype != np.dtype(v.type.dtype.numpy):
                raise XchipError(f"input {k}: expected {v.type}, got {a.dtype}{list(a.shape)}")
            args.append(to_torch(a, device))
        base = self._base(args, {}, device)
        return lambda: _execute(self, base, device)

    def emulate(self, inputs: Sequence[np.ndarray], timeout: float = 600.0) -> RunResult:
        """Run in Triton's interpreter (torch CPU tensors), in a fresh process."""
        return emulate_many([(self, inputs)], timeout)[0]

    def _base(self, args: list, outer: dict, device) -> dict:
        """The values a run starts from: arguments, constants, the enclosing scope's."""
        if str(device) not in self._on_device:
            self._on_device[str(device)] = {v: to_torch(a, device) for v, a in self.constants.items()}
        env = dict(self._on_device[str(device)])
        env.update(zip(self.graph.inputs, args))
        env.update((v, outer[v]) for v in self.free)
        return env

    def _functions(self) -> list:
        if self._jitted is None:
            import triton

            from .runtime import load
            self._jitted = [None if s.kernel is None else triton.jit(load(s.kernel)) for s in self.steps]
        return self._jitted


def emulate_many(runs: Sequence[tuple[TritonProgram, Sequence[np.ndarray]]], timeout: float = 600.0) -> list[RunResult]:
    """Several (program, inputs) in one interpreter process (each start costs seconds)."""
    from xchip.autotune.measure import run_isolated
    jobs = [(p, [np.asarray(a) for a in inputs]) for p, inputs in runs]
    result = run_isolated(_emulate_here, (jobs,), timeout, env={"TRITON_INTERPRET": "1"})
    if result.get("status") != "ok":
        names = ", ".join(p.graph.name for p, _ in runs)
        raise RuntimeError(f"running {names} in Triton's interpreter failed ({result.get('status')}): "
                           f"{result.get('reason')}")
    return [RunResult(outs, p.on_reference, "interpreter", "Triton interpreter (CPU)")
            for (p, _), outs in zip(runs, result["outputs"])]


def _emulate_here(jobs) -> dict:
    from .runtime import _faithful_narrow_floats
    _faithful_narrow_floats()
    return {"status": "ok", "outputs": [program.run(inputs, "cpu").outputs for program, inputs in jobs]}


def _device(device):
    import torch
    return torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)


def _execute(program: TritonProgram, base: dict, device) -> list:
    """Every step in order over torch tensors on `device`; the graph's outputs as tensors."""
    import torch
    env = dict(base)
    for step, fn in zip(program.steps, program._functions()):
        if step.loop is not None:
            env.update(_run_loop(step.loop, env, device))
        elif fn is not None:
            ks = step.kernel
            outs = [torch.empty(tuple(v.type.shape), dtype=torch_dtype(v.type.dtype.numpy), device=device)
                    for v in step.group.outputs]
            # split-K's workspace and arrival counters: zeroed for every launch
            args = [env[v] for v in step.group.inputs] + outs + scratch_buffers(ks, device)
            fn[ks.grid](*args, **ks.constexprs, num_warps=step.num_warps, num_stages=step.num_stages)
            env.update(zip(step.group.outputs, outs))
        else:
            host = {v: to_numpy(env[v], v.type.dtype.numpy) for v in step.group.inputs}
            values = reference.evaluate_ops(step.group.ops, host)
            env.update({v: to_torch(np.asarray(values[v]), device) for v in step.group.outputs})
    # a value the run started from, returned as it is, must not alias the caller's (or a
    # loop's next iteration's) tensor
    return [env[v].clone() if v in base else env[v] for v in program.graph.outputs]


def _run_loop(loop: HostLoop, env: dict, device) -> dict:
    carried = [env[v] for v in loop.op.operands]
    while True:
        (flag,) = _execute(loop.cond, loop.cond._base(carried, env, device), device)
        if not bool(flag.item()):           # the one read back per iteration
            break
        carried = _execute(loop.body, loop.body._base(carried, env, device), device)
    return dict(zip(loop.op.results, carried))


def _by_name(kernels) -> dict:
    out = {}
    for k in kernels:
        out[k.group] = k
        out.update(_by_name(getattr(k, "parts", ())))
    return out


def _constants(graph, steps: Sequence[Step], nested: bool) -> tuple[dict[Value, np.ndarray], list[Value]]:
    """(constants, free values): what steps read or the graph returns that no step writes
    and no argument gives. Constants left out of every group (fusion keeps large ones in
    memory, a loop group keeps its initial values) are materialized here; in a loop's
    region, other values come from the enclosing scope."""
    have = set(graph.inputs)
    needed: list[Value] = []
    for s in steps:
        reads = list(s.group.inputs)
        if s.loop is not None:
            reads += list(s.loop.op.operands) + s.loop.cond.free + s.loop.body.free
            have.update(s.loop.op.results)
        needed += [v for v in reads if v not in have]
        have.update(s.group.outputs)
    needed += [v for v in graph.outputs if v not in have]
    constants, free = {}, []
    for v in dict.fromkeys(needed):
        op = v.producer
        if op is not None and op.name == "constant":
            constants[v] = np.asarray(op.attrs["value"], v.type.dtype.numpy).reshape(v.type.shape)
        elif nested:
            free.append(v)
        else:
            raise XchipError(f"value {v} is read before any group writes it and is not a constant")
    return constants, free


__all__ = ["HostLoop", "RunResult", "Step", "TritonProgram", "emulate_many"]
