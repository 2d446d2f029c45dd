"""`precision`: f32 matmuls and convolutions in a lower precision, on the user's request.

With `ctx.options.precision` set to "bf16", "f16", "f8e4m3fn" or "f8e5m2", every
`dot_general` and `convolution` whose operands and result are f32 gets its operands
converted to that dtype; the op keeps its f32 result, so it accumulates in f32 (the IR lets
these ops choose a result dtype apart from their operands'). This changes results on
purpose, which is why it runs only when asked.

A target without a fast matmul in that dtype (`capabilities.matmul_dtypes`) is refused with
a `TargetError` rather than served slowly or silently in f32. `ctx.notes` records how many
ops changed ("precision: 3 matmuls in bf16 with f32 accumulation"). A value feeding several
matmuls is converted once per region; an f32 value made by converting from the target dtype
is used directly (converting back is exact). Statistics: matmuls, convolutions.
"""

from __future__ import annotations

from xchip.errors import TargetError, XchipError
from xchip.ir import Graph, Op, Value, dtypes, ops
from xchip.ir.rewrite import Rewriter

from .manager import register

PRECISIONS = ("bf16", "f16", "f8e4m3fn", "f8e5m2")
_CHANGED = {"dot_general": "matmuls", "convolution": "convolutions"}


class _Lowering(Rewriter):
    def __init__(self, dtype):
        super().__init__()
        self.dtype = dtype
        # one convert per value and region: nested regions may reuse an outer one
        self.scopes: list[dict[Value, Value]] = [{}]

    def enter_region(self, region, owner):
        self.scopes.append({})

    def leave_region(self, region, owner):
        self.scopes.pop()

    def lowered(self, v: Value, loc) -> Value:
        for scope in reversed(self.scopes):
            if v in scope:
                return scope[v]
        src = v.producer
        if src is not None and src.name == "convert" and src.operands[0].dtype == self.dtype:
            out = src.operands[0]   # f32 made from this dtype: converting back is exact
        else:
            out = self.insert(ops.make("convert", [v], result_types=[v.type.with_dtype(self.dtype)], loc=loc),
                              revisit=False).result
        self.scopes[-1][v] = out
        return out

    def visit(self, op: Op):
        if op.name not in _CHANGED:
            return None
        types = [v.dtype for v in op.operands] + [op.result.dtype]
        if any(t != dtypes.F32 for t in types):
            return None
        op.operands = [self.lowered(v, op.loc) for v in op.operands]
        self.count(_CHANGED[op.name])
        return None


def _note(name: str, stats: dict[str, int]) -> str:
    m, c = stats.get("matmuls", 0), stats.get("convolutions", 0)
    parts = [f"{m} matmul{'s' if m != 1 else ''}"] if m or not c else []
    if c:
        parts.append(f"{c} convolution{'s' if c != 1 else ''}")
    return f"precision: {' and '.join(parts)} in {name} with f32 accumulation"


@register("precision")
def precision(graph: Graph, ctx) -> dict[str, int]:
    name = ctx.options.precision
    if not name:
        return {}
    if name not in PRECISIONS:
        raise XchipError(f"unknown precision '{name}'; choose one of {', '.join(PRECISIONS)}")
    caps = ctx.options.capabilities
    if name not in caps.matmul_dtypes:
        have = ", ".join(sorted(caps.matmul_dtypes)) or "none"
        raise TargetError(f"target '{caps.name}' has no fast {name} matmul (its matmul dtypes: {have}); "
                          f"precision '{name}' cannot run there, drop the precision option or pick "
                          f"another target")
    stats = _Lowering(dtypes.get(name)).run(graph)
    ctx.notes.append(_note(name, stats))
    return stats
