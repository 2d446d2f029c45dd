"""The pass manager: named passes, pipelines per optimization level, statistics, dumps.

A pass is a function `run(graph, ctx) -> dict[str, int]` that rewrites `graph` in place
and returns statistics (how many ops it folded, fused, ...). Passes register themselves
with `@register("name")`. Fusion leaves its `KernelGraph` in `ctx.kernel_graph`, memory
planning its plan in `ctx.memory_plan`.

    result = optimize(graph, PassOptions(level="O2"))
    result.graph, result.kernel_graph, result.memory_plan, result.stats

`XCHIP_DUMP_IR=DIR` (or `PassOptions.dump_dir`) writes the IR after each pass as
`DIR/NN-name.xchip`; `print_after=("fuse",)` prints it to stdout.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from xchip.errors import XchipError
from xchip.ir import Graph, print_graph, verify
from xchip.ir.kernel_graph import KernelGraph
from xchip.targets.capabilities import HOST_REFERENCE, Capabilities

LEVELS = ("O0", "O1", "O2", "O3")

PassFn = Callable[[Graph, "PassContext"], dict]
PASSES: dict[str, PassFn] = {}


def register(name: str):
    def add(fn: PassFn) -> PassFn:
        if name in PASSES:
            raise ValueError(f"pass '{name}' registered twice")
        PASSES[name] = fn
        fn.pass_name = name
        return fn
    return add


@dataclass(frozen=True)
class PassOptions:
    level: str = "O2"
    fast_math: bool = False            # allow reassociation and other rounding changes
    precision: str | None = None       # e.g. "bf16": matmuls/convs in that dtype, f32 accumulation
    capabilities: Capabilities = HOST_REFERENCE
    debug: bool = False                # verify after every pass
    dump_dir: str | None = None        # default: $XCHIP_DUMP_IR
    print_after: tuple[str, ...] = ()
    fold_limit: int = 1 << 16          # constant folding produces at most this many elements

    def __post_init__(self):
        if self.level not in LEVELS:
            raise XchipError(f"unknown optimization level '{self.level}'; choose one of {', '.join(LEVELS)}")


@dataclass
class PassStat:
    name: str
    seconds: float
    ops_before: int
    ops_after: int
    stats: dict


@dataclass
class PassContext:
    options: PassOptions
    kernel_graph: KernelGraph | None = None
    memory_plan: object | None = None
    notes: list[str] = field(default_factory=list)   # what passes want the user to know


@dataclass
class PipelineResult:
    graph: Graph
    kernel_graph: KernelGraph
    memory_plan: object
    stats: list[PassStat]
    notes: list[str]

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stats)


def pipeline(options: PassOptions) -> list[str]:
    """The pass names the options run, in order."""
    if options.level == "O0":
        names = []
    else:
        names = ["inline", "canonicalize", "dce"]
        if options.level in ("O2", "O3"):
            names = ["inline", "fold-constants", "canonicalize", "simplify", "cse", "dce"]
        if options.level == "O3":
            names = names * 2  # a second round catches what the first one exposed
    if options.precision:
        names.append("precision")
    return names + ["fuse", "plan-memory"]


def _count_ops(graph: Graph) -> int:
    return sum(1 for _ in graph.walk())


def optimize(graph: Graph, options: PassOptions | None = None,
             passes: list[str] | None = None) -> PipelineResult:
    """Run `passes` (default: the pipeline for `options`) on `graph` in place."""
    from . import _all  # noqa: F401  (registers every pass)

    options = options or PassOptions()
    names = passes if passes is not None else pipeline(options)
    unknown = [n for n in names + list(options.print_after) if n not in PASSES]
    if unknown:
        raise XchipError(f"unknown pass(es) {', '.join(unknown)}; known: {', '.join(sorted(PASSES))}")
    dump_dir = options.dump_dir or os.environ.get("XCHIP_DUMP_IR")
    if dump_dir:
        Path(dump_dir).mkdir(parents=True, exist_ok=True)
        (Path(dump_dir) / "00-input.xchip").write_text(print_graph(graph))
    ctx = PassContext(options)
    stats = []
    for i, name in enumerate(names, start=1):
        before = _count_ops(graph)
        start = time.perf_counter()
        counters = PASSES[name](graph, ctx) or {}
        seconds = time.perf_counter() - start
        if options.debug:
            try:
                verify(graph)
            except XchipError as e:
                raise XchipError(f"pass '{name}' produced invalid IR: {e}") from e
        stats.append(PassStat(name, seconds, before, _count_ops(graph), dict(counters)))
        annotations = ctx.kernel_graph.annotations() if ctx.kernel_graph else None
        if dump_dir:
            (Path(dump_dir) / f"{i:02d}-{name}.xchip").write_text(print_graph(graph, annotations))
        if name in options.print_after:
            print(f"// IR after {name}\n{print_graph(graph, annotations)}", end="")
    verify(graph)
    return PipelineResult(graph, ctx.kernel_graph, ctx.memory_plan, stats, ctx.notes)


def format_stats(stats: list[PassStat]) -> str:
    rows = [("pass", "ms", "ops before", "ops after", "statistics")]
    for s in stats:
        counters = ", ".join(f"{k}={v}" for k, v in s.stats.items() if v) or "-"
        rows.append((s.name, f"{s.seconds * 1e3:.1f}", str(s.ops_before), str(s.ops_after), counters))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"total {sum(s.seconds for s in stats) * 1e3:.1f} ms")
    return "\n".join(lines)
