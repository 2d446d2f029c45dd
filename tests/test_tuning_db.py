"""The tuning database: concurrent writers, kill -9, measured vs modeled, failed configs,
export/import, damaged and newer files, and the `xchip db` command."""

import json
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xchip.autotune.db import KernelKey, Stats, TuningDB
from xchip.cli import main
from xchip.errors import XchipError
from xchip.knobs import config_key

ROOT = Path(__file__).resolve().parents[1]
KEY = KernelKey("9f3ab2c41d7e", "f32[64,256]x[256,512]", "f32,f32")
TARGET = "cpu:znver4"
VERSIONS = "tvm-llvm 0.27.0.post1"


def _integrity(path) -> str:
    with sqlite3.connect(path) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


def _write_many(path: str, writer: int, n: int, start) -> None:
    db = TuningDB(path)
    start.wait(30)                       # all four write at the same time, not one after another
    for i in range(n):
        db.record(KEY, TARGET, VERSIONS, {"writer": writer, "i": i}, Stats(1e-3 + i * 1e-6, 1e-3, 5, 1e-5))
    db.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "tuning.db")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_write_many, args=(path, w, 200, start)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with TuningDB(path) as db:
        got = db.tried(KEY, TARGET, VERSIONS)
        assert db.check() == "ok"
    assert got == {config_key({"writer": w, "i": i}) for w in range(4) for i in range(200)}
    assert _integrity(path) == "ok"


WRITER = """
import sys
from xchip.autotune.db import KernelKey, Stats, TuningDB
db = TuningDB(sys.argv[1])
key = KernelKey(*sys.argv[3:6])
for i in range(100000):
    db.record(key, "cpu", "v", {"round": int(sys.argv[2]), "i": i}, Stats(1.0, 1.0, 1))
    print(i, flush=True)
"""


def test_kill_9_during_writes_loses_no_committed_record(tmp_path):
    path = tmp_path / "tuning.db"
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for round_ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(round_), *vars(KEY).values()],
                                stdout=subprocess.PIPE, text=True, env=env)
        lines = [proc.stdout.readline()]          # wait until it is writing, then kill it mid-stream
        assert lines[0], "the writer died before committing anything"
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout))
        reader.start()
        time.sleep(rng.uniform(0.02, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        committed = [int(s) for s in lines if s.strip()]
        assert _integrity(path) == "ok"
        with TuningDB(path) as db:
            tried = db.tried(KEY, "cpu", "v")
        assert {config_key({"round": round_, "i": i}) for i in committed} <= tried, f"round {round_}"
        assert len(committed) > 1


def test_measured_and_modeled_never_mix(tmp_path):
    with TuningDB(tmp_path / "t.db") as db:
        db.record(KEY, TARGET, VERSIONS, {"tile": 8}, Stats(2e-3, 1.9e-3, 10, 5e-5))
        db.record(KEY, TARGET, VERSIONS, {"tile": 16}, Stats(3e-3, 2.9e-3, 10, 5e-5))
        db.record(KEY, TARGET, VERSIONS, {"tile": 32}, Stats(1e-6, 1e-6, 1), source="modeled")
        assert db.best(KEY, TARGET, VERSIONS).config == {"tile": 8}
        assert db.best(KEY, TARGET, VERSIONS, source="modeled").config == {"tile": 32}
        assert db.best(KEY, "h800", VERSIONS) is None
        assert db.best(KEY, TARGET, "tvm-llvm 0.28") is None
        assert db.tried(KEY, TARGET, VERSIONS, source="modeled") == {config_key({"tile": 32})}
        with pytest.raises(XchipError, match="source must be one of"):
            db.best(KEY, TARGET, VERSIONS, source="guessed")
        # A config measured again replaces its earlier result instead of adding a row.
        db.record(KEY, TARGET, VERSIONS, {"tile": 16}, Stats(1e-3, 0.9e-3, 10, 5e-5))
        assert db.best(KEY, TARGET, VERSIONS).config == {"tile": 16}
        assert len(db.records(KEY, TARGET, VERSIONS, source="measured")) == 2


def test_failed_candidates_are_remembered(tmp_path):
    with TuningDB(tmp_path / "t.db") as db:
        db.record(KEY, TARGET, VERSIONS, {"tile": 8}, Stats(2e-3, 1.9e-3, 10))
        db.record(KEY, TARGET, VERSIONS, {"tile": 64}, None, status="failed", reason="LLVM: out of registers")
        db.record(KEY, TARGET, VERSIONS, {"tile": 128}, Stats(1e-4, 1e-4, 3), status="wrong",
                  reason="max abs error 3.2 vs tolerance 1e-5")
        assert db.tried(KEY, TARGET, VERSIONS) == {config_key({"tile": t}) for t in (8, 64, 128)}
        assert db.best(KEY, TARGET, VERSIONS).config == {"tile": 8}      # the fast wrong one never wins
        failed = db.records(KEY, status="failed")
        assert [(r.config, r.reason) for r in failed] == [({"tile": 64}, "LLVM: out of registers")]
        with pytest.raises(XchipError, match="needs its timing statistics"):
            db.record(KEY, TARGET, VERSIONS, {"tile": 4}, None)


def _fill(db: TuningDB) -> None:
    for tile in (8, 16, 32):
        db.record(KEY, TARGET, VERSIONS, {"tile": tile, "order": ["i", "j"]}, Stats.from_times([tile * 1e-4, 1e-3]))
    db.record(KEY, TARGET, VERSIONS, {"tile": 64}, None, status="failed", reason="too big")
    db.record(KernelKey("77aa", "f32[8]", "f32"), "h800", "cuda 12.4", {"block": 128}, Stats(1e-5, 1e-5, 1),
              source="modeled")


def test_export_import_round_trip_duplicates_and_conflicts(tmp_path):
    with TuningDB(tmp_path / "a.db") as a:
        _fill(a)
        assert a.export(tmp_path / "out.json") == 5
        original = a.records()
    with TuningDB(tmp_path / "b.db") as b:
        report = b.import_(tmp_path / "out.json")
        assert (report.added, report.duplicates, report.conflicts) == (5, 0, [])
        assert b.records() == original
        again = b.import_(tmp_path / "out.json")
        assert (again.added, again.duplicates, again.conflicts) == (0, 5, [])

        doc = json.loads((tmp_path / "out.json").read_text())
        changed = next(r for r in doc["records"] if r["stats"] and r["source"] == "measured")
        changed["stats"]["median_s"] *= 2
        (tmp_path / "changed.json").write_text(json.dumps(doc))
        report = b.import_(tmp_path / "changed.json")
        assert (report.added, report.duplicates, len(report.conflicts)) == (0, 4, 1)
        kept, skipped = report.conflicts[0]
        assert skipped.stats.median_s == 2 * kept.stats.median_s
        assert b.records() == original                        # nothing overwritten

        del doc["records"][0]["source"]
        (tmp_path / "bad.json").write_text(json.dumps(doc))
        with pytest.raises(XchipError, match="record 0: missing source"):
            b.import_(tmp_path / "bad.json")


def test_damaged_file_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "tuning.db"
    path.write_bytes(b"this is not an SQLite file at all, it is some text" * 100)
    before = path.read_bytes()
    with pytest.raises(XchipError, match=f"{path}.*damaged.*move it aside"):
        TuningDB(path)
    assert path.read_bytes() == before


def test_malformed_database_is_reported(tmp_path):
    path = tmp_path / "tuning.db"
    with TuningDB(path) as db:
        for i in range(300):
            db.record(KEY, TARGET, VERSIONS, {"i": i, "pad": "x" * 200}, Stats(1.0, 1.0, 1))
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page:len(data) - page] = b"\xa5" * (len(data) - 3 * page)   # scribble over the middle pages
    path.write_bytes(bytes(data))
    with pytest.raises(XchipError, match=f"{path}.*damaged"):
        with TuningDB(path) as db:
            db.records()
            assert db.check() == "ok"


def test_newer_schema_and_foreign_database_are_refused(tmp_path):
    path = tmp_path / "tuning.db"
    TuningDB(path).close()
    with sqlite3.connect(path) as c:
        c.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(XchipError, match="schema version 99, written by a newer xchip"):
        TuningDB(path)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE photos (name TEXT)")
    with pytest.raises(XchipError, match="not an xchip tuning database"):
        TuningDB(other)


def test_prune(tmp_path):
    with TuningDB(tmp_path / "t.db") as db:
        _fill(db)
        assert db.prune(keep_best=1) == 2                      # two slower ok configs; the failed one stays
        assert db.tried(KEY, TARGET, VERSIONS) == {config_key({"tile": 8, "order": ["i", "j"]}),
                                                   config_key({"tile": 64})}
        assert db.prune(older_than_days=1) == 0
        assert db.prune(keep_xchip_version="0.0.1") == 3
        assert db.records() == []


def test_cli(tmp_path, capsys):
    path = tmp_path / "tuning.db"
    with TuningDB(path) as db:
        _fill(db)
    assert main(["db", "ls", "--db", str(path)]) == 0
    out = capsys.readouterr().out
    assert "9f3ab2c41d7e" in out and "measured" in out and "modeled" in out and "h800" in out
    assert main(["db", "--db", str(path)]) == 0                 # ls is the default
    assert capsys.readouterr().out == out

    assert main(["db", "show", "9f3", "--db", str(path)]) == 0
    out = capsys.readouterr().out
    assert '{"order":["i","j"],"tile":8}' in out and "too big" in out and "77aa" not in out

    export = tmp_path / "out.json"
    assert main(["db", "export", str(export), "--db", str(path)]) == 0
    assert "exported 5 records" in capsys.readouterr().out
    fresh = tmp_path / "fresh.db"
    assert main(["db", "import", str(export), "--db", str(fresh)]) == 0
    assert "added 5, duplicates 0, conflicts 0" in capsys.readouterr().out
    assert main(["db", "import", str(export), "--db", str(fresh)]) == 0
    assert "added 0, duplicates 5, conflicts 0" in capsys.readouterr().out

    assert main(["db", "prune", "--keep-best", "1", "--db", str(fresh)]) == 0
    assert "removed 2 records" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["db", "ls", "--db", "{tmp}/missing.db"], "no tuning database at {tmp}/missing.db"),
    (["db", "show", "zzz", "--db", "{db}"], "no records whose signature starts with 'zzz'"),
    (["db", "import", "{tmp}/missing.json", "--db", "{db}"], "no such file"),
    (["db", "prune", "--db", "{db}"], "say what to prune"),
    (["db", "ls", "--db", "{tmp}/junk.db"], "{tmp}/junk.db is damaged"),
])
def test_cli_errors_are_clear(tmp_path, capsys, argv, message):
    TuningDB(tmp_path / "t.db").close()
    (tmp_path / "junk.db").write_text("not a database" * 100)
    fill = {"tmp": str(tmp_path), "db": str(tmp_path / "t.db")}
    assert main([a.format(**fill) for a in argv]) == 2
    assert message.format(**fill) in capsys.readouterr().err


def test_history_keeps_the_order_first_tried_when_a_config_is_measured_again(tmp_path):
    # the tuner re-measures the default and the best configs at the end of a search: they
    # must keep their place in the search's history (the report's convergence curve)
    db = TuningDB(tmp_path / "t.db")
    for i, seconds in enumerate([5e-3, 4e-3, 6e-3]):
        db.record(KEY, "h", "v", {"tile": i}, Stats(seconds, seconds, 3))
    db.record(KEY, "h", "v", {"tile": 1}, Stats(3e-3, 3e-3, 3))      # measured again
    db.record(KEY, "h", "v", {"tile": 3}, None, status="failed", reason="does not build")
    history = db.history(KEY, "h", "v")
    assert [r.config["tile"] for r in history] == [0, 1, 2, 3]
    assert [r.stats.median_s if r.stats else None for r in history] == [5e-3, 3e-3, 6e-3, None]
    assert db.history(KEY, "other", "v") == []
