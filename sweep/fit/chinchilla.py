"""Chinchilla Approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta to (params, tokens, loss) points.

Hoffmann et al. 2022 (arXiv:2203.15556, App. D.2): minimise the Huber loss (delta = 1e-3) of
log L_hat - log L, SUMMED over points, log L_hat = LSE(a - alpha ln N, b - beta ln D, e),
A = exp(a), B = exp(b), E = exp(e); N = parameters, D = training tokens, L in nats/token.
L-BFGS-B with default tolerances stops early, at Hoffmann's published values (Besiroglu et al.
2024, arXiv:2404.10102), so: (1) variable projection -- for fixed (alpha, beta) the model is
linear in (E, A, B); non-negative least squares of the relative residuals on an (alpha, beta)
grid, refined by pattern search, gives the starts; (2) a damped Newton method with the analytic
Hessian from each start, then tight-tolerance L-BFGS-B (analytic gradient) and Newton again from
the best, all in centred logs so that a and alpha are not nearly collinear. The bootstrap runs
the Newton polish vectorised over all resamples (per-point counts) from the full-data optimum.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from sweep.errors import FitError, InputError
from sweep.fit.points import check_points
from sweep.records import Fit

log = logging.getLogger(__name__)

KEYS = ("E", "A", "B", "alpha", "beta")  # column order of Fit.samples
_GRID = np.linspace(0.02, 2.0, 45)  # alpha and beta grid of the variable-projection starts
_N_STARTS = 6


class _Problem:
    """Centred log data: x = ln N - mean, y = ln D - mean, z = ln L; theta = (a', b', e, alpha,
    beta) with a' = ln A - alpha * mean(ln N), b' = ln B - beta * mean(ln D)."""

    def __init__(self, df: pd.DataFrame, delta: float) -> None:
        ln_n, ln_d = np.log(df["params"].to_numpy()), np.log(df["tokens"].to_numpy())
        self.xm, self.ym = float(ln_n.mean()), float(ln_d.mean())
        self.x, self.y = ln_n - self.xm, ln_d - self.ym
        self.z = np.log(df["loss"].to_numpy())
        self.n, self.delta = len(self.z), delta
        zlo, zhi = float(self.z.min()), float(self.z.max())
        self.lo = np.array([zlo - 30, zlo - 30, zlo - 20, 1e-4, 1e-4])
        self.hi = np.array([zhi + 10, zhi + 10, zhi + 1, 5.0, 5.0])
        self.gtol = 1e-9 * self.n * delta

    def to_params(self, th: np.ndarray) -> np.ndarray:
        """theta rows -> (E, A, B, alpha, beta) rows."""
        th = np.atleast_2d(th)
        return np.column_stack([np.exp(th[:, 2]), np.exp(th[:, 0] + th[:, 3] * self.xm),
                                np.exp(th[:, 1] + th[:, 4] * self.ym), th[:, 3], th[:, 4]])

    def fgh(self, th: np.ndarray, w: np.ndarray, hess: bool = True
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Summed Huber objective f (B,), gradient (B, 5), Hessian (B, 5, 5) for weights w."""
        a, b, e, al, be = (th[:, k : k + 1] for k in range(5))
        t1, t2 = a - al * self.x, b - be * self.y
        m = np.maximum(np.maximum(t1, t2), e)
        e1, e2, e3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
        s = e1 + e2 + e3
        r = m + np.log(s) - self.z
        d = self.delta
        inside = np.abs(r) <= d
        f = (w * np.where(inside, 0.5 * r * r, d * (np.abs(r) - 0.5 * d))).sum(1)
        w1, w2, w3 = e1 / s, e2 / s, e3 / s
        cp = w * np.clip(r, -d, d)
        s1, s2, s3 = (cp * w1).sum(1), (cp * w2).sum(1), (cp * w3).sum(1)
        s1x, s2y = (cp * w1 * self.x).sum(1), (cp * w2 * self.y).sum(1)
        g = np.column_stack([s1, s2, s3, -s1x, -s2y])
        if not hess:
            return f, g, None
        gm = np.stack([w1, w2, w3, -self.x * w1, -self.y * w2], axis=-1)
        coef = w * (inside - np.clip(r, -d, d))
        h = np.matmul((gm * coef[..., None]).transpose(0, 2, 1), gm)
        h[:, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] += np.column_stack(
            [s1, s2, s3, (cp * w1 * self.x**2).sum(1), (cp * w2 * self.y**2).sum(1)])
        h[:, [0, 3, 1, 4], [3, 0, 4, 1]] -= np.column_stack([s1x, s1x, s2y, s2y])
        return f, g, h

    def projected(self, al: np.ndarray, be: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Variable projection at K pairs (alpha, beta): exact NNLS of the relative residuals
        (E + A'u + B'v - L)/L over (E, A', B'); returns (sse (K,), coef (K, 3))."""
        p = np.exp(-self.z)  # 1/L
        u, v = np.exp(-np.outer(al, self.x)) * p, np.exp(-np.outer(be, self.y)) * p
        k = len(al)
        cols = np.stack([np.broadcast_to(p, u.shape), u, v], 1)  # (k, 3, n)
        g = np.matmul(cols, cols.transpose(0, 2, 1))
        sc = np.sqrt(np.diagonal(g, axis1=1, axis2=2))  # column scaling for conditioning
        gs = g / sc[:, :, None] / sc[:, None, :] + 1e-12 * np.eye(3)
        rs = cols.sum(-1) / sc
        sols = [np.linalg.solve(gs, rs[..., None])[..., 0]]  # all three terms
        for i, j in ((0, 1), (0, 2), (1, 2)):  # two terms (Cramer), then one term
            det = gs[:, i, i] * gs[:, j, j] - gs[:, i, j] ** 2
            c = np.zeros((k, 3))
            c[:, i] = (rs[:, i] * gs[:, j, j] - rs[:, j] * gs[:, i, j]) / det
            c[:, j] = (rs[:, j] * gs[:, i, i] - rs[:, i] * gs[:, i, j]) / det
            sols.append(c)
        for i in range(3):
            c = np.zeros((k, 3))
            c[:, i] = rs[:, i] / gs[:, i, i]
            sols.append(c)
        c = np.stack(sols, 1)  # (k, 7, 3); a subset's LS solution has sse = n - c.r
        sse = np.where((c >= 0).all(-1), self.n - (c * rs[:, None, :]).sum(-1), np.inf)
        best = np.argmin(sse, axis=1)
        return sse[np.arange(k), best], c[np.arange(k), best] / sc

    def starts(self) -> np.ndarray:
        """Starts (K, 5): interior local minima (and the global one) of the projected objective
        on the (alpha, beta) grid, each refined by a shrinking pattern search."""
        k = len(_GRID)
        ga, gb = np.meshgrid(_GRID, _GRID, indexing="ij")
        sse = self.projected(ga.ravel(), gb.ravel())[0].reshape(k, k)
        pad = np.pad(sse, 1, constant_values=np.inf)
        nb = [pad[1 + i : 1 + i + k, 1 + j : 1 + j + k] for i in (-1, 0, 1) for j in (-1, 0, 1)]
        local = (sse <= np.min(nb, axis=0)) & np.isfinite(sse)
        local[[0, -1], :] = local[:, [0, -1]] = False  # grid-edge minima are artefacts
        local.flat[np.argmin(sse)] = True
        score = np.where(local, sse, np.inf).ravel()
        order = np.argsort(score)[:_N_STARTS]
        ab = np.column_stack([ga.ravel(), gb.ravel()])[order[np.isfinite(score[order])]]
        step, offs = 4 * (_GRID[1] - _GRID[0]), np.linspace(-3, 3, 7)
        pattern = np.stack(np.meshgrid(offs, offs, indexing="ij"), -1).reshape(-1, 2)
        for _ in range(16):  # zoom: best of a 7x7 pattern around each start, step / 4
            step /= 4
            trial = np.clip(ab[:, None, :] + step * pattern[None], 1e-3, 4.0)
            val = self.projected(trial[..., 0].ravel(), trial[..., 1].ravel())[0]
            ab = trial[np.arange(len(ab)), np.argmin(val.reshape(len(ab), -1), axis=1)]
        c = self.projected(ab[:, 0], ab[:, 1])[1]
        c = np.where(c > 0, c, 1e-3 * np.exp(self.z.min()))  # revive a dropped term
        th = np.column_stack([np.log(c[:, 1]), np.log(c[:, 2]), np.log(c[:, 0]), ab])
        return np.clip(th, self.lo, self.hi)

    def lbfgs(self, th0: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, bool]:
        """One tight-tolerance L-BFGS-B polish from th0 (5,) with weights w (n,)."""
        def fun(t: np.ndarray) -> tuple[float, np.ndarray]:
            f, g, _ = self.fgh(t[None, :], w[None, :], hess=False)
            return float(f[0]), g[0]

        bounds = list(zip(self.lo, self.hi, strict=True))
        res = minimize(fun, th0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 1000, "maxfun": 2000, "ftol": 1e-15, "gtol": 1e-12,
                                "maxcor": 20})
        return res.x, bool(res.success)

    def newton(self, th0: np.ndarray, w: np.ndarray, maxiter: int = 500
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Levenberg-Marquardt-damped Newton, vectorised over rows of th0 (B, 5) and w (B, n).
        Returns (theta, f, converged)."""
        th = np.clip(th0, self.lo, self.hi).astype(float)
        f, g, h = self.fgh(th, w)
        lam, done, conv = np.full(len(th), 1e-6), np.zeros(len(th), bool), np.zeros(len(th), bool)
        for _ in range(maxiter):
            pg = np.where(((th <= self.lo) & (g > 0)) | ((th >= self.hi) & (g < 0)), 0.0, g)
            small = np.abs(pg).max(1) <= self.gtol
            conv |= small & ~done
            done |= small
            act = np.flatnonzero(~done)
            if not len(act):
                break
            ha, ga = h[act], g[act]
            dg = np.maximum(np.abs(np.diagonal(ha, axis1=1, axis2=2)), 1e-12 * self.gtol)
            m = ha + lam[act, None, None] * (dg[:, :, None] * np.eye(5))
            try:
                step = -np.linalg.solve(m, ga[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = -np.stack([np.linalg.lstsq(mi, gi, rcond=None)[0]
                                  for mi, gi in zip(m, ga, strict=True)])
            new = np.clip(th[act] + step, self.lo, self.hi)
            fn, gn, hn = self.fgh(new, w[act])
            ok = np.isfinite(fn) & (fn < f[act])
            tiny = ok & (f[act] - fn <= 1e-15 * np.abs(f[act]))
            stalled = ~ok & (lam[act] > 1e12)
            acc = act[ok]
            th[acc], f[acc], g[acc], h[acc] = new[ok], fn[ok], gn[ok], hn[ok]
            lam[act] = np.where(ok, np.maximum(lam[act] / 4, 1e-12), lam[act] * 8)
            conv[act[tiny]] = True
            conv[act[stalled]] = np.abs(pg[act[stalled]]).max(1) <= 1e3 * self.gtol
            done[act[tiny | stalled]] = True
        return th, f, conv


def _polish(prob: _Problem, th0: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Newton from every start, then L-BFGS-B and Newton again from the best (from the best two
    if the best did not converge); return the best (theta, objective, converged)."""
    th, f, conv = prob.newton(th0, np.tile(w, (len(th0), 1)), maxiter=100)
    order = np.argsort(f)
    best = th[order[:1] if conv[order[0]] else order[:2]]
    cands = np.array([prob.lbfgs(t, w)[0] for t in best])
    th, f, conv = prob.newton(cands, np.tile(w, (len(cands), 1)))
    i = int(np.argmin(f))
    return th[i], float(f[i]), bool(conv[i])


def _budgets(flops: np.ndarray, min_held: int = 3) -> np.ndarray | None:
    """Mask of the largest compute budget (log10 C rounded to 0.1), widened to the next budgets
    until it holds >= min_held points; None if there are fewer than 2 budgets."""
    groups = np.round(np.log10(flops), 1)
    levels = np.unique(groups)[::-1]
    mask = None
    for lv in levels[:-1]:
        mask = groups >= lv
        if mask.sum() >= min_held:
            break
    return mask


def _validate(df: pd.DataFrame, delta: float) -> dict[str, object] | None:
    """Refit without the largest compute budget; relative errors of the predicted losses there."""
    mask = _budgets(df["flops"].to_numpy())
    if mask is None:
        return None
    train, held = df[~mask], df[mask]
    if len(train) < 5 or train["params"].nunique() < 2 or train["tokens"].nunique() < 2:
        return None
    sub = _fit(train, delta, 0, 0)
    pred = sub.loss(held["params"].to_numpy(), held["tokens"].to_numpy())
    rel = np.abs(pred - held["loss"].to_numpy()) / held["loss"].to_numpy()
    return {"held_out": "largest budget", "n_held_out": int(len(held)),
            "mean_abs_rel_error": float(rel.mean()), "max_abs_rel_error": float(rel.max())}


def _bootstrap(prob: _Problem, th: np.ndarray, n_boot: int, seed: int
               ) -> tuple[np.ndarray, dict[str, list[float]], int]:
    """Refit n_boot resamples (as per-point counts) from th: (samples (n_boot, 5) in KEYS order,
    95 % percentile intervals incl. a and b, number of refits that did not converge)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, prob.n, size=(n_boot, prob.n)) + prob.n * np.arange(n_boot)[:, None]
    w = np.bincount(idx.ravel(), minlength=idx.size).reshape(idx.shape).astype(float)
    ths, _, ok = prob.newton(np.tile(th, (n_boot, 1)), w)
    for i in np.flatnonzero(~ok):  # rare: one L-BFGS-B polish, then Newton again
        t, _, ok[i] = prob.newton(prob.lbfgs(ths[i], w[i])[0][None], w[i][None])
        ths[i] = t[0]
    samples = prob.to_params(ths)
    al, be = samples[:, 3], samples[:, 4]
    allocation = np.column_stack([be / (al + be), al / (al + be)])
    lohi = np.nanpercentile(np.column_stack([samples, allocation]), [2.5, 97.5], axis=0)
    ci = {k: [float(lohi[0, i]), float(lohi[1, i])] for i, k in enumerate(KEYS + ("a", "b"))}
    log.info("bootstrap: %d resamples, %d not converged", n_boot, int((~ok).sum()))
    return samples, ci, int((~ok).sum())


def _warnings(df: pd.DataFrame, prob: _Problem, th: np.ndarray, p: dict[str, float],
              ci: dict[str, list[float]], converged: bool, boot_bad: int) -> list[str]:
    """One-line warnings: narrow spans, unidentified E, A or B, bounds, non-convergence."""
    out = []
    for col, name in (("params", "N"), ("tokens", "D")):
        dec = math.log10(df[col].max() / df[col].min())
        if dec < 1.5:
            out.append(f"{col} span only {dec:.2f} decades of {name} (< 1.5): exponents are "
                       "poorly constrained")
    e, (e_lo, e_hi) = p["E"], ci.get("E", [p["E"], p["E"]])
    if th[2] <= prob.lo[2] + 1e-6:
        out.append("E is not identified by these points (the loss floor fell to its bound, 0)")
    elif e_lo <= 0.05 * e or e_hi - e_lo > 0.5 * e:
        out.append(f"E is not identified by these points (95% CI [{e_lo:.3g}, {e_hi:.3g}] for "
                   f"E = {e:.3g})")
    for k in ("A", "B"):
        if k in ci and ci[k][1] > 3 * ci[k][0]:
            out.append(f"{k} is poorly identified: its 95% CI [{ci[k][0]:.4g}, {ci[k][1]:.4g}] "
                       "spans more than a factor of 3")
    for i, k in ((0, "A"), (1, "B"), (3, "alpha"), (4, "beta")):
        if th[i] <= prob.lo[i] + 1e-6 or th[i] >= prob.hi[i] - 1e-6:
            out.append(f"the fit sits on a bound of {k} = {p[k]:.4g}")
    if not converged:
        out.append("the optimiser did not converge on the full data")
    if boot_bad:
        out.append(f"{boot_bad} bootstrap refits did not converge")
    return out


def _fit(df: pd.DataFrame, delta: float, bootstrap: int, seed: int) -> Fit:
    """The fit of checked points, with bootstrap and warnings; no predictions, no validation."""
    prob = _Problem(df, delta)
    th, obj, converged = _polish(prob, prob.starts(), np.ones(prob.n))
    params = dict(zip(KEYS, map(float, prob.to_params(th)[0]), strict=True))
    al, be = params["alpha"], params["beta"]
    samples, ci, bad = _bootstrap(prob, th, bootstrap, seed) if bootstrap else (None, {}, 0)
    return Fit(method="chinchilla", n_points=prob.n, params=params, ci95=ci, objective=obj,
               allocation={"a": be / (al + be), "b": al / (al + be)}, samples=samples,
               warnings=_warnings(df, prob, th, params, ci, converged, bad),
               conventions={"params": "as given", "flops": "6ND"})


def fit_chinchilla(points: pd.DataFrame, *, delta: float = 1e-3, bootstrap: int = 1000,
                   seed: int = 0, at: Sequence[tuple[float, float]] = (), validate: bool = True,
                   method: str = "chinchilla") -> Fit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Approach 3) with a seeded percentile bootstrap.

    ``points`` has params (N), loss (nats/token) and tokens (D) or flops (C = 6ND FLOPs);
    ``delta`` is the Huber threshold on log-loss residuals; ``bootstrap`` resamples give the
    95 % intervals (``ci95`` is {} when 0) and ``Fit.samples``; ``at`` lists (N, D) pairs to
    predict at; ``validate`` refits without the largest compute budget and scores it.
    Raises DataError for bad points, InputError for bad settings and FitError when a fit is
    impossible (< 5 points, < 2 distinct N or D).
    """
    if method != "chinchilla":
        raise FitError(f"unknown fit method {method!r}; expected 'chinchilla'")
    if not (delta > 0 and math.isfinite(delta)) or int(bootstrap) != bootstrap or bootstrap < 0:
        raise InputError(f"bad fit settings delta={delta!r}, bootstrap={bootstrap!r}")
    at = [(float(n), float(d)) for n, d in at]
    for n, d in at:
        if not (n > 0 and d > 0 and math.isfinite(n * d)):
            raise InputError(f"prediction point params={n}, tokens={d} is not positive finite")
    df = check_points(points)
    if len(df) < 5:
        raise FitError(f"a Chinchilla fit needs at least 5 points, got {len(df)}")
    for col in ("params", "tokens"):
        if df[col].nunique() < 2:
            raise FitError(f"a Chinchilla fit needs at least 2 distinct {col} values, got 1")
    fit = _fit(df, delta, int(bootstrap), seed)
    fit.predictions = [fit.predict(n, d) for n, d in at]
    fit.validation = _validate(df, delta) if validate else None
    for msg in fit.warnings:
        log.warning("%s", msg)
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
    n = g * (c / 6.0) ** (be / (al + be))
    return n, (c / 6.0) / n
