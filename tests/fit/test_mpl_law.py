"""Multi-power law (sweep.fit.mpl_law): the blocked LD against a direct loop of the paper's
formula, the bounded annealing gain, recovery from synthetic curves made by the loop, and the
fit cache round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sweep.fit.mpl_law import MplLaw, knots

# LR in units of the run's peak (MplLaw's default), areas in LR x tokens
TRUE = {"E": 1.6, "A_N": 25.0, "alpha_N": 0.3, "A": 40.0, "alpha": 0.35, "B": 0.4,
        "C": 2e-4, "beta": 0.8, "gamma": 0.5}


def lr_curve(steps: int, kind: str) -> np.ndarray:
    s = np.arange(steps)
    wu = max(int(0.05 * steps), 1)
    if kind == "cosine":
        after = 0.1 + 0.45 * (1 + np.cos(np.pi * (s - wu) / (steps - wu)))
    else:  # wsd
        after = np.where(s < 0.8 * steps, 1.0, 1 - 0.9 * (s - 0.8 * steps) / (0.2 * steps))
    return np.where(s < wu, (s + 1) / wu, after)


def direct_ld(eta, b, t, B, C, beta, gamma) -> float:
    """LD(t) = B sum_{k=1..t} (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)), a plain loop; the
    warmup is held at the peak (no decay before it)."""
    peak = int(np.argmax(eta))
    held = [eta[peak] if i < peak else eta[i] for i in range(len(eta))]
    tot, sk = 0.0, 0.0
    for k in range(t, 0, -1):  # S_k(t) = sum_{tau=k..t} eta_tau b_tau, built from t down
        sk += eta[k] * b[k]
        tot += (held[k - 1] - held[k]) * (1 - (C * held[k] ** -gamma * sk + 1) ** -beta)
    return B * tot


def direct_curve(n, eta, b, log, p=TRUE) -> np.ndarray:
    s1 = np.cumsum(eta * b)
    return np.array([p["E"] + p["A_N"] * n ** -p["alpha_N"] + p["A"] * s1[t] ** -p["alpha"]
                     - direct_ld(eta, b, t, p["B"], p["C"], p["beta"], p["gamma"])
                     for t in log])


def run(rid, n, d, kind, batch=2048, noise=0.0, seed=0) -> pd.DataFrame:
    steps = int(d / batch)
    eta = 2e-3 * lr_curve(steps, kind)  # absolute LR; the law works in units of the peak
    log = np.r_[np.arange(steps // 40, steps - 1, steps // 40), steps - 1]
    loss = direct_curve(n, eta / eta.max(), np.full(steps, float(batch)), log)
    loss = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(len(log)))
    return pd.DataFrame({"run_id": rid, "step": log, "tokens": (log + 1.0) * batch,
                         "params": n, "lr": eta[log], "loss": loss})


@pytest.fixture(scope="module")
def curves() -> pd.DataFrame:
    kinds = ("cosine", "wsd")
    return pd.concat([run(f"r{i}{j}", n, d, kinds[(i + j) % 2], seed=3 * i + j)
                      for i, n in enumerate((1e5, 4e5, 1.6e6))
                      for j, d in enumerate((4e5, 8e5, 1.6e6))], ignore_index=True)


@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_blocked_ld_matches_the_direct_loop(kind):
    eta, b = lr_curve(600, kind), np.full(600, 100.0)
    for t in (150, 420, 520, 599):  # WSD: 150 and 420 are before its decay (LD = 0)
        s1, dr, ek, sk = knots(eta, b, [t])
        for c, beta, gamma in ((1e-3, 0.5, 0.5), (1e-2, 2.0, 1.0)):
            blocked = (dr * (1 - (c * ek ** -gamma * sk + 1) ** -beta)).sum()
            ref = direct_ld(eta, b, t, 1.0, c, beta, gamma)
            assert blocked == pytest.approx(ref, rel=0.01, abs=1e-12)
        assert s1[0] == pytest.approx(np.sum(eta[: t + 1] * b[: t + 1]))


def test_annealing_gain_is_bounded_by_b_times_the_lr_drop():
    eta, b = lr_curve(800, "cosine"), np.full(800, 1e4)
    for c in (1e-6, 1e-2, 1e3):  # from the near-linear regime to saturation
        for t in (200, 799):
            ld = direct_ld(eta, b, t, 0.7, c, 1.5, 0.5)
            assert 0 < ld <= 0.7 * (eta.max() - eta[t]) + 1e-12
            s1, dr, ek, sk = knots(eta, b, [t])
            blocked = 0.7 * (dr * (1 - (c * ek ** -0.5 * sk + 1) ** -1.5)).sum()
            assert blocked <= 0.7 * (eta.max() - eta[t]) + 1e-12
    # saturated: the whole drop is gained
    assert direct_ld(eta, b, 799, 0.7, 1e9, 1.5, 0.0) == pytest.approx(
        0.7 * (eta.max() - eta[799]), rel=1e-3)


def test_recovers_the_curves_and_predicts_an_unseen_run(curves):
    fit = MplLaw(skip_frac=0.1).fit(curves=curves)
    assert fit.converged and fit.n_runs == 9
    own, _ = fit.predict_runs(curves.groupby("run_id").tail(1), curves)
    final = curves.groupby("run_id").tail(1)["loss"].to_numpy()
    assert np.abs(own / final - 1).max() < 2e-3
    for k in ("E", "alpha_N", "alpha"):
        assert fit.params[k] == pytest.approx(TRUE[k], rel=0.15), (k, fit.params)
    # an unseen, larger, longer cosine run (2x the largest D) on its own schedule
    new = run("new", 8e5, 3.2e6, "cosine")
    pred, _ = fit.predict_runs(new.tail(1), new)
    assert pred[0] == pytest.approx(new["loss"].iloc[-1], rel=0.01)


def test_absolute_lr_mode_and_bootstrap_draws(curves):
    fit = MplLaw(relative=False, skip_frac=0.1).fit(curves=curves, bootstrap=8, seed=1)
    assert not fit.relative and fit.samples.shape == (8, 9)
    draws = fit.predict_draws([4e5], [1.6e6])
    assert draws.shape == (8, 1) and np.all(np.isfinite(draws))


def test_round_trip_through_the_fit_cache(curves):
    from sweep.fit import law_state
    from sweep.fit.rollout import unvalidated

    pts = curves.groupby("run_id").tail(1)[["run_id", "params", "tokens", "loss"]]
    sel = unvalidated(pts.reset_index(drop=True), "mpl", "test", curves=curves, bootstrap=5)
    back = law_state.from_state(json.loads(json.dumps(law_state.to_state(sel))))
    assert type(back.fits["mpl"]).__name__ == "MplFit"
    n, d = np.array([2e5, 1e6]), np.array([1e6, 4e6])
    for a, b in zip(sel.predict(n, d), back.predict(n, d), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_small_nnls_is_exact():
    from scipy.optimize import nnls

    from sweep.fit.mpl_law import nnls_small

    rng = np.random.default_rng(0)
    m = rng.standard_normal((40, 25, 4)) * np.array([1.0, 10.0, 0.1, 3.0])
    y = rng.standard_normal(25)
    coef, rss = nnls_small(m, y)
    for g in range(len(m)):
        ref, rn = nnls(m[g], y)
        np.testing.assert_allclose(coef[g], ref, atol=1e-7)
        assert rss[g] == pytest.approx(rn**2, abs=1e-7)


def test_the_end_point_takes_the_eval_loss_and_sets_the_gap(curves):
    # eval loss logged at each run's end, 3 % below its train loss: the fit's held-out gap is
    # ln(0.97) against its own fitted train loss, and final predictions carry it
    cur = curves.copy()
    last = cur.groupby("run_id")["step"].transform("max") == cur["step"]
    cur["eval_loss"] = np.where(last, cur["loss"] * 0.97, np.nan)
    fit = MplLaw(skip_frac=0.1).fit(curves=cur)
    assert fit.gap == pytest.approx(np.log(0.97), abs=2e-3)
    ends = cur[last]
    pred, _ = fit.predict_runs(ends, cur)
    np.testing.assert_allclose(pred, ends["eval_loss"], rtol=3e-3)
