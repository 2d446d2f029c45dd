"""Unit tests of `canonicalize`: merged shape-op chains, exact convert chains (and the
inexact ones it must leave alone), no-op removal and splat constants. Every test checks the
results on special values bit for bit against the original graph."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pass_strategies import Builder, apply, assert_equivalent, op_names, same_bits, specials_array
from xchip.ir import TensorType, dtypes
from xchip.passes import PassOptions
from xchip.passes.canonicalize import convert_chain_merges, holds_every_value
from xchip.runtime.reference_numeric import convert

F32, F16, F64, BF16, I8, I16, I32, U8, BOOL = (dtypes.F32, dtypes.F16, dtypes.F64, dtypes.BF16, dtypes.I8,
                                               dtypes.I16, dtypes.I32, dtypes.U8, dtypes.BOOL)


def canonicalized(graph, options=None):
    """The statistics of canonicalize on `graph`; then dce drops what it left unused."""
    before, stats = apply(graph, "canonicalize", options)
    apply(graph, "dce")
    assert_equivalent(before, graph)
    return stats


# --- chains ----------------------------------------------------------------------------------

def test_reshape_of_reshape_is_one_reshape():
    b = Builder(TensorType((2, 3, 4), F32))
    x = b.inputs[0]
    y = b.op("reshape", x, result_type=TensorType((6, 4), F32))
    g = b.graph(b.op("reshape", y, result_type=TensorType((4, 6), F32)))
    assert canonicalized(g) == {"merged_reshapes": 1}
    assert op_names(g) == ["reshape", "return"]
    assert g.outputs[0].producer.operands[0] is x


def test_reshape_back_to_the_original_shape_disappears():
    b = Builder(TensorType((2, 3), F32))
    x = b.inputs[0]
    y = b.op("reshape", x, result_type=TensorType((6,), F32))
    g = b.graph(b.op("reshape", y, result_type=x.type))
    canonicalized(g)
    assert g.outputs[0] is x


def test_transposes_compose():
    b = Builder(TensorType((2, 3, 4), F32))
    x = b.inputs[0]
    y = b.op("transpose", x, permutation=(1, 2, 0))
    g = b.graph(b.op("transpose", y, permutation=(0, 2, 1)))
    assert canonicalized(g) == {"merged_transposes": 1}
    t = g.outputs[0].producer
    assert t.operands[0] is x and t.attrs["permutation"] == (1, 0, 2)


def test_inverse_transposes_cancel():
    b = Builder(TensorType((2, 3, 4), F32))
    x = b.inputs[0]
    y = b.op("transpose", x, permutation=(1, 2, 0))
    g = b.graph(b.op("transpose", y, permutation=(2, 0, 1)))
    assert canonicalized(g) == {"merged_transposes": 1, "removed_noops": 1}
    assert g.outputs[0] is x


def test_broadcast_of_broadcast_is_one_broadcast():
    b = Builder(TensorType((3,), F32))
    x = b.inputs[0]
    y = b.op("broadcast_in_dim", x, result_type=TensorType((3, 2), F32), broadcast_dimensions=(0,))
    g = b.graph(b.op("broadcast_in_dim", y, result_type=TensorType((5, 2, 3), F32), broadcast_dimensions=(2, 1)))
    assert canonicalized(g) == {"merged_broadcasts": 1}
    bc = g.outputs[0].producer
    assert bc.operands[0] is x and bc.attrs["broadcast_dimensions"] == (2,)


def test_transpose_of_broadcast_is_a_broadcast():
    b = Builder(TensorType((3, 1), F32))
    x = b.inputs[0]
    y = b.op("broadcast_in_dim", x, result_type=TensorType((3, 4, 2), F32), broadcast_dimensions=(0, 2))
    g = b.graph(b.op("transpose", y, permutation=(2, 0, 1)))
    assert canonicalized(g) == {"transposed_broadcasts": 1}
    assert op_names(g) == ["broadcast_in_dim", "return"]


# --- converts --------------------------------------------------------------------------------

def convert_chain(*chain):
    b = Builder(TensorType((41,), chain[0]))
    x = b.inputs[0]
    for d in chain[1:]:
        x = b.op("convert", x, result_type=TensorType((41,), d))
    return b.graph(x)


@pytest.mark.parametrize("chain,merged", [
    ((F16, F32, F64), True),
    ((BF16, F32, F16), True),
    ((F32, F64, BF16), True),
    ((I8, I32, F32), True),
    ((U8, I16, F16), True),
    ((I16, F32, I32), True),        # no value of i16 saturates or wraps in i32
    ((BOOL, F32, I8), True),
    ((F32, F16, F32), False),       # f16 rounds
    ((F32, BF16, F32), False),
    ((I16, F32, I8), False),        # float -> int saturates, int -> int wraps
    ((I32, F32, F64), False),       # f32 rounds large i32
    ((F16, BF16, F32), False),
    ((I8, U8, I32), False),         # -1 wraps to 255
])
def test_convert_chains(chain, merged):
    g = convert_chain(*chain)
    assert canonicalized(g) == ({"merged_converts": 1} if merged else {})
    assert op_names(g).count("convert") == (1 if merged else 2)


def test_convert_round_trip_through_a_wider_type_disappears():
    g = convert_chain(F16, F64, F16)
    assert canonicalized(g) == {"merged_converts": 1}
    assert g.outputs[0] is g.inputs[0]


_REAL = [d for d in dtypes.ALL if not d.is_complex]


def _values(d) -> np.ndarray:
    """Special values of d, plus every value of an 8-bit type or a spread of others."""
    if d.bits == 8 and d.kind != "bool":
        return np.arange(256, dtype=np.uint8).view(d.numpy)
    special = specials_array(TensorType((40,), d))
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, 64 * d.itemsize, dtype=np.uint8).view(d.numpy)
    return np.concatenate([special, raw if d.kind != "bool" else raw != 0])


@pytest.mark.parametrize("a", _REAL, ids=lambda d: d.name)
def test_convert_chain_rule_agrees_with_the_executor(a):
    """For every chain the rule merges, the executor gives the same bits (NaN as NaN) both
    ways, on every value of 8-bit types and on special and random values of the others."""
    x = _values(a)
    for b, c in itertools.product(_REAL, _REAL):
        if convert_chain_merges(a, b, c):
            with np.errstate(all="ignore"):
                two = convert(convert(x, b), c)
                one = convert(x, c)
            assert same_bits(two, one), (a, b, c)


def test_holds_every_value_table():
    assert holds_every_value(F16, F32) and holds_every_value(dtypes.F8E4M3FN, BF16)
    assert holds_every_value(U8, I16) and not holds_every_value(I8, U8)
    assert holds_every_value(I32, F64) and not holds_every_value(I32, F32)
    assert not holds_every_value(F16, BF16) and not holds_every_value(BF16, F16)
    assert not holds_every_value(F32, dtypes.C64)


# --- no-ops ----------------------------------------------------------------------------------

def noop_graph(kind):
    t = TensorType((3, 1, 4), F32)
    b = Builder(t)
    x = b.inputs[0]
    if kind == "slice":
        y = b.op("slice", x, start_indices=(0, 0, 0), limit_indices=(3, 1, 4), strides=(1, 5, 1))
    elif kind == "reshape":
        y = b.op("reshape", x, result_type=t)
    elif kind == "transpose":
        y = b.op("transpose", x, permutation=(0, 1, 2))
    elif kind == "convert":
        y = b.op("convert", x, result_type=t)
    elif kind == "broadcast_in_dim":
        y = b.op("broadcast_in_dim", x, result_type=t, broadcast_dimensions=(0, 1, 2))
    elif kind == "pad":
        y = b.op("pad", x, b.constant(np.array(7.0, np.float32)), edge_padding_low=(0, 0, 0),
                 edge_padding_high=(0, 0, 0), interior_padding=(0, 0, 0))
    elif kind == "reverse":
        y = b.op("reverse", x, dimensions=())
    elif kind == "reverse_unit":
        y = b.op("reverse", x, dimensions=(1,))
    elif kind == "concatenate":
        y = b.op("concatenate", x, dimension=2)
    return b.graph(y)


@pytest.mark.parametrize("kind", ["slice", "reshape", "transpose", "convert", "broadcast_in_dim", "pad",
                                  "reverse", "reverse_unit", "concatenate"])
def test_noops_disappear(kind):
    g = noop_graph(kind)
    assert canonicalized(g) == {"removed_noops": 1}
    assert g.outputs[0] is g.inputs[0]


@pytest.mark.parametrize("attrs", [
    dict(start_indices=(1, 0, 0), limit_indices=(3, 1, 4), strides=(1, 1, 1)),
    dict(start_indices=(0, 0, 0), limit_indices=(3, 1, 4), strides=(2, 1, 1)),
])
def test_slices_that_take_less_stay(attrs):
    b = Builder(TensorType((3, 1, 4), F32))
    g = b.graph(b.op("slice", b.inputs[0], **attrs))
    assert canonicalized(g) == {}


def test_reverse_of_a_long_dimension_and_nonzero_pad_stay():
    b = Builder(TensorType((3, 4), F32))
    x = b.inputs[0]
    pv = b.constant(np.array(-0.0, np.float32))
    g = b.graph(b.op("reverse", x, dimensions=(0,)),
                b.op("pad", x, pv, edge_padding_low=(0, 0), edge_padding_high=(0, 0), interior_padding=(0, 1)))
    assert canonicalized(g) == {}


def test_concatenate_drops_empty_operands():
    b = Builder(TensorType((2, 3), F32), TensorType((2, 0), F32), TensorType((2, 1), F32))
    x, empty, y = b.inputs
    g = b.graph(b.op("concatenate", x, empty, y, dimension=1), b.op("concatenate", empty, x, dimension=1))
    assert canonicalized(g) == {"dropped_empty_operands": 1, "removed_noops": 1}
    assert g.outputs[1] is x
    assert g.outputs[0].producer.operands == [x, y]


# --- splat constants -------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-0.0, np.nan, 1.5])
def test_broadcast_of_a_splat_is_a_splat_constant(value):
    b = Builder()
    c = b.constant(np.array(value, np.float32))
    g = b.graph(b.op("broadcast_in_dim", c, result_type=TensorType((4, 5), F32), broadcast_dimensions=()))
    assert canonicalized(g) == {"splat_constants": 1}
    out = g.outputs[0].producer
    assert out.name == "constant" and out.attrs["value"].shape == (4, 5)
    assert same_bits(out.attrs["value"], np.full((4, 5), value, np.float32))


def test_big_splats_stay_a_scalar_broadcast():
    b = Builder()
    c = b.constant(np.full((2, 3), 2.5, np.float32))
    big = TensorType((2, 3, 100), F32)
    g = b.graph(b.op("broadcast_in_dim", c, result_type=big, broadcast_dimensions=(0, 1)))
    assert canonicalized(g, PassOptions(fold_limit=100)) == {"splat_broadcasts": 1}
    bc = g.outputs[0].producer
    assert bc.name == "broadcast_in_dim" and bc.operands[0].type.rank == 0
    # and that form is left alone
    assert canonicalized(g, PassOptions(fold_limit=100)) == {}


@pytest.mark.parametrize("name,attrs,shape", [
    ("reshape", {}, (6, 2)),
    ("transpose", {"permutation": (1, 0)}, None),
    ("slice", {"start_indices": (1, 0), "limit_indices": (3, 4), "strides": (1, 2)}, None),
    ("reverse", {"dimensions": (0, 1)}, None),
])
def test_shape_ops_of_splats_are_splats(name, attrs, shape):
    b = Builder()
    c = b.constant(np.full((3, 4), 7, np.int8))
    rt = None if shape is None else TensorType(shape, I8)
    g = b.graph(b.op(name, c, result_type=rt, **attrs))
    assert canonicalized(g) == {"splat_constants": 1}
    assert op_names(g) == ["constant", "return"]


def test_non_splat_constants_are_not_touched():
    b = Builder()
    c = b.constant(np.array([0.0, -0.0], np.float32))
    g = b.graph(b.op("broadcast_in_dim", c, result_type=TensorType((3, 2), F32), broadcast_dimensions=(1,)))
    assert canonicalized(g) == {}


def test_large_splat_constant_becomes_a_scalar_broadcast():
    b = Builder(TensorType((64, 2048), dtypes.F32))
    x = b.inputs[0]
    big = b.constant(np.full((64, 2048), 1.5, np.float32))
    graph = b.graph(b.op("add", x, big))
    before, stats = apply(graph, ["canonicalize", "dce"])
    assert op_names(graph) == ["constant", "broadcast_in_dim", "add", "return"]
    assert graph.body.ops[0].attrs["value"].shape == ()
    assert_equivalent(before, graph)
