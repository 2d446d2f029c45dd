"""Helpers for passes that rewrite graphs in place: who uses a value, replacing uses,
removing ops. Regions see values of the regions around them, so every helper looks into
nested regions too."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from .graph import Graph, Op, Region, Value


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
