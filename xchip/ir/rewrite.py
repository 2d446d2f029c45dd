"""Helpers for passes that rewrite graphs in place: who uses a value, replacing uses,
removing ops. Regions see values of the regions around them, so every helper looks into
nested regions too."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

from . import ops
from .graph import Graph, Op, Region, Value
from .types import TensorType


def _region_of(target: Graph | Region) -> Region:
    return target.body if isinstance(target, Graph) else target


def uses(target: Graph | Region) -> dict[Value, list[Op]]:
    """value -> the ops that use it as an operand, at any depth (an op using a value twice
    appears twice)."""
    out: dict[Value, list[Op]] = defaultdict(list)
    for op in _region_of(target).walk():
        for v in op.operands:
            out[v].append(op)
    return out


def top_level_users(target: Graph | Region) -> dict[Value, list[Op]]:
    """value -> the ops of the top-level region that use it, directly or from inside one of
    their regions (each such op listed once per value)."""
    region = _region_of(target)
    out: dict[Value, list[Op]] = defaultdict(list)
    for op in region.ops:
        seen = set()
        for inner in [op, *(i for r in op.regions for i in r.walk())]:
            for v in inner.operands:
                if v not in seen:
                    seen.add(v)
                    out[v].append(op)
    return out


def replace_all_uses(target: Graph | Region, old: Value, new: Value) -> int:
    """Make every use of `old` (at any depth) use `new`; returns how many were replaced."""
    if old.type != new.type:
        raise ValueError(f"cannot replace a {old.type} value by a {new.type} one")
    count = 0
    for op in _region_of(target).walk():
        for i, v in enumerate(op.operands):
            if v is old:
                op.operands[i] = new
                count += 1
    return count


def replace_op(target: Graph | Region, op: Op, new_values: Iterable[Value]) -> None:
    """Replace every use of `op`'s results by `new_values` (the op itself stays; dead-code
    elimination removes it)."""
    new_values = list(new_values)
    if len(new_values) != len(op.results):
        raise ValueError(f"'{op.name}' has {len(op.results)} results, got {len(new_values)} replacements")
    for old, new in zip(op.results, new_values):
        replace_all_uses(target, old, new)


def defined_in(region: Region) -> set[Value]:
    """Values defined inside `region` (its arguments and its ops' results, at any depth)."""
    out = set(region.args)
    for op in region.walk():
        out.update(op.results)
        for r in op.regions:
            out.update(r.args)
    return out


def free_values(op: Op) -> set[Value]:
    """Values an op's regions use that are defined outside the op (implicit captures)."""
    inside: set[Value] = set()
    used: set[Value] = set()
    for r in op.regions:
        inside |= defined_in(r)
        for inner in r.walk():
            used.update(inner.operands)
    return used - inside


# --- constants and side effects -------------------------------------------------------------

def constant_value(v: Value) -> np.ndarray | None:
    """The array of `v` when a `constant` op produces it, else None."""
    op = v.producer
    if op is not None and op.name == "constant":
        return op.attrs["value"]
    return None


def splat_scalar(array: np.ndarray) -> np.ndarray | None:
    """The one element (a 0-d array) of an array whose elements are all bit-for-bit equal,
    else None (also for an empty array, which has no element to speak for it)."""
    if array.size == 0:
        return None
    flat = np.ascontiguousarray(array).reshape(-1)
    raw = flat.view(np.uint8).reshape(flat.size, -1)
    if not (raw == raw[0]).all():
        return None
    return flat[:1].reshape(())


def has_side_effect(op: Op) -> bool:
    """Whether running `op` (or an op in its regions) does more than compute its results."""
    if op.name == "custom_call" and op.attrs.get("has_side_effect", False):
        return True
    return any(has_side_effect(inner) for r in op.regions for inner in r.ops)


# --- forward rewriting ---------------------------------------------------------------------

class Rewriter:
    """One forward walk over a graph that lets `visit` replace ops, in place.

    Every op has its operands brought up to date first (replaced values swapped for their
    replacements), then its regions are walked, then `visit(op)` runs. `visit` returns None
    to keep the op (it may change the op in place), or the values that replace the op's
    results; the op is then dropped. Ops that `visit` builds go in with `insert` and land
    just before the op being visited (so they dominate every use of its results); they are
    visited in turn unless `revisit=False`.

    Because definitions come before uses in walk order, one walk replaces every use without
    a use list: the whole rewrite is linear in the size of the graph. `enter_region` and
    `leave_region` bracket each nested region (for scoped tables such as CSE's)."""

    def __init__(self):
        self._subst: dict[Value, Value] = {}
        self._inserted: list[tuple[Op, bool]] = []
        self.stats: dict[str, int] = {}

    # -- for subclasses --
    def visit(self, op: Op) -> list[Value] | None:
        return None

    def enter_region(self, region: Region, owner: Op) -> None:
        pass

    def leave_region(self, region: Region, owner: Op) -> None:
        pass

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    def value(self, v: Value) -> Value:
        """`v`, or what replaced it."""
        while v in self._subst:
            v = self._subst[v]
        return v

    def insert(self, op: Op, revisit: bool = True) -> Op:
        self._inserted.append((op, revisit))
        return op

    # -- the walk --
    def run(self, graph: Graph) -> dict[str, int]:
        self._region(graph.body)
        return self.stats

    def _region(self, region: Region) -> None:
        out: list[Op] = []
        for op in region.ops:
            self._emit(op, out, True)
        region.ops = out

    def _emit(self, op: Op, out: list[Op], visit: bool) -> None:
        op.operands = [self.value(v) for v in op.operands]
        if not visit:   # already walked (e.g. moved out of a region): keep as it is
            out.append(op)
            return
        for r in op.regions:
            self.enter_region(r, op)
            self._region(r)
            self.leave_region(r, op)
        outer, self._inserted = self._inserted, []
        new_values = self.visit(op)
        inserted, self._inserted = self._inserted, outer
        for new_op, revisit in inserted:
            self._emit(new_op, out, revisit)
        if new_values is None:
            out.append(op)
            return
        new_values = list(new_values)
        if len(new_values) != len(op.results):
            raise ValueError(f"'{op.name}' has {len(op.results)} results, got {len(new_values)} replacements")
        for old, new in zip(op.results, new_values):
            if new is old:
                continue
            if old.type != new.type:
                raise ValueError(f"cannot replace a {old.type} value of '{op.name}' by a {new.type} one")
            self._subst[old] = new
        if any(new is old for old, new in zip(op.results, new_values)):
            out.append(op)  # some results stay: the op stays


def splat_ops(scalar: np.ndarray, type: TensorType, max_elements: int, loc=None) -> list[Op]:
    """Ops that give a tensor of `type` with every element `scalar` (a 0-d array of its
    dtype, copied bit for bit): one constant of the whole shape when it has at most
    `max_elements` elements, else a scalar constant and a broadcast_in_dim. The last op's
    result is the tensor."""
    scalar = np.asarray(scalar).reshape(())
    if type.size <= max_elements:
        return [ops.make("constant", [], {"value": np.broadcast_to(scalar, type.shape).copy()}, loc=loc)]
    c = ops.make("constant", [], {"value": scalar.copy()}, loc=loc)
    return [c, ops.make("broadcast_in_dim", [c.result], {"broadcast_dimensions": ()}, [type], loc=loc)]
