"""Values of a generated Triton kernel, computed where they are used.

A kernel covers a tile of its iteration space; each dimension of the tile has an index
expression (`Ix`: Triton source of a shape that broadcasts over the tile, and the masks that
keep it in bounds). An IR value of the group is a recipe, not code: a group input is a load,
a broadcast, transpose or reshape re-indexes its operand, an iota is its index, an
elementwise op combines its operands. `render(value, index)` writes the lines that compute
the value at those indices (once per value and index) and returns the variable. So a causal
mask built from iota and compare over [S_q, S_k] and broadcast over batch and heads is
computed on the score tile alone, a transposed input is a load at other addresses, and a
matmul operand computed from inputs (a bf16 convert, a scale) is computed tile by tile
inside the K loop.

Values the kernel's own structure computes (a matmul accumulator, a row statistic) are
*bound* to the index they were computed at and cannot be re-indexed.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from xchip.errors import UnsupportedOpError
from xchip.ir.dtypes import DType
from xchip.ir.kernel_graph import KernelGroup

from .expr import TL, elementwise, tl_type

_SHAPE_OPS = ("broadcast_in_dim", "transpose", "reshape")


@dataclass(frozen=True)
class Ix:
    """The index of one dimension: a Triton expression and the masks that bound it."""
    expr: str
    masks: frozenset[str] = frozenset()


ZERO = Ix("0")


@dataclass(frozen=True)
class Tile:
    """A Triton variable (or expression) holding a value on the kernel's tile."""
    name: str
    dtype: DType


def strides(shape) -> list[int]:
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= d
    return out[::-1]


def split(index: str, sizes: list[int], suffix: str = "", masks: frozenset[str] = frozenset()) -> list[Ix]:
    """Per-dim indices of a row-major index over dims of `sizes` (`suffix` places each on
    its axis of the tile, e.g. "[:, None]"; `masks` bound every one)."""
    out, inner = [], math.prod(sizes)
    for k, n in enumerate(sizes):
        inner //= n
        if n == 1:
            out.append(ZERO)        # one spelling of a size-1 dim's index, whoever builds it
            continue
        part = f"({index} // {inner})" if inner > 1 else f"({index})"
        out.append(Ix((part if k == 0 else f"({part} % {n})") + suffix, masks))
    return out


def place(rank: int, *parts: tuple[list[int], list[Ix]]) -> list[Ix]:
    """An index over `rank` dims from (dims, indices of those dims) pairs."""
    out: list[Ix | None] = [None] * rank
    for dims, ixs in parts:
        for d, ix in zip(dims, ixs):
            out[d] = ix
    assert all(x is not None for x in out), "every dimension is placed"
    return out


def linear(index: list[Ix], shape) -> str:
    """The row-major offset of `index` in a contiguous array of `shape`."""
    terms = [f"({ix.expr}) * {s}" if s != 1 else f"({ix.expr})"
             for ix, s, n in zip(index, strides(shape), shape) if n > 1 and ix.expr != "0"]
    return " + ".join(terms) or "0"


def mask_of(index: list[Ix]) -> str | None:
    masks = sorted(set().union(*(ix.masks for ix in index))) if index else []
    return " & ".join(masks) if masks else None


def float_literal(x: float) -> str:
    if math.isnan(x):
        return "float('nan')"
    if math.isinf(x):
        return "float('inf')" if x > 0 else "-float('inf')"
    return repr(x)


class Emitter:
    """The lines of one kernel body and the recipes of the group's values."""

    def __init__(self, group: KernelGroup, target: str | None):
        self.group, self.target = group, target
        self.lines: list[str] = []
        self.count = 0
        self.memo: dict[tuple, Tile] = {}
        self.recipe: dict[int, tuple] = {}
        self.producer: dict[int, object] = {}
        for k, v in enumerate(group.inputs):
            self.recipe[id(v)] = ("load", f"in{k}")
        for op in group.ops:
            for r in op.results:
                self.producer[id(r)] = op
                self.recipe[id(r)] = ("op", op)

    # -- writing lines -------------------------------------------------------------------

    def fresh(self, expr: str, prefix: str = "v") -> str:
        name = f"{prefix}{self.count}"
        self.count += 1
        self.lines.append(f"{name} = {expr}")
        return name

    @contextmanager
    def block(self, header: str):
        """Lines written inside are the body of `header` (a loop); what they computed is not
        visible after it."""
        outer, memo = self.lines, dict(self.memo)
        self.lines = []
        try:
            yield
        finally:
            body = self.lines
            self.lines, self.memo = outer, memo
            self.lines += [header] + ["    " + x for x in body]

    def fail(self, op, detail: str) -> UnsupportedOpError:
        return UnsupportedOpError(getattr(op, "name", str(op)), getattr(op, "loc", None), self.target, detail)

    # -- values --------------------------------------------------------------------------

    def bind(self, value, tile: Tile, index: list[Ix]) -> None:
        """`value` is `tile`, computed at `index` by the kernel's structure."""
        self.recipe[id(value)] = ("bound", tile, tuple(ix.expr for ix in index))

    def render(self, value, index: list[Ix]) -> Tile:
        """The value at `index` (one Ix per dimension of the value)."""
        key = (id(value), tuple(ix.expr for ix in index))
        if key not in self.memo:
            self.memo[key] = self._render(value, list(index))
        return self.memo[key]

    def operand(self, value, index: list[Ix], shape: str) -> str:
        """A matmul operand tile of `shape` (e.g. "(TILE_M, TILE_K)"): the value, zero where
        the index is out of bounds (so that padding lanes add nothing to the product, whatever
        a prologue makes of them), broadcast along dims of size 1 (whose index is 0)."""
        t = self.render(value, index)
        mask = mask_of(index)
        data = f"tl.where({mask}, {t.name}, 0.0)" if mask else t.name
        return self.fresh(f"tl.broadcast_to({data}, {shape})")

    def store(self, param: str, value, index: list[Ix], shape, offset: str | None = None,
              tile: str | None = None, mask: str | None = None) -> None:
        """Store `value` (or, for a reshape of it, the value before the reshape: the same
        elements in the same order) into the output `param` laid out as `shape`. `tile`, the
        kernel's tile shape, widens the addresses where the index of a size-1 dim is 0 (the
        lanes along it then write the same element, with the same value)."""
        v = value
        while tuple(v.type.shape) != tuple(shape):
            op = self.producer.get(id(v))
            if op is None or op.name != "reshape":
                raise self.fail(self.group.ops[-1], f"an output of shape {list(value.type.shape)} "
                                f"from a kernel over {list(shape)}")
            v = op.operands[0]
        t = self.render(v, index)
        want = value.type.dtype
        data = t.name if t.dtype == want else f"{t.name}.to({TL[want.name]})"
        mask = mask or mask_of(index)
        off = offset or linear(index, shape)
        if tile:
            off = f"tl.broadcast_to({off}, {tile})"
        self.lines.append(f"tl.store({param} + {off}, {data}" + (f", mask={mask})" if mask else ")"))

    def _render(self, value, index: list[Ix]) -> Tile:
        kind = self.recipe[id(value)]
        dtype = value.type.dtype
        if kind[0] == "load":
            return self._load(kind[1], value, index)
        if kind[0] == "bound":
            _, tile, at = kind
            if tuple(ix.expr for ix in index) != at:
                raise self.fail(self.producer.get(id(value), "value"),
                                "a value computed by the kernel's structure, used at other indices "
                                "(a reshape or transpose of a matmul or reduction result)")
            return tile
        op = kind[1]
        if op.name == "constant":
            return self._constant(op)
        if op.name == "iota":
            ix = index[op.attrs["iota_dimension"]]
            if ix.expr == "0":
                return Tile(self.fresh(f"tl.full([1], 0, {tl_type(dtype, op, self.target)})"), dtype)
            return Tile(self.fresh(f"({ix.expr}).to({tl_type(dtype, op, self.target)})"), dtype)
        if op.name in _SHAPE_OPS:
            return self.render(op.operands[0], self._operand_index(op, index))
        if op.name == "slice":
            at = [ix if (st, lo) == (1, 0) else Ix(f"({ix.expr}) * {st} + {lo}", ix.masks)
                  for ix, lo, st in zip(index, op.attrs["start_indices"], op.attrs.get("strides") or [1] * len(index))]
            return self.render(op.operands[0], at)
        if op.name == "concatenate":
            return self._concatenate(op, index)
        if op.name == "dynamic_slice":
            x = op.operands[0]
            starts = [self._start(s, n - k) for s, n, k in zip(op.operands[1:], x.type.shape, op.attrs["slice_sizes"])]
            return self.render(x, [Ix(f"({ix.expr}) + {st}", ix.masks) for ix, st in zip(index, starts)])
        if op.name == "dynamic_update_slice":
            return self._update_slice(op, index)
        if op.name in ("dot_general", "reduce"):
            raise self.fail(op, f"a {'matmul' if op.name == 'dot_general' else 'reduction'} "
                            f"this kernel ({self.group.kind}) does not compute")
        args = [self.render(v, index) for v in op.operands]
        expr = elementwise(op, [a.name for a in args], [a.dtype for a in args], dtype, self.target)
        return Tile(self.fresh(expr), dtype)

    def _start(self, value, last: int) -> str:
        """A dynamic start index, clamped to [0, last] as StableHLO does."""
        key = (id(value), "start", last)
        if key not in self.memo:
            t = self.render(value, [])
            self.memo[key] = Tile(self.fresh(f"tl.minimum(tl.maximum({t.name}, 0), {last})"), t.dtype)
        return self.memo[key].name

    def _update_slice(self, op, index: list[Ix]) -> Tile:
        """The operand with the update written over a window at dynamic offsets: each
        element picks the update inside the window and the operand outside (a copy of the
        whole operand, not an in-place write)."""
        x, update = op.operands[:2]
        starts = [self._start(s, n - k) for s, n, k in zip(op.operands[2:], x.type.shape, update.type.shape)]
        inside = " & ".join(f"(({ix.expr}) >= {st}) & (({ix.expr}) < {st} + {k})"
                            for ix, st, k in zip(index, starts, update.type.shape))
        at = [Ix(f"({ix.expr}) - {st}", ix.masks | {inside}) for ix, st in zip(index, starts)]
        new, old = self.render(update, at), self.render(x, index)
        return Tile(self.fresh(f"tl.where({inside}, {new.name}, {old.name})"), op.results[0].type.dtype)

    def _concatenate(self, op, index: list[Ix]) -> Tile:
        """Each operand loaded where the index falls in its range (masked elsewhere), then
        picked by range."""
        dim = op.attrs["dimension"]
        ix = index[dim]
        parts, start = [], 0
        for v in op.operands:
            n = v.type.shape[dim]
            inside = f"(({ix.expr}) >= {start}) & (({ix.expr}) < {start + n})"
            at = list(index)
            at[dim] = Ix(f"({ix.expr}) - {start}" if start else ix.expr, ix.masks | {inside})
            parts.append((self.render(v, at), start + n))
            start += n
        expr = parts[-1][0].name
        for tile, end in reversed(parts[:-1]):
            expr = f"tl.where(({ix.expr}) < {end}, {tile.name}, {expr})"
        return Tile(self.fresh(expr), op.results[0].type.dtype)

    def _load(self, pointer: str, value, index: list[Ix]) -> Tile:
        shape = value.type.shape
        offset = linear(index, shape)
        mask = mask_of(index)            # a dim of size 1 may still be masked (conv padding)
        other = ", other=0.0" if value.type.dtype.is_float else ""
        load = f"tl.load({pointer} + {offset}" + (f", mask={mask}{other})" if mask else ")")
        return Tile(self.fresh(load), value.type.dtype)

    def _constant(self, op) -> Tile:
        key = (id(op.results[0]),)
        if key in self.memo:
            return self.memo[key]
        value = np.asarray(op.attrs["value"])
        if value.size != 1 and not (value == value.flat[0]).all():
            raise self.fail(op, "a non-splat constant tensor")
        d = op.results[0].type.dtype
        scalar = value.flat[0].item() if value.size else 0
        if d.name == "bool":
            expr = f"tl.full([1], {int(bool(scalar))}, tl.int1)"
        elif d.is_float:
            expr = f"tl.full([1], {float_literal(float(scalar))}, {tl_type(d, op, self.target)})"
        else:
            expr = f"tl.full([1], {int(scalar)}, {tl_type(d, op, self.target)})"
        self.memo[key] = Tile(self.fresh(expr), d)
        return self.memo[key]

    def _operand_index(self, op, index: list[Ix]) -> list[Ix]:
        """The operand's index that gives the result of a shape op at `index`."""
        src = tuple(op.operands[0].type.shape)
        dst = tuple(op.results[0].type.shape)
        if op.name == "broadcast_in_dim":
            dims = op.attrs["broadcast_dimensions"]
            return [index[dims[i]] if src[i] != 1 else ZERO for i in range(len(src))]
        if op.name == "transpose":
            out: list[Ix] = [ZERO] * len(src)
            for k, p in enumerate(op.attrs["permutation"]):
                out[p] = index[k]
            return out
        a = [i for i, n in enumerate(src) if n != 1]
        b = [j for j, n in enumerate(dst) if n != 1]
        if [src[i] for i in a] == [dst[j] for j in b]:
            out = [ZERO] * len(src)          # only size-1 dims added or dropped
            for i, j in zip(a, b):
                out[i] = index[j]
            return out
        masks = frozenset().union(*(ix.masks for ix in index))
        return split(f"({linear(index, dst)})", list(src), masks=masks)


__all__ = ["Emitter", "Ix", "Tile", "ZERO", "float_literal", "linear", "mask_of", "place", "split", "strides"]
