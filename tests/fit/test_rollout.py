"""Law selection by rollout (sweep.fit.rollout): budgets, weights, intervals, selection."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweep.errors import FitError, InputError
from sweep.fit.rollout import budget_levels, combine_weights, interval, select_law

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).parent))


def kaplan_grid(noise: float = 0.0) -> pd.DataFrame:
    """20 runs (4 sizes x 5 token budgets) from a Kaplan-form law."""
    n, d = np.meshgrid(np.geomspace(1e6, 3e8, 4), np.geomspace(1e8, 3e10, 5))
    n, d = n.ravel(), d.ravel()
    loss = 1.2 + ((8e7 / n) ** (0.3 / 0.25) + 4e8 / d) ** 0.25
    loss *= np.exp(noise * np.random.default_rng(0).standard_normal(n.size))
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(n.size)], "params": n,
                         "tokens": d, "loss": loss})


def test_budget_levels_snap_and_hold_enough_points():
    c = np.array([1e18, 1.05e18, 1e19, 1.02e19, 0.99e19, 1e20])
    assert budget_levels(c, min_held=1).tolist() == [0, 0, 1, 1, 1, 2]
    lv = budget_levels(c, min_held=3)  # the top budget alone is too small: merged down
    assert lv.tolist() == [0, 0, 1, 1, 1, 1]
    assert budget_levels(c[::-1], min_held=3).tolist() == lv[::-1].tolist()


def test_combine_weights():
    e = {"a": 0.01, "b": 0.02, "c": math.nan}
    assert combine_weights(e, "best") == {"a": 1.0, "b": 0.0}
    s = combine_weights(e, "softmax")
    assert s["a"] == pytest.approx(1 / (1 + math.exp(-1)))
    assert combine_weights(e, "inverse")["a"] == pytest.approx(2 / 3)
    with pytest.raises(InputError):
        combine_weights(e, "median")


def test_interval_adds_out_of_sample_error_in_quadrature():
    pred = np.array([2.0])
    lo, hi = interval(pred, None, 0.01)
    assert lo[0] == pytest.approx(2 * math.exp(-1.959964 * 0.01))
    draws = 2.0 * np.exp(np.linspace(-0.02, 0.02, 1001))[:, None]
    lo, hi = interval(pred, draws, 0.01)
    half = math.hypot(0.02 * 0.95, 1.959964 * 0.01)
    assert math.log(hi[0] / 2) == pytest.approx(half, rel=1e-3)
    assert math.log(2 / lo[0]) == pytest.approx(half, rel=1e-3)


def test_selects_the_law_that_generated_the_data():
    sel = select_law(kaplan_grid(), combine="best", bootstrap=20, rollout_bootstrap=20)
    assert sel.choice == "kaplan" and sel.weights["kaplan"] == 1.0
    inv = select_law(kaplan_grid(), bootstrap=20, rollout_bootstrap=20)  # default: inverse
    assert inv.choice == "weighted" and inv.weights["kaplan"] > 0.99
    tab = sel.table.set_index("law")
    assert tab.loc["kaplan", "mean_abs_rel_error"] < 1e-4
    assert tab.loc["kaplan", "mean_abs_rel_error"] < tab.loc["chinchilla", "mean_abs_rel_error"]
    assert sel.nested_error <= sel.chinchilla_error
    assert len([s for s in sel.steps if not s["calibration_only"]]) >= 2
    d = sel.to_dict()
    assert d["choice"] == "kaplan" and set(d["auto_by_combine"]) == {"best", "softmax",
                                                                     "inverse"}


def test_weighted_average_and_calibrated_interval():
    sel = select_law(kaplan_grid(noise=0.005), combine="softmax", bootstrap=30,
                     rollout_bootstrap=30)
    assert sel.choice == "weighted" and sum(sel.weights.values()) == pytest.approx(1)
    loss, lo, hi = sel.predict([1e9, 3e9], [1e11, 2e11])
    assert (lo < loss).all() and (loss < hi).all()
    assert 0.0 <= sel.nested_coverage <= 1.0
    # the interval is at least as wide as the out-of-sample error says
    s = sum(w * sel.sigma[k] ** 2 for k, w in sel.weights.items()) ** 0.5
    assert (np.log(hi / loss) >= 1.959964 * s * (1 - 1e-9)).all()


def test_curve_law_is_a_candidate_when_curves_exist():
    from test_curve_law import sweep_curves

    cur = sweep_curves(noise=0.002)
    last = cur.sort_values("step").groupby("run_id").tail(1)
    pts = pd.DataFrame({"run_id": last["run_id"], "params": last["params"],
                        "tokens": last["tokens"], "loss": last["loss"]})
    sel = select_law(pts, ["chinchilla", "curve"], curves=cur, bootstrap=10,
                     rollout_bootstrap=10, min_held=2)
    tab = sel.table.set_index("law")
    assert tab.loc["curve", "mean_abs_rel_error"] < 0.01
    assert sel.weights["curve"] > 0.9  # the schedules differ: only the curve law sees them


def test_mpl_is_the_auto_whole_curve_candidate():
    from test_mpl_law import run

    from sweep.fit.rollout import fit_law

    cur = pd.concat([run(f"r{i}{j}", n, d, ("cosine", "wsd")[(i + j) % 2], noise=0.002,
                         seed=3 * i + j)
                     for i, n in enumerate((1e5, 2e5, 4e5, 8e5))
                     for j, d in enumerate((2e5, 4e5, 8e5, 1.6e6))], ignore_index=True)
    last = cur.sort_values("step").groupby("run_id").tail(1)
    pts = last[["run_id", "params", "tokens", "loss"]].reset_index(drop=True)
    sel, _ = fit_law(pts, "auto", curves=cur, bootstrap=5, rollout_bootstrap=5)
    tab = sel.table.set_index("law")
    assert "mpl" in tab.index and "curve" not in tab.index
    assert tab.loc["mpl", "mean_abs_rel_error"] < 0.01 and sel.weights["mpl"] > 0
    no_curves, _ = fit_law(pts, "auto", bootstrap=5, rollout_bootstrap=5)
    assert "mpl" not in set(no_curves.table["law"])


def test_too_few_budgets_is_a_fit_error():
    with pytest.raises(FitError, match="rollout"):
        select_law(kaplan_grid().head(8))
    with pytest.raises(InputError):
        select_law(kaplan_grid(), ["nope"])


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data absent")
def test_auto_beats_plain_chinchilla_on_a_shared_data_set():
    iso = pd.read_csv(DATA / "isoflops_multi_source.csv")
    g = iso[(iso["experiment"] == "llama_3__exp_loss") & ~iso["outlier"].astype(bool)]
    sel = select_law(g[["params", "tokens", "loss"]], bootstrap=30, rollout_bootstrap=30)
    assert sel.nested_error <= sel.chinchilla_error
    assert sel.nested_coverage >= 0.9


def test_fit_law_for_the_cli_and_the_fit_record_for_recommend():
    from test_laws import grid

    from sweep.fit.rollout import fit_law, to_fit

    df = grid(lambda n, d: 1.8 + 400 / n**0.34 + 2000 / d**0.37, noise=0.003)
    sel, preds = fit_law(df, "chinchilla", at=[(1e10, 2e12)], bootstrap=30)
    assert sel.choice == "chinchilla" and list(sel.table["law"]) == ["chinchilla"]
    (p,) = preds
    assert p["loss_lo95"] < p["loss"] < p["loss_hi95"]
    assert p["flops"] == pytest.approx(6 * 1e10 * 2e12)
    fit = to_fit(sel)
    assert fit.method == "chinchilla" and fit.samples.shape == (30, 5)
    assert fit.predict(1e10, 2e12).loss == pytest.approx(p["loss"], rel=1e-9)
    assert fit.validation["covered_fraction"] == sel.table["coverage"][0]
    kap, _ = fit_law(df, "kaplan", bootstrap=10)
    assert to_fit(kap) is None
    with pytest.raises(InputError):
        fit_law(df, "magic")


def test_too_few_budgets_fit_law_falls_back_unvalidated():
    from sweep.fit.rollout import fit_law, to_fit

    df = kaplan_grid().head(9)
    sel, (p,) = fit_law(df, "auto", at=[(3e8, 3e10)], bootstrap=20)
    assert sel.choice == "chinchilla" and not sel.steps and sel.weights == {"chinchilla": 1.0}
    assert sel.warnings[0].startswith("not rollout-validated")
    assert p["loss_lo95"] <= p["loss"] <= p["loss_hi95"]
    d = sel.to_dict()
    assert d["auto_mean_abs_rel_error"] is None and d["rollout"][0]["coverage"] is None
    fit = to_fit(sel)
    assert fit.validation is None and fit.warnings == sel.warnings
    kap, _ = fit_law(df, "kaplan", bootstrap=5)
    assert kap.choice == "kaplan" and to_fit(kap) is None


def test_selection_state_round_trip_predicts_the_same():
    import json

    from test_curve_law import sweep_curves

    from sweep.fit.law_state import from_state, to_state

    cur = sweep_curves(noise=0.002)
    last = cur.sort_values("step").groupby("run_id").tail(1)
    pts = pd.DataFrame({"run_id": last["run_id"], "params": last["params"],
                        "tokens": last["tokens"], "loss": last["loss"]})
    sel = select_law(pts, ["chinchilla", "kaplan", "curve"], curves=cur, bootstrap=8,
                     rollout_bootstrap=5, min_held=2)
    back = from_state(json.loads(json.dumps(to_state(sel))))
    n, d = np.array([3e6, 1e7]), np.array([8e6, 3e7])
    for a, b in zip(sel.predict(n, d), back.predict(n, d), strict=True):
        assert np.allclose(a, b, rtol=1e-12)
    assert back.to_dict() == sel.to_dict()


def test_momentum_matches_the_recursion():
    from sweep.fit.curve_law import momentum

    x = np.random.default_rng(0).normal(size=1000)
    ref, m = np.empty_like(x), 0.0
    for i, v in enumerate(x):
        m = 0.999 * m + v
        ref[i] = m
    assert np.allclose(momentum(x, 0.999, block=64), ref, rtol=1e-10, atol=1e-12)
