"""Reading the attributes of one MLIR op into plain Python values.

Never iterate over all of an op's attributes: the bindings turn each into a Python object
on access, and a complex-typed dense attribute aborts the process there. Ask by name.
"""

from __future__ import annotations

from . import constants
from .mlir_types import tensor_type_from_text


def _ir():
    from jaxlib.mlir import ir
    return ir


def get(op, name: str):
    """The attribute `name` of `op`, or None."""
    attrs = op.attributes
    return attrs[name] if name in attrs else None


def has(op, name: str) -> bool:
    return name in op.attributes


def ints(attr) -> tuple[int, ...]:
    """DenseI64ArrayAttr (current StableHLO) or a 1-d DenseIntElementsAttr (older)."""
    ir = _ir()
    if isinstance(attr, (ir.DenseI64ArrayAttr, ir.DenseI32ArrayAttr, ir.DenseI16ArrayAttr,
                         ir.DenseI8ArrayAttr)):
        return tuple(int(x) for x in attr)
    if isinstance(attr, ir.ArrayAttr):
        return tuple(int(ir.IntegerAttr(a).value) for a in attr)
    return tuple(int(x) for x in dense_ints(attr).reshape(-1))


def bools(attr) -> tuple[bool, ...]:
    ir = _ir()
    if isinstance(attr, ir.DenseBoolArrayAttr):
        return tuple(bool(x) for x in attr)
    return tuple(bool(x) for x in dense_ints(attr).reshape(-1))


def pairs(attr) -> tuple[tuple[int, int], ...]:
    """An N x 2 integer tensor attribute (padding) as pairs."""
    values = dense_ints(attr).reshape(-1, 2)
    return tuple((int(lo), int(hi)) for lo, hi in values)


def dense_ints(attr):
    """An integer/bool DenseElementsAttr as a numpy array (read from its text)."""
    text = str(attr)
    _, body = constants.dense_body(text)
    type_text = text.rsplit(" : ", 1)[1].strip()
    return constants.from_dense_body(body, tensor_type_from_text(type_text))


def integer(attr) -> int:
    return int(_ir().IntegerAttr(attr).value)


def boolean(attr) -> bool:
    ir = _ir()
    if isinstance(attr, ir.BoolAttr):
        return bool(attr.value)
    return bool(ir.IntegerAttr(attr).value)


def string(attr) -> str:
    return str(_ir().StringAttr(attr).value)


def symbol(attr) -> str:
    return str(_ir().FlatSymbolRefAttr(attr).value)


def enum_value(cls, attr) -> str:
    """The spelling of a StableHLO enum attribute (comparison direction, precision...)."""
    return str(cls(attr).value)
