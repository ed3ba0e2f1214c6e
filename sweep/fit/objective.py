"""The Approach 3 objective: summed Huber of log-loss residuals, in Hoffmann's LSE form.

log L_hat = LSE(a - alpha x, b - beta y, e), x = ln N - centre, y = ln D - centre, with its
analytic gradient and Hessian (vectorised over parameter vectors), variable-projection starts,
a damped Newton method and a tight-tolerance L-BFGS-B polish. N = parameters, D = tokens,
L in nats/token. Used by sweep.fit.chinchilla (centred) and sweep.fit.hoffmann (uncentred).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sweep.errors import InputError

GRID = np.linspace(0.02, 2.0, 45)  # alpha and beta grid of the variable-projection starts
N_STARTS = 6
IDX = {"A": 0, "B": 1, "E": 2, "alpha": 3, "beta": 4}  # theta index of each parameter


class Problem:
    """Centred log data: x = ln N - mean, y = ln D - mean, z = ln L; theta = (a', b', e, alpha,
    beta) with a' = ln A - alpha * mean(ln N), b' = ln B - beta * mean(ln D)."""

    def __init__(self, df: pd.DataFrame, delta: float, weights: np.ndarray | None = None,
                 penalty: float = 0.0, fixed: dict[str, float] | None = None,
                 bounds: dict[str, tuple[float, float]] | None = None,
                 centre: bool = True) -> None:
        fixed, bounds = fixed or {}, bounds or {}
        ln_n, ln_d = np.log(df["params"].to_numpy()), np.log(df["tokens"].to_numpy())
        # a fixed A (B) needs the uncentred a = ln A (b = ln B) as its coordinate
        self.xm = float(ln_n.mean()) if centre and "A" not in fixed else 0.0
        self.ym = float(ln_d.mean()) if centre and "B" not in fixed else 0.0
        self.x, self.y = ln_n - self.xm, ln_d - self.ym
        self.z = np.log(df["loss"].to_numpy())
        self.n, self.delta, self.penalty = len(self.z), delta, penalty
        self.w = np.ones(self.n) if weights is None else np.asarray(weights, float)
        zlo, zhi = float(self.z.min()), float(self.z.max())
        self.lo = np.array([zlo - 30, zlo - 30, zlo - 20, 1e-4, 1e-4])
        self.hi = np.array([zhi + 10, zhi + 10, zhi + 1, 5.0, 5.0])
        if not centre:
            self.lo[:2], self.hi[:2] = -30.0, 60.0
        for k, (lo, hi) in bounds.items():
            i, log_ = IDX[k], k == "E"
            self.lo[i] = max(self.lo[i], math.log(lo) if log_ and lo > 0 else lo if not log_
                             else -math.inf)
            self.hi[i] = min(self.hi[i], math.log(hi) if log_ else hi)
        for k, v in fixed.items():
            self.lo[IDX[k]] = self.hi[IDX[k]] = math.log(v) if k in ("E", "A", "B") else v
        if np.any(self.lo > self.hi):
            raise InputError("the bounds leave no room for a parameter (lower > upper)")
        self.free = self.lo < self.hi
        self.gtol = 1e-9 * self.w.sum() * delta

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
        if self.penalty:
            w = w * np.where(r > 0, 1.0 + self.penalty, 1.0)
        c = np.clip(r, -d, d)  # psi(r), the Huber derivative
        f = (w * c * (r - 0.5 * c)).sum(1)  # 0.5 r^2 inside, d (|r| - d/2) outside
        cp = w * c
        w1, w2 = e1 / s, e2 / s
        gm = np.stack([w1, w2, e3 / s, -self.x * w1, -self.y * w2], axis=-1)  # grad r (B, n, 5)
        g = np.einsum("bn,bnk->bk", cp, gm) * self.free
        if not hess:
            return f, g, None
        coef = w * ((np.abs(r) <= d) - c)
        h = np.matmul(gm.transpose(0, 2, 1) * coef[:, None, :], gm)
        # psi(r) times the curvature of the log-sum-exp: sum_i p_i grad t_i grad t_i^T
        s1x, s2y = -g[:, 3], -g[:, 4]
        h[:, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] += np.column_stack(
            [g[:, 0], g[:, 1], g[:, 2], (cp * w1) @ self.x**2, (cp * w2) @ self.y**2])
        h[:, [0, 3, 1, 4], [3, 0, 4, 1]] -= np.column_stack([s1x, s1x, s2y, s2y])
        if not self.free.all():  # fixed coordinates: identity rows and columns
            h[:, ~self.free, :] = 0.0
            h[:, :, ~self.free] = 0.0
            h[:, ~self.free, ~self.free] = 1.0
        return f, g, h

    def projected(self, al: np.ndarray, be: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Variable projection at K pairs (alpha, beta): exact NNLS of the relative residuals
        (E + A'u + B'v - L)/L over (E, A', B'); returns (sse (K,), coef (K, 3))."""
        p = np.exp(-self.z)  # 1/L
        u, v = np.exp(-np.outer(al, self.x)) * p, np.exp(-np.outer(be, self.y)) * p
        k = len(al)
        cols = np.stack([np.broadcast_to(p, u.shape), u, v], 1)  # (k, 3, n)
        g = np.matmul(cols * self.w, cols.transpose(0, 2, 1))
        sc = np.sqrt(np.diagonal(g, axis1=1, axis2=2))  # column scaling for conditioning
        gs = g / sc[:, :, None] / sc[:, None, :] + 1e-12 * np.eye(3)
        rs = (cols * self.w).sum(-1) / sc
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
        sse = np.where((c >= 0).all(-1), self.w.sum() - (c * rs[:, None, :]).sum(-1), np.inf)
        best = np.argmin(sse, axis=1)
        return sse[np.arange(k), best], c[np.arange(k), best] / sc

    def starts(self) -> np.ndarray:
        """Starts (K, 5): interior local minima (and the global one) of the projected objective
        on the (alpha, beta) grid, each refined by a shrinking pattern search."""
        axes = [np.linspace(max(self.lo[i], GRID[0]), min(self.hi[i], GRID[-1]), len(GRID))
                if self.free[i] else self.lo[i:i + 1] for i in (3, 4)]
        ka, kb = len(axes[0]), len(axes[1])
        ga, gb = np.meshgrid(*axes, indexing="ij")
        sse = self.projected(ga.ravel(), gb.ravel())[0].reshape(ka, kb)
        pad = np.pad(sse, 1, constant_values=np.inf)
        nb = [pad[1 + i : 1 + i + ka, 1 + j : 1 + j + kb] for i in (-1, 0, 1) for j in (-1, 0, 1)]
        local = (sse <= np.min(nb, axis=0)) & np.isfinite(sse)
        local[[0, -1], :] = local[:, [0, -1]] = False  # grid-edge minima are artefacts
        local.flat[np.argmin(sse)] = True
        score = np.where(local, sse, np.inf).ravel()
        order = np.argsort(score)[:N_STARTS]
        ab = np.column_stack([ga.ravel(), gb.ravel()])[order[np.isfinite(score[order])]]
        step, offs = 4 * (GRID[1] - GRID[0]), np.linspace(-3, 3, 7)
        pattern = np.stack(np.meshgrid(offs, offs, indexing="ij"), -1).reshape(-1, 2)
        for _ in range(16):  # zoom: best of a 7x7 pattern around each start, step / 4
            step /= 4
            trial = np.clip(ab[:, None, :] + step * pattern[None], np.maximum(self.lo[3:], 1e-3),
                            np.minimum(self.hi[3:], 4.0))
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
        from scipy.optimize import minimize  # only when Newton alone did not converge

        res = minimize(fun, th0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 1000, "maxfun": 2000, "ftol": 1e-15, "gtol": 1e-12,
                                "maxcor": 20})
        return res.x, bool(res.success)

    def newton(self, th0: np.ndarray, w: np.ndarray, maxiter: int = 500
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Levenberg-Marquardt-damped projected Newton, vectorised over rows of th0 (B, 5) and
        w (B, n); rows that finish leave the working set, so a long tail of slow rows costs
        little. Returns (theta, f, converged)."""
        th = np.clip(th0, self.lo, self.hi).astype(float)
        out_th, out_f, conv = th.copy(), np.zeros(len(th)), np.zeros(len(th), bool)
        rows = np.arange(len(th))
        f, g, h = self.fgh(th, w)
        lam = np.full(len(th), 1e-6)
        eye = np.eye(5)
        for _ in range(maxiter):
            pg = np.where(((th <= self.lo) & (g > 0)) | ((th >= self.hi) & (g < 0)), 0.0, g)
            gmax = np.abs(pg).max(1)
            # projected Newton (Bertsekas 1982): coordinates held at a bound by their gradient
            # leave the system, so the others take a full Newton step in their own subspace
            free = (pg != 0.0) | (g == 0.0)
            ga = np.where(free, g, 0.0)
            ha = h * (free[:, :, None] & free[:, None, :]) + ~free[:, :, None] * eye
            dg = np.maximum(np.abs(np.diagonal(ha, axis1=1, axis2=2)), 1e-12 * self.gtol)
            m = ha + lam[:, None, None] * (dg[:, :, None] * eye)
            try:
                step = -np.linalg.solve(m, ga[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = -np.stack([np.linalg.lstsq(mi, gi, rcond=None)[0]
                                  for mi, gi in zip(m, ga, strict=True)])
            new = np.clip(th + step, self.lo, self.hi)
            fn, gn, hn = self.fgh(new, w)
            ok = np.isfinite(fn) & (fn < f) & (gmax > self.gtol)
            tiny = ok & (f - fn <= 1e-15 * np.abs(f))
            stalled = ~ok & (lam > 1e12)
            th[ok], f[ok], g[ok], h[ok] = new[ok], fn[ok], gn[ok], hn[ok]
            lam = np.where(ok, np.maximum(lam / 4, 1e-12), lam * 8)
            good = (gmax <= self.gtol) | tiny | (stalled & (gmax <= 1e3 * self.gtol))
            fin = good | stalled
            if fin.any():
                out_th[rows[fin]], out_f[rows[fin]], conv[rows[fin]] = th[fin], f[fin], good[fin]
                keep = ~fin
                th, f, g, h, lam, w, rows = (th[keep], f[keep], g[keep], h[keep], lam[keep],
                                             w[keep], rows[keep])
                if not len(rows):
                    break
        out_th[rows], out_f[rows] = th, f
        return out_th, out_f, conv
