"""The ops of xchip IR: operands, attributes, regions, and result-type rules.

Op names and attribute names follow the StableHLO specification, without the `stablehlo.`
prefix and with dimension-number structs flattened into plain attributes (`gather` has
`offset_dims`, `collapsed_slice_dims`, ... directly). Every attribute an op declares is
present on every op of that kind (the importer and `make` fill defaults), so consumers
never guess.

`infer_types(op)` gives the result types an op must have, or None where they are free
(`convert`'s dtype, `dot_general`'s accumulation type come from the op's declared types
and are only checked for shape). It raises `OpRuleError` with the reason when the operands
or attributes break the op's rules; the verifier adds the op's name and location.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import dtypes
from .dtypes import DType
from .graph import Location, Op, Region, Value
from .types import TensorType

REQUIRED = object()

ATTR_KINDS = ("int", "float", "bool", "str", "ints", "bools", "pairs", "strs", "tensor")


class OpRuleError(Exception):
    """An op breaks a rule of its kind; the verifier turns this into a VerificationError."""


@dataclass(frozen=True)
class Attr:
    name: str
    kind: str
    default: object = REQUIRED
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class OpSpec:
    name: str
    category: str                      # elementwise|shape|matmul|conv|reduction|data|control|constant|meta
    operands: int | None               # exact count, or None when variadic
    attrs: tuple[Attr, ...] = ()
    regions: int | None = 0            # exact count, or None when variadic (case)
    results: int | None = 1            # exact count, or None when variadic
    infer: Callable[[Op], list[TensorType] | None] | None = None
    doc: str = ""
    region_names: tuple[str, ...] = field(default=())

    def attr(self, name: str) -> Attr:
        for a in self.attrs:
            if a.name == name:
                return a
        raise KeyError(name)


SPECS: dict[str, OpSpec] = {}


def _register(spec: OpSpec) -> OpSpec:
    SPECS[spec.name] = spec
    return spec


def spec(name: str) -> OpSpec | None:
    return SPECS.get(name)


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise OpRuleError(message)


def _types(op: Op) -> list[TensorType]:
    return [v.type for v in op.operands]


# --- elementwise ---------------------------------------------------------------------------

def _dtype_rule(allowed: str) -> Callable[[DType], bool]:
    return {
        "any": lambda d: True,
        "numeric": lambda d: d.kind != "bool",
        "float": lambda d: d.is_float,
        "float_or_complex": lambda d: d.is_float or d.is_complex,
        "integer": lambda d: d.is_integer,
        "int_or_bool": lambda d: d.is_integer or d.kind == "bool",
        "signed_or_float": lambda d: d.kind in ("int", "float", "complex"),
        "int_or_float": lambda d: d.is_integer or d.is_float,
        "complex": lambda d: d.is_complex,
    }[allowed]


def _unary(name: str, allowed: str, result: Callable[[DType], DType] | None = None, doc: str = ""):
    ok = _dtype_rule(allowed)

    def infer(op: Op):
        (t,) = _types(op)
        _need(ok(t.dtype), f"operand dtype {t.dtype} not allowed (needs {allowed.replace('_', ' ')})")
        return [TensorType(t.shape, result(t.dtype) if result else t.dtype)]

    _register(OpSpec(name, "elementwise", 1, infer=infer, doc=doc))


def _binary(name: str, allowed: str, doc: str = ""):
    ok = _dtype_rule(allowed)

    def infer(op: Op):
        a, b = _types(op)
        _need(a == b, f"operand types differ: {a} and {b}")
        _need(ok(a.dtype), f"operand dtype {a.dtype} not allowed (needs {allowed.replace('_', ' ')})")
        return [a]

    _register(OpSpec(name, "elementwise", 2, infer=infer, doc=doc))


for _n in ("cosine", "sine", "tan", "tanh", "exponential", "exponential_minus_one", "log",
           "log_plus_one", "logistic", "rsqrt", "sqrt"):
    _unary(_n, "float_or_complex")
_unary("cbrt", "float")
for _n in ("ceil", "floor", "round_nearest_afz", "round_nearest_even"):
    _unary(_n, "float")
_unary("negate", "numeric")
_unary("sign", "signed_or_float")
_unary("abs", "signed_or_float", dtypes.real_part)
_unary("real", "float_or_complex", dtypes.real_part)
_unary("imag", "float_or_complex", dtypes.real_part)
_unary("is_finite", "float", lambda d: dtypes.BOOL)
_unary("not", "int_or_bool")
_unary("popcnt", "integer")
_unary("count_leading_zeros", "integer")

for _n in ("add", "multiply"):
    _binary(_n, "any")
for _n in ("subtract", "divide"):
    _binary(_n, "numeric")
_binary("remainder", "numeric")
_binary("power", "numeric")
_binary("maximum", "any")
_binary("minimum", "any")
_binary("atan2", "float_or_complex")
for _n in ("and", "or", "xor"):
    _binary(_n, "int_or_bool")
for _n in ("shift_left", "shift_right_arithmetic", "shift_right_logical"):
    _binary(_n, "integer")


def _infer_complex(op: Op):
    a, b = _types(op)
    _need(a == b, f"operand types differ: {a} and {b}")
    _need(a.dtype in (dtypes.F32, dtypes.F64), f"operands must be f32 or f64, not {a.dtype}")
    return [TensorType(a.shape, dtypes.complex_of(a.dtype))]


_register(OpSpec("complex", "elementwise", 2, infer=_infer_complex))

COMPARISON_DIRECTIONS = ("EQ", "NE", "GE", "GT", "LE", "LT")
COMPARE_TYPES = ("FLOAT", "TOTALORDER", "SIGNED", "UNSIGNED", "NOTYPE")


def _infer_compare(op: Op):
    a, b = _types(op)
    _need(a == b, f"operand types differ: {a} and {b}")
    return [TensorType(a.shape, dtypes.BOOL)]


_register(OpSpec("compare", "elementwise", 2, (
    Attr("comparison_direction", "str", choices=COMPARISON_DIRECTIONS),
    Attr("compare_type", "str", "NOTYPE", COMPARE_TYPES)), infer=_infer_compare))


def _infer_convert(op: Op):
    (t,) = _types(op)
    (r,) = op.result_types
    _need(r.shape == t.shape, f"result shape {r.shape} differs from operand shape {t.shape}")
    return None


_register(OpSpec("convert", "elementwise", 1, infer=_infer_convert))


def _infer_bitcast(op: Op):
    (t,) = _types(op)
    (r,) = op.result_types
    a, b = t.dtype.bits if t.dtype.kind != "bool" else 8, r.dtype.bits if r.dtype.kind != "bool" else 8
    if a == b:
        _need(r.shape == t.shape, f"result shape {r.shape} differs from operand shape {t.shape}")
    elif a > b:
        _need(r.shape == t.shape + (a // b,), f"result shape {r.shape} must be {t.shape + (a // b,)}")
    else:
        _need(t.shape[-1:] == (b // a,) and r.shape == t.shape[:-1],
              f"operand shape {t.shape} must end in {b // a} and result be {t.shape[:-1]}")
    return None


_register(OpSpec("bitcast_convert", "elementwise", 1, infer=_infer_bitcast))


def _infer_reduce_precision(op: Op):
    (t,) = _types(op)
    _need(t.dtype.is_float, f"operand dtype {t.dtype} must be a float")
    _need(op.attrs["exponent_bits"] >= 1 and op.attrs["mantissa_bits"] >= 0, "bit counts out of range")
    return [t]


_register(OpSpec("reduce_precision", "elementwise", 1, (
    Attr("exponent_bits", "int"), Attr("mantissa_bits", "int")), infer=_infer_reduce_precision))


def _infer_select(op: Op):
    p, a, b = _types(op)
    _need(a == b, f"on_true and on_false types differ: {a} and {b}")
    _need(p.dtype == dtypes.BOOL, f"predicate must be bool, not {p.dtype}")
    _need(p.shape in ((), a.shape), f"predicate shape {p.shape} must be () or {a.shape}")
    return [a]


def _infer_clamp(op: Op):
    lo, x, hi = _types(op)
    for name, t in (("min", lo), ("max", hi)):
        _need(t.dtype == x.dtype, f"{name} dtype {t.dtype} differs from operand dtype {x.dtype}")
        _need(t.shape in ((), x.shape), f"{name} shape {t.shape} must be () or {x.shape}")
    return [x]


_register(OpSpec("select", "elementwise", 3, infer=_infer_select, doc="select(pred, on_true, on_false)"))
_register(OpSpec("clamp", "elementwise", 3, infer=_infer_clamp, doc="clamp(min, operand, max)"))

# --- constants and shapes ------------------------------------------------------------------


def _infer_constant(op: Op):
    value = op.attrs["value"]
    _need(isinstance(value, np.ndarray), "value must be a numpy array")
    return [TensorType(value.shape, dtypes.from_numpy(value.dtype))]


_register(OpSpec("constant", "constant", 0, (Attr("value", "tensor"),), infer=_infer_constant))


def _infer_iota(op: Op):
    (r,) = op.result_types
    _need(0 <= op.attrs["iota_dimension"] < max(r.rank, 1), "iota_dimension out of range")
    _need(r.dtype.kind != "bool", "iota of bool")
    return None


_register(OpSpec("iota", "constant", 0, (Attr("iota_dimension", "int"),), infer=_infer_iota))


def _infer_broadcast_in_dim(op: Op):
    (t,) = _types(op)
    (r,) = op.result_types
    dims = op.attrs["broadcast_dimensions"]
    _need(len(dims) == t.rank, f"broadcast_dimensions {list(dims)} must have {t.rank} entries")
    _need(len(set(dims)) == len(dims) and all(0 <= d < r.rank for d in dims),
          f"broadcast_dimensions {list(dims)} must be distinct dimensions of the result")
    for i, d in enumerate(dims):
        _need(t.shape[i] in (1, r.shape[d]),
              f"operand dimension {i} of size {t.shape[i]} cannot broadcast to {r.shape[d]}")
    return [r.with_dtype(t.dtype)]


_register(OpSpec("broadcast_in_dim", "shape", 1, (Attr("broadcast_dimensions", "ints"),),
                 infer=_infer_broadcast_in_dim))


def _infer_reshape(op: Op):
    (t,) = _types(op)
    (r,) = op.result_types
    _need(r.size == t.size, f"cannot reshape {t} ({t.size} elements) to {r.shape}")
    return [r.with_dtype(t.dtype)]


_register(OpSpec("reshape", "shape", 1, infer=_infer_reshape))


def _infer_transpose(op: Op):
    (t,) = _types(op)
    perm = op.attrs["permutation"]
    _need(sorted(perm) == list(range(t.rank)), f"permutation {list(perm)} is not a permutation of rank {t.rank}")
    return [t.with_shape(t.shape[p] for p in perm)]


_register(OpSpec("transpose", "shape", 1, (Attr("permutation", "ints"),), infer=_infer_transpose))


def _infer_slice(op: Op):
    (t,) = _types(op)
    start, limit, strides = (op.attrs[k] for k in ("start_indices", "limit_indices", "strides"))
    _need(len(start) == len(limit) == len(strides) == t.rank, "slice attributes must have one entry per dimension")
    shape = []
    for d, (s, e, k) in enumerate(zip(start, limit, strides)):
        _need(0 <= s <= e <= t.shape[d] and k > 0, f"slice [{s}:{e}:{k}] out of range for dimension {d} of {t}")
        shape.append((e - s + k - 1) // k)
    return [t.with_shape(shape)]


_register(OpSpec("slice", "shape", 1, (Attr("start_indices", "ints"), Attr("limit_indices", "ints"),
                                       Attr("strides", "ints")), infer=_infer_slice))


def _check_scalar_indices(indices: list[TensorType], rank: int) -> None:
    _need(len(indices) == rank, f"needs {rank} start indices, got {len(indices)}")
    for t in indices:
        _need(t.rank == 0 and t.dtype.is_integer, f"start index must be an integer scalar, not {t}")


def _infer_dynamic_slice(op: Op):
    t, *idx = _types(op)
    _check_scalar_indices(idx, t.rank)
    sizes = op.attrs["slice_sizes"]
    _need(len(sizes) == t.rank and all(0 <= s <= d for s, d in zip(sizes, t.shape)),
          f"slice_sizes {list(sizes)} do not fit {t}")
    return [t.with_shape(sizes)]


_register(OpSpec("dynamic_slice", "data", None, (Attr("slice_sizes", "ints"),), infer=_infer_dynamic_slice,
                 doc="dynamic_slice(operand, *start_indices)"))


def _infer_dynamic_update_slice(op: Op):
    t, u, *idx = _types(op)
    _check_scalar_indices(idx, t.rank)
    _need(u.dtype == t.dtype and u.rank == t.rank and all(a <= b for a, b in zip(u.shape, t.shape)),
          f"update {u} does not fit operand {t}")
    return [t]


_register(OpSpec("dynamic_update_slice", "data", None, infer=_infer_dynamic_update_slice,
                 doc="dynamic_update_slice(operand, update, *start_indices)"))


def _infer_concatenate(op: Op):
    ts = _types(op)
    _need(len(ts) >= 1, "needs at least one operand")
    d = op.attrs["dimension"]
    _need(0 <= d < ts[0].rank, f"dimension {d} out of range for rank {ts[0].rank}")
    for t in ts[1:]:
        _need(t.dtype == ts[0].dtype and t.rank == ts[0].rank
              and all(a == b for i, (a, b) in enumerate(zip(t.shape, ts[0].shape)) if i != d),
              f"operand {t} does not concatenate with {ts[0]} along dimension {d}")
    shape = list(ts[0].shape)
    shape[d] = sum(t.shape[d] for t in ts)
    return [ts[0].with_shape(shape)]


_register(OpSpec("concatenate", "shape", None, (Attr("dimension", "int"),), infer=_infer_concatenate))


def _infer_pad(op: Op):
    t, pv = _types(op)
    _need(pv.rank == 0 and pv.dtype == t.dtype, f"padding value must be a {t.dtype} scalar, not {pv}")
    lo, hi, interior = (op.attrs[k] for k in ("edge_padding_low", "edge_padding_high", "interior_padding"))
    _need(len(lo) == len(hi) == len(interior) == t.rank, "padding attributes must have one entry per dimension")
    _need(all(i >= 0 for i in interior), "interior_padding must be non-negative")
    shape = []
    for d, a, b, i in zip(t.shape, lo, hi, interior):
        n = a + b + d + max(d - 1, 0) * i
        _need(n >= 0, f"padding gives a negative dimension ({n})")
        shape.append(n)
    return [t.with_shape(shape)]


_register(OpSpec("pad", "shape", 2, (Attr("edge_padding_low", "ints"), Attr("edge_padding_high", "ints"),
                                     Attr("interior_padding", "ints")), infer=_infer_pad,
                 doc="pad(operand, padding_value)"))


def _infer_reverse(op: Op):
    (t,) = _types(op)
    dims = op.attrs["dimensions"]
    _need(all(0 <= d < t.rank for d in dims) and len(set(dims)) == len(dims), f"bad dimensions {list(dims)}")
    return [t]


_register(OpSpec("reverse", "shape", 1, (Attr("dimensions", "ints"),), infer=_infer_reverse))


# --- gather / scatter ----------------------------------------------------------------------

def _batch_shape(indices: TensorType, index_vector_dim: int) -> list[int]:
    shape = list(indices.shape)
    if index_vector_dim < len(shape):
        del shape[index_vector_dim]
    return shape


def _infer_gather(op: Op):
    operand, indices = _types(op)
    a = op.attrs
    _need(indices.dtype.is_integer, f"start_indices must be integers, not {indices.dtype}")
    _need(0 <= a["index_vector_dim"] <= indices.rank, "index_vector_dim out of range")
    index_size = indices.shape[a["index_vector_dim"]] if a["index_vector_dim"] < indices.rank else 1
    sim = a["start_index_map"]
    _need(len(sim) == index_size and len(set(sim)) == len(sim) and all(0 <= d < operand.rank for d in sim),
          f"start_index_map {list(sim)} must be {index_size} distinct dimensions of the operand")
    sizes = a["slice_sizes"]
    _need(len(sizes) == operand.rank, f"slice_sizes {list(sizes)} must have {operand.rank} entries")
    _need(all(0 <= s <= d for s, d in zip(sizes, operand.shape)), f"slice_sizes {list(sizes)} exceed {operand}")
    dropped = set(a["collapsed_slice_dims"]) | set(a["operand_batching_dims"])
    for d in dropped:
        _need(0 <= d < operand.rank and sizes[d] <= 1, f"collapsed/batching dimension {d} must have slice size 1")
    offsets = [sizes[i] for i in range(operand.rank) if i not in dropped]
    batch = _batch_shape(indices, a["index_vector_dim"])
    rank = len(batch) + len(offsets)
    offset_dims = a["offset_dims"]
    _need(len(offset_dims) == len(offsets), f"offset_dims {list(offset_dims)} must have {len(offsets)} entries")
    _need(all(0 <= d < rank for d in offset_dims) and len(set(offset_dims)) == len(offset_dims),
          f"offset_dims {list(offset_dims)} must be distinct dimensions of the result (rank {rank})")
    shape, bi, oi = [], iter(batch), iter(offsets)
    for d in range(rank):
        shape.append(next(oi) if d in offset_dims else next(bi))
    return [operand.with_shape(shape)]


_register(OpSpec("gather", "data", 2, (
    Attr("offset_dims", "ints"), Attr("collapsed_slice_dims", "ints"),
    Attr("operand_batching_dims", "ints", ()), Attr("start_indices_batching_dims", "ints", ()),
    Attr("start_index_map", "ints"), Attr("index_vector_dim", "int"), Attr("slice_sizes", "ints"),
    Attr("indices_are_sorted", "bool", False)), infer=_infer_gather,
    doc="gather(operand, start_indices)"))


def _infer_scatter(op: Op):
    ts = _types(op)
    _need(len(ts) % 2 == 1 and len(ts) >= 3, "needs N inputs, the indices and N updates")
    n = len(ts) // 2
    inputs, indices, updates = ts[:n], ts[n], ts[n + 1:]
    _need(indices.dtype.is_integer, f"scatter_indices must be integers, not {indices.dtype}")
    for t, u in zip(inputs, updates):
        _need(t.dtype == u.dtype, f"update dtype {u.dtype} differs from input dtype {t.dtype}")
    _need(0 <= op.attrs["index_vector_dim"] <= indices.rank, "index_vector_dim out of range")
    _check_region(op.regions[0], [TensorType((), t.dtype) for t in inputs] * 2,
                  [TensorType((), t.dtype) for t in inputs], "update_computation")
    return list(inputs)


_register(OpSpec("scatter", "data", None, (
    Attr("update_window_dims", "ints"), Attr("inserted_window_dims", "ints"),
    Attr("input_batching_dims", "ints", ()), Attr("scatter_indices_batching_dims", "ints", ()),
    Attr("scatter_dims_to_operand_dims", "ints"), Attr("index_vector_dim", "int"),
    Attr("indices_are_sorted", "bool", False), Attr("unique_indices", "bool", False)),
    regions=1, results=None, infer=_infer_scatter, region_names=("update_computation",),
    doc="scatter(*inputs, scatter_indices, *updates)"))


# --- contractions --------------------------------------------------------------------------

PRECISIONS = ("DEFAULT", "HIGH", "HIGHEST")


def _infer_dot_general(op: Op):
    lhs, rhs = _types(op)
    a = op.attrs
    lb, rb = a["lhs_batching_dimensions"], a["rhs_batching_dimensions"]
    lc, rc = a["lhs_contracting_dimensions"], a["rhs_contracting_dimensions"]
    _need(len(lb) == len(rb) and len(lc) == len(rc), "batching/contracting dimension lists differ in length")
    for side, b, c in (("lhs", lb, lc), ("rhs", rb, rc)):
        _need(len(set(b) | set(c)) == len(b) + len(c),
              f"{side} batching and contracting dimensions {list(b) + list(c)} must be distinct")
    for x, y in list(zip(lb, rb)) + list(zip(lc, rc)):
        _need(0 <= x < lhs.rank and 0 <= y < rhs.rank, "dimension out of range")
        _need(lhs.shape[x] == rhs.shape[y], f"lhs dimension {x} ({lhs.shape[x]}) != rhs dimension {y} ({rhs.shape[y]})")
    _need(lhs.dtype.kind == rhs.dtype.kind or {lhs.dtype.kind, rhs.dtype.kind} <= {"int", "uint"}
          or lhs.dtype.is_float and rhs.dtype.is_float, f"operand dtypes {lhs.dtype} and {rhs.dtype} do not mix")
    free_l = [lhs.shape[i] for i in range(lhs.rank) if i not in lb and i not in lc]
    free_r = [rhs.shape[i] for i in range(rhs.rank) if i not in rb and i not in rc]
    shape = [lhs.shape[i] for i in lb] + free_l + free_r
    return _shape_only(op, shape, lhs.dtype)


def _shape_only(op: Op, shape: list[int], dtype: DType):
    """Check the declared result shape; its dtype is the op's choice (an accumulation type).
    An op being built (no results yet) gets `dtype`."""
    if not op.results:
        return [TensorType(shape, dtype)]
    (r,) = op.result_types
    _need(tuple(shape) == r.shape, f"result shape must be {tuple(shape)}, not {r.shape}")
    return None


_register(OpSpec("dot_general", "matmul", 2, (
    Attr("lhs_batching_dimensions", "ints", ()), Attr("rhs_batching_dimensions", "ints", ()),
    Attr("lhs_contracting_dimensions", "ints"), Attr("rhs_contracting_dimensions", "ints"),
    Attr("precision_config", "strs", ("DEFAULT", "DEFAULT"))), infer=_infer_dot_general))


def _window_out(size: int, window: int, stride: int, lo: int, hi: int, base_dil: int, win_dil: int) -> int:
    dilated = (size - 1) * base_dil + 1 if size > 0 else 0
    padded = dilated + lo + hi
    w = (window - 1) * win_dil + 1 if window > 0 else 0
    return 0 if padded < w else (padded - w) // stride + 1


def _infer_convolution(op: Op):
    lhs, rhs = _types(op)
    a = op.attrs
    n = len(a["input_spatial_dimensions"])
    _need(lhs.rank == rhs.rank == n + 2, f"input and kernel must have rank {n + 2}")
    for what, keys in (("input", ("input_batch_dimension", "input_feature_dimension", "input_spatial_dimensions")),
                       ("kernel", ("kernel_input_feature_dimension", "kernel_output_feature_dimension",
                                   "kernel_spatial_dimensions")),
                       ("output", ("output_batch_dimension", "output_feature_dimension", "output_spatial_dimensions"))):
        dims = [a[keys[0]], a[keys[1]], *a[keys[2]]]
        _need(sorted(dims) == list(range(n + 2)), f"{what} dimension numbers {dims} must be a permutation of 0..{n + 1}")
    for k in ("window_strides", "lhs_dilation", "rhs_dilation", "window_reversal", "padding"):
        _need(len(a[k]) == n, f"{k} must have {n} entries")
    for k in ("window_strides", "lhs_dilation", "rhs_dilation"):
        _need(all(x >= 1 for x in a[k]), f"{k} {list(a[k])} must be positive")
    fgc, bgc = a["feature_group_count"], a["batch_group_count"]
    _need(fgc >= 1 and bgc >= 1 and (fgc == 1 or bgc == 1), "feature_group_count and batch_group_count must be >= 1, one of them 1")
    in_f = lhs.shape[a["input_feature_dimension"]]
    k_in = rhs.shape[a["kernel_input_feature_dimension"]]
    k_out = rhs.shape[a["kernel_output_feature_dimension"]]
    _need(in_f == k_in * fgc, f"input features {in_f} != kernel input features {k_in} x feature_group_count {fgc}")
    _need(k_out % fgc == 0 and k_out % bgc == 0, "kernel output features must divide by the group counts")
    batch = lhs.shape[a["input_batch_dimension"]]
    _need(batch % bgc == 0, f"batch {batch} must divide by batch_group_count {bgc}")
    shape = [0] * (n + 2)
    shape[a["output_batch_dimension"]] = batch // bgc
    shape[a["output_feature_dimension"]] = k_out
    for i in range(n):
        lo, hi = a["padding"][i]
        shape[a["output_spatial_dimensions"][i]] = _window_out(
            lhs.shape[a["input_spatial_dimensions"][i]], rhs.shape[a["kernel_spatial_dimensions"][i]],
            a["window_strides"][i], lo, hi, a["lhs_dilation"][i], a["rhs_dilation"][i])
    return _shape_only(op, shape, lhs.dtype)


_register(OpSpec("convolution", "conv", 2, (
    Attr("window_strides", "ints"), Attr("padding", "pairs"), Attr("lhs_dilation", "ints"),
    Attr("rhs_dilation", "ints"), Attr("window_reversal", "bools"),
    Attr("input_batch_dimension", "int"), Attr("input_feature_dimension", "int"),
    Attr("input_spatial_dimensions", "ints"), Attr("kernel_input_feature_dimension", "int"),
    Attr("kernel_output_feature_dimension", "int"), Attr("kernel_spatial_dimensions", "ints"),
    Attr("output_batch_dimension", "int"), Attr("output_feature_dimension", "int"),
    Attr("output_spatial_dimensions", "ints"), Attr("feature_group_count", "int", 1),
    Attr("batch_group_count", "int", 1), Attr("precision_config", "strs", ("DEFAULT", "DEFAULT"))),
    infer=_infer_convolution, doc="convolution(lhs, rhs)"))


# --- reductions ----------------------------------------------------------------------------

def _check_region(region: Region, arg_types: list[TensorType], result_types: list[TensorType] | None,
                  what: str) -> None:
    _need(region.arg_types == arg_types,
          f"{what} takes ({', '.join(map(str, region.arg_types))}), expected ({', '.join(map(str, arg_types))})")
    try:
        outs = [v.type for v in region.outputs]
    except ValueError:
        raise OpRuleError(f"{what} does not end in 'return'") from None
    if result_types is not None:
        _need(outs == result_types,
              f"{what} returns ({', '.join(map(str, outs))}), expected ({', '.join(map(str, result_types))})")


def _split_inputs_inits(op: Op) -> tuple[list[TensorType], list[TensorType]]:
    ts = _types(op)
    _need(len(ts) % 2 == 0 and ts, "needs N inputs and N init values")
    n = len(ts) // 2
    inputs, inits = ts[:n], ts[n:]
    for t in inits:
        _need(t.rank == 0, f"init value must be a scalar, not {t}")
    for t in inputs[1:]:
        _need(t.shape == inputs[0].shape, f"inputs differ in shape: {inputs[0]} and {t}")
    for t, init in zip(inputs, inits):
        _need(t.dtype == init.dtype, f"init value {init} does not match input dtype {t.dtype}")
    return inputs, inits


def _infer_reduce(op: Op):
    inputs, inits = _split_inputs_inits(op)
    dims = op.attrs["dimensions"]
    rank = inputs[0].rank
    _need(all(0 <= d < rank for d in dims) and len(set(dims)) == len(dims), f"bad dimensions {list(dims)}")
    body = op.regions[0]
    _check_region(body, inits + inits, inits, "body")
    shape = [s for i, s in enumerate(inputs[0].shape) if i not in dims]
    return [TensorType(shape, t.dtype) for t in inits]


_register(OpSpec("reduce", "reduction", None, (Attr("dimensions", "ints"),), regions=1, results=None,
                 infer=_infer_reduce, region_names=("body",), doc="reduce(*inputs, *init_values)"))


def _infer_reduce_window(op: Op):
    inputs, inits = _split_inputs_inits(op)
    a = op.attrs
    rank = inputs[0].rank
    for k in ("window_dimensions", "window_strides", "base_dilations", "window_dilations", "padding"):
        _need(len(a[k]) == rank, f"{k} must have {rank} entries")
    for k in ("window_strides", "base_dilations", "window_dilations"):
        _need(all(x >= 1 for x in a[k]), f"{k} {list(a[k])} must be positive")
    _check_region(op.regions[0], inits + inits, inits, "body")
    shape = [_window_out(inputs[0].shape[i], a["window_dimensions"][i], a["window_strides"][i],
                         a["padding"][i][0], a["padding"][i][1], a["base_dilations"][i],
                         a["window_dilations"][i]) for i in range(rank)]
    return [TensorType(shape, t.dtype) for t in inits]


_register(OpSpec("reduce_window", "reduction", None, (
    Attr("window_dimensions", "ints"), Attr("window_strides", "ints"), Attr("base_dilations", "ints"),
    Attr("window_dilations", "ints"), Attr("padding", "pairs")), regions=1, results=None,
    infer=_infer_reduce_window, region_names=("body",), doc="reduce_window(*inputs, *init_values)"))


def _infer_select_and_scatter(op: Op):
    operand, source, init = _types(op)
    _need(init.rank == 0 and init.dtype == operand.dtype, f"init value must be a {operand.dtype} scalar")
    s = TensorType((), operand.dtype)
    _check_region(op.regions[0], [s, s], [TensorType((), dtypes.BOOL)], "select")
    _check_region(op.regions[1], [s, s], [s], "scatter")
    return [operand]


_register(OpSpec("select_and_scatter", "data", 3, (
    Attr("window_dimensions", "ints"), Attr("window_strides", "ints"), Attr("padding", "pairs")),
    regions=2, infer=_infer_select_and_scatter, region_names=("select", "scatter"),
    doc="select_and_scatter(operand, source, init_value)"))


def _infer_sort(op: Op):
    ts = _types(op)
    _need(len(ts) >= 1, "needs at least one operand")
    for t in ts[1:]:
        _need(t.shape == ts[0].shape, f"operands differ in shape: {ts[0]} and {t}")
    d = op.attrs["dimension"]
    _need(-ts[0].rank <= d < max(ts[0].rank, 1), f"dimension {d} out of range")
    scalars = [TensorType((), t.dtype) for t in ts for _ in range(2)]
    _check_region(op.regions[0], scalars, [TensorType((), dtypes.BOOL)], "comparator")
    return ts


_register(OpSpec("sort", "data", None, (Attr("dimension", "int"), Attr("is_stable", "bool", False)),
                 regions=1, results=None, infer=_infer_sort, region_names=("comparator",)))


# --- control flow --------------------------------------------------------------------------

def _infer_while(op: Op):
    ts = _types(op)
    _check_region(op.regions[0], ts, [TensorType((), dtypes.BOOL)], "cond")
    _check_region(op.regions[1], ts, ts, "body")
    return ts


_register(OpSpec("while", "control", None, regions=2, results=None, infer=_infer_while,
                 region_names=("cond", "body")))


def _infer_branches(op: Op, selector: DType | None):
    (t,) = _types(op)
    _need(t.rank == 0 and (t.dtype == selector if selector else t.dtype == dtypes.I32),
          f"selector must be a {(selector or dtypes.I32).name} scalar, not {t}")
    _need(len(op.regions) >= 1, "needs at least one branch")
    outs = None
    for i, r in enumerate(op.regions):
        _check_region(r, [], outs, f"branch {i}")
        outs = [v.type for v in r.outputs]
    return outs


_register(OpSpec("if", "control", 1, regions=2, results=None,
                 infer=lambda op: _infer_branches(op, dtypes.BOOL),
                 region_names=("true_branch", "false_branch"), doc="if(pred)"))
_register(OpSpec("case", "control", 1, regions=None, results=None,
                 infer=lambda op: _infer_branches(op, None), doc="case(index): branch i, last one when out of range"))
_register(OpSpec("optimization_barrier", "meta", None, results=None, infer=lambda op: _types(op)))
_register(OpSpec("custom_call", "meta", None, (
    Attr("call_target_name", "str"), Attr("has_side_effect", "bool", False)), results=None,
    doc="only targets that the consumer registers (the conformance checks) can run"))
_register(OpSpec("return", "meta", None, results=0, doc="ends every region"))


# --- building ops --------------------------------------------------------------------------

def fill_defaults(name: str, attrs: dict) -> dict:
    """`attrs` with every optional attribute of op `name` present."""
    s = SPECS[name]
    out = dict(attrs)
    for a in s.attrs:
        if a.name not in out and a.default is not REQUIRED:
            out[a.name] = a.default
    return out


def make(name: str, operands, attrs: dict | None = None, result_types=None, regions=(),
         loc: Location | None = None) -> Op:
    """Build an op, filling default attributes and inferring result types where the op's
    rules determine them. Ops whose result types are free (`convert`, `iota`, ...) need
    `result_types`."""
    if name not in SPECS:
        raise KeyError(f"unknown op '{name}'")
    attrs = fill_defaults(name, attrs or {})
    operands = list(operands)
    if result_types is None:
        probe = Op(name, operands, [], attrs, regions, loc)
        inferred = SPECS[name].infer(probe) if SPECS[name].infer else None
        if inferred is None:
            raise ValueError(f"op '{name}' needs explicit result_types")
        result_types = inferred
    return Op(name, operands, list(result_types), attrs, regions, loc)


def is_elementwise(op: Op) -> bool:
    s = SPECS.get(op.name)
    return s is not None and s.category == "elementwise"


def op_names() -> list[str]:
    return sorted(SPECS)


def flops(op: Op) -> int:
    """Floating-point (or integer) operations the op performs: 2 per multiply-add for
    contractions, one per output element and input element otherwise."""
    s = SPECS.get(op.name)
    if s is None:
        return 0
    if op.name == "dot_general":
        lhs = op.operands[0].type
        k = math.prod(lhs.shape[d] for d in op.attrs["lhs_contracting_dimensions"])
        return 2 * op.results[0].type.size * k
    if op.name == "convolution":
        rhs = op.operands[1].type
        a = op.attrs
        window = math.prod(rhs.shape[d] for d in a["kernel_spatial_dimensions"])
        k_in = rhs.shape[a["kernel_input_feature_dimension"]]
        return 2 * op.results[0].type.size * window * k_in
    if s.category == "elementwise":
        return sum(r.type.size for r in op.results)
    if s.category == "reduction":
        return sum(v.type.size for v in op.operands[: len(op.operands) // 2])
    return 0
