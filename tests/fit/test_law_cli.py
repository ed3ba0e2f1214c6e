"""`sweep fit --law`, and recommend/next under a selected law (sweep.study_law), through click."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from sweep.cli import cli
from sweep.errors import FitError

sys.path.insert(0, str(Path(__file__).parent))


def chin(shared: Path) -> list[str]:
    return ["--data", str(shared / "chinchilla_hoffmann2022_epoch.csv"),
            "--map", "params=Model Size,flops=Training FLOP", "--drop-highest-loss", "5"]


def one_line_error(r, code: int = 2) -> str:
    assert r.exit_code == code, (r.exit_code, r.output)
    assert "Traceback" not in r.output and "internal error" not in r.output
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errs) == 1, r.stderr
    return errs[0]


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    """A 3 x 3 grid: too few budgets for a rollout."""
    n, d = np.meshgrid(np.geomspace(1e7, 1e9, 3), np.geomspace(1e9, 1e11, 3))
    p = tmp_path / "small.csv"
    pd.DataFrame({"params": n.ravel(), "tokens": d.ravel(),
                  "loss": 1.8 + 400 / n.ravel()**0.34 + 2000 / d.ravel()**0.36}
                 ).to_csv(p, index=False)
    return p


def test_law_auto_on_chinchilla_json_keys_and_beats_plain(shared_data: Path) -> None:
    args = ["fit", *chin(shared_data), "--bootstrap", "40", "--json"]
    plain = json.loads(CliRunner().invoke(cli, args).stdout)
    r = CliRunner().invoke(cli, [*args, "--law", "auto", "--at", "params=7e10,tokens=1.4e12"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(plain) <= set(d) and d["method"] == "auto" and d["n_points"] == 240
    sel = d["law_selection"]
    assert {"choice", "weights", "rollout", "auto_mean_abs_rel_error", "auto_coverage",
            "chinchilla_mean_abs_rel_error", "predicts_with", "fits", "warnings"} <= set(sel)
    assert {row["law"] for row in sel["rollout"]} == {"chinchilla", "chinchilla-equal", "kaplan"}
    assert sel["auto_mean_abs_rel_error"] <= sel["chinchilla_mean_abs_rel_error"]
    assert sel["auto_coverage"] >= 0.9
    assert d["validation"]["mean_abs_rel_error"] == sel["auto_mean_abs_rel_error"]
    (p,) = d["predictions"]
    assert p["loss_lo95"] < p["loss"] < p["loss_hi95"]
    assert p["trust"] == "extrapolated" and p["extrapolation"] > 1 and p["warnings"]
    assert set(d["params"]) == {"E", "A", "B", "alpha", "beta"} and d["allocation"]["a"] > 0


def test_law_chinchilla_is_the_plain_fit_byte_for_byte(shared_data: Path) -> None:
    args = ["fit", *chin(shared_data), "--bootstrap", "30", "--json",
            "--at", "params=7e10,tokens=1.4e12"]
    a = CliRunner().invoke(cli, args)
    b = CliRunner().invoke(cli, [*args, "--law", "chinchilla"])
    assert a.exit_code == b.exit_code == 0 and a.stdout == b.stdout
    d = json.loads(b.stdout)
    assert d["method"] == "chinchilla" and "law_selection" not in d
    assert d["params"]["alpha"] == pytest.approx(0.3473, abs=5e-4)
    assert d["params"]["beta"] == pytest.approx(0.3672, abs=5e-4)
    assert d["params"]["E"] == pytest.approx(1.8172, abs=5e-4)


def test_bad_law_options_are_one_line_errors(small_csv: Path) -> None:
    run = CliRunner().invoke
    base = ["fit", "--data", str(small_csv), "--bootstrap", "0"]
    assert "nope" in one_line_error(run(cli, [*base, "--law", "nope"]))
    assert "--law curve" in one_line_error(run(cli, [*base, "--law", "curve"]))
    assert "--fix" in one_line_error(run(cli, [*base, "--law", "auto", "--fix", "E=1"]))
    assert "--method" in one_line_error(run(cli, [*base, "--law", "kaplan", "--method",
                                                  "hoffmann"]))


def test_too_few_budgets_fall_back_to_chinchilla_unvalidated(small_csv: Path) -> None:
    r = CliRunner().invoke(cli, ["fit", "--data", str(small_csv), "--law", "auto",
                                 "--bootstrap", "20", "--at", "params=1e9,tokens=1e11"])
    assert r.exit_code == 0, r.output
    assert "NOT rollout-validated" in r.stdout and "predicts with: chinchilla" in r.stdout
    d = json.loads(CliRunner().invoke(cli, ["fit", "--data", str(small_csv), "--law", "auto",
                                            "--bootstrap", "20", "--json"]).stdout)
    assert d["validation"] is None and d["law_selection"]["choice"] == "chinchilla"
    assert d["warnings"][0].startswith("not rollout-validated")
    # the fallback is the plain law on the same points: the same prediction and interval
    at = ["--json", "--at", "params=1e9,tokens=1e11"]  # default resamples: 1000 vs the law's
    auto, plain = (json.loads(CliRunner().invoke(
        cli, ["fit", "--data", str(small_csv), *law, *at]).stdout)["predictions"][0]
        for law in (["--law", "auto"], []))
    for k in ("loss", "loss_lo95", "loss_hi95"):
        assert auto[k] == pytest.approx(plain[k], rel=1e-12), k


def test_sweep_law_auto_has_the_mpl_law_and_is_cached(tmp_path: Path) -> None:
    import synth_store

    root = tmp_path / "runs"
    synth_store.build(root, "syn", noise=0.003)
    args = ["fit", "syn", "--law", "auto", "--bootstrap", "20", "--json", "--root", str(root)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    sel = d["law_selection"]
    assert "mpl" in {row["law"] for row in sel["rollout"]} and not sel["cached"]
    again = json.loads(CliRunner().invoke(cli, args).stdout)["law_selection"]
    assert again["cached"] and again["weights"] == sel["weights"]
    plain = CliRunner().invoke(cli, ["fit", "syn", "--json", "--root", str(root)])
    assert json.loads(plain.stdout)["method"] == "chinchilla"  # the law never serves it


def test_sweep_law_mpl_fits_the_curves_and_refuses_a_table(tmp_path: Path, small_csv) -> None:
    import synth_store

    root = tmp_path / "runs"
    synth_store.build(root, "syn", noise=0.003)
    r = CliRunner().invoke(cli, ["fit", "syn", "--law", "mpl", "--bootstrap", "10", "--json",
                                 "--root", str(root), "--at", "params=3e6,tokens=3e8"])
    assert r.exit_code == 0, r.output
    sel = json.loads(r.stdout)["law_selection"]
    assert sel["choice"] == "mpl" and set(sel["fits"]["mpl"]) >= {"E", "B", "C", "gamma"}
    p = json.loads(r.stdout)["predictions"][0]
    assert 0 < p["loss_lo95"] <= p["loss"] <= p["loss_hi95"]
    text = CliRunner().invoke(cli, ["fit", "syn", "--law", "mpl", "--root", str(root)])
    assert text.exit_code == 0 and "mpl" in text.output
    assert "needs loss curves" in one_line_error(CliRunner().invoke(
        cli, ["fit", "--data", str(small_csv), "--law", "mpl"]))


def test_recommend_and_next_under_law_auto(tmp_path: Path) -> None:
    import synth_store

    from sweep.next_run import next_runs
    from sweep.recommend import recommend_for
    from sweep.study_law import sweep_law_fit

    root = tmp_path / "runs"
    synth_store.build(root, "syn", noise=0.003)
    r = recommend_for("syn", root, compute=3e13, law="auto", bootstrap=20)
    plain = recommend_for("syn", root, compute=3e13, bootstrap=20)
    assert r.predicted_loss_lo95 <= r.predicted_loss <= r.predicted_loss_hi95
    assert r.predicted_loss == pytest.approx(plain.predicted_loss, rel=0.05)
    assert r.trust in ("inside", "extrapolated")
    # the loss is the selection's own prediction (weighted when auto weights several laws)
    lf = sweep_law_fit("syn", root, law="auto", bootstrap=20,
                       at=[(r.params_nonembed, r.tokens)])
    assert r.predicted_loss == pytest.approx(lf.predictions[0].loss, rel=1e-12)
    res = next_runs("syn", 3e13, root, law="auto", bootstrap=20)
    assert res.added == 1 and res.predictions[0].predicted_loss > 0


def test_a_law_without_allocation_predicts_the_plain_fits_run(tmp_path: Path) -> None:
    import synth_store

    from sweep.next_run import next_runs
    from sweep.recommend import recommend_for
    from sweep.study_law import sweep_law_fit

    root = tmp_path / "runs"
    synth_store.build(root, "syn", noise=0.003)
    plain = recommend_for("syn", root, compute=3e13, bootstrap=20)
    r = recommend_for("syn", root, compute=3e13, law="kaplan", bootstrap=20)
    assert (r.params_nonembed, r.tokens, r.model) == (plain.params_nonembed, plain.tokens,
                                                      plain.model)
    lf = sweep_law_fit("syn", root, law="kaplan", bootstrap=20,
                       at=[(r.params_nonembed, r.tokens)])
    assert r.predicted_loss == pytest.approx(lf.predictions[0].loss, rel=1e-12)
    assert r.predicted_loss != pytest.approx(plain.predicted_loss, rel=1e-9)
    res = next_runs("syn", 3e13, root, law="kaplan", bootstrap=20)
    assert res.predictions[0].predicted_loss == pytest.approx(
        sweep_law_fit("syn", root, law="kaplan", bootstrap=20,
                      at=[(res.predictions[0].flops / (6 * res.runs[0].tokens),
                           res.runs[0].tokens)]).predictions[0].loss, rel=1e-6)


def test_the_cache_key_includes_the_law_and_keeps_the_plain_key(small_csv: Path) -> None:
    from sweep import study

    pts = study.csv_points(small_csv)
    df, _ = study._canonical(pts, study.FitOptions())
    keys = {law: study.fit_key(df, None, study.FitOptions(law=law))
            for law in ("chinchilla", "auto", "kaplan")}
    assert len(set(keys.values())) == 3
    assert keys["chinchilla"] == study.fit_key(df, None, study.FitOptions())
    with pytest.raises(FitError, match="study_law"):
        study.fit_points(pts, study.FitOptions(law="auto"))


def test_the_fit_for_recommend_has_the_rollout_widened_interval(tmp_path: Path) -> None:
    import synth_store

    from sweep.records import Fit
    from sweep.study_law import CalibratedFit, sweep_law_fit

    root = tmp_path / "runs"
    synth_store.build(root, "syn", noise=0.003)
    lf = sweep_law_fit("syn", root, law="chinchilla-equal", bootstrap=20)
    f = lf.fit
    assert isinstance(f, CalibratedFit) and f.method == "chinchilla-equal"
    assert f.sigma_log == pytest.approx(lf.sel.sigma["chinchilla-equal"]) and f.sigma_log > 0
    wide, raw = f.predict(4e5, 1.2e7), Fit.predict(f, 4e5, 1.2e7)
    assert wide.loss == raw.loss
    assert wide.loss_lo95 < raw.loss_lo95 and wide.loss_hi95 > raw.loss_hi95
    assert f.trust is not None and f.trust.params == lf.base.trust.params
