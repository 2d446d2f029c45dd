"""`canonicalize`: shape and conversion ops in one standard form, each rewrite exact.

- broadcast_in_dim of broadcast_in_dim → one broadcast_in_dim;
- reshape of reshape → one reshape;
- transpose of transpose → one transpose, or none when the permutations cancel;
- transpose of broadcast_in_dim → one broadcast_in_dim (its dimensions permuted);
- convert of convert → one convert when the first conversion loses nothing
  (f16→f32→f64 = f16→f64, i8→i32→f32 = i8→f32; never f32→f16→f32). One exception:
  an integer that went through a float to an integer converts saturating, straight from
  integer to integer it wraps, so that chain only merges when no value can wrap;
- ops that change nothing disappear: slice of everything, reshape/convert to the same type,
  identity transpose, broadcast_in_dim to the same shape in order, pad by zero, reverse of no
  dimension (or of dimensions of size 1), concatenate of one operand (operands of length
  zero along the dimension are dropped first);
- broadcast_in_dim, reshape, transpose, slice or reverse of a splat constant → a splat
  constant of the result shape when it has at most `fold_limit` elements, else a scalar
  constant broadcast to that shape; a splat constant over `fold_limit` elements → a scalar
  constant broadcast to its shape.

Statistics: merged_broadcasts, merged_reshapes, merged_transposes, transposed_broadcasts,
merged_converts, removed_noops, dropped_empty_operands, splat_constants, splat_broadcasts.
"""

from __future__ import annotations

import numpy as np

from xchip.ir import Graph, Op, Value, ops
from xchip.ir.dtypes import DType
from xchip.ir.rewrite import Rewriter, constant_value, splat_ops, splat_scalar

from .manager import register

# (exponent bits, explicit mantissa bits) of each float type: one holds every value of
# another (infinities, NaN, subnormals included) when it has at least as many of both.
_FLOAT_BITS = {"f8e4m3fn": (4, 3), "f8e5m2": (5, 2), "f16": (5, 10), "bf16": (8, 7),
               "f32": (8, 23), "f64": (11, 52)}


def holds_every_value(a: DType, b: DType) -> bool:
    """Whether converting a to b is exact for every value of a (complex types excluded)."""
    if a == b:
        return True
    if a.is_complex or b.is_complex:
        return False
    if a.kind == "bool":
        return True
    if b.kind == "bool" or a.is_float and not b.is_float:
        return False
    if a.is_integer and b.is_integer:
        if a.kind == b.kind:
            return a.bits <= b.bits
        return a.kind == "uint" and a.bits < b.bits   # u8 fits i16; no negative fits a uint
    if a.is_integer:   # to a float: every integer below 2**(mantissa bits + 1) is exact
        value_bits = a.bits - (1 if a.kind == "int" else 0)
        return value_bits <= _FLOAT_BITS[b.name][1] + 1
    (ea, ma), (eb, mb) = _FLOAT_BITS[a.name], _FLOAT_BITS[b.name]
    return ea <= eb and ma <= mb


def convert_chain_merges(a: DType, b: DType, c: DType) -> bool:
    """Whether convert(convert(x: a, b), c) == convert(x, c) for every x."""
    if not holds_every_value(a, b) or c.is_complex:
        return False
    if a.is_integer and b.is_float and c.is_integer:
        return holds_every_value(a, c)   # saturating vs wrapping only differ out of range
    return True


def _splat_operand(op: Op) -> np.ndarray | None:
    value = constant_value(op.operands[0])
    return None if value is None else splat_scalar(value)


class _Canonicalizer(Rewriter):
    def __init__(self, fold_limit: int):
        super().__init__()
        self.fold_limit = fold_limit

    def visit(self, op: Op):
        rule = getattr(self, "rule_" + op.name, None)
        if rule is None:
            return None
        out = rule(op)
        return None if out is None else [out]

    # -- helpers --
    def make(self, name: str, operands, attrs=None, result_type=None, loc=None) -> Value:
        types = None if result_type is None else [result_type]
        return self.insert(ops.make(name, operands, attrs, types, loc=loc)).result

    def splat(self, op: Op) -> Value | None:
        """A splat constant operand made a splat of the op's result shape."""
        scalar = _splat_operand(op)
        if scalar is None:
            return None
        rt = op.result.type
        if rt.size > self.fold_limit and op.name == "broadcast_in_dim" and op.operands[0].type.rank == 0:
            return None   # already the form a splat over the limit takes
        new_ops = splat_ops(scalar, rt, self.fold_limit, op.loc)
        self.count("splat_constants" if len(new_ops) == 1 else "splat_broadcasts")
        for new in new_ops:
            self.insert(new, revisit=False)
        return new_ops[-1].result

    def noop(self, op: Op) -> Value:
        self.count("removed_noops")
        return op.operands[0]

    # -- rules --
    def rule_constant(self, op: Op):
        """A splat constant over the limit becomes a scalar broadcast: later passes then
        see a splat without scanning the whole array again and again."""
        value = op.attrs["value"]
        if value.size <= self.fold_limit or value.ndim == 0:
            return None
        scalar = splat_scalar(value)
        if scalar is None:
            return None
        new_ops = splat_ops(scalar, op.result.type, self.fold_limit, op.loc)
        self.count("splat_broadcasts")
        for new in new_ops:
            self.insert(new, revisit=False)
        return new_ops[-1].result

    def rule_broadcast_in_dim(self, op: Op):
        x = op.operands[0]
        dims = op.attrs["broadcast_dimensions"]
        if x.type == op.result.type and tuple(dims) == tuple(range(x.type.rank)):
            return self.noop(op)
        splat = self.splat(op)
        if splat is not None:
            return splat
        inner = x.producer
        if inner is not None and inner.name == "broadcast_in_dim":
            self.count("merged_broadcasts")
            merged = tuple(dims[d] for d in inner.attrs["broadcast_dimensions"])
            return self.make("broadcast_in_dim", [inner.operands[0]], {"broadcast_dimensions": merged},
                             op.result.type, op.loc)
        return None

    def rule_reshape(self, op: Op):
        x = op.operands[0]
        if x.type == op.result.type:
            return self.noop(op)
        splat = self.splat(op)
        if splat is not None:
            return splat
        inner = x.producer
        if inner is not None and inner.name == "reshape":
            self.count("merged_reshapes")
            return self.make("reshape", [inner.operands[0]], {}, op.result.type, op.loc)
        return None

    def rule_transpose(self, op: Op):
        x = op.operands[0]
        perm = tuple(op.attrs["permutation"])
        if perm == tuple(range(len(perm))):
            return self.noop(op)
        splat = self.splat(op)
        if splat is not None:
            return splat
        inner = x.producer
        if inner is not None and inner.name == "transpose":
            self.count("merged_transposes")
            composed = tuple(inner.attrs["permutation"][p] for p in perm)
            return self.make("transpose", [inner.operands[0]], {"permutation": composed}, loc=op.loc)
        if inner is not None and inner.name == "broadcast_in_dim":
            # result dimension i is the broadcast's dimension perm[i]
            self.count("transposed_broadcasts")
            where = {p: i for i, p in enumerate(perm)}
            dims = tuple(where[d] for d in inner.attrs["broadcast_dimensions"])
            return self.make("broadcast_in_dim", [inner.operands[0]], {"broadcast_dimensions": dims},
                             op.result.type, op.loc)
        return None

    def rule_convert(self, op: Op):
        x = op.operands[0]
        if x.type == op.result.type:
            return self.noop(op)
        inner = x.producer
        if inner is not None and inner.name == "convert":
            src = inner.operands[0]
            if convert_chain_merges(src.dtype, x.dtype, op.result.type.dtype):
                self.count("merged_converts")
                if src.type == op.result.type:
                    return src
                return self.make("convert", [src], {}, op.result.type, op.loc)
        return None

    def rule_slice(self, op: Op):
        x = op.operands[0]
        # same shape from index 0 on: each stride is 1 or steps over a dimension of size <= 1
        if x.type == op.result.type and not any(op.attrs["start_indices"]):
            return self.noop(op)
        return self.splat(op)

    def rule_reverse(self, op: Op):
        x = op.operands[0]
        if all(x.type.shape[d] <= 1 for d in op.attrs["dimensions"]):
            return self.noop(op)
        return self.splat(op)

    def rule_pad(self, op: Op):
        a = op.attrs
        if not any(a["edge_padding_low"]) and not any(a["edge_padding_high"]) and not any(a["interior_padding"]):
            return self.noop(op)
        return None

    def rule_concatenate(self, op: Op):
        d = op.attrs["dimension"]
        operands = [v for v in op.operands if v.type.shape[d] > 0] or op.operands[:1]
        if len(operands) == 1:
            self.count("removed_noops")
            return operands[0]
        if len(operands) < len(op.operands):
            self.count("dropped_empty_operands", len(op.operands) - len(operands))
            return self.make("concatenate", operands, {"dimension": d}, loc=op.loc)
        return None


@register("canonicalize")
def canonicalize(graph: Graph, ctx) -> dict[str, int]:
    return _Canonicalizer(ctx.options.fold_limit).run(graph)
