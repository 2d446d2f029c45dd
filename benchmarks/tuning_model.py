"""How good the CPU matmul cost model and the autotuner's search are, on measured data.

    python -m benchmarks.tuning_model                      # 3 GEMM shapes, ~15 min on 2 cores
    python -m benchmarks.tuning_model --shapes 512x512x512 --sample 40 --json out.json

Per GEMM shape (f32, M x N x K):

1. **sample**: `--sample` configs drawn uniformly from the full legal space of the matmul
   schedule (plus the default) are built and timed; the cost model
   (`backends/cpu/matmul_model.py`) predicts each. Printed: Spearman rank correlation
   between modeled and measured times, and the median absolute percentage error.
2. **sub-space**: every config of a sub-space is measured (the register tile over all its
   legal values, row block mc over four values, K blocking on or off, both parallel splits;
   packing and k-unroll fixed at the default's). The full space (15-40 thousand legal
   configs per shape) is far too large to measure exhaustively here: at ~0.5 s per
   candidate it would take days. Then the tuner's search (`autotune.search`, with the
   tuner's start configs) is replayed over those measurements, as the tuner would run it,
   for several seeds: trials until it has measured a config within 5% of the sub-space's
   best, with the cost model's ranking and without it (knob order), and with the model's
   ranking but without the start configs (the default and its neighbours), which shows
   what the model and the evolutionary search find on their own.

Candidates are built and timed in this process with the same code the tuner's worker runs
(`autotune.measure.run_candidate`: checked against the reference executor, inputs rotated
past L2, median of repeats). Measurements go to a tuning database (`--db`, default
`$XCHIP_CACHE_DIR/tuning-benchmark.db`), so an interrupted run resumes and a rerun with
the same database only replays. These machines are shared: a config's median can be off by
10-30% when another job runs, which bounds how well any model can correlate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

# as in the tuner's workers (autotune.measure.worker_env): the reference's BLAS on one thread,
# so that no spinning BLAS pool shares the cores with the candidate being timed
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

DEFAULT_SHAPES = ("512x512x512", "128x2048x512", "64x512x2048")     # M x N x K
TOLERANCE = 0.05


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties get their mean rank)."""
    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):
            m = x == v
            r[m] = r[m].mean()
        return r
    if len(a) < 3:
        return float("nan")
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def median_ape(predicted, measured) -> float:
    return float(statistics.median(abs(p - m) / m for p, m in zip(predicted, measured)))


class Gemm:
    """One f32 GEMM's matmul group, its tunable space and a measuring function backed by the
    benchmark's database."""

    def __init__(self, shape: str, db, level: str = "O2"):
        import xchip
        from xchip.autotune.tune import host_identity, kernel_key
        from xchip.backends.cpu.tuning import tunable
        from xchip.ir.printer import print_graph
        from xchip.targets import get

        self.name = shape
        self.M, self.N, self.K = (int(x) for x in shape.split("x"))
        lowered = xchip.jit(lambda a, b: a @ b).lower(np.ones((self.M, self.K), np.float32),
                                                      np.ones((self.K, self.N), np.float32))
        self.group = next(g for g in lowered.kernel_graph.groups if g.kind == "matmul")
        self.tunable = tunable(self.group, get("cpu"))
        self.text = print_graph(lowered.graph)
        self.level = level
        self.db = db
        self.key = kernel_key(self.group)
        self.sku, self.versions = host_identity()

    def measured(self) -> dict[str, float | None]:
        """config key -> median seconds (None: failed) of everything measured so far."""
        return {r.config_key: (r.stats.median_s if r.stats else None)
                for r in self.db.records(self.key, self.sku, self.versions, source="measured")}

    def measure(self, configs: list[dict], log) -> dict[str, float | None]:
        from xchip.autotune.db import Stats
        from xchip.autotune.measure import run_candidate
        from xchip.knobs import config_key
        done = self.measured()
        todo = [c for c in configs if config_key(c) not in done]
        start = time.monotonic()
        for i, config in enumerate(todo):
            r = run_candidate(self.text, self.group.name, config, self.level, 20, 0.05, i)
            stats = Stats(**r["stats"]) if r.get("stats") else None
            self.db.record(self.key, self.sku, self.versions, config, stats, "measured",
                           "ok" if r["status"] == "ok" else r["status"] if r["status"] == "wrong" else "failed",
                           r.get("reason", ""))
            if (i + 1) % 25 == 0 or i + 1 == len(todo):
                log(f"  {self.name}: measured {i + 1}/{len(todo)} new configs ({time.monotonic() - start:.0f} s)")
        return self.measured()


def subspace(t) -> "SearchSpace":
    """The sub-space measured exhaustively: all register tiles, four row-block sizes (the
    default's among them), K blocking off or at 256 (or the default's), both parallel
    splits; packing and unroll as the default has them."""
    from xchip.knobs import Knob, SearchSpace
    default = t.starts[0]
    by_name = {k.name: k for k in t.space.knobs}
    mcs = sorted({default["mc"]} | {v for v in (24, 48, 96) if v in by_name["mc"].values})
    kcs = sorted({0, default["kc"]} | ({256} & set(by_name["kc"].values)))
    pinned = {"mc": tuple(mcs), "kc": tuple(kcs), "pack_a": (default["pack_a"],),
              "pack_b": (default["pack_b"],), "unroll_k": (default["unroll_k"],)}
    knobs = tuple(Knob(k.name, pinned.get(k.name, k.values), k.doc) for k in t.space.knobs)
    return SearchSpace(t.space.kind, knobs, t.space.constraints)


def trials_to_within(space, times: dict, starts, rank, seed: int, tolerance: float = TOLERANCE) -> int | None:
    """Trials the tuner's search takes to measure a config within `tolerance` of the best
    in `times` (config key -> seconds), replaying the measurements."""
    from xchip.autotune.search import Budget, search
    from xchip.knobs import config_key
    best = min(v for v in times.values() if v is not None)
    found = search(space, lambda c: times.get(config_key(c)), budget=Budget(trials=len(times) - 1, patience=None),
                   rank=rank, start=starts, rng=random.Random(seed))
    for i, trial in enumerate(found.trials, 1):
        if trial.seconds is not None and trial.seconds <= best * (1 + tolerance):
            return i
    return None


def run(shapes, sample: int, seeds: int, db_path, log) -> dict:
    from xchip.autotune.db import TuningDB
    from xchip.knobs import config_key
    db = TuningDB(db_path, durable=False)
    out = {"shapes": {}, "pairs": []}
    for shape in shapes:
        g = Gemm(shape, db)
        t = g.tunable
        rng = random.Random(shape)
        legal = list(t.space)
        sampled = [t.starts[0]] + rng.sample(legal, min(sample, len(legal)))
        sub = subspace(t)
        sub_configs = list(sub)
        log(f"{shape}: legal space {len(legal)} configs; sample {len(sampled)}; sub-space {len(sub_configs)}")
        times = g.measure(sampled + sub_configs, log)
        pairs = [(c, times[config_key(c)], t.predict(c)) for c in sampled if times.get(config_key(c))]
        meas, pred = [p[1] for p in pairs], [p[2] for p in pairs]
        sub_times = {config_key(c): times.get(config_key(c)) for c in sub_configs}
        sub_ok = {k: v for k, v in sub_times.items() if v is not None}
        sub_pred = [t.predict(c) for c in sub_configs if sub_times[config_key(c)] is not None]
        best_key = min(sub_ok, key=sub_ok.get)
        starts = [c for c in t.starts if sub.is_legal(c)]
        ranked = [trials_to_within(sub, sub_times, starts, t.rank, s) for s in range(seeds)]
        plain = [trials_to_within(sub, sub_times, starts, None, s) for s in range(seeds)]
        model_only = [trials_to_within(sub, sub_times, [], t.rank, s) for s in range(seeds)]
        default_s = times.get(config_key(t.starts[0]))
        out["shapes"][shape] = {
            "legal_space": len(legal), "sample": len(pairs),
            "spearman_sample": spearman(meas, pred), "mape_sample": median_ape(pred, meas),
            "subspace": len(sub_configs), "subspace_measured": len(sub_ok),
            "spearman_subspace": spearman(list(sub_ok.values()), sub_pred),
            "mape_subspace": median_ape(sub_pred, list(sub_ok.values())),
            "default_s": default_s, "best_s": sub_ok[best_key], "best_config": json.loads(best_key),
            "trials_ranked": ranked, "trials_unranked": plain, "trials_model_only": model_only,
        }
        out["pairs"] += [{"shape": shape, "config": c, "measured_s": m, "modeled_s": p} for c, m, p in pairs]
    allm = [p["measured_s"] for p in out["pairs"]]
    allp = [p["modeled_s"] for p in out["pairs"]]
    out["spearman_all"] = spearman(allm, allp)
    out["mape_all"] = median_ape(allp, allm)
    return out


def _trials(xs: list, space: int) -> str:
    got = [x for x in xs if x is not None]
    if not got:
        return "never"
    med = statistics.median(got)
    miss = f", {len(xs) - len(got)} never" if len(got) < len(xs) else ""
    return f"{med:.0f} median / {max(got)} max ({100 * med / space:.1f}% / {100 * max(got) / space:.1f}%){miss}"


def format_report(out: dict) -> list[str]:
    lines = ["shape           legal  pairs  rho(sample)  MAPE   sub-space  rho(sub)  default ms  best ms"]
    for name, s in out["shapes"].items():
        lines.append(f"{name:14s} {s['legal_space']:6d} {s['sample']:6d} {s['spearman_sample']:11.3f} "
                     f"{100 * s['mape_sample']:5.0f}% {s['subspace']:10d} {s['spearman_subspace']:9.3f} "
                     f"{1e3 * (s['default_s'] or float('nan')):11.3f} {1e3 * s['best_s']:8.3f}")
    lines.append(f"all sampled pairs: {len(out['pairs'])}, Spearman rho {out['spearman_all']:.3f}, "
                 f"median abs. % error {100 * out['mape_all']:.0f}%")
    lines.append(f"trials to within {TOLERANCE:.0%} of the sub-space's measured best (search replayed, per seed):")
    for name, s in out["shapes"].items():
        lines.append(f"  {name:14s} ranked by the model: {_trials(s['trials_ranked'], s['subspace'])}; "
                     f"knob order: {_trials(s['trials_unranked'], s['subspace'])}")
        lines.append(f"  {'':14s} ranked by the model, without the start configs: "
                     f"{_trials(s['trials_model_only'], s['subspace'])}")
        lines.append(f"  {'':14s} best {s['best_config']}")
    return lines


def main(argv=None) -> int:
    from xchip.targets.host import cache_dir
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default=",".join(DEFAULT_SHAPES), help="comma-separated MxNxK")
    p.add_argument("--sample", type=int, default=40, help="configs drawn from the full space per shape")
    p.add_argument("--seeds", type=int, default=10, help="replays of the search per shape")
    p.add_argument("--db", default=None, help="tuning database for the measurements")
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args(argv)
    db = a.db or cache_dir() / "tuning-benchmark.db"

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
    out = run([s for s in a.shapes.split(",") if s], a.sample, a.seeds, db, log)
    print("\n".join(format_report(out)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
