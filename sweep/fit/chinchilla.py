"""Chinchilla Approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta to (params, tokens, loss) points.

Hoffmann et al. 2022 (arXiv:2203.15556, App. D.2): minimise the Huber loss (delta = 1e-3) of
log L_hat - log L, SUMMED over points, log L_hat = LSE(a - alpha ln N, b - beta ln D, e),
A = exp(a), B = exp(b), E = exp(e); N = parameters, D = training tokens, L in nats/token.
L-BFGS-B with default tolerances stops early, at Hoffmann's published values (Besiroglu et al.
2024, arXiv:2404.10102), so: (1) variable projection -- for fixed (alpha, beta) the model is
linear in (E, A, B); non-negative least squares of the relative residuals on an (alpha, beta)
grid, refined by pattern search, gives the starts; (2) a damped projected Newton method with the
analytic Hessian from each start, then tight-tolerance L-BFGS-B (analytic gradient) and Newton
again from the best, all in centred logs so that a and alpha are not nearly collinear. The
bootstrap runs the Newton polish vectorised over all resamples (per-point counts) from the
full-data optimum, single-threaded; refits that do not converge within BOOT_ITERS steps are
counted (``Fit.bootstrap``) and left out of the intervals. ``Fit.trust`` says what the points
identify (validate.identifiability) and where predictions from the fit can be believed.
Options: per-point weights, bounds on E/alpha/beta, fixed parameters, an over-estimation penalty
(residuals with L_hat > L weigh 1 + penalty times more). ``method='hoffmann'``: sweep.fit.hoffmann.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sweep.errors import FitError, InputError
from sweep.fit.objective import IDX, Problem
from sweep.fit.points import check_points
from sweep.fit.validate import (NEGLIGIBLE, convergence_warnings, holdout, identifiability,
                                 span_warnings)
from sweep.records import Fit, TrustRegion
from sweep.shapes import tokens_for_flops

log = logging.getLogger(__name__)

KEYS = ("E", "A", "B", "alpha", "beta")  # column order of Fit.samples
METHODS = ("chinchilla", "hoffmann")
BOOT_ITERS = 2000
"""Newton steps a bootstrap refit gets (vectorised: the tail of slow refits costs ~0.3 ms/step)."""
VALIDATION_BOOTSTRAP = 200
"""Resamples of the validation refit (its interval only scores coverage)."""


def _one_thread() -> contextlib.AbstractContextManager:
    """Single-threaded BLAS inside a fit (the arrays are tiny: threads only spin); a no-op
    without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn, not scipy
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _polish(prob: Problem, th0: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Newton from every start, then Newton again from the best when it converged, else
    L-BFGS-B and Newton from the best two; return the best (theta, objective, converged)."""
    th, f, conv = prob.newton(th0, np.tile(w, (len(th0), 1)), maxiter=100)
    order = np.argsort(f)
    if conv[order[0]]:  # the best start converged: Newton again to polish, no L-BFGS-B needed
        best = th[order[:1]]
    else:
        best = np.array([prob.lbfgs(t, w)[0] for t in th[order[:2]]])
    th, f, conv = prob.newton(best, np.tile(w, (len(best), 1)))
    i = int(np.argmin(f))
    return th[i], float(f[i]), bool(conv[i])


def _bootstrap(prob: Problem, th: np.ndarray, n_boot: int, seed: int
               ) -> tuple[np.ndarray, dict[str, list[float]], dict[str, int]]:
    """Refit n_boot resamples (as per-point counts), all at once and warm-started from the
    full-data optimum th: (samples (n_ok, 5) in KEYS order of the refits that converged, their
    95 % percentile intervals incl. a and b, {"resamples", "not_converged"}). Refits that did
    not converge within BOOT_ITERS Newton steps are counted and left out of the intervals."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, prob.n, size=(n_boot, prob.n)) + prob.n * np.arange(n_boot)[:, None]
    w = np.bincount(idx.ravel(), minlength=idx.size).reshape(idx.shape) * prob.w
    ths, _, ok = prob.newton(np.tile(th, (n_boot, 1)), w, maxiter=BOOT_ITERS)
    samples = prob.to_params(ths[ok])
    info = {"resamples": int(n_boot), "not_converged": int((~ok).sum())}
    if not len(samples):
        return samples, {}, info
    al, be = samples[:, 3], samples[:, 4]
    allocation = np.column_stack([be / (al + be), al / (al + be)])
    lohi = np.percentile(np.column_stack([samples, allocation]), [2.5, 97.5], axis=0)
    ci = {k: [float(lohi[0, i]), float(lohi[1, i])] for i, k in enumerate(KEYS + ("a", "b"))}
    log.info("bootstrap: %d resamples, %d not converged", n_boot, info["not_converged"])
    return samples, ci, info


def _check_options(fixed: dict[str, float] | None, bounds: dict[str, tuple[float, float]] | None,
                   weights: Sequence[float] | np.ndarray | None, penalty: float, n: int
                   ) -> np.ndarray | None:
    """InputError for unknown/invalid fixed parameters, bounds, weights or penalty."""
    for k, v in (fixed or {}).items():
        if k not in IDX or not (math.isfinite(v) and v > 0):
            raise InputError(f"fixed parameter {k}={v!r}: expected E, A, B, alpha or beta > 0")
    for k, lh in (bounds or {}).items():
        if k not in ("E", "alpha", "beta") or len(lh) != 2 or not lh[0] <= lh[1]:
            raise InputError(f"bounds {k}={lh!r}: expected (lo, hi) for E, alpha or beta")
    if not (math.isfinite(penalty) and penalty >= 0):
        raise InputError(f"over-estimation penalty must be >= 0, got {penalty!r}")
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,) or not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise InputError(f"weights must be {n} finite non-negative numbers, not all zero")
    return w


def _fit(df: pd.DataFrame, delta: float, bootstrap: int, seed: int, opts: dict) -> Fit:
    """The fit of checked points, with bootstrap, identifiability, warnings and its trust region
    (no validation error yet); no predictions, no validation. ``opts``: weights, penalty, fixed,
    bounds, method, starts (hoffmann), max_loss and min_tokens (of the trust region)."""
    method = opts.get("method", "chinchilla")
    prob = Problem(df, delta, opts.get("weights"), opts.get("penalty", 0.0), opts.get("fixed"),
                   opts.get("bounds"), centre=method == "chinchilla")
    if method == "hoffmann":
        from sweep.fit.hoffmann import grid_fit

        th, obj, converged = grid_fit(prob, opts.get("starts"))
    else:
        th, obj, converged = _polish(prob, prob.starts(), prob.w)
    params = dict(zip(KEYS, map(float, prob.to_params(th)[0]), strict=True))
    al, be = params["alpha"], params["beta"]
    samples, ci, boot = _bootstrap(prob, th, bootstrap, seed) if bootstrap else (None, {}, None)
    tol = 1e-6
    free = {k: bool(prob.free[i]) for k, i in IDX.items()}
    lo, hi = ({k: prob.lo[i] for k, i in IDX.items()}, {k: prob.hi[i] for k, i in IDX.items()})
    on_bound = [k for k in ("A", "B", "alpha", "beta") if free[k]
                and not lo[k] + tol < th[IDX[k]] < hi[k] - tol]
    ci_on_bound = [k for k in ("alpha", "beta") if free[k] and k in ci
                   and not lo[k] + tol < ci[k][0] <= ci[k][1] < hi[k] - tol]
    # largest share of a point's loss each power-law term takes (theta is in centred logs)
    share = {k: float(np.exp(th[i] - th[j] * v - prob.z).max())
             for k, i, j, v in (("A", 0, 3, prob.x), ("B", 1, 4, prob.y))}
    identified, id_warns = identifiability(
        params, ci, e_at_floor=free["E"] and th[2] <= lo["E"] + tol, on_bound=on_bound,
        ci_on_bound=ci_on_bound, vanished=[k for k, v in share.items() if v < NEGLIGIBLE])
    for k, f in free.items():
        identified[k] = identified[k] if f else True  # fixed: known, not estimated
    warns = span_warnings(df) + id_warns + convergence_warnings(converged, boot)

    def span(col: str) -> tuple[float, float]:
        return float(df[col].min()), float(df[col].max())

    trust = TrustRegion(params=span("params"), tokens=span("tokens"), flops=span("flops"),
                        loss=span("loss"), identified=identified, floor=params["E"],
                        max_loss=opts.get("max_loss"), min_tokens=opts.get("min_tokens"),
                        warnings=tuple(warns))
    return Fit(method=method, n_points=prob.n, params=params, ci95=ci, objective=obj,
               allocation={"a": be / (al + be), "b": al / (al + be)}, samples=samples,
               warnings=warns, conventions={"params": "as given", "flops": "6ND"},
               trust=trust, bootstrap=boot)


def fit_chinchilla(points: pd.DataFrame, *, delta: float = 1e-3, bootstrap: int = 1000,
                   seed: int = 0, at: Sequence[tuple[float, float]] = (), validate: bool = True,
                   method: str = "chinchilla", weights: Sequence[float] | None = None,
                   fixed: dict[str, float] | None = None,
                   bounds: dict[str, tuple[float, float]] | None = None, penalty: float = 0.0,
                   starts: int | None = 20, max_loss: float | None = None,
                   min_tokens: float | None = None) -> Fit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Approach 3) with a seeded percentile bootstrap.

    ``points`` has params (N), loss (nats/token) and tokens (D) or flops (C = 6ND FLOPs);
    ``delta`` is the Huber threshold on log-loss residuals; ``bootstrap`` resamples give the
    95 % intervals (``ci95`` is {} when 0) and ``Fit.samples`` (refits that did not converge are
    counted in ``Fit.bootstrap`` and left out); ``at`` lists (N, D) pairs to predict at;
    ``validate`` refits without the largest compute budget and scores it.
    ``method``: 'chinchilla' (variable projection + Newton) or 'hoffmann' (L-BFGS-B from
    Hoffmann's grid of starts; ``starts`` = how many of the best grid points, None = all 4500).
    ``weights`` (one per point) scale each Huber term; ``fixed`` pins parameters (e.g.
    {"E": 1.69}); ``bounds`` limits E, alpha, beta, e.g. {"alpha": (0.1, 1.0)}; ``penalty``
    makes over-estimates (L_hat > L) cost 1 + penalty times more.
    ``max_loss`` (ln(vocab), nats/token) and ``min_tokens`` (one optimizer batch) bound the
    trust region ``Fit.trust`` that every prediction is placed in.
    Raises DataError for bad points, InputError for bad settings and FitError when a fit is
    impossible (< 5 points, < 2 distinct N or D).
    """
    if method not in METHODS:
        raise FitError(f"unknown fit method {method!r}; expected one of {', '.join(METHODS)}")
    if not (delta > 0 and math.isfinite(delta)) or int(bootstrap) != bootstrap or bootstrap < 0:
        raise InputError(f"bad fit settings delta={delta!r}, bootstrap={bootstrap!r}")
    for name, val in (("max_loss", max_loss), ("min_tokens", min_tokens)):
        if val is not None and not (math.isfinite(val) and val > 0):
            raise InputError(f"{name} must be a positive finite number, got {val!r}")
    at = [(float(n), float(d)) for n, d in at]
    for n, d in at:
        if not (n > 0 and d > 0 and math.isfinite(n * d)):
            raise InputError(f"prediction point params={n}, tokens={d} is not positive finite")
    df = check_points(points)
    w = _check_options(fixed, bounds, weights, penalty, len(df))
    if len(df) < 5:
        raise FitError(f"a Chinchilla fit needs at least 5 points, got {len(df)}")
    for col in ("params", "tokens"):
        if df[col].nunique() < 2:
            raise FitError(f"a Chinchilla fit needs at least 2 distinct {col} values, got 1")
    opts = {"weights": w, "penalty": penalty, "fixed": fixed, "bounds": bounds,
            "method": method, "starts": starts, "max_loss": max_loss, "min_tokens": min_tokens}

    def refit(mask: np.ndarray) -> Fit | None:
        train = df[mask]
        if len(train) < 5 or train["params"].nunique() < 2 or train["tokens"].nunique() < 2:
            return None
        sub = dict(opts, weights=None if w is None else w[mask], method="chinchilla")
        return _fit(train, delta, min(int(bootstrap), VALIDATION_BOOTSTRAP), seed, sub)

    with _one_thread(), np.errstate(over="ignore", under="ignore"):
        fit = _fit(df, delta, int(bootstrap), seed, opts)
        fit.validation = v = holdout(df, refit) if validate else None
        if v and fit.trust is not None:
            fit.trust = dataclasses.replace(fit.trust,
                                            validation_error=float(v["mean_abs_rel_error"]))
        fit.predictions = [fit.predict(n, d) for n, d in at]
    for msg in fit.warnings:
        log.info("%s", msg)  # returned in Fit.warnings; the CLI prints them once
    return fit


def compute_optimal(fit: Fit, compute: float) -> tuple[float, float]:
    """Compute-optimal (N_opt, D_opt) for ``compute`` FLOPs with 6 N D = C exactly.

    N_opt = G (C/6)^a, D_opt = (C/6) / N_opt, G = (alpha A / (beta B))^(1/(alpha+beta)),
    a = beta/(alpha+beta) (Hoffmann et al. 2022, eq. 4).
    """
    c = float(compute) if isinstance(compute, (int, float, np.number)) else math.nan
    if not (math.isfinite(c) and c > 0):
        raise InputError(f"compute must be a positive finite number of FLOPs, got {compute!r}")
    p = fit.params
    al, be = p["alpha"], p["beta"]
    if not (al > 0 and be > 0 and p["A"] > 0 and p["B"] > 0):
        raise FitError(f"no compute-optimal allocation for alpha={al}, beta={be}")
    g = (al * p["A"] / (be * p["B"])) ** (1.0 / (al + be))
    n = g * tokens_for_flops(c, 1.0) ** (be / (al + be))  # (C/6)^a
    return n, tokens_for_flops(c, n)
