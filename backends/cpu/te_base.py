"""What every `te_*` module shares: the lowering error, dtype mapping, and `TV`, the
lowered form of one IR value.

Values are kept in two forms. *Storage* form is the dtype of the TVM buffer (`bfloat16`,
`float16`, `int8`, `bool`, ...). *Compute* form is what expressions work on: f16 and bf16
values are f32 numbers that lie exactly on the narrow type's grid (each op computes in f32
and rounds once to the narrow type, as the reference executor and XLA:CPU do); every other
dtype computes in itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import tvm
import tvm_ffi
from tvm import te
from tvm import tirx as tir

from xchip.errors import UnsupportedOpError
from xchip.ir.dtypes import DType

from . import te_math as M

TARGET_NAME = "cpu (TVM TensorIR)"


class LoweringError(UnsupportedOpError):
    """An op (or dtype, or attribute) the CPU backend cannot lower to TensorIR. The message
    names the op, its location and why; the integrator runs such groups on the reference
    executor instead."""

    def __init__(self, op: str, loc: object = None, detail: str = ""):
        super().__init__(op, loc, TARGET_NAME, detail)


def fail(op, detail: str) -> LoweringError:
    """The error for `op` (an IR Op)."""
    return LoweringError(op.name, op.loc, detail)


_TVM = {
    "bool": "bool", "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
    "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64",
    "f16": "float16", "bf16": "bfloat16", "f32": "float32", "f64": "float64",
}
NARROW = ("f16", "bf16")


def storage_dtype(d: DType, op=None) -> str:
    try:
        return _TVM[d.name]
    except KeyError:
        raise LoweringError(op.name if op is not None else "value", op.loc if op is not None else None,
                            f"dtype {d.name} has no CPU lowering (supported: {', '.join(_TVM)})") from None


def compute_dtype(d: DType, op=None) -> str:
    return "float32" if d.name in NARROW else storage_dtype(d, op)


def to_compute(expr, d: DType):
    """A storage-form expression (a load of a parameter buffer) in compute form. bf16 is
    widened with bit operations: TVM's bf16 legalization turns a `Cast` of a bf16 load inside
    a `Let` into a numeric conversion of the raw bits. (Intermediate buffers always hold
    compute form: the same legalization widens intermediate bf16 buffers to f32.)"""
    if d.name == "bf16":
        return M.bf16_to_f32(expr)
    if d.name == "f16":
        return expr.astype("float32")
    return expr


def to_storage(expr, d: DType):
    """A compute-form expression in storage form. Exact: a compute-form narrow value is on
    the narrow grid (every op that can leave it rounds, an f32 accumulator included), so bf16
    keeps the high half of the f32 bits -- one read of `expr`, where rounding again would
    read it four times and multiply the size of the store's expression by four."""
    if d.name == "bf16":
        return M.bf16_of_grid_f32(expr)
    if d.name == "f16":
        return expr.astype("float16")
    return expr


def round_to(expr, d: DType):
    """A compute-form f32 result of an op whose result dtype is `d`, rounded to `d`'s grid."""
    if d.name in NARROW:
        return M.round_f32_to(expr, _TVM[d.name])
    return expr


@dataclass(eq=False)
class TV:
    """One IR value as the lowering sees it:
    - a tensor in a buffer (`tensor`; holding compute-form values when `compute_form`);
    - an immediate or a value computed from immediates alone (`fn`, `shared` False): an
      expression rebuilt at each use;
    - an inlined op result (`fn`, `shared` True): its expression is built once per block (per
      index it is read at) and bound with a `Let` there, so a value read several times in one
      kernel is computed once.
    `fn(idx, ctx)` builds the compute-form element at `idx` (one index expression per
    dimension) within the expression context `ctx`."""

    shape: tuple[int, ...]
    dtype: DType
    tensor: te.Tensor | None = None
    fn: Callable | None = None
    compute_form: bool = False
    splat: object = None           # a uniform immediate: its value as a numpy scalar
    shared: bool = False

    @property
    def lazy(self) -> bool:
        """An immediate (or computed from immediates only): no buffer, no binding."""
        return self.tensor is None and not self.shared

    def at(self, idx, ctx=None):
        """The element at `idx`, in compute form (a value of rank 0 ignores `idx`)."""
        idx = list(idx) if self.shape else []
        if self.tensor is None:
            if self.shared:
                return ctx.value(self, idx)
            return self.fn(idx, ctx)
        if ctx is not None:
            ctx.note_read(self.tensor)
        e = self.tensor(*idx)
        return e if self.compute_form else to_compute(e, self.dtype)


def _idx_key(idx) -> tuple:
    return tuple(tvm_ffi.structural_hash(e) for e in idx)


class Ctx:
    """Where one kernel expression is built. A shared value read twice at the same index
    returns the same expression object (TVM's CSE pass and LLVM's then compute it once).

    No `Let`: TVM 0.27's analyzers substitute a bound variable's value wherever it is used
    (so a chain of bindings costs as much as the expanded tree), its bf16 legalization
    mishandles bf16 inside `Let`, and a variable bound twice (after inlining or unrolling)
    is rejected. Expression size is bounded instead by the lowering's plan, which gives a
    buffer to any value whose expanded expression would grow too large (see `tree_size`).
    A child context (`scoped`) builds reads that must stay under a condition (the padding
    of pad, concatenate); without bindings it is the same context."""

    def __init__(self, reads: set | None = None, parent: "Ctx | None" = None):
        self.parent = parent
        self.reads = parent.reads if parent is not None else (reads if reads is not None else set())
        self.memo: dict = parent.memo if parent is not None else {}

    def note_read(self, tensor) -> None:
        self.reads.add(tensor.op.name)

    def value(self, tv: TV, idx):
        key = (id(tv), _idx_key(idx))
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = tv.fn(idx, self)
        return hit

    def wrap(self, body):
        return body

    def scoped(self, fn):
        return fn(self)


def as_expr(e):
    """TVM's `a == b` / `a != b` build EqualOp/NotEqualOp helpers; the expression itself."""
    return e.asobject() if hasattr(e, "asobject") else e


_FIELDS = ("a", "b", "value", "condition", "true_value", "false_value", "body")


def _children(node):
    out = []
    for f in _FIELDS:
        try:
            out.append(getattr(node, f))
        except AttributeError:
            pass
    try:
        out.extend(node.args)
    except AttributeError:
        pass
    return [c for c in out if hasattr(c, "__chandle__") and not isinstance(c, (str, tvm.ir.Op))]


def tree_size(expr, leaves: dict | None = None) -> tuple[int, dict]:
    """(nodes of `expr` as a tree, {leaf handle: times it occurs in that tree}) for the Vars
    in `leaves` (handle -> anything). Counted over the DAG with memoization, so it is cheap
    even when the tree is huge."""
    leaves = leaves or {}
    memo: dict = {}
    expr = as_expr(expr)

    def visit(node):
        h = node.__chandle__()
        hit = memo.get(h)
        if hit is not None:
            return hit
        if h in leaves:
            result = (1, {h: 1})
        else:
            size, counts = 1, {}
            for c in _children(node):
                cs, cc = visit(c)
                size += cs
                for k, v in cc.items():
                    counts[k] = counts.get(k, 0) + v
            result = (size, counts)
        memo[h] = result
        return result

    return visit(expr)


@dataclass
class BlockInfo:
    """What the lowering knows about one compute block, for the schedules."""

    name: str
    role: str                      # "elementwise" | "index" | "reduce" | "reduce_partial" | "matmul" | "conv" | "window" | "output_copy"
    op: str = ""                   # the IR op it computes
    reads: list[str] = field(default_factory=list)   # producer blocks, once per use
    expensive: bool = False        # transcendental or integer division: worth keeping when shared
    cost: int = 1                  # rough cost per element of its own op (1: an add)
    spatial: tuple[int, ...] = ()  # its output shape
    reduce_extent: int = 1
    rows: tuple[int, ...] | None = None   # reduces of trailing dims: the kept (row) shape
    vector_ok: bool = True
    # why the lowering gave this value a buffer instead of inlining it: "shared" (an expensive
    # value read twice), "small" (read by a larger value: computed once, not per element),
    # "size" (inlining would grow an expression past the limit). Schedules should not inline
    # such blocks; they carry the annotation "xchip.keep" with the reason.
    keep: str | None = None
