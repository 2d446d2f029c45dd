"""xchip IR ops as Triton expressions (source text), with the reference executor's semantics
where Triton can express them. f16 and bf16 ops compute in f32 and round once per op, as the
reference executor does.
"""

from __future__ import annotations

from xchip.errors import UnsupportedOpError
from xchip.ir.dtypes import DType

TL = {"bool": "tl.int1", "i8": "tl.int8", "i16": "tl.int16", "i32": "tl.int32", "i64": "tl.int64",
      "u8": "tl.uint8", "u16": "tl.uint16", "u32": "tl.uint32", "u64": "tl.uint64",
      "f16": "tl.float16", "bf16": "tl.bfloat16", "f32": "tl.float32", "f64": "tl.float64",
      "f8e4m3fn": "tl.float8e4nv", "f8e5m2": "tl.float8e5"}
NARROW = ("f16", "bf16", "f8e4m3fn", "f8e5m2")


def tl_type(d: DType, op=None, target: str | None = None) -> str:
    try:
        return TL[d.name]
    except KeyError:
        raise UnsupportedOpError(op.name if op is not None else "value", getattr(op, "loc", None), target,
                                 f"dtype {d.name} has no Triton type") from None


_FLOAT_UNARY = {
    "exponential": "tl.exp({x})",
    "log": "tl.log({x})",
    "sqrt": "tl.sqrt({x})",
    "rsqrt": "tl.rsqrt({x})",
    "logistic": "tl.sigmoid({x})",
    # tanh(x) = 1 - 2 / (exp(2x) + 1): exact at +-inf, no overflow to NaN
    "tanh": "(1.0 - 2.0 / (tl.exp(2.0 * {x}) + 1.0))",
    "erf": "tl.erf({x})",
    "sine": "tl.sin({x})",
    "cosine": "tl.cos({x})",
    "floor": "tl.floor({x})",
    "ceil": "tl.ceil({x})",
    "exponential_minus_one": "(tl.exp({x}) - 1.0)",
    "log_plus_one": "tl.log(1.0 + {x})",
}
_BINARY = {"add": "({a} + {b})", "subtract": "({a} - {b})", "multiply": "({a} * {b})"}
_CMP = {"EQ": "==", "NE": "!=", "LT": "<", "LE": "<=", "GT": ">", "GE": ">="}


def _f32(x: str, d: DType) -> str:
    return f"{x}.to(tl.float32)" if d.name in NARROW else x


def _round(x: str, d: DType) -> str:
    return f"({x}).to({TL[d.name]})" if d.name in NARROW else x


def elementwise(op, args: list[str], in_types: list[DType], out: DType, target: str | None) -> str:
    """The Triton expression of `op` applied to the operand expressions `args`."""
    name = op.name
    if name in _FLOAT_UNARY and out.is_float:
        return _round(_FLOAT_UNARY[name].format(x=_f32(args[0], in_types[0])), out)
    if name in _BINARY:
        a, b = (_f32(x, d) for x, d in zip(args, in_types))
        return _round(_BINARY[name].format(a=a, b=b), out)
    if name == "divide" and out.is_float:
        return _round(f"({_f32(args[0], in_types[0])} / {_f32(args[1], in_types[1])})", out)
    if name in ("maximum", "minimum") and out.is_float:
        fn = "tl.maximum" if name == "maximum" else "tl.minimum"
        a, b = (_f32(x, d) for x, d in zip(args, in_types))
        return _round(f"{fn}({a}, {b}, propagate_nan=tl.PropagateNan.ALL)", out)
    if name in ("maximum", "minimum"):
        return f"{'tl.maximum' if name == 'maximum' else 'tl.minimum'}({args[0]}, {args[1]})"
    if name == "negate":
        return _round(f"(-{_f32(args[0], in_types[0])})", out)
    if name == "abs" and out.is_float:
        return _round(f"tl.abs({_f32(args[0], in_types[0])})", out)
    if name == "convert":
        src = in_types[0]
        if out.name == "bool":
            return f"({args[0]} != 0)"
        if src.name in NARROW and out.name in NARROW:
            return f"{args[0]}.to(tl.float32).to({TL[out.name]})"
        return f"{args[0]}.to({tl_type(out, op, target)})"
    if name == "compare":
        direction = op.attrs.get("comparison_direction")
        if direction not in _CMP:
            raise UnsupportedOpError(name, op.loc, target, f"comparison {direction}")
        a, b = (_f32(x, d) for x, d in zip(args, in_types))
        return f"({a} {_CMP[direction]} {b})"
    if name == "select":
        return f"tl.where({args[0]}, {args[1]}, {args[2]})"
    if name == "and" and out.name == "bool":
        return f"({args[0]} & {args[1]})"
    if name == "or" and out.name == "bool":
        return f"({args[0]} | {args[1]})"
    if name == "not" and out.name == "bool":
        return f"({args[0]} == 0)"
    raise UnsupportedOpError(name, op.loc, target, f"no Triton lowering for {name} on {out.name}")
