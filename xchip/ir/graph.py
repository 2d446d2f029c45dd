"""The xchip IR: a graph of typed ops in SSA form, with nested regions.

A `Graph` is one function: its `body` region takes the inputs as arguments and ends in a
`return` op whose operands are the outputs. Ops that carry computations (reduce, sort,
scatter, while, if, case, ...) own regions of the same shape: scalar or tensor arguments,
a list of ops, and a final `return`.

Attribute values are plain Python data: int, float, bool, str, tuples of those (nested
tuples for pairs), and numpy arrays for tensor constants. The attributes of each op are
declared in `xchip.ir.ops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .types import TensorType


@dataclass(frozen=True)
class Location:
    """Where an op came from: the user's Python line where JAX provides it, and a name
    (JAX's op path such as `jit(f)/dot_general`)."""

    file: str | None = None
    line: int | None = None
    col: int | None = None
    name: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.col is not None:
                    where += f":{self.col}"
        if self.name and where:
            return f"{where} ({self.name})"
        return where or self.name or "<unknown>"

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.file, self.line, self.col, self.name))


class Value:
    """An SSA value: the result of an op, or an argument of a region."""

    __slots__ = ("type", "producer", "index", "__weakref__")

    def __init__(self, type: TensorType, producer: "Op | None" = None, index: int = 0):
        self.type = type
        self.producer = producer
        self.index = index

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def __repr__(self) -> str:
        owner = self.producer.name if self.producer is not None else "arg"
        return f"<Value {owner}#{self.index}: {self.type}>"


class Op:
    __slots__ = ("name", "operands", "results", "attrs", "regions", "loc")

    def __init__(self, name: str, operands, result_types, attrs: dict | None = None,
                 regions=(), loc: Location | None = None):
        self.name = name
        self.operands: list[Value] = list(operands)
        self.results: list[Value] = [Value(t, self, i) for i, t in enumerate(result_types)]
        self.attrs: dict = dict(attrs or {})
        self.regions: list[Region] = list(regions)
        self.loc = loc

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise ValueError(f"op '{self.name}' has {len(self.results)} results, not one")
        return self.results[0]

    @property
    def result_types(self) -> list[TensorType]:
        return [r.type for r in self.results]

    @property
    def operand_types(self) -> list[TensorType]:
        return [v.type for v in self.operands]

    def where(self) -> str:
        """`'add' at model.py:12:4`: how error messages name this op."""
        return f"'{self.name}' at {self.loc}" if self.loc else f"'{self.name}'"

    def __repr__(self) -> str:
        return f"<Op {self.name} -> {', '.join(str(t) for t in self.result_types)}>"


class Region:
    """Arguments, then ops in order; the last op is `return`."""

    __slots__ = ("args", "ops")

    def __init__(self, arg_types=(), ops=None):
        self.args: list[Value] = [Value(t, None, i) for i, t in enumerate(arg_types)]
        self.ops: list[Op] = list(ops or [])

    @property
    def arg_types(self) -> list[TensorType]:
        return [a.type for a in self.args]

    @property
    def terminator(self) -> Op:
        if not self.ops or self.ops[-1].name != "return":
            raise ValueError("region does not end in 'return'")
        return self.ops[-1]

    @property
    def outputs(self) -> list[Value]:
        return self.terminator.operands

    def append(self, op: Op) -> Op:
        self.ops.append(op)
        return op

    def walk(self) -> Iterator[Op]:
        """Every op in this region and in the regions nested in it, producers first."""
        for op in self.ops:
            yield op
            for r in op.regions:
                yield from r.walk()


class Graph:
    """One function of xchip IR."""

    __slots__ = ("name", "body")

    def __init__(self, name: str, body: Region):
        self.name = name
        self.body = body

    @property
    def inputs(self) -> list[Value]:
        return self.body.args

    @property
    def outputs(self) -> list[Value]:
        return self.body.outputs

    @property
    def input_types(self) -> list[TensorType]:
        return self.body.arg_types

    @property
    def output_types(self) -> list[TensorType]:
        return [v.type for v in self.outputs]

    def walk(self) -> Iterator[Op]:
        return self.body.walk()

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def __repr__(self) -> str:
        ins = ", ".join(str(t) for t in self.input_types)
        outs = ", ".join(str(t) for t in self.output_types)
        return f"<Graph @{self.name}({ins}) -> ({outs}), {sum(1 for _ in self.walk())} ops>"
