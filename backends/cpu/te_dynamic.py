"""dynamic_slice and dynamic_update_slice (fusion leaves each in an opaque group of its own) as
TensorIR: copies whose window starts are read from 0-d integer buffers at run time, clamped
the way StableHLO says (into [0, dim - size]), so they run compiled inside a loop's body
instead of on the reference executor.

The copies move storage bits (a bf16 stays a uint16): nothing is computed, nothing rounded.
"""

from __future__ import annotations

import numpy as np
from tvm import te
from tvm import tirx as tir

from xchip.ir.graph import Op, Value
from xchip.ir.kernel_graph import KernelGroup

from .te_base import fail, storage_dtype

OPS = ("dynamic_slice", "dynamic_update_slice")


def lowers(group: KernelGroup) -> bool:
    real = [op for op in group.ops if op.name != "constant"]
    return group.kind == "opaque" and len(real) == 1 and real[0].name in OPS


def lower_dynamic(group: KernelGroup):
    """The group's one dynamic_slice / dynamic_update_slice as an unscheduled PrimFunc with
    lower.lower_group's contract (a LoweredGroup: params are the inputs, then the output)."""
    from .lower import LoweredGroup
    op = next(op for op in group.ops if op.name in OPS)
    if op.results[0] not in group.outputs or len(group.outputs) != 1:
        raise fail(op, "a dynamic slice whose result is not its group's one output")
    members = set(group.ops)
    placeholders: dict[Value, te.Tensor | tir.PrimExpr] = {}    # constants: the value itself
    for v in op.operands:
        if v in placeholders:
            continue
        if v.type.size == 0:
            raise fail(op, f"zero-size operand {v.type}")
        if v.producer in members:        # a constant start index fusion kept in the group
            if v.type.size != 1:
                raise fail(op, f"constant operand {v.type} inside the group")
            placeholders[v] = tir.const(np.asarray(v.producer.attrs["value"]).reshape(()).item(),
                                        storage_dtype(v.type.dtype, op))
            continue
        placeholders[v] = te.placeholder(v.type.shape, storage_dtype(v.type.dtype, op), f"in{len(placeholders)}")
    out = _compute(op, [placeholders[v] for v in op.operands])
    inputs = [v for v in placeholders if v.producer not in members]
    func = te.create_prim_func([placeholders[v] for v in inputs] + [out]).with_attr("global_symbol", group.name)
    return LoweredGroup(group=group, func=func.with_attr("xchip.kind", group.kind), inputs=inputs,
                        outputs=[op.results[0]], matmul=None)


def _index_dtype(dims) -> str:
    return "int64" if max(dims, default=0) >= 2 ** 31 else "int32"


def _starts(starts: list, sizes, dims) -> list:
    """Each start (a 0-d tensor or a constant, of any integer type) clamped into
    [0, dim - size]."""
    idx = _index_dtype(dims)
    return [tir.max(tir.min((s[()] if isinstance(s, te.Tensor) else s).astype(idx), tir.const(dim - size, idx)),
                    tir.const(0, idx))
            for s, size, dim in zip(starts, sizes, dims)]


def _compute(op: Op, args: list) -> te.Tensor:
    operand = args[0]
    dims = [int(d) for d in operand.shape]
    if op.name == "dynamic_slice":
        sizes = [int(n) for n in op.attrs["slice_sizes"]]
        starts = _starts(args[1:], sizes, dims)
        idx = _index_dtype(dims)
        return te.compute(sizes, lambda *i: operand[tuple(s + x.astype(idx) for s, x in zip(starts, i))],
                          "dynamic_slice")
    update = args[1]
    sizes = [int(n) for n in update.shape]
    starts = _starts(args[2:], sizes, dims)
    idx = _index_dtype(dims)

    def at(*i):
        rel = [x.astype(idx) - s for s, x in zip(starts, i)]
        inside = tir.const(True, "bool")
        for r, size in zip(rel, sizes):
            inside = tir.And(inside, tir.And(r >= tir.const(0, idx), r < tir.const(size, idx)))
        clamped = [tir.max(tir.min(r, tir.const(size - 1, idx)), tir.const(0, idx)) for r, size in zip(rel, sizes)]
        return tir.Select(inside, update[tuple(clamped)], operand[i])
    return te.compute(dims, at, "dynamic_update_slice")
