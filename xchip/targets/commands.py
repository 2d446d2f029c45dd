"""The `xchip targets` command:

    xchip targets                      the table of all targets
    xchip targets show NAME            one target, every fact with its source
    xchip targets compare A B ...      side by side, with ridge points
"""

from __future__ import annotations

import argparse

from . import host, registry
from .loader import resolve_name
from .registry import all_targets, get
from .tables import compare_table, target_details, targets_table


def _cmd_targets(ns: argparse.Namespace) -> int:
    print(targets_table(all_targets()))
    return 0


def _cmd_show(ns: argparse.Namespace) -> int:
    if ns.remeasure and resolve_name(ns.name) == "cpu":
        host.measure(refresh=True)          # rewrites this machine's cache entry
        registry._host_target.cache_clear()
    print(target_details(get(ns.name)))
    return 0


def _cmd_compare(ns: argparse.Namespace) -> int:
    print(compare_table([get(n) for n in ns.names]))
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `targets` (with `show` and `compare`) to an argparse subparsers object; handlers
    are set as `handler` and return an exit status."""
    p = subparsers.add_parser("targets", help="list target chips, show one, compare several")
    p.set_defaults(handler=_cmd_targets)
    sub = p.add_subparsers(dest="targets_command")
    show = sub.add_parser("show", help="every fact about one target, with sources")
    show.add_argument("name", help="target name or alias, e.g. h20, h800, ascend910b3")
    show.add_argument("--remeasure", action="store_true",
                      help="for cpu: run the micro-benchmark again instead of using the cached numbers")
    show.set_defaults(handler=_cmd_show)
    compare = sub.add_parser("compare", help="targets side by side, with ridge points (FLOP per byte)")
    compare.add_argument("names", nargs="+", metavar="NAME")
    compare.set_defaults(handler=_cmd_compare)
    return p
