"""Approach 3 options: Hoffmann's method, fixed parameters, bounds, weights, penalty, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweep.errors import FitError, InputError
from sweep.fit import fit_chinchilla, load_csv
from sweep.fit.hoffmann import hoffmann_grid

DATA = (Path(__file__).parents[2] / "../shared/data").resolve()


@pytest.fixture(scope="module")
def points240() -> pd.DataFrame:
    df = load_csv(DATA / "chinchilla_hoffmann2022_epoch.csv",
                  {"params": "Model Size", "flops": "Training FLOP"})
    return df.drop(df["loss"].nlargest(5).index).reset_index(drop=True)


def noisy(seed: int = 0, E: float = 1.8, A: float = 400.0, B: float = 2000.0,
          al: float = 0.34, be: float = 0.36) -> pd.DataFrame:
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6))
    n, d = n.ravel(), d.ravel()
    rng = np.random.default_rng(seed)
    loss = (E + A / n**al + B / d**be) * np.exp(rng.normal(0, 0.003, n.size))
    return pd.DataFrame({"params": n, "tokens": d, "loss": loss})


def test_hoffmann_method_converges(points240: pd.DataFrame) -> None:
    assert hoffmann_grid().shape == (4500, 5)
    fit = fit_chinchilla(points240, method="hoffmann", starts=8, bootstrap=0, validate=False)
    assert fit.method == "hoffmann"
    assert fit.objective <= 1.01828e-3
    assert fit.params["alpha"] == pytest.approx(0.3473, abs=0.005)
    assert fit.params["E"] == pytest.approx(1.8172, abs=0.01)


def test_chinchilla_method_objective(points240: pd.DataFrame) -> None:
    fit = fit_chinchilla(points240, bootstrap=0, validate=False)
    assert fit.method == "chinchilla" and fit.objective <= 1.01828e-3


def test_fixed_parameters(points240: pd.DataFrame) -> None:
    fit = fit_chinchilla(points240, bootstrap=0, validate=False, fixed={"E": 1.69})
    assert fit.params["E"] == pytest.approx(1.69, rel=1e-12)
    free = fit_chinchilla(points240, bootstrap=0, validate=False)
    assert fit.objective > free.objective
    fa = fit_chinchilla(points240, bootstrap=0, validate=False, fixed={"A": 406.4, "alpha": 0.34})
    assert fa.params["A"] == pytest.approx(406.4, rel=1e-9)
    assert fa.params["alpha"] == pytest.approx(0.34, rel=1e-12)


def test_bounds(points240: pd.DataFrame) -> None:
    fit = fit_chinchilla(points240, bootstrap=0, validate=False, bounds={"beta": (0.2, 0.3)})
    assert 0.2 <= fit.params["beta"] <= 0.3 + 1e-12
    assert any("bound of beta" in w for w in fit.warnings)


def test_weights_zero_drop_points() -> None:
    df = noisy()
    w = np.ones(len(df))
    w[:6] = 0.0
    a = fit_chinchilla(df, bootstrap=0, validate=False, weights=w)
    b = fit_chinchilla(df.iloc[6:], bootstrap=0, validate=False)
    assert a.objective == pytest.approx(b.objective, rel=1e-6)
    assert a.params["alpha"] == pytest.approx(b.params["alpha"], rel=1e-4)


def test_overestimation_penalty_lowers_predictions() -> None:
    df = noisy(1)
    base = fit_chinchilla(df, bootstrap=0, validate=False, delta=0.1)
    pen = fit_chinchilla(df, bootstrap=0, validate=False, delta=0.1, penalty=5.0)
    n, d = df["params"].to_numpy(), df["tokens"].to_numpy()
    over = lambda f: np.mean(f.loss(n, d) > df["loss"].to_numpy())  # noqa: E731
    assert over(pen) < over(base)


def test_bad_options() -> None:
    df = noisy()
    with pytest.raises(InputError):
        fit_chinchilla(df, fixed={"Q": 1.0})
    with pytest.raises(InputError):
        fit_chinchilla(df, bounds={"A": (1, 2)})
    with pytest.raises(InputError):
        fit_chinchilla(df, weights=[1.0, 2.0])
    with pytest.raises(InputError):
        fit_chinchilla(df, penalty=-1)
    with pytest.raises(FitError):
        fit_chinchilla(df, method="nope")


def test_validation_reports_coverage() -> None:
    fit = fit_chinchilla(noisy(2), bootstrap=100)
    v = fit.validation
    assert v is not None and {"covered", "covered_fraction", "mean_loss_ci95"} <= set(v)
    assert v["mean_abs_rel_error"] < 0.02


def test_narrow_compute_span_warns() -> None:
    n = np.geomspace(1e8, 1e9, 6)
    d = 2e10 / n ** 0.2
    loss = 1.8 + 400 / n**0.34 + 2000 / d**0.36
    fit = fit_chinchilla(pd.DataFrame({"params": n, "tokens": d, "loss": loss}), bootstrap=0)
    assert any(w.startswith("flops span only") for w in fit.warnings)
