"""While loops (what `lax.scan` and `lax.fori_loop` become) on GPU-family targets: the loop
runs on the host, each iteration launching the condition's kernels, reading the flag back,
then launching the body's kernels; loop-carried values stay in device buffers.

A loop is not one Triton kernel: its condition and body regions are fused into kernel
groups like any graph (passes/fusion), and each group is generated and compiled as usual
(a nested loop recursively). Dynamic slices of the scanned sequence are loads at offsets
read from the loop counter; a dynamic update slice writes a whole new copy of the carried
array each iteration (correct; an in-place write would save the copy and is not built).
"""

from __future__ import annotations

from dataclasses import dataclass

from xchip.ir.graph import Graph, Op
from xchip.ir.kernel_graph import KernelGraph, KernelGroup


def loop_op(group: KernelGroup) -> Op | None:
    """The while op of a loop group (an opaque group whose one real op is a while)."""
    real = [op for op in group.ops if op.name != "constant"]
    return real[0] if group.kind == "opaque" and len(real) == 1 and real[0].name == "while" else None


@dataclass(eq=False)
class Loop:
    op: Op
    cond: KernelGraph
    body: KernelGraph


def regions(group: KernelGroup) -> Loop:
    """The loop's condition and body, each partitioned into kernel groups."""
    from xchip.passes.fusion import build_kernel_graph, partition
    op = loop_op(group)
    graphs = []
    for part, region in zip(("cond", "body"), op.regions):
        graph = Graph(f"{group.name}_{part}", region)
        analysis, p = partition(graph, "O2")
        graphs.append(build_kernel_graph(graph, analysis, p))
    return Loop(op, *graphs)


__all__ = ["Loop", "loop_op", "regions"]
