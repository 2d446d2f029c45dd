"""Hypothesis strategies and helpers for testing graph passes against the reference executor.

`graphs()` builds random valid graphs from the ops the passes rewrite most: elementwise ops,
broadcast_in_dim, reshape, transpose, slice, concatenate, pad, reverse, dot_general, reduce,
select, convert, constants, `if`/`case` and bounded `while` loops, plus shapes made to trigger
the rewrites: multiplications by 1 (and additions of -0.0 and +0.0, the IEEE trap), x op x,
chains of reshapes/transposes/broadcasts/converts, duplicated ops, ops on constants, no-op
shape ops, branches on constants. Every op it builds runs on the reference executor (no
custom calls, loops that end).

`inputs_for(graph)` draws fresh input arrays: never all zeros, with NaN, inf and -0.0
sometimes. `same_bits` / `assert_same_results` compare bit for bit, NaN equal to NaN.

For unit tests: `ir(text)` (a graph from its text form), `Builder` (one op at a time),
`apply(graph, passes)` (run passes, keep a copy of the original), `assert_equivalent` (the
same results on the dtypes' special values), `run_passes` (what `optimize(passes=...)` does).

The op builders come from `ir_strategies` (its `_Scope` and `gen_*` functions).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import strategies as st

import ir_strategies as S
from xchip.errors import XchipError
from xchip.ir import Graph, Region, TensorType, dtypes, ops, parse_graph, print_graph, verify
from xchip.passes import PassOptions, optimize
from xchip.runtime.reference import evaluate

MY_PASSES = ("inline", "fold-constants", "canonicalize", "simplify", "cse", "dce")

I32, BOOL = dtypes.I32, dtypes.BOOL


# --- running passes -------------------------------------------------------------------------

def run_passes(graph: Graph, names, options: PassOptions | None = None):
    """Run passes by name on `graph` in place, verifying after each."""
    options = dataclasses.replace(options or PassOptions(), debug=True)
    return optimize(graph, options, passes=list(names))


def ir(text: str) -> Graph:
    """A graph from its text form, with each op's omitted optional attributes filled in."""
    graph = parse_graph(text)
    for op in graph.walk():
        op.attrs = ops.fill_defaults(op.name, op.attrs)
    return verify(graph)


def op_names(graph: Graph) -> list[str]:
    return [op.name for op in graph.walk()]


# --- comparing results ----------------------------------------------------------------------

def _float_parts(a: np.ndarray) -> list[np.ndarray]:
    if a.dtype.kind == "c":
        return [np.ascontiguousarray(a.real), np.ascontiguousarray(a.imag)]
    return [a]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bits, except that any NaN equals any NaN."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    kind = dtypes.from_numpy(a.dtype).kind
    if kind not in ("float", "complex"):
        return a.tobytes() == b.tobytes()
    for x, y in zip(_float_parts(a), _float_parts(b)):
        with np.errstate(invalid="ignore"):
            nx, ny = np.isnan(x.astype(np.float64)), np.isnan(y.astype(np.float64))
        if not np.array_equal(nx, ny):
            return False
        if np.ascontiguousarray(x[~nx]).tobytes() != np.ascontiguousarray(y[~ny]).tobytes():
            return False
    return True


def first_difference(a: np.ndarray, b: np.ndarray) -> str:
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"{a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
    fa, fb = a.reshape(-1), b.reshape(-1)
    for i in range(fa.size):
        if not same_bits(fa[i:i + 1], fb[i:i + 1]):
            return f"element {i}: {fa[i]!r} vs {fb[i]!r}"
    return "none"


def assert_same_results(before: list[np.ndarray], after: list[np.ndarray], where: str = "") -> None:
    assert len(before) == len(after), where
    for i, (a, b) in enumerate(zip(before, after)):
        assert same_bits(a, b), f"output {i} differs {where}: {first_difference(a, b)}"


# --- inputs ---------------------------------------------------------------------------------

_FLOAT_SPECIALS = [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.0]


def _random_array(rng: np.random.Generator, t: TensorType, special_rate: float, scale: float) -> np.ndarray:
    d, n = t.dtype, t.size
    if d.kind == "bool":
        flat = rng.random(n) < 0.5
    elif d.is_integer:
        info = np.iinfo(d.numpy)
        if rng.random() < 0.5:
            flat = rng.integers(max(info.min, -5), min(info.max, 5), n, endpoint=True)
        else:
            flat = rng.integers(info.min, info.max, n, endpoint=True, dtype=np.int64 if d.kind == "int" else np.uint64)
        flat = flat.astype(d.numpy)
    else:
        real = rng.standard_normal(n) * scale
        if d.is_complex:
            values = real + 1j * rng.standard_normal(n) * scale
        else:
            values = real
        special = rng.random(n) < special_rate
        values = np.where(special, rng.choice(_FLOAT_SPECIALS, n), values)
        flat = values.astype(d.numpy)
    if n and not flat.any():
        flat[0] = 1   # never all zeros: x*0 and x+0.0 must be told apart from x
    return np.ascontiguousarray(flat).reshape(t.shape)


@st.composite
def inputs_for(draw, graph: Graph) -> list[np.ndarray]:
    seed = draw(st.integers(0, 2**32 - 1))
    special_rate = draw(st.sampled_from([0.0, 0.0, 0.1, 0.4]))
    scale = draw(st.sampled_from([1.0, 1.0, 1e-3, 1e4]))
    rng = np.random.default_rng(seed)
    return [_random_array(rng, t, special_rate, scale) for t in graph.input_types]


def evaluate_or_none(graph: Graph, args) -> list[np.ndarray] | None:
    """The reference results, or None for a graph the executor refuses (an op on a dtype it
    has no implementation for: such a graph says nothing about a pass)."""
    try:
        return evaluate(graph, args)
    except XchipError:
        return None


# --- graph building -------------------------------------------------------------------------

class _Scope(S._Scope):
    """`ir_strategies`' region builder, drawing from this module's op generators."""

    def random_ops(self, n: int) -> None:
        gens = GENERATORS if self.depth < self.max_depth else LEAF_GENERATORS
        for _ in range(n):
            self.draw(st.sampled_from(gens))(self)

    def sub(self, arg_types) -> "_Scope":
        return _Scope(self.draw, Region(arg_types), self.pool, self.depth + 1, self.max_depth)

    def closed_sub(self, arg_types) -> "_Scope":
        return _Scope(self.draw, Region(arg_types), [], self.depth + 1, self.max_depth)


def _splat(s: _Scope, t: TensorType, x):
    """A constant of type t with every element x: the whole tensor, or a broadcast scalar."""
    with np.errstate(invalid="ignore", over="ignore"):
        scalar = np.array(x).astype(t.dtype.numpy)
    if s.draw(st.booleans()):
        return s.emit("constant", [], {"value": np.broadcast_to(scalar, t.shape).copy()}).result
    c = s.emit("constant", [], {"value": scalar.reshape(())}).result
    return s.emit("broadcast_in_dim", [c], {"broadcast_dimensions": ()}, [t]).result


# per op, the constants its rewrites look for, and near misses (x + 0.0 must stay)
_SPECIAL_OPERANDS = {
    "add": [-0.0, 0.0, 0], "subtract": [0.0, -0.0, 0], "multiply": [1, -1, 0, -0.0, 2],
    "divide": [1, -1, 2, 0.5, 0.25, 2.0**-20, 2.0**20, 2.0**-130, 2.0**-149, 3], "power": [1, 0, 2],
    "and": [True, -1, 0], "or": [False, 0, -1], "xor": [0, -1], "maximum": [np.nan, -np.inf],
    "minimum": [np.nan, np.inf],
}
_OTHER_OPERANDS = [1, -1, 0, -0.0, 0.0, 2, 0.5, True, False, np.nan, np.inf, -np.inf]


def gen_identity_operand(s: _Scope):
    """x op c and c op x, with c a splat that some rewrite looks for (or a near miss)."""
    name = s.draw(st.sampled_from(sorted(_SPECIAL_OPERANDS)))
    x = s.any_value(S.BINARY[name])
    pool = _SPECIAL_OPERANDS[name] if s.draw(st.integers(0, 3)) else _OTHER_OPERANDS
    c = _splat(s, x.type, s.draw(st.sampled_from(pool)))
    operands = [x, c] if s.draw(st.booleans()) else [c, x]
    s.emit(name, operands)


def gen_self_operand(s: _Scope):
    """x op x."""
    name = s.draw(st.sampled_from(["subtract", "maximum", "minimum", "and", "or", "xor", "compare", "add",
                                   "multiply", "divide"]))
    if name == "compare":
        x = s.any_value()
        attrs = {"comparison_direction": s.draw(st.sampled_from(ops.COMPARISON_DIRECTIONS)),
                 "compare_type": s.draw(st.sampled_from(ops.COMPARE_TYPES))}
        s.emit("compare", [x, x], attrs)
        return
    x = s.any_value(S.BINARY[name])
    s.emit(name, [x, x])


def gen_unary_twice(s: _Scope):
    name = s.draw(st.sampled_from(["negate", "not", "abs"]))
    x = s.any_value(S.UNARY[name])
    y = s.emit(name, [x]).result
    s.emit(name, [y])


def gen_reshape_chain(s: _Scope):
    for _ in range(s.draw(st.integers(2, 3))):
        S.gen_reshape(s)
        s.pool.insert(0, s.region.ops[-1].result)   # the next reshape likely picks it


def gen_transpose_chain(s: _Scope):
    x = s.any_value()
    perm = tuple(s.draw(st.permutations(range(x.type.rank))))
    y = s.emit("transpose", [x], {"permutation": perm}).result
    if s.draw(st.booleans()):
        inverse = tuple(perm.index(i) for i in range(len(perm)))
        s.emit("transpose", [y], {"permutation": inverse})
    else:
        s.emit("transpose", [y], {"permutation": tuple(s.draw(st.permutations(range(x.type.rank))))})


def gen_broadcast_chain(s: _Scope):
    S.gen_broadcast_in_dim(s)
    s.pool.insert(0, s.region.ops[-1].result)
    S.gen_broadcast_in_dim(s)
    if s.draw(st.booleans()):
        s.pool.insert(0, s.region.ops[-1].result)
        S.gen_transpose(s)


def gen_convert_chain(s: _Scope):
    x = s.any_value(lambda d: not d.is_complex)
    for _ in range(s.draw(st.integers(2, 3))):
        to = s.draw(S.dtype_strategy(lambda d: not d.is_complex))
        x = s.emit("convert", [x], result_types=[TensorType(x.shape, to)]).result


def gen_noop_shape(s: _Scope):
    x = s.any_value()
    r = x.type.rank
    kind = s.draw(st.sampled_from(["slice", "reshape", "transpose", "convert", "broadcast", "pad",
                                   "reverse", "concatenate"]))
    if kind == "slice":
        s.emit("slice", [x], {"start_indices": (0,) * r, "limit_indices": x.shape,
                              "strides": tuple(1 if d > 1 else s.draw(st.integers(1, 3)) for d in x.shape)})
    elif kind == "reshape":
        s.emit("reshape", [x], result_types=[x.type])
    elif kind == "transpose":
        s.emit("transpose", [x], {"permutation": tuple(range(r))})
    elif kind == "convert":
        s.emit("convert", [x], result_types=[x.type])
    elif kind == "broadcast":
        s.emit("broadcast_in_dim", [x], {"broadcast_dimensions": tuple(range(r))}, [x.type])
    elif kind == "pad":
        s.emit("pad", [x, s.value(TensorType((), x.dtype))],
               {"edge_padding_low": (0,) * r, "edge_padding_high": (0,) * r, "interior_padding": (0,) * r})
    elif kind == "reverse":
        s.emit("reverse", [x], {"dimensions": tuple(d for d in range(r) if x.shape[d] <= 1)})
    elif r:
        s.emit("concatenate", [x], {"dimension": s.draw(st.integers(0, r - 1))})


def gen_splat_shape_op(s: _Scope):
    """A shape op of a splat constant."""
    t = s.draw(S.tensor_types())
    c = s.emit("constant", [], {"value": np.broadcast_to(s.draw(st.sampled_from(S.specials(t.dtype))),
                                                        t.shape).astype(t.dtype.numpy)}).result
    s.pool.insert(0, c)
    s.draw(st.sampled_from([S.gen_broadcast_in_dim, S.gen_reshape, S.gen_transpose, S.gen_slice,
                            S.gen_reverse]))(s)


def gen_duplicate(s: _Scope):
    """A copy of an op of this region (same operands and attributes)."""
    cands = [op for op in s.region.ops if not op.regions]
    if not cands:
        S.gen_binary(s)
        return
    op = s.draw(st.sampled_from(cands))
    s.emit(op.name, list(op.operands), dict(op.attrs), op.result_types)


def gen_constant_expression(s: _Scope):
    """An op on constants only."""
    name = s.draw(st.sampled_from(sorted(S.BINARY)))
    t = s.draw(S.tensor_types(S.BINARY[name]))
    s.emit(name, [s.constant(t), s.constant(t)])


def gen_select_special(s: _Scope):
    x = s.any_value()
    kind = s.draw(st.sampled_from(["const", "not", "same"]))
    pshape = s.draw(st.sampled_from([(), x.shape]))
    if kind == "const":
        p = _splat(s, TensorType(pshape, BOOL), s.draw(st.booleans()))
    else:
        p = s.value(TensorType(pshape, BOOL))
    if kind == "not":
        p = s.emit("not", [p]).result
    y = x if kind == "same" else s.value(x.type)
    s.emit("select", [p, x, y])


def gen_reassociate(s: _Scope):
    """(x op c1) op c2."""
    name = s.draw(st.sampled_from(["add", "multiply"]))
    x = s.any_value(lambda d: not d.is_complex)
    y = s.emit(name, [x, s.constant(x.type)]).result
    s.emit(name, [y, s.constant(x.type)])


def gen_reduce_precision_full(s: _Scope):
    x = s.any_value(S.is_float)
    exponent, mantissa = {"f8e4m3fn": (4, 3), "f8e5m2": (5, 2), "f16": (5, 10), "bf16": (8, 7),
                          "f32": (8, 23), "f64": (11, 52)}[x.dtype.name]
    s.emit("reduce_precision", [x], {"exponent_bits": exponent + s.draw(st.integers(0, 1)),
                                     "mantissa_bits": mantissa + s.draw(st.integers(0, 1))})


def _branch(s: _Scope, result_types) -> Region:
    b = s.sub([])
    b.random_ops(s.draw(st.integers(0, 3)))
    return b.finish([b.value(t) for t in result_types])


def _result_types(s: _Scope) -> list[TensorType]:
    known = [v.type for v in s.pool]
    return [s.draw(st.sampled_from(known)) if known and s.draw(st.booleans()) else s.draw(S.tensor_types())
            for _ in range(s.draw(st.integers(1, 2)))]


def gen_if(s: _Scope):
    if s.draw(st.booleans()):
        pred = _splat(s, TensorType((), BOOL), s.draw(st.booleans()))
    else:
        pred = s.value(TensorType((), BOOL))
    types = _result_types(s)
    first = _branch(s, types)
    # one time in four both branches compute the same thing
    second = _clone_region(first) if s.draw(st.integers(0, 3)) == 0 else _branch(s, types)
    s.emit("if", [pred], regions=[first, second])


def gen_case(s: _Scope):
    if s.draw(st.booleans()):
        index = s.emit("constant", [], {"value": np.array(s.draw(st.integers(-2, 4)), np.int32)}).result
    else:
        index = s.value(TensorType((), I32))
    types = _result_types(s)
    s.emit("case", [index], regions=[_branch(s, types) for _ in range(s.draw(st.integers(1, 3)))])


def gen_while(s: _Scope):
    """A loop that ends: a counter from a constant up to a limit of at most 3, or a
    condition that is constant false."""
    start = s.emit("constant", [], {"value": np.array(s.draw(st.integers(0, 2)), np.int32)}).result
    carried = [start] + [s.any_value() for _ in range(s.draw(st.integers(0, 2)))]
    types = [v.type for v in carried]
    cond = s.sub(types)
    if s.draw(st.booleans()):
        cond.random_ops(s.draw(st.integers(0, 2)))
        limit = cond.emit("constant", [], {"value": np.array(s.draw(st.integers(0, 3)), np.int32)}).result
        go = cond.emit("compare", [cond.region.args[0], limit], {"comparison_direction": "LT"}).result
    else:
        go = cond.emit("constant", [], {"value": np.array(False)}).result
    body = s.sub(types)
    one = body.emit("constant", [], {"value": np.array(1, np.int32)}).result
    step = body.emit("add", [body.region.args[0], one]).result
    body.random_ops(s.draw(st.integers(0, 3)))
    outs = [step] + [body.value(t) for t in types[1:]]
    s.emit("while", carried, regions=[cond.finish([go]), body.finish(outs)])


def _clone_region(region: Region, m: dict | None = None) -> Region:
    """A copy of a region: new ops, the same values from outside it."""
    m = {} if m is None else m
    out = Region(region.arg_types)
    m.update(zip(region.args, out.args))
    for op in region.ops:
        regions = [_clone_region(r, m) for r in op.regions]
        new = ops.make(op.name, [m.get(v, v) for v in op.operands], dict(op.attrs),
                       op.result_types if op.name != "return" else [], regions, op.loc)
        m.update(zip(op.results, new.results))
        out.append(new)
    return out


PLAIN_GENERATORS = [
    S.gen_unary, S.gen_binary, S.gen_binary, S.gen_compare, S.gen_select, S.gen_clamp, S.gen_convert,
    S.gen_constant, S.gen_iota, S.gen_broadcast_in_dim, S.gen_reshape, S.gen_transpose, S.gen_slice,
    S.gen_concatenate, S.gen_pad, S.gen_reverse, S.gen_dot_general, S.gen_reduce,
]
TRIGGER_GENERATORS = [
    gen_identity_operand, gen_identity_operand, gen_self_operand, gen_unary_twice, gen_reshape_chain,
    gen_transpose_chain, gen_broadcast_chain, gen_convert_chain, gen_noop_shape, gen_splat_shape_op,
    gen_duplicate, gen_duplicate, gen_constant_expression, gen_select_special, gen_reassociate,
    gen_reduce_precision_full,
]
LEAF_GENERATORS = PLAIN_GENERATORS + TRIGGER_GENERATORS
GENERATORS = LEAF_GENERATORS + [gen_if, gen_case, gen_while] * 2


@st.composite
def graphs(draw, max_ops: int = 10, max_depth: int = 2) -> Graph:
    """A random valid graph that the reference executor can run."""
    inputs = draw(st.lists(S.tensor_types(), min_size=1, max_size=3))
    body = Region(inputs)
    s = _Scope(draw, body, [], 0, max_depth)
    s.random_ops(draw(st.integers(1, max_ops)))
    produced = [v for op in body.ops for v in op.results]
    outs = draw(st.lists(st.sampled_from(produced), min_size=1, max_size=4)) if produced else list(body.args[:1])
    s.finish(outs)
    return Graph("main", body)


def op_count(graph: Graph) -> int:
    return sum(1 for _ in graph.walk())


def size_ok(graph: Graph, limit: int = 4096) -> bool:
    """Keep examples small enough to evaluate quickly."""
    return all(math.prod(r.type.shape) <= limit for op in graph.walk() for r in op.results)


def specials_array(t: TensorType) -> np.ndarray:
    """An array of type t cycling through the dtype's special values (-0.0, NaN, inf, ...)."""
    pool = S.specials(t.dtype)
    out = np.empty(t.size, t.dtype.numpy)
    for i in range(t.size):
        out[i] = pool[i % len(pool)]
    return out.reshape(t.shape)


def assert_equivalent(before: Graph, after: Graph, args=None) -> None:
    """Same results bit for bit on `args` (default: arrays of special values)."""
    if args is None:
        args = [specials_array(t) for t in before.input_types]
    assert_same_results(evaluate(before, args), evaluate(after, args), f"\n--- before\n{before}--- after\n{after}")


class Builder:
    """Builds a one-region graph op by op: `b.op("add", x, y)`, `b.splat(t, 1.0)`."""

    def __init__(self, *input_types: TensorType):
        self.body = Region(list(input_types))
        self.inputs = self.body.args

    def op(self, name: str, *operands, result_type: TensorType | None = None, **attrs):
        types = None if result_type is None else [result_type]
        return self.body.append(ops.make(name, list(operands), attrs, types)).result

    def constant(self, value: np.ndarray):
        return self.op("constant", value=np.asarray(value))

    def splat(self, t: TensorType, x, broadcast: bool = True):
        """A splat of x: a broadcast scalar constant, or a whole-shape constant."""
        with np.errstate(invalid="ignore", over="ignore"):
            scalar = np.array(x).astype(t.dtype.numpy)
        if not broadcast:
            return self.constant(np.broadcast_to(scalar, t.shape).copy())
        return self.op("broadcast_in_dim", self.constant(scalar), result_type=t, broadcast_dimensions=())

    def graph(self, *outputs) -> Graph:
        self.body.append(ops.make("return", list(outputs), result_types=[]))
        return verify(Graph("main", self.body))


def apply(graph: Graph, names, options: PassOptions | None = None) -> tuple[Graph, dict]:
    """Run passes on `graph` in place; returns an untouched copy of the original and the last
    pass's statistics."""
    before = parse_graph(print_graph(graph))
    result = run_passes(graph, [names] if isinstance(names, str) else names, options)
    return before, result.stats[-1].stats
