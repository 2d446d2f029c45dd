"""The `plan-memory` pass: buffers for the values that cross kernel boundaries.

Every value a kernel group writes (`KernelGroup.outputs`) needs a buffer, and so do the
graph's inputs and the data constants groups read. Groups run in `ctx.kernel_graph` order;
a temporary is live from the group that writes it to the last group that reads it. When a
temporary dies its buffer returns to a pool, and a later output takes the smallest pooled
buffer that fits (best fit; sizes rounded up to 64 bytes). A group's outputs are placed
before the buffers of its dying inputs return to the pool, so a kernel never writes over
what it reads.

Graph inputs, data constants and graph outputs have buffers of their own that are never
reused: inputs and constants are resident for the whole program, outputs from the group
that writes them to the end (the caller receives them).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from xchip.errors import XchipError
from xchip.ir.graph import Value
from xchip.ir.kernel_graph import KernelGraph

from .manager import PassContext, register

ALIGNMENT = 64
ROLES = ("input", "constant", "output", "temp")


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


@dataclass(frozen=True)
class Buffer:
    id: int
    size: int      # bytes, a multiple of ALIGNMENT
    role: str      # one of ROLES


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    assignment: dict[Value, int]          # value -> buffer id
    peak_bytes: int                       # most bytes in use at once (resident + live buffers)
    naive_bytes: int                      # every value in a buffer of its own
    live_bytes: list[int] = field(default_factory=list)   # bytes in use while each group runs
    reused: int = 0                       # values placed in a buffer an earlier value had

    def buffer_of(self, v: Value) -> Buffer:
        return self.buffers[self.assignment[v]]

    @property
    def total_bytes(self) -> int:
        """What the plan allocates: every buffer once."""
        return sum(b.size for b in self.buffers)

    def summary(self) -> str:
        temps = sum(1 for b in self.buffers if b.role == "temp")
        saved = 1 - self.total_bytes / self.naive_bytes if self.naive_bytes else 0.0
        return (f"{len(self.assignment)} values in {len(self.buffers)} buffers ({temps} temporary, "
                f"{self.reused} reused); peak {self.peak_bytes} B, allocated {self.total_bytes} B, "
                f"without reuse {self.naive_bytes} B ({saved:.0%} saved)")


def plan(kernel_graph: KernelGraph) -> MemoryPlan:
    graph, groups = kernel_graph.graph, kernel_graph.groups
    returned = set(graph.outputs)
    buffers: list[Buffer] = []
    assignment: dict[Value, int] = {}

    def new_buffer(v: Value, role: str) -> int:
        buffers.append(Buffer(len(buffers), aligned(v.type.nbytes), role))
        assignment[v] = len(buffers) - 1
        return assignment[v]

    for v in graph.inputs:
        new_buffer(v, "input")
    written = {v for g in groups for v in g.outputs}
    for v in [v for g in groups for v in g.inputs] + list(graph.outputs):
        if v not in assignment and v not in written:
            new_buffer(v, "constant")  # a tensor constant no kernel computes
    resident = sum(b.size for b in buffers)

    last_read: dict[Value, int] = {}
    for step, g in enumerate(groups):
        for v in g.inputs:
            last_read[v] = step

    pool: list[tuple[int, int]] = []   # (size, buffer id) of free temporaries, sorted
    live_temps: dict[Value, int] = {}
    outputs_bytes = 0
    live_bytes: list[int] = []
    reused = 0
    for step, g in enumerate(groups):
        for v in g.outputs:
            if v in assignment:
                continue
            if v in returned:
                outputs_bytes += buffers[new_buffer(v, "output")].size
                continue
            need = aligned(v.type.nbytes)
            i = bisect.bisect_left(pool, (need, -1))
            if i < len(pool):
                _, bid = pool.pop(i)
                assignment[v] = bid
                reused += 1
            else:
                new_buffer(v, "temp")
            live_temps[v] = assignment[v]
        live_bytes.append(resident + outputs_bytes + sum(buffers[b].size for b in set(live_temps.values())))
        for v in [v for v in live_temps if last_read.get(v, step) <= step]:
            bid = live_temps.pop(v)
            bisect.insort(pool, (buffers[bid].size, bid))

    naive = sum(aligned(v.type.nbytes) for v in assignment)
    peak = max(live_bytes, default=resident)
    return MemoryPlan(buffers, assignment, peak, naive, live_bytes, reused)


@register("plan-memory")
def plan_memory(graph, ctx: PassContext) -> dict[str, int]:
    if ctx.kernel_graph is None or ctx.kernel_graph.graph is not graph:
        raise XchipError("pass 'plan-memory' needs the kernel graph of this graph: run 'fuse' first")
    ctx.memory_plan = plan(ctx.kernel_graph)
    p = ctx.memory_plan
    return {"buffers": len(p.buffers), "reused": p.reused, "peak_bytes": p.peak_bytes,
            "naive_bytes": p.naive_bytes, "allocated_bytes": p.total_bytes}
