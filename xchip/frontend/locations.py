"""MLIR locations to xchip `Location`s.

JAX writes, for each op, `NameLoc("jit(f)/dot_general", CallSiteLoc(callee, caller))`
where the callee chain ends in the user's line (`"model.py":5:17 to :30`) and the callers
are the frames above it. xchip keeps the outermost name (JAX's op path) and the innermost
file position (the line that created the op).

This jaxlib's bindings cannot take a location apart, so the printed form is parsed:

    loc("name"(child))  loc("file":3:11 to :21)  loc(callsite(A at B))
    loc(fused<meta>[A, B])  loc(unknown)
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..ir.graph import Location

# MLIR's name for a buffer parsed from a string; xchip reports it as the StableHLO text.
ANONYMOUS_BUFFER = "-"
TEXT_SOURCE_NAME = "<stablehlo>"

_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<int>\d+)|(?P<word>[A-Za-z_#][\w.$#-]*)'
                    r'|(?P<punct>[()\[\]<>:,=]))')


class _Loc:
    __slots__ = ("name", "file", "line", "col")

    def __init__(self, name=None, file=None, line=None, col=None):
        self.name, self.file, self.line, self.col = name, file, line, col


def _unescape(quoted: str) -> str:
    """MLIR escapes `"` and `\\` with a backslash and other bytes as `\\XX` hex."""
    body = quoted[1:-1]
    if "\\" not in body:
        return body
    out, i = bytearray(), 0
    raw = body.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):
            nxt = raw[i + 1:i + 3]
            if re.fullmatch(rb"[0-9A-Fa-f]{2}", nxt):
                out.append(int(nxt, 16))
                i += 3
                continue
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return out.decode("utf-8", errors="replace")


class _Parser:
    def __init__(self, text: str):
        self.toks: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if not text[pos:].strip():
                    break
                raise ValueError(f"unexpected {text[pos:pos + 20]!r}")
            self.toks.append((m.lastgroup, m.group(m.lastgroup)))
            pos = m.end()
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok[1] != text:
            raise ValueError(f"expected {text!r}, found {tok[1]!r}")

    def skip_balanced(self, open_: str, close: str) -> None:
        depth = 0
        while True:
            kind, text = self.take()
            if kind == "eof":
                raise ValueError("unbalanced brackets")
            if text == open_:
                depth += 1
            elif text == close:
                depth -= 1
                if depth == 0:
                    return

    def top(self) -> _Loc:
        if self.peek()[1] == "loc":
            self.take()
            self.expect("(")
            loc = self.loc()
            self.expect(")")
            return loc
        return self.loc()

    def loc(self) -> _Loc:
        kind, text = self.peek()
        if kind == "word" and text == "unknown":
            self.take()
            return _Loc()
        if kind == "word" and text == "callsite":
            self.take()
            self.expect("(")
            callee = self.loc()
            self.expect("at")
            caller = self.loc()
            self.expect(")")
            # The callee is the innermost frame: the line that made the op.
            where = callee if callee.file is not None else caller
            return _Loc(callee.name or caller.name, where.file, where.line, where.col)
        if kind == "word" and text == "fused":
            self.take()
            if self.peek()[1] == "<":
                self.skip_balanced("<", ">")
            self.expect("[")
            parts = [self.loc()]
            while self.peek()[1] == ",":
                self.take()
                parts.append(self.loc())
            self.expect("]")
            named = next((p for p in parts if p.name), _Loc())
            placed = next((p for p in parts if p.file is not None), _Loc())
            return _Loc(named.name, placed.file, placed.line, placed.col)
        if kind == "string":
            self.take()
            value = _unescape(text)
            if self.peek()[1] == ":" and self.peek(1)[0] == "int":
                return self.file_position(value)
            if self.peek()[1] == "(":
                self.take()
                child = self.loc()
                self.expect(")")
                return _Loc(value, child.file, child.line, child.col)
            return _Loc(value)
        if kind == "word" and text.startswith("#"):
            # An opaque or dialect location: no position xchip can use.
            self.take()
            if self.peek()[1] == "<":
                self.skip_balanced("<", ">")
            return _Loc()
        raise ValueError(f"unexpected {text!r} in a location")

    def file_position(self, file: str) -> _Loc:
        self.expect(":")
        line = int(self.take()[1])
        col = None
        if self.peek()[1] == ":" and self.peek(1)[0] == "int":
            self.take()
            col = int(self.take()[1])
        if self.peek() == ("word", "to"):
            # A range `to [line]:col` or `to line`; xchip keeps its start.
            self.take()
            if self.peek()[0] == "int":
                self.take()
            if self.peek()[1] == ":":
                self.take()
                self.take()
        if file == ANONYMOUS_BUFFER:
            file = TEXT_SOURCE_NAME
        return _Loc(None, file, line, col)


@lru_cache(maxsize=4096)
def location_from_text(text: str) -> Location:
    """The xchip Location for a printed MLIR location such as `str(op.location)`.
    A form this parser does not know gives an empty Location, never an error: a location
    is a help for messages, not part of the program."""
    try:
        parser = _Parser(text)
        loc = parser.top()
    except (ValueError, IndexError):
        return Location()
    return Location(loc.file, loc.line, loc.col, loc.name)
