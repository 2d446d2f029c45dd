"""Text form of xchip IR. `parser.parse_graph(print_graph(g))` rebuilds `g` exactly.

    func @main(%0: f32[4,8], %1: f32[8,3]) -> (f32[4]) {
      %2 = dot_general(%0, %1) {lhs_batching_dimensions = [], ...} : f32[4,3] loc("jit(f)/dot_general" @ "model.py":5:17)
      %3 = constant() {value = dense<f32[]: 0.0>} : f32[]
      %4 = reduce(%2, %3) {dimensions = [1]} : f32[4] {
        ^(%5: f32[], %6: f32[]):
          %7 = add(%5, %6) : f32[]
          return(%7)
      }
      return(%4)
    }

Values are numbered in the order they are printed. Tensor constants print as a flat list of
literals when that is exact and short, as `splat v` when every element is equal, and as
the hex of their little-endian bytes otherwise.
"""

from __future__ import annotations

import json
import re

import numpy as np

from . import dtypes, ops
from .graph import Graph, Location, Op, Region, Value

LITERAL_LIMIT = 64
_SYMBOL = re.compile(r"[A-Za-z0-9_.$-]+")  # graph names outside this print quoted: @"<lambda>"
INDENT = "  "


def format_location(loc: Location | None) -> str:
    if not loc:
        return ""
    parts = []
    if loc.name is not None:
        parts.append(json.dumps(loc.name))
    if loc.file is not None:
        where = json.dumps(loc.file)
        if loc.line is not None:
            where += f":{loc.line}"
            if loc.col is not None:
                where += f":{loc.col}"
        parts.append("@ " + where)
    return f"loc({' '.join(parts)})"


def _scalar_literal(x, kind: str) -> str:
    if kind == "bool":
        return "true" if x else "false"
    if kind in ("int", "uint"):
        return str(int(x))
    return repr(float(x))


def _literal_round_trips(flat: np.ndarray, kind: str) -> bool:
    if kind in ("bool", "int", "uint"):
        return True
    if kind == "complex":
        return False
    # Compare what the parser will read back from the printed text (`repr` drops a NaN's
    # sign and payload), not just the float64 value.
    back = np.array([float(_scalar_literal(x, kind)) for x in flat.tolist()],
                    dtype=np.float64).astype(flat.dtype)
    return back.tobytes() == flat.tobytes()


def format_tensor(value: np.ndarray) -> str:
    dt = dtypes.from_numpy(value.dtype)
    head = f"{dt.name}[{','.join(str(s) for s in value.shape)}]"
    flat = np.ascontiguousarray(value).reshape(-1)
    raw = flat.view(np.uint8).reshape(flat.size, -1) if flat.size else flat
    if flat.size > 1 and dt.kind != "complex" and (raw == raw[0]).all() and _literal_round_trips(flat[:1], dt.kind):
        return f"dense<{head}: splat {_scalar_literal(flat[0], dt.kind)}>"
    if value.ndim == 0 and _literal_round_trips(flat, dt.kind):
        return f"dense<{head}: {_scalar_literal(flat[0], dt.kind)}>"
    if flat.size <= LITERAL_LIMIT and _literal_round_trips(flat, dt.kind):
        body = ", ".join(_scalar_literal(x, dt.kind) for x in flat)
        return f"dense<{head}: [{body}]>"
    return f"dense<{head}: 0x{flat.tobytes().hex().upper()}>"


def format_attr(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        return format_tensor(value)
    raise TypeError(f"cannot print attribute value {value!r}")


def _attr_order(op: Op) -> list[str]:
    """Declared attributes in their declared order, then any others (which the verifier
    rejects, but the printer must still show)."""
    s = ops.spec(op.name)
    declared = [a.name for a in s.attrs if a.name in op.attrs] if s else []
    return declared + [k for k in op.attrs if k not in declared]


class _Printer:
    def __init__(self, annotations: dict[Op, str] | None = None):
        self.names: dict[Value, str] = {}
        self.lines: list[str] = []
        self.annotations = annotations or {}

    def name(self, v: Value) -> str:
        if v not in self.names:
            self.names[v] = f"%{len(self.names)}"
        return self.names[v]

    def use(self, v: Value) -> str:
        try:
            return self.names[v]
        except KeyError:
            return f"%<undefined {v.type}>"

    def region(self, region: Region, depth: int) -> None:
        pad = INDENT * depth
        args = ", ".join(f"{self.name(a)}: {a.type}" for a in region.args)
        self.lines.append(f"{pad}^({args}):")
        for op in region.ops:
            self.op(op, depth + 1)

    def op(self, op: Op, depth: int) -> None:
        pad = INDENT * depth
        text = pad
        if op.results:
            text += ", ".join(self.name(r) for r in op.results) + " = "
        text += f"{op.name}({', '.join(self.use(v) for v in op.operands)})"
        if op.attrs:
            text += " {" + ", ".join(f"{k} = {format_attr(op.attrs[k])}" for k in _attr_order(op)) + "}"
        if op.name != "return":
            text += " : " + (", ".join(str(t) for t in op.result_types) if op.results else "()")
        tail = (f" {format_location(op.loc)}" if op.loc else "")
        if op in self.annotations:
            tail += f"  // {self.annotations[op]}"
        if not op.regions:
            self.lines.append(text + tail)
            return
        for i, r in enumerate(op.regions):
            self.lines.append(text + " {")
            self.region(r, depth + 1)
            text = pad + "},"
        self.lines.append(pad + "}" + tail)

    def graph(self, g: Graph) -> str:
        args = ", ".join(f"{self.name(a)}: {a.type}" for a in g.inputs)
        outs = ", ".join(str(t) for t in g.output_types)
        name = g.name if _SYMBOL.fullmatch(g.name) else json.dumps(g.name)
        self.lines.append(f"func @{name}({args}) -> ({outs}) {{")
        for op in g.body.ops:
            self.op(op, 1)
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"


def print_graph(graph: Graph, annotations: dict[Op, str] | None = None) -> str:
    """The text of `graph`; `annotations` adds a `// comment` after the ops it names (the
    parser skips comments)."""
    return _Printer(annotations).graph(graph)


def print_op(op: Op) -> str:
    """One op (with its regions) on its own; operands from outside print as `%<undefined>`."""
    p = _Printer()
    p.op(op, 0)
    return "\n".join(p.lines)
