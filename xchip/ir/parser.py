"""Parser for the text form written by `xchip.ir.printer` (see there for the syntax)."""

from __future__ import annotations

import json
import re

import numpy as np

from ..errors import ParseError
from . import dtypes
from .graph import Graph, Location, Op, Region, Value
from .types import TensorType

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+|//[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<hex>0x[0-9A-Fa-f]*)
  | (?P<number>-?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|inf\b|nan\b))
  | (?P<value>%[A-Za-z0-9_.$-]+)
  | (?P<symbol>@[A-Za-z0-9_.$-]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<arrow>->)
  | (?P<punct>[()\[\]{},:=<>^@])
""", re.VERBOSE)


class _Token:
    __slots__ = ("kind", "text", "line", "col")

    def __init__(self, kind, text, line, col):
        self.kind, self.text, self.line, self.col = kind, text, line, col

    def __repr__(self):
        return f"{self.text!r}"


def _tokenize(text: str) -> list[_Token]:
    tokens, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ParseError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
        kind = m.lastgroup
        if kind != "ws":
            tokens.append(_Token(kind, m.group(), line, pos - line_start + 1))
        newlines = m.group().count("\n")
        if newlines:
            line += newlines
            line_start = m.start() + m.group().rindex("\n") + 1
        pos = m.end()
    tokens.append(_Token("eof", "", line, pos - line_start + 1))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.i = 0
        self.scopes: list[dict[str, Value]] = [{}]

    # -- tokens --
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: _Token | None = None) -> ParseError:
        tok = tok or self.tok
        return ParseError(f"{message} (found {tok.text or 'end of input'!r})", tok.line, tok.col)

    def next(self) -> _Token:
        tok = self.tok
        self.i += 1
        return tok

    def at(self, text: str) -> bool:
        return self.tok.text == text and self.tok.kind in ("punct", "arrow", "ident")

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> _Token:
        if not self.at(text):
            raise self.error(f"expected '{text}'")
        return self.next()

    def expect_kind(self, kind: str, what: str) -> _Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}")
        return self.next()

    def string(self, tok: _Token) -> str:
        try:
            return json.loads(tok.text)
        except ValueError as e:
            raise self.error(f"malformed string ({e})", tok) from None

    def integer(self, what: str) -> int:
        tok = self.expect_kind("number", what)
        if not re.fullmatch(r"-?\d+", tok.text):
            raise self.error(f"expected {what}", tok)
        return int(tok.text)

    # -- values --
    def define(self, name_tok: _Token, value: Value) -> None:
        scope = self.scopes[-1]
        if name_tok.text in scope:
            raise self.error(f"value {name_tok.text} defined twice", name_tok)
        scope[name_tok.text] = value

    def lookup(self, tok: _Token) -> Value:
        for scope in reversed(self.scopes):
            if tok.text in scope:
                return scope[tok.text]
        raise self.error(f"undefined value {tok.text}", tok)

    # -- types --
    def tensor_type(self) -> TensorType:
        tok = self.expect_kind("ident", "a type like f32[4,8]")
        try:
            dt = dtypes.get(tok.text)
        except KeyError as e:
            raise self.error(str(e.args[0]), tok) from None
        self.expect("[")
        dims = []
        while not self.at("]"):
            d = self.expect_kind("number", "a dimension")
            if not re.fullmatch(r"\d+", d.text):
                raise self.error("dimensions are non-negative integers", d)
            dims.append(int(d.text))
            if not self.accept(","):
                break
        self.expect("]")
        return TensorType(tuple(dims), dt)

    def type_list(self) -> list[TensorType]:
        if self.accept("("):
            self.expect(")")
            return []
        types = [self.tensor_type()]
        while self.accept(","):
            types.append(self.tensor_type())
        return types

    # -- attributes --
    def literal(self, kind: str):
        tok = self.next()
        if tok.kind == "ident" and tok.text in ("true", "false"):
            return tok.text == "true"
        if tok.kind != "number":
            raise self.error("expected a literal", tok)
        if kind in ("int", "uint"):
            if not re.fullmatch(r"-?\d+", tok.text):
                raise self.error("expected an integer", tok)
            return int(tok.text)
        return float(tok.text)

    def tensor(self) -> np.ndarray:
        self.expect("<")
        ty = self.tensor_type()
        self.expect(":")
        npdt = ty.dtype.numpy
        if self.tok.kind == "hex":
            tok = self.next()
            if len(tok.text) % 2:
                raise self.error("odd number of hex digits", tok)
            data = bytes.fromhex(tok.text[2:])
            if len(data) != ty.size * npdt.itemsize:
                raise self.error(f"{len(data)} bytes do not fill {ty}", tok)
            value = np.frombuffer(data, dtype=npdt).reshape(ty.shape).copy()
        elif self.tok.kind == "number" or self.at("true") or self.at("false"):
            if ty.rank != 0:
                raise self.error(f"a single literal only fills a scalar, not {ty}")
            value = np.array(self.in_range(self.literal(ty.dtype.kind), ty),
                             dtype=np.float64 if ty.dtype.is_float else npdt)
            value = value.astype(npdt)
        elif self.accept("splat"):
            item = self.in_range(self.literal(ty.dtype.kind), ty)
            try:
                value = np.full(ty.shape, item, dtype=np.float64 if ty.dtype.is_float else None)
            except (ValueError, MemoryError) as e:
                raise self.error(f"cannot fill {ty} ({type(e).__name__})") from None
            value = value.astype(npdt)
        else:
            start = self.expect("[")
            items = []
            while not self.at("]"):
                items.append(self.in_range(self.literal(ty.dtype.kind), ty))
                if not self.accept(","):
                    break
            self.expect("]")
            if len(items) != ty.size:
                raise self.error(f"{len(items)} values do not fill {ty}", start)
            src = np.array(items, dtype=np.float64) if ty.dtype.is_float else np.array(items, dtype=npdt)
            value = src.astype(npdt).reshape(ty.shape)
        self.expect(">")
        return value

    def in_range(self, item, ty: TensorType):
        """An integer literal must fit the element type (numpy would raise OverflowError)."""
        if ty.dtype.is_integer and not isinstance(item, bool):
            info = np.iinfo(ty.dtype.numpy)
            if not info.min <= item <= info.max:
                raise self.error(f"{item} is out of range for {ty.dtype}", self.tokens[self.i - 1])
        return item

    def attr_value(self):
        tok = self.tok
        if tok.kind == "string":
            self.next()
            return self.string(tok)
        if tok.kind == "number":
            self.next()
            return int(tok.text) if re.fullmatch(r"-?\d+", tok.text) else float(tok.text)
        if tok.kind == "ident" and tok.text in ("true", "false"):
            self.next()
            return tok.text == "true"
        if tok.kind == "ident" and tok.text == "dense":
            self.next()
            return self.tensor()
        if self.accept("["):
            items = []
            while not self.at("]"):
                items.append(self.attr_value())
                if not self.accept(","):
                    break
            self.expect("]")
            return tuple(items)
        raise self.error("expected an attribute value")

    def attrs(self) -> dict:
        attrs = {}
        if not self.accept("{"):
            return attrs
        while not self.at("}"):
            key = self.expect_kind("ident", "an attribute name")
            if key.text in attrs:
                raise self.error(f"attribute '{key.text}' given twice", key)
            self.expect("=")
            attrs[key.text] = self.attr_value()
            if not self.accept(","):
                break
        self.expect("}")
        return attrs

    def location(self) -> Location | None:
        if not self.accept("loc"):
            return None
        self.expect("(")
        name = file = line = col = None
        if self.tok.kind == "string":
            name = self.string(self.next())
        if self.accept("@"):
            file = self.string(self.expect_kind("string", "a file name"))
            if self.accept(":"):
                line = self.integer("a line number")
                if self.accept(":"):
                    col = self.integer("a column number")
        self.expect(")")
        return Location(file, line, col, name)

    # -- structure --
    def region(self) -> Region:
        self.expect("^")
        self.expect("(")
        self.scopes.append({})
        names, types = [], []
        while not self.at(")"):
            names.append(self.expect_kind("value", "a region argument"))
            self.expect(":")
            types.append(self.tensor_type())
            if not self.accept(","):
                break
        self.expect(")")
        self.expect(":")
        region = Region(types)
        for tok, arg in zip(names, region.args):
            self.define(tok, arg)
        while not self.at("}"):
            region.append(self.op())
        self.scopes.pop()
        return region

    def op(self) -> Op:
        result_names = []
        if self.tok.kind == "value":
            result_names.append(self.next())
            while self.accept(","):
                result_names.append(self.expect_kind("value", "a result name"))
            self.expect("=")
        name_tok = self.expect_kind("ident", "an op name")
        self.expect("(")
        operands = []
        while not self.at(")"):
            operands.append(self.lookup(self.expect_kind("value", "an operand")))
            if not self.accept(","):
                break
        self.expect(")")
        attrs = self.attrs()
        result_types: list[TensorType] = []
        if name_tok.text != "return":
            self.expect(":")
            result_types = self.type_list()
        if len(result_types) != len(result_names):
            raise self.error(f"{len(result_names)} result names but {len(result_types)} result types", name_tok)
        regions = []
        if self.accept("{"):
            regions.append(self.region())
            self.expect("}")
            while self.accept(","):
                self.expect("{")
                regions.append(self.region())
                self.expect("}")
        loc = self.location()
        op = Op(name_tok.text, operands, result_types, attrs, regions, loc)
        for tok, v in zip(result_names, op.results):
            self.define(tok, v)
        return op

    def graph(self) -> Graph:
        self.expect("func")
        if self.accept("@"):
            name = self.string(self.expect_kind("string", "a quoted function name"))
        else:
            name = self.expect_kind("symbol", "a function name like @main").text[1:]
        self.expect("(")
        names, types = [], []
        while not self.at(")"):
            names.append(self.expect_kind("value", "an argument"))
            self.expect(":")
            types.append(self.tensor_type())
            if not self.accept(","):
                break
        self.expect(")")
        self.expect("->")
        self.expect("(")
        out_types = [] if self.at(")") else self.type_list()
        self.expect(")")
        brace = self.expect("{")
        body = Region(types)
        for tok, arg in zip(names, body.args):
            self.define(tok, arg)
        while not self.at("}"):
            body.append(self.op())
        self.expect("}")
        if self.tok.kind != "eof":
            raise self.error("expected end of input after the function")
        g = Graph(name, body)
        try:
            actual = g.output_types
        except ValueError:
            raise self.error("the function body does not end in 'return'", brace) from None
        if actual != out_types:
            raise self.error(f"function declares results ({', '.join(map(str, out_types))}) but returns "
                             f"({', '.join(map(str, actual))})", brace)
        return g


def parse_graph(text: str) -> Graph:
    """Parse xchip IR text. Raises ParseError with the line and column of the problem.
    The result is not verified; call `xchip.ir.verify` for that."""
    parser = _Parser(text)
    try:
        return parser.graph()
    except RecursionError:
        raise parser.error("nesting too deep") from None
