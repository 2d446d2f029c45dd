"""Kernel graphs: a partition of a graph's top-level ops into kernel groups.

Fusion (in `xchip.passes`) produces a `KernelGraph`; backends lower one group at a time,
the cost model estimates one group at a time. A group is one kernel on a target: its
`inputs` are read from memory (graph inputs, other groups' outputs, large constants), its
`outputs` are written to memory (values used by later groups or returned by the graph).
Everything else lives in registers or on-chip memory inside the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ops as ops_registry
from .graph import Graph, Op, Value

KINDS = ("matmul", "conv", "reduction", "elementwise", "attention", "opaque")


@dataclass(eq=False)
class KernelGroup:
    id: int
    kind: str                      # one of KINDS
    ops: list[Op]                  # members, in program order (top-level ops of the graph body)
    inputs: list[Value]            # read from memory
    outputs: list[Value]           # written to memory
    anchor: Op | None = None       # the op the kind comes from (dot_general, reduce, ...)
    info: dict = field(default_factory=dict)  # what fusion recognized (e.g. {"pattern": "softmax"})

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.id}"

    @property
    def flops(self) -> int:
        return sum(_op_flops(op) for op in self.ops)

    @property
    def bytes(self) -> int:
        """Bytes the kernel must read and write, each input and output once."""
        return sum(v.type.nbytes for v in self.inputs) + sum(v.type.nbytes for v in self.outputs)

    @property
    def op_names(self) -> list[str]:
        return [op.name for op in self.ops]

    def __repr__(self) -> str:
        return f"<KernelGroup {self.name}: {'+'.join(self.op_names)}>"


def _op_flops(op: Op) -> int:
    """An op's FLOPs, counting the ops inside its regions once (a loop's trip count is not
    known statically)."""
    return ops_registry.flops(op) + sum(_op_flops(inner) for r in op.regions for inner in r.ops)


@dataclass(eq=False)
class KernelGraph:
    graph: Graph
    groups: list[KernelGroup]      # in execution order

    def group_of(self, op: Op) -> KernelGroup | None:
        """The first group holding `op` (fusion may copy cheap ops, such as broadcasts,
        into several groups)."""
        for g in self.groups:
            if any(o is op for o in g.ops):
                return g
        return None

    def annotations(self) -> dict[Op, str]:
        """`op -> "matmul_3"` for printing the graph with its groups visible; an op in
        several groups names them all (`"matmul_1, matmul_4"`)."""
        out: dict[Op, str] = {}
        for g in self.groups:
            for op in g.ops:
                out[op] = f"{out[op]}, {g.name}" if op in out else g.name
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in self.groups:
            out[g.kind] = out.get(g.kind, 0) + 1
        return out
