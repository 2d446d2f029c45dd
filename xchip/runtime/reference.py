"""The reference executor: a numpy interpreter for every op of xchip IR.

It is the oracle that passes and backends are tested against, so it follows the StableHLO
specification, and where the spec leaves a choice to the implementation it does what
XLA:CPU (and so `jax.jit`) does. It aims to be right, not fast.

    evaluate(graph, args, custom_calls={...}) -> list of numpy arrays

Regions of scalar ops (reduce bodies, comparators, scatter combiners) run on whole arrays
of scalars at once where every op in them is elementwise; the per-op modules broadcast
instead of trusting the declared scalar shapes for that reason.

Where it knowingly differs from XLA:CPU (each checked there), it follows the spec:
- denormal f32/f64 results are kept (XLA:CPU flushes them to zero);
- integer `power` uses the whole exponent (XLA:CPU only its low 6 bits: 3**64 == 1);
- complex `compare` LE/GE are lexicographic like LT/GT (XLA:CPU compares real parts only);
- float dot products and convolutions accumulate in f64 (XLA:CPU in the result type, f32).
Where the spec leaves the choice to the implementation it does what XLA:CPU does: integer
x/0 == -1 and x%0 == x, saturating float->int conversion with NaN -> 0, f64 reaching
bf16/f16 through f32, a scatter window that does not fit is dropped whole, NaN passes
reduce_precision unchanged.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import ArgumentError, UnsupportedOpError
from ..ir import ops as ir_ops
from ..ir.graph import Graph, Op, Region, Value
from . import reference_contract, reference_data, reference_elementwise, reference_reduce, reference_shape

CustomCall = Callable[..., Sequence[np.ndarray] | None]

TARGET = "reference"


class ReferenceError(RuntimeError):
    """The executor produced something other than what an op's type declares: a bug here,
    never in the program being run."""


class _Frame:
    """The values one region run can see: its own, then those of the enclosing runs."""

    __slots__ = ("values", "parent")

    def __init__(self, values: dict, parent: "_Frame | None"):
        self.values = values
        self.parent = parent

    def get(self, v: Value) -> np.ndarray:
        frame = self
        while frame is not None:
            try:
                return frame.values[v]
            except KeyError:
                frame = frame.parent
        raise ReferenceError(f"value {v!r} is used before it is defined")


class Context:
    """What an op handler may ask for: running one of its regions, in the scope of the
    region the op sits in."""

    __slots__ = ("interpreter", "frame", "batched")

    def __init__(self, interpreter: "_Interpreter", frame: _Frame, batched: bool):
        self.interpreter = interpreter
        self.frame = frame
        self.batched = batched

    @property
    def custom_calls(self) -> Mapping[str, CustomCall]:
        return self.interpreter.custom_calls

    def call(self, region: Region, args: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run `region` once on `args`."""
        return self.interpreter.run(region, [np.asarray(a) for a in args], self.frame, False)

    def call_batched(self, region: Region, args: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run a region of scalar arguments once per element of `args` (arrays that
        broadcast to one batch shape); results have the batch shape."""
        arrays = np.broadcast_arrays(*[np.asarray(a) for a in args])
        batch = arrays[0].shape if arrays else ()
        if self.interpreter.vectorizable(region):
            outs = self.interpreter.run(region, arrays, self.frame, True)
            return [np.broadcast_to(o, batch) for o in outs]
        results = [np.empty(batch, v.type.dtype.numpy) for v in region.outputs]
        for index in np.ndindex(*batch):
            outs = self.interpreter.run(region, [a[index] for a in arrays], self.frame, False)
            for r, o in zip(results, outs):
                r[index] = o
        return results


def _unsupported(op: Op, detail: str) -> UnsupportedOpError:
    return UnsupportedOpError(op.name, op.loc, TARGET, detail)


# --- control flow, constants, calls --------------------------------------------------------

def _constant(ctx, op, args):
    value = op.attrs["value"].view()
    value.flags.writeable = False
    return [value]


def _while(ctx, op, args):
    cond, body = op.regions
    values = list(args)
    while True:
        (go,) = ctx.call(cond, values)
        if not bool(go):
            return values
        values = ctx.call(body, values)


def _if(ctx, op, args):
    (pred,) = args
    return ctx.call(op.regions[0] if bool(pred) else op.regions[1], [])


def _case(ctx, op, args):
    (index,) = args
    i = int(index)
    if not 0 <= i < len(op.regions):
        i = len(op.regions) - 1   # out of range runs the last branch (spec)
    return ctx.call(op.regions[i], [])


def _optimization_barrier(ctx, op, args):
    return list(args)


def _custom_call(ctx, op, args):
    name = op.attrs["call_target_name"]
    handler = ctx.custom_calls.get(name)
    if handler is None:
        known = ", ".join(sorted(ctx.custom_calls)) or "none"
        raise _unsupported(op, f"no handler for custom_call target '{name}' (handlers: {known})")
    results = handler(op, *args)
    results = [] if results is None else [np.asarray(r) for r in results]
    if len(results) != len(op.results):
        raise ReferenceError(f"custom_call handler for '{name}' returned {len(results)} "
                             f"results; the op declares {len(op.results)}")
    return results


HANDLERS: dict[str, Callable] = {
    "constant": _constant, "while": _while, "if": _if, "case": _case,
    "optimization_barrier": _optimization_barrier, "custom_call": _custom_call,
}
HANDLERS.update(reference_elementwise.HANDLERS)
HANDLERS.update(reference_shape.HANDLERS)
HANDLERS.update(reference_data.HANDLERS)
HANDLERS.update(reference_reduce.HANDLERS)
HANDLERS.update(reference_contract.HANDLERS)


def supported_ops() -> list[str]:
    """Every op name the executor runs (all of `xchip.ir.ops` but `return`, which ends
    regions)."""
    return sorted(HANDLERS)


# --- the interpreter -----------------------------------------------------------------------

class _Interpreter:
    def __init__(self, custom_calls: Mapping[str, CustomCall] | None):
        self.custom_calls = dict(custom_calls or {})
        self._vectorizable: dict[int, bool] = {}

    def vectorizable(self, region: Region) -> bool:
        """Whether the region can run on arrays of scalars: only elementwise ops and
        constants, every value a scalar, nothing nested."""
        key = id(region)
        known = self._vectorizable.get(key)
        if known is None:
            known = all(a.type.rank == 0 for a in region.args) and all(
                op.name == "return" or (
                    not op.regions
                    and all(r.type.rank == 0 for r in op.results)
                    and (op.name == "constant" or (ir_ops.is_elementwise(op) and reference_elementwise.keeps_shape(op))))
                for op in region.ops)
            self._vectorizable[key] = known
        return known

    def run(self, region: Region, args: list[np.ndarray], parent: _Frame | None, batched: bool) -> list[np.ndarray]:
        frame = _Frame(dict(zip(region.args, args)), parent)
        returned = self.run_ops(region.ops, frame, batched)
        if returned is None:
            raise ReferenceError("region does not end in 'return'")
        return returned

    def run_ops(self, op_list: Sequence[Op], frame: _Frame, batched: bool) -> list[np.ndarray] | None:
        """Run ops in order, storing results in `frame`; the operands of a `return` if one
        is reached, else None."""
        values = frame.values
        ctx = Context(self, frame, batched)
        for op in op_list:
            if op.name == "return":
                return [frame.get(v) for v in op.operands]
            handler = HANDLERS.get(op.name)
            if handler is None:
                raise _unsupported(op, "the reference executor has no implementation of this op")
            operands = [frame.get(v) for v in op.operands]
            results = handler(ctx, op, operands)
            if len(results) != len(op.results):
                raise ReferenceError(f"op {op.where()} produced {len(results)} results, declares {len(op.results)}")
            for v, r in zip(op.results, results):
                if not isinstance(r, np.ndarray):
                    r = np.asarray(r)
                t = v.type
                if r.dtype != t.dtype.numpy or (not batched and r.shape != t.shape):
                    raise ReferenceError(f"op {op.where()} produced {r.dtype}{list(r.shape)}, "
                                         f"declares {t}")
                values[v] = r
        return None


def _check_arguments(graph: Graph, args: Sequence) -> list[np.ndarray]:
    expected = graph.input_types
    if len(args) != len(expected):
        raise ArgumentError(f"graph @{graph.name} takes {len(expected)} argument(s) "
                            f"({', '.join(map(str, expected))}), got {len(args)}")
    arrays = []
    for i, (a, t) in enumerate(zip(args, expected)):
        arr = np.asarray(a)
        if arr.dtype != t.dtype.numpy or arr.shape != t.shape:
            got = f"{arr.dtype}{list(arr.shape)}"
            raise ArgumentError(f"argument {i} of graph @{graph.name}: expected {t} "
                                f"({t.dtype.numpy}{list(t.shape)}), got {got}")
        arrays.append(arr)
    return arrays


def evaluate(graph: Graph, args: Sequence[np.ndarray], *,
             custom_calls: Mapping[str, CustomCall] | None = None) -> list[np.ndarray]:
    """Run `graph` on `args` (numpy arrays of exactly the input types) and return its
    outputs as fresh numpy arrays of exactly the output types.

    `custom_calls` maps a `custom_call`'s `call_target_name` to a handler
    `handler(op, *operand_arrays) -> list of result arrays` (None for no results).
    Raises ArgumentError for wrong arguments and UnsupportedOpError for an op it cannot run.
    """
    arrays = _check_arguments(graph, args)
    with np.errstate(all="ignore"):
        outs = _Interpreter(custom_calls).run(graph.body, arrays, None, False)
    return [np.array(o, copy=True) for o in outs]


def evaluate_region(region: Region, args: Sequence[np.ndarray],
                    env_outer: Mapping[Value, np.ndarray] | None = None, *,
                    custom_calls: Mapping[str, CustomCall] | None = None) -> list[np.ndarray]:
    """Run one region on `args`; `env_outer` gives the values of the enclosing scope that
    the region uses (a region of `while`/`if` may read them)."""
    parent = _Frame(dict(env_outer), None) if env_outer else None
    with np.errstate(all="ignore"):
        outs = _Interpreter(custom_calls).run(region, [np.asarray(a) for a in args], parent, False)
    return [np.array(o, copy=True) for o in outs]


def evaluate_op(op: Op, args: Sequence[np.ndarray], *,
                custom_calls: Mapping[str, CustomCall] | None = None) -> list[np.ndarray]:
    """Run a single op on its operand arrays (its regions may read only their own
    arguments)."""
    handler = HANDLERS.get(op.name)
    if handler is None:
        raise _unsupported(op, "the reference executor has no implementation of this op")
    interpreter = _Interpreter(custom_calls)
    with np.errstate(all="ignore"):
        results = handler(Context(interpreter, _Frame({}, None), False), op, [np.asarray(a) for a in args])
    return [np.array(r, copy=True) for r in results]


def evaluate_ops(op_list: Sequence[Op], env: Mapping[Value, np.ndarray], *,
                 custom_calls: Mapping[str, CustomCall] | None = None) -> dict[Value, np.ndarray]:
    """Run top-level ops in order (a kernel group a backend hands back); `env` gives every
    value they read from outside the list. Returns the values of all their results."""
    frame = _Frame({}, _Frame(dict(env), None))
    with np.errstate(all="ignore"):
        _Interpreter(custom_calls).run_ops(op_list, frame, False)
    return frame.values


__all__ = ["Context", "ReferenceError", "evaluate", "evaluate_op", "evaluate_ops", "evaluate_region",
           "supported_ops"]
