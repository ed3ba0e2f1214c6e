"""Levenberg-Marquardt-damped Newton for small bounded fits, vectorised over parameter rows
(starts, or bootstrap resamples as rows of weights). Used by the candidate laws
(sweep.fit.laws, which re-exports it) and the whole-curve law (sweep.fit.curve_law)."""

from __future__ import annotations

import numpy as np


def newton(objective, th: np.ndarray, w: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           gtol: np.ndarray, maxiter: int = 200, hessian=None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg-Marquardt-damped Newton, vectorised over rows of th (B, p) and weights
    w (B, n): objective(th, w) -> (f (B,), grad (B, p)); Hessian from ``hessian(th, w)`` ->
    (B, p, p) when given, else by central differences of the analytic gradient; either is
    evaluated only where a row has moved (a rejected step keeps it). A row has converged when
    its projected gradient is <= gtol (B,) (sweep.fit.objective uses 1e-9 * sum(w) * delta).
    Returns (theta, f, converged)."""
    th = np.clip(np.array(th, float), lo, hi)
    f, g = objective(th, w)
    b, p = th.shape
    lam = np.full(b, 1e-6)
    done, conv = np.zeros(b, bool), np.zeros(b, bool)
    eye = np.eye(p)
    hs, fresh = np.zeros((b, p, p)), np.zeros(b, bool)  # Hessian at th, valid where fresh

    def fd_hessian(ta, wa):
        e = 1e-6 * np.maximum(1.0, np.abs(ta))  # (B, p)
        step = e[None] * eye[:, None, :]  # (p, B, p): row k shifts coordinate k
        if 2 * p * wa.size <= 200_000:  # the 2p shifted gradients in one call
            gs = objective(np.concatenate([ta + step, ta - step]).reshape(-1, p),
                           np.tile(wa, (2 * p, 1)))[1].reshape(2, p, len(ta), p)
        else:  # large problems (curve laws): one shift at a time
            gs = np.stack([[objective(ta + sg * step[k], wa)[1] for k in range(p)]
                           for sg in (1, -1)])
        h = ((gs[0] - gs[1]) / (2 * e.T[:, :, None])).transpose(1, 2, 0)
        return 0.5 * (h + h.transpose(0, 2, 1))

    def proj(t, gr):
        return np.where(((t <= lo) & (gr > 0)) | ((t >= hi) & (gr < 0)), 0.0, gr)

    for _ in range(maxiter):
        pg = proj(th, g)
        small = np.abs(pg).max(1) <= gtol
        conv |= small & ~done
        done |= small
        act = np.flatnonzero(~done)
        if not len(act):
            break
        ta, wa = th[act], w[act]
        stale = act[~fresh[act]]
        if len(stale):
            hs[stale] = (hessian or fd_hessian)(th[stale], w[stale])
            fresh[stale] = True
        h = hs[act]
        dg = np.maximum(np.abs(np.diagonal(h, axis1=1, axis2=2)), 1e-12)
        m = h + lam[act, None, None] * (dg[:, :, None] * eye)
        try:
            stp = -np.linalg.solve(m, pg[act][..., None])[..., 0]
        except np.linalg.LinAlgError:
            stp = -np.stack([np.linalg.lstsq(mi, gi, rcond=None)[0]
                             for mi, gi in zip(m, pg[act], strict=True)])
        new = np.clip(ta + stp, lo, hi)
        fn, gn = objective(new, wa)
        ok = np.isfinite(fn) & (fn < f[act])
        tiny = ok & (f[act] - fn <= 1e-15 * np.abs(f[act]))
        stalled = ~ok & (lam[act] > 1e12)
        acc = act[ok]
        th[acc], f[acc], g[acc] = new[ok], fn[ok], gn[ok]
        fresh[acc] = False
        lam[act] = np.where(ok, np.maximum(lam[act] / 4, 1e-12), lam[act] * 8)
        fin = act[tiny | stalled]
        conv[fin] = np.abs(proj(th[fin], g[fin])).max(1) <= 1e3 * gtol[fin]
        done[fin] = True
    return th, f, conv
