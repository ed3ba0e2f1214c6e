"""Chinchilla Approach 2: isoFLOP profiles (Hoffmann et al. 2022, sec. 3.2).

Per compute budget C, least squares of loss (nats/token) on a parabola in ln N (N = params,
>= 3 points); its vertex gives ln N*(C), and ln D*(C) comes from the budget's own line of ln D on
ln N at N* (so any FLOP convention of the data holds). Then ln N* = a ln C + k_N and
ln D* = b ln C + k_D by least squares over budgets. Intervals: a seeded bootstrap over points
within each budget (all budgets at once, vectorised), plus the analytic OLS standard errors.
Per-budget warnings: too few points, weak or negative curvature, minimum at or beyond the grid
edge, minimum off-centre; budgets whose vertex is unusable are left out of the regression.
C is the data's budget column when it has one (its convention as given), else 6ND FLOPs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sweep.errors import FitError, InputError
from sweep.fit.validate import MIN_DECADES
from sweep.shapes import flops_6nd

log = logging.getLogger(__name__)

MIN_POINTS = 3
OFF_CENTRE = 0.2  # vertex in the outer 20 % of the budget's ln N range: off-centre
WEAK_RISE = 2e-3  # parabola rises less than 0.2 % of the loss across the grid: weak curvature


class PowerAllocation:
    """N*(C) = exp(k_n)·C^a and D*(C) = exp(k_d)·C^b, with bootstrap rows (a, k_n, b, k_d) in
    ``samples``: shared by Approach 2 (IsoFlopFit) and Approach 1 (EnvelopeFit)."""

    a: float
    k_n: float
    b: float
    k_d: float
    samples: Any

    def optimum(self, compute: float) -> dict[str, float]:
        """N*(C), D*(C) with 95 % bootstrap intervals (C in the fit's FLOP convention)."""
        lc = math.log(compute)
        out = {"compute": compute, "params": math.exp(self.k_n + self.a * lc),
               "tokens": math.exp(self.k_d + self.b * lc)}
        if self.samples is not None and len(self.samples):
            s = np.asarray(self.samples)
            for key, i in (("params", 0), ("tokens", 2)):
                lo, hi = np.nanpercentile(np.exp(s[:, i + 1] + s[:, i] * lc), [2.5, 97.5])
                out[key + "_lo95"], out[key + "_hi95"] = float(lo), float(hi)
        return out


@dataclass
class BudgetFit:
    """One isoFLOP profile: the parabola's vertex and diagnostics (used: in the regression)."""

    budget: float  # C in FLOPs, the data's convention
    n_points: int
    params_opt: float | None  # N* (parameters)
    tokens_opt: float | None  # D* (tokens)
    loss_opt: float | None  # parabola minimum, nats/token
    curvature: float | None  # d2 L / d(ln N)2 / 2
    used: bool
    warnings: list[str] = field(default_factory=list)


@dataclass
class IsoFlopFit(PowerAllocation):
    """Approach 2 result: N* = exp(k_N) C^a, D* = exp(k_D) C^b with 95 % intervals."""

    n_points: int
    a: float
    b: float
    k_n: float
    k_d: float
    ci95: dict[str, list[float]]
    se: dict[str, float]  # analytic OLS standard errors of a and b
    budgets: list[BudgetFit]
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)
    samples: Any = None  # (n_boot, 4): a, k_N, b, k_D; not serialised
    method: str = "isoflop"
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "samples"}
        d["allocation"] = {"a": self.a, "b": self.b}
        return d


def _parabolas(x: np.ndarray, loss: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted LS coefficients (c0, c1, c2) of loss = c0 + c1 x + c2 x^2; w is (B, n)."""
    X = np.column_stack([np.ones_like(x), x, x * x])
    g = np.einsum("bn,ni,nj->bij", w, X, X)
    r = np.einsum("bn,ni,n->bi", w, X, loss)
    with np.errstate(all="ignore"):
        return np.linalg.solve(g + 1e-12 * np.eye(3), r[..., None])[..., 0]


def _profile(c: float, g: pd.DataFrame, w: np.ndarray
             ) -> tuple[BudgetFit, np.ndarray | None]:
    """One budget: the vertex (full data) and the bootstrap vertices (ln N*, ln D*) (B, 2)."""
    n = len(g)
    if n < MIN_POINTS:
        return BudgetFit(c, n, None, None, None, None, False,
                         [f"C={c:.3g}: only {n} points (< {MIN_POINTS}); budget skipped"]), None
    ln_n, ln_d, loss = (np.log(g["params"].to_numpy()), np.log(g["tokens"].to_numpy()),
                        g["loss"].to_numpy())
    xm = ln_n.mean()
    x = ln_n - xm
    span = x.max() - x.min()
    if span <= 0:
        return BudgetFit(c, n, None, None, None, None, False,
                         [f"C={c:.3g}: all points have the same N; budget skipped"]), None
    coef = _parabolas(x, loss, np.vstack([np.ones(n), w]))
    dslope = np.polyfit(x, ln_d, 1)  # ln D on ln N within the budget
    c0, c1, c2 = coef[0]
    warns: list[str] = []
    if not c2 > 0:
        return BudgetFit(c, n, None, None, None, float(c2), False,
                         [f"C={c:.3g}: curvature is negative or zero; budget skipped"]), None
    v = -c1 / (2 * c2)
    pos = (v - x.min()) / span
    used = bool(0.0 <= pos <= 1.0)
    if not used:
        warns.append(f"C={c:.3g}: minimum lies beyond the grid edge (extrapolated); "
                     "budget skipped")
    elif np.argmin(loss) in (np.argmin(x), np.argmax(x)):
        warns.append(f"C={c:.3g}: lowest loss at the grid edge")
    elif not OFF_CENTRE <= pos <= 1 - OFF_CENTRE:
        warns.append(f"C={c:.3g}: minimum off-centre ({pos:.0%} across the ln N range)")
    lmin = c0 - c1 * c1 / (4 * c2)
    if c2 * max(v - x.min(), x.max() - v) ** 2 < WEAK_RISE * lmin:
        warns.append(f"C={c:.3g}: weak curvature (loss rises < {WEAK_RISE:.1%} across the grid)")
    bc = coef[1:]
    bv = np.where(bc[:, 2] > 0, -bc[:, 1] / (2 * bc[:, 2]), np.nan)
    bv = np.where((bv >= x.min() - span) & (bv <= x.max() + span), bv, np.nan)  # wild vertices
    boot = np.column_stack([bv + xm, np.polyval(dslope, bv)])
    fit = BudgetFit(c, n, math.exp(v + xm), math.exp(float(np.polyval(dslope, v))), float(lmin),
                    float(c2), used, warns)
    return fit, boot


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """OLS slope, intercept and the slope's standard error."""
    slope, icpt = np.polyfit(x, y, 1)
    if len(x) <= 2:
        return float(slope), float(icpt), math.nan
    res = y - (slope * x + icpt)
    se = math.sqrt(res @ res / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean())))
    return float(slope), float(icpt), se


def budget_groups(points: pd.DataFrame) -> pd.Series:
    """The budget of each point: its ``budget`` column if any, else 6ND rounded to 0.05 dex."""
    if "budget" in points:
        return points["budget"].astype(float)
    c = flops_6nd(points["params"], points["tokens"])
    return 10 ** (np.round(np.log10(c) * 20) / 20)


def fit_isoflop(points: pd.DataFrame, *, bootstrap: int = 1000, seed: int = 0,
                label: str = "") -> IsoFlopFit:
    """Approach 2 on ``points`` (params N, tokens D, loss nats/token, optional budget C FLOPs).

    Raises InputError for bad settings, FitError when fewer than 2 budgets give a vertex.
    """
    if int(bootstrap) != bootstrap or bootstrap < 0:
        raise InputError(f"bootstrap must be a non-negative integer, got {bootstrap!r}")
    for col in ("params", "tokens", "loss"):
        if col not in points:
            raise InputError(f"isoFLOP points need a {col!r} column")
    df = points.assign(budget=budget_groups(points)).reset_index(drop=True)
    vals = df[["params", "tokens", "loss", "budget"]].to_numpy(float)
    if not (np.isfinite(vals).all() and (vals > 0).all()):
        raise InputError("isoFLOP points must be positive finite numbers")
    rng = np.random.default_rng(seed)
    fits, boots = [], []
    for c, g in df.groupby("budget", sort=True):
        n = len(g)
        idx = rng.integers(0, n, size=(bootstrap, n)) if n else np.zeros((0, 0), int)
        w = np.stack([np.bincount(r, minlength=n) for r in idx]) if bootstrap else np.empty((0, n))
        bf, bt = _profile(float(c), g, w.astype(float))
        fits.append(bf)
        if bf.used:
            boots.append(bt)
    used = [f for f in fits if f.used]
    if len(used) < 2:
        raise FitError(f"{label or 'isoFLOP data'}: only {len(used)} budgets give a usable "
                       "minimum; Approach 2 needs at least 2")
    lc = np.log([f.budget for f in used])
    a, kn, se_a = _line(lc, np.log([f.params_opt for f in used]))
    b, kd, se_b = _line(lc, np.log([f.tokens_opt for f in used]))
    ci: dict[str, list[float]] = {}
    samples = None
    if bootstrap:
        bn = np.stack([bt[:, 0] for bt in boots], 1)  # (B, budgets)
        bd = np.stack([bt[:, 1] for bt in boots], 1)
        ok = np.isfinite(bn).all(1)
        xc = lc - lc.mean()
        sn = (bn[ok] - bn[ok].mean(1, keepdims=True)) @ xc / (xc @ xc)
        sd = (bd[ok] - bd[ok].mean(1, keepdims=True)) @ xc / (xc @ xc)
        samples = np.column_stack([sn, bn[ok].mean(1) - sn * lc.mean(),
                                   sd, bd[ok].mean(1) - sd * lc.mean()])
        for key, col in (("a", 0), ("b", 2)):
            lo, hi = np.percentile(samples[:, col], [2.5, 97.5])
            ci[key] = [float(lo), float(hi)]
    warns = [w for f in fits for w in f.warnings]
    dec = math.log10(max(f.budget for f in used) / min(f.budget for f in used))
    if dec < MIN_DECADES:
        warns.append(f"budgets span only {dec:.2f} decades of C (< {MIN_DECADES})")
    conv = {"params": "as given", "tokens": "as given",
            "flops": "budget column as given" if "budget" in points else "6ND",
            "loss": "nats/token as given"}
    return IsoFlopFit(len(df), a, b, kn, kd, ci, {"a": se_a, "b": se_b}, fits, warns, conv,
                      samples, label=label)


def fit_isoflops(points: pd.DataFrame, by: str = "experiment", **kw: Any
                 ) -> dict[str, IsoFlopFit]:
    """One Approach 2 fit per value of column ``by`` (e.g. the experiment id)."""
    if by not in points:
        raise InputError(f"no column {by!r} to group the isoFLOP points by")
    return {str(k): fit_isoflop(g, label=str(k), **kw) for k, g in points.groupby(by, sort=True)}
