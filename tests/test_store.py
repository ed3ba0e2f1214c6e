import sqlite3

import pytest

from sweep import config
from sweep.errors import DataError, StoreError
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
        _, counts = _plan(st, overrides=["model.widths=[32,64]"], force=True)
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
    with Store(root) as st, pytest.raises(StoreError, match="unknown sweep 'nope'"):
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


def test_metrics_upsert_and_frame(root):
    with Store(root) as st:
        runs, _ = _plan(st)
        a, b = runs[0], runs[1]
        st.add_metrics(a.run_id, {"heldout_top1_acc": 0.25, "task_x": 0.5})
        st.add_metrics(a.run_id, {"heldout_top1_acc": 0.3})  # replaces
        st.add_metrics(b.run_id, {"heldout_top1_acc": 0.4})
        m = st.metrics_df(["s"])
        assert list(m.columns) == ["run_id", "sweep", "name", "value", "params",
                                   "params_nonembed", "tokens", "flops_6nd", "final_loss"]
        assert sorted(zip(m.run_id, m.name, m.value)) == sorted(
            [(a.run_id, "heldout_top1_acc", 0.3), (a.run_id, "task_x", 0.5),
             (b.run_id, "heldout_top1_acc", 0.4)])
        only = st.metrics_df(["s"], metrics=["task_x"])
        assert only.name.tolist() == ["task_x"] and only.params.tolist() == [a.params]
        assert st.metrics_df(["other"]).empty
        for bad, match in (({"": 1.0}, "non-empty"), ({"x": float("nan")}, "finite"),
                           ({"x": "high"}, "finite")):
            with pytest.raises(DataError, match=match):
                st.add_metrics(a.run_id, bad)
        with pytest.raises(StoreError, match="unknown run 'nope'"):
            st.add_metrics("nope", {"x": 1.0})
        assert len(st.metrics_df()) == 3


def test_import_curves_bulk_matches_add_points(root):
    import numpy as np
    import pandas as pd

    with Store(root) as st:
        runs, _ = _plan(st)
        a, b = runs[0].run_id, runs[1].run_id
        pts = [CurvePoint(a, s, (s + 1) * 1024, 6.0 * (s + 1), 3.0 - 0.01 * s,
                          2.9 if s % 3 == 0 else None, 1e-3 / (s + 1), s == 9,
                          eval_bpb=4.2 if s % 3 == 0 else None) for s in range(10)]
        st.add_points(pts)
        live = st.curves_df(["s"])
        st.start_attempt(a)  # clears the curve
        df = live.drop(columns=["sweep"])
        assert st.import_curves(df) == 10
        pd.testing.assert_frame_equal(st.curves_df(["s"]), live)
        # a second run with only the required columns; rows replace by (run, step)
        n = st.import_curves(pd.DataFrame({"run_id": [b] * 3, "step": [0, 1, 1],
                                           "tokens": [1, 2, 3], "flops": [1.0, 2.0, 3.0]}))
        c = st.curves_df(["s"])
        got = c[c.run_id == b]
        assert n == 3 and got.step.tolist() == [0, 1] and got.tokens.tolist() == [1, 3]
        assert got.train_loss.isna().all() and not got.end_of_schedule.any()
        assert st.runs_df(["s"]).set_index("run_id").tokens_done[b] == 3
        # bad input changes nothing
        for bad, err, match in (
                (df.drop(columns=["flops"]), DataError, "no 'flops' column"),
                (df.assign(flops=np.where(df.step == 5, np.nan, df.flops)), DataError,
                 "missing step, tokens or flops"),
                (df.assign(step=np.where(df.step == 5, np.nan, df.step)), DataError,
                 "'step' is not numeric integers"),
                (df.assign(run_id="ghost"), StoreError, "unknown run 'ghost'"),
                (df.assign(run_id=None), DataError, "without a run_id")):
            with pytest.raises(err, match=match):
                st.import_curves(bad)
        assert len(st.curves_df(["s"])) == 12
        assert st.import_curves(df.iloc[:0]) == 0


def test_add_points_unknown_run_is_refused(root):
    with Store(root) as st:
        _plan(st)
        with pytest.raises(StoreError, match="unknown run 'ghost'"):
            st.add_points([CurvePoint("ghost", 0, 1, 1.0, 3.0, None, 1e-3)])
        assert len(st.curves_df()) == 0


def test_add_import_is_keyed_by_content(root):
    import pandas as pd

    from sweep.store_imports import content_sha256

    df = pd.DataFrame({"params": [1e6, 2e6, 4e6], "tokens": [2e7, 4e7, 8e7],
                       "loss": [3.1, 2.9, 2.7]})
    with Store(root) as st:
        st.ensure_sweep("x")
        rec, added = st.add_import("x", df, path="a.csv", params_convention="total",
                                   flops_convention="6nd", lines=[2, 4, 5])
        assert added and rec.rows == 3 and rec.sha256 == content_sha256(
            zip(df.params, df.tokens, df.loss))
        # the same rows in another order, from another file: the same import, nothing written
        again, added = st.add_import("x", df.iloc[::-1], path="b.csv", params_convention="total",
                                     flops_convention="6nd")
        assert not added and again == rec
        assert len(st.external_df(["x"])) == 3
        # one row different: a new import; another sweep: its own import
        other = df.assign(loss=[3.1, 2.9, 2.6])
        assert st.add_import("x", other, path="c.csv", params_convention="nonembed",
                             flops_convention="attn")[1]
        st.ensure_sweep("y")
        assert st.add_import("y", df, path="a.csv", params_convention="total",
                             flops_convention="6nd")[1]
        ext = st.external_df(["x"])
        assert ext.line.tolist()[:3] == [2, 4, 5] and ext.import_id.nunique() == 2
        assert ext.params_convention.tolist() == ["total"] * 3 + ["nonembed"] * 3
        assert ext.flops_convention.tolist() == ["6nd"] * 3 + ["attn"] * 3
        summary = st.import_summary("x")
        assert [(d["file"], d["rows"]) for d in summary] == [("a.csv", 3), ("c.csv", 3)]
        assert set(summary[0]) == {"file", "rows", "params_convention", "flops_convention",
                                   "sha256", "created", "ranges"}
        assert summary[0]["ranges"]["flops"] == pytest.approx([6 * 1e6 * 2e7, 6 * 4e6 * 8e7])
        assert summary[1]["ranges"]["loss"] == [2.6, 3.1]
        with pytest.raises(StoreError, match="unknown sweep 'z'"):
            st.add_import("z", df, path="a.csv", params_convention="total",
                          flops_convention="6nd")


def test_sweep_summaries_count_runs_and_imports(root):
    import pandas as pd

    with Store(root) as st:
        runs, _ = _plan(st)
        st.start_attempt(runs[0].run_id)
        st.fail(runs[0].run_id, "boom")
        st.ensure_sweep("imp")
        st.add_import("imp", pd.DataFrame({"params": [1e6], "tokens": [1e7], "loss": [3.0]}),
                      path="f.csv", params_convention="total", flops_convention="6nd")
        assert st.sweep_summaries() == [
            {"sweep": "imp", "counts": {}, "runs": 0, "imported": 1, "imports": 1},
            {"sweep": "s", "counts": {"failed": 1, "planned": 11}, "runs": 12, "imported": 0,
             "imports": 0}]
