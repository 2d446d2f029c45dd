"""Hypothesis strategies that generate random, valid xchip IR.

`graphs()` builds whole functions: random inputs, a random sequence of ops drawn from most of
the op set (elementwise, shape, contractions, data movement, reductions with regions, sort
with a comparator, while/if/case whose regions capture values of the enclosing regions,
multi-result ops), random locations, random free attribute values, and a `return` of a
random selection of the values. Every graph it gives must pass `xchip.ir.verify`.

The building blocks (`dtype_strategy`, `shapes`, `tensor_types`, `locations`, `arrays`) are
usable on their own.

The dtype rules of the elementwise ops are written out here (`UNARY`, `BINARY`) from the
StableHLO specification, independently of `xchip.ir.ops`; the tests check that the two agree.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from xchip.ir import dtypes, ops
from xchip.ir.dtypes import DType
from xchip.ir.graph import Graph, Location, Op, Region, Value
from xchip.ir.types import TensorType

# --- dtype classes and the elementwise ops' dtype rules ------------------------------------


def is_bool(d: DType) -> bool:
    return d.kind == "bool"


def is_numeric(d: DType) -> bool:
    return d.kind != "bool"


def is_float(d: DType) -> bool:
    return d.kind == "float"


def is_float_or_complex(d: DType) -> bool:
    return d.kind in ("float", "complex")


def is_integer(d: DType) -> bool:
    return d.kind in ("int", "uint")


def is_int_or_bool(d: DType) -> bool:
    return d.kind in ("int", "uint", "bool")


def is_signed(d: DType) -> bool:
    return d.kind in ("int", "float", "complex")


def is_any(d: DType) -> bool:
    return True


UNARY = {
    **{n: is_float_or_complex for n in (
        "cosine", "sine", "tan", "tanh", "exponential", "exponential_minus_one", "log",
        "log_plus_one", "logistic", "rsqrt", "sqrt")},
    **{n: is_float for n in ("cbrt", "ceil", "floor", "round_nearest_afz", "round_nearest_even",
                             "is_finite")},
    "negate": is_numeric,
    "sign": is_signed,
    "abs": is_signed,
    "real": is_float_or_complex,
    "imag": is_float_or_complex,
    "not": is_int_or_bool,
    "popcnt": is_integer,
    "count_leading_zeros": is_integer,
}

BINARY = {
    "add": is_any, "multiply": is_any, "maximum": is_any, "minimum": is_any,
    "subtract": is_numeric, "divide": is_numeric, "remainder": is_numeric, "power": is_numeric,
    "atan2": is_float_or_complex,
    "and": is_int_or_bool, "or": is_int_or_bool, "xor": is_int_or_bool,
    "shift_left": is_integer, "shift_right_arithmetic": is_integer, "shift_right_logical": is_integer,
}


def unary_result_dtype(name: str, d: DType) -> DType:
    """The element type of `name(x)` for x of dtype d (a valid combination)."""
    if name in ("abs", "real", "imag") and d.kind == "complex":
        return dtypes.F32 if d == dtypes.C64 else dtypes.F64
    if name == "is_finite":
        return dtypes.BOOL
    return d


# --- basic strategies -----------------------------------------------------------------------

def dtype_strategy(pred=None) -> st.SearchStrategy[DType]:
    return st.sampled_from([d for d in dtypes.ALL if pred is None or pred(d)])


def _dim(max_dim: int) -> st.SearchStrategy[int]:
    # a zero-size dimension one time in ten
    return st.integers(0, 9).map(lambda k: 0 if k == 0 else 1 + k % max_dim)


def shapes(min_rank: int = 0, max_rank: int = 3, max_dim: int = 4) -> st.SearchStrategy[tuple]:
    return st.lists(_dim(max_dim), min_size=min_rank, max_size=max_rank).map(tuple)


def tensor_types(pred=None, min_rank: int = 0, max_rank: int = 3, max_dim: int = 4):
    return st.builds(TensorType, shapes(min_rank, max_rank, max_dim), dtype_strategy(pred))


# Text with the characters a printer must escape: quotes, backslashes, control characters,
# non-ASCII letters, characters outside the BMP, a lone surrogate.
_SPECIAL_CHARS = '"\\\n\t\r\x00\x7f\'() @:,{}<>=%^éß€日😀\u2028\ud800'
location_text = st.text(alphabet=st.one_of(st.sampled_from(_SPECIAL_CHARS), st.characters()),
                        max_size=12)
_LINE = st.one_of(st.integers(0, 2000), st.integers(0, 2**40))

locations = st.one_of(
    st.none(),
    st.builds(Location, name=location_text),
    st.builds(Location, file=location_text),
    st.builds(Location, file=location_text, line=_LINE, name=st.none() | location_text),
    st.builds(Location, file=location_text, line=_LINE, col=_LINE, name=st.none() | location_text),
)


# --- tensor values --------------------------------------------------------------------------

def _nan_with_payload(npdt: np.dtype, negative: bool) -> np.ndarray:
    """A NaN of dtype npdt whose lowest mantissa bit is set (where the format has room)."""
    canon = np.array(np.nan).astype(npdt)
    raw = bytearray(canon.tobytes())
    raw[0] |= 1
    if negative:
        raw[-1] |= 0x80
    return np.frombuffer(bytes(raw), dtype=npdt)[0]


def float_specials(npdt: np.dtype) -> list:
    """Interesting values of a float dtype, as scalars of that dtype."""
    fi = ml_dtypes.finfo(npdt)
    xs = [0.0, -0.0, 1.0, -1.5, 0.1, 3.0, np.inf, -np.inf, np.nan, float(fi.max), float(fi.min),
          float(fi.tiny), float(fi.smallest_subnormal), -float(fi.smallest_subnormal)]
    out = [np.array(x).astype(npdt)[()] for x in xs]
    out.append(np.array(np.copysign(np.nan, -1.0)).astype(npdt)[()])
    out.append(_nan_with_payload(npdt, False))
    out.append(_nan_with_payload(npdt, True))
    return out


def specials(d: DType) -> list:
    npdt = d.numpy
    if d.kind == "bool":
        return [np.bool_(False), np.bool_(True)]
    if d.kind in ("int", "uint"):
        info = np.iinfo(npdt)
        return [npdt.type(x) for x in (0, 1, 42, info.min, info.max, info.max - 1, info.min + 1)]
    if d.kind == "float":
        return float_specials(npdt)
    part = float_specials(np.dtype(np.float32 if d == dtypes.C64 else np.float64))
    return [npdt.type(complex(float(a), float(b))) for a in part[:9] for b in part[:9]] + \
           [_complex_from_parts(npdt, part[-1], part[-2])]


def _complex_from_parts(npdt, re, im):
    out = np.zeros((), dtype=npdt)
    out.real = re
    out.imag = im
    return out[()]


@st.composite
def arrays(draw, dtype: DType, shape: tuple) -> np.ndarray:
    """A numpy array of the dtype and shape: random bits (NaN payloads, subnormals, ...), a mix
    of special values, or a splat of one."""
    npdt = dtype.numpy
    size = math.prod(shape)
    if dtype.kind == "bool":
        items = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        return np.array(items, dtype=np.bool_).reshape(shape)
    mode = draw(st.sampled_from(["bits", "specials", "splat"]))
    if mode == "bits":
        raw = draw(st.binary(min_size=size * npdt.itemsize, max_size=size * npdt.itemsize))
        return np.frombuffer(raw, dtype=npdt).reshape(shape).copy()
    pool = specials(dtype)
    if mode == "splat":
        return np.full(shape, draw(st.sampled_from(pool)), dtype=npdt)
    items = draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size))
    out = np.empty(size, dtype=npdt)
    for i, x in enumerate(items):
        out[i] = x
    return out.reshape(shape)


graph_names = st.from_regex(r"[A-Za-z0-9_.$-]{1,12}", fullmatch=True)


# --- graph building -------------------------------------------------------------------------

def window_out(size, window, stride, lo, hi, base_dil, win_dil) -> int:
    """Output length of a window of `window` elements slid over a dilated, padded axis."""
    dilated = (size - 1) * base_dil + 1 if size > 0 else 0
    padded = dilated + lo + hi
    w = (window - 1) * win_dil + 1 if window > 0 else 0
    return 0 if padded < w else (padded - w) // stride + 1


class _Scope:
    """Builds the ops of one region. `pool` holds the values an op may use: the values of the
    enclosing regions visible at this point (captures), the region's arguments, and the
    results of the ops built so far."""

    def __init__(self, draw, region: Region, visible, depth: int, max_depth: int):
        self.draw = draw
        self.region = region
        self.depth = depth
        self.max_depth = max_depth
        self.pool: list[Value] = list(visible) + list(region.args)

    # -- helpers --
    def emit(self, name, operands, attrs=None, result_types=None, regions=()) -> Op:
        op = ops.make(name, operands, attrs, result_types, regions, loc=self.draw(locations))
        self.region.append(op)
        self.pool.extend(op.results)
        return op

    def constant(self, t: TensorType) -> Value:
        return self.emit("constant", [], {"value": self.draw(arrays(t.dtype, t.shape))}).result

    def value(self, t: TensorType) -> Value:
        """A value of type t: one already visible, or a new constant."""
        cands = [v for v in self.pool if v.type == t]
        if cands and self.draw(st.integers(0, 2)) > 0:
            return self.draw(st.sampled_from(cands))
        return self.constant(t)

    def any_value(self, pred=None, ok=None, min_rank: int = 0) -> Value:
        """A visible value whose dtype satisfies pred (and type satisfies ok), or a new constant."""
        cands = [v for v in self.pool if (pred is None or pred(v.dtype)) and v.type.rank >= min_rank
                 and (ok is None or ok(v.type))]
        if cands and self.draw(st.integers(0, 3)) > 0:
            return self.draw(st.sampled_from(cands))
        t = self.draw(tensor_types(pred, min_rank=min_rank).filter(lambda t: ok is None or ok(t)))
        return self.constant(t)

    def sub(self, arg_types) -> "_Scope":
        return _Scope(self.draw, Region(arg_types), self.pool, self.depth + 1, self.max_depth)

    def closed_sub(self, arg_types) -> "_Scope":
        """A region that captures nothing (reduce bodies, sort comparators)."""
        return _Scope(self.draw, Region(arg_types), [], self.depth + 1, self.max_depth)

    def finish(self, values) -> Region:
        self.region.append(ops.make("return", list(values), result_types=[], loc=self.draw(locations)))
        return self.region

    def random_ops(self, n: int) -> None:
        gens = GENERATORS if self.depth < self.max_depth else LEAF_GENERATORS
        for _ in range(n):
            self.draw(st.sampled_from(gens))(self)


# -- elementwise --

def gen_unary(s: _Scope):
    name = s.draw(st.sampled_from(sorted(UNARY)))
    s.emit(name, [s.any_value(UNARY[name])])


def gen_binary(s: _Scope):
    name = s.draw(st.sampled_from(sorted(BINARY)))
    x = s.any_value(BINARY[name])
    s.emit(name, [x, s.value(x.type)])


def gen_complex(s: _Scope):
    x = s.any_value(lambda d: d in (dtypes.F32, dtypes.F64))
    s.emit("complex", [x, s.value(x.type)])


def gen_compare(s: _Scope):
    x = s.any_value()
    attrs = {"comparison_direction": s.draw(st.sampled_from(ops.COMPARISON_DIRECTIONS))}
    if s.draw(st.booleans()):
        attrs["compare_type"] = s.draw(st.sampled_from(ops.COMPARE_TYPES))
    s.emit("compare", [x, s.value(x.type)], attrs)


def gen_select(s: _Scope):
    x = s.any_value()
    pshape = s.draw(st.sampled_from([(), x.shape]))
    p = s.value(TensorType(pshape, dtypes.BOOL))
    s.emit("select", [p, x, s.value(x.type)])


def gen_clamp(s: _Scope):
    x = s.any_value(is_numeric)
    lo = s.value(TensorType(s.draw(st.sampled_from([(), x.shape])), x.dtype))
    hi = s.value(TensorType(s.draw(st.sampled_from([(), x.shape])), x.dtype))
    s.emit("clamp", [lo, x, hi])


def gen_convert(s: _Scope):
    x = s.any_value()
    to = s.draw(dtype_strategy())
    s.emit("convert", [x], result_types=[TensorType(x.shape, to)])


def _bits(d: DType) -> int:
    return 8 if d.kind == "bool" else d.bits


def gen_bitcast_convert(s: _Scope):
    x = s.any_value()
    to = s.draw(dtype_strategy())
    a, b = _bits(x.dtype), _bits(to)
    if a < b and x.shape[-1:] != (b // a,):
        to = s.draw(dtype_strategy(lambda d: _bits(d) <= a))
        b = _bits(to)
    if a == b:
        shape = x.shape
    elif a > b:
        shape = x.shape + (a // b,)
    else:
        shape = x.shape[:-1]
    s.emit("bitcast_convert", [x], result_types=[TensorType(shape, to)])


def gen_reduce_precision(s: _Scope):
    x = s.any_value(is_float)
    s.emit("reduce_precision", [x], {"exponent_bits": s.draw(st.integers(1, 11)),
                                      "mantissa_bits": s.draw(st.integers(0, 52))})


# -- constants and shapes --

def gen_constant(s: _Scope):
    s.constant(s.draw(tensor_types()))


def gen_iota(s: _Scope):
    t = s.draw(tensor_types(is_numeric, min_rank=1))
    s.emit("iota", [], {"iota_dimension": s.draw(st.integers(0, t.rank - 1))}, [t])


def gen_broadcast_in_dim(s: _Scope):
    x = s.any_value()
    out_rank = x.type.rank + s.draw(st.integers(0, 2))
    dims = s.draw(st.permutations(range(out_rank)))[: x.type.rank]
    if s.draw(st.booleans()):
        dims = sorted(dims)
    shape = []
    for j in range(out_rank):
        if j in dims:
            n = x.shape[dims.index(j)]
            shape.append(n if n != 1 else s.draw(_dim(4)))
        else:
            shape.append(s.draw(_dim(4)))
    s.emit("broadcast_in_dim", [x], {"broadcast_dimensions": tuple(dims)},
           [TensorType(shape, x.dtype)])


def gen_reshape(s: _Scope):
    x = s.any_value()
    size = x.type.size
    if size == 0:
        shape = list(s.draw(shapes(min_rank=1)))
        shape[s.draw(st.integers(0, len(shape) - 1))] = 0
    else:
        shape, rest = [], size
        for _ in range(s.draw(st.integers(0, 3))):
            divisors = [k for k in range(1, rest + 1) if rest % k == 0]
            k = s.draw(st.sampled_from(divisors))
            shape.append(k)
            rest //= k
        if rest != 1 or s.draw(st.booleans()):
            shape.append(rest)
        shape = s.draw(st.permutations(shape))
    s.emit("reshape", [x], result_types=[TensorType(shape, x.dtype)])


def gen_transpose(s: _Scope):
    x = s.any_value()
    s.emit("transpose", [x], {"permutation": tuple(s.draw(st.permutations(range(x.type.rank))))})


def gen_slice(s: _Scope):
    x = s.any_value()
    start, limit, strides = [], [], []
    for d in x.shape:
        a = s.draw(st.integers(0, d))
        start.append(a)
        limit.append(s.draw(st.integers(a, d)))
        strides.append(s.draw(st.integers(1, 3)))
    s.emit("slice", [x], {"start_indices": tuple(start), "limit_indices": tuple(limit),
                          "strides": tuple(strides)})


def gen_concatenate(s: _Scope):
    x = s.any_value(min_rank=1)
    d = s.draw(st.integers(0, x.type.rank - 1))
    operands = [x]
    for _ in range(s.draw(st.integers(0, 2))):
        shape = list(x.shape)
        shape[d] = s.draw(_dim(4))
        operands.append(s.value(TensorType(shape, x.dtype)))
    s.emit("concatenate", operands, {"dimension": d})


def gen_pad(s: _Scope):
    x = s.any_value()
    pv = s.value(TensorType((), x.dtype))
    lo, hi, interior = [], [], []
    for d in x.shape:
        a, b, i = s.draw(st.integers(-2, 3)), s.draw(st.integers(-2, 3)), s.draw(st.integers(0, 2))
        if a + b + d + max(d - 1, 0) * i < 0:
            a = b = 0
        lo.append(a)
        hi.append(b)
        interior.append(i)
    s.emit("pad", [x, pv], {"edge_padding_low": tuple(lo), "edge_padding_high": tuple(hi),
                            "interior_padding": tuple(interior)})


def gen_reverse(s: _Scope):
    x = s.any_value()
    dims = s.draw(st.permutations(range(x.type.rank)))[: s.draw(st.integers(0, x.type.rank))]
    s.emit("reverse", [x], {"dimensions": tuple(dims)})


# -- contractions --

def _compatible_dtype(s: _Scope, d: DType) -> DType:
    if d.kind == "float":
        return s.draw(dtype_strategy(is_float))
    if d.kind in ("int", "uint"):
        return s.draw(dtype_strategy(is_integer))
    return d


def gen_dot_general(s: _Scope):
    nb, nc = s.draw(st.integers(0, 2)), s.draw(st.integers(0, 2))
    nl, nr = s.draw(st.integers(0, 1)), s.draw(st.integers(0, 1))
    bs = [s.draw(_dim(3)) for _ in range(nb)]
    cs = [s.draw(_dim(3)) for _ in range(nc)]
    lf = [s.draw(_dim(3)) for _ in range(nl)]
    rf = [s.draw(_dim(3)) for _ in range(nr)]

    def layout(free):
        axes = [("b", i) for i in range(nb)] + [("c", i) for i in range(nc)] + [("f", i) for i in range(len(free))]
        axes = s.draw(st.permutations(axes))
        size = {"b": bs, "c": cs, "f": free}
        shape = [size[k][i] for k, i in axes]
        batch = tuple(axes.index(("b", i)) for i in range(nb))
        contract = tuple(axes.index(("c", i)) for i in range(nc))
        free_in_order = [size["f"][i] for k, i in axes if k == "f"]
        return shape, batch, contract, free_in_order

    lshape, lb, lc, lfree = layout(lf)
    rshape, rb, rc, rfree = layout(rf)
    ldt = s.draw(dtype_strategy())
    rdt = _compatible_dtype(s, ldt)
    out_dt = s.draw(st.sampled_from([ldt, rdt, dtypes.F32]))
    attrs = {"lhs_batching_dimensions": lb, "rhs_batching_dimensions": rb,
             "lhs_contracting_dimensions": lc, "rhs_contracting_dimensions": rc}
    if s.draw(st.booleans()):
        attrs["precision_config"] = tuple(s.draw(st.lists(st.sampled_from(ops.PRECISIONS), min_size=2, max_size=2)))
    lhs = s.value(TensorType(lshape, ldt))
    rhs = s.value(TensorType(rshape, rdt))
    s.emit("dot_general", [lhs, rhs], attrs, [TensorType(bs + lfree + rfree, out_dt)])


def gen_convolution(s: _Scope):
    n = s.draw(st.integers(1, 2))
    fgc = s.draw(st.integers(1, 2))
    bgc = 1 if fgc > 1 else s.draw(st.integers(1, 2))
    k_in = s.draw(st.integers(1, 2))
    k_out = s.draw(st.integers(1, 2)) * fgc * bgc
    batch = s.draw(st.integers(0, 2)) * bgc
    in_sp = [s.draw(st.integers(0, 5)) for _ in range(n)]
    k_sp = [s.draw(st.integers(1, 3)) for _ in range(n)]
    strides = tuple(s.draw(st.integers(1, 2)) for _ in range(n))
    padding = tuple((s.draw(st.integers(-1, 2)), s.draw(st.integers(-1, 2))) for _ in range(n))
    lhs_dil = tuple(s.draw(st.integers(1, 2)) for _ in range(n))
    rhs_dil = tuple(s.draw(st.integers(1, 2)) for _ in range(n))
    in_perm = s.draw(st.permutations(range(n + 2)))
    k_perm = s.draw(st.permutations(range(n + 2)))
    o_perm = s.draw(st.permutations(range(n + 2)))
    lshape, kshape, oshape = [0] * (n + 2), [0] * (n + 2), [0] * (n + 2)
    lshape[in_perm[0]], lshape[in_perm[1]] = batch, k_in * fgc
    kshape[k_perm[0]], kshape[k_perm[1]] = k_in, k_out
    oshape[o_perm[0]], oshape[o_perm[1]] = batch // bgc, k_out
    for i in range(n):
        lshape[in_perm[2 + i]] = in_sp[i]
        kshape[k_perm[2 + i]] = k_sp[i]
        oshape[o_perm[2 + i]] = window_out(in_sp[i], k_sp[i], strides[i], *padding[i], lhs_dil[i], rhs_dil[i])
    dt = s.draw(dtype_strategy(is_float))
    attrs = {
        "window_strides": strides, "padding": padding, "lhs_dilation": lhs_dil, "rhs_dilation": rhs_dil,
        "window_reversal": tuple(s.draw(st.booleans()) for _ in range(n)),
        "input_batch_dimension": in_perm[0], "input_feature_dimension": in_perm[1],
        "input_spatial_dimensions": tuple(in_perm[2:]),
        "kernel_input_feature_dimension": k_perm[0], "kernel_output_feature_dimension": k_perm[1],
        "kernel_spatial_dimensions": tuple(k_perm[2:]),
        "output_batch_dimension": o_perm[0], "output_feature_dimension": o_perm[1],
        "output_spatial_dimensions": tuple(o_perm[2:]),
        "feature_group_count": fgc, "batch_group_count": bgc,
    }
    lhs, rhs = s.value(TensorType(lshape, dt)), s.value(TensorType(kshape, dt))
    s.emit("convolution", [lhs, rhs], attrs, [TensorType(oshape, dt)])


# -- data movement --

def gen_gather(s: _Scope):
    x = s.any_value(min_rank=1)
    r = x.type.rank
    k = s.draw(st.integers(1, r))
    start_index_map = tuple(s.draw(st.permutations(range(r)))[:k])
    batch_shape = list(s.draw(shapes(max_rank=2, max_dim=3)))
    implicit = k == 1 and s.draw(st.booleans())
    ivd = s.draw(st.integers(0, len(batch_shape))) if not implicit else len(batch_shape)
    ishape = batch_shape[:ivd] + ([] if implicit else [k]) + batch_shape[ivd:]
    sizes = [s.draw(st.integers(0, d)) for d in x.shape]
    collapsed = tuple(sorted(d for d in range(r) if sizes[d] <= 1 and s.draw(st.booleans())))
    n_off = r - len(collapsed)
    rank = len(batch_shape) + n_off
    offset_dims = tuple(sorted(s.draw(st.permutations(range(rank)))[:n_off]))
    idx = s.value(TensorType(ishape, s.draw(dtype_strategy(is_integer))))
    attrs = {"offset_dims": offset_dims, "collapsed_slice_dims": collapsed,
             "start_index_map": start_index_map, "index_vector_dim": ivd,
             "slice_sizes": tuple(sizes)}
    if s.draw(st.booleans()):
        attrs["indices_are_sorted"] = s.draw(st.booleans())
    s.emit("gather", [x, idx], attrs)


def gen_dynamic_slice(s: _Scope):
    x = s.any_value()
    idx = [s.value(TensorType((), s.draw(dtype_strategy(is_integer)))) for _ in range(x.type.rank)]
    sizes = tuple(s.draw(st.integers(0, d)) for d in x.shape)
    s.emit("dynamic_slice", [x, *idx], {"slice_sizes": sizes})


def gen_dynamic_update_slice(s: _Scope):
    x = s.any_value()
    u = s.value(TensorType([s.draw(st.integers(0, d)) for d in x.shape], x.dtype))
    idx = [s.value(TensorType((), s.draw(dtype_strategy(is_integer)))) for _ in range(x.type.rank)]
    s.emit("dynamic_update_slice", [x, u, *idx])


# -- regions --

_REDUCERS = {"add": is_any, "maximum": is_any, "minimum": is_any, "multiply": is_any}


def gen_reduce(s: _Scope):
    x = s.any_value()
    inputs = [x] + [s.value(TensorType(x.shape, s.draw(dtype_strategy())))
                    for _ in range(s.draw(st.integers(0, 1)))]
    scalars = [TensorType((), v.dtype) for v in inputs]
    inits = [s.value(t) for t in scalars]
    body = s.closed_sub(scalars + scalars)
    n = len(inputs)
    outs = []
    for i in range(n):
        name = s.draw(st.sampled_from(sorted(_REDUCERS)))
        outs.append(body.emit(name, [body.region.args[i], body.region.args[n + i]]).result)
    dims = tuple(s.draw(st.permutations(range(x.type.rank)))[: s.draw(st.integers(0, x.type.rank))])
    s.emit("reduce", inputs + inits, {"dimensions": dims}, regions=[body.finish(outs)])


def gen_sort(s: _Scope):
    x = s.any_value(min_rank=1)
    operands = [x] + [s.value(TensorType(x.shape, s.draw(dtype_strategy())))
                      for _ in range(s.draw(st.integers(0, 2)))]
    arg_types = [TensorType((), v.dtype) for v in operands for _ in range(2)]
    cmp = s.closed_sub(arg_types)
    keys = s.draw(st.permutations(range(len(operands))))[: s.draw(st.integers(1, len(operands)))]
    result = None
    for k in keys:
        attrs = {"comparison_direction": s.draw(st.sampled_from(["LT", "GT"]))}
        if operands[k].dtype.is_float:
            attrs["compare_type"] = s.draw(st.sampled_from(["FLOAT", "TOTALORDER"]))
        c = cmp.emit("compare", [cmp.region.args[2 * k], cmp.region.args[2 * k + 1]], attrs).result
        result = c if result is None else cmp.emit(s.draw(st.sampled_from(["and", "or"])), [result, c]).result
    attrs = {"dimension": s.draw(st.integers(-x.type.rank, x.type.rank - 1))}
    if s.draw(st.booleans()):
        attrs["is_stable"] = s.draw(st.booleans())
    s.emit("sort", operands, attrs, regions=[cmp.finish([result])])


def _branch(s: _Scope, arg_types, result_types) -> Region:
    """A region with random ops (which may capture values of the enclosing regions)."""
    b = s.sub(arg_types)
    b.random_ops(s.draw(st.integers(0, 3)))
    return b.finish([b.value(t) for t in result_types])


def gen_while(s: _Scope):
    i32 = TensorType((), dtypes.I32)
    counter = s.value(i32)
    carried = [counter] + [s.any_value() for _ in range(s.draw(st.integers(0, 2)))]
    types = [v.type for v in carried]
    cond = s.sub(types)
    cond.random_ops(s.draw(st.integers(0, 2)))
    limit = cond.value(i32)
    c = cond.emit("compare", [cond.region.args[0], limit], {"comparison_direction": "LT"}).result
    cond_region = cond.finish([c])
    body = s.sub(types)
    step = body.emit("add", [body.region.args[0], body.value(i32)]).result
    body.random_ops(s.draw(st.integers(0, 3)))
    outs = [step] + [body.value(t) for t in types[1:]]
    s.emit("while", carried, regions=[cond_region, body.finish(outs)])


def _result_types(s: _Scope) -> list[TensorType]:
    n = s.draw(st.integers(0, 2))
    known = [v.type for v in s.pool]
    return [s.draw(st.sampled_from(known)) if known and s.draw(st.booleans()) else s.draw(tensor_types())
            for _ in range(n)]


def gen_if(s: _Scope):
    pred = s.value(TensorType((), dtypes.BOOL))
    types = _result_types(s)
    s.emit("if", [pred], regions=[_branch(s, [], types), _branch(s, [], types)])


def gen_case(s: _Scope):
    index = s.value(TensorType((), dtypes.I32))
    types = _result_types(s)
    branches = [_branch(s, [], types) for _ in range(s.draw(st.integers(1, 3)))]
    s.emit("case", [index], regions=branches)


def gen_optimization_barrier(s: _Scope):
    s.emit("optimization_barrier", [s.any_value() for _ in range(s.draw(st.integers(1, 3)))])


def gen_custom_call(s: _Scope):
    operands = [s.any_value() for _ in range(s.draw(st.integers(0, 2)))]
    attrs = {"call_target_name": s.draw(location_text)}
    if s.draw(st.booleans()):
        attrs["has_side_effect"] = s.draw(st.booleans())
    s.emit("custom_call", operands, attrs, s.draw(st.lists(tensor_types(), max_size=2)))


LEAF_GENERATORS = [
    gen_unary, gen_unary, gen_binary, gen_binary, gen_complex, gen_compare, gen_select, gen_clamp,
    gen_convert, gen_bitcast_convert, gen_reduce_precision, gen_constant, gen_iota,
    gen_broadcast_in_dim, gen_reshape, gen_transpose, gen_slice, gen_concatenate, gen_pad,
    gen_reverse, gen_dot_general, gen_convolution, gen_gather, gen_dynamic_slice,
    gen_dynamic_update_slice, gen_reduce, gen_sort, gen_optimization_barrier, gen_custom_call,
]
REGION_GENERATORS = [gen_while, gen_if, gen_case]
GENERATORS = LEAF_GENERATORS + REGION_GENERATORS * 2


@st.composite
def graphs(draw, max_ops: int = 8, max_depth: int = 2) -> Graph:
    """A random valid graph of at most about `max_ops` top-level ops."""
    inputs = draw(st.lists(tensor_types(), max_size=3))
    body = Region(inputs)
    s = _Scope(draw, body, [], 0, max_depth)
    s.random_ops(draw(st.integers(1, max_ops)))
    outs = draw(st.lists(st.sampled_from(s.pool), max_size=3)) if s.pool else []
    s.finish(outs)
    return Graph(draw(graph_names), body)


@st.composite
def graphs_with(draw, generator, max_depth: int = 2) -> Graph:
    """A graph built around one call of `generator` (one of the gen_* functions)."""
    inputs = draw(st.lists(tensor_types(), max_size=2))
    body = Region(inputs)
    s = _Scope(draw, body, [], 0, max_depth)
    generator(s)
    s.finish(s.region.ops[-1].results)
    return Graph(draw(graph_names), body)
