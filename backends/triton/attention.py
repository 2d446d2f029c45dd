"""Attention groups as one flash-attention Triton kernel.

The fusion pass hands over matmul -> score epilogue -> softmax -> matmul as one group:

    S = epilogue(Q·K)            scale, masks (iota/compare/select), any elementwise ops
    E = exp(S - max(S))          max and sum over the key dims
    P = E / sum(E)
    O = epilogue(P·V)            elementwise ops on the result

The kernel never forms S or P in memory: one program per block of queries (and per batch
index) walks the key blocks once, keeping the running maximum m, the running sum l and the
unnormalized output acc, rescaled by exp(m_old - m_new) when the maximum grows (online
softmax); O = acc / l at the end, since dividing every row of P by its sum and then
multiplying by V is the same as dividing the product. Score epilogue values are computed on
the score tile where they are used (`emitter.py`), so a mask built with iota and compare
costs a few integer ops per element.

Key blocks that the mask removes entirely are skipped. The mask's input-free part is
evaluated when the kernel is generated; entries that are -inf, or an additive constant of
-1e8 or less, contribute exp(...) == 0 exactly whenever the scores themselves are far below
1e8 in magnitude (the assumption every additive-mask model already makes). When the live
keys of every query block end at `(q_block + 1) * TILE_Q + offset` (causal, with any
offset), the key loop stops there: half the work for a square causal attention.
"""

from __future__ import annotations

import math

import numpy as np

from xchip.ir.kernel_graph import KernelGroup

from .emitter import Emitter, Tile, place, split
from .expr import TL
from .kernels import KernelSource, dot_dims, dot_precision, kernel_source

DEAD = -1e8          # an additive mask entry at or below this removes the key


def _reduction_body(op) -> str:
    return next((o.name for r in op.regions for o in r.ops if o.name != "return"), "")


class _Softmax:
    """The values of `E = exp(S - max S); P = E / sum E` inside an attention group."""

    def __init__(self, group: KernelGroup, em: Emitter, target):
        self.em = em
        dots = [op for op in group.ops if op.name == "dot_general"]
        if len(dots) != 2:
            raise em.fail(group.anchor or group.ops[0], f"an attention with {len(dots)} matmuls (expected 2)")
        self.qk, self.pv = dots
        fail = lambda op, what: em.fail(op, f"an attention whose softmax is not exp(s - max s) / sum: {what}")  # noqa: E731
        p_side = [i for i, v in enumerate(self.pv.operands) if self._op(v, "divide")]
        if len(p_side) != 1:
            raise fail(self.pv, "neither operand of the second matmul is the normalized probabilities")
        self.p_index = p_side[0]
        divide = self._op(self.pv.operands[self.p_index], "divide")
        self.E = divide.operands[0]
        # bf16 models sum in f32 and round the sum back: converts on the way are allowed (the
        # kernel keeps the sum in f32 throughout)
        self.sum = self._op(self._through_shapes(divide.operands[1], "convert"), "reduce")
        if self.sum is None or self._through_shapes(self.sum.operands[0], "convert") is not self.E \
                or _reduction_body(self.sum) != "add":
            raise fail(divide, "the divisor is not the sum of the numerator")
        exp = self._op(self.E, "exponential")
        sub = self._op(exp.operands[0], "subtract") if exp else None
        if sub is None:
            raise fail(divide, "the numerator is not exp(s - m)")
        self.S = sub.operands[0]
        m = self._through_shapes(sub.operands[1])
        self.floor = None           # jax.nn.softmax's max(max(s), -inf): a constant the maximum starts from
        if (floor := self._op(m, "maximum")) is not None:
            consts = [v for v in floor.operands if self._op(v, "constant") is not None]
            m = next((v for v in floor.operands if self._op(v, "reduce") is not None), None)
            self.floor = consts[0] if len(consts) == 1 and m is not None else None
        self.max = self._op(m, "reduce")
        if self.max is None or self.max.operands[0] is not self.S or _reduction_body(self.max) != "maximum":
            raise fail(sub, "m is not the maximum of s")
        reduces = [op for op in group.ops if op.name == "reduce"]
        if set(map(id, reduces)) != {id(self.max), id(self.sum)}:
            raise fail(reduces[0], "other reductions in the group")
        lb, lf, lc, rb, rf, rc = dot_dims(self.qk)
        nb, nq = len(lb), len(lf)
        self.key_dims = tuple(range(nb + nq, nb + nq + len(rf)))
        for r in (self.max, self.sum):
            if tuple(r.attrs["dimensions"]) != self.key_dims:
                raise fail(r, "the reduction is not over the key dims (the free dims of the first matmul's rhs)")
        pdims = dot_dims(self.pv)
        p_batch, p_contract = (pdims[0], pdims[2]) if self.p_index == 0 else (pdims[3], pdims[5])
        if tuple(p_batch) != tuple(range(nb)) or tuple(p_contract) != self.key_dims:
            raise fail(self.pv, "the second matmul does not contract the probabilities over the keys")

    def _op(self, value, name: str):
        op = self.em.producer.get(id(value))
        return op if op is not None and op.name == name else None

    def _through_shapes(self, value, *also: str):
        names = ("broadcast_in_dim", "reshape") + also
        while (op := self.em.producer.get(id(value))) is not None and op.name in names:
            value = op.operands[0]
        return value


def generate_attention(group: KernelGroup, config: dict, target: str | None) -> KernelSource:
    em = Emitter(group, target)
    sm = _Softmax(group, em, target)
    qk, pv = sm.qk, sm.pv
    q, k = qk.operands
    lb, lf, lc, rb, rf, rc = dot_dims(qk)
    qsh, ksh = list(q.type.shape), list(k.type.shape)
    v = pv.operands[1 - sm.p_index]
    vb, vf, vc = dot_dims(pv)[:3] if sm.p_index == 1 else dot_dims(pv)[3:]
    vsh = list(v.type.shape)
    B = math.prod(qsh[d] for d in lb)
    Sq, Sk = math.prod(qsh[d] for d in lf), math.prod(ksh[d] for d in rf)
    D, Dv = math.prod(qsh[d] for d in lc), math.prod(vsh[d] for d in vf)
    if q.type.dtype != k.type.dtype:
        raise em.fail(qk, f"operands of different dtypes ({q.type.dtype.name}, {k.type.dtype.name})")

    default = default_config(group)
    consts = {"TILE_Q": _tile(config.get("tile_q"), default["tile_q"], Sq),
              "TILE_K": _tile(config.get("tile_k"), default["tile_k"], Sk),
              "BLOCK_D": _pow2(D), "BLOCK_DV": _pow2(Dv)}
    batch = split("pid_b", [qsh[d] for d in lb])
    rows = split("rq", [qsh[d] for d in lf], "[:, None]", frozenset({"qm[:, None]"}))
    keys = split("rk", [ksh[d] for d in rf], "[None, :]", frozenset({"km[None, :]"}))
    keys_t = split("rk", [ksh[d] for d in rf], "[:, None]", frozenset({"km[:, None]"}))
    head = split("rd", [qsh[d] for d in lc], "[None, :]", frozenset({"dm[None, :]"}))
    head_t = split("rd", [qsh[d] for d in lc], "[:, None]", frozenset({"dm[:, None]"}))
    vcols = split("rv", [vsh[d] for d in vf], "[None, :]", frozenset({"vm[None, :]"}))
    score_index = batch + rows + keys
    precision = dot_precision(q.type.dtype)

    em.lines += [
        "pid_q = tl.program_id(0)", "pid_b = tl.program_id(1)",
        "rq = pid_q * TILE_Q + tl.arange(0, TILE_Q)", f"qm = rq < {Sq}",
        "rd = tl.arange(0, BLOCK_D)", f"dm = rd < {D}",
        "rv = tl.arange(0, BLOCK_DV)", f"vm = rv < {Dv}",
    ]
    q_tile = em.operand(q, place(len(qsh), (lb, batch), (lf, rows), (lc, head)), "(TILE_Q, BLOCK_D)")
    init_max = em.render(sm.max.operands[1], [])
    if sm.floor is not None:
        floor = em.render(sm.floor, [])
        init_max = Tile(em.fresh(f"tl.maximum({init_max.name}, {floor.name}, propagate_nan=tl.PropagateNan.ALL)"),
                        init_max.dtype)
    init_sum = em.render(sm.sum.operands[1], [])
    em.lines += [
        f"m_i = tl.zeros([TILE_Q], dtype=tl.float32) + {init_max.name}.to(tl.float32)",
        f"l_i = tl.zeros([TILE_Q], dtype=tl.float32) + {init_sum.name}.to(tl.float32)",
        "acc = tl.zeros([TILE_Q, BLOCK_DV], dtype=tl.float32)",
        f"hi = {_key_limit(sm, em, consts['TILE_Q'], Sq, Sk)}",
    ]
    with em.block("for k0 in range(0, hi, TILE_K):"):
        em.lines += ["rk = k0 + tl.arange(0, TILE_K)", f"km = rk < {Sk}"]
        k_tile = em.operand(k, place(len(ksh), (rb, batch), (rc, head_t), (rf, keys)), "(BLOCK_D, TILE_K)")
        qk_t = qk.results[0].type
        s_dot = em.fresh(f"tl.dot({q_tile}, {k_tile}{precision})", "qk")
        if qk_t.dtype.name != "f32":
            s_dot = em.fresh(f"{s_dot}.to({TL[qk_t.dtype.name]})", "qk")
        em.bind(qk.results[0], Tile(s_dot, qk_t.dtype), score_index)
        s = em.render(sm.S, score_index)
        s32 = em.fresh(f"tl.where(km[None, :], {s.name}.to(tl.float32), -float('inf'))", "s")
        # exp(s - m) in f32, as flash attention keeps it: the model's own rounding of (s - m)
        # and of exp to bf16 would be done against a running maximum, not the final one
        em.lines += [f"m_new = tl.maximum(m_i, tl.reduce({s32}, 1, _max_nan), propagate_nan=tl.PropagateNan.ALL)",
                     "alpha = tl.exp(m_i - m_new)"]
        e32 = em.fresh(f"tl.exp({s32} - m_new[:, None])", "e")
        v_tile = em.operand(v, place(len(vsh), (vb, batch), (vc, keys_t), (vf, vcols)), "(TILE_K, BLOCK_DV)")
        p_type = TL[v.type.dtype.name]
        em.lines += ["l_i = l_i * alpha + tl.sum(" + e32 + ", 1)",
                     f"acc = acc * alpha[:, None] + tl.dot({e32}.to({p_type}), {v_tile}{dot_precision(v.type.dtype)})",
                     "m_i = m_new"]
    out_t = pv.results[0].type
    o = "acc / l_i[:, None]" if out_t.dtype.name == "f32" else f"(acc / l_i[:, None]).to({TL[out_t.dtype.name]})"
    # the second matmul's result dims: batch, then the lhs's free dims, then the rhs's
    out_index = batch + (vcols + rows if sm.p_index == 1 else rows + vcols)
    em.bind(pv.results[0], Tile(em.fresh(o, "o"), out_t.dtype), out_index)
    for n, value in enumerate(group.outputs):
        if value.type.size != out_t.size:
            raise em.fail(group.ops[-1], "an attention output of another size than its result")
        em.store(f"out{n}", value, out_index, list(out_t.shape), tile="(TILE_Q, BLOCK_DV)")
    grid = (-(-Sq // consts["TILE_Q"]), B)
    return kernel_source(group, "attention", em, consts, grid)


def _pow2(n: int) -> int:
    return max(16, 1 << max(0, (n - 1).bit_length()))


def default_config(group: KernelGroup) -> dict:
    """Tiles and warps that compile without spilling for head dims up to 64 (ptxas, sm_80 and
    sm_90): bf16/f16 products run on tensor cores, 64x64 tiles in 4 warps (120-170
    registers); f32 products as the reference computes them (no TF32) are FMA loops that
    hold more per thread, 32x32 tiles in 8 warps (~206 registers; 64x64 in 4 warps spills
    14 KB)."""
    dot = next(op for op in group.ops if op.name == "dot_general")
    if dot.operands[0].type.dtype.name in ("bf16", "f16"):
        return {"tile_q": 64, "tile_k": 64, "num_warps": 4}
    return {"tile_q": 32, "tile_k": 32, "num_warps": 8}


def _tile(asked, default: int, extent: int) -> int:
    """The asked tile, or the default cut down to the extent (a power of two >= 16, tl.dot's least)."""
    if asked:
        return int(asked)
    return max(16, min(default, 1 << max(0, (extent - 1).bit_length())))


def _key_limit(sm: _Softmax, em: Emitter, tq: int, Sq: int, Sk: int) -> str:
    """The key loop's end: `Sk`, or a causal bound `(pid_q + 1) * TILE_Q + offset` when the
    mask removes every key past it for every query block."""
    dead = _dead_keys(sm, em, Sq, Sk)
    if dead is None:
        return str(Sk)
    live = ~dead
    if not live.any(axis=1).all():
        return str(Sk)        # a row with no live key: its softmax needs the dead keys too
    ends = [int(np.nonzero(live[i:i + tq].any(axis=0))[0].max()) + 1 for i in range(0, Sq, tq)]
    offset = max(end - (i + 1) * tq for i, end in enumerate(ends))
    if all(min(Sk, (i + 1) * tq + offset) >= Sk for i in range(len(ends))):
        return str(Sk)        # nothing to skip
    return f"tl.minimum({Sk}, (pid_q + 1) * TILE_Q + {offset})"


def _dead_keys(sm: _Softmax, em: Emitter, Sq: int, Sk: int) -> np.ndarray | None:
    """[Sq, Sk] booleans: the mask removes this key for this query whatever the inputs, or
    None when the score epilogue has no input-free mask over one query and one key dim."""
    s_op = em.producer.get(id(sm.S))
    if s_op is None or s_op.name not in ("add", "select"):
        return None
    free = _input_free(em.group)
    if s_op.name == "add":
        masks = [v for v in s_op.operands if id(v) in free]
        if len(masks) != 1:
            return None
        table = _on_scores(masks[0], sm, em, Sq, Sk)
        return None if table is None else table <= DEAD
    cond, _, other = s_op.operands
    if id(cond) not in free or id(other) not in free:
        return None
    c, o = _on_scores(cond, sm, em, Sq, Sk), _on_scores(other, sm, em, Sq, Sk)
    return None if c is None or o is None else ~c.astype(bool) & (o <= DEAD)


def _input_free(group: KernelGroup) -> set[int]:
    """ids of the values computed from constants and iotas alone."""
    free: set[int] = set()
    for op in group.ops:
        if op.name not in ("dot_general", "reduce") and all(id(v) in free for v in op.operands):
            free.update(id(r) for r in op.results)
    return free


def _on_scores(value, sm: _Softmax, em: Emitter, Sq: int, Sk: int) -> np.ndarray | None:
    """An input-free value of the scores' shape as a [Sq, Sk] array, evaluated before its
    broadcast over batch and heads, or None when it varies along a batch dim or the queries
    or keys span several dims."""
    from xchip.runtime import reference
    lb, lf, _, _, rf, _ = dot_dims(sm.qk)
    if len(lf) != 1 or len(rf) != 1:
        return None
    q_dim, k_dim = len(lb), len(lb) + 1
    src, dims = value, list(range(len(value.type.shape)))
    op = em.producer.get(id(src))
    if op is not None and op.name == "constant":
        splat = np.asarray(op.attrs["value"]).ravel()
        if splat.size and (splat == splat[0]).all():
            return np.full((Sq, Sk), splat[0])
    if op is not None and op.name == "broadcast_in_dim":
        src, dims = op.operands[0], list(op.attrs["broadcast_dimensions"])
    shape = tuple(src.type.shape)
    if any(d not in (q_dim, k_dim) and n != 1 for d, n in zip(dims, shape)):
        return None
    array = np.asarray(reference.evaluate_ops(_producers(src, em), {})[src])
    kept = [i for i, d in enumerate(dims) if d in (q_dim, k_dim) and shape[i] != 1]
    table = array.reshape([shape[i] for i in kept])
    if [dims[i] for i in kept] == [k_dim, q_dim]:
        table = table.T
    elif [dims[i] for i in kept] == [k_dim]:
        table = table[None, :]
    elif [dims[i] for i in kept] == [q_dim]:
        table = table[:, None]
    return np.broadcast_to(table, (Sq, Sk))


def _producers(value, em: Emitter) -> list:
    """The ops `value` is computed by, in program order."""
    seen: dict[int, object] = {}
    stack = [value]
    while stack:
        op = em.producer.get(id(stack.pop()))
        if op is not None and id(op) not in seen:
            seen[id(op)] = op
            stack += list(op.operands)
    return [op for op in em.group.ops if id(op) in seen]


__all__ = ["generate_attention"]
