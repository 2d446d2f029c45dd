"""Kernel groups to TVM TensorIR: the front half of the CPU backend.

    lowered = lower_group(group)                  # unscheduled PrimFunc, one TE compute per op
    mod = schedule_group(lowered, config, target)  # the kind's schedule (schedules.py / matmul_schedule.py)
    lib = build(mod, target)                      # LLVM, -mcpu for the host (or triple/mcpu given)
    lib[group.name](*inputs, *outputs)

Stages, each inspectable on its own: `lowered.func.script()` is the unscheduled TensorIR,
`schedule_group(...).script()` the scheduled one, `build(...).inspect_source("asm")` the
machine code.

What lowers (te_ops.py, te_shape.py, te_contract.py): every elementwise op of the IR on
bool, integer, f16, bf16, f32 and f64 (bitcast_convert between equal widths), the index maps
(broadcast_in_dim, reshape, transpose, slice, reverse), pad, concatenate, iota, uniform
constants, dot_general, convolution, reduce (any body of scalar elementwise ops, several
operands included) and reduce_window. What raises `LoweringError` instead: complex and f8
dtypes, control flow and data-dependent ops (while, if, case, sort, gather, scatter,
dynamic_slice, dynamic_update_slice, select_and_scatter, custom_call, ...), non-uniform
constants inside a group (fusion makes them inputs), bool contractions, bitcasts between
widths, zero-size tensors, and reduces/reduce_windows whose init is computed and whose body is
not one known op.

Immediates (uniform constants, iota, and what is computed from them alone) never become
buffers: they are expressions, folded to one constant with the reference executor where they
are uniform. Every other op becomes one TE compute; the schedules inline most of them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import te
from tvm import tirx as tir

from xchip.ir import dtypes
from xchip.ir import ops as ir_ops
from xchip.ir.graph import Op, Value
from xchip.ir.kernel_graph import KernelGroup

from . import te_contract, te_ops, te_shape
from .te_base import (TV, BlockInfo, Ctx, LoweringError, compute_dtype, fail, round_to, storage_dtype, to_storage,
                      tree_size)

__all__ = ["LoweringError", "MatmulDims", "LoweredGroup", "lower_group", "schedule_group", "build",
           "llvm_target", "host_mcpu"]


@dataclass
class MatmulDims:
    """How the block named "matmul" iterates, for matmul groups."""

    batch: int          # leading spatial iterators that are batch dims
    lhs_free: int       # then this many spatial iterators from the lhs's free dims (M)
    rhs_free: int       # then this many from the rhs's free dims (N)
    contracting: int    # reduce iterators (K)


@dataclass
class LoweredGroup:
    group: KernelGroup
    func: tir.PrimFunc          # unscheduled, global symbol = group.name; params = inputs then outputs
    inputs: list[Value]         # read from memory, in param order
    outputs: list[Value]        # group.outputs, in param order
    matmul: MatmulDims | None   # for matmul groups
    # what the schedules read (not part of the contract others code against)
    blocks: dict[str, BlockInfo] = field(default_factory=dict)   # in creation (topological) order
    output_blocks: list[str] = field(default_factory=list)


# --- lowering ------------------------------------------------------------------------------

def _is_immediate_op(op: Op | None) -> bool:
    if op is None:
        return False
    if op.name == "iota":
        return True
    if op.name == "constant":
        v = op.attrs["value"]
        if v.size <= 1:
            return True
        raw = np.ascontiguousarray(v).reshape(v.size, -1).view(np.uint8).reshape(v.size, -1)
        return bool((raw == raw[0]).all())
    return False


_BUDGET = 300        # cost units of an inlined expression read by two or more ops: above, a buffer


class _Lowerer:
    def __init__(self, group: KernelGroup):
        self.group = group
        self.env: dict[Value, TV] = {}
        self.blocks: dict[str, BlockInfo] = {}
        self.placeholders: set[str] = set()
        self.used_names: set[str] = set()
        self.outputs = set(group.outputs)
        self.materialize: set[Value] = set()
        self._multi_output: set[Value] = set()
        self.keep_reason: dict[Value, str] = {}   # why the plan gave a value a buffer
        self.split: set[Value] = set()            # narrow results computed in f32 in a buffer, then rounded
        self._reads: set[str] | None = None

    # -- names, blocks, expressions --------------------------------------------------------

    def unique(self, base: str) -> str:
        """A block name not used yet, nor the `<name>_init` that TVM's decompose_reduction
        gives the init block it splits off a block (two blocks of one name make every later
        `get_sblock` of it fail)."""
        name = base
        k = 1
        while name in self.used_names or f"{name}_init" in self.used_names:
            name = f"{base}_{k}"
            k += 1
        self.used_names.update((name, f"{name}_init"))
        return name

    def compose(self, fn):
        """fn(ctx) in a fresh expression context, its shared values bound around it."""
        ctx = Ctx(self._reads if self._reads is not None else set())
        return ctx.wrap(fn(ctx))

    def raw_block(self, name, shape, fcompute, role, op, operands=(), *, n_outputs=1, compute_outputs=False,
                  reduce_extent=1, extra_reads=(), cost=1):
        """te.compute(shape, fcompute, name), registered with what it reads."""
        name = self.unique(name)
        outer, self._reads = self._reads, set()
        try:
            tensors = te.compute(tuple(shape), fcompute, name=name)
            reads = self._reads
        finally:
            self._reads = outer
        for tv in operands:
            if tv.tensor is not None:
                reads.add(tv.tensor.op.name)
        reads = [r for r in reads if r not in self.placeholders and r != name] + list(extra_reads)
        self.blocks[name] = BlockInfo(name=name, role=role, op=op.name if op is not None else "",
                                      reads=reads, expensive=cost >= 10, cost=cost, spatial=tuple(shape),
                                      reduce_extent=reduce_extent)
        return tensors

    def elementwise_block(self, name, shape, dtype, fn, op, op_name, role="elementwise", storage=False) -> TV:
        """A compute block of fn(idx, ctx): storage form (for outputs) or compute form."""
        cost = _cost(op_name, dtype)
        if storage:
            tensor = self.raw_block(name, shape, lambda *i: to_storage(self.compose(lambda c: fn(list(i), c)), dtype),
                                    role, op, cost=cost)
            return TV(tuple(shape), dtype, tensor)
        # intermediate values stay in compute form (f32 for bf16/f16): TVM's bf16 passes
        # rewrite intermediate bf16 buffers, and the next op would widen them anyway
        tensor = self.raw_block(name, shape, lambda *i: self.compose(lambda c: fn(list(i), c)), role, op, cost=cost)
        return TV(tuple(shape), dtype, tensor, compute_form=True)

    def elementwise_result(self, shape, dtype, fn, name, op, op_name, value: Value | None = None,
                           role="elementwise") -> TV:
        """The value fn(idx, ctx) computes: a block when the plan materializes it, else an
        expression inlined into (and shared within) the blocks that read it."""
        if value is None or value in self.materialize:
            tv = self.elementwise_block(name, shape, dtype, fn, op, op_name, role=role,
                                        storage=value is not None and value in self.outputs
                                        and value not in self._multi_output)
            if value is not None and value in self.keep_reason:
                self.blocks[tv.tensor.op.name].keep = self.keep_reason[value]
            return tv
        return TV(tuple(shape), dtype, fn=fn, shared=True)

    # -- values ----------------------------------------------------------------------------

    def input_tv(self, v: Value, k: int) -> TV:
        # an unsupported dtype is reported as the op reading it, with its location
        storage_dtype(v.type.dtype, next((op for op in self.group.ops if v in op.operands), None))
        name = self.unique(f"in{k}")
        self.placeholders.add(name)
        t = te.placeholder(tuple(v.type.shape), storage_dtype(v.type.dtype), name=name)
        return TV(tuple(v.type.shape), v.type.dtype, t)

    def splat(self, value, v: Value) -> TV:
        d = v.type.dtype
        scalar = np.asarray(value, d.numpy).reshape(())
        c = te_contract.const_of(None, scalar)
        return TV(tuple(v.type.shape), d, fn=lambda idx, ctx, c=c: c, splat=scalar)

    def immediate(self, op: Op) -> TV:
        v = op.results[0]
        if op.name == "constant":
            value = op.attrs["value"]
            return self.splat(value.reshape(-1)[0] if value.size else np.zeros((), value.dtype), v)
        # iota: the index along one dimension, converted as the reference does (from i64)
        d = op.attrs["iota_dimension"]
        rt = v.type
        compute_dtype(rt.dtype, op)

        def fn(idx, ctx):
            if not idx:
                return te_ops.convert(tir.const(0, "int64"), dtypes.I64, rt.dtype)
            return te_ops.convert(idx[d].astype("int64"), dtypes.I64, rt.dtype)

        return TV(tuple(rt.shape), rt.dtype, fn=fn)

    def value(self, v: Value) -> TV:
        tv = self.env.get(v)
        if tv is None:
            if _is_immediate_op(v.producer):
                tv = self.env[v] = self.immediate(v.producer)
            else:
                raise LoweringError(self.group.name, None, f"value {v!r} is neither computed in the group nor an input")
        return tv

    # -- the plan: which values get a buffer --------------------------------------------------

    def plan(self) -> None:
        """Which values get a buffer. Outputs; contraction operands (the prologue, which the
        matmul schedule inlines itself); expensive values read by two ops (softmax's
        exponentials); small values read by larger ones with arithmetic in them (row
        statistics, per-channel scales: computed once, not once per element); and, to bound
        every kernel expression, the largest inlined operand of any value whose expanded
        expression would pass `_TREE_LIMIT` nodes, and the f32 value of a bf16 exp/log/tanh/...
        before its rounding (`split`). Everything else is inlined."""
        group = self.group
        consumers: dict[Value, list[Op]] = {}
        for op in group.ops:
            for v in dict.fromkeys(op.operands):
                consumers.setdefault(v, []).append(op)
        self.materialize = set(group.outputs)
        for op in group.ops:
            if op.name in ("dot_general", "convolution"):
                self.materialize.update(op.operands)
        keep = self.keep_reason
        lazy: set[Value] = set()
        inl: dict[Value, int] = {}
        size: dict[Value, int] = {}

        def tree(v: Value) -> int:
            if v in size and v not in self.materialize:
                return size[v]
            if v in lazy or _is_immediate_op(v.producer):
                return 4
            # a load: the call, its indices, and the bf16 widening of a parameter
            return 2 + v.type.rank + (12 if v.type.dtype.name == "bf16" else 0)

        for op in group.ops:
            if _is_immediate_op(op):
                lazy.update(op.results)
                continue
            if not (op.name in _FUSIBLE_NAMES or (ir_ops.is_elementwise(op) and not op.regions)):
                continue
            if all(v in lazy or _is_immediate_op(v.producer) for v in op.operands):
                lazy.update(op.results)
                continue
            v = op.results[0]
            own, mults = _op_shape(op)
            operands = list(op.operands)
            if te_ops.rounded_separately(op) and _round_shape(v.type.dtype)[1] > 1 and \
                    own + sum(m * tree(o) for m, o in zip(mults, operands)) > _TREE_LIMIT:
                # bf16 rounding reads its f32 input four times: a long f32 expression (exp,
                # log, tanh) goes to an f32 buffer first, and the rounding reads that
                self.split.add(v)
                own, mults = _op_shape(op, unrounded=True)
            inl[v] = _cost(op.name, v.type.dtype) + sum(
                inl.get(o, 0) for o in dict.fromkeys(operands) if o not in self.materialize)
            if v in self.split:
                inl[v] = 1
            users = consumers.get(v, [])
            if _cost(op.name, v.type.dtype) >= 10 and len(users) >= 2 and v not in self.materialize \
                    and v not in self.split:
                self.materialize.add(v)
                keep[v] = "shared"
            elif inl[v] >= 1 and v.type.size and any(2 * v.type.size <= _domain(u) for u in users) \
                    and v not in self.materialize:
                self.materialize.add(v)
                keep[v] = "small"
            total = own + sum(m * tree(o) for m, o in zip(mults, operands))
            while total > _TREE_LIMIT:
                inlined = [(m * tree(o), k) for k, (m, o) in enumerate(zip(mults, operands))
                           if o not in self.materialize and o not in lazy and o in size]
                if not inlined:
                    break
                _, k = max(inlined)
                self.materialize.add(operands[k])
                keep[operands[k]] = "size"
                total = own + sum(m * tree(o) for m, o in zip(mults, operands))
            if v in self.split:
                round_own, round_reads = _round_shape(v.type.dtype)
                total = round_own + round_reads * (2 + v.type.rank)
            size[v] = total
            if v in self.materialize:
                inl[v] = 0

    # -- ops -------------------------------------------------------------------------------

    def lower(self) -> LoweredGroup:
        group = self.group
        if not group.outputs:
            raise LoweringError(group.name, None, "the group has no outputs")
        for v in list(group.inputs) + list(group.outputs):
            if v.type.size == 0:
                raise LoweringError(group.name, None, f"zero-size tensor {v.type} is not lowered")
        inputs = [v for v in group.inputs if not _is_immediate_op(v.producer)]
        for k, v in enumerate(inputs):
            self.env[v] = self.input_tv(v, k)
        self.plan()
        for op in group.ops:
            if any(r in self.env for r in op.results):
                continue
            for r in op.results:
                if r.type.size == 0:
                    raise fail(op, f"zero-size result {r.type} is not lowered")
            results = self.lower_op(op)
            for r, tv in zip(op.results, results):
                self.env[r] = tv
        out_tensors, output_blocks = [], []
        seen = set()
        for k, v in enumerate(group.outputs):
            tv = self.value(v)
            t = tv.tensor
            if t is None or t.op.name in self.placeholders or tv.compute_form and (
                    compute_dtype(tv.dtype) != storage_dtype(tv.dtype)) or t.op.name in seen \
                    or getattr(t, "value_index", 0) != 0 or t.op.num_outputs != 1:
                t = self.elementwise_block(f"out{k}", tv.shape, tv.dtype, lambda idx, c, tv=tv: tv.at(idx, c),
                                           None, "copy", role="output_copy", storage=True).tensor
            seen.add(t.op.name)
            out_tensors.append(t)
            output_blocks.append(t.op.name)
        params = [self.env[v].tensor for v in inputs] + out_tensors
        func = te.create_prim_func(params).with_attr("global_symbol", group.name)
        func = func.with_attr("xchip.kind", group.kind)
        matmul = None
        if group.kind == "matmul":
            dot = group.anchor if group.anchor is not None and group.anchor.name == "dot_general" else next(
                op for op in group.ops if op.name == "dot_general")
            a = dot.attrs
            nb, nc = len(a["lhs_batching_dimensions"]), len(a["lhs_contracting_dimensions"])
            matmul = MatmulDims(batch=nb, lhs_free=dot.operands[0].type.rank - nb - nc,
                                rhs_free=dot.operands[1].type.rank - nb - nc, contracting=nc)
        return LoweredGroup(group=group, func=func, inputs=inputs, outputs=list(group.outputs), matmul=matmul,
                            blocks=self.blocks, output_blocks=output_blocks)

    def _name(self, op: Op) -> str:
        if op.name == "dot_general":
            return "matmul" if self.group.kind == "matmul" and "matmul" not in self.used_names else "dot"
        return "conv"

    def lower_op(self, op: Op) -> list[TV]:
        name = op.name
        if name == "return":
            return []
        if _is_immediate_op(op):
            return [self.immediate(op)]
        if name == "constant":
            raise fail(op, "a non-uniform constant inside a kernel group (fusion passes data constants as inputs)")
        operands = [self.value(v) for v in op.operands]
        rt = op.results[0].type if op.results else None
        v = op.results[0] if op.results else None
        if ir_ops.is_elementwise(op) and not op.regions:
            return [self._elementwise(op, operands)]
        if name in te_shape.INDEX_MAPS:
            (x,) = operands
            index = te_shape.INDEX_MAPS[name](op, x, rt.shape)
            fn = lambda idx, ctx, x=x, index=index: x.at(index(idx), ctx)  # noqa: E731
            if x.lazy:
                return [TV(tuple(rt.shape), rt.dtype, fn=fn, splat=x.splat)]
            return [self.elementwise_result(rt.shape, rt.dtype, fn, name, op, name, v, role="index")]
        if name == "pad":
            x, pv = operands
            fn = te_shape.pad_value(op, x, pv, rt.shape)
            if x.lazy and pv.lazy:
                splat = x.splat if x.splat is not None and pv.splat is not None and \
                    x.splat.tobytes() == pv.splat.tobytes() else None
                return [TV(tuple(rt.shape), rt.dtype, fn=fn, splat=splat)]
            return [self.elementwise_result(rt.shape, rt.dtype, fn, name, op, name, v, role="index")]
        if name == "concatenate":
            fn = te_shape.concatenate_value(op, operands, rt.shape)
            if all(t.lazy for t in operands):
                return [TV(tuple(rt.shape), rt.dtype, fn=fn)]
            return [self.elementwise_result(rt.shape, rt.dtype, fn, name, op, name, v, role="index")]
        if name == "dot_general":
            return [te_contract.dot_general(self, op, operands[0], operands[1], self._name(op))]
        if name == "convolution":
            return [te_contract.convolution(self, op, operands[0], operands[1], self._name(op))]
        if name in ("reduce", "reduce_window"):
            n = len(operands) // 2
            inits = operands[n:]
            init_values = [t.splat for t in inits]
            fn = te_contract.reduce if name == "reduce" else te_contract.reduce_window
            return fn(self, op, operands[:n], inits, init_values if all(v is not None for v in init_values) else None,
                      name)
        raise fail(op, "no TensorIR lowering for this op (control flow and data-dependent ops run on the "
                       "reference executor)")

    def _elementwise(self, op: Op, operands: list[TV]) -> TV:
        rt = op.results[0].type
        in_types = [v.type.dtype for v in op.operands]
        if op.name == "bitcast_convert" and in_types[0].itemsize != rt.dtype.itemsize:
            # checked before any expression is built: the operand has another rank than the result
            raise fail(op, f"bitcast between widths ({in_types[0].name} -> {rt.dtype.name}) is not lowered")
        if all(t.splat is not None for t in operands):
            from xchip.runtime.reference import evaluate_op
            (value,) = evaluate_op(op, [np.asarray(t.splat) for t in operands])
            value = np.asarray(value)
            if value.size == 1:
                return self.splat(value.reshape(-1)[0], op.results[0])

        if op.results[0] in self.split:
            (x,) = operands
            wide = self.elementwise_block(f"{op.name}_f32", rt.shape, dtypes.F32,
                                          lambda idx, c: te_ops.unrounded(op, [x.at(idx, c)]), op, op.name)
            self.blocks[wide.tensor.op.name].keep = "size"
            return self.elementwise_result(rt.shape, rt.dtype, lambda idx, c: round_to(wide.at(idx, c), rt.dtype),
                                           op.name, op, "convert", op.results[0])

        def fn(idx, ctx):
            return te_ops.elementwise(op, [t.at(idx, ctx) for t in operands], in_types, rt.dtype)

        if all(t.lazy for t in operands):
            fn([tir.const(0, "int32") for _ in rt.shape], Ctx())   # raises LoweringError now if it cannot lower
            return TV(tuple(rt.shape), rt.dtype, fn=fn)
        return self.elementwise_result(rt.shape, rt.dtype, fn, op.name, op, op.name, op.results[0])


_FUSIBLE_NAMES = frozenset(te_shape.INDEX_MAPS) | {"pad", "concatenate"}
_TREE_LIMIT = 1500   # nodes of one value's expanded expression tree before a buffer breaks it
_SHAPES: dict = {}
_MAX_POWER_SHAPE = 16


def _op_shape(op: Op, unrounded: bool = False) -> tuple[int, list[int]]:
    """(nodes an op adds to an expression tree, how many times it reads each operand), from
    its expression built on placeholder operands (bf16 rounding reads its input four times,
    f32 exp thirty). `unrounded`: of the f32 value of a `rounded_separately` op."""
    if op.name in te_shape.INDEX_MAPS:
        return 1, [1]
    if op.name in ("pad", "concatenate"):
        return 8 * len(op.operands), [1] * len(op.operands)
    key = (op.name, tuple(v.type.dtype.name for v in op.operands), tuple(r.type.dtype.name for r in op.results),
           repr(sorted((k, v) for k, v in op.attrs.items() if k != "value")), unrounded)
    hit = _SHAPES.get(key)
    if hit is None:
        leaves = [tir.Var(f"operand{k}", compute_dtype(v.type.dtype)) for k, v in enumerate(op.operands)]
        try:
            if unrounded:
                expr = te_ops.unrounded(op, leaves)
            else:
                expr = te_ops.elementwise(op, leaves, [v.type.dtype for v in op.operands], op.results[0].type.dtype)
        except LoweringError:
            # needs a constant operand (integer power): its own product chain, counted as such
            return 4, [_MAX_POWER_SHAPE] + [1] * (len(op.operands) - 1)
        total, counts = tree_size(expr, {leaf.__chandle__(): True for leaf in leaves})
        mults = [counts.get(leaf.__chandle__(), 0) for leaf in leaves]
        hit = _SHAPES[key] = (max(1, total - sum(mults)), mults)
    return hit


def _round_shape(d) -> tuple[int, int]:
    """(nodes, reads of its input) of the rounding of an f32 value to dtype `d`."""
    hit = _SHAPES.get(("round", d.name))
    if hit is None:
        leaf = tir.Var("value", "float32")
        total, counts = tree_size(round_to(leaf, d), {leaf.__chandle__(): True})
        reads = counts.get(leaf.__chandle__(), 0)
        hit = _SHAPES[("round", d.name)] = (max(1, total - reads), reads)
    return hit


def _cost(op_name: str, dtype) -> int:
    if op_name in te_shape.INDEX_MAPS or op_name in ("copy",):
        return 0
    if op_name in ("divide", "remainder") and dtype is not None and dtype.is_integer:
        return 20
    return te_ops.EXPENSIVE.get(op_name, 1)


def _domain(op: Op) -> int:
    """Elements an op computes (for a reduction: the elements it reads)."""
    if op.name in ("reduce", "reduce_window", "dot_general", "convolution"):
        return max([v.type.size for v in op.operands] + [r.type.size for r in op.results])
    return max((r.type.size for r in op.results), default=0)


# Opaque groups (fusion's copy kernels) whose one op is an index map the lowering handles.
_OPAQUE_LOWERED = ("pad", "concatenate")


def lower_group(group: KernelGroup) -> LoweredGroup:
    """The group as one unscheduled PrimFunc (global symbol `group.name`; params: the inputs
    read from memory, then the outputs). Raises LoweringError for what it cannot lower."""
    if group.kind == "opaque":
        real = [op for op in group.ops if not _is_immediate_op(op)]
        if not (len(real) == 1 and real[0].name in _OPAQUE_LOWERED):
            names = sorted({op.name for op in real}) or [group.name]
            op = real[0] if len(real) == 1 else None
            raise LoweringError(names[0], op.loc if op is not None else None,
                                f"opaque group {group.name} ({', '.join(names)}): control flow and data-dependent "
                                f"ops run on the reference executor")
    try:
        return _Lowerer(group).lower()
    except LoweringError:
        raise
    except (tvm.error.InternalError, ValueError, TypeError, KeyError, AttributeError) as e:   # a TVM limit
        raise LoweringError(group.name, None, f"TVM could not express the group: {type(e).__name__}: "
                                              f"{str(e).splitlines()[0] if str(e) else ''}") from e


# --- scheduling ----------------------------------------------------------------------------

def schedule_group(lowered: LoweredGroup, config: dict | None, target, *,
                   use_matmul_schedule: bool = True) -> tvm.IRModule:
    """The group's PrimFunc scheduled for `target` (an xchip Target; None: the host) with
    `config` (None: the kind's defaults from the target). Matmul groups go to
    `matmul_schedule.schedule_matmul` when that module exists (and `use_matmul_schedule`),
    else to a simple schedule here (schedules.py)."""
    from . import schedules
    if target is None:
        from xchip import targets
        target = targets.get("cpu")
    mod = schedules.schedule(lowered, config, target, use_matmul_schedule=use_matmul_schedule)
    # A schedule that inlines copies expressions into several places; TVM's passes want each
    # variable bound once.
    return tir.transform.ConvertSSA()(mod)


# --- building ------------------------------------------------------------------------------

_X86_LEVELS = (
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
    ("x86-64-v3", ("avx2", "fma", "bmi2", "f16c", "movbe")),
    ("x86-64-v2", ("sse4_2", "popcnt")),
)


def _host_flags() -> set[str]:
    try:
        from xchip.targets.host import detect
        return set(detect().flags)
    except Exception:  # noqa: BLE001 - no /proc: trust LLVM
        return set()


def host_mcpu() -> str:
    """LLVM's name for the host CPU (`znver3`, `skylake-avx512`, `tsv110`), checked against
    the ISA flags the OS reports: a hypervisor may hide extensions the CPU model implies
    (AVX-512 on a Zen 4 guest), and code built for them would die with SIGILL. Then the
    highest x86-64 level the flags allow."""
    from tvm.target import codegen
    name = str(codegen.llvm_get_system_cpu())
    flags = _host_flags()
    if not flags or not name or name == "generic":
        return name or "generic"
    machine = tvm.get_global_func("target.llvm_get_system_triple")()
    if not str(machine).startswith(("x86_64", "i686", "i386")):
        return name
    try:
        t = tvm.target.Target({"kind": "llvm", "mcpu": name})
        implied = {f for f in ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "avx")
                   if codegen.llvm_cpu_has_features([f], t)}
    except Exception:  # noqa: BLE001
        implied = set()
    if implied <= flags:
        return name
    for level, needs in _X86_LEVELS:
        if all(f in flags for f in needs):
            return level
    return "x86-64"


def _target_dict(target=None, *, triple: str | None = None, mcpu: str | None = None) -> dict:
    d: dict = {"kind": "llvm"}
    if triple is None and target is not None and getattr(target, "name", "cpu") != "cpu":
        isa = str(getattr(target, "isa", "")) + str(getattr(target, "architecture", ""))
        if "aarch64" in isa or "arm64" in isa.lower():
            triple = "aarch64-linux-gnu"
    if triple:
        d["mtriple"] = triple
    if mcpu is None and triple is None:
        mcpu = host_mcpu()
    if mcpu:
        d["mcpu"] = mcpu
    return d


def llvm_target(target=None, *, triple: str | None = None, mcpu: str | None = None) -> str:
    """The LLVM target as text (for cache keys and logs): JSON of TVM's target dict."""
    return json.dumps(_target_dict(target, triple=triple, mcpu=mcpu), sort_keys=True)


def build(mod: tvm.IRModule, target=None, *, triple: str | None = None, mcpu: str | None = None):
    """Compile a scheduled module with LLVM for the host (`-mcpu` detected; see `host_mcpu`)
    or, given `triple`/`mcpu`, for another machine (ARM64 Kunpeng: triple
    "aarch64-linux-gnu", mcpu "tsv110"). Returns a `tvm.runtime.Module`; `lib[group.name]`
    is the kernel. (TVM compiles with FP contraction on; the lowering fences the products
    whose rounding the reference keeps, see te_ops.)"""
    llvm = tvm.target.Target(_target_dict(target, triple=triple, mcpu=mcpu))
    _register_pipeline()
    return tvm.tirx.build(mod, target=llvm, pipeline=_PIPELINE)


_PIPELINE = "xchip_cpu"


def _register_pipeline() -> None:
    """TVM's default pipeline with `ConvertSSA` around it: the expressions bind shared values
    with `Let`, and passes that copy code (inlining, loop partitioning, unrolling) bind one
    variable in several places, which LowerIntrin's analyzer rejects. Its last pass, the bf16
    storage legalization, runs after `_bf16_broadcasts`."""
    from tvm.tirx import compilation_pipeline as cp
    if _PIPELINE in cp.PIPELINE_MAP:
        return

    def factory(**kwargs):
        pipeline, host, device = tvm.tirx.get_tir_pipeline("default", **kwargs)

        @tvm.transform.module_pass(opt_level=0, name="xchip.DefaultPipelineThenBF16Storage")
        def default_then_bf16(mod, _ctx):
            cur = tvm.transform.PassContext.current()
            # the caller's instruments stay out: entering and leaving a context resets them
            # (pass timing clears its profile)
            with tvm.transform.PassContext(opt_level=cur.opt_level, required_pass=list(cur.required_pass),
                                           disabled_pass=list(cur.disabled_pass) + [_BF16_STORAGE],
                                           config=dict(cur.config)):
                mod = pipeline(mod)
            if _BF16_STORAGE in cur.disabled_pass:
                return mod
            return tir.transform.BF16StorageLegalize()(_bf16_broadcasts(mod))

        ssa = tir.transform.ConvertSSA
        seq = tvm.ir.transform.Sequential([ssa(), default_then_bf16, ssa()], name="xchip_cpu")
        return seq, (lambda: tvm.ir.transform.Sequential([ssa(), host()])), device

    tvm.tirx.register_tir_pipeline(_PIPELINE, factory)


_BF16_STORAGE = "tirx.BF16StorageLegalize"


def _bf16_broadcasts(mod: tvm.IRModule) -> tvm.IRModule:
    """Broadcasts of a bf16 scalar as broadcasts of its uint16 bits. A bf16 store whose value
    does not vary across the vectorized lanes (a constant, a row value broadcast along the
    row) becomes `Broadcast(bf16 value)`, which TVM's bf16 storage legalization leaves as
    bf16 while it turns the buffer into uint16 (and the store then fails to type-check)."""
    import tvm_ffi

    def on_broadcast(node, mutator):
        node = mutator.default_mutate(node)
        value = node.value
        if str(value.ty) != "bfloat16":
            return node
        if isinstance(value, tvm.ir.expr.Call) and getattr(value.op, "name", "") == "tirx.reinterpret" \
                and str(value.args[0].ty) == "uint16":
            bits = value.args[0]
        else:
            bits = tir.reinterpret("uint16", value)
        return tir.reinterpret(f"bfloat16x{node.lanes}", tir.Broadcast(bits, node.lanes))

    return tvm_ffi.structural_mutate(mod, [(tir.Broadcast, on_broadcast)])
