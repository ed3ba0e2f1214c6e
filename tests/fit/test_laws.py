"""Candidate laws (sweep.fit.laws): recovery, convergence, log-space safety, the reference fit."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from sweep.errors import FitError
from sweep.fit.laws import LAWS, Problem, get_law, huber, newton, resample_counts

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def grid(loss_fn, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    n, d = np.meshgrid(np.geomspace(1e6, 1e9, 5), np.geomspace(1e8, 1e11, 5))
    n, d = n.ravel(), d.ravel()
    loss = loss_fn(n, d) * np.exp(noise * np.random.default_rng(seed).standard_normal(n.size))
    return pd.DataFrame({"params": n, "tokens": d, "loss": loss})


def test_equal_exponent_law_recovers_its_parameters():
    df = grid(lambda n, d: 1.7 + 400 / n**0.3 + 900 / d**0.3)
    f = LAWS["chinchilla-equal"].fit(df)
    assert f.converged
    assert f.params["alpha"] == pytest.approx(0.3, rel=1e-4)
    assert f.params["E"] == pytest.approx(1.7, rel=1e-4)
    assert f.params["A"] == pytest.approx(400, rel=1e-3)
    assert np.allclose(f.predict(df["params"], df["tokens"]), df["loss"], rtol=1e-6)


def test_kaplan_law_recovers_its_parameters():
    def law(n, d):
        return 1.2 + ((8e7 / n) ** (0.3 / 0.25) + 4e8 / d) ** 0.25

    f = LAWS["kaplan"].fit(grid(law))
    assert f.converged
    for k, v in {"E": 1.2, "alpha_N": 0.3, "alpha_D": 0.25, "N_c": 8e7, "D_c": 4e8}.items():
        assert f.params[k] == pytest.approx(v, rel=2e-3), k


@pytest.mark.parametrize("name", ["chinchilla-equal", "kaplan"])
def test_no_random_start_beats_the_fit(name):
    """Convergence: L-BFGS-B from 8 random starts never finds a lower objective."""
    df = grid(lambda n, d: 1.9 + 300 / n**0.35 + 2000 / d**0.4, noise=0.01, seed=3)
    law = LAWS[name]
    f = law.fit(df)
    prob = Problem(df, 1e-3)
    lo, hi = law.bounds(prob.z)

    def objective(th):
        zh, jac = law.logpred(th[None], prob.x, prob.y)
        f, psi = huber(zh - prob.z, prob.w[None], 1e-3)
        return float(f[0]), jac[0].T @ psi[0]

    rng = np.random.default_rng(0)
    for _ in range(8):
        th0 = f.theta + rng.normal(0, 0.3, f.theta.size) * np.maximum(1, np.abs(f.theta))
        r = minimize(objective, np.clip(th0, lo, hi), jac=True,
                     method="L-BFGS-B", bounds=list(zip(lo, hi)),
                     options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 3000})
        assert r.fun >= f.objective * (1 - 1e-6)


def test_forms_stay_finite_far_outside_the_data():
    df = grid(lambda n, d: 1.7 + 400 / n**0.3 + 900 / d**0.32)
    for law in LAWS.values():
        f = law.fit(df)
        with np.errstate(all="raise"):
            p = f.predict([1e-3, 1e3, 1e30, 1e200], [1e200, 1e-3, 1e30, 1.0])
        assert np.isfinite(p).all() and (p > 0).all(), law.name


def test_bootstrap_is_paired_with_chinchillas_and_warm_started():
    df = grid(lambda n, d: 1.7 + 400 / n**0.3 + 900 / d**0.32, noise=0.005)
    c = resample_counts(len(df), 7, seed=4)
    assert c.shape == (7, len(df)) and (c.sum(1) == len(df)).all()
    draws = [LAWS[k].fit(df, bootstrap=20, seed=1).predict_draws(1e10, 1e12)
             for k in ("chinchilla", "chinchilla-equal")]
    assert all(d.shape == (20, 1) for d in draws)
    assert np.corrcoef(draws[0][:, 0], draws[1][:, 0])[0, 1] > 0.5  # same resamples


def test_too_few_points_and_unknown_law_are_fit_errors():
    df = grid(lambda n, d: 2 + 0 * n).head(4)
    with pytest.raises(FitError):
        LAWS["kaplan"].fit(df)
    with pytest.raises(FitError, match="unknown law"):
        get_law("nope")


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data absent")
def test_chinchilla_reference_through_the_law_interface():
    c = pd.read_csv(DATA / "chinchilla_hoffmann2022_epoch.csv")
    df = pd.DataFrame({"params": c["Model Size"], "loss": c["loss"]})
    df["tokens"] = c["Training FLOP"] / (6 * df["params"])
    df = df.sort_values("loss").iloc[:-5]
    f = LAWS["chinchilla"].fit(df)
    assert f.objective == pytest.approx(1.018274e-3, rel=1e-6)
    assert (round(f.params["alpha"], 4), round(f.params["beta"], 4),
            round(f.params["E"], 4)) == (0.3473, 0.3672, 1.8172)
    eq = LAWS["chinchilla-equal"].fit(df)
    assert f.objective <= eq.objective  # nested: one exponent cannot fit better
    assert eq.converged and 0.3473 < eq.params["alpha"] < 0.3672


@settings(deadline=None, max_examples=15)
@given(e=st.floats(0.5, 3.0), a=st.floats(50, 2000), b=st.floats(50, 5000),
       al=st.floats(0.15, 0.7), k=st.floats(0.01, 100))
def test_equal_law_recovery_and_rescaling(e, a, b, al, k):
    """Noise-free draws are recovered; scaling N by k leaves alpha and E alone; row order
    does not matter."""
    df = grid(lambda n, d: e + a / n**al + b / d**al)
    f = LAWS["chinchilla-equal"].fit(df)
    assert f.params["alpha"] == pytest.approx(al, rel=1e-3)
    assert f.params["E"] == pytest.approx(e, rel=1e-3)
    g = LAWS["chinchilla-equal"].fit(df.assign(params=df["params"] * k).iloc[::-1])
    assert g.params["alpha"] == pytest.approx(f.params["alpha"], rel=1e-4)
    assert g.params["E"] == pytest.approx(f.params["E"], rel=1e-4)


@pytest.mark.parametrize("name", list(LAWS))
def test_exact_curvature_matches_central_differences(name):
    """Each form's closed-form sum_i c_i Hess ln L_hat_i against differences of its Jacobian."""
    df = grid(lambda n, d: 1.9 + 300 / n**0.35 + 2000 / d**0.4, noise=0.01, seed=3)
    law, prob = LAWS[name], Problem(df, 1e-3)
    rng = np.random.default_rng(0)
    th = law.fit(df).theta[None] + 0.05 * rng.standard_normal((3, law.n_params))
    c = rng.standard_normal((3, prob.n))
    h = law.curvature(th, prob.x, prob.y, c, law.logpred(th, prob.x, prob.y)[1])
    fd = np.zeros_like(h)
    for k in range(law.n_params):
        e = np.zeros(law.n_params)
        e[k] = 1e-6
        dj = law.logpred(th + e, prob.x, prob.y)[1] - law.logpred(th - e, prob.x, prob.y)[1]
        fd[:, :, k] = np.einsum("bn,bnp->bp", c, dj / 2e-6)
    assert np.allclose(h, h.transpose(0, 2, 1), rtol=0, atol=1e-12)
    assert np.abs(h - fd).max() <= 1e-7 * np.abs(fd).max()


@pytest.mark.parametrize("name", list(LAWS))
def test_exact_and_difference_hessians_reach_the_same_fit(name):
    """The Hessian only changes the path: both converge to the same parameters."""
    df = grid(lambda n, d: 1.9 + 300 / n**0.35 + 2000 / d**0.4, noise=0.01, seed=5)
    fits = []
    for exact in (True, False):
        law = copy.copy(LAWS[name])
        law.exact_hessian = exact
        fits.append(law.fit(df))
    assert fits[0].converged and fits[1].converged
    for k, v in fits[0].params.items():
        assert fits[1].params[k] == pytest.approx(v, rel=1e-6), k


def test_newton_evaluates_the_hessian_once_per_point_visited():
    """A rejected step keeps the row's Hessian: no theta is differentiated twice."""
    df = grid(lambda n, d: 1.9 + 300 / n**0.35 + 2000 / d**0.4, noise=0.01, seed=3)
    law, prob = LAWS["chinchilla"], Problem(df, 1e-3)
    lo, hi = law.bounds(prob.z)
    seen = []

    def obj(th, w):
        zh, jac = law.logpred(th, prob.x, prob.y)
        f, psi = huber(zh - prob.z, w, 1e-3)
        return f, np.einsum("bnp,bn->bp", jac, psi)

    def hess(th, w):
        seen.extend(map(tuple, th))
        zh, jac = law.logpred(th, prob.x, prob.y)
        r = zh - prob.z
        return (np.matmul(jac.transpose(0, 2, 1) * (w * (np.abs(r) <= 1e-3))[:, None, :], jac)
                + law.curvature(th, prob.x, prob.y, w * np.clip(r, -1e-3, 1e-3), jac))

    starts = law.starts(prob)
    w = np.tile(prob.w, (len(starts), 1))
    th, f, ok = newton(obj, starts, w, lo, hi, np.full(len(starts), 1e-9 * prob.n * 1e-3), 300,
                       hess)
    assert ok.any() and len(seen) == len(set(seen))
    th_fd, f_fd, _ = newton(obj, starts, w, lo, hi, np.full(len(starts), 1e-9 * prob.n * 1e-3),
                            300)
    assert f[ok] == pytest.approx(f_fd[ok], rel=1e-9)
