"""Whole-curve law (sweep.fit.curve_law): areas, recovery from synthetic curves, prediction of
an unseen run's final loss, bootstrap over runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweep.errors import FitError
from sweep.fit.curve_law import CurveLaw, areas, schedule

TRUE = {"E": 1.5, "A_N": 30.0, "alpha_N": 0.35, "B": 8.0, "beta": 0.4, "C": 2e-4}


def lr_curve(steps: int, peak: float, kind: str) -> np.ndarray:
    s = np.arange(steps)
    wu = max(int(0.05 * steps), 1)
    warm = peak * (s + 1) / wu
    if kind == "cosine":
        after = 0.1 * peak + 0.45 * peak * (1 + np.cos(np.pi * (s - wu) / (steps - wu)))
    elif kind == "wsd":
        after = np.where(s < 0.8 * steps, peak, peak * (1 - 0.99 * (s - 0.8 * steps)
                                                       / (0.2 * steps)))
    else:
        after = np.full(steps, peak)
    return np.where(s < wu, warm, after)


def run(rid: str, n: float, d: float, kind: str, batch: int = 4096, noise: float = 0.0,
        seed: int = 0) -> pd.DataFrame:
    steps = int(d / batch)
    eta = lr_curve(steps, 3e-3 * (1e5 / n) ** 0.2, kind)
    s1, s2 = areas(eta, np.full(steps, float(batch)))
    loss = TRUE["E"] + TRUE["A_N"] * n ** -TRUE["alpha_N"] + TRUE["B"] * s1 ** -TRUE["beta"] \
        - TRUE["C"] * s2
    loss = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(steps))
    log = np.r_[np.arange(9, steps - 1, 10), steps - 1]
    return pd.DataFrame({"run_id": rid, "step": log, "tokens": (log + 1.0) * batch,
                         "params": n, "lr": eta[log], "loss": loss[log]})


def sweep_curves(noise: float = 0.0) -> pd.DataFrame:
    kinds = ("cosine", "wsd", "constant")
    return pd.concat([run(f"r{i}{j}", n, d, kinds[(i + j) % 3], noise=noise, seed=3 * i + j)
                      for i, n in enumerate((1e5, 3e5, 1e6, 3e6))
                      for j, d in enumerate((2e6, 4e6, 8e6))], ignore_index=True)


def test_areas_constant_lr_and_a_single_drop():
    eta = np.full(100, 2e-3)
    s1, s2 = areas(eta, np.full(100, 10.0))
    assert s1[-1] == pytest.approx(2e-3 * 1000) and np.all(s2 == 0)
    eta[50:] = 1e-3  # one drop of 1e-3 at step 50: m_i = 1e-3 lambda^(i-50)
    s1, s2 = areas(eta, np.ones(100), lam=0.9)
    assert s2[-1] == pytest.approx(1e-3 * (1 - 0.9**50) / (1 - 0.9))


def test_warmup_is_not_annealing():
    # a warmup then a constant LR anneals nothing; a warmup then a decay only adds annealing
    for kind in ("constant", "cosine", "wsd"):
        eta = lr_curve(400, 1e-3, kind)
        s2 = areas(eta, np.ones(400))[1]
        assert np.all(s2 >= 0) and np.all(np.diff(s2) >= -1e-15), kind
        assert (s2[-1] == 0) == (kind == "constant"), kind


def test_schedule_rebuilds_the_lr_of_every_step():
    eta = lr_curve(400, 1e-3, "cosine")
    log = np.r_[np.arange(9, 399, 10), 399]
    rebuilt, b, idx = schedule(log, eta[log], (log + 1.0) * 64)
    assert len(rebuilt) == 400 and np.allclose(b, 64) and (idx == log).all()
    assert np.max(np.abs(rebuilt - eta)) < 0.01 * eta.max()


def test_recovers_the_law_from_synthetic_curves():
    f = CurveLaw().fit(curves=sweep_curves())
    assert f.converged and f.n_runs == 12
    for k, tol in {"E": 0.02, "alpha_N": 0.02, "A_N": 0.05, "beta": 0.05, "B": 0.1,
                   "C": 0.1}.items():
        assert f.params[k] == pytest.approx(TRUE[k], rel=tol), k


def test_predicts_an_unseen_larger_run_on_its_own_schedule():
    f = CurveLaw().fit(curves=sweep_curves(noise=0.003), bootstrap=30)
    new = run("x", 1e7, 1.6e7, "cosine")
    pred, draws = f.predict_runs(pd.DataFrame({"run_id": ["x"]}), new)
    assert pred[0] == pytest.approx(new["loss"].iloc[-1], rel=0.01)
    assert draws.shape == (30, 1)
    lo, hi = np.percentile(draws[:, 0], [2.5, 97.5])
    assert lo <= pred[0] <= hi
    # without a schedule: the template (longest run's shape, peak LR by size) is used
    assert np.isfinite(f.predict(1e7, 1.6e7)).all()


def test_too_few_runs_is_a_fit_error():
    with pytest.raises(FitError):
        CurveLaw().fit(curves=run("a", 1e5, 2e6, "cosine"))
    with pytest.raises(FitError, match="lack"):
        CurveLaw().fit(curves=sweep_curves().drop(columns="lr"))
