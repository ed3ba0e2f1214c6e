"""Kaplan single-variable laws and the compute multiplier of one sweep over another."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweep.errors import FitError, InputError
from sweep.fit import fit_chinchilla
from sweep.fit.compare import compare
from sweep.fit.kaplan import fit_kaplan, frontier
from sweep.records import Fit


def law(x: np.ndarray, xc: float, al: float, e: float = 0.0, noise: float = 0.0,
        seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (e + (xc / x) ** al) * np.exp(rng.normal(0, noise, x.size))


@pytest.mark.parametrize("irreducible", [False, True])
def test_kaplan_recovers_law(irreducible: bool) -> None:
    n = np.geomspace(1e6, 1e10, 12)
    e = 1.5 if irreducible else 0.0
    df = pd.DataFrame({"params": n, "tokens": 1e10, "flops": 6e10 * n,
                       "loss": law(n, 8.8e13, 0.076 if not irreducible else 0.3, e)})
    f = fit_kaplan(df, "N", irreducible=irreducible, bootstrap=50)
    assert f.alpha == pytest.approx(0.076 if not irreducible else 0.3, rel=1e-4)
    assert f.E == pytest.approx(e, abs=1e-6)
    assert f.x_c == pytest.approx(8.8e13, rel=1e-3)
    assert f.ci95["alpha"][0] <= f.alpha <= f.ci95["alpha"][1]
    assert f.to_dict()["law"] == "L(N)"


def test_compute_frontier() -> None:
    df = pd.DataFrame({"params": [1, 1, 1, 1.0], "tokens": [1, 1, 1, 1.0],
                       "flops": [1e15, 2e15, 3e15, 4e15], "loss": [3.0, 3.2, 2.5, 2.6]})
    assert frontier(df)["flops"].tolist() == [1e15, 3e15]
    with pytest.raises(InputError):
        fit_kaplan(df, "X")
    with pytest.raises(FitError):
        fit_kaplan(df, "C")


def chin(E=1.8, A=400.0, B=2000.0, al=0.34, be=0.36) -> Fit:
    p = dict(E=E, A=A, B=B, alpha=al, beta=be)
    return Fit("chinchilla", 25, p, {}, 0.0, {"a": be / (al + be), "b": al / (al + be)})


def test_multiplier_of_scaled_law() -> None:
    a = chin()
    k = 3.0  # B(N, D) = A's law at (kN, kD): B matches A at k^2 times the compute
    b = chin(A=400.0 / k**0.34, B=2000.0 / k**0.36)
    res = compare(a, b, [1e18, 1e20, 1e22])
    np.testing.assert_allclose(res.multiplier, k**2, rtol=1e-6)
    same = compare(a, a, [1e18, 1e21])
    np.testing.assert_allclose(same.multiplier, 1.0, rtol=1e-6)
    assert res.to_dict()["method"] == "compare"


def test_multiplier_interval_and_floor() -> None:
    rng = np.random.default_rng(0)
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6))
    n, d = n.ravel(), d.ravel()
    base = 1.8 + 400 / n**0.34 + 2000 / d**0.36
    fa = fit_chinchilla(pd.DataFrame({"params": n, "tokens": d,
                                      "loss": base * np.exp(rng.normal(0, .003, n.size))}),
                        bootstrap=200, validate=False)
    fb = fit_chinchilla(pd.DataFrame({"params": n, "tokens": d,
                                      "loss": (base - 0.05) * np.exp(rng.normal(0, .003, n.size))}),
                        bootstrap=200, validate=False)
    res = compare(fa, fb, [1e19, 1e21])
    for m, lo, hi in zip(res.multiplier, res.multiplier_lo95, res.multiplier_hi95, strict=True):
        assert 1 < m and lo <= m <= hi
    low = compare(chin(), chin(E=1.0), [1e24])
    assert low.multiplier == [np.inf] and low.warnings
