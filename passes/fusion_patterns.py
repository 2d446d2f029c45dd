"""Names for what a fused group computes, read off its ops: the reduction patterns
(softmax, log_softmax, layernorm, rmsnorm) and the activation of a matmul or conv epilogue.

The names are information for people, statistics and backends that have a hand-written
kernel for a pattern; the partition itself never depends on them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from xchip.ir.graph import Op

REDUCTION_PATTERNS = ("softmax", "log_softmax", "layernorm", "rmsnorm", "reduce")
ACTIVATIONS = ("relu", "gelu_tanh", "gelu_erf", "sigmoid", "tanh")

# GELU's constants: 0.044715 in the tanh form, 1/sqrt(2) in the erf form. bf16 rounds them
# (0.044677..., 0.70703...), so they are matched loosely.
_GELU_TANH_CUBIC = 0.044715
_INV_SQRT2 = 0.7071067811865476


def reducer(op: Op) -> str:
    """The combining op of a single-input reduce's body (add, maximum, ...), else 'other'."""
    body = [o for o in op.regions[0].ops if o.name != "return"]
    if len(op.operands) == 2 and len(body) == 1:
        return body[0].name
    return "other"


def reduction_pattern(ops: list[Op]) -> str:
    reduces = [op for op in ops if op.name in ("reduce", "reduce_window")]
    if not reduces or any(op.name == "reduce_window" for op in reduces):
        return "reduce"
    kinds = Counter(reducer(op) for op in reduces)
    sums, maxes = kinds.pop("add", 0), kinds.pop("maximum", 0)
    if kinds:
        return "reduce"
    names = {op.name for op in ops}
    if sums == 1 and maxes <= 1 and "exponential" in names:
        return "log_softmax" if "log" in names else "softmax"
    if maxes == 0 and names & {"rsqrt", "sqrt"} and _scales_rows(ops, reduces):
        # Layernorm needs the mean and the variance; rmsnorm only the mean of squares.
        if sums == 2:
            return "layernorm"
        if sums == 1:
            return "rmsnorm"
    return "reduce"


def _scales_rows(ops: list[Op], reduces: list[Op]) -> bool:
    """Whether the statistics are applied back to whole rows (a norm, not just a norm's value):
    a multiply or divide of the reduces' input shape after the last reduce."""
    rows = reduces[0].operands[0].shape
    after = ops[ops.index(reduces[-1]) + 1:]
    return any(op.name in ("multiply", "divide") and op.results[0].shape == rows for op in after)


def _constant_values(ops: list[Op]) -> list[float]:
    out = []
    for op in ops:
        if op.name == "constant" and op.attrs["value"].size >= 1:
            x = np.asarray(op.attrs["value"]).reshape(-1)[0]
            if np.isrealobj(x):
                try:
                    out.append(float(x))
                except (TypeError, ValueError):
                    pass
    return out


def _near(values: list[float], target: float, rel: float = 2e-3) -> bool:
    return any(abs(v - target) <= rel * abs(target) for v in values)


def activation(ops: list[Op], zero_ops: set[Op]) -> str | None:
    """The activation in a matmul/conv epilogue (`ops`: the group's ops with constants;
    `zero_ops`: ops whose result is known to be all zeros), or None."""
    names = {op.name for op in ops}
    values = _constant_values(ops)
    if "tanh" in names and _near(values, _GELU_TANH_CUBIC):
        return "gelu_tanh"
    if _near(values, _INV_SQRT2) and _near(values, 0.5):
        return "gelu_erf"
    for op in ops:
        if op.name == "maximum" and any(v.producer in zero_ops for v in op.operands):
            return "relu"
    if "logistic" in names:
        return "sigmoid"
    if "tanh" in names:
        return "tanh"
    return None


def zero_valued(ops: list[Op]) -> set[Op]:
    """Ops (among constants and broadcasts of them) whose every element is zero."""
    zeros: set[Op] = set()
    for op in ops:
        if op.name == "constant":
            value = op.attrs["value"]
            if value.size >= 1 and np.isrealobj(value) and not np.any(value.astype(np.float64)):
                zeros.add(op)
        elif op.name in ("broadcast_in_dim", "convert", "reshape") and op.operands[0].producer in zeros:
            zeros.add(op)
    return zeros
