"""Diagnostics travel (issue 12): trust, extrapolation and warnings on every recommendation,
unreachable targets refused, imported sweeps without a shape, report axes within 10× of the
data, one fit per command. Synthetic stores (tests/report/synth.py), no training."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sweep import api, study
from sweep.errors import FitError, InputError
from sweep.recommend import recommend_for, recommendation_text
from sweep.report import render
from sweep.report_data import ReportData
from sweep.store import Store

from .synth import finish_runs, invoke, law

TINY = ["model.widths=[32,64,96]", "budget.tokens=[5e4,1e5,2e5]"]  # the newcomer's t1 grid


TINY_LAW = {"E": 1.5, "A": 28.0, "B": 44.0, "alpha": 0.35, "beta": 0.35}  # 2.5-3.3 nats/token


@pytest.fixture
def tiny(root, monkeypatch):
    """t1: 3 widths × 3 token budgets at losses a byte-level model reaches (below ln 256)."""
    from . import synth

    monkeypatch.setenv("SWEEP_CPU_PEAK", "1.5e11")
    for k, v in TINY_LAW.items():
        monkeypatch.setitem(synth.LAW, k, v)
    api.plan_sweep("t1", TINY, root)
    finish_runs(root, "t1")
    return root


@pytest.fixture
def imported(root, tmp_path):
    """A sweep of imported points only (no planned runs, so no shape rule)."""
    from sweep import io

    n, d = np.meshgrid(np.geomspace(1e6, 1e8, 5), np.geomspace(2e8, 2e10, 5))
    df = pd.DataFrame({"params": n.ravel(), "tokens": d.ravel()})
    df["loss"] = [law(a, b) for a, b in zip(df["params"], df["tokens"], strict=True)]
    df.to_csv(tmp_path / "points.csv", index=False)
    with Store(root) as store:
        io.import_csv(store, "imp", str(tmp_path / "points.csv"))
    return root


def test_recommendation_carries_trust_and_fit_warnings(tiny):
    fit = study.sweep_fit("t1", tiny, bootstrap=40)
    r = recommend_for("t1", tiny, compute=1e13, fit=fit)
    assert r.trust == "extrapolated" and r.extrapolation > 10
    assert any(w.startswith("extrapolated past") for w in r.warnings)
    assert set(fit.warnings) <= set(r.warnings)
    d = r.to_dict()
    assert isinstance(d["warnings"], list) and d["trust"] == "extrapolated"
    text = recommendation_text(r)
    loss_line = next(x for x in text.splitlines() if x.strip().startswith("loss"))
    assert "nats/token" in loss_line and "extrapolated ×" in loss_line


def test_unreachable_targets_are_refused_with_one_line(tiny):
    fit = study.sweep_fit("t1", tiny, bootstrap=40)
    pts = study.sweep_points("t1", tiny)
    worst = float(pts["loss"].max())
    with pytest.raises(InputError, match="already reached by run w"):
        recommend_for("t1", tiny, loss=worst, fit=fit)  # some run already got there
    with pytest.raises(FitError, match="floor"):
        recommend_for("t1", tiny, loss=0.9 * fit.params["E"], fit=fit)
    assert any(w.startswith("E is not identified") for w in fit.warnings)  # 9 runs: it is not
    with pytest.raises(FitError, match="floor is unknown"):
        recommend_for("t1", tiny, loss=0.97 * float(pts["loss"].min()), fit=fit)
    with pytest.raises(FitError, match="outside what the fit can say"):
        recommend_for("t1", tiny, params=100.0, fit=fit)  # below the smallest model
    with pytest.raises(InputError, match="less than one optimizer batch"):
        recommend_for("t1", tiny, compute=10.0, fit=fit)
    r = invoke(["recommend", "t1", "--loss", "10", "--bootstrap", "20"], tiny)
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert r.stderr.count("\n") == 1 and "already reached" in r.stderr


def test_imported_sweep_gives_n_and_d_only_and_reports(imported, tmp_path):
    r = recommend_for("imp", imported, compute=1e20, fit=study.sweep_fit("imp", imported,
                                                                         bootstrap=30))
    assert r.model is None and r.train is None
    assert r.flops == pytest.approx(1e20, rel=1e-9)
    assert "N and D only (no shape rule for imported data)" in recommendation_text(r)
    d = ReportData.collect("imp", imported, bootstrap=30)
    assert not d.has_shape and d.rec.model is None
    from sweep.report_page import write_report

    page = write_report(d, tmp_path / "rep").read_text()
    assert "N and D only" in page and "loss_curves.png" not in page


def _check_within_10x(ax_lim, data, log):
    lo, hi = ax_lim
    d = np.asarray(data, float)
    d = d[np.isfinite(d)]
    if log:
        assert lo >= d.min() / 10 * (1 - 1e-9) and hi <= d.max() * 10 * (1 + 1e-9), (ax_lim, d)
    else:
        span = max(d.max() - d.min(), 0.1 * abs(d.max()))
        assert lo >= d.min() - span - 1e-9 and hi <= d.max() + span + 1e-9, (ax_lim, d)
    assert lo <= d.min() and hi >= d.max()  # the data themselves are all visible


def test_report_axes_stay_within_10x_of_the_data(tiny):
    d = ReportData.collect("t1", tiny, bootstrap=40)
    figs = render(d)
    f = d.finals
    flops = [*f["flops_6nd"], d.target]
    n_rec = d.rec.flops / 6 / d.rec.tokens
    fr = figs["frontier.png"].axes[0]
    _check_within_10x(fr.get_xlim(), flops, log=True)
    _check_within_10x(fr.get_ylim(), [*f["final_loss"], d.rec.predicted_loss], log=False)
    assert float(f["final_loss"].max()) < math.log(256)
    assert fr.get_ylim()[1] <= math.log(256)  # never up to 1e21: the band is cut at ln(vocab)
    a_n, a_d = figs["optimal.png"].axes[:2]
    _check_within_10x(a_n.get_xlim(), flops, log=True)
    _check_within_10x(a_n.get_ylim(), [*f["params_fit"], n_rec], log=True)
    _check_within_10x(a_d.get_ylim(), [*f["tokens"], d.rec.tokens], log=True)
    cur = figs["loss_curves.png"].axes[0]
    _check_within_10x(cur.get_xlim(), d.curves["tokens"], log=True)
    res = figs["residuals.png"].axes[1]
    _check_within_10x(res.get_xlim(), f["flops_6nd"], log=True)
    assert set(d.limits) == set(figs)


def test_wide_intervals_are_never_bolded(tiny):
    d = ReportData.collect("t1", tiny, bootstrap=40)
    for x in d.allocation:
        if x.best:
            assert x.loss_hi95 <= 2 * x.loss_lo95 and x.trust != "outside"
    assert d.headline()[0].startswith("At C = ")
    assert any("trust:" in h for h in d.headline())


@pytest.mark.parametrize("args", [["recommend", "t1", "--compute", "1e12", "--json"],
                                  ["next", "t1", "--budget", "5e11", "--json"],
                                  ["report", "t1", "--json", "--hardware", "a100"]])
def test_one_fit_per_command(tiny, monkeypatch, args, tmp_path):
    calls = []
    real = study.sweep_fit

    def counting(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(study, "sweep_fit", counting)
    extra = ["--out", str(tmp_path / "r")] if args[0] == "report" else []
    r = invoke([*args, "--bootstrap", "30", *extra], tiny)
    assert r.exit_code == 0, r.output
    assert len(calls) == 1, calls
    out = json.loads(r.stdout)
    if args[0] == "next":
        p = out["predictions"][0]
        assert p["trust"] in ("inside", "extrapolated") and isinstance(p["warnings"], list)
    if args[0] == "report":
        assert out["trust"] in ("inside", "extrapolated", "outside")
        assert isinstance(out["warnings"], list) and out["headline"]


def test_next_informative_skips_outside_candidates_and_says_why(tiny):
    from sweep.diagnostics import load_study
    from sweep.informative import most_informative
    from sweep.plan import make_run

    st = load_study("t1", tiny, bootstrap=30)
    ok = make_run("t1", 64, 2, 4e5, st.cfg)
    tiny_model = make_run("t1", 16, 1, 4e5, st.cfg)  # below the smallest fitted model
    res = most_informative(st.fit, st.points, st.cfg, "t1", 1e13, 1e14, bootstrap=20,
                           runs=[ok, tiny_model])
    assert [c.run.run_id for c in res.candidates] == [ok.run_id]
    assert res.skipped and "below the smallest fitted model" in res.skipped[0]
    assert res.candidates[0].why.startswith("pins down")
