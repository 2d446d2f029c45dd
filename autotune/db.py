"""The tuning database: every config the autotuner tried, with its timings, in SQLite.

    db = TuningDB()                                  # $XCHIP_CACHE_DIR/tuning.db
    key = KernelKey(signature, shapes, dtypes)       # as the caller computes them
    db.record(key, "cpu:znver4", "tvm-llvm 0.27.0.post1", config, Stats.from_times(ts))
    db.record(key, "cpu:znver4", "tvm-llvm 0.27.0.post1", bad, None, status="failed", reason="...")
    db.best(key, "cpu:znver4", "tvm-llvm 0.27.0.post1")          # fastest measured, or None
    db.tried(key, "cpu:znver4", "tvm-llvm 0.27.0.post1")         # config keys not to try again

A result belongs to (kernel key, target SKU, backend + toolchain versions, xchip version,
source). Measured and modeled results never meet in one query: a modeled time is a guess
and must not beat a measurement. Failed and wrong configs are kept, so a resumed search
skips them.

Several tuner processes may write at once (WAL, busy timeout, short IMMEDIATE transactions,
retries on SQLITE_BUSY), and a process killed at any moment loses nothing it committed. A
damaged file is reported, never repaired or replaced: it may hold hours of measurements.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Mapping

import xchip
from xchip.errors import XchipError
from xchip.knobs import config_key

SOURCES = ("measured", "modeled")
STATUSES = ("ok", "failed", "wrong")      # failed: did not build or run; wrong: wrong results
EXPORT_FORMAT = "xchip-tuning-db"

# Waiting this long for another writer is far more than one short transaction takes; a
# writer blocked longer than that is stuck, and the retry loop gives up with an error.
BUSY_TIMEOUT_S = 30.0
BUSY_RETRIES = 8

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26

_KEY_COLUMNS = ("signature", "shapes", "dtypes", "target", "versions", "xchip_version")
_STATS_COLUMNS = ("median_s", "min_s", "stdev_s", "repeats")


@dataclass(frozen=True)
class KernelKey:
    """What a kernel is, as its caller hashes it: the group structure's hash, the shapes
    and the dtypes (each an opaque string to the database)."""
    signature: str
    shapes: str
    dtypes: str

    def __str__(self) -> str:
        return f"{self.signature} {self.shapes} {self.dtypes}"


@dataclass(frozen=True)
class Stats:
    """Timing statistics of one config, in seconds."""
    median_s: float
    min_s: float
    repeats: int
    stdev_s: float = 0.0

    @classmethod
    def from_times(cls, times_s: Iterable[float]) -> "Stats":
        times = list(times_s)
        if not times:
            raise XchipError("Stats.from_times: no timings given")
        stdev = statistics.stdev(times) if len(times) > 1 else 0.0
        return cls(statistics.median(times), min(times), len(times), stdev)


@dataclass(frozen=True)
class Record:
    key: KernelKey
    target: str
    versions: str
    xchip_version: str
    config: dict = field(hash=False)
    source: str
    status: str
    reason: str
    stats: Stats | None
    created: float                    # Unix time of the measurement

    @property
    def config_key(self) -> str:
        return config_key(self.config)

    def to_json(self) -> dict:
        d = {**asdict(self.key), "target": self.target, "versions": self.versions,
             "xchip_version": self.xchip_version, "config": self.config, "source": self.source,
             "status": self.status, "reason": self.reason, "created": self.created}
        d["stats"] = asdict(self.stats) if self.stats else None
        return d


@dataclass(frozen=True)
class SummaryRow:
    """One line of `ls`: one kernel on one target, versions and source."""
    key: KernelKey
    target: str
    versions: str
    xchip_version: str
    source: str
    trials: int
    failed: int                       # failed or wrong
    best_median_s: float | None


@dataclass
class ImportReport:
    added: int = 0
    duplicates: int = 0               # already present with the same result
    conflicts: list[tuple[Record, Record]] = field(default_factory=list)   # (kept, not imported)


# ---- schema and migrations -------------------------------------------------------------------

def _migrate_to_1(c: sqlite3.Connection) -> None:
    c.execute("""CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        signature TEXT NOT NULL, shapes TEXT NOT NULL, dtypes TEXT NOT NULL,
        target TEXT NOT NULL, versions TEXT NOT NULL, xchip_version TEXT NOT NULL,
        config TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('measured', 'modeled')),
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'wrong')),
        reason TEXT NOT NULL DEFAULT '',
        median_s REAL, min_s REAL, stdev_s REAL, repeats INTEGER,
        created REAL NOT NULL,
        UNIQUE (signature, shapes, dtypes, target, versions, xchip_version, source, config))""")
    c.execute("CREATE INDEX results_by_time ON results "
              "(signature, shapes, dtypes, target, versions, xchip_version, source, status, median_s)")


# Applied in order: MIGRATIONS[n] takes a database from schema version n to n + 1. Append,
# never edit: databases in the field are at every version ever released.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1]
SCHEMA_VERSION = len(MIGRATIONS)


def default_path() -> Path:
    """$XCHIP_TUNING_DB, else tuning.db in xchip's cache folder ($XCHIP_CACHE_DIR, default
    ~/.cache/xchip)."""
    if os.environ.get("XCHIP_TUNING_DB"):
        return Path(os.environ["XCHIP_TUNING_DB"])
    from xchip.targets.host import cache_dir     # imported here: it pulls in the target tables
    return cache_dir() / "tuning.db"


class TuningDB:
    """The tuning database at `path` (default `$XCHIP_CACHE_DIR/tuning.db`).

    `durable=True` (the default) runs with synchronous=FULL: every commit is fsynced, so a
    committed measurement survives power loss as well as a killed process. Commits are one
    per measured config, which took far longer to measure than an fsync takes. With
    `durable=False` (synchronous=NORMAL, still WAL) a killed process still loses nothing,
    but a power cut may drop the last commits: for bulk work that can be redone.

    `create=False` refuses a missing file instead of making an empty database.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True,
                 durable: bool = True, xchip_version: str | None = None):
        self.path = Path(path) if path is not None else default_path()
        self.xchip_version = xchip_version or xchip.__version__
        self._durable = durable
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        if not self.path.exists():
            if not create:
                raise XchipError(f"no tuning database at {self.path} (nothing has been tuned there yet)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection()

    # ---- connection, transactions, errors ----

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross fork(): a forked child opens its own.
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            self._conn, self._pid = conn, os.getpid()
            try:
                self._retrying(self._setup)
            except BaseException:
                conn.close()
                self._conn = None
                raise
        return self._conn

    def _setup(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise XchipError(f"tuning database {self.path}: cannot switch to WAL mode (got {mode!r}); "
                             "is it on a network file system?")
        c.execute(f"PRAGMA synchronous = {'FULL' if self._durable else 'NORMAL'}")
        version = self._schema_version(c)
        if version == SCHEMA_VERSION:
            return
        self._check_not_newer(version)
        with self._transaction() as t:       # re-read under the write lock: another process may have migrated
            version = self._schema_version(t)
            self._check_not_newer(version)
            if version == 0:
                if t.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise XchipError(f"{self.path} is an SQLite database but not an xchip tuning database; "
                                     "pass another path (--db) or move it aside")
                t.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                t.execute("INSERT INTO schema_version VALUES (0)")
            for migrate in MIGRATIONS[version:]:
                migrate(t)
            t.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    @staticmethod
    def _schema_version(c: sqlite3.Connection) -> int:
        if not c.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone():
            return 0
        row = c.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    def _check_not_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise XchipError(f"tuning database {self.path} has schema version {version}, written by a newer "
                             f"xchip; this xchip ({xchip.__version__}) reads up to version {SCHEMA_VERSION}. "
                             "Upgrade xchip, or pass another path (--db / XCHIP_CACHE_DIR)")

    @contextmanager
    def _transaction(self):
        # IMMEDIATE takes the write lock at BEGIN, so a transaction never has to upgrade a
        # read lock midway (which fails with SQLITE_BUSY at once, without waiting).
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:         # a failed COMMIT leaves it open; a retry begins anew
                c.execute("ROLLBACK")
            raise

    def _retrying(self, fn: Callable[[], Any]) -> Any:
        for attempt in range(BUSY_RETRIES):
            try:
                return fn()
            except sqlite3.DatabaseError as e:
                code = getattr(e, "sqlite_errorcode", 0) & 0xFF
                if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                    raise XchipError(
                        f"tuning database {self.path} is damaged ({e}). It was left as it is: move it "
                        f"aside to start afresh (`sqlite3 {self.path} .recover` may rescue its results), "
                        "or pass another path (--db / XCHIP_CACHE_DIR)") from None
                if code not in (_SQLITE_BUSY, _SQLITE_LOCKED) or attempt == BUSY_RETRIES - 1:
                    raise XchipError(f"tuning database {self.path}: {e}") from None
                time.sleep(random.uniform(0.01, 0.05) * 2 ** attempt)

    def _run(self, fn: Callable[[sqlite3.Connection], Any], write: bool = False) -> Any:
        def once():
            c = self._connection()
            if not write:
                return fn(c)
            with self._transaction() as t:
                return fn(t)
        with self._lock:
            return self._retrying(once)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "TuningDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writing ----

    def record(self, key: KernelKey, target: str, versions: str, config: Mapping[str, Any],
               stats: Stats | None, source: str = "measured", status: str = "ok", reason: str = "") -> Record:
        """Store one tried config; a config measured again replaces its earlier result."""
        rec = Record(key, target, versions, self.xchip_version, dict(config), source, status, reason,
                     stats, time.time())
        _validate(rec)
        self._run(lambda c: c.execute(_UPSERT, _row_of(rec)), write=True)
        return rec

    # ---- reading ----

    def best(self, key: KernelKey, target: str, versions: str, source: str = "measured") -> Record | None:
        """The fastest (by median) ok config of this kernel from `source` only, or None.
        Callers wanting "measured, else modeled" ask twice, so the two never compete."""
        _check_choice("source", source, SOURCES)
        rows = self._select(key, target, versions, source, "AND status = 'ok' ORDER BY median_s, id LIMIT 1")
        return rows[0] if rows else None

    def history(self, key: KernelKey, target: str, versions: str, source: str = "measured") -> list[Record]:
        """Every config tried for this kernel, in the order first tried (a config measured
        again keeps its place, with its latest result): a search's convergence."""
        return self._select(key, target, versions, source, "ORDER BY id")

    def tried(self, key: KernelKey, target: str, versions: str, source: str = "measured") -> set[str]:
        """The `config_key`s of every config already tried, including failed and wrong ones."""
        return {r.config_key for r in self._select(key, target, versions, source, "")}

    def records(self, key: KernelKey | None = None, target: str | None = None, versions: str | None = None,
                source: str | None = None, status: str | None = None, xchip_version: str | None = None,
                signature_prefix: str = "") -> list[Record]:
        """Every record matching the filters given (None: any), fastest first per kernel;
        records of every xchip version unless `xchip_version` is given."""
        where, args = [], []
        for column, value in (("signature", key and key.signature), ("shapes", key and key.shapes),
                              ("dtypes", key and key.dtypes), ("target", target), ("versions", versions),
                              ("source", source), ("status", status), ("xchip_version", xchip_version)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if signature_prefix:
            where.append("substr(signature, 1, ?) = ?")
            args += [len(signature_prefix), signature_prefix]
        sql = (f"SELECT {', '.join(_ALL_COLUMNS)} FROM results {'WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY {', '.join(_KEY_COLUMNS)}, source, status != 'ok', median_s, id")
        return self._run(lambda c: [_record_of(row) for row in c.execute(sql, args)])

    def ls(self) -> list[SummaryRow]:
        sql = (f"SELECT {', '.join(_KEY_COLUMNS)}, source, count(*), sum(status != 'ok'), "
               f"min(CASE WHEN status = 'ok' THEN median_s END) FROM results "
               f"GROUP BY {', '.join(_KEY_COLUMNS)}, source ORDER BY {', '.join(_KEY_COLUMNS)}, source")
        return self._run(lambda c: [SummaryRow(KernelKey(*r[:3]), *r[3:]) for r in c.execute(sql)])

    def check(self) -> str:
        """SQLite's full integrity check: "ok", or what is wrong."""
        return "\n".join(r[0] for r in self._run(lambda c: c.execute("PRAGMA integrity_check").fetchall()))

    def _select(self, key, target, versions, source, tail) -> list[Record]:
        sql = (f"SELECT {', '.join(_ALL_COLUMNS)} FROM results WHERE "
               f"{' AND '.join(f'{c} = ?' for c in _KEY_COLUMNS)} AND source = ? {tail}")
        args = (key.signature, key.shapes, key.dtypes, target, versions, self.xchip_version, source)
        return self._run(lambda c: [_record_of(row) for row in c.execute(sql, args)])

    # ---- export, import, prune ----

    def export(self, dest: str | os.PathLike | IO[str]) -> int:
        """Write every record as JSON to a path or text file; returns how many."""
        records = self.records()
        doc = {"format": EXPORT_FORMAT, "schema_version": SCHEMA_VERSION,
               "records": [r.to_json() for r in records]}
        if hasattr(dest, "write"):
            json.dump(doc, dest, indent=1, sort_keys=True)
        else:
            Path(dest).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        return len(records)

    def import_(self, src: str | os.PathLike | IO[str]) -> ImportReport:
        """Add the records of an export. Nothing present is overwritten: a record with the
        same key and config but another result is a conflict, reported and skipped. The
        whole file is checked before anything is written, and written in one transaction."""
        name = getattr(src, "name", str(src))
        try:
            doc = json.load(src) if hasattr(src, "read") else json.loads(Path(src).read_text())
        except FileNotFoundError:
            raise XchipError(f"no such file: {name}") from None
        except (OSError, ValueError) as e:
            raise XchipError(f"{name}: not a tuning database export: {e}") from None
        incoming = _parse_export(doc, name)

        def insert_all(c: sqlite3.Connection) -> ImportReport:
            report = ImportReport()
            for rec in incoming:
                where = " AND ".join(f"{col} = ?" for col in (*_KEY_COLUMNS, "source", "config"))
                row = c.execute(f"SELECT {', '.join(_ALL_COLUMNS)} FROM results WHERE {where}",
                                _row_of(rec)[:len(_KEY_COLUMNS) + 2]).fetchone()
                if row is None:
                    c.execute(f"INSERT INTO results ({', '.join(_ALL_COLUMNS)}) "
                              f"VALUES ({', '.join('?' * len(_ALL_COLUMNS))})", _row_of(rec))
                    report.added += 1
                    continue
                present = _record_of(row)
                same = (present.status, present.reason, present.stats) == (rec.status, rec.reason, rec.stats)
                if same:
                    report.duplicates += 1
                else:
                    report.conflicts.append((present, rec))
            return report
        return self._run(insert_all, write=True)

    def prune(self, older_than_days: float | None = None, keep_best: int | None = None,
              keep_xchip_version: str | None = None) -> int:
        """Delete records; returns how many. Each criterion given removes what it matches:
        `older_than_days`: records measured longer ago than that; `keep_best`: all ok records
        but the N fastest of each kernel, target, versions and source (failed and wrong ones
        stay, so a later search still skips them); `keep_xchip_version`: records made by
        any other xchip version."""
        def delete(c: sqlite3.Connection) -> int:
            removed = 0
            if older_than_days is not None:
                removed += c.execute("DELETE FROM results WHERE created < ?",
                                     (time.time() - older_than_days * 86400,)).rowcount
            if keep_best is not None:
                if keep_best < 0:
                    raise XchipError(f"keep_best must be 0 or more, got {keep_best}")
                group = ", ".join((*_KEY_COLUMNS, "source"))
                removed += c.execute(
                    f"DELETE FROM results WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER "
                    f"(PARTITION BY {group} ORDER BY median_s, id) AS rank FROM results WHERE status = 'ok') "
                    "WHERE rank > ?)", (keep_best,)).rowcount
            if keep_xchip_version is not None:
                removed += c.execute("DELETE FROM results WHERE xchip_version != ?",
                                     (keep_xchip_version,)).rowcount
            return removed
        return self._run(delete, write=True)


# ---- rows, validation ------------------------------------------------------------------------

_ALL_COLUMNS = (*_KEY_COLUMNS, "source", "config", "status", "reason", *_STATS_COLUMNS, "created")
_UPSERT = (f"INSERT INTO results ({', '.join(_ALL_COLUMNS)}) VALUES ({', '.join('?' * len(_ALL_COLUMNS))}) "
           f"ON CONFLICT ({', '.join((*_KEY_COLUMNS, 'source', 'config'))}) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in ("status", "reason", *_STATS_COLUMNS, "created")))


def _row_of(r: Record) -> tuple:
    s = r.stats
    stats = (s.median_s, s.min_s, s.stdev_s, s.repeats) if s else (None,) * 4
    return (r.key.signature, r.key.shapes, r.key.dtypes, r.target, r.versions, r.xchip_version,
            r.source, config_key(r.config), r.status, r.reason, *stats, r.created)


def _record_of(row: tuple) -> Record:
    sig, shapes, dtypes, target, versions, xv, source, config, status, reason, med, mn, sd, reps, created = row
    stats = Stats(med, mn, reps, sd) if med is not None else None
    return Record(KernelKey(sig, shapes, dtypes), target, versions, xv, json.loads(config), source, status,
                  reason, stats, created)


def _check_choice(what: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise XchipError(f"{what} must be one of {', '.join(choices)}, got {value!r}")


def _validate(r: Record) -> None:
    _check_choice("source", r.source, SOURCES)
    _check_choice("status", r.status, STATUSES)
    for name in ("signature", "shapes", "dtypes"):
        if not isinstance(getattr(r.key, name), str):
            raise XchipError(f"kernel key {name} must be a string, got {getattr(r.key, name)!r}")
    for name in ("target", "versions", "xchip_version", "reason"):
        if not isinstance(getattr(r, name), str):
            raise XchipError(f"{name} must be a string, got {getattr(r, name)!r}")
    if r.status == "ok" and r.stats is None:
        raise XchipError("an ok result needs its timing statistics")
    if r.stats is not None:
        s = r.stats
        times = (s.median_s, s.min_s, s.stdev_s)
        if not all(isinstance(t, (int, float)) and math.isfinite(t) and t >= 0 for t in times) \
                or not isinstance(s.repeats, int) or s.repeats < 0:
            raise XchipError(f"bad timing statistics {s}: times must be finite and >= 0, repeats an int >= 0")
    try:
        config_key(r.config)
    except (TypeError, ValueError) as e:
        raise XchipError(f"config {r.config!r} is not JSON: {e}") from None


def _parse_export(doc: Any, name: str) -> list[Record]:
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT or not isinstance(doc.get("records"), list):
        raise XchipError(f"{name}: not a tuning database export (expected an object with "
                         f"format {EXPORT_FORMAT!r} and a records list)")
    if not isinstance(doc.get("schema_version"), int) or doc["schema_version"] > SCHEMA_VERSION:
        raise XchipError(f"{name}: export schema version {doc.get('schema_version')!r} is not one this "
                         f"xchip reads (up to {SCHEMA_VERSION}); upgrade xchip")
    fields = {*_KEY_COLUMNS, "config", "source", "status", "reason", "stats", "created"}
    out = []
    for i, d in enumerate(doc["records"]):
        where = f"{name}: record {i}"
        if not isinstance(d, dict):
            raise XchipError(f"{where}: expected an object")
        if missing := sorted(fields - d.keys()):
            raise XchipError(f"{where}: missing {', '.join(missing)}")
        if unknown := sorted(d.keys() - fields):
            raise XchipError(f"{where}: unknown fields {', '.join(unknown)}")
        if not isinstance(d["config"], dict):
            raise XchipError(f"{where}: config must be an object")
        if not isinstance(d["created"], (int, float)):
            raise XchipError(f"{where}: created must be a number")
        stats = d["stats"]
        if stats is not None:
            if not isinstance(stats, dict) or set(stats) != set(_STATS_COLUMNS):
                raise XchipError(f"{where}: stats must be null or an object with {', '.join(_STATS_COLUMNS)}")
            stats = Stats(**stats)
        rec = Record(KernelKey(d["signature"], d["shapes"], d["dtypes"]), d["target"], d["versions"],
                     d["xchip_version"], d["config"], d["source"], d["status"], d["reason"], stats,
                     float(d["created"]))
        try:
            _validate(rec)
        except XchipError as e:
            raise XchipError(f"{where}: {e}") from None
        out.append(rec)
    return out
