"""Reading StableHLO dense constants into numpy arrays, bit for bit.

The MLIR Python bindings cannot hand bf16 or fp8 data to numpy, and merely touching a
complex-typed dense attribute through them can abort the process. So constants are read
from the attribute's printed form, which MLIR writes in one of three ways:

* `dense<"0xHEX">`: raw little-endian element data (i1 takes one byte per element);
  a blob of exactly one element is a splat;
* `dense<[[1.0, 0x7FC00000], ...]>`: literal lists (complex as `(re,im)`, i1 as
  `true`/`false`); floats that would not survive a decimal round trip (nan, inf) are
  written as hex bit patterns of the element width;
* `dense<1.5>`: a splat, one literal for the whole tensor.

MLIR prints a decimal only when it parses back to the same value in the element's own
format, so converting the decimal with correct rounding for that format restores the
exact bits. Going through float64 first could round twice, hence `_round_decimal`.
"""

from __future__ import annotations

import re
import sys
from fractions import Fraction

import numpy as np

from ..ir.types import TensorType

_LITERAL_TOKEN = re.compile(r"""
    \s*(?:
      (?P<punct>[\[\](),])
    | (?P<hex>0x[0-9A-Fa-f]+)
    | (?P<word>true|false|[-+]?inf|nan)
    | (?P<number>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
    )""", re.VERBOSE)

_DENSE_START = re.compile(r"\b(dense_resource|dense)<")
_UINT_OF_WIDTH = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class ConstantFormatError(ValueError):
    """The printed attribute is not a dense constant this reader understands."""


def dense_body(asm: str) -> tuple[str, str]:
    """Find the first `dense<...>` or `dense_resource<...>` in `asm` (an op or attribute
    printed by MLIR) and return its kind ("dense" or "dense_resource") and its body."""
    m = _DENSE_START.search(asm)
    if not m:
        raise ConstantFormatError(f"no dense attribute in {asm[:120]!r}")
    body_start = m.end()
    # No '>' can occur inside a dense body: hex strings, numbers, brackets and parens only.
    end = asm.find(">", body_start)
    if end < 0:
        raise ConstantFormatError("unterminated dense attribute")
    return m.group(1), asm[body_start:end]


def from_dense_body(body: str, ttype: TensorType) -> np.ndarray:
    """The numpy array for the body of `dense<...>` of tensor type `ttype`."""
    body = body.strip()
    if body.startswith('"'):
        return from_hex_blob(body.strip('"'), ttype)
    if not body:
        if ttype.size != 0:
            raise ConstantFormatError(f"empty dense<> for {ttype}")
        return np.zeros(ttype.shape, ttype.dtype.numpy)
    return _from_literals(body, ttype)


def from_hex_blob(hex_text: str, ttype: TensorType) -> np.ndarray:
    """Raw little-endian element data, `0x` prefix optional. One element fills a splat."""
    if hex_text[:2] in ("0x", "0X"):
        hex_text = hex_text[2:]
    data = bytes.fromhex(hex_text)
    npdt = ttype.dtype.numpy
    item = npdt.itemsize
    if len(data) == ttype.size * item:
        flat = _from_bytes(data, npdt)
    elif len(data) == item:
        flat = np.repeat(_from_bytes(data, npdt), ttype.size)
    else:
        raise ConstantFormatError(f"{len(data)} bytes of data do not fill {ttype}")
    return flat.reshape(ttype.shape)


def _from_bytes(data: bytes, npdt: np.dtype) -> np.ndarray:
    if npdt == np.bool_:
        # i1 blobs hold one byte per element; anything but 0 is true.
        return np.frombuffer(data, np.uint8) != 0
    flat = np.frombuffer(data, npdt).copy()
    return flat.byteswap() if sys.byteorder == "big" else flat


def _tokens(body: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(body):
        m = _LITERAL_TOKEN.match(body, pos)
        if not m or m.end() == pos:
            if body[pos:].strip() == "":
                break
            raise ConstantFormatError(f"unexpected text in dense literal: {body[pos:pos + 40]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _from_literals(body: str, ttype: TensorType) -> np.ndarray:
    dt = ttype.dtype
    toks = _tokens(body)
    is_splat = not toks or toks[0] != ("punct", "[")
    scalars: list = []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        if kind == "punct" and text == "(":
            # A complex literal: `(re,im)`.
            if not dt.is_complex:
                raise ConstantFormatError(f"unexpected '(' in a {dt} constant")
            if i + 4 >= len(toks) or toks[i + 2] != ("punct", ",") or toks[i + 4] != ("punct", ")"):
                raise ConstantFormatError(f"malformed complex literal in {body[:60]!r}")
            scalars.append((toks[i + 1], toks[i + 3]))
            i += 5
            continue
        if kind != "punct":
            scalars.append((kind, text))
        i += 1
    if is_splat and len(scalars) != 1:
        raise ConstantFormatError(f"splat must be one literal, got {body[:60]!r}")
    if not is_splat and len(scalars) != ttype.size:
        raise ConstantFormatError(f"{len(scalars)} literals do not fill {ttype}")
    if dt.is_complex:
        part = _real_dtype(dt.numpy)
        flat = np.empty(len(scalars), dt.numpy)
        flat.real = _convert_all([re for re, _ in scalars], part, dt)
        flat.imag = _convert_all([im for _, im in scalars], part, dt)
    else:
        flat = _convert_all(scalars, dt.numpy, dt)
    if is_splat:
        flat = np.repeat(flat, ttype.size)
    return flat.reshape(ttype.shape)


def _real_dtype(complex_dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32 if np.dtype(complex_dtype) == np.complex64 else np.float64)


def _convert_all(tokens: list, npdt: np.dtype, dt) -> np.ndarray:
    """Literal tokens to an array of `npdt`, converting each distinct token once (a splat
    or a run of equal values is common)."""
    if dt.kind == "bool":
        convert = _bool_literal
    elif dt.is_float or dt.is_complex:
        convert = lambda tok: _float_literal(tok, npdt)  # noqa: E731
    else:
        convert = lambda tok: _int_literal(tok, npdt)  # noqa: E731
    seen: dict = {}
    for tok in tokens:
        if tok not in seen:
            seen[tok] = convert(tok)
    if not (dt.is_float or dt.is_complex):
        return np.array([seen[t] for t in tokens], dtype=npdt)
    # Floats travel as bit patterns so that no conversion can quiet a signalling NaN.
    uint = _UINT_OF_WIDTH[np.dtype(npdt).itemsize]
    bits = {t: int(np.array(v, npdt).view(uint)) for t, v in seen.items()}
    return np.array([bits[t] for t in tokens], dtype=uint).view(npdt)


def _bool_literal(tok: tuple[str, str]):
    kind, text = tok
    if kind == "word" and text in ("true", "false"):
        return text == "true"
    if kind in ("number", "hex"):
        return int(text, 0) != 0
    raise ConstantFormatError(f"bad i1 literal {text!r}")


def _int_literal(tok: tuple[str, str], npdt: np.dtype) -> int:
    kind, text = tok
    if kind == "word" and text in ("true", "false"):
        return int(text == "true")
    if kind == "hex":
        return _wrap(int(text, 16), npdt, text)
    if kind != "number" or not re.fullmatch(r"[-+]?\d+", text):
        raise ConstantFormatError(f"bad integer literal {text!r}")
    return _wrap(int(text), npdt, text)


def _wrap(value: int, npdt: np.dtype, text: str) -> int:
    info = np.iinfo(npdt)
    if value < info.min:
        # Signless types may print their largest values as negatives; wrap like MLIR does.
        value += 1 << (8 * npdt.itemsize)
    if not info.min <= value <= info.max:
        raise ConstantFormatError(f"integer literal {text} out of range for {npdt}")
    return value


def _float_literal(tok: tuple[str, str], npdt: np.dtype):
    kind, text = tok
    npdt = np.dtype(npdt)
    if kind == "hex":
        bits = int(text, 16)
        return np.array(bits, _UINT_OF_WIDTH[npdt.itemsize]).view(npdt)[()]
    if kind == "word":
        if text in ("true", "false"):
            raise ConstantFormatError(f"bad float literal {text!r}")
        return npdt.type(float(text))
    if kind != "number":
        raise ConstantFormatError(f"bad float literal {text!r}")
    return _round_decimal(text, npdt)


def _round_decimal(text: str, npdt: np.dtype):
    """The value of `npdt` nearest to the decimal `text`, ties to even."""
    x = float(text)             # correctly rounded to float64
    if npdt == np.float64:
        return np.float64(x)
    guess = np.array(x, np.float64).astype(npdt)[()]
    if float(guess) == x:
        # x is representable, and the decimal lies within half a float64 ulp of it:
        # far from any midpoint of the narrower format.
        return guess
    exact = Fraction(text)
    best, best_err = None, None
    for cand in _neighbours(guess, npdt):
        value = float(cand)
        if not np.isfinite(value):
            continue
        err = abs(Fraction(value) - exact)
        if best is None or err < best_err or err == best_err and _is_even(cand, npdt):
            best, best_err = cand, err
    return best


def _is_even(value, npdt: np.dtype) -> bool:
    return int(np.array(value, npdt).view(_UINT_OF_WIDTH[npdt.itemsize])) % 2 == 0


def _neighbours(value, npdt: np.dtype) -> list:
    """`value` and the values one unit in the last place on either side of it."""
    uint = _UINT_OF_WIDTH[npdt.itemsize]
    nbits = 8 * npdt.itemsize
    bits = int(np.array(value, npdt).view(uint))
    top = 1 << (nbits - 1)
    sign, mag = bits & top, bits & (top - 1)
    patterns = [bits, sign | (mag - 1) if mag else (sign ^ top) | 1]
    if mag + 1 < top:
        patterns.append(sign | (mag + 1))
    return [np.array(p, uint).view(npdt)[()] for p in patterns]
