"""Elementwise ops of the reference executor.

Handlers take `(ctx, op, args)` and return a list of arrays. They broadcast their operands
instead of reading the declared result shape, so that a region of scalar ops can run on
whole batches of scalars at once (see `reference.Context.call_batched`); the dtype always
comes from the declared result type.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from . import reference_numeric as num
from .reference_numeric import C128, kind, round_float, wide


def _rdt(op, i: int = 0) -> np.dtype:
    return op.results[i].type.dtype.numpy


def _unsupported(op, detail: str):
    return UnsupportedOpError(op.name, op.loc, "reference", detail)


# --- float functions (f64 / c128 in, rounded to the result type) --------------------------

def _complex_expm1(z: np.ndarray) -> np.ndarray:
    x, y = z.real, z.imag
    # cos(y) - 1 = -2 sin(y/2)^2 keeps the real part accurate near 0
    re = np.expm1(x) * np.cos(y) - 2.0 * np.sin(y / 2) ** 2
    im = np.exp(x) * np.sin(y)
    return re + 1j * im


def _complex_log1p(z: np.ndarray) -> np.ndarray:
    x, y = z.real, z.imag
    # |1+z|^2 - 1 = x(2+x) + y^2, so log|1+z| = log1p(x(2+x) + y^2) / 2 without cancellation;
    # far from 0 the plain formula is better conditioned.
    small = (np.abs(x) < 0.5) & (np.abs(y) < 0.5)
    re_small = 0.5 * np.log1p(x * (2.0 + x) + y * y)
    re_big = np.log(np.abs(1.0 + z))
    re = np.where(small, re_small, re_big)
    im = np.arctan2(y, 1.0 + x)
    return re + 1j * im


def _logistic(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive argument only, so neither branch overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _float_sign(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x) | (x == 0), x, np.copysign(1.0, x))


def _complex_sign(z: np.ndarray) -> np.ndarray:
    nan = np.isnan(z.real) | np.isnan(z.imag)
    mag = np.abs(z)
    out = np.where(mag == 0, 0j, z / np.where(mag == 0, 1.0, mag))
    return np.where(nan, complex(np.nan, np.nan), out)


def _complex_atan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    # the StableHLO interpreter's definition: -i * log((x + i*y) / sqrt(x*x + y*y))
    return -1j * np.log((x + 1j * y) / np.sqrt(x * x + y * y))


_FLOAT_UNARY = {
    # name: (real f64 function, complex c128 function or None)
    "cosine": (np.cos, np.cos),
    "sine": (np.sin, np.sin),
    "tan": (np.tan, np.tan),
    "tanh": (np.tanh, np.tanh),
    "exponential": (np.exp, np.exp),
    "exponential_minus_one": (np.expm1, _complex_expm1),
    "log": (np.log, np.log),
    "log_plus_one": (np.log1p, _complex_log1p),
    "logistic": (_logistic, lambda z: 1.0 / (1.0 + np.exp(-z))),
    "rsqrt": (lambda x: 1.0 / np.sqrt(x), lambda z: 1.0 / np.sqrt(z)),
    "sqrt": (np.sqrt, np.sqrt),
    "cbrt": (np.cbrt, None),
    "ceil": (np.ceil, None),
    "floor": (np.floor, None),
    "round_nearest_even": (np.rint, None),
    "round_nearest_afz": (num.round_half_away, None),
}


def _float_unary(name: str):
    real_fn, complex_fn = _FLOAT_UNARY[name]

    def handler(ctx, op, args):
        (x,) = args
        k = kind(x)
        if k == "complex" and complex_fn is not None:
            return [round_float(complex_fn(x.astype(C128)), _rdt(op))]
        if k != "float":
            raise _unsupported(op, f"operand dtype {x.dtype}")
        return [round_float(real_fn(wide(x)), _rdt(op))]

    return handler


def _negate(ctx, op, args):
    (x,) = args
    if kind(x) in ("int", "uint"):
        return [np.negative(x)]
    return [round_float(-wide(x), _rdt(op))]


def _abs(ctx, op, args):
    (x,) = args
    if kind(x) in ("int", "uint"):
        return [np.abs(x)]  # wraps: abs(INT_MIN) == INT_MIN, as XLA
    return [round_float(np.abs(wide(x)), _rdt(op))]


def _sign(ctx, op, args):
    (x,) = args
    k = kind(x)
    if k in ("int", "uint"):
        return [np.sign(x)]
    if k == "complex":
        return [round_float(_complex_sign(wide(x)), _rdt(op))]
    return [round_float(_float_sign(wide(x)), _rdt(op))]


def _real(ctx, op, args):
    (x,) = args
    return [num.contiguous(x.real) if kind(x) == "complex" else x]


def _imag(ctx, op, args):
    (x,) = args
    if kind(x) == "complex":
        return [num.contiguous(x.imag)]
    return [np.zeros(x.shape, x.dtype)]


def _is_finite(ctx, op, args):
    (x,) = args
    return [np.isfinite(num.upcast_real(x))]


def _not(ctx, op, args):
    (x,) = args
    return [np.logical_not(x) if x.dtype == np.bool_ else np.invert(x)]


def _popcnt(ctx, op, args):
    return [num.popcount(args[0])]


def _clz(ctx, op, args):
    return [num.count_leading_zeros(args[0])]


# --- binary --------------------------------------------------------------------------------

def _arith(int_fn, float_fn, bool_fn=None, complex_ok=True):
    def handler(ctx, op, args):
        a, b = args
        k = kind(a)
        if k == "bool":
            if bool_fn is None:
                raise _unsupported(op, "bool operands")
            return [bool_fn(a, b)]
        if k in ("int", "uint"):
            return [int_fn(a, b)]
        if k == "complex" and not complex_ok:
            raise _unsupported(op, f"operand dtype {a.dtype}")
        return [round_float(float_fn(wide(a), wide(b)), _rdt(op))]

    return handler


def _complex_or_real_atan2(a, b):
    if a.dtype == C128:
        return _complex_atan2(a, b)
    return np.arctan2(a, b)


def _maximum(ctx, op, args):
    return [num.maximum(*args)]


def _minimum(ctx, op, args):
    return [num.minimum(*args)]


def _bitwise(fn):
    def handler(ctx, op, args):
        return [fn(*args)]

    return handler


def _complex(ctx, op, args):
    re, im = np.broadcast_arrays(*args)
    out = np.empty(re.shape, _rdt(op))
    out.real = re
    out.imag = im
    return [out]


def _compare(ctx, op, args):
    a, b = args
    return [num.compare(a, b, op.attrs["comparison_direction"], op.attrs["compare_type"])]


def _select(ctx, op, args):
    pred, on_true, on_false = args
    return [np.where(pred, on_true, on_false)]


def _clamp(ctx, op, args):
    lo, x, hi = args
    # spec: min(max(operand, min), max), with the NaN-propagating max/min
    return [num.minimum(num.maximum(x, lo), hi)]


def _convert(ctx, op, args):
    return [num.convert(args[0], op.results[0].type.dtype)]


def _bitcast_convert(ctx, op, args):
    (x,) = args
    rt = op.results[0].type
    dst = rt.dtype.numpy
    src_bytes, dst_bytes = x.dtype.itemsize, dst.itemsize
    # numpy views read memory in the host's byte order, and every host xchip runs on (x86-64,
    # ARM64) is little-endian: the element order the spec gives a value split into narrower
    # ones (least significant first)
    raw = num.contiguous(x).reshape(-1).view(np.uint8)
    out = raw != 0 if dst == np.bool_ else raw.view(dst)
    if src_bytes == dst_bytes:
        shape = x.shape
    elif src_bytes > dst_bytes:
        shape = x.shape + (src_bytes // dst_bytes,)
    else:
        shape = x.shape[:-1]
    return [out.reshape(shape)]


def _reduce_precision(ctx, op, args):
    return [num.reduce_precision(args[0], op.attrs["exponent_bits"], op.attrs["mantissa_bits"])]


HANDLERS = {name: _float_unary(name) for name in _FLOAT_UNARY}
HANDLERS.update({
    "negate": _negate, "abs": _abs, "sign": _sign, "real": _real, "imag": _imag,
    "is_finite": _is_finite, "not": _not, "popcnt": _popcnt, "count_leading_zeros": _clz,
    "add": _arith(np.add, np.add, np.logical_or),
    "subtract": _arith(np.subtract, np.subtract),
    "multiply": _arith(np.multiply, np.multiply, np.logical_and),
    "divide": _arith(num.integer_divide, np.divide),
    "remainder": _arith(num.integer_remainder, np.fmod, complex_ok=False),
    "power": _arith(num.integer_power, np.power),
    "atan2": _arith(None, _complex_or_real_atan2),
    "maximum": _maximum, "minimum": _minimum,
    "and": _bitwise(np.bitwise_and), "or": _bitwise(np.bitwise_or), "xor": _bitwise(np.bitwise_xor),
    "shift_left": _bitwise(num.shift_left),
    "shift_right_logical": _bitwise(num.shift_right_logical),
    "shift_right_arithmetic": _bitwise(num.shift_right_arithmetic),
    "complex": _complex, "compare": _compare, "select": _select, "clamp": _clamp,
    "convert": _convert, "bitcast_convert": _bitcast_convert,
    "reduce_precision": _reduce_precision,
})



def keeps_shape(op) -> bool:
    """Whether the op's result has its operands' (broadcast) shape, so that it can run on a
    batch of scalars at once: every elementwise op but a bitcast between widths."""
    if op.name == "bitcast_convert":
        return op.operands[0].type.dtype.itemsize == op.results[0].type.dtype.itemsize
    return True
