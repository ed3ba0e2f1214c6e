"""Downstream metrics (e.g. top-1 accuracy) against loss or compute, extrapolated with intervals.

Forms, with x = loss L (nats/token) or compute C (FLOPs):
- sigmoid in L:      y = lo + (hi - lo) / (1 + exp(k (L - L0)))             (k >= 0)
- sigmoid in log10 C: y = lo + (hi - lo) / (1 + exp(-k (log10 C - log10 C0)))  (k >= 0)
- power:             y = A x^b  (least squares of ln y on ln x; needs y > 0)
``lo`` (the chance level) and ``hi`` (the ceiling) may be fixed. The sigmoid is linear in
(lo, hi) for fixed (k, x0), so a grid over (k, x0) with linear least squares gives the start,
then scipy's least_squares polishes all of them. 95 % intervals: a seeded bootstrap over runs
(points).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit

from sweep.errors import FitError, InputError
from sweep.records import DownstreamFit
from sweep.shapes import flops_6nd

FORMS = ("sigmoid", "power")
AGAINST = ("loss", "flops")


def _t(x: np.ndarray, against: str) -> np.ndarray:
    """The sigmoid's variable: L itself, or -log10 C (so that k >= 0 always means the metric
    moves towards ``hi`` as loss falls or compute grows)."""
    return np.asarray(x, float) if against == "loss" else -np.log10(np.asarray(x, float))


def _sig(t: np.ndarray, lo: float, hi: float, k: float, t0: float) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return lo + (hi - lo) * expit(-k * (t - t0))


def _linear(t: np.ndarray, y: np.ndarray, k: float, t0: float, lo: float | None,
            hi: float | None = None) -> tuple[float, float, float]:
    """(lo, hi, sse) of the sigmoid for fixed (k, t0): linear least squares in the free levels."""
    with np.errstate(over="ignore"):
        s = expit(-k * (t - t0))
    if lo is None and hi is None:
        (a, h), *_ = np.linalg.lstsq(np.column_stack([1.0 - s, s]), y, rcond=None)
    elif lo is None:
        h, u = hi, 1.0 - s
        a = float(u @ (y - h * s)) / max(float(u @ u), 1e-300)
    else:
        a = lo
        h = hi if hi is not None else lo + float(s @ (y - lo)) / max(float(s @ s), 1e-300)
    r = _sig(t, a, h, k, t0) - y
    return float(a), float(h), float(r @ r)


def _grid(t: np.ndarray, y: np.ndarray, lo: float | None, hi: float | None
          ) -> tuple[float, float]:
    """The (k, t0) of a 25 x 41 grid whose best levels (linear least squares) fit best."""
    span = max(float(np.ptp(t)), 1e-12)
    kk, tt = np.meshgrid(np.geomspace(0.3, 300.0, 25) / span,
                         np.linspace(t.min() - span, t.max() + span, 41), indexing="ij")
    kk, tt = kk.ravel(), tt.ravel()
    with np.errstate(over="ignore"):
        s = expit(-kk[:, None] * (t[None, :] - tt[:, None]))  # (grid, points)
    u = 1.0 - s
    if lo is None and hi is None:  # 2x2 normal equations per grid point
        g11, g12, g22 = (u * u).sum(1), (u * s).sum(1), (s * s).sum(1)
        r1, r2 = u @ y, s @ y
        det = g11 * g22 - g12 * g12
        ok = det > 1e-12 * (g11 * g22 + 1e-300)
        det = np.where(ok, det, 1.0)
        a = np.where(ok, (g22 * r1 - g12 * r2) / det, y.mean())
        h = np.where(ok, (g11 * r2 - g12 * r1) / det, y.mean())
    elif lo is None:
        h = np.full(len(kk), hi)
        a = (u @ y - hi * (u * s).sum(1)) / np.maximum((u * u).sum(1), 1e-300)
    else:
        a = np.full(len(kk), lo)
        h = (hi if hi is not None else
             lo + (s @ y - lo * s.sum(1)) / np.maximum((s * s).sum(1), 1e-300)) + 0 * kk
    sse = (((a[:, None] * u + h[:, None] * s) - y[None, :]) ** 2).sum(1)
    i = int(np.nanargmin(sse))
    return float(kk[i]), float(tt[i])


def _fit_sigmoid(t: np.ndarray, y: np.ndarray, lo: float | None, hi: float | None = None,
                 start: np.ndarray | None = None) -> np.ndarray:
    """(lo, hi, k, t0) minimising the squared residuals; ``start`` skips the grid."""
    span = max(float(np.ptp(t)), 1e-12)
    given = start is not None
    if start is None:
        k, t0 = _grid(t, y, lo, hi)
        a, h, _ = _linear(t, y, k, t0, lo, hi)
        start = np.array([a, h, k, t0])
    # k = exp(u) keeps k > 0 without bounds, so MINPACK's fast unbounded LM can run
    free = [i for i, v in ((0, lo), (1, hi)) if v is None] + [2, 3]
    base = np.array([start[0], start[1], math.log(max(start[2], 1e-6 / span)), start[3]])

    def full(p: np.ndarray) -> np.ndarray:
        q = base.copy()
        q[free] = p
        return q

    def res(p: np.ndarray) -> np.ndarray:
        lo_, hi_, u, t0 = full(p)
        return _sig(t, lo_, hi_, math.exp(min(u, 700.0)), t0) - y

    def jac(p: np.ndarray) -> np.ndarray:
        lo_, hi_, u, t0 = full(p)
        k = math.exp(min(u, 700.0))
        with np.errstate(over="ignore"):
            s = expit(-k * (t - t0))
        ds = s * (1.0 - s) * (hi_ - lo_)
        return np.column_stack([1.0 - s, s, -ds * (t - t0) * k, ds * k])[:, free]

    # an unidentified sigmoid (data on one flank) drifts without end: cap the evaluations
    sol = least_squares(res, base[free], jac=jac, method="lm", xtol=1e-10, ftol=1e-10,
                        gtol=1e-10, max_nfev=60 if given else 1000)
    q = full(sol.x)
    return np.array([q[0], q[1], math.exp(min(q[2], 700.0)), q[3]])


def _fit_power(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(ln A, b) of y = A x^b by least squares in log-log (x centred for conditioning); A stays
    a log until it is reported, so x^b never overflows."""
    lx = np.log(x)
    c = float(lx.mean())
    b, icpt = np.polyfit(lx - c, np.log(y), 1)
    return np.array([float(icpt) - float(b) * c, float(b)])


def _exp(v: float) -> float:
    """exp(v), inf past the float range (instead of OverflowError)."""
    return math.exp(v) if v < 709.0 else math.inf


def _names(form: str) -> tuple[str, ...]:
    return ("lo", "hi", "k", "x0") if form == "sigmoid" else ("A", "b")


def _fit(x: np.ndarray, y: np.ndarray, form: str, against: str, lo: float | None,
         hi: float | None = None, start: np.ndarray | None = None) -> np.ndarray:
    if form == "power":
        return _fit_power(x, y)
    return _fit_sigmoid(_t(x, against), y, lo, hi, start)


def value(theta: np.ndarray, x, form: str, against: str) -> np.ndarray:
    """The fitted metric at x (loss in nats/token or compute in FLOPs) for internal params."""
    x = np.asarray(x, float)
    if form == "power":
        with np.errstate(over="ignore"):
            return np.exp(theta[0] + theta[1] * np.log(x))
    return _sig(_t(x, against), *theta)


def _public(theta: np.ndarray, form: str, against: str) -> dict[str, float]:
    """Reported parameters: for a sigmoid in compute, x0 is C0 in FLOPs (not -log10 C0)."""
    p = dict(zip(_names(form), (float(v) for v in theta), strict=True))
    if form == "power":
        p["A"] = _exp(theta[0])
    if form == "sigmoid" and against == "flops":
        p["x0"] = _exp(-theta[3] * math.log(10.0))
    return p


def check_xy(x: np.ndarray, y: np.ndarray, form: str, against: str, source: str) -> None:
    """DataError-style checks (InputError): positive finite x; finite y; y > 0 for power."""
    if len(x) != len(y):
        raise InputError(f"{source}: x and metric differ in length")
    if not (np.isfinite(x).all() and (x > 0).all()):
        raise InputError(f"{source}: {against} values must be positive finite numbers")
    if not np.isfinite(y).all():
        raise InputError(f"{source}: metric values must be finite numbers")
    if form == "power" and not (y > 0).all():
        raise InputError(f"{source}: a power law needs metric values > 0 (use --form sigmoid)")


def fit_downstream(x: Sequence[float], y: Sequence[float], *, metric: str = "metric",
                   against: str = "loss", form: str = "sigmoid", chance: float | None = None,
                   ceiling: float | None = None, at: Sequence[float] = (),
                   bootstrap: int = 1000, seed: int = 0, validate: bool = True) -> DownstreamFit:
    """Fit ``y`` (the metric) against ``x`` (loss in nats/token or compute in FLOPs).

    ``chance`` / ``ceiling`` fix the sigmoid's levels ``lo`` / ``hi``; ``at`` are x values to
    extrapolate to, each with a 95 % bootstrap interval (resampling points, ``bootstrap`` times,
    ``seed``).
    """
    if against not in AGAINST:
        raise InputError(f"--against {against!r}: expected one of {', '.join(AGAINST)}")
    if form not in FORMS:
        raise InputError(f"--form {form!r}: expected one of {', '.join(FORMS)}")
    if (chance is not None or ceiling is not None) and form != "sigmoid":
        raise InputError("--chance/--ceiling (fixed levels) apply only to --form sigmoid")
    x, y = np.asarray(x, float), np.asarray(y, float)
    check_xy(x, y, form, against, metric)
    n_par = 2 if form == "power" else 4 - (chance is not None) - (ceiling is not None)
    if len(np.unique(x)) < n_par + 1:
        raise FitError(f"a {form} fit of {metric} needs at least {n_par + 1} distinct "
                       f"{against} values, got {len(np.unique(x))}")
    theta = _fit(x, y, form, against, chance, ceiling)
    r = value(theta, x, form, against) - y
    rmse = float(np.sqrt(np.mean(r * r)))
    at = [float(a) for a in at]
    ci: dict[str, list[float]] = {}
    preds = [{"x": a, "value": float(value(theta, a, form, against))} for a in at]
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws, pv = [], []
        for _ in range(int(bootstrap)):
            i = rng.integers(0, len(x), len(x))
            if len(np.unique(x[i])) < n_par + 1:
                continue
            th = _fit(x[i], y[i], form, against, chance, ceiling, theta)
            draws.append(list(_public(th, form, against).values()))
            pv.append(value(th, np.array(at), form, against) if at else [])
        if draws:
            q = _percentiles(np.array(draws))
            ci = {k: [float(q[0, j]), float(q[1, j])] for j, k in enumerate(_names(form))}
            for k, v in (("lo", chance), ("hi", ceiling)):
                if v is not None:
                    ci.pop(k)
            if at:
                qp = _percentiles(np.array(pv))
                for j, p in enumerate(preds):
                    p["lo95"] = min(float(qp[0, j]), p["value"])
                    p["hi95"] = max(float(qp[1, j]), p["value"])
    params = _public(theta, form, against)
    warns = _warnings(x, y, params, form, against)
    val = _validate(x, y, form, against, chance, ceiling, seed) if validate else None
    unit = "nats/token" if against == "loss" else "FLOPs (6ND)"
    conv = {"x": f"{against} in {unit}", "metric": f"{metric}, as stored",
            "form": {"sigmoid": ("lo + (hi-lo)/(1+exp(k (L - x0)))" if against == "loss" else
                                 "lo + (hi-lo)/(1+exp(-k (log10 C - log10 x0)))"),
                     "power": "A x^b"}[form]}
    return DownstreamFit(metric, against, form, len(x), params, ci, rmse, preds, val, warns, conv)


def _percentiles(a: np.ndarray) -> np.ndarray:
    """2.5 and 97.5 percentiles per column; a column of unbounded draws gives inf, no
    warnings."""
    with np.errstate(invalid="ignore"):  # inf - inf between two unbounded draws
        q = np.percentile(np.where(np.isnan(a), np.inf, a), [2.5, 97.5], axis=0)
    return np.where(np.isnan(q), np.inf, q)


def _warnings(x: np.ndarray, y: np.ndarray, p: dict[str, float], form: str,
              against: str) -> list[str]:
    out = []
    if form == "sigmoid":
        t = _t(x, against)
        x0 = p["x0"]
        t0 = (x0 if against == "loss" else -math.log10(x0) if 0 < x0 < math.inf
              else math.copysign(math.inf, 1.0 - x0))
        if not (t.min() <= t0 <= t.max()):
            out.append(f"the sigmoid's midpoint x0 = {p['x0']:.4g} lies outside the data "
                       f"({x.min():.4g} to {x.max():.4g}): lo, hi and k are poorly identified")
        if p["k"] * max(float(np.ptp(t)), 1e-12) < 0.5:
            out.append("the data see an almost straight piece of the sigmoid: its levels are "
                       "not identified")
    if against == "flops" and math.log10(x.max() / x.min()) < 1.5:
        out.append(f"compute spans only {math.log10(x.max() / x.min()):.2f} decades (< 1.5)")
    return out


def _validate(x: np.ndarray, y: np.ndarray, form: str, against: str, chance: float | None,
              ceiling: float | None, seed: int) -> dict[str, object] | None:
    """Refit without the most extrapolated 20 % of points (lowest loss / largest compute) and
    predict them: mean and max |error| in metric units, 95 % interval coverage."""
    n_par = 2 if form == "power" else 4 - (chance is not None) - (ceiling is not None)
    order = np.argsort(x if against == "loss" else -x)  # most extrapolated first
    held = order[: max(1, len(x) // 5)]
    keep = np.setdiff1d(np.arange(len(x)), held)
    if len(np.unique(x[keep])) < n_par + 2:
        return None
    try:
        f = fit_downstream(x[keep], y[keep], against=against, form=form, chance=chance,
                           ceiling=ceiling, at=list(x[held]), bootstrap=200, seed=seed,
                           validate=False)
    except FitError:
        return None
    err = np.array([p["value"] for p in f.predictions]) - y[held]
    cov = [p.get("lo95", p["value"]) <= yy <= p.get("hi95", p["value"])
           for p, yy in zip(f.predictions, y[held], strict=True)]
    return {"held_out": len(held), "mean_abs_error": float(np.abs(err).mean()),
            "max_abs_error": float(np.abs(err).max()), "covered_fraction": float(np.mean(cov)),
            "held_out_by": "lowest loss" if against == "loss" else "largest compute"}


def csv_xy(path: str, mapping: dict[str, str], metric: str, against: str
           ) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, metric values, x label) from a CSV: the metric column is ``--map metric=COL`` or the
    column named ``metric``; x is the loss column, or the flops column, or 6 · params · tokens."""
    import pandas as pd

    from sweep.errors import DataError
    from sweep.fit.points import _numeric, read_table

    p = Path(path)
    df = read_table(p)
    cols = list(df.columns)

    def col(name: str, required: bool = True) -> str | None:
        c = mapping.get(name, name)
        if c not in cols:
            if required or name in mapping:
                raise DataError(f"{p}: missing column {c!r} ({name}); columns are "
                                f"{', '.join(map(repr, cols))} (map one with --map {name}=COL)")
            return None
        return c

    if len(df) == 0:
        raise DataError(f"{p}: no data rows")
    mcol = mapping.get("metric", metric)
    if mcol not in cols:
        raise DataError(f"{p}: no column {mcol!r} for metric {metric!r}; columns are "
                        f"{', '.join(map(repr, cols))}")
    y = pd.to_numeric(df[mcol], errors="coerce").to_numpy(float)
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise DataError(f"{p}: data row {i + 1}, column {mcol!r}: value {df[mcol].iloc[i]!r} "
                        "is not a finite number")
    if against == "loss":
        c = col("loss")
        return _numeric(df[c], str(p), repr(c)).to_numpy(float), y, "loss (as given)"
    fc = col("flops", required=False)
    if fc is not None:
        return _numeric(df[fc], str(p), repr(fc)).to_numpy(float), y, "FLOPs (as given)"
    n, d = col("params"), col("tokens")
    x = flops_6nd(_numeric(df[n], str(p), repr(n)), _numeric(df[d], str(p), repr(d)))
    return x.to_numpy(float), y, "FLOPs = 6 * params * tokens"


def sweep_xy(metrics, name: str, metric: str, against: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, metric) of one sweep from Store.metrics_df: x = final_loss or flops_6nd."""
    from sweep.errors import DataError

    have = sorted(set(metrics["name"])) if len(metrics) else []
    m = metrics[metrics["name"] == metric]
    if m.empty:
        raise DataError(f"sweep '{name}' has no metric {metric!r} (stored: "
                        f"{', '.join(have) if have else 'none'})")
    col = "final_loss" if against == "loss" else "flops_6nd"
    m = m.dropna(subset=[col, "value"])
    return m[col].to_numpy(float), m["value"].to_numpy(float)
