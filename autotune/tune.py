"""Tuning kernel groups on the host and finding their tuned configs again.

    results = tune(lowered, db=TuningDB(), budget=Budget(trials=32))   # measure, record, search
    configs = tuned_configs(kernel_graph, db)                          # what compile uses

A group is tuned under its key: the group's structure hash, input shapes and dtypes
(`backends.cpu.tuning.signature`), the target SKU (`cpu:<llvm cpu name>`) and the backend's
toolchain (`tvm-llvm <tvm version>`), so a tuning found for one program serves every program
with the same kernel on the same machine and toolchain, and nothing else. Every candidate's
outcome (timings, or why it failed or was wrong) is recorded as it comes, so a killed tuning
run resumes where it stopped: configs already tried are not measured again, and count
towards the trial budget (run it again with the same budget and it finishes the search).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from xchip.knobs import config_key

from .db import KernelKey, Record, TuningDB
from .measure import measure
from .search import Budget, SearchResult, Trial, search


@dataclass
class GroupResult:
    name: str
    default_s: float | None          # median of the default (untuned) schedule; None if it failed
    best: Record | None              # the database's best measured config after the search
    search: SearchResult | None      # None: nothing to tune
    source: str = "measured"         # "modeled": times are the cost model's (autotune/modeled.py)
    note: str = ""                   # why nothing was tuned, or what the times lack

    @property
    def speedup(self) -> float | None:
        if self.best is None or self.default_s is None or self.best.stats is None:
            return None
        return self.default_s / self.best.stats.median_s


@functools.lru_cache(maxsize=None)
def host_identity() -> tuple[str, str]:
    """(target SKU, backend and toolchain + timing protocol) the host's tunings are stored
    under: results timed another way are not compared with these."""
    import tvm

    from xchip.backends.cpu.lower import host_mcpu

    from .measure import PROTOCOL
    return f"cpu:{host_mcpu()}", f"tvm-llvm {tvm.__version__}; timing protocol {PROTOCOL}"


def kernel_key(group) -> KernelKey:
    from xchip.backends.cpu.tuning import signature
    return KernelKey(signature(group), ";".join(str(list(v.type.shape)) for v in group.inputs),
                     ";".join(v.type.dtype.name for v in group.inputs))


def tune(lowered, *, db: TuningDB, budget: Budget = Budget(trials=32), level: str = "O2",
         timeout: float = 120.0, groups: list[str] | None = None,
         progress: Callable[[str, SearchResult], None] | None = None,
         time_untunable: bool = True, confirm: int = 2) -> list[GroupResult]:
    """Tune every kernel group of `lowered` (an `xchip.jit(...).lower(...)` for the CPU) that
    has knobs, or those named in `groups`. Groups without knobs are timed once with their
    only schedule (for the report) unless `time_untunable` is False.

    After the search, the default and the `confirm` best configs are measured once more,
    one after the other, and recorded (replacing their earlier times): on a shared machine
    one lucky or unlucky run would otherwise decide the best config and the speedup."""
    from xchip.backends.cpu.tuning import tunable
    from xchip.targets import get

    target = get("cpu")
    sku, versions = host_identity()
    results = []
    for group in lowered.kernel_graph.groups:
        if groups is not None and group.name not in groups:
            continue
        t = tunable(group, target)
        if t is None:
            if not time_untunable:
                continue
            default = measure(lowered.graph, group.name, None, level=level, timeout=timeout)
            results.append(GroupResult(group.name, default.stats.median_s if default.status == "ok" else None,
                                       None, None))
            continue
        key = kernel_key(group)

        def evaluate(config, group=group, key=key):
            m = measure(lowered.graph, group.name, config, level=level, timeout=timeout)
            status = "ok" if m.status == "ok" else ("wrong" if m.status == "wrong" else "failed")
            db.record(key, sku, versions, config, m.stats, "measured", status, m.reason)
            return m.stats.median_s if m.status == "ok" else None

        starts = t.starts
        history = [Trial(r.config, r.stats.median_s if r.status == "ok" and r.stats else None)
                   for r in db.records(key, sku, versions, source="measured")]
        found = search(t.space, evaluate, budget=budget, history=history,
                       start=starts, rank=t.rank if t.predict else None,
                       progress=(lambda r, name=group.name: progress(name, r)) if progress else None)
        default_s = _confirm(db, key, sku, versions, starts[0] if starts else None, evaluate, confirm)
        results.append(GroupResult(group.name, default_s, db.best(key, sku, versions), found))
    return results


def _confirm(db, key, sku, versions, default: dict | None, evaluate, n: int) -> float | None:
    """Measure the default and the `n` best configs again, back to back; the default's time."""
    if default is None:
        return None
    default_key = config_key(default)
    ranked = [r for r in db.records(key, sku, versions, source="measured", status="ok")
              if r.config_key != default_key][:n]
    if n and ranked:
        seconds = evaluate(default)
        for r in ranked:
            evaluate(r.config)
        return seconds
    return next((r.stats.median_s for r in db.records(key, sku, versions, source="measured", status="ok")
                 if r.config_key == default_key), None)


def tuned_configs(kernel_graph, db: TuningDB | None = None) -> dict[str, dict]:
    """The best measured config of each group the database knows on this host (group name ->
    config); empty when there is no database yet."""
    import warnings

    from xchip.errors import XchipError

    from .db import default_path
    try:
        if db is None:
            if not default_path().exists():
                return {}
            db = TuningDB(create=False)
        sku, versions = host_identity()
        out = {}
        for group in kernel_graph.groups:
            best = db.best(kernel_key(group), sku, versions)
            if best is not None:
                out[group.name] = best.config
        return out
    except XchipError as e:
        # a damaged or newer database must not stop a program from compiling
        warnings.warn(f"tuning database not used: {e}; compiling with default schedules", stacklevel=2)
        return {}
