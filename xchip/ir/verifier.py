"""Checks a graph against the rules of its ops. Messages name the op, its location and the
broken rule, e.g. `op 'add' at model.py:12:4: operand types differ: f32[4] and f32[8]`."""

from __future__ import annotations

import numpy as np

from ..errors import VerificationError
from . import ops
from .graph import Graph, Op, Region, Value

_KIND_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, float),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "ints": lambda v: isinstance(v, tuple) and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
    "bools": lambda v: isinstance(v, tuple) and all(isinstance(x, bool) for x in v),
    "strs": lambda v: isinstance(v, tuple) and all(isinstance(x, str) for x in v),
    "pairs": lambda v: isinstance(v, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in p)
        for p in v),
    "tensor": lambda v: isinstance(v, np.ndarray),
}


def _fail(op: Op, message: str) -> None:
    raise VerificationError(f"op {op.where()}: {message}")


def verify_op(op: Op) -> None:
    """Check one op's operand count, attributes, regions and result types."""
    s = ops.spec(op.name)
    if s is None:
        _fail(op, "unknown op")
    if s.operands is not None and len(op.operands) != s.operands:
        _fail(op, f"takes {s.operands} operands, got {len(op.operands)}")
    if s.results is not None and len(op.results) != s.results:
        _fail(op, f"has {s.results} results, got {len(op.results)}")
    if s.regions is not None and len(op.regions) != s.regions:
        _fail(op, f"has {s.regions} regions, got {len(op.regions)}")
    declared = {a.name for a in s.attrs}
    for name in op.attrs:
        if name not in declared:
            _fail(op, f"unknown attribute '{name}' (known: {', '.join(sorted(declared)) or 'none'})")
    for a in s.attrs:
        if a.name not in op.attrs:
            _fail(op, f"missing attribute '{a.name}' ({a.kind})")
        value = op.attrs[a.name]
        if not _KIND_CHECKS[a.kind](value):
            _fail(op, f"attribute '{a.name}' must be {a.kind}, got {value!r}")
        if a.choices and value not in a.choices:
            _fail(op, f"attribute '{a.name}' is '{value}', expected one of {', '.join(a.choices)}")
    if s.infer is None:
        return
    try:
        inferred = s.infer(op)
    except ops.OpRuleError as e:
        _fail(op, str(e))
    except Exception as e:  # a rule tripping over malformed input is still the op's fault
        _fail(op, f"malformed op ({type(e).__name__}: {e})")
    if inferred is not None and list(inferred) != op.result_types:
        _fail(op, f"result types ({', '.join(map(str, op.result_types))}) should be "
                  f"({', '.join(map(str, inferred))})")


def _verify_region(region: Region, visible: set[Value], what: str, owner: Op | None) -> None:
    scope = set(visible)
    scope.update(region.args)
    if not region.ops or region.ops[-1].name != "return":
        where = f"in op {owner.where()}" if owner else "in the graph body"
        raise VerificationError(f"{what} {where} does not end in 'return'")
    for i, op in enumerate(region.ops):
        if op.name == "return" and i != len(region.ops) - 1:
            _fail(op, "'return' must be the last op of its region")
        for j, v in enumerate(op.operands):
            if v not in scope:
                _fail(op, f"operand {j} ({v.type}) is not defined before its use")
        for k, r in enumerate(op.regions):
            _verify_region(r, scope, f"region {k}", op)
        verify_op(op)
        scope.update(op.results)


def verify(graph: Graph) -> Graph:
    """Raise VerificationError on the first broken rule; return the graph otherwise."""
    _verify_region(graph.body, set(), "body", None)
    return graph
