"""Search strategies (autotune/search.py) on synthetic spaces whose best is known."""

from __future__ import annotations

import random

import pytest

from xchip.autotune.search import Budget, search
from xchip.knobs import Constraint, Knob, SearchSpace, config_key


def small_space():
    return SearchSpace("matmul", (Knob("a", (1, 2, 4)), Knob("b", (8, 16, 32))),
                       (Constraint("a * b <= 64", lambda c: c["a"] * c["b"] <= 64),))


def big_space():
    """7 knobs, 4^3 * 3 * 6^3 = 41472 configs before the constraint, a bowl with its minimum
    off-centre."""
    knobs = tuple(Knob(f"k{i}", tuple(range(3 if i == 3 else 4 if i < 4 else 6))) for i in range(7))
    return SearchSpace("matmul", knobs, (Constraint("k0 + k1 <= 5", lambda c: c["k0"] + c["k1"] <= 5),))


TARGET = {"k0": 2, "k1": 1, "k2": 3, "k3": 0, "k4": 4, "k5": 1, "k6": 2}


def bowl(config):
    return 1.0 + sum((config[k] - v) ** 2 * (1 + i) for i, (k, v) in enumerate(TARGET.items())) / 10


def test_exhaustive_measures_every_legal_config_once_and_never_an_illegal_one():
    seen = []
    result = search(small_space(), lambda c: seen.append(c) or c["a"] * 10 - c["b"] * 0.1,
                    budget=Budget(trials=100, patience=None))
    legal = [c for c in small_space()]
    assert result.strategy == "exhaustive" and len(seen) == len(legal) == 8
    assert all(c["a"] * c["b"] <= 64 for c in seen)
    assert result.best == {"a": 1, "b": 32} and result.stopped == "space exhausted"


def test_failed_candidates_cost_a_trial_and_the_search_goes_on():
    def evaluate(c):
        return None if c["a"] == 1 else float(c["a"] + c["b"])
    result = search(small_space(), evaluate, budget=Budget(trials=100, patience=None))
    assert sum(t.seconds is None for t in result.trials) == 3
    assert result.best == {"a": 2, "b": 8} and result.best_time == 10.0


def test_trial_budget_and_resumption_continue_where_the_first_run_stopped():
    first = search(big_space(), bowl, budget=Budget(trials=20, patience=None))
    assert len(first.trials) == 20 and first.stopped == "budget of 20 trials"
    tried = {config_key(t.config) for t in first.trials}
    measured = []
    second = search(big_space(), lambda c: measured.append(c) or bowl(c), budget=Budget(trials=30, patience=None),
                    history=first.trials)
    assert len(second.trials) == 30 and len(measured) == 10         # the budget counts the first run's trials
    assert not tried & {config_key(c) for c in measured}            # nothing measured twice
    assert second.best_time <= first.best_time
    again = search(big_space(), lambda c: measured.append(c) or bowl(c), budget=Budget(trials=30, patience=None),
                   history=second.trials)
    assert len(measured) == 10 and again.stopped == "budget of 30 trials"   # done: nothing more to measure


def test_time_budget_and_early_stop():
    timed = search(big_space(), bowl, budget=Budget(trials=None, seconds=0.0, patience=None))
    assert timed.trials == [] and timed.stopped == "budget of 0 s"
    flat = search(big_space(), lambda c: 1.0, budget=Budget(trials=1000, patience=10))
    assert len(flat.trials) == 11 and flat.stopped.startswith("no 1% gain")


@pytest.mark.parametrize("noise", [None, 1.0], ids=["unranked", "noisy_rank"])
def test_evolutionary_search_gets_within_5_percent_in_under_10_percent_of_the_space(noise):
    """Without a ranking, or with one only loosely correlated with the truth (each predicted
    time scaled by up to 2x at random), the search finds a config within 5% of the best of
    38880 in far fewer than 10% of them (about 100 unranked)."""
    space = big_space()
    legal = list(space)
    best = min(bowl(c) for c in legal)
    jitter = random.Random(1)

    def rank(configs):
        return [bowl(c) * (1 + noise * jitter.random()) for c in configs]
    result = search(space, bowl, budget=Budget(trials=len(legal) // 10, patience=None),
                    rank=None if noise is None else rank, rng=random.Random(2))
    reached = next(i for i, t in enumerate(result.trials) if t.seconds <= 1.05 * best) + 1
    assert reached <= len(legal) // 10, f"{reached} trials of {len(legal)}"


def test_evolution_without_a_ranking_still_improves_on_its_seeds():
    result = search(big_space(), bowl, budget=Budget(trials=300, patience=None), rng=random.Random(3))
    seeds = [t.seconds for t in result.trials[:8]]
    assert result.strategy == "evolutionary" and result.best_time < min(seeds)


def test_start_configs_are_measured_first_and_illegal_ones_skipped():
    seen = []
    start = [{"a": 4, "b": 32}, {"a": 2, "b": 16}]          # the first breaks a * b <= 64
    search(small_space(), lambda c: seen.append(c) or 1.0, budget=Budget(trials=100, patience=None), start=start)
    assert seen[0] == {"a": 2, "b": 16} and {"a": 4, "b": 32} not in seen and len(seen) == 8
