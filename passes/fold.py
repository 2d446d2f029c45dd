"""`fold-constants`: ops whose operands are all constants become constants.

The value comes from the reference executor, the oracle every backend is checked against,
so a folded program computes exactly what the reference computes for the original one.

An op is folded when its results have at most `ctx.options.fold_limit` elements in all and
evaluating it is cheap (a bounded multiple of that). Never folded: ops with side effects,
`custom_call` (the executor has no handlers for them), `optimization_barrier` (it exists to
stop this kind of thing), `while` (its trip count is unbounded; `inline` removes loops that
never run), `if`/`case` (`inline` takes their branches), and ops whose regions read values
from outside them. Ops without operands (`iota`, `constant`) stay as they are: folding them
gains nothing.

Statistics: folded_ops, too_large (over the element or work limit), not_evaluable.
"""

from __future__ import annotations

import math

import numpy as np

from xchip.errors import XchipError
from xchip.ir import Graph, Op, ops
from xchip.ir.rewrite import Rewriter, constant_value, free_values, has_side_effect
from xchip.runtime.reference import evaluate_op

from .manager import register

NEVER_FOLDED = frozenset({"constant", "return", "custom_call", "optimization_barrier", "while", "if", "case"})

# How much evaluation work folding one op may cost, in multiples of `fold_limit`.
WORK_FACTOR = 64


def _window_size(op: Op) -> int:
    return math.prod(op.attrs["window_dimensions"])


def evaluation_work(op: Op) -> int:
    """Roughly how many element operations the reference executor spends on `op`."""
    moved = sum(v.type.size for v in op.operands) + sum(r.type.size for r in op.results)
    if op.name == "reduce_window":
        return moved + op.results[0].type.size * _window_size(op) * max(1, len(op.results))
    if op.name == "select_and_scatter":
        return moved + op.operands[1].type.size * _window_size(op)
    if op.name == "sort":
        n = op.operands[0].type.size
        return moved + n * max(1, n.bit_length()) * len(op.operands)
    return moved + ops.flops(op)


def _foldable(op: Op) -> bool:
    if op.name in NEVER_FOLDED or not op.operands or has_side_effect(op):
        return False
    if any(inner.name == "custom_call" for r in op.regions for inner in r.walk()):
        return False
    if op.regions and free_values(op):
        return False   # evaluate_op runs regions on their own arguments only
    return all(constant_value(v) is not None for v in op.operands)


def _read_only(array: np.ndarray) -> np.ndarray:
    """A view the executor cannot write through: the constant stays as it was."""
    view = array.view()
    view.flags.writeable = False
    return view


class _Folder(Rewriter):
    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def visit(self, op: Op):
        if not _foldable(op):
            return None
        if sum(r.type.size for r in op.results) > self.limit or evaluation_work(op) > WORK_FACTOR * self.limit:
            self.count("too_large")
            return None
        try:
            arrays = evaluate_op(op, [_read_only(constant_value(v)) for v in op.operands])
        except XchipError:
            self.count("not_evaluable")
            return None
        values = [np.array(a, order="C", copy=True) for a in arrays]
        if [(v.dtype, v.shape) for v in values] != [(r.type.dtype.numpy, r.type.shape) for r in op.results]:
            return None   # the executor disagrees with the op's types: leave the op alone
        self.count("folded_ops")
        return [self.insert(ops.make("constant", [], {"value": v}, loc=op.loc), revisit=False).result
                for v in values]


@register("fold-constants")
def fold_constants(graph: Graph, ctx) -> dict[str, int]:
    return _Folder(ctx.options.fold_limit).run(graph)
