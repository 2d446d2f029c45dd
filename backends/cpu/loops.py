"""A `while` op (what `lax.scan` and `lax.fori_loop` become) compiled into ONE native
function: the loop runs in machine code, not as a Python round-trip per kernel per iteration.

    mod, inputs, outputs = lower_loop(group, target)    # the opaque group holding the while
    lib = build(mod, target); lib[group.name](*inputs, *outputs)

The condition and body regions are fused into kernel groups like any graph (passes/fusion),
each group lowered and scheduled as usual (lower.py, schedules.py, te_dynamic.py for the
dynamic slices a scan reads and writes, this module again for a nested loop), and their
scheduled bodies are placed in one PrimFunc:

    constants (once) ; state <- initial values
    while running:
        condition kernels ; if not cond: running = 0
        else: body kernels ; state <- body results

Each kernel's parameters are declared over the storage of the values they stand for
(`DeclBuffer`), so kernels exchange data through buffers allocated once per call of the
function, as the memory plan does between top-level kernels. Loop-carried values live in
the state buffers (the function's outputs where the group returns them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import tirx as tir

from xchip.ir.graph import Graph, Op, Value
from xchip.ir.kernel_graph import KernelGroup

from .te_base import LoweringError, storage_dtype

__all__ = ["lowers", "lower_loop"]


def lowers(group: KernelGroup) -> bool:
    """An opaque group whose one real op is a while loop (the rest: its constants)."""
    real = [op for op in group.ops if op.name != "constant"]
    return group.kind == "opaque" and len(real) == 1 and real[0].name == "while"


def lower_loop(group: KernelGroup, target) -> tuple[tvm.IRModule, list[Value], list[Value]]:
    """The group as one scheduled module whose function `group.name` takes the group's inputs,
    then its outputs. Raises LoweringError naming the first op of the loop that does not
    lower (the whole loop then runs on the reference executor)."""
    op = next(op for op in group.ops if op.name == "while")
    fn = _Function(target, group.name)
    params = [fn.param(v, f"in{k}") for k, v in enumerate(group.inputs)]
    params += [fn.param(v, f"out{k}") for k, v in enumerate(group.outputs)]
    for k, r in enumerate(op.results):
        fn.buffer(r, f"state{k}")
    fn.main += fn.while_loop(op)
    body = tir.SeqStmt(fn.allocs + fn.decls + fn.constants + fn.main)
    func = tir.PrimFunc(params, body).with_attr("global_symbol", group.name)
    func = func.with_attr("tirx.noalias", True).with_attr("xchip.kind", "loop")
    mod = tvm.IRModule({group.name: func})
    return tir.transform.ConvertSSA()(mod), list(group.inputs), list(group.outputs)


@dataclass
class _Function:
    target: object
    name: str
    storage: dict = field(default_factory=dict)      # Value -> its buffer
    allocs: list = field(default_factory=list)       # AllocBuffer, at the function's top
    decls: list = field(default_factory=list)        # kernel parameters over storage
    constants: list = field(default_factory=list)    # kernels computing constants, run once
    main: list = field(default_factory=list)
    kernels: int = 0

    # -- storage ---------------------------------------------------------------------------

    def param(self, v: Value, name: str):
        if v in self.storage:          # an input also returned: one buffer, one parameter
            raise LoweringError("while", None, f"value {v} is both an input and an output of {self.name}")
        b = self.storage[v] = tir.decl_buffer(v.type.shape, storage_dtype(v.type.dtype), name)
        return b

    def buffer(self, v: Value, name: str | None = None):
        """The buffer holding `v`: existing storage, a constant computed once at the top, or a
        new allocation."""
        b = self.storage.get(v)
        if b is not None:
            return b
        b = self.storage[v] = tir.decl_buffer(v.type.shape, storage_dtype(v.type.dtype),
                                              name or f"v{len(self.storage)}")
        self.allocs.append(tir.AllocBuffer(b))
        if v.producer is not None and v.producer.name in ("constant", "iota") and not v.producer.regions:
            const = KernelGroup(id=len(self.storage), kind="elementwise", ops=[v.producer], inputs=[], outputs=[v])
            self.constants += self.kernel(const)
        return b

    # -- code ------------------------------------------------------------------------------

    def kernel(self, group: KernelGroup) -> list:
        """A kernel group's scheduled body over the storage of its inputs and outputs."""
        from . import te_dynamic
        from .lower import lower_group, schedule_group
        if lowers(group):
            inner = next(op for op in group.ops if op.name == "while")
            for v in group.inputs:
                self.buffer(v)
            for r in inner.results:
                self.buffer(r)
            return self.while_loop(inner)
        if te_dynamic.lowers(group):
            lowered = te_dynamic.lower_dynamic(group)
        else:
            lowered = lower_group(group)      # raises LoweringError for the opaque rest
        func = schedule_group(lowered, None, self.target)[group.name]
        self.kernels += 1
        for p, v in zip(func.params, lowered.inputs + lowered.outputs):
            self.decls.append(tir.DeclBuffer(p, data=self.buffer(v).data))
        return [func.body]

    def region(self, region) -> list:
        """The kernels of a region, fused as a graph of its own."""
        from xchip.passes.fusion import build_kernel_graph, partition
        graph = Graph(f"{self.name}_region", region)
        analysis, part = partition(graph, "O2", fused_attention=False)
        stmts = []
        for group in build_kernel_graph(graph, analysis, part).groups:
            stmts += self.kernel(group)
        return stmts

    def while_loop(self, op: Op) -> list:
        cond_region, body_region = op.regions
        state = [self.storage[r] for r in op.results]
        stmts = [_copy(s, self.buffer(v)) for s, v in zip(state, op.operands) if self.buffer(v) is not s]
        for region in op.regions:
            for arg, s in zip(region.args, state):
                self.storage[arg] = s
        cond = self.region(cond_region)
        (cond_value,) = cond_region.outputs
        flag = self.buffer(cond_value)
        body = self.region(body_region)
        results = body_region.outputs
        # a result that is another state value (a swap) is read before any state is written
        moves, snapshots = [], []
        for k, (s, v) in enumerate(zip(state, results)):
            src = self.buffer(v)
            if src is s:
                continue
            if src in state:
                snap = tir.decl_buffer(s.shape, s.dtype, f"{s.name}_next")
                self.allocs.append(tir.AllocBuffer(snap))
                snapshots.append(_copy(snap, src))
                src = snap
            moves.append(_copy(s, src))
        running = tir.decl_buffer((1,), "int8", f"{self.name}_running{len(self.allocs)}")
        self.allocs.append(tir.AllocBuffer(running))
        zero, one = tir.const(0, "int8"), tir.const(1, "int8")
        go = tir.BufferLoad(flag, [])
        go = go if str(flag.dtype) == "bool" else go != tir.const(0, str(flag.dtype))
        step = tir.IfThenElse(go, _seq(body + snapshots + moves), tir.BufferStore(running, zero, [0]))
        loop = tir.While(tir.BufferLoad(running, [0]) != zero, _seq(cond + [step]))
        return stmts + [tir.BufferStore(running, one, [0]), loop]


def _seq(stmts: list):
    return stmts[0] if len(stmts) == 1 else tir.SeqStmt(stmts)


def _copy(dst, src):
    """dst[...] = src[...], the innermost axis vectorized when it is long enough."""
    if dst.dtype != src.dtype or [int(d) for d in dst.shape] != [int(d) for d in src.shape]:
        raise LoweringError("while", None, f"state {dst.name} and its value {src.name} differ in type")
    shape = [int(d) for d in dst.shape]
    idx = [tir.Var(f"{dst.name}_i{k}", "int32") for k in range(len(shape))]
    stmt = tir.BufferStore(dst, tir.BufferLoad(src, idx), idx)
    for k in reversed(range(len(shape))):
        stmt = tir.For(idx[k], 0, shape[k], tir.ForKind.SERIAL, stmt)
    return stmt
