"""Shared by the fusion and memory-planning tests: running the two passes, building small
graphs by hand, tracing JAX functions and the example models, and checking that a kernel
graph is a valid partition of its graph."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import strategies as st

from xchip.ir import Graph, Op, Region, TensorType, Value, ops, verify
from xchip.ir.kernel_graph import KINDS, KernelGraph
from xchip.passes import PassOptions, optimize


def run_passes(graph: Graph, level: str = "O2", passes=("fuse", "plan-memory")):
    """(kernel graph, memory plan, statistics by pass name) of `passes` run on `graph`
    (`passes=None`: the whole pipeline of `level`)."""
    result = optimize(graph, PassOptions(level=level), passes=None if passes is None else list(passes))
    return result.kernel_graph, result.memory_plan, {s.name: s.stats for s in result.stats}


def fuse(graph: Graph, level: str = "O2") -> KernelGraph:
    return run_passes(graph, level, ("fuse",))[0]


# --- building graphs ---------------------------------------------------------------------


class Builder:
    """Appends ops to a graph body: `b.op("add", x, y)` returns the result value."""

    def __init__(self, *input_types: str):
        self.region = Region([TensorType.parse(t) for t in input_types])

    @property
    def args(self) -> list[Value]:
        return self.region.args

    def emit(self, name: str, *operands: Value, result: str | None = None, regions=(), **attrs) -> Op:
        types = [TensorType.parse(result)] if result else None
        return self.region.append(ops.make(name, operands, attrs, types, regions))

    def op(self, name: str, *operands: Value, result: str | None = None, **attrs) -> Value:
        return self.emit(name, *operands, result=result, **attrs).result

    def const(self, value, dtype: str = "float32") -> Value:
        return self.op("constant", value=np.asarray(value, dtype=dtype))

    def splat(self, scalar: float, like: Value) -> Value:
        """broadcast_in_dim of a scalar constant to `like`'s shape (what JAX emits)."""
        c = self.const(scalar, like.dtype.numpy)
        return self.op("broadcast_in_dim", c, result=str(like.type), broadcast_dimensions=())

    def reduce(self, x: Value, dims: tuple[int, ...], body: str = "add", init: float = 0.0) -> Value:
        scalar = TensorType((), x.dtype)
        region = Region([scalar, scalar])
        combined = region.append(ops.make(body, region.args)).result
        region.append(ops.make("return", [combined], result_types=[]))
        return self.emit("reduce", x, self.const(init, x.dtype.numpy), regions=[region], dimensions=dims).result

    def dot(self, x: Value, w: Value, contract=((1,), (0,)), batch=((), ())) -> Value:
        return self.op("dot_general", x, w, lhs_contracting_dimensions=contract[0],
                       rhs_contracting_dimensions=contract[1], lhs_batching_dimensions=batch[0],
                       rhs_batching_dimensions=batch[1])

    def graph(self, *outputs: Value) -> Graph:
        self.region.append(ops.make("return", list(outputs), result_types=[]))
        return verify(Graph("g", self.region))


def less_than() -> Region:
    """A sort comparator: a < b."""
    scalar = TensorType((), "f32")
    region = Region([scalar, scalar])
    lt = region.append(ops.make("compare", region.args, {"comparison_direction": "LT"}))
    region.append(ops.make("return", [lt.result], result_types=[]))
    return region


@st.composite
def fusible_graphs(draw):
    """Random DAGs of the ops fusion cares about on [4,8] values: elementwise ops, splat and
    row broadcasts, row reductions, matmuls with an [8,8] weight, an opaque op."""
    b = Builder("f32[4,8]", "f32[4,8]", "f32[8,8]", "f32[8]")
    pool, vectors, weight = list(b.args[:2]), [], b.args[2]
    rows = b.args[3]

    def pick() -> Value:
        return draw(st.sampled_from(pool))

    for _ in range(draw(st.integers(1, 24))):
        kind = draw(st.sampled_from(["unary", "binary", "binary", "dot", "reduce", "row_op", "splat",
                                     "bias", "opaque", "softmax_like"]))
        if kind == "unary":
            pool.append(b.op(draw(st.sampled_from(["exponential", "negate", "tanh"])), pick()))
        elif kind == "binary":
            pool.append(b.op(draw(st.sampled_from(["add", "multiply", "subtract", "maximum"])), pick(), pick()))
        elif kind == "dot":
            w = weight if draw(st.booleans()) else b.op("transpose", weight, permutation=(1, 0))
            pool.append(b.dot(pick(), w))
        elif kind == "reduce":
            vectors.append(b.reduce(pick(), (1,), draw(st.sampled_from(["add", "maximum"]))))
        elif kind == "row_op" and vectors:
            v = draw(st.sampled_from(vectors))
            wide = b.op("broadcast_in_dim", v, result="f32[4,8]", broadcast_dimensions=(0,))
            pool.append(b.op(draw(st.sampled_from(["subtract", "divide", "multiply"])), pick(), wide))
        elif kind == "splat":
            pool.append(b.op("multiply", pick(), b.splat(draw(st.sampled_from([0.5, 2.0])), pool[0])))
        elif kind == "bias":
            pool.append(b.op("add", pick(), b.op("broadcast_in_dim", rows, result="f32[4,8]",
                                                 broadcast_dimensions=(1,))))
        elif kind == "opaque":
            pool.append(b.emit("sort", pick(), regions=[less_than()], dimension=1).result)
        elif kind == "softmax_like":
            x = pick()
            m = b.op("broadcast_in_dim", b.reduce(x, (1,), "maximum", -np.inf), result="f32[4,8]",
                     broadcast_dimensions=(0,))
            e = b.op("exponential", b.op("subtract", x, m))
            s = b.op("broadcast_in_dim", b.reduce(e, (1,)), result="f32[4,8]", broadcast_dimensions=(0,))
            pool.append(b.dot(b.op("divide", e, s), weight))
    outs = draw(st.lists(st.sampled_from(pool + vectors), min_size=1, max_size=3, unique=True))
    return b.graph(*outs)


# --- JAX functions and the examples --------------------------------------------------------


def trace_graph(fn, *args) -> Graph:
    """The xchip IR of a JAX function, as `xchip.jit(fn).lower(*args).graph` gives it."""
    from xchip.frontend.stablehlo_import import import_stablehlo
    from xchip.frontend.tracing import trace
    return import_stablehlo(trace(fn, args, {}).stablehlo)


@functools.lru_cache(maxsize=None)
def _example_text(name: str, dtype: str) -> str:
    from examples.registry import get
    ex = get(name)
    return str(trace_graph(ex.fn, *ex.make_args(np.random.default_rng(0), dtype)))


def example_graph(name: str, dtype: str) -> Graph:
    """A fresh copy of an example model's graph (passes may change graphs in place)."""
    from xchip.ir import parse_graph
    return parse_graph(_example_text(name, dtype))


# --- checking a kernel graph ---------------------------------------------------------------


def top_level_ops(graph: Graph) -> list[Op]:
    return [op for op in graph.body.ops if op.name != "return"]


def is_cheap_constant(op: Op) -> bool:
    if op.name == "iota":
        return True
    if op.name != "constant":
        return False
    raw = np.ascontiguousarray(op.attrs["value"]).reshape(-1).view(np.uint8)
    size = op.attrs["value"].size
    return size <= 1 or bool((raw.reshape(size, -1) == raw.reshape(size, -1)[0]).all())


def group_counts(kg: KernelGraph) -> dict[str, int]:
    return {k: v for k, v in sorted(kg.counts().items())}


def check_partition(kg: KernelGraph, level: str = "O2") -> None:
    """Everything a kernel graph promises: a valid execution order, every op computed,
    every value read either computed earlier or supplied, outputs exactly the values
    needed elsewhere."""
    graph = kg.graph
    body = top_level_ops(graph)
    position = {op: i for i, op in enumerate(body)}
    assert [g.id for g in kg.groups] == list(range(len(kg.groups)))
    homes: dict[Op, list[int]] = {op: [] for op in body}
    for g in kg.groups:
        assert g.kind in KINDS
        assert g.ops == sorted(g.ops, key=position.__getitem__), "ops in program order"
        assert len(set(g.ops)) == len(g.ops)
        for op in g.ops:
            homes[op].append(g.id)
        if g.kind == "opaque":
            assert sum(not is_cheap_constant(op) for op in g.ops) == 1
    for op, where in homes.items():
        if op.name == "constant" and not is_cheap_constant(op):
            assert where == [], "tensor constants are read from memory, not computed"
        elif not is_cheap_constant(op):
            assert where, f"{op} is in no group"
            if level == "O0" or op.name not in ("broadcast_in_dim",) and not _generated(op):
                assert len(where) == 1, f"{op} computed by groups {where}"

    available = set(graph.inputs) | {op.result for op in body
                                     if op.name == "constant" and not is_cheap_constant(op)}
    writer: dict[Value, int] = {}
    for g in kg.groups:
        inside = {r for op in g.ops for r in op.results}
        for v in g.inputs:
            assert v not in inside
            assert v in available, f"group {g.name} reads {v} before any group writes it"
        for op in g.ops:
            for v in _operands(op):
                assert v in inside or v in g.inputs, f"{g.name}: {op} reads {v} that is neither computed nor read"
        for v in g.outputs:
            assert v in inside and v not in writer, f"{v} written twice"
            writer[v] = g.id
            available.add(v)
    for v in graph.outputs:
        assert v in available, f"graph output {v} is never computed"
    read_later = {v for g in kg.groups for v in g.inputs} | set(graph.outputs)
    assert set(writer) <= read_later, "a group writes a value nobody reads"


def _operands(op: Op) -> list[Value]:
    from xchip.ir.rewrite import free_values
    return list(op.operands) + list(free_values(op)) if op.regions else list(op.operands)


def _generated(op: Op) -> bool:
    """Computed from cheap constants alone (so fusion may copy it into several groups)."""
    stack, seen = [op], set()
    while stack:
        o = stack.pop()
        if o in seen:
            continue
        seen.add(o)
        if is_cheap_constant(o):
            continue
        if o.regions or not o.operands or any(v.producer is None for v in o.operands):
            return False
        stack += [v.producer for v in o.operands]
    return True
