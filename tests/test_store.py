import sqlite3

import pytest

from sweep import config
from sweep.errors import StoreError
from sweep.plan import plan
from sweep.records import CurvePoint, RunState, TrainResult
from sweep.store import SCHEMA_VERSION, Store


def _plan(store, name="s", overrides=(), force=False):
    cfg = config.load(list(overrides))
    runs = plan(name, cfg)
    return runs, store.put_plan(name, list(overrides), {}, runs, force=force)


def test_plan_roundtrip_and_idempotent(root):
    with Store(root) as st:
        runs, counts = _plan(st)
        assert counts == (12, 0, 0)
        assert _plan(st)[1] == (0, 12, 0)
        recs = st.runs("s")
        assert [r.run for r in recs] == runs
        assert all(r.state == RunState.PLANNED for r in recs)


def test_different_plan_needs_force_and_keeps_results(root):
    with Store(root) as st:
        runs, _ = _plan(st)
        st.start_attempt(runs[0].run_id)
        st.finish(TrainResult(runs[0].run_id, 2.0, 2.1, runs[0].tokens, runs[0].steps, 1.0, 1.0))
        with pytest.raises(StoreError, match="--force"):
            _plan(st, overrides=["model.widths=[64]"])
        assert len(st.runs("s")) == 12  # nothing changed
        new, counts = _plan(st, overrides=["model.widths=[32,64]"], force=True)
        assert counts == (0, 6, 6)
        assert len(st.runs("s")) == 6
        dropped = st.runs_df(["s"])
        assert (dropped["in_plan"] == 0).sum() == 6
        assert st.finals_df(["s"])["final_loss"].tolist() == [2.0]


def test_attempt_curve_finish(root):
    with Store(root) as st:
        runs, _ = _plan(st)
        r = runs[0]
        assert st.start_attempt(r.run_id, "job1") == 1
        st.add_points([CurvePoint(r.run_id, s, (s + 1) * 1024, 6.0 * (s + 1), 3.0, None, 1e-3)
                       for s in range(5)])
        assert st.runs("s")[0].tokens_done == 5 * 1024
        assert st.start_attempt(r.run_id) == 2  # a restart clears the partial curve
        assert len(st.curves_df(["s"])) == 0
        st.add_points([CurvePoint(r.run_id, 9, 10240, 1.0, 2.5, 2.6, 1e-4, True)])
        st.finish(TrainResult(r.run_id, 2.6, 2.5, r.tokens, r.steps, 3.0, 100.0))
        rec = st.runs("s")[0]
        assert rec.state == RunState.COMPLETED and rec.final_loss == 2.6 and rec.attempts == 2
        with pytest.raises(StoreError, match="already completed"):
            st.start_attempt(r.run_id)
        c = st.curves_df(["s"])
        assert list(c.columns[:3]) == ["sweep", "run_id", "step"] and bool(c.end_of_schedule[0])


def test_unknown_sweep(root):
    with Store(root) as st:
        with pytest.raises(StoreError, match="unknown sweep 'nope'"):
            st.runs("nope")
    with pytest.raises(StoreError, match="no sweep store"):
        Store(root / "elsewhere", create=False)


def test_newer_schema_refused(root):
    Store(root).close()
    db = sqlite3.connect(root / "sweep.db")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this sweep"):
        Store(root)


def test_corrupt_file_is_a_store_error(root):
    root.mkdir(parents=True)
    (root / "sweep.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        Store(root)
