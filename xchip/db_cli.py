"""The `xchip db` command: look into and move the autotuner's tuning database.

    xchip db [ls]                          one row per kernel, target, versions and source
    xchip db show KEY_PREFIX               every result of the kernels whose signature starts so
    xchip db export FILE                   every record as JSON
    xchip db import FILE                   add an export's records; conflicts are reported, not applied
    xchip db prune [--keep-best N] [--older-than DAYS] [--stale]

Each takes `--db PATH` (default: $XCHIP_CACHE_DIR/tuning.db).
"""

from __future__ import annotations

import argparse

from .errors import XchipError
from .targets.estimate import format_seconds

SIGNATURE_WIDTH = 12      # like a short git hash: enough to tell kernels apart, and `show` takes a prefix
MAX_CONFLICTS_SHOWN = 10


def _open(ns: argparse.Namespace, create: bool = False):
    from xchip.autotune.db import TuningDB     # sqlite and the db module only when asked for
    return TuningDB(getattr(ns, "db", None), create=create)


def _grid(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _cmd_ls(ns: argparse.Namespace) -> int:
    with _open(ns) as db:
        summary = db.ls()
        if not summary:
            print(f"{db.path}: no records")
            return 0
        rows = [("signature", "shapes", "dtypes", "target", "versions", "xchip", "source", "trials", "failed", "best")]
        rows += [(s.key.signature[:SIGNATURE_WIDTH], s.key.shapes, s.key.dtypes, s.target, s.versions,
                  s.xchip_version, s.source, s.trials, s.failed, format_seconds(s.best_median_s)) for s in summary]
        print("\n".join(_grid(rows)))
    return 0


def _cmd_show(ns: argparse.Namespace) -> int:
    with _open(ns) as db:
        records = db.records(signature_prefix=ns.key_prefix)
    if not records:
        raise XchipError(f"no records whose signature starts with {ns.key_prefix!r} in {db.path}")
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((r.key, r.target, r.versions, r.xchip_version, r.source), []).append(r)
    for (key, target, versions, xchip_version, source), rows in groups.items():
        print(f"{key.signature} {key.shapes} {key.dtypes} on {target} ({versions}; xchip {xchip_version}; {source})")
        table = [("status", "config", "median", "min", "stdev", "repeats", "reason")]
        for r in rows:
            s = r.stats
            timing = (format_seconds(s.median_s), format_seconds(s.min_s), format_seconds(s.stdev_s),
                      s.repeats) if s else ("", "", "", "")
            table.append((r.status, r.config_key, *timing, r.reason))
        print("\n".join("  " + line for line in _grid(table)) + "\n")
    return 0


def _cmd_export(ns: argparse.Namespace) -> int:
    with _open(ns) as db:
        n = db.export(ns.file)
    print(f"exported {n} records from {db.path} to {ns.file}")
    return 0


def _cmd_import(ns: argparse.Namespace) -> int:
    with _open(ns, create=True) as db:
        report = db.import_(ns.file)
    print(f"imported {ns.file} into {db.path}: added {report.added}, duplicates {report.duplicates}, "
          f"conflicts {len(report.conflicts)}")
    for kept, skipped in report.conflicts[:MAX_CONFLICTS_SHOWN]:
        print(f"  conflict: {kept.key} on {kept.target} {kept.config_key}: kept {_result(kept)}, "
              f"not imported {_result(skipped)}")
    if len(report.conflicts) > MAX_CONFLICTS_SHOWN:
        print(f"  ... and {len(report.conflicts) - MAX_CONFLICTS_SHOWN} more conflicts")
    return 0


def _result(r) -> str:
    return f"{r.status} median {format_seconds(r.stats.median_s)}" if r.stats else r.status


def _cmd_prune(ns: argparse.Namespace) -> int:
    if ns.keep_best is None and ns.older_than is None and not ns.stale:
        raise XchipError("say what to prune: --keep-best N, --older-than DAYS and/or --stale")
    import xchip
    with _open(ns) as db:
        removed = db.prune(older_than_days=ns.older_than, keep_best=ns.keep_best,
                           keep_xchip_version=xchip.__version__ if ns.stale else None)
    print(f"removed {removed} records from {db.path}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `db` (ls, show, export, import, prune) to an argparse subparsers object; handlers
    are set as `handler` and return an exit status."""
    where = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: `xchip db --db X ls` must not have ls's own unset --db overwrite X.
    where.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                       help="the database file (default: $XCHIP_CACHE_DIR/tuning.db)")
    p = subparsers.add_parser("db", parents=[where], help="the autotuner's tuning database: ls, show, export, "
                                                          "import, prune")
    p.set_defaults(handler=_cmd_ls)
    sub = p.add_subparsers(dest="db_command")
    sub.add_parser("ls", parents=[where], help="one row per kernel, target, versions and source").set_defaults(
        handler=_cmd_ls)
    show = sub.add_parser("show", parents=[where], help="every result of the kernels with this signature prefix")
    show.add_argument("key_prefix", metavar="KEY_PREFIX")
    show.set_defaults(handler=_cmd_show)
    export = sub.add_parser("export", parents=[where], help="write every record to a JSON file")
    export.add_argument("file", metavar="FILE")
    export.set_defaults(handler=_cmd_export)
    imp = sub.add_parser("import", parents=[where], help="add a JSON export's records (never overwrites)")
    imp.add_argument("file", metavar="FILE")
    imp.set_defaults(handler=_cmd_import)
    prune = sub.add_parser("prune", parents=[where], help="delete old, slow or stale records")
    prune.add_argument("--keep-best", type=int, metavar="N",
                       help="keep the N fastest ok configs of each kernel (failed ones stay)")
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="delete records older than this")
    prune.add_argument("--stale", action="store_true", help="delete records made by other xchip versions")
    prune.set_defaults(handler=_cmd_prune)
    return p
