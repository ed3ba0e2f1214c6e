"""Approach 2 (isoFLOP parabolas): published exponents, synthetic truth, per-budget warnings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweep.errors import FitError, InputError
from sweep.fit.isoflop import fit_isoflop, fit_isoflops

DATA = (Path(__file__).parents[2] / "../shared/data").resolve()

# ../shared/README.md: Approach 2 exponent a on the non-outlier rows
EXPECTED_A = {
    "epochai_chinchilla__massivetext__chinchilla": 0.54,
    "ml_scalefit__massivetext__chinchilla": 0.54,
    "llama_3__exp_loss": 0.50,
    "llama_3__raw_loss": 0.50,
    "marin_202603__comma__llama_2": 0.435,
    "marin_202603__dclm__llama_2": 0.435,
    "marin_202603__nemotron__llama_2": 0.435,
    "misfitting__fineweb_c4__transformer": 0.52,
}


@pytest.fixture(scope="module")
def isoflops() -> pd.DataFrame:
    return pd.read_csv(DATA / "isoflops_multi_source.csv")


def test_published_exponents(isoflops: pd.DataFrame) -> None:
    fits = fit_isoflops(isoflops[~isoflops["outlier"]], bootstrap=200)
    assert set(fits) == set(EXPECTED_A)
    for exp, f in fits.items():
        tol = 0.02 + (0.005 if exp.startswith("marin") else 0.0)  # README gives 0.43-0.44
        assert f.a == pytest.approx(EXPECTED_A[exp], abs=tol), exp
        lo, hi = f.ci95["a"]
        assert lo <= f.a <= hi, exp
        d = f.to_dict()
        assert d["method"] == "isoflop" and "samples" not in d and d["allocation"]["a"] == f.a


def test_all_947_rows_with_bootstrap(isoflops: pd.DataFrame) -> None:
    """Every experiment of the shared table fits with 1000 bootstraps (its speed is measured by
    benchmarks/bench_fit.py, not asserted here)."""
    fits = fit_isoflops(isoflops, bootstrap=1000)
    assert len(fits) == isoflops["experiment"].nunique()


def synthetic(a: float = 0.5, seed: int = 0, noise: float = 0.002, k: int = 9) -> pd.DataFrame:
    """Parabolic isoFLOP profiles with N* = 0.1 * C^a and D = C / (6N)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in np.geomspace(1e18, 1e22, 5):
        n_opt = 0.1 * c**a
        n = n_opt * np.exp(np.linspace(-1.5, 1.5, k))
        loss = 2.0 + 0.05 * np.log(n / n_opt) ** 2 - 0.05 * np.log10(c)
        rows.append(pd.DataFrame({"params": n, "tokens": c / (6 * n), "budget": c,
                                  "loss": loss * np.exp(rng.normal(0, noise, k))}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("a", [0.4, 0.5, 0.6])
def test_recovers_synthetic_exponent(a: float) -> None:
    f = fit_isoflop(synthetic(a), bootstrap=300)
    assert f.a == pytest.approx(a, abs=0.01)
    assert f.a + f.b == pytest.approx(1.0, abs=1e-9)  # D* = C / (6 N*) exactly
    assert f.ci95["a"][0] < a < f.ci95["a"][1]
    opt = f.optimum(1e21)
    assert opt["params_lo95"] < opt["params"] < opt["params_hi95"]
    assert 6 * opt["params"] * opt["tokens"] == pytest.approx(1e21, rel=1e-6)


def test_budget_warnings() -> None:
    df = synthetic(noise=0.0)
    c = sorted(df["budget"].unique())
    edge = df[(df["budget"] == c[1]) & (df["params"] > 0.1 * c[1] ** 0.5 * 0.9)]
    u = np.array([-0.2, 0.0, 0.5, 1.0, 1.5, 2.0])  # ln(N / N*): vertex 9 % across the range
    n = 0.1 * c[2] ** 0.5 * np.exp(u)
    off = pd.DataFrame({"params": n, "tokens": c[2] / (6 * n), "budget": c[2],
                        "loss": 2.0 + 0.05 * u**2})
    few = df[df["budget"] == c[3]].iloc[:2]
    top = df[df["budget"] == c[4]]
    lnn = np.log(top["params"])
    flat = top.assign(loss=3.0 - 0.01 * (lnn - lnn.mean()) ** 2)  # concave: no minimum
    f = fit_isoflop(pd.concat([df[df["budget"] == c[0]], edge, off, few, flat]), bootstrap=0)
    text = " | ".join(f.warnings)
    assert "lowest loss at the grid edge" in text
    assert "off-centre" in text
    assert "only 2 points" in text
    assert "curvature is negative" in text
    assert [b.used for b in f.budgets] == [True, True, True, False, False]
    assert all("\n" not in w for w in f.warnings)


def test_errors() -> None:
    df = synthetic()
    with pytest.raises(FitError, match="at least 2"):
        fit_isoflop(df[df["budget"] == df["budget"].min()], bootstrap=0)
    with pytest.raises(InputError):
        fit_isoflop(df.drop(columns="loss"))
    with pytest.raises(InputError):
        fit_isoflop(df.assign(loss=-1.0))
    with pytest.raises(InputError):
        fit_isoflops(df, by="experiment")
