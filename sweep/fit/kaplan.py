"""Kaplan et al. 2020 (arXiv:2001.08361) single-variable laws, with or without a floor E:
L(N) = (N_c/N)^alpha_N, L(D) = (D_c/D)^alpha_D (Hestness et al. 2017), and the compute
frontier L(C) = (C_c/C)^alpha_C fitted to the lower (Pareto) frontier of loss against C.

Without E: least squares of ln L on ln x. With E: variable projection -- for fixed alpha,
L = E + K x^-alpha is linear in (E, K) >= 0 (relative residuals), alpha by a grid then a
bounded scalar search; then x_c = K^(1/alpha). 95 % intervals by a seeded bootstrap over points.
Units: N params, D tokens, C FLOPs (6ND), L nats/token.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from sweep.errors import FitError, InputError

VARIABLES = {"N": "params", "D": "tokens", "C": "flops"}


@dataclass
class PowerLawFit:
    """L(x) = E + (x_c / x)^alpha (E = 0 without the irreducible term)."""

    law: str  # "L(N)", "L(D)" or "L(C)"
    n_points: int
    alpha: float
    x_c: float
    E: float
    irreducible: bool
    ci95: dict[str, list[float]]
    objective: float  # sum of squared relative residuals
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)
    method: str = "kaplan"

    def loss(self, x: Any) -> Any:
        """E + (x_c/x)^alpha, in logs (inf past the float range, never an overflow error)."""
        with np.errstate(over="ignore", divide="ignore"):
            return self.E + np.exp(self.alpha * (np.log(self.x_c) - np.log(np.asarray(x, float))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fit_e(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(alpha, K, E, sse) of y = E + K x^-alpha, E, K >= 0, on relative residuals."""
    lx = np.log(x) - np.log(x).mean()

    def proj(al: float) -> tuple[float, float, float]:
        u = np.exp(-al * lx) / y
        p = 1.0 / y
        g = np.array([[p @ p, p @ u], [p @ u, u @ u]])
        r = np.array([p.sum(), u.sum()])
        c = np.linalg.solve(g + 1e-15 * np.eye(2), r)
        if c[0] < 0:  # no floor: K only
            c = np.array([0.0, r[1] / g[1, 1]])
        e, k = c
        res = e * p + k * u - 1.0
        return float(res @ res), float(e), float(k)

    grid = np.linspace(0.01, 3.0, 120)
    i = int(np.argmin([proj(a)[0] for a in grid]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    al = float(minimize_scalar(lambda a: proj(a)[0], bounds=(lo, hi), method="bounded",
                               options={"xatol": 1e-10}).x)
    sse, e, k = proj(al)
    return al, math.log(k) + al * float(np.log(x).mean()) if k > 0 else -math.inf, e, sse


def _fit_one(x: np.ndarray, y: np.ndarray, irreducible: bool) -> tuple[float, float, float, float]:
    """(alpha, x_c, E, sse); x_c = K^(1/alpha) from ln K, inf past the float range."""
    if irreducible:
        al, ln_k, e, sse = _fit_e(x, y)
    else:
        slope, icpt = np.polyfit(np.log(x), np.log(y), 1)
        al, ln_k, e = -float(slope), float(icpt), 0.0
        with np.errstate(over="ignore"):
            rel = np.exp(ln_k - al * np.log(x)) / y - 1.0
        sse = float(rel @ rel)
    ln_xc = ln_k / al if al > 0 and math.isfinite(ln_k) else math.nan
    xc = math.nan if math.isnan(ln_xc) else math.exp(ln_xc) if ln_xc < 709.0 else math.inf
    return al, xc, e, sse


def frontier(points: pd.DataFrame) -> pd.DataFrame:
    """The compute frontier: points whose loss is below that of every point of smaller C."""
    df = points.sort_values(["flops", "loss"])
    best = df["loss"].cummin()
    return df[df["loss"] <= best].loc[lambda d: ~d["loss"].duplicated()]


def fit_kaplan(points: pd.DataFrame, variable: str = "N", *, irreducible: bool = True,
               bootstrap: int = 200, seed: int = 0) -> PowerLawFit:
    """Fit L(N), L(D) or L(C) (``variable``) to points with params, tokens, flops, loss."""
    if variable not in VARIABLES:
        raise InputError(f"unknown Kaplan variable {variable!r}; expected N, D or C")
    col = VARIABLES[variable]
    if col not in points or "loss" not in points:
        raise InputError(f"points need {col!r} and 'loss' columns")
    df = frontier(points) if variable == "C" else points
    x, y = df[col].to_numpy(float), df["loss"].to_numpy(float)
    if not (np.isfinite(x).all() and (x > 0).all() and np.isfinite(y).all() and (y > 0).all()):
        raise InputError(f"{col} and loss must be positive finite numbers")
    need = 4 if irreducible else 3
    if len(np.unique(x)) < need:
        raise FitError(f"L({variable}) needs at least {need} distinct {col} values, got "
                       f"{len(np.unique(x))}")
    al, xc, e, sse = _fit_one(x, y, irreducible)
    ci: dict[str, list[float]] = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(int(bootstrap)):
            i = rng.integers(0, len(x), len(x))
            if len(np.unique(x[i])) >= need:
                draws.append(_fit_one(x[i], y[i], irreducible)[:3])
        arr = np.array(draws).reshape(-1, 3)
        for j, k in enumerate(("alpha", "x_c", "E")):
            v = arr[~np.isnan(arr[:, j]), j]  # nan: no power law in that resample (alpha <= 0)
            if len(v):
                with np.errstate(invalid="ignore"):  # inf - inf between two unbounded x_c
                    q = np.percentile(v, [2.5, 97.5])
                ci[k] = [float(x) if not np.isnan(x) else math.inf for x in q]
    warns = []
    if math.log10(x.max() / x.min()) < 1.5:
        warns.append(f"{col} spans only {math.log10(x.max() / x.min()):.2f} decades (< 1.5)")
    if irreducible and e <= 0:
        warns.append("the floor E fell to 0: not identified by these points")
    return PowerLawFit(f"L({variable})", len(x), al, xc, e, irreducible, ci, sse, warns,
                       {col: "as given", "flops": "6ND", "loss": "nats/token"})
