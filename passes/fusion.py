"""The `fuse` pass: partition the graph's top-level ops into kernel groups.

Fusion never rewrites an op; it only decides which ops share a kernel, so the program
computes exactly what it computed before. The result is `ctx.kernel_graph`.

How groups form (docs/fusion.md has the rules and the counts per example model):

1. Ops are classified (`fusion_rules.Analysis`): cheap constants are immediates,
   broadcasts and constant-only computations are rematerialized in each group that uses
   them, everything else ("real" ops) belongs to exactly one group.
2. Greedy, in program order: each real op starts a group, then merges with the groups of
   its producers when `fusion_rules.check_group` accepts the union and the union stays
   convex (no path through other groups leaves it and comes back, so groups never form
   a cycle). An elementwise op joins a matmul/conv/reduction producer as epilogue first;
   a matmul or reduce takes in its producers as prologue where allowed.
3. A widening convert at the end of an epilogue moves to the group that reads it, when
   the group it leaves writes the narrow value anyway.
4. Reductions over the same rows that read the same value merge (sibling reduces).
5. A matmul, a softmax reduction group and a matmul reading the probabilities merge
   into one attention group.
6. Values an opaque op or the graph's return need in memory that no group writes
   (rematerialized values, splat tensors) get a small elementwise group of their own.

At O0 every real op is its own group and nothing is rematerialized.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from xchip.ir.graph import Graph, Op, Value
from xchip.ir.kernel_graph import KINDS, KernelGraph, KernelGroup

from . import fusion_patterns as patterns
from .fusion_rules import Analysis, Verdict, check_group, effective_operands
from .manager import PassContext, register

ANCHORED = ("matmul", "conv", "reduction", "attention")


@dataclass(eq=False)
class _Group:
    members: list[Op]           # real ops, program order
    verdict: Verdict
    positions: tuple[int, int]  # first and last member's position


@dataclass(eq=False)
class Partition:
    """Real ops grouped by union: `group[op]` is the op's current group."""

    an: Analysis
    group: dict[Op, _Group] = field(default_factory=dict)

    def __post_init__(self):
        for op in self.an.real_ops:
            self.group[op] = self._make([op], check_group([op], self.an))

    def _make(self, members: list[Op], verdict: Verdict) -> _Group:
        pos = self.an.pos
        return _Group(members, verdict, (pos[members[0]], pos[members[-1]]))

    def groups(self) -> list[_Group]:
        return list({id(g): g for g in self.group.values()}.values())

    def try_merge(self, *parts: _Group) -> _Group | None:
        """Merge groups if the union is a valid kernel and convex; the new group or None."""
        parts = list({id(g): g for g in parts}.values())
        if len(parts) == 1:
            return parts[0]
        pos = self.an.pos
        members = sorted((op for g in parts for op in g.members), key=pos.__getitem__)
        verdict = check_group(members, self.an)
        if verdict is None or not self._convex(members):
            return None
        merged = self._make(members, verdict)
        for op in members:
            self.group[op] = merged
        return merged

    def _convex(self, members: list[Op]) -> bool:
        """No path from the union through other groups back into it. Groups are the unit:
        an op of the union may reach one op of a group while another op of that group
        feeds the union. A path back has to re-enter the union, so groups starting after
        the union's last op are never on one."""
        inside = set(members)
        last = self.an.pos[members[-1]]
        users = self.an.real_users
        stack = [self.group[u] for m in members for u in users[m] if u not in inside]
        seen: set[int] = set()
        while stack:
            g = stack.pop()
            if id(g) in seen or g.positions[0] > last:
                continue
            seen.add(id(g))
            for op in g.members:
                for u in users[op]:
                    if u in inside:
                        return False
                    stack.append(self.group[u])
        return True

    # --- phases ------------------------------------------------------------------------

    def greedy(self) -> None:
        for op in self.an.real_ops:
            current = self.group[op]
            if current.verdict.kind == "opaque":
                continue
            for producer in self._producer_groups(op):
                if producer.verdict.kind == "opaque" or producer is current:
                    continue
                current = self.try_merge(current, producer) or current

    def _producer_groups(self, op: Op) -> list[_Group]:
        """Anchored producer groups first (epilogue fusion), then the latest ones first."""
        groups = list({id(g): g for g in (self.group[p] for p in self.an.real_producers(op))}.values())
        return sorted(groups, key=lambda g: (g.verdict.kind not in ANCHORED, -g.positions[1]))

    def move_widening_converts(self) -> None:
        """A group that writes a value anyway should not also write it converted to a wider
        type for a consumer in another group: that consumer reads the narrow value and
        converts it while loading (a bf16 residual feeding an f32 layernorm, say)."""
        for g in self.groups():
            if self.group[g.members[0]] is not g or len(g.members) < 2:
                continue  # merged with a convert moved out of an earlier group
            leaf = next((op for op in reversed(g.members) if self._widening_leaf(op, g)), None)
            if leaf is not None:
                self._move_to_consumer(g, leaf)

    def _move_to_consumer(self, g: _Group, op: Op) -> None:
        rest = [m for m in g.members if m is not op]
        verdict = check_group(rest, self.an)
        if verdict is None:
            return
        smaller, alone = self._make(rest, verdict), self._make([op], check_group([op], self.an))
        for m in rest:
            self.group[m] = smaller
        self.group[op] = alone
        if not any(self.try_merge(alone, self.group[u]) for u in self.an.real_users[op]):
            for m in g.members:  # no consumer takes it: a kernel of its own would cost more
                self.group[m] = g

    def _widening_leaf(self, op: Op, g: _Group) -> bool:
        if op.name != "convert" or op.results[0].type.dtype.itemsize <= op.operands[0].type.dtype.itemsize:
            return False
        src = self.an.resolve(op.operands[0])
        producer = self.an.producer(src.origin)
        members = set(g.members)
        return (producer in members and src.dims is None and self.an.escapes(producer, members)
                and self.an.escapes(op, members)
                and not any(u in members for u in self.an.real_users[op]))

    def merge_sibling_reductions(self) -> None:
        """Reduction groups whose reduces read the same value over the same rows merge."""
        by_input: dict[tuple, list[_Group]] = {}
        for op in self.an.real_ops:
            if op.name != "reduce":
                continue
            read = self.an.resolve(op.operands[0]).origin or op.operands[0]
            key = (read, tuple(sorted(op.attrs["dimensions"])))
            by_input.setdefault(key, []).append(self.group[op])
        for groups in by_input.values():
            merged = groups[0]
            for g in groups[1:]:
                g = self.group[g.members[0]]
                merged = self.group[merged.members[0]]
                if g is not merged and g.verdict.kind == merged.verdict.kind == "reduction":
                    self.try_merge(merged, g)

    def merge_attention(self) -> None:
        """matmul -> softmax -> matmul (the softmax's output one of the second matmul's
        operands) becomes one attention group."""
        for softmax in self.groups():
            if self.group[softmax.members[0]] is not softmax or softmax.verdict.kind != "reduction":
                continue  # already merged into an attention group
            if patterns.reduction_pattern(softmax.members) != "softmax":
                continue
            firsts = [g for g in self._neighbours(softmax, producers=True) if g.verdict.kind == "matmul"]
            seconds = [g for g in self._neighbours(softmax, producers=False) if g.verdict.kind == "matmul"]
            for a, b in ((a, b) for a in firsts for b in seconds):
                if self.try_merge(a, softmax, b):
                    break

    def _neighbours(self, g: _Group, producers: bool) -> list[_Group]:
        out = []
        for op in g.members:
            linked = self.an.real_producers(op) if producers else self.an.real_users[op]
            for other in linked:
                og = self.group[other]
                if og is not g and og not in out:
                    out.append(og)
        return out


def partition(graph: Graph, level: str, fused_attention: bool = True) -> tuple[Analysis, Partition]:
    an = Analysis(graph, rematerialize=level != "O0")
    part = Partition(an)
    if level != "O0":
        part.greedy()
        part.move_widening_converts()
        part.merge_sibling_reductions()
        if fused_attention:
            part.merge_attention()
    return an, part


# --- from a partition to a kernel graph ----------------------------------------------


@dataclass(eq=False)
class _Draft:
    kind: str
    anchor: Op | None
    info: dict
    own: list[Op]                     # ops whose results this group may write
    ops: set[Op]                      # own ops, rematerialized copies, immediates
    position: int


def _draft_fused(g: _Group, an: Analysis) -> _Draft:
    ops = set(g.members)
    if g.verdict.kind != "opaque":
        for op in g.members:
            for s in an.sources(op):
                ops.update(s.remat)
    else:
        for v in effective_operands(g.members[0]):
            p = an.producer(v)
            if p is not None and an.cls[p] == "cheap" and v.type.rank == 0:
                ops.add(p)  # scalars are immediates even for opaque ops
    return _Draft(g.verdict.kind, g.verdict.anchor, dict(g.verdict.info), list(g.members), ops,
                  g.positions[0])


def _values_needing_memory(an: Analysis, drafts: list[_Draft]) -> list[Value]:
    """Rematerialized values and splat tensors that must exist in memory: operands of
    opaque ops, graph outputs, and rematerialized ops nobody uses (so they still run)."""
    needed: list[Value] = []
    for d in drafts:
        if d.kind != "opaque":
            continue
        for v in effective_operands(d.own[0]):
            p = an.producer(v)
            if p is not None and p not in d.ops and (an.is_remat(p) or an.cls[p] == "cheap"):
                needed.append(v)
    for v in an.graph.outputs:
        p = an.producer(v)
        if p is not None and (an.is_remat(p) or an.cls[p] == "cheap"):
            needed.append(v)
    needed += an.unused_remat
    return list(dict.fromkeys(needed))


def _draft_materialize(v: Value, an: Analysis) -> _Draft:
    src = an.resolve(v)
    return _Draft("elementwise", None, {"materialize": True}, [v.producer], set(src.remat),
                  an.pos[v.producer])


def build_kernel_graph(graph: Graph, an: Analysis, part: Partition) -> KernelGraph:
    drafts = [_draft_fused(g, an) for g in part.groups()]
    drafts += [_draft_materialize(v, an) for v in _values_needing_memory(an, drafts)]
    order = {op: i for i, op in enumerate(an.ops)}

    inputs = []
    for d in drafts:
        ins: list[Value] = []
        for op in sorted(d.ops, key=order.__getitem__):
            for v in effective_operands(op):
                if v.producer not in d.ops and v not in ins:
                    ins.append(v)
        inputs.append(ins)

    read_by = {}
    for i, ins in enumerate(inputs):
        for v in ins:
            read_by.setdefault(v, []).append(i)
    returned = set(graph.outputs)
    outputs, writer = [], {}
    for i, d in enumerate(drafts):
        outs = [r for op in sorted(d.own, key=order.__getitem__) for r in op.results
                if r in returned or any(j != i for j in read_by.get(r, ()))]
        if d.info.get("materialize"):
            outs = [r for r in d.own[0].results if r in returned or r in read_by]
        outputs.append(outs)
        for v in outs:
            writer[v] = i

    groups = []
    for new_id, i in enumerate(_execution_order(drafts, inputs, writer)):
        d = drafts[i]
        ops = sorted(d.ops, key=order.__getitem__)
        info = dict(d.info)
        if d.kind == "reduction":
            info["pattern"] = patterns.reduction_pattern(d.own)
        elif d.kind == "attention":
            info["pattern"] = "attention"
        elif d.kind in ("matmul", "conv"):
            act = patterns.activation(ops, patterns.zero_valued(ops))
            if act:
                info["activation"] = act
        groups.append(KernelGroup(new_id, d.kind, ops, inputs[i], outputs[i], d.anchor, info))
    return KernelGraph(graph, groups)


def _execution_order(drafts: list[_Draft], inputs: list[list[Value]], writer: dict) -> list[int]:
    """Groups in dependency order, ties broken by program order."""
    succ: dict[int, set[int]] = {i: set() for i in range(len(drafts))}
    pending = [0] * len(drafts)
    for i, ins in enumerate(inputs):
        for j in {writer[v] for v in ins if v in writer} - {i}:
            if i not in succ[j]:
                succ[j].add(i)
                pending[i] += 1
    ready = [(d.position, i) for i, d in enumerate(drafts) if pending[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for j in succ[i]:
            pending[j] -= 1
            if pending[j] == 0:
                heapq.heappush(ready, (drafts[j].position, j))
    if len(order) != len(drafts):
        raise AssertionError("fusion produced a cycle between kernel groups")
    return order


# --- statistics ------------------------------------------------------------------------


def statistics(kg: KernelGraph, an: Analysis) -> dict[str, int]:
    stats = {"groups": len(kg.groups)}
    counts = kg.counts()
    for kind in KINDS:
        stats[f"groups_{kind}"] = counts.get(kind, 0)
    computed = {op for op in an.ops if an.cls[op] not in ("cheap", "data")}  # not constants
    copies: dict[Op, int] = {}
    fused: set[Op] = set()  # ops sharing their kernel with another computed op
    for g in kg.groups:
        members = [op for op in g.ops if op in computed]
        if len(members) > 1:
            fused.update(members)
        for op in members:
            copies[op] = copies.get(op, 0) + 1
    stats["ops"] = len(computed)
    stats["ops_fused"] = len(fused)
    stats["ops_duplicated"] = sum(n - 1 for n in copies.values())
    stats["values_materialized"] = sum(1 for g in kg.groups if g.info.get("materialize"))
    for g in kg.groups:
        for key in ("pattern", "activation"):
            name = g.info.get(key)
            if name and name != "reduce":
                stats[f"pattern_{name}"] = stats.get(f"pattern_{name}", 0) + 1
    return stats


@register("fuse")
def fuse(graph: Graph, ctx: PassContext) -> dict[str, int]:
    an, part = partition(graph, ctx.options.level, ctx.options.capabilities.fused_attention)
    ctx.kernel_graph = build_kernel_graph(graph, an, part)
    return statistics(ctx.kernel_graph, an)
