"""How each StableHLO op becomes xchip IR.

`HANDLERS` maps an MLIR op name to `convert(imp, op, args, loc) -> results`, where `imp`
is the importer (it emits xchip ops into the current region and converts nested regions),
`op` the MLIR operation, `args` its operands already converted, `loc` its Location.
Attribute names follow `xchip.ir.ops`; StableHLO's optional attributes are made explicit
with their StableHLO defaults, so two spellings of one program import the same.
"""

from __future__ import annotations

from typing import Callable

from . import mlir_attrs as A

HANDLERS: dict[str, Callable] = {}

# Ops that xchip spells like StableHLO and that carry no attribute xchip keeps
# (`result_accuracy` is a hint for transcendental ops; xchip computes at full accuracy).
SAME_NAME_OPS = (
    "abs", "add", "and", "atan2", "bitcast_convert", "cbrt", "ceil", "clamp", "complex",
    "convert", "cosine", "count_leading_zeros", "divide", "dynamic_update_slice", "exponential",
    "exponential_minus_one", "floor", "imag", "is_finite", "log", "log_plus_one", "logistic",
    "maximum", "minimum", "multiply", "negate", "not", "optimization_barrier", "or", "popcnt",
    "power", "real", "remainder", "reshape", "round_nearest_afz", "round_nearest_even", "rsqrt",
    "select", "shift_left", "shift_right_arithmetic", "shift_right_logical", "sign", "sine",
    "sqrt", "subtract", "tan", "tanh", "xor",
)

# Ops xchip does not take, with what to say instead (kept short: it ends an error message).
_COLLECTIVE = "collectives are not supported: xchip compiles single-device programs"
_EFFECTS = "side effects, tokens and host transfers are not supported"
_DYNAMIC = "dynamic shapes are not supported: xchip needs static shapes"
UNSUPPORTED_DETAIL = {
    "stablehlo.fft": "FFT is not supported; compute it outside the xchip function",
    "stablehlo.rng": "stateful RNG is not supported; use jax.random with the default "
                     "threefry implementation (it lowers to plain integer ops)",
    "stablehlo.rng_bit_generator": "rng_bit_generator is not supported; use jax.random with "
                                   "the default threefry implementation",
    "stablehlo.cholesky": "linear-algebra decompositions are not supported",
    "stablehlo.triangular_solve": "linear-algebra solves are not supported",
    "stablehlo.map": "map is not supported; write the computation with elementwise ops",
    "stablehlo.einsum": "einsum is not supported; use dot_general",
    "stablehlo.unary_einsum": "einsum is not supported; use dot_general",
    "stablehlo.torch_index_select": "torch_index_select is not supported; use gather",
    "stablehlo.batch_norm_training": "batch_norm ops are not supported; use elementwise ops",
    "stablehlo.batch_norm_inference": "batch_norm ops are not supported; use elementwise ops",
    "stablehlo.batch_norm_grad": "batch_norm ops are not supported; use elementwise ops",
    "stablehlo.tuple": "tuples are not supported",
    "stablehlo.get_tuple_element": "tuples are not supported",
    "stablehlo.uniform_quantize": "quantized types are not supported",
    "stablehlo.uniform_dequantize": "quantized types are not supported",
    **{f"stablehlo.{n}": _COLLECTIVE for n in (
        "all_gather", "all_reduce", "all_to_all", "reduce_scatter", "collective_permute",
        "collective_broadcast", "cross-replica-sum", "replica_id", "partition_id")},
    **{f"stablehlo.{n}": _EFFECTS for n in (
        "after_all", "create_token", "infeed", "outfeed", "send", "recv", "async_start",
        "async_done")},
    **{f"stablehlo.{n}": _DYNAMIC for n in (
        "dynamic_broadcast_in_dim", "dynamic_conv", "dynamic_gather", "dynamic_iota",
        "dynamic_pad", "dynamic_reshape", "real_dynamic_slice", "get_dimension_size",
        "set_dimension_size")},
}
DEFAULT_DETAIL = "no xchip equivalent (xchip takes the ops listed in xchip.ir.ops)"


def unsupported_detail(name: str) -> str:
    if name in UNSUPPORTED_DETAIL:
        return UNSUPPORTED_DETAIL[name]
    if name.startswith("chlo."):
        return "CHLO op that jaxlib's chlo-legalize-to-stablehlo pass leaves alone"
    if name.startswith("sdy."):
        return "Shardy op that carries computation across devices; xchip compiles single-device programs"
    return DEFAULT_DETAIL


def _handles(*names: str):
    def register(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn
    return register


# Ops whose attributes carry over one to one, each read by the given reader.
COPIED_ATTRS = {
    "iota": {"iota_dimension": A.integer},
    "reduce_precision": {"exponent_bits": A.integer, "mantissa_bits": A.integer},
    "broadcast_in_dim": {"broadcast_dimensions": A.ints},
    "transpose": {"permutation": A.ints},
    "slice": {"start_indices": A.ints, "limit_indices": A.ints, "strides": A.ints},
    "dynamic_slice": {"slice_sizes": A.ints},
    "concatenate": {"dimension": A.integer},
    "pad": {"edge_padding_low": A.ints, "edge_padding_high": A.ints, "interior_padding": A.ints},
    "reverse": {"dimensions": A.ints},
    **{n: {} for n in SAME_NAME_OPS},
}


def _copied(name: str, readers: dict):
    def convert(imp, op, args, loc):
        attrs = {k: read(A.get(op, k)) for k, read in readers.items()}
        return imp.emit(name, args, imp.result_types(op), attrs, loc=loc)
    return convert


for _n, _readers in COPIED_ATTRS.items():
    HANDLERS[f"stablehlo.{_n}"] = _copied(_n, _readers)


def _stablehlo():
    from jaxlib.mlir.dialects import stablehlo
    return stablehlo


def _precision(op) -> tuple[str, ...]:
    attr = A.get(op, "precision_config")
    if attr is None or len(attr) == 0:
        return ("DEFAULT", "DEFAULT")
    return tuple(A.enum_value(_stablehlo().PrecisionAttr, a) for a in attr)


def _ints_or(op, name: str, default: tuple) -> tuple:
    attr = A.get(op, name)
    return A.ints(attr) if attr is not None else default


# --- constants and shapes ---------------------------------------------------------------------

@_handles("stablehlo.constant")
def _constant(imp, op, args, loc):
    (rtype,) = imp.result_types(op)
    value = imp.read_constant(op, rtype, loc)
    return imp.emit("constant", [], [rtype], {"value": value}, loc=loc)


@_handles("stablehlo.compare")
def _compare(imp, op, args, loc):
    shlo = _stablehlo()
    attrs = {"comparison_direction": A.enum_value(shlo.ComparisonDirectionAttr, A.get(op, "comparison_direction"))}
    if A.has(op, "compare_type"):
        attrs["compare_type"] = A.enum_value(shlo.ComparisonTypeAttr, A.get(op, "compare_type"))
    return imp.emit("compare", args, imp.result_types(op), attrs, loc=loc)


@_handles("stablehlo.broadcast")
def _broadcast(imp, op, args, loc):
    # Legacy form: new leading dimensions of the given sizes.
    (rtype,) = imp.result_types(op)
    rank = args[0].type.rank
    lead = rtype.rank - rank
    return imp.emit("broadcast_in_dim", args, [rtype],
                    {"broadcast_dimensions": tuple(range(lead, lead + rank))}, loc=loc)


# --- gather / scatter -------------------------------------------------------------------------

@_handles("stablehlo.gather")
def _gather(imp, op, args, loc):
    dn = _stablehlo().GatherDimensionNumbers(A.get(op, "dimension_numbers"))
    attrs = {
        "offset_dims": tuple(dn.offset_dims),
        "collapsed_slice_dims": tuple(dn.collapsed_slice_dims),
        "operand_batching_dims": tuple(dn.operand_batching_dims),
        "start_indices_batching_dims": tuple(dn.start_indices_batching_dims),
        "start_index_map": tuple(dn.start_index_map),
        "index_vector_dim": int(dn.index_vector_dim),
        "slice_sizes": A.ints(A.get(op, "slice_sizes")),
    }
    if A.has(op, "indices_are_sorted"):
        attrs["indices_are_sorted"] = A.boolean(A.get(op, "indices_are_sorted"))
    return imp.emit("gather", args, imp.result_types(op), attrs, loc=loc)


@_handles("stablehlo.scatter")
def _scatter(imp, op, args, loc):
    dn = _stablehlo().ScatterDimensionNumbers(A.get(op, "scatter_dimension_numbers"))
    attrs = {
        "update_window_dims": tuple(dn.update_window_dims),
        "inserted_window_dims": tuple(dn.inserted_window_dims),
        "input_batching_dims": tuple(dn.input_batching_dims),
        "scatter_indices_batching_dims": tuple(dn.scatter_indices_batching_dims),
        "scatter_dims_to_operand_dims": tuple(dn.scattered_dims_to_operand_dims),
        "index_vector_dim": int(dn.index_vector_dim),
    }
    for k in ("indices_are_sorted", "unique_indices"):
        if A.has(op, k):
            attrs[k] = A.boolean(A.get(op, k))
    body = imp.convert_region(op.regions[0], op)
    return imp.emit("scatter", args, imp.result_types(op), attrs, [body], loc=loc)


# --- contractions ---------------------------------------------------------------------------------

def _reject_algorithm(imp, op, loc):
    if A.get(op, "algorithm") is not None:
        imp.fail(op, loc, "dot algorithms are not supported; use precision_config")


@_handles("stablehlo.dot_general")
def _dot_general(imp, op, args, loc):
    _reject_algorithm(imp, op, loc)
    dn = _stablehlo().DotDimensionNumbers(A.get(op, "dot_dimension_numbers"))
    return imp.emit("dot_general", args, imp.result_types(op), {
        "lhs_batching_dimensions": tuple(dn.lhs_batching_dimensions),
        "rhs_batching_dimensions": tuple(dn.rhs_batching_dimensions),
        "lhs_contracting_dimensions": tuple(dn.lhs_contracting_dimensions),
        "rhs_contracting_dimensions": tuple(dn.rhs_contracting_dimensions),
        "precision_config": _precision(op)}, loc=loc)


@_handles("stablehlo.dot")
def _dot(imp, op, args, loc):
    # Legacy form: contracts the last dimension of lhs with the first of rhs.
    _reject_algorithm(imp, op, loc)
    lhs = args[0].type
    return imp.emit("dot_general", args, imp.result_types(op), {
        "lhs_contracting_dimensions": (lhs.rank - 1,), "rhs_contracting_dimensions": (0,),
        "precision_config": _precision(op)}, loc=loc)


@_handles("stablehlo.convolution")
def _convolution(imp, op, args, loc):
    dn = _stablehlo().ConvDimensionNumbers(A.get(op, "dimension_numbers"))
    n = len(dn.input_spatial_dimensions)
    padding = A.get(op, "padding")
    window_reversal = A.get(op, "window_reversal")
    return imp.emit("convolution", args, imp.result_types(op), {
        "window_strides": _ints_or(op, "window_strides", (1,) * n),
        "padding": A.pairs(padding) if padding is not None else ((0, 0),) * n,
        "lhs_dilation": _ints_or(op, "lhs_dilation", (1,) * n),
        "rhs_dilation": _ints_or(op, "rhs_dilation", (1,) * n),
        "window_reversal": A.bools(window_reversal) if window_reversal is not None else (False,) * n,
        "input_batch_dimension": int(dn.input_batch_dimension),
        "input_feature_dimension": int(dn.input_feature_dimension),
        "input_spatial_dimensions": tuple(dn.input_spatial_dimensions),
        "kernel_input_feature_dimension": int(dn.kernel_input_feature_dimension),
        "kernel_output_feature_dimension": int(dn.kernel_output_feature_dimension),
        "kernel_spatial_dimensions": tuple(dn.kernel_spatial_dimensions),
        "output_batch_dimension": int(dn.output_batch_dimension),
        "output_feature_dimension": int(dn.output_feature_dimension),
        "output_spatial_dimensions": tuple(dn.output_spatial_dimensions),
        "feature_group_count": A.integer(A.get(op, "feature_group_count")),
        "batch_group_count": A.integer(A.get(op, "batch_group_count")),
        "precision_config": _precision(op)}, loc=loc)


# --- reductions and windows -----------------------------------------------------------------------

@_handles("stablehlo.reduce")
def _reduce(imp, op, args, loc):
    body = imp.convert_region(op.regions[0], op)
    return imp.emit("reduce", args, imp.result_types(op),
                    {"dimensions": A.ints(A.get(op, "dimensions"))}, [body], loc=loc)


@_handles("stablehlo.reduce_window")
def _reduce_window(imp, op, args, loc):
    n = args[0].type.rank
    padding = A.get(op, "padding")
    body = imp.convert_region(op.regions[0], op)
    return imp.emit("reduce_window", args, imp.result_types(op), {
        "window_dimensions": A.ints(A.get(op, "window_dimensions")),
        "window_strides": _ints_or(op, "window_strides", (1,) * n),
        "base_dilations": _ints_or(op, "base_dilations", (1,) * n),
        "window_dilations": _ints_or(op, "window_dilations", (1,) * n),
        "padding": A.pairs(padding) if padding is not None else ((0, 0),) * n}, [body], loc=loc)


@_handles("stablehlo.select_and_scatter")
def _select_and_scatter(imp, op, args, loc):
    n = args[0].type.rank
    padding = A.get(op, "padding")
    select = imp.convert_region(op.regions[0], op)
    scatter = imp.convert_region(op.regions[1], op)
    return imp.emit("select_and_scatter", args, imp.result_types(op), {
        "window_dimensions": _ints_or(op, "window_dimensions", (1,) * n),
        "window_strides": _ints_or(op, "window_strides", (1,) * n),
        "padding": A.pairs(padding) if padding is not None else ((0, 0),) * n},
        [select, scatter], loc=loc)


@_handles("stablehlo.sort")
def _sort(imp, op, args, loc):
    rank = args[0].type.rank
    dim = A.integer(A.get(op, "dimension")) if A.has(op, "dimension") else -1
    attrs = {"dimension": dim + rank if dim < 0 else dim}
    if A.has(op, "is_stable"):
        attrs["is_stable"] = A.boolean(A.get(op, "is_stable"))
    comparator = imp.convert_region(op.regions[0], op)
    return imp.emit("sort", args, imp.result_types(op), attrs, [comparator], loc=loc)


# --- control flow ---------------------------------------------------------------------------------

@_handles("stablehlo.while")
def _while(imp, op, args, loc):
    cond = imp.convert_region(op.regions[0], op)
    body = imp.convert_region(op.regions[1], op)
    return imp.emit("while", args, imp.result_types(op), regions=[cond, body], loc=loc)


@_handles("stablehlo.if")
def _if(imp, op, args, loc):
    branches = [imp.convert_region(r, op) for r in op.regions]
    return imp.emit("if", args, imp.result_types(op), regions=branches, loc=loc)


@_handles("stablehlo.case")
def _case(imp, op, args, loc):
    branches = [imp.convert_region(r, op) for r in op.regions]
    return imp.emit("case", args, imp.result_types(op), regions=branches, loc=loc)


# --- calls, composites, custom calls ----------------------------------------------------------

@_handles("func.call")
def _call(imp, op, args, loc):
    return imp.inline_function(A.symbol(A.get(op, "callee")), args, op, loc)


@_handles("stablehlo.composite")
def _composite(imp, op, args, loc):
    # xchip has no composite op: the decomposition is the computation.
    return imp.inline_function(A.symbol(A.get(op, "decomposition")), args, op, loc)


@_handles("stablehlo.custom_call")
def _custom_call(imp, op, args, loc):
    target = A.string(A.get(op, "call_target_name"))
    if target not in imp.allow_custom_calls:
        allowed = ", ".join(imp.allow_custom_calls) or "none"
        imp.fail(op, loc, f"custom call target '{target}' is not allowed (allow_custom_calls: {allowed})")
    side_effect = A.boolean(A.get(op, "has_side_effect")) if A.has(op, "has_side_effect") else False
    return imp.emit("custom_call", args, imp.result_types(op),
                    {"call_target_name": target, "has_side_effect": side_effect}, loc=loc)


# --- Shardy: annotations without computation ---------------------------------------------------

@_handles("sdy.sharding_constraint", "sdy.reshard", "sdy.propagation_barrier")
def _sdy_identity(imp, op, args, loc):
    return list(args)


@_handles("sdy.sharding_group")
def _sdy_drop(imp, op, args, loc):
    return []


@_handles("sdy.named_computation", "sdy.manual_computation")
def _sdy_body(imp, op, args, loc):
    # On one device a named or manual computation is its body, provided the body sees the
    # same (unsharded) types as the op; otherwise it computes per shard.
    block = op.regions[0].blocks[0]
    body_types = imp.types_of(list(block.arguments), op, loc)
    if body_types != [a.type for a in args] or imp.result_types(op) != imp.block_result_types(block, op, loc):
        imp.fail(op, loc, "a manual computation over a sharded mesh is not supported")
    return imp.inline_block(block, args)
