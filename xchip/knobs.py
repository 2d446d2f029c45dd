"""Search-space types shared by backends (which declare their knobs) and the autotuner
(which searches them). Neither imports the other; both import this.

A backend declares, per kernel kind, a `SearchSpace`: named knobs with candidate values, and
legality constraints over a whole config. A config is a plain `dict[str, value]`, so it can go
into a tuning database and into cache keys as JSON.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

Config = Mapping[str, Any]


@dataclass(frozen=True)
class Knob:
    name: str
    values: tuple            # candidates, in the order a search should try them
    doc: str = ""


@dataclass(frozen=True)
class Constraint:
    doc: str                                  # says why, e.g. "tile_k divides K"
    check: Callable[[Config], bool] = field(compare=False)


@dataclass(frozen=True)
class SearchSpace:
    kind: str                                 # kernel group kind it applies to
    knobs: tuple[Knob, ...]
    constraints: tuple[Constraint, ...] = ()

    def violations(self, config: Config) -> list[str]:
        """Why `config` is illegal (empty when legal): unknown or out-of-range knobs and
        failed constraints."""
        out = []
        by_name = {k.name: k for k in self.knobs}
        for name, value in config.items():
            if name not in by_name:
                out.append(f"unknown knob {name!r} (knobs: {', '.join(by_name)})")
            elif value not in by_name[name].values:
                out.append(f"{name}={value!r} is not one of {list(by_name[name].values)}")
        out += [f"missing knob {n!r}" for n in by_name if n not in config]
        if not out:
            out = [c.doc for c in self.constraints if not c.check(config)]
        return out

    def is_legal(self, config: Config) -> bool:
        return not self.violations(config)

    def __iter__(self) -> Iterator[dict]:
        """Every legal config, in knob order."""
        names = [k.name for k in self.knobs]
        for values in itertools.product(*(k.values for k in self.knobs)):
            config = dict(zip(names, values))
            if all(c.check(config) for c in self.constraints):
                yield config

    @property
    def size(self) -> int:
        """Number of configs before constraints."""
        n = 1
        for k in self.knobs:
            n *= len(k.values)
        return n


def config_key(config: Config) -> str:
    """A stable text form of a config, for cache keys and databases."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"))
