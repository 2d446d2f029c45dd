"""What the autotuner may vary for one kernel group on the CPU: its search space, for the
group's own shape (a matmul's tile sizes depend on M, N, K), the configs to measure first,
the cost model that ranks the rest, and the key it is tuned under.

    t = tunable(group, target)   # None: nothing to tune (loops, dynamic slices, copies)
    t.space, t.starts, t.predict(config) -> modeled seconds (None: no model for this kind)
    signature(group)             # stable across programs and processes
"""

from __future__ import annotations

import hashlib
import re

from dataclasses import dataclass
from typing import Callable

from xchip.ir.kernel_graph import KernelGroup
from xchip.ir.printer import print_op
from xchip.knobs import SearchSpace


@dataclass
class Tunable:
    space: SearchSpace
    starts: list[dict]                                # the default first, then its neighbours
    predict: Callable[[dict], float] | None = None    # modeled seconds of a config

    def rank(self, configs: list[dict]) -> list[float]:
        """Modeled times, for `search(rank=...)`."""
        return [self.predict(c) for c in configs]


def tunable(group: KernelGroup, target) -> Tunable | None:
    """The group's knobs, and the configs a search should measure first: the heuristic
    default (what runs untuned), then structurally different neighbours of it that local
    mutation reaches slowly (for a matmul: K blocking and the other parallel split). Matmuls
    come with their cost model (`matmul_model`); other kinds have none (their knobs are few:
    the space is searched exhaustively)."""
    from . import loops, schedules, te_dynamic
    from .lower import lower_group
    if group.kind == "opaque" or loops.lowers(group) or te_dynamic.lowers(group):
        return None
    lowered = lower_group(group)
    if group.kind != "matmul":
        space = schedules.search_space(group.kind)
        default = schedules.default_config(lowered, target)
        return Tunable(space, [{k.name: default[k.name] for k in space.knobs if k.name in default}])
    from tvm import s_tir

    from .matmul_model import machine, predict_on
    from .matmul_schedule import _analyze, default_matmul_config, matmul_space
    shape = _analyze(s_tir.Schedule(lowered.func), lowered.matmul)
    M, N, K, batch = shape.sizes
    space = matmul_space(M, N, K, batch, shape.acc, target)
    default = default_matmul_config(M, N, K, batch, shape.acc, target)
    other = "m" if default["parallel"] == "n" else "n"
    variants = [dict(default, parallel=other)] + [dict(default, kc=kc, parallel=p) for kc in (256, 512)
                                                  for p in (default["parallel"], other)]
    m = machine(shape.acc, target)
    anchor = group.anchor if group.anchor is not None and group.anchor.operands else None
    operand = anchor.operands[0].type.dtype.name if anchor is not None else shape.acc
    return Tunable(space, [default] + [v for v in variants if space.is_legal(v)],
                   lambda c: predict_on(m, M, N, K, batch, operand, c))


_LOC = re.compile(r' loc\(.*\)$', re.M)


def signature(group: KernelGroup) -> str:
    """A hash of what the group computes: its ops (names, attributes, types, regions; not
    source locations) over its inputs' types, in order. Two programs with the same kernel
    share tunings."""
    numbering = {v: f"in{k}" for k, v in enumerate(group.inputs)}
    lines = [f"{group.kind} " + ",".join(str(v.type) for v in group.inputs)]
    for op in group.ops:
        for k, r in enumerate(op.results):
            numbering.setdefault(r, f"v{len(numbering)}_{k}")
        operands = ",".join(numbering.get(v, "?") for v in op.operands)
        lines.append(f"{operands} -> {_LOC.sub('', print_op(op))}")
    lines.append("out " + ",".join(numbering.get(v, "?") for v in group.outputs))
    text = "\n".join(lines)
    text = re.sub(r"%\d+", "%", text)       # value numbers of the whole program
    return hashlib.sha256(text.encode()).hexdigest()[:24]
