"""`sweep report`, `sweep next` → fit's prediction check, `sweep recommend --params/--loss`,
`sweep cost`, on a synthetic store (no training)."""

from __future__ import annotations

import json

import pytest

from sweep.report import figure_files
from sweep.store import Store
from .synth import finish_runs, invoke

REC_KEYS = {"compute", "params", "params_nonembed", "tokens", "flops", "predicted_loss",
            "predicted_loss_lo95", "predicted_loss_hi95", "model", "train", "conventions",
            "trust", "extrapolation", "warnings"}


def test_report_writes_page_and_every_figure(iso_sweep, tmp_path):
    out = tmp_path / "rep"
    r = invoke(["report", "iso", "--bootstrap", "40", "--out", str(out), "--json",
                "--hardware", "cpu", "--hardware", "h100"], iso_sweep)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    page = out / "index.html"
    assert res["html"] == str(page) and page.is_file()
    figs = figure_files(page)
    assert {f.name for f in figs} == {"loss_curves.png", "isoflop.png", "frontier.png",
                                      "residuals.png", "optimal.png"}
    for f in figs:
        assert f.is_file() and f.stat().st_size > 1000
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    for what in ("Kaplan 0.73/0.27", "compute-optimal", 'class="best"', "tCO2e", "H100",
                 "this machine"):
        assert what in text


def test_report_without_isoflop_budgets_says_so(root, monkeypatch, tmp_path):
    monkeypatch.setenv("SWEEP_CPU_PEAK", "1.5e11")
    from sweep import api

    api.plan_sweep("tok", ["model.widths=[32,64,96]", "budget.tokens=[2e5,4e5,8e5]"], root)
    finish_runs(root, "tok")
    r = invoke(["report", "tok", "--bootstrap", "20", "--out", str(tmp_path / "r")], root)
    assert r.exit_code == 0, r.output
    page = tmp_path / "r" / "index.html"
    assert "not isoFLOP budgets" in page.read_text()
    assert all(f.stat().st_size > 1000 for f in figure_files(page))
    assert "isoflop.png" not in [f.name for f in figure_files(page)]


def test_next_appends_a_run_and_fit_reports_how_it_landed(iso_sweep):
    with Store(iso_sweep) as st:
        before = {r.run.run_id for r in st.runs("iso")}
    r = invoke(["next", "iso", "--budget", "1e13", "--bootstrap", "40", "--json"], iso_sweep)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["added"] == 1 and out["reason"] == "compute-optimal"
    rid = out["runs"][0]["run_id"]
    p = out["predictions"][0]
    assert p["predicted_loss_lo95"] <= p["predicted_loss"] <= p["predicted_loss_hi95"]
    assert p["flops"] == pytest.approx(1e13, rel=0.05)
    with Store(iso_sweep) as st:
        recs = {r.run.run_id: r for r in st.runs("iso")}
    assert set(recs) - before == {rid} and recs[rid].state == "planned"
    assert rid in json.loads((iso_sweep / "iso" / "predictions.json").read_text())
    assert rid in (iso_sweep / "iso" / "plan.json").read_text()

    r = invoke(["fit", "iso", "--bootstrap", "20"], iso_sweep)
    assert f"prediction check: run {rid}" in r.stdout and "not measured yet" in r.stdout
    finish_runs(iso_sweep, "iso", only={rid}, seed=5)  # "launch": the law plus noise
    r = invoke(["fit", "iso", "--bootstrap", "20"], iso_sweep)
    assert r.exit_code == 0, r.output
    line = next(x for x in r.stdout.splitlines() if "prediction check" in x)
    assert "measured" in line and "not measured" not in line
    assert "21 points" in r.stdout  # the new run is part of the fit
    # again: already planned, nothing added
    r = invoke(["next", "iso", "--budget", "1e13", "--bootstrap", "40"], iso_sweep)
    assert r.exit_code == 0 and "predicted loss" in r.stdout


def test_recommend_by_params_and_loss_keeps_the_shared_json(iso_sweep):
    by_p = json.loads(invoke(["recommend", "iso", "--params", "3e5", "--bootstrap", "20",
                              "--json"], iso_sweep).stdout)
    assert set(by_p) == REC_KEYS
    assert by_p["flops"] == pytest.approx(by_p["compute"], rel=1e-9)
    by_l = json.loads(invoke(["recommend", "iso", "--loss", "3.2", "--bootstrap", "20",
                              "--json"], iso_sweep).stdout)
    assert set(by_l) == REC_KEYS and by_l["predicted_loss"] == pytest.approx(3.2, abs=0.05)
    r = invoke(["recommend", "iso", "--compute", "1e13", "--bootstrap", "20", "--hardware",
                "a100"], iso_sweep)
    assert r.exit_code == 0 and "expected" in r.stdout and "A100" in r.stdout
    r = invoke(["recommend", "iso", "--compute", "1e13", "--loss", "3"], iso_sweep)
    assert r.exit_code == 2 and "exactly one" in r.stderr
    r = invoke(["recommend", "iso", "--loss", "1.0", "--bootstrap", "0"], iso_sweep)
    assert r.exit_code == 1 and "floor" in r.stderr and "Traceback" not in r.stderr


def test_cost_of_the_study(iso_sweep):
    r = invoke(["cost", "iso", "--json", "--compute", "1e15"], iso_sweep)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["hardware"][0]["rows"]
    assert rows[0]["basis"] == "measured" and rows[1]["basis"] == "predicted"
    assert rows[0]["device_hours"] == pytest.approx(rows[0]["flops"] / 2e9 / 3600, rel=1e-6)
