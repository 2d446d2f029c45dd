"""Clean-up passes: `inline`, `dce`, `cse`.

`inline`: xchip IR has no calls (the importer already inlines `func.call`), so inlining
here means replacing control flow whose outcome is known by the ops it would run:
- `if` with a constant predicate: the taken branch's ops, in place of the `if`;
- `case` with a constant index: that branch (an index out of range takes the last one, as
  the spec says); a `case` with one branch: that branch;
- `if`/`case` whose branches are structurally identical: the first branch (the selector
  no longer matters; it is an SSA value, so skipping it skips no side effect);
- `while` whose condition returns a constant false and has no side effect: its operands
  (the body never runs).
Control flow with an `optimization_barrier` anywhere in its regions stays: the barrier asks
for that computation to stay as written. Inlined branch ops may use values from around the
`if`; they still see them, since they land just before it.
Statistics: if_constant, case_constant, case_single_branch, identical_branches,
while_never_runs.

`dce`: removes ops whose results are unused and that have no side effect (a `custom_call`
with `has_side_effect`, or an op with one in its regions, stays), inside regions too.
Statistics: removed_ops (nested ops included).

`cse`: an op equal to an earlier one (same name, operands, attributes, result types, and
structurally identical regions) is replaced by the earlier one. Constants compare by dtype,
shape and bytes, so -0.0 and 0.0 (or two NaN payloads) stay apart. An op may reuse one from
an enclosing region, never one from a nested region (that value is not visible outside it).
Side-effecting ops and `optimization_barrier` are never merged. Statistics: reused_ops.
"""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np

from xchip.ir import Graph, Op, Region, Value
from xchip.ir.rewrite import Rewriter, constant_value, has_side_effect

from .manager import register

# --- structural keys (shared by `cse` and `inline`) ----------------------------------------


def attr_key(value) -> tuple:
    """A hashable form of an attribute value that tells apart what Python's == does not:
    -0.0 from 0.0, NaN from NaN, True from 1, arrays by dtype, shape and bytes."""
    if isinstance(value, np.ndarray):
        return ("tensor", value.dtype.name, value.shape, np.ascontiguousarray(value).tobytes())
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, tuple):
        return ("tuple",) + tuple(attr_key(v) for v in value)
    return (type(value).__name__, value)


def op_key(op: Op, local: dict[Value, int] | None = None) -> tuple:
    """What makes two ops compute the same thing. Operands defined inside the regions being
    compared (in `local`) are numbered in order of definition; any other operand is the
    Value itself (the same SSA value)."""
    local = {} if local is None else local
    operands = tuple(("local", local[v]) if v in local else v for v in op.operands)
    attrs = tuple(sorted((k, attr_key(v)) for k, v in op.attrs.items()))
    regions = tuple(region_key(r, local) for r in op.regions)
    return (op.name, operands, attrs, tuple(op.result_types), regions)


def region_key(region: Region, local: dict[Value, int] | None = None) -> tuple:
    local = {} if local is None else local
    for a in region.args:
        local[a] = len(local)
    items = [tuple(a.type for a in region.args)]
    for op in region.ops:
        items.append(op_key(op, local))
        for r in op.results:
            local[r] = len(local)
    return tuple(items)


def _has_barrier(region: Region) -> bool:
    return any(op.name == "optimization_barrier" for op in region.walk())


# --- inline --------------------------------------------------------------------------------


class _Inliner(Rewriter):
    def visit(self, op: Op):
        if op.name == "while":
            return self._dead_while(op)
        if op.name not in ("if", "case"):
            return None
        branch, why = self._known_branch(op)
        if branch is None or any(_has_barrier(r) for r in op.regions):
            return None
        for inner in branch.ops[:-1]:
            self.insert(inner, revisit=False)   # walked already, with the region
        self.count(why)
        return [self.value(v) for v in branch.outputs]

    def _known_branch(self, op: Op) -> tuple[Region | None, str]:
        selector = constant_value(op.operands[0])
        if selector is not None:
            if op.name == "if":
                return (op.regions[0] if bool(selector) else op.regions[1]), "if_constant"
            i = int(selector)
            if not 0 <= i < len(op.regions):
                i = len(op.regions) - 1
            return op.regions[i], "case_constant"
        if len(op.regions) == 1:
            return op.regions[0], "case_single_branch"
        first = region_key(op.regions[0])
        if all(region_key(r) == first for r in op.regions[1:]):
            return op.regions[0], "identical_branches"
        return None, ""

    def _dead_while(self, op: Op):
        cond = op.regions[0]
        go = constant_value(cond.outputs[0])
        # the condition runs once even when false: only drop it when that run is pure
        if go is None or bool(go) or any(has_side_effect(inner) for inner in cond.ops):
            return None
        if any(_has_barrier(r) for r in op.regions):
            return None
        self.count("while_never_runs")
        return list(op.operands)


@register("inline")
def inline(graph: Graph, ctx) -> dict[str, int]:
    return _Inliner().run(graph)


# --- dce -----------------------------------------------------------------------------------


def _count_uses(graph: Graph) -> Counter:
    uses: Counter = Counter()
    for op in graph.walk():
        uses.update(op.operands)
    return uses


def _sweep(region: Region, uses: Counter) -> int:
    """Drop dead ops of `region` and its nested regions, last op first, so that an op's
    operands lose that use before their producers (earlier ops) are looked at."""
    removed = 0
    kept: list[Op] = []
    for op in reversed(region.ops):
        dead = (op.name != "return" and not has_side_effect(op)
                and all(uses[r] == 0 for r in op.results))
        if dead:
            for inner in [op, *(i for r in op.regions for i in r.walk())]:
                uses.subtract(inner.operands)
                removed += 1
            continue
        for r in op.regions:
            removed += _sweep(r, uses)
        kept.append(op)
    kept.reverse()
    region.ops = kept
    return removed


@register("dce")
def dce(graph: Graph, ctx) -> dict[str, int]:
    return {"removed_ops": _sweep(graph.body, _count_uses(graph))}


# --- cse -----------------------------------------------------------------------------------


class _CSE(Rewriter):
    def __init__(self):
        super().__init__()
        self.scopes: list[dict[tuple, Op]] = [{}]

    def enter_region(self, region, owner):
        self.scopes.append({})

    def leave_region(self, region, owner):
        self.scopes.pop()

    def visit(self, op: Op):
        # a barrier exists to keep values apart; an op with no results is kept for its effect
        if op.name in ("return", "optimization_barrier") or not op.results or has_side_effect(op):
            return None
        key = op_key(op)
        for scope in reversed(self.scopes):
            first = scope.get(key)
            if first is not None:
                self.count("reused_ops")
                return list(first.results)
        self.scopes[-1][key] = op
        return None


@register("cse")
def cse(graph: Graph, ctx) -> dict[str, int]:
    return _CSE().run(graph)
