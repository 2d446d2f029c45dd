"""Search strategies over a backend's `SearchSpace`: which configs to measure, in what order,
and when to stop.

    result = search(space, evaluate, budget=Budget(trials=64, seconds=300), rank=cost_model_rank)
    result.best, result.best_time, result.trials
    search(space, evaluate, budget=..., history=result.trials)     # resume: continue up to the budget

`evaluate(config)` measures one legal config and returns its time in seconds, or None when
the candidate failed (crashed, timed out, wrong result): a failure costs a trial and the
search goes on. Illegal configs never reach it (the space's constraints prune them first).

- **exhaustive** when the legal space fits in the budget: every config once, in the
  ranked order when a `rank` is given (so an interrupted run has seen the likely-best first).
- **ranked + evolutionary** otherwise: the start configs and the `seed_count` configs the
  `rank` function (the cost model) puts first are measured, then generations of mutants (one or two knobs changed
  to a neighbouring value) and crossovers of the best measured so far, never measuring a
  config twice.
- stops at the budget (trials or seconds), when the space is exhausted, or early when the
  best has not improved by `min_gain` within `patience` trials.
- resumes: `history` (the trials of an earlier, interrupted run, e.g. from the tuning
  database) is never measured again, counts towards the trial budget, and its best configs
  are the first parents of the evolution.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from xchip.knobs import Config, SearchSpace, config_key


@dataclass(frozen=True)
class Budget:
    trials: int | None = 64
    seconds: float | None = None
    patience: int | None = 24          # trials without a `min_gain` improvement before stopping
    min_gain: float = 0.01


@dataclass
class Trial:
    config: dict
    seconds: float | None              # None: the candidate failed


@dataclass
class SearchResult:
    strategy: str                      # "exhaustive" | "evolutionary"
    trials: list[Trial] = field(default_factory=list)
    stopped: str = ""                  # why the search ended

    @property
    def best(self) -> dict | None:
        ok = [t for t in self.trials if t.seconds is not None]
        return min(ok, key=lambda t: t.seconds).config if ok else None

    @property
    def best_time(self) -> float | None:
        ok = [t.seconds for t in self.trials if t.seconds is not None]
        return min(ok) if ok else None


def search(space: SearchSpace, evaluate: Callable[[dict], float | None], *, budget: Budget = Budget(),
           rank: Callable[[list[dict]], list[float]] | None = None, history: Iterable[Trial] = (),
           start: Iterable[dict] = (),
           seed_count: int = 8, population: int = 8, rng: random.Random | None = None,
           progress: Callable[[SearchResult], None] | None = None) -> SearchResult:
    """Search `space` with `evaluate`. `rank` gives a predicted time per config (lower is
    better: the cost model); `history` holds earlier trials (a resumed search continues
    from them); `start` configs (the backend's heuristic default) are measured first, so the
    search never ends worse than the default; `progress` is called after every trial."""
    rng = rng or random.Random(0)
    legal = list(space)
    history = [Trial(dict(t.config), t.seconds) for t in history]
    done = {config_key(t.config) for t in history}
    if rank is not None and legal:
        scores = rank(legal)
        legal = [c for _, _, c in sorted(zip(scores, range(len(legal)), legal), key=lambda x: x[:2])]
    first = [dict(c) for c in start if space.is_legal(c)]
    firsts = {config_key(c) for c in first}
    legal = first + [c for c in legal if config_key(c) not in firsts]
    fits = budget.trials is None or len(legal) <= budget.trials
    result = SearchResult("exhaustive" if fits else "evolutionary", trials=history)
    run = _Run(result, evaluate, budget, done, progress)
    if fits:
        for config in legal:
            if not run.step(config):
                return result
        result.stopped = result.stopped or "space exhausted"
        return result
    # the start configs, then `seed_count` ranked ones: starts must not crowd out the
    # model's best guesses (they did: 512^3 took 24-35 trials to within 5%, 8 without starts)
    for config in legal[:len(first) + seed_count]:
        if not run.step(config):
            return result
    legal_keys = {config_key(c) for c in legal}
    ranked = iter(legal)             # when evolution finds nothing new: the next ranked configs

    def next_ranked(n: int) -> list[dict]:
        return [c for c in (next(ranked, None) for _ in range(4 * n)) if c is not None
                and config_key(c) not in done][:n]
    while True:
        parents = _best(result, population)
        fresh = []
        if parents:
            keys = set()
            for c in _offspring(space, parents, rng, 4 * population):
                k = config_key(c)
                if k in legal_keys and k not in done and k not in keys:
                    keys.add(k)
                    fresh.append(c)
        fresh = fresh[:population] or next_ranked(population)
        if not fresh:
            if len(done & legal_keys) >= len(legal_keys):
                result.stopped = "space exhausted"
                return result
            ranked = iter([c for c in legal if config_key(c) not in done])
            continue
        for config in fresh:
            if not run.step(config):
                return result


class _Run:
    def __init__(self, result, evaluate, budget, done, progress):
        self.result, self.evaluate, self.budget, self.done, self.progress = result, evaluate, budget, done, progress
        self.start = time.monotonic()
        self.best = result.best_time
        self.since_gain = 0

    def step(self, config: dict) -> bool:
        """Measure `config` unless done; False when the search must stop."""
        key = config_key(config)
        if key in self.done:
            return True
        b = self.budget
        if b.trials is not None and len(self.result.trials) >= b.trials:
            self.result.stopped = f"budget of {b.trials} trials"
            return False
        if b.seconds is not None and time.monotonic() - self.start >= b.seconds:
            self.result.stopped = f"budget of {b.seconds:g} s"
            return False
        self.done.add(key)
        seconds = self.evaluate(dict(config))
        self.result.trials.append(Trial(dict(config), seconds))
        if seconds is not None and (self.best is None or seconds < self.best * (1 - b.min_gain)):
            self.best, self.since_gain = seconds, 0
        else:
            self.since_gain += 1
        if self.progress:
            self.progress(self.result)
        if b.patience is not None and self.since_gain >= b.patience:
            self.result.stopped = f"no {b.min_gain:.0%} gain in {b.patience} trials"
            return False
        return True


def _best(result: SearchResult, n: int) -> list[dict]:
    ok = sorted((t for t in result.trials if t.seconds is not None), key=lambda t: t.seconds)
    return [t.config for t in ok[:n]]


def _offspring(space: SearchSpace, parents: list[dict], rng: random.Random, n: int) -> list[dict]:
    """Mutants (one or two knobs moved to a neighbouring candidate, or a random one) and
    crossovers of the parents, better parents more often."""
    knobs = space.knobs
    out = []
    for _ in range(n):
        a = parents[min(int(rng.expovariate(1.0)), len(parents) - 1)]
        child = dict(a)
        if len(parents) > 1 and rng.random() < 0.3:
            b = rng.choice(parents)
            child = {k.name: (a if rng.random() < 0.5 else b)[k.name] for k in knobs}
        for knob in rng.sample(knobs, k=min(len(knobs), rng.choice((1, 1, 2)))):
            values = list(knob.values)
            i = values.index(child[knob.name]) if child[knob.name] in values else 0
            if rng.random() < 0.8:
                i = max(0, min(len(values) - 1, i + rng.choice((-1, 1))))
            else:
                i = rng.randrange(len(values))
            child[knob.name] = values[i]
        out.append(child)
    return out


__all__ = ["Budget", "SearchResult", "Trial", "search", "Config"]
