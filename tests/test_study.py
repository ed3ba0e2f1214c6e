"""sweep.study: points read in one place (conventions, validity, provenance), one cached fit per
(points, options), the same fit for `sweep fit NAME` and `sweep fit --data`; sweep.runs builds
the workers' environment instead of writing os.environ."""

from __future__ import annotations

import json
import math
import os
import sqlite3

import pandas as pd
import pytest

from conftest import invoke
from sweep import runs, study
from sweep.records import CurvePoint, TrainResult
from sweep.store import Store
from tests.report.synth import law  # the same known law as the report tests' sweeps

GRID = ["model.widths=[32,64,96]", "model.depths=[2]", "budget.tokens=[5e4,1e5,2e5]"]
FIT_KEYS = {"method", "n_points", "params", "ci95", "objective", "allocation", "predictions",
            "validation", "warnings", "conventions", "trust", "bootstrap"}
PRED_KEYS = {"params", "tokens", "flops", "loss", "loss_lo95", "loss_hi95", "trust",
             "extrapolation", "warnings"}
POINT_COLS = ["params", "tokens", "loss", "flops", "run_id", "source", "provenance", "valid"]


def finish(root, name: str, run_ids=None, *, end_eval: bool = True) -> list[str]:
    """Complete runs with a two-point curve following synth.law (N = params_nonembed); the last
    point is the end of the schedule, with a held-out loss unless ``end_eval`` is False."""
    done = []
    with Store(root) as store:
        for rec in store.runs(name):
            r = rec.run
            if rec.state == "completed" or (run_ids is not None and r.run_id not in run_ids):
                continue
            store.start_attempt(r.run_id, "synthetic")
            final = law(r.params_nonembed, r.tokens) * (1 + 0.002 * math.sin(len(done)))
            half = r.tokens // 2
            store.add_points([
                CurvePoint(r.run_id, r.steps // 2 - 1, half, 6.0 * r.params_nonembed * half,
                           final * 1.1, final * 1.1, r.lr),
                CurvePoint(r.run_id, r.steps - 1, r.tokens, r.flops_6nd, final,
                           final if end_eval else None, r.lr, end_of_schedule=True)])
            store.finish(TrainResult(r.run_id, final, final, r.tokens, r.steps, 1.0, 1.0))
            done.append(r.run_id)
    return done


@pytest.fixture
def small(root):
    """Sweep 'small': 3 widths × 3 budgets, 8 runs completed, the 9th planned."""
    runs.plan_sweep("small", GRID, root)
    with Store(root) as store:
        ids = [r.run.run_id for r in store.runs("small")]
    finish(root, "small", ids[:8])
    return root


def test_sweep_points_columns_validity_and_provenance(small, tmp_path):
    runs.plan_sweep("bad", GRID, small)
    with Store(small) as store:
        ids = [r.run.run_id for r in store.runs("bad")]
    finish(small, "bad", ids[:1], end_eval=False)  # final loss not a held-out end-of-schedule one
    finish(small, "bad", ids[1:6])
    pts = study.sweep_points("bad", small)
    assert list(pts.columns) == POINT_COLS and len(pts) == 6
    assert pts.loc[pts["run_id"] == ids[0], "valid"].tolist() == [False]
    assert pts["valid"].sum() == 5 and set(pts["source"]) == {"run"}
    assert (pts["provenance"] == pts["run_id"]).all()
    assert pts["flops"].tolist() == pytest.approx((6 * pts["params"] * pts["tokens"]).tolist())
    assert pts.attrs["conventions"]["params"].startswith("params_nonembed")
    total = study.sweep_points("bad", small, "total")
    assert (total["params"] > pts["params"]).all()  # embeddings counted
    # the invalid run does not enter the fit: 5 valid points, not 6
    assert study.sweep_fit("bad", small, bootstrap=0).n_points == 5

    csv = tmp_path / "ext.csv"
    pd.DataFrame({"params": [1e6, 2e6, 4e6], "tokens": [2e7, 4e7, 8e7],
                  "loss": [3.1, 2.9, 2.7]}).to_csv(csv, index=False)
    assert invoke_ok(["import", "small", str(csv)], small)
    pts = study.sweep_points("small", small)
    imp = pts[pts["source"] == "import"]
    assert len(pts) == 11 and len(imp) == 3 and imp["valid"].all()
    assert imp["provenance"].tolist() == ["ext.csv:2", "ext.csv:3", "ext.csv:4"]
    assert "imported points" in pts.attrs["conventions"]["params"]


def invoke_ok(args, root) -> bool:
    from click.testing import CliRunner

    r = invoke(CliRunner(), args, root)
    assert r.exit_code == 0, r.output
    return True


def test_fit_is_cached_until_a_run_completes(small, monkeypatch):
    from sweep.fit import chinchilla

    calls = []
    real = chinchilla.fit_chinchilla

    def counting(*a, **kw):
        calls.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(chinchilla, "fit_chinchilla", counting)
    from click.testing import CliRunner

    runner = CliRunner()
    args = ["fit", "small", "--bootstrap", "50", "--json", "--at", "params=1e6,tokens=1e8"]
    first = invoke(runner, args, small)
    assert first.exit_code == 0, first.output
    second = invoke(runner, args, small)
    assert second.stdout == first.stdout  # the identical JSON
    assert len(calls) == 1  # not refitted
    assert calls[0]["max_loss"] == pytest.approx(math.log(256)) and calls[0]["min_tokens"] > 0
    assert _cached(small) == 1
    # another --at is a prediction from the same cached fit, not a new fit
    r = invoke(runner, ["fit", "small", "--bootstrap", "50", "--json"], small)
    assert r.exit_code == 0 and len(calls) == 1
    assert json.loads(r.stdout)["params"] == json.loads(first.stdout)["params"]
    # different options: a new fit; then a new completed run: the points changed, a new fit
    invoke(runner, ["fit", "small", "--bootstrap", "40", "--json"], small)
    assert len(calls) == 2 and _cached(small) == 2
    finish(small, "small")
    third = invoke(runner, args, small)
    assert third.exit_code == 0 and len(calls) == 3 and _cached(small) == 3
    assert json.loads(third.stdout)["n_points"] == 9 == json.loads(first.stdout)["n_points"] + 1


def _cached(root) -> int:
    db = sqlite3.connect(root / "sweep.db")
    try:
        return db.execute("SELECT COUNT(*) FROM fits").fetchone()[0]
    finally:
        db.close()


def test_fit_json_carries_trust_and_text_prints_it(small):
    from click.testing import CliRunner

    r = invoke(CliRunner(), ["fit", "small", "--bootstrap", "30", "--json",
                             "--at", "params=1e7,tokens=1e9"], small)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d) == FIT_KEYS and set(d["predictions"][0]) == PRED_KEYS
    assert isinstance(d["warnings"], list)
    p = d["predictions"][0]
    assert p["trust"] == "extrapolated" and p["extrapolation"] > 100
    assert isinstance(p["warnings"], list) and p["warnings"]
    r = invoke(CliRunner(), ["fit", "small", "--bootstrap", "30", "--at",
                             "params=1e7,tokens=1e9"], small)
    line = next(ln for ln in r.stdout.splitlines() if "predict N=" in ln)
    assert "nats/token" in line and "extrapolated ×" in line


def test_sweep_and_csv_go_through_the_same_fit(small, tmp_path):
    """The sweep's points written to a CSV fit to the same numbers: one fitting path."""
    pts = study.sweep_points("small", small)
    csv = tmp_path / "pts.csv"
    pts.sample(frac=1.0, random_state=1)[["params", "tokens", "loss"]].to_csv(csv, index=False)
    a = study.sweep_fit("small", small, bootstrap=40)
    b = study.fit_csv(str(csv), bootstrap=40, seed=0)
    assert b.params == pytest.approx(a.params, rel=1e-9)
    assert b.ci95["alpha"] == pytest.approx(a.ci95["alpha"], rel=1e-9)  # row order: no effect
    assert a.trust is not None and a.trust.max_loss == pytest.approx(math.log(256))


def test_launch_passes_env_and_leaves_os_environ_alone(small, monkeypatch):
    from sweep.launch import local

    seen = {}

    class Fake:
        def __init__(self, root, sweep, jobs, threads_per_job, *, env=None, **slots):
            seen["env"] = env

        def submit(self, todo):
            seen["todo"] = [r.run_id for r in todo]
            return []

        def wait(self, jobs, tick=None):
            return {}

    for k in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_SILENT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the user's value wins
    monkeypatch.setattr(local, "LocalLauncher", Fake)
    before = dict(os.environ)
    res = runs.launch("small", small, progress=False)
    assert dict(os.environ) == before
    assert "WANDB_MODE" not in seen["env"]  # the user's WANDB_MODE stands: nothing added
    assert seen["env"]["WANDB_PROJECT"] and seen["env"]["WANDB_SILENT"] == "true"
    with Store(small) as store:
        cfg = study.sweep_config(store, "small")
    assert runs.worker_env(cfg, {}) == {
        "WANDB_MODE": "offline", "WANDB_PROJECT": seen["env"]["WANDB_PROJECT"],
        "WANDB_SILENT": "true"}
    assert len(seen["todo"]) == 1 and res.skipped == 8


def test_plan_file_written_atomically(root):
    runs.plan_sweep("p", GRID, root)
    plan = json.loads((root / "p" / "plan.json").read_text())
    assert len(plan) == 9 and not list((root / "p").glob("*.tmp*"))
