"""Tuning for targets that are not here (h800, h20, ascend910b, ...): by the cost model
alone. Nothing is measured; results are stored with source `modeled`, under the target's
name and the cost model's version, and never compete with measured ones (`TuningDB.best`
reads one source at a time).

    results = tune_modeled(lowered, "h800", db=TuningDB())

Every legal tile config of each matmul and convolution group (`backends/tile_knobs.py`) is
estimated (`xchip.targets.cost_model.estimate_kernel`; a few thousand configs per group, well
under a second); the `KEEP` fastest are stored. Where the target's descriptor lacks what the
model needs to tell configs apart (an unknown peak, bandwidth or on-chip size), nothing is
stored and the result says which fields are missing. Other kinds of groups have no tile
knobs the model distinguishes.
"""

from __future__ import annotations

from typing import Callable

from xchip.knobs import config_key

from .db import Stats, TuningDB
from .search import SearchResult, Trial
from .tune import GroupResult, kernel_key

KEEP = 8
MODEL_VERSIONS = "xchip cost model 1"   # bump when the model changes what it prefers


def tune_modeled(lowered, target: str, *, db: TuningDB, groups: list[str] | None = None,
                 progress: Callable[[str, SearchResult], None] | None = None) -> list[GroupResult]:
    """Tune the matmul/convolution groups of `lowered` (an `xchip.jit(..., target=target)
    .lower(...)`) for `target` by the cost model; returns one result per group."""
    from xchip.backends.tile_knobs import default_tile, preferred, tile_space
    from xchip.targets import get
    from xchip.targets.cost_model import estimate_kernel

    t = get(target)
    results = []
    for group in lowered.kernel_graph.groups:
        if groups is not None and group.name not in groups:
            continue
        space = tile_space(group, t, modeled=True)
        if space is None:
            results.append(GroupResult(group.name, None, None, None, source="modeled", note="no tile knobs"))
            continue
        found = SearchResult("modeled (exhaustive)")
        missing: set[str] = set()
        for config in space:
            e = estimate_kernel(group, t, config)
            missing.update(e.missing)
            found.trials.append(Trial(config, e.time_s))
        found.stopped = "space exhausted"
        if progress:
            progress(group.name, found)
        default = default_tile(space)
        default_s = next((tr.seconds for tr in found.trials if default is not None
                          and config_key(tr.config) == config_key(default)), None)
        times = {tr.seconds for tr in found.trials if tr.seconds is not None}
        if len(times) < 2:
            why = (f"{t.name}: the cost model cannot tell these configs apart"
                   + (f" ({', '.join(sorted(missing))} unknown)" if missing else ""))
            results.append(GroupResult(group.name, default_s, None, found, source="modeled", note=why))
            continue
        key = kernel_key(group)
        ranked = sorted((tr for tr in found.trials if tr.seconds is not None), key=lambda tr: tr.seconds)
        # the one the backend compiles with (ties broken as it breaks them) is stored first
        # and, stored with its own time, wins `db.best` over any tie
        top = preferred([(tr.config, tr.seconds) for tr in ranked])
        ranked = [next(tr for tr in ranked if tr.config == top[0])] + [tr for tr in ranked if tr.config != top[0]]
        for tr in ranked[:KEEP]:
            db.record(key, t.name, MODEL_VERSIONS, tr.config, Stats(tr.seconds, tr.seconds, 0), "modeled")
        note = f"time a lower bound: {', '.join(sorted(missing))} unknown" if missing else ""
        results.append(GroupResult(group.name, default_s, db.best(key, t.name, MODEL_VERSIONS, source="modeled"),
                                   found, source="modeled", note=note))
    return results


def modeled_configs(kernel_graph, target: str, db: TuningDB | None = None) -> dict[str, dict]:
    """The best modeled config of each group the database (default: the user's, if it
    exists) knows for `target`; what `Compiled.estimate` models the kernels with."""
    import warnings

    from xchip.errors import XchipError
    from xchip.targets import get

    from .db import default_path
    target = get(target).name
    try:
        if db is None:
            if not default_path().exists():
                return {}
            db = TuningDB(create=False)
        out = {}
        for group in kernel_graph.groups:
            best = db.best(kernel_key(group), target, MODEL_VERSIONS, source="modeled")
            if best is not None:
                out[group.name] = best.config
        return out
    except XchipError as e:
        warnings.warn(f"tuning database not used: {e}; estimating with ideal tiling", stacklevel=2)
        return {}
