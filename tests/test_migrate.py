"""Schema migration: a real version-1 store (written with v1's DDL) is upgraded in place with every
row kept; a store newer than the code is refused; a failed migration leaves the v1 file usable."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import invoke

from sweep import config
from sweep.errors import StoreError
from sweep.plan import plan
from sweep.records import CurvePoint, TrainResult
from sweep.store import SCHEMA_VERSION, Store
from sweep.store_schema import V1_DDL

V1_COLS = ("width", "depth", "params", "params_nonembed", "tokens", "flops_6nd", "flops_attn", "lr")


def make_v1(root, n_points=20, orphan=False):
    """A store as sweep's schema-1 code wrote it: a 12-run plan, 2 completed runs with curves,
    one imported point. Returns the runs."""
    runs = plan("old", config.load([]))
    root.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / "sweep.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1_DDL)
    db.execute("BEGIN")
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO sweeps VALUES ('old', 1.0, '[]', '{}')")
    for i, r in enumerate(runs):
        done = i < 2
        db.execute(
            f"INSERT INTO runs (run_id, sweep, position, spec, {', '.join(V1_COLS)}, state, "
            "attempts, final_loss, final_train_loss, wall_seconds, tokens_done) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [r.run_id, "old", i, json.dumps(r.to_dict()), *(getattr(r, c) for c in V1_COLS),
             "completed" if done else "planned", int(done), 2.5 - 0.1 * i if done else None,
             2.4 if done else None, 10.0 if done else None, r.tokens if done else 0])
    rows = [(runs[k].run_id, s, (s + 1) * 1024, 6e3 * s, 3.0 - 1e-5 * s,
             2.9 if s == n_points - 1 else None, 1e-3, int(s == n_points - 1))
            for k in range(2) for s in range(n_points)]
    if orphan:
        rows.append(("w1-d1-gone-000000", 0, 1024, 1.0, 3.0, None, 1e-3, 0))
    db.executemany("INSERT INTO curves VALUES (?,?,?,?,?,?,?,?)", rows)
    db.execute("INSERT INTO external VALUES ('old', 1e6, 1e9, 2.2, 'x.csv', 'as given', 1.0)")
    db.execute("COMMIT")
    db.close()
    return runs


def raw(root, sql):
    db = sqlite3.connect(root / "sweep.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_v1_store_is_migrated_with_every_row(root):
    runs = make_v1(root)
    with Store(root) as st:
        assert st.schema_version() == SCHEMA_VERSION == 2
        assert st.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [r.run for r in st.runs("old")] == runs
        fin = st.finals_df(["old"])
        assert fin.run_id.tolist() == [runs[0].run_id, runs[1].run_id]
        assert fin.final_loss.tolist() == pytest.approx([2.5, 2.4])
        assert fin.epochs.isna().all()  # unknown for v1 runs
        c = st.curves_df(["old"])
        assert len(c) == 40 and c.eval_bpb.isna().all()
        assert c[c.run_id == runs[1].run_id].step.tolist() == list(range(20))
        assert c.end_of_schedule.sum() == 2 and c.eval_loss.dropna().tolist() == [2.9, 2.9]
        assert len(st.external_df(["old"])) == 1
        # the new columns and table work on the migrated store
        r = runs[2]
        st.start_attempt(r.run_id)
        st.add_points([CurvePoint(r.run_id, 0, 1024, 1.0, 3.0, 3.1, 1e-3, True, eval_bpb=4.47)])
        st.finish(TrainResult(r.run_id, 3.1, 3.0, r.tokens, r.steps, 1.0, 1.0, epochs=0.25))
        st.add_metrics(r.run_id, {"heldout_top1_acc": 0.31})
        assert st.finals_df(["old"]).epochs.tolist()[-1] == 0.25
        assert st.curves_df(["old"]).eval_bpb.dropna().tolist() == [4.47]
        m = st.metrics_df(["old"])
        assert m.to_dict("records") == [{
            "run_id": r.run_id, "sweep": "old", "name": "heldout_top1_acc", "value": 0.31,
            "params": r.params, "params_nonembed": r.params_nonembed, "tokens": r.tokens,
            "flops_6nd": r.flops_6nd, "final_loss": 3.1}]
    tables = {t for (t,) in raw(root, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"meta", "sweeps", "runs", "curves", "external", "metrics"}


def test_migrated_store_serves_the_cli(runner, root):
    make_v1(root)
    r = invoke(runner, ["status", "old", "--json"], root)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"] == {"completed": 2, "planned": 10}


def test_newer_store_refused_in_one_line(runner, root):
    make_v1(root)
    Store(root).close()
    db = sqlite3.connect(root / "sweep.db")
    db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    db.commit()
    db.close()
    r = invoke(runner, ["status", "old"], root)
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "schema version 3, newer than this sweep (2)" in lines[0]


def test_locked_store_migration_fails_and_keeps_v1(root):
    make_v1(root)
    holder = sqlite3.connect(root / "sweep.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreError, match="database is locked"):
            Store(root, timeout=0.3)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert raw(root, "SELECT value FROM meta") == [("1",)]
    assert raw(root, "SELECT COUNT(*) FROM curves WHERE run_id IS NOT NULL") == [(40,)]
    with Store(root) as st:  # the lock is gone: now it migrates
        assert st.schema_version() == 2 and len(st.curves_df()) == 40


def test_migration_that_would_lose_rows_rolls_back(root):
    make_v1(root, orphan=True)  # v1 accepted a curve row of a run not in `runs`
    with pytest.raises(StoreError, match="would lose 1 curve rows of runs not in the runs table"):
        Store(root)
    assert raw(root, "SELECT value FROM meta") == [("1",)]
    tables = {t for (t,) in raw(root, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"meta", "sweeps", "runs", "curves", "external"}
    assert raw(root, "SELECT COUNT(*) FROM curves") == [(41,)]
    assert raw(root, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.slow
def test_sigkill_during_migration_leaves_v1(root):
    make_v1(root, n_points=60_000)  # 120k curve rows: the copy takes a while
    wal = root / "sweep.db-wal"
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys; from sweep.store import Store; Store(sys.argv[1])",
                             str(root)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # uncommitted migration pages reach the WAL
        if wal.exists() and wal.stat().st_size > 2_000_000:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    if raw(root, "SELECT value FROM meta") != [("1",)]:
        pytest.fail("the migration finished before the kill; make the v1 store bigger")
    assert raw(root, "PRAGMA integrity_check") == [("ok",)]
    assert raw(root, "SELECT COUNT(*) FROM curves") == [(120_000,)]
    with Store(root) as st:
        assert st.schema_version() == 2
        assert len(st.curves_df(["old"])) == 120_000
