"""Schema migration: a real version-1 store (written with v1's DDL) and a real version-2 store
(dumped from the v2 code, tests/golden/store_v2.sql) are upgraded in place with every row kept; a
store newer than the code is refused; a failed migration leaves the old file usable."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

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
        assert st.schema_version() == SCHEMA_VERSION == 3
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
    assert tables == {"meta", "sweeps", "runs", "curves", "external", "metrics", "imports", "fits"}


def test_migrated_store_serves_the_cli(runner, root):
    make_v1(root)
    r = invoke(runner, ["status", "old", "--json"], root)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"] == {"completed": 2, "planned": 10}


def test_newer_store_refused_in_one_line(runner, root):
    make_v1(root)
    Store(root).close()
    db = sqlite3.connect(root / "sweep.db")
    db.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    db.commit()
    db.close()
    r = invoke(runner, ["status", "old"], root)
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "schema version 4, newer than this sweep (3)" in lines[0]


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
        assert st.schema_version() == 3 and len(st.curves_df()) == 40


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
        assert st.schema_version() == 3
        assert len(st.curves_df(["old"])) == 120_000


GOLDEN_V2 = Path(__file__).parent / "golden" / "store_v2.sql"
CHIN_MAP = "params=Model Size,flops=Training FLOP,loss=loss"


def make_v2(root):
    """The store the v2 code wrote (tests/golden/store_v2.sql): sweep 'nat' (4 runs planned, 3
    completed with 10 curve points each, one metric, 3 imported rows as 'with embeddings') and
    'chin' (the first 12 Chinchilla rows imported twice, as v2 allowed)."""
    root.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / "sweep.db")
    db.executescript(GOLDEN_V2.read_text())
    db.close()


def counts(root):
    return {t: raw(root, f"SELECT COUNT(*) FROM {t}")[0][0]
            for t in ("sweeps", "runs", "curves", "metrics", "external")}


def test_v2_store_is_migrated_with_every_row(root, runner, shared_data, tmp_path):
    make_v2(root)
    before = counts(root)
    assert raw(root, "SELECT value FROM meta") == [("2",)]
    assert before == {"sweeps": 2, "runs": 4, "curves": 30, "metrics": 1, "external": 27}
    with Store(root) as st:
        assert st.schema_version() == 3
        assert st.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert len(st.finals_df(["nat"])) == 3 and len(st.curves_df(["nat"])) == 30
        chin = st.imports("chin")
        assert [i.rows for i in chin] == [12, 12]
        assert chin[1].sha256 == chin[0].sha256 + "+copy2"  # v2's double import, kept, marked
        assert [(i.params_convention, i.flops_convention) for i in st.imports("nat")] == [
            ("with embeddings", "6nd")]
        ext = st.external_df(["chin", "nat"])
        assert len(ext) == 27 and ext.import_id.notna().all() and ext.line.isna().all()
        assert set(ext.flops_convention) == {"6nd"}
    assert counts(root) == before
    fits = [(r[1], r[2], r[3], r[5]) for r in raw(root, "PRAGMA table_info(fits)")]
    assert fits == [("key", "TEXT", 0, 1), ("sweep", "TEXT", 0, 0), ("created", "REAL", 1, 0),
                    ("payload", "TEXT", 1, 0)]
    # the same 12 rows again (the v2 importer's file) are recognised as imported: a no-op
    csv = tmp_path / "chin12.csv"
    csv.write_text("".join((shared_data / "chinchilla_hoffmann2022_epoch.csv").read_text()
                           .splitlines(keepends=True)[:13]))
    r = invoke(runner, ["import", "chin", str(csv), "--map", CHIN_MAP, "--json"], root)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["points"] == 0 and out["already_imported"] is True
    assert counts(root) == before


def test_failed_v2_migration_rolls_back_to_v2(root):
    make_v2(root)
    db = sqlite3.connect(root / "sweep.db")
    db.execute("CREATE TABLE imports (x)")  # in the way of the v3 step
    db.commit()
    db.close()
    before = counts(root)
    with pytest.raises(StoreError, match="table imports already exists"):
        Store(root)
    assert raw(root, "SELECT value FROM meta") == [("2",)]
    assert counts(root) == before
    cols = [r[1] for r in raw(root, "PRAGMA table_info(external)")]
    assert "import_id" not in cols and "line" not in cols
    assert raw(root, "PRAGMA integrity_check") == [("ok",)]
