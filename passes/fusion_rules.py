"""What fusion may put into one kernel: op classes, operand sources, and the legality of a
candidate group. `passes/fusion.py` decides which groups to try; this module only answers
"is this set of ops one valid kernel, and of which kind".

Op classes (per top-level op of the graph body):

- `cheap`: scalar or splat `constant`, `iota`. Immediates: every group that uses one lists
  it among its ops; never read from memory.
- `data`: any other `constant` (a tensor of distinct values). In no group; read from memory
  like a graph input.
- `generated`: elementwise or index-map ops computed from cheap constants alone (a splat
  broadcast, the causal mask built from iota/compare/select). Rematerialized: copied into
  every fusible group that uses them.
- `broadcast`: `broadcast_in_dim` of anything else. Rematerialized as well: each consumer
  group reads the smaller operand and expands it on the fly.
- `real`: everything else; each real op belongs to exactly one group.

At O0 nothing is rematerialized: only `cheap` and `data` keep their meaning.

Within a group, rematerialized ops are transparent: a member's operand is described by its
`Source`, the value it really comes from (`origin`) and how broadcasts moved that value's
dimensions (`dims`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xchip.ir import ops as op_specs
from xchip.ir.graph import Graph, Op, Value
from xchip.ir.rewrite import free_values, splat_scalar

# Ops that only remap indices; they join elementwise groups.
INDEX_MAP_OPS = frozenset({"broadcast_in_dim", "reshape", "transpose", "slice", "reverse"})
# What a matmul or conv may apply to an operand while loading it.
PROLOGUE_OPS = frozenset({"transpose", "reshape", "convert", "slice"})
ANCHOR_KINDS = {"dot_general": "matmul", "convolution": "conv", "reduce": "reduction",
                "reduce_window": "reduction"}


def is_uniform_constant(op: Op) -> bool:
    """A constant whose elements are all equal (bit for bit), scalars and empty tensors included."""
    value = op.attrs["value"]
    return value.size == 0 or splat_scalar(value) is not None


def is_fusible(op: Op) -> bool:
    """Elementwise and index-map ops: what elementwise groups, prologues and epilogues hold."""
    if op.regions:
        return False
    spec = op_specs.spec(op.name)
    return spec is not None and (spec.category == "elementwise" or op.name in INDEX_MAP_OPS)


def anchor_kind(op: Op) -> str | None:
    """The group kind a real op imposes: matmul, conv, reduction, opaque; None for fusible ops."""
    if op.name in ANCHOR_KINDS:
        return ANCHOR_KINDS[op.name]
    return None if is_fusible(op) else "opaque"


def effective_operands(op: Op) -> list[Value]:
    """Operands, then values the op's regions capture from outside, each once."""
    out = list(dict.fromkeys(op.operands))
    if op.regions:
        captured = free_values(op)
        out += [v for v in captured if v not in set(out)]
    return out


@dataclass(frozen=True)
class Source:
    value: Value                    # the operand as the consumer sees it
    origin: Value | None            # what is read from memory or computed by a real op; None: constants only
    dims: tuple[int, ...] | None    # where origin's dimensions land in value; None when value is origin
    remat: tuple[Op, ...] = ()      # rematerialized ops (and cheap constants) between origin and value


@dataclass(eq=False)
class Analysis:
    """Op classes, operand sources and real users of one graph's top-level ops."""

    graph: Graph
    rematerialize: bool = True
    ops: list[Op] = field(default_factory=list)            # top-level ops without the return
    pos: dict[Op, int] = field(default_factory=dict)
    cls: dict[Op, str] = field(default_factory=dict)
    real_ops: list[Op] = field(default_factory=list)
    real_users: dict[Op, list[Op]] = field(default_factory=dict)   # through rematerialized ops
    unused_remat: list[Value] = field(default_factory=list)  # rematerialized values nobody reads
    memory_origins: set[Value] = field(default_factory=set)  # read by the return or an unused copy
    _sources: dict[Value, Source] = field(default_factory=dict)
    _operand_sources: dict[Op, list[Source]] = field(default_factory=dict)

    def __post_init__(self):
        body = self.graph.body.ops
        self.ops = [op for op in body if op.name != "return"]
        self.pos = {op: i for i, op in enumerate(self.ops)}
        for op in self.ops:
            self.cls[op] = self._classify(op)
        self.real_ops = [op for op in self.ops if self.cls[op] == "real"]
        users: dict[Op, list[Op]] = {op: [] for op in self.real_ops}
        for op in self.real_ops:
            for s in self.sources(op):
                p = self.producer(s.origin)
                if p is not None and p in users and op not in users[p]:
                    users[p].append(op)
        self.real_users = users
        # What the return reads, and what a rematerialized op nobody uses reads (it still
        # runs, in a group of its own), is written to memory whatever fusion does.
        used = {v for op in self.ops for v in effective_operands(op)} | set(self.graph.outputs)
        self.unused_remat = [op.results[0] for op in self.ops
                             if self.is_remat(op) and not any(r in used for r in op.results)]
        reads = list(self.graph.outputs) + self.unused_remat
        self.memory_origins = {self.resolve(v).origin for v in reads} - {None}

    # --- classes -----------------------------------------------------------------------

    def _classify(self, op: Op) -> str:
        if op.name == "iota":
            return "cheap"
        if op.name == "constant":
            return "cheap" if is_uniform_constant(op) else "data"
        if not self.rematerialize:
            return "real"
        if is_fusible(op) and op.operands and all(
                v.producer is not None and self.cls.get(v.producer) in ("cheap", "generated")
                for v in op.operands):
            return "generated"
        if op.name == "broadcast_in_dim":
            return "broadcast"
        return "real"

    def is_remat(self, op: Op) -> bool:
        return self.cls.get(op) in ("generated", "broadcast")

    def producer(self, v: Value | None) -> Op | None:
        """The top-level op defining v (None for graph inputs and region arguments)."""
        if v is None or v.producer is None or v.producer not in self.pos:
            return None
        return v.producer

    # --- sources -----------------------------------------------------------------------

    def resolve(self, v: Value) -> Source:
        if v in self._sources:
            return self._sources[v]
        p = self.producer(v)
        kind = self.cls.get(p) if p is not None else None
        if kind == "cheap":
            src = Source(v, None, None, (p,))
        elif kind == "generated":
            src = Source(v, None, None, self._closure(p))
        elif kind == "broadcast":
            inner = self.resolve(p.operands[0])
            dims = p.attrs["broadcast_dimensions"]
            composed = tuple(dims) if inner.dims is None else tuple(dims[i] for i in inner.dims)
            src = Source(v, inner.origin, composed, inner.remat + (p,))
        else:  # graph input, data constant, real op
            src = Source(v, v, None, ())
        self._sources[v] = src
        return src

    def _closure(self, op: Op) -> tuple[Op, ...]:
        """A generated op and everything it is computed from, in program order."""
        seen: set[Op] = set()
        stack = [op]
        while stack:
            o = stack.pop()
            if o in seen:
                continue
            seen.add(o)
            stack += [v.producer for v in o.operands if self.producer(v) is not None]
        return tuple(sorted(seen, key=self.pos.__getitem__))

    def sources(self, op: Op) -> list[Source]:
        if op not in self._operand_sources:
            self._operand_sources[op] = [self.resolve(v) for v in effective_operands(op)]
        return self._operand_sources[op]

    def real_producers(self, op: Op) -> list[Op]:
        out = []
        for s in self.sources(op):
            p = self.producer(s.origin)
            if p is not None and self.cls[p] == "real" and p not in out:
                out.append(p)
        return out

    def escapes(self, op: Op, members: set[Op]) -> bool:
        """Whether a result of `op` is needed outside `members` (so it is written to memory)."""
        if any(u not in members for u in self.real_users[op]):
            return True
        return any(r in self.memory_origins for r in op.results)


# --- legality --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    kind: str
    anchor: Op | None
    info: dict


class _View:
    """A candidate group: its members, which member feeds which, and which anchors each
    member depends on."""

    def __init__(self, members: list[Op], an: Analysis):
        self.ops = members
        self.an = an
        self.members = set(members)
        self.inside: dict[Op, list[Source]] = {}
        for op in members:
            self.inside[op] = [s for s in an.sources(op) if an.producer(s.origin) in self.members]
        self.anchors = [op for op in members if op.name in ANCHOR_KINDS]
        self.deps: dict[Op, frozenset[Op]] = {}
        for op in members:
            d = frozenset({op}) if op.name in ANCHOR_KINDS else frozenset()
            for s in self.inside[op]:
                d |= self.deps[s.origin.producer]
            self.deps[op] = d

    def feeding(self, target: Op) -> set[Op]:
        """Members `target` depends on."""
        out: set[Op] = set()
        stack = [s.origin.producer for s in self.inside[target]]
        while stack:
            o = stack.pop()
            if o not in out:
                out.add(o)
                stack += [s.origin.producer for s in self.inside[o]]
        return out

    def users_inside(self, op: Op) -> list[Op]:
        return [u for u in self.an.real_users[op] if u in self.members]

    def escapes(self, op: Op) -> bool:
        return self.an.escapes(op, self.members)


def check_group(members: list[Op], an: Analysis) -> Verdict | None:
    """The kind of kernel `members` (real ops, program order) make, or None if they cannot
    be one kernel."""
    kinds = [anchor_kind(op) for op in members]
    if "opaque" in kinds:
        return Verdict("opaque", members[0], {}) if len(members) == 1 else None
    view = _View(members, an)
    dots = [op for op in members if op.name == "dot_general"]
    convs = [op for op in members if op.name == "convolution"]
    reduces = [op for op in members if op.name in ("reduce", "reduce_window")]
    if not view.anchors:
        return Verdict("elementwise", None, {})
    if len(dots) + len(convs) == 1 and not reduces:
        anchor = (dots or convs)[0]
        ok = _check_anchored(view, anchor, lambda op: op.name in PROLOGUE_OPS)
        return Verdict("matmul" if dots else "conv", anchor, ok) if ok is not None else None
    if dots or convs:
        if len(dots) == 2 and not convs and reduces:
            return _check_attention(view, dots, reduces)
        return None
    if len(reduces) == 1 and reduces[0].name == "reduce_window":
        ok = _check_anchored(view, reduces[0], is_fusible)
        return Verdict("reduction", reduces[0], ok) if ok is not None else None
    layouts = _row_layouts(view, reduces, None)
    if layouts is None:
        return None
    return Verdict("reduction", reduces[0], {})


def _check_anchored(view: _View, anchor: Op, prologue_ok) -> dict | None:
    """One anchor with a prologue (ops only the anchor's operands need, `prologue_ok`),
    side computations (elementwise ops feeding the epilogue only) and an epilogue
    (elementwise ops on the anchor's result shape). Returns counts, or None."""
    out_shape = anchor.results[0].shape
    feeds_anchor = view.feeding(anchor)
    prologue = epilogue = 0
    for op in view.ops:
        if op is anchor:
            continue
        if anchor in view.deps[op]:
            if op_specs.spec(op.name).category != "elementwise":
                return None
            if any(r.shape != out_shape for r in op.results):
                return None
            for s in view.inside[op]:
                # A broadcast of the anchor's result would change the output's index space.
                if anchor in view.deps[s.origin.producer] and s.dims is not None:
                    return None
            epilogue += 1
            continue
        if view.escapes(op) or not view.users_inside(op):
            return None
        if op in feeds_anchor:
            if not prologue_ok(op):
                return None
            prologue += 1
    return {"prologue_ops": prologue, "epilogue_ops": epilogue}


# --- row layouts: reductions and attention ---------------------------------------------
#
# A reduction group computes whole rows: the reduces share an input shape S and reduced
# dimensions R, and every value in the group is either "full" (shape S, one element per
# input element) or a row statistic ("stat": one element per row, laid out with the row
# dimensions at known positions, size-1 dimensions elsewhere). Broadcasting a statistic
# back along R gives a full value again. Values computed from memory alone are "free".

FREE = ("free",)
FULL = ("full",)
AFTER = ("after",)  # attention: the second matmul's result and its epilogue


class _Rows:
    def __init__(self, shape: tuple[int, ...], reduced: tuple[int, ...]):
        self.shape = shape
        kept = [d for d in range(len(shape)) if d not in reduced]
        significant = [i for i, d in enumerate(kept) if shape[d] != 1]
        self.stat_of_reduce = ("stat", tuple(significant))
        self.full_map = tuple(kept[i] for i in significant)

    def classify(self, m: tuple[int, ...], shape: tuple[int, ...]):
        if shape == self.shape and m == self.full_map:
            return FULL
        if all(n == 1 for d, n in enumerate(shape) if d not in m):
            return ("stat", m)
        return None

    def through(self, layout, src: Source):
        """The layout of `src.value` given the layout of its origin."""
        if layout == FREE or src.dims is None:
            return layout
        if layout == FULL:
            identity = src.value.shape == self.shape and src.dims == tuple(range(len(self.shape)))
            return FULL if identity else None
        if layout[0] == "stat":
            return self.classify(tuple(src.dims[p] for p in layout[1]), src.value.shape)
        return None

    def reshaped(self, layout, src_shape, dst_shape):
        """A reshape that only adds or drops size-1 dimensions keeps rows intact."""
        a = [i for i, n in enumerate(src_shape) if n != 1]
        b = [j for j, n in enumerate(dst_shape) if n != 1]
        if [src_shape[i] for i in a] != [dst_shape[j] for j in b]:
            return None
        if layout == FULL:
            return FULL if dst_shape == self.shape else None
        return self.classify(tuple(b[a.index(p)] for p in layout[1]), dst_shape)


def _row_layouts(view: _View, reduces: list[Op], dots: tuple[Op, Op] | None):
    """Layouts of the members' results, or None if the group does not compute whole rows."""
    first = reduces[0]
    if any(r.name != "reduce" for r in reduces):
        return None
    shape, reduced = first.operands[0].shape, tuple(sorted(first.attrs["dimensions"]))
    for r in reduces:
        if r.operands[0].shape != shape or tuple(sorted(r.attrs["dimensions"])) != reduced:
            return None
    rows = _Rows(shape, reduced)
    first_dot, second_dot = dots if dots else (None, None)
    layout: dict[Op, tuple] = {}
    for op in view.ops:
        ins = [rows.through(layout[s.origin.producer], s) for s in view.inside[op]]
        if any(x is None for x in ins):
            return None
        placed = set(ins) - {FREE}
        if op is first_dot:
            ok = not placed and op.results[0].shape == shape
            layout[op] = FULL if ok else None
        elif op is second_dot:
            layout[op] = _second_dot_layout(view, op, layout, rows, reduced)
        elif second_dot is not None and second_dot in view.deps[op]:
            ok = (op_specs.spec(op.name).category == "elementwise" and placed == {AFTER}
                  and op.results[0].shape == second_dot.results[0].shape
                  and all(s.dims is None for s in view.inside[op] if layout[s.origin.producer] == AFTER))
            layout[op] = AFTER if ok else None
        elif op.name == "reduce":
            n = len(op.operands) // 2
            inputs = [rows.through(layout[s.origin.producer], s) for s in view.inside[op]
                      if any(s.value is v for v in op.operands[:n])]
            layout[op] = rows.stat_of_reduce if all(x in (FULL, FREE) for x in inputs) else None
        elif op.name == "dot_general":
            layout[op] = None
        elif not placed:
            layout[op] = FREE  # computed from memory alone: a load, perhaps in another order
        elif op_specs.spec(op.name).category == "elementwise":
            only = placed.pop() if len(placed) == 1 else None
            layout[op] = only if only == FULL or (only and only[0] == "stat") else None
        elif op.name == "reshape":
            layout[op] = rows.reshaped(ins[0], op.operands[0].shape, op.results[0].shape)
        else:
            layout[op] = None
        if layout[op] is None:
            return None
    if not _free_ops_feed_rows(view, layout):
        return None
    return layout


def _second_dot_layout(view: _View, dot: Op, layout: dict, rows: _Rows, reduced: tuple[int, ...]):
    """The attention's P·V: one operand is the full probabilities, contracted over the
    reduced (key) dimension; the other comes from memory or a prologue."""
    full_sides = []
    for side, key in ((0, "lhs_contracting_dimensions"), (1, "rhs_contracting_dimensions")):
        src = view.an.resolve(dot.operands[side])
        p = view.an.producer(src.origin)
        if p in view.members and rows.through(layout[p], src) != FREE:
            full_sides.append((key, src, rows.through(layout[p], src)))
    if len(full_sides) != 1:
        return None
    key, src, where = full_sides[0]
    if where != FULL or tuple(sorted(dot.attrs[key])) != reduced:
        return None
    return AFTER


def _free_ops_feed_rows(view: _View, layout: dict) -> bool:
    """Every free member must (through other members) feed a member that is not free;
    otherwise it is an unrelated computation riding along."""
    useful: set[Op] = set()
    for op in reversed(view.ops):
        if layout[op] != FREE or any(layout[u] != FREE or u in useful for u in view.users_inside(op)):
            useful.add(op)
    return len(useful) == len(view.ops)


def _check_attention(view: _View, dots: list[Op], reduces: list[Op]) -> Verdict | None:
    a, b = dots
    if a not in view.deps[b]:
        return None
    layouts = _row_layouts(view, reduces, (a, b))
    if layouts is None:
        return None
    loads = set()  # free members a matmul reads through: its prologue
    stack = [s.origin.producer for d in (a, b) for s in view.inside[d]]
    while stack:
        op = stack.pop()
        if layouts[op] == FREE and op not in loads:
            loads.add(op)
            stack += [s.origin.producer for s in view.inside[op]]
    for op in view.ops:
        # The score and probability matrices never leave the kernel.
        if layouts[op] != AFTER and view.escapes(op):
            return None
        if op in loads and op.name not in PROLOGUE_OPS:
            return None
    return Verdict("attention", a, {})
