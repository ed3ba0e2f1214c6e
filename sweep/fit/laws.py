"""Candidate laws L(N, D) for law selection, each a converged Huber fit of log-loss residuals.

Forms (N = parameters, D = training tokens, L in nats/token):
- ``chinchilla``: E + A/N^alpha + B/D^beta (Hoffmann et al. 2022), sweep.fit.objective's
  centred parametrisation, starts and bounds (reaches the published 1.018274e-3 on Chinchilla);
- ``chinchilla-equal``: the same with alpha = beta (one exponent);
- ``kaplan``: E + [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Kaplan et al. 2020, eq. 1.5,
  with a floor E >= 0).
Objective: sum of Huber_delta(ln L_hat - ln L), delta = 1e-3 (Hoffmann's App. D.2). Every form is
evaluated in log space (log-sum-exp), so no power of N or D is ever formed and nothing overflows.
Starts come from variable projection (the model is linear in its coefficients once the exponents
are fixed: NNLS on a grid of exponents), all polished at once by a damped Newton method
(sweep.fit.newton, vectorised over starts); the best is polished to |projected gradient| <=
1e-9 * n * delta. ``bootstrap`` refits resamples of the points (one point = one run),
warm-started from the full-data optimum, 50 Newton steps each; the resamples depend only on
(seed, n), so draws of different laws fitted with one seed are paired.
Hessian: exact for the Chinchilla forms (sum w psi'(r) J J^T + sum w psi(r) Hess ln L_hat, the
LSE's curvature in closed form), one evaluation per accepted step instead of 2p gradients.
Kaplan keeps central differences of the analytic gradient (``exact_hessian = False``): its
valleys are so flat (N_c against alpha_N/alpha_D) that an equally accurate Hessian stops at
another point inside the tolerance (relative theta changes to 1e-2, objective 1e-16) and moves
the rollout table's 4th decimal; its exact ``curvature`` is kept, tested, for when that is
acceptable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sweep.errors import FitError
from sweep.fit.newton import newton
from sweep.fit.objective import GRID, Problem

DELTA = 1e-3


def expit(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) to full relative precision, without importing scipy (0.2 s)."""
    return np.exp(-np.logaddexp(0.0, -x))


def huber(r: np.ndarray, w: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Summed weighted Huber values over the last axis and the derivative w * psi(r)."""
    a = np.abs(r)
    f = (w * np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))).sum(-1)
    return f, w * np.clip(r, -delta, delta)


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) bootstrap counts; the same draws as sweep.fit.chinchilla's bootstrap."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(idx.ravel(), minlength=idx.size).reshape(idx.shape).astype(float)


@dataclass
class FittedLaw:
    """A fitted law: ``predict(N, D)`` (nats/token), ``params`` (named, uncentred), bootstrap
    ``samples`` (rows of the law's internal theta) for ``predict_draws``."""

    law: str
    params: dict[str, float]
    objective: float
    converged: bool
    n_points: int
    theta: np.ndarray
    centre: tuple[float, float]  # (mean ln N, mean ln D) of the fitted points
    form: Law = field(repr=False)
    samples: np.ndarray | None = field(default=None, repr=False)

    def _xy(self, n: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, d = np.broadcast_arrays(np.asarray(n, float), np.asarray(d, float))
        return np.log(n).ravel() - self.centre[0], np.log(d).ravel() - self.centre[1]

    def predict(self, n: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
        """Predicted loss (nats/token) at N params, D tokens (broadcast, flattened)."""
        x, y = self._xy(n, d)
        return np.exp(self.form.logpred(self.theta[None], x, y)[0][0])

    def predict_draws(self, n: np.ndarray | float, d: np.ndarray | float) -> np.ndarray | None:
        """(n_boot, n_points) predicted losses of the bootstrap refits, or None."""
        if self.samples is None or not len(self.samples):
            return None
        x, y = self._xy(n, d)
        return np.exp(self.form.logpred(np.asarray(self.samples), x, y)[0])


class Law:
    """A candidate form. Subclasses give ``keys``, ``logpred``, ``bounds``, ``starts``,
    ``named``; ``fit`` is shared."""

    name = "law"
    n_params = 5
    exact_hessian = True  # Newton on the analytic Hessian (else central differences)

    def logpred(self, th: np.ndarray, x: np.ndarray, y: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """(ln L_hat (B, n), Jacobian (B, n, p)) for theta rows th (B, p) at centred
        x = ln N - xm, y = ln D - ym."""
        raise NotImplementedError

    def curvature(self, th: np.ndarray, x: np.ndarray, y: np.ndarray, c: np.ndarray,
                  jac: np.ndarray) -> np.ndarray:
        """sum_i c_i * Hessian of ln L_hat_i in theta, (B, p, p), for weights c (B, n);
        jac = logpred's Jacobian at th."""
        raise NotImplementedError

    def bounds(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def starts(self, prob: Problem) -> np.ndarray:
        raise NotImplementedError

    def named(self, th: np.ndarray, xm: float, ym: float) -> dict[str, float]:
        raise NotImplementedError

    def fit(self, df: pd.DataFrame, *, delta: float = DELTA, bootstrap: int = 0,
            seed: int = 0, weights: np.ndarray | None = None) -> FittedLaw:
        """Converged fit of ``df`` (params, tokens, loss) + ``bootstrap`` warm-started refits
        (Newton vectorised over resamples)."""
        _check(df, self.n_params + 1)
        prob = Problem(df, delta, weights)
        lo, hi = self.bounds(prob.z)
        x, y, z = prob.x, prob.y, prob.z

        def obj(th, w):
            zh, jac = self.logpred(th, x, y)
            f, psi = huber(zh - z, w, delta)
            return f, np.einsum("bnp,bn->bp", jac, psi)

        def hess(th, w):  # exact: sum w psi'(r) J J^T + sum w psi(r) Hessian(ln L_hat)
            zh, jac = self.logpred(th, x, y)
            r = zh - z
            inl = w * (np.abs(r) <= delta)
            return (np.matmul(jac.transpose(0, 2, 1) * inl[:, None, :], jac)
                    + self.curvature(th, x, y, w * np.clip(r, -delta, delta), jac))

        def run(th0, w, maxiter):
            return newton(obj, th0, w, lo, hi, 1e-9 * w.sum(1) * delta, maxiter,
                          hess if self.exact_hessian else None)

        starts = self.starts(prob)
        ths, fs, _ = run(starts, np.tile(prob.w, (len(starts), 1)), 30)
        th, f, ok = (v[0] for v in run(ths[[np.argmin(fs)]], prob.w[None], 200))
        if not ok:  # rare (slow valleys): more Newton steps
            th, f, ok = (v[0] for v in run(th[None], prob.w[None], 1000))
        samples = None
        if bootstrap:
            counts = resample_counts(prob.n, bootstrap, seed) * prob.w
            samples = run(np.tile(th, (bootstrap, 1)), counts, 50)[0]
        return FittedLaw(self.name, self.named(th, prob.xm, prob.ym), float(f), bool(ok),
                         prob.n, th, (prob.xm, prob.ym), self, samples)


def _check(df: pd.DataFrame, min_points: int) -> None:
    for col in ("params", "tokens", "loss"):
        if col not in df:
            raise FitError(f"law fit: points have no {col!r} column")
    if len(df) < min_points:
        raise FitError(f"law fit needs at least {min_points} points, got {len(df)}")
    for col in ("params", "tokens"):
        if df[col].nunique() < 2:
            raise FitError(f"law fit needs at least 2 distinct {col} values")


def _lse3(t1: np.ndarray, t2: np.ndarray, t3: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """log(e^t1 + e^t2 + e^t3) and the three softmax weights."""
    m = np.maximum(np.maximum(t1, t2), t3)
    e1, e2, e3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    s = e1 + e2 + e3
    return m + np.log(s), e1 / s, e2 / s, e3 / s


def _lse_curvature(x: np.ndarray, y: np.ndarray, c: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """sum_i c_i * Hessian of LSE(a - alpha x_i, b - beta y_i, e) in theta = (a, b, e, alpha
    [, beta]) (beta = the last: alpha when p = 4) -> (B, p, p); the Jacobian jac (B, n, p)
    starts with the terms' softmax weights: Hessian = sum_k p_k t_k t_k^T - jac jac^T."""
    n, p = len(x), jac.shape[-1]
    t = np.zeros((n, 3, p))  # the gradients t_k of the three (linear) terms
    t[:, 0, 0], t[:, 1, 1], t[:, 2, 2], t[:, 0, 3], t[:, 1, p - 1] = 1, 1, 1, -x, -y
    own = (c[..., None] * jac[..., :3]).reshape(-1, n * 3) @ (
        t[..., :, None] * t[..., None, :]).reshape(n * 3, p * p)
    return own.reshape(-1, p, p) - np.matmul(jac.transpose(0, 2, 1) * c[:, None, :], jac)


class Chinchilla(Law):
    """E + A/N^alpha + B/D^beta; theta = (a', b', e, alpha, beta) as sweep.fit.objective's
    centred Problem (a' = ln A - alpha xm, b' = ln B - beta ym, e = ln E), same starts
    (variable projection), same bounds; the Newton here is vectorised over starts/resamples."""

    name = "chinchilla"

    def logpred(self, th, x, y):
        a, b, e, al, be = (th[:, k : k + 1] for k in range(5))
        z, w1, w2, w3 = _lse3(a - al * x, b - be * y, e + 0 * x)
        return z, np.stack([w1, w2, w3, -w1 * x, -w2 * y], -1)

    def curvature(self, th, x, y, c, jac):
        return _lse_curvature(x, y, c, jac)

    def bounds(self, z):
        zlo, zhi = float(z.min()), float(z.max())
        return (np.array([zlo - 30, zlo - 30, zlo - 20, 1e-4, 1e-4]),
                np.array([zhi + 10, zhi + 10, zhi + 1, 5.0, 5.0]))

    def starts(self, prob):
        return prob.starts()

    def named(self, th, xm, ym):
        a, b, e, al, be = th
        return {"E": float(np.exp(e)), "A": float(np.exp(a + al * xm)),
                "B": float(np.exp(b + be * ym)), "alpha": float(al), "beta": float(be)}


class ChinchillaEqual(Law):
    """E + A/N^alpha + B/D^alpha; theta = (a', b', e, alpha) with a' = ln A - alpha xm,
    b' = ln B - alpha ym, e = ln E."""

    name = "chinchilla-equal"
    n_params = 4

    def logpred(self, th, x, y):
        a, b, e, al = (th[:, k : k + 1] for k in range(4))
        z, w1, w2, w3 = _lse3(a - al * x, b - al * y, e + 0 * x)
        return z, np.stack([w1, w2, w3, -w1 * x - w2 * y], -1)

    def curvature(self, th, x, y, c, jac):
        return _lse_curvature(x, y, c, jac)

    def bounds(self, z):
        zlo, zhi = float(z.min()), float(z.max())
        return (np.array([zlo - 30, zlo - 30, zlo - 20, 1e-4]),
                np.array([zhi + 10, zhi + 10, zhi + 1, 5.0]))

    def starts(self, prob):
        sse, coef = prob.projected(GRID, GRID)
        order = [i for i in np.argsort(sse) if np.isfinite(sse[i])][:3]
        out = []
        for i in order:  # refine each alpha by a shrinking 1-D search
            al, step = GRID[i], GRID[1] - GRID[0]
            for _ in range(12):
                trial = np.clip(al + step * np.linspace(-2, 2, 9), 1e-3, 4.0)
                al, step = trial[int(np.argmin(prob.projected(trial, trial)[0]))], step / 3
            c = prob.projected(np.array([al]), np.array([al]))[1][0]
            c = np.where(c > 0, c, 1e-3 * np.exp(prob.z.min()))
            out.append([np.log(c[1]), np.log(c[2]), np.log(c[0]), al])
        return np.array(out)

    def named(self, th, xm, ym):
        a, b, e, al = th
        return {"E": float(np.exp(e)), "A": float(np.exp(a + al * xm)),
                "B": float(np.exp(b + al * ym)), "alpha": float(al), "beta": float(al)}


class Kaplan(Law):
    """E + [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D; theta = (p, q, u, v, e) with
    p = alpha_N/alpha_D, q = alpha_D, u = ln N_c - xm, v = ln D_c - ym, e = ln E:
    ln L_hat = LSE(q LSE(p (u - x), v - y), e)."""

    name = "kaplan"
    exact_hessian = False  # see the module docstring

    def logpred(self, th, x, y):
        p, q, u, v, e = (th[:, k : k + 1] for k in range(5))
        t1, t2 = p * (u - x), v - y
        inner = np.logaddexp(t1, t2)
        s1 = expit(t1 - t2)
        lt = q * inner
        z = np.logaddexp(lt, e)
        om = expit(lt - e)
        jac = np.stack([om * q * s1 * (u - x), om * inner, om * q * s1 * p,
                        om * q * (1 - s1), 1 - om], -1)
        return z, jac

    def curvature(self, th, x, y, c, jac):
        """ln L_hat = LSE(lt, e), lt = q * inner, inner = LSE(t1, t2): chain rule."""
        p, q, u, v, e = (th[:, k : k + 1] for k in range(5))
        t1, t2 = p * (u - x), v - y
        inner, s1 = np.logaddexp(t1, t2), expit(t1 - t2)
        om = expit(q * inner - e)
        o, z0 = np.ones_like(t1), np.zeros_like(t1)
        d_in = np.stack([s1 * (u - x), z0, s1 * p, 1 - s1, z0], -1)  # grad inner
        d12 = np.stack([u - x + z0, z0, p + z0, -o, z0], -1)  # grad (t1 - t2)
        g_lt = q[..., None] * d_in + np.stack([z0, inner, z0, z0, -o], -1)  # grad (lt - e)
        c1 = c * om
        h = np.matmul(g_lt.transpose(0, 2, 1) * (c1 * (1 - om))[:, None, :], g_lt)
        h += np.matmul(d12.transpose(0, 2, 1) * (c1 * q * s1 * (1 - s1))[:, None, :], d12)
        cross = np.einsum("bn,bnp->bp", c1, d_in)  # q-row/column of grad^2 lt
        h[:, 1, :] += cross
        h[:, :, 1] += cross
        pu = (c1 * q * s1).sum(1)  # d^2 t1 / dp du = 1
        h[:, 0, 2] += pu
        h[:, 2, 0] += pu
        return h

    def bounds(self, z):
        zlo, zhi = float(z.min()), float(z.max())
        return (np.array([0.02, 1e-3, -200.0, -200.0, zlo - 20]),
                np.array([50.0, 5.0, 2000.0, 2000.0, zhi + 1]))

    def starts(self, prob):
        """For fixed (p, q, E), e^{ln(L - E)/q} = c1 e^{-p x} + c2 e^{-y} is linear in
        c1 = N_c'^p, c2 = D_c' >= 0: NNLS (rows scaled by the target) on a grid of (p, q, E),
        vectorised; the 5 grid points with the lowest Huber objective are the starts."""
        lo, hi = self.bounds(prob.z)
        x, y, z = prob.x, prob.y, prob.z
        qs, ps = np.geomspace(0.02, 2.0, 14), np.geomspace(0.2, 5.0, 10)
        cands = []
        for frac in (0.0, 0.5, 0.8, 0.95):
            ee = frac * float(np.exp(z.min()))
            t = np.log(np.exp(z) - ee)[None, None, :] / qs[:, None, None]  # (Q, 1, n)
            ln1 = -ps[None, :, None] * x - t  # (Q, P, n)
            ln2 = np.broadcast_to(-y - t, ln1.shape)
            sh1, sh2 = ln1.max(-1, keepdims=True), ln2.max(-1, keepdims=True)
            c1, c2 = np.exp(ln1 - sh1), np.exp(ln2 - sh2)
            g11, g22, g12 = (c1 * c1).sum(-1), (c2 * c2).sum(-1), (c1 * c2).sum(-1)
            r1, r2 = c1.sum(-1), c2.sum(-1)
            det = g11 * g22 - g12**2
            with np.errstate(divide="ignore", invalid="ignore"):
                k1, k2 = (r1 * g22 - r2 * g12) / det, (r2 * g11 - r1 * g12) / det
                both = (k1 > 0) & (k2 > 0) & (det > 1e-12 * g11 * g22)
                sse1, sse2 = -(r1**2) / g11, -(r2**2) / g22  # one term only
                k1 = np.where(both, k1, np.where(sse1 <= sse2, r1 / g11, 0.0))
                k2 = np.where(both, k2, np.where(sse1 <= sse2, 0.0, r2 / g22))
                l1 = np.log(np.maximum(k1, 1e-300)) - sh1[..., 0]
                l2 = np.log(np.maximum(k2, 1e-300)) - sh2[..., 0]
            l1 = np.where(k1 > 0, l1, l2 - 20)  # revive a dropped term
            l2 = np.where(k2 > 0, l2, l1 - 20)
            qq, pp = np.meshgrid(qs, ps, indexing="ij")
            th = np.stack([pp, qq, l1 / pp, l2, np.full_like(pp, math.log(max(ee, 1e-9)))], -1)
            cands.append(th.reshape(-1, 5))
        cands = np.clip(np.concatenate(cands), lo, hi)
        cands = cands[np.isfinite(cands).all(1)]
        f = huber(self.logpred(cands, x, y)[0] - z, prob.w, prob.delta)[0]
        return cands[np.argsort(f)[:5]]

    def named(self, th, xm, ym):
        p, q, u, v, e = th
        return {"E": float(np.exp(e)), "N_c": float(np.exp(u + xm)), "D_c": float(np.exp(v + ym)),
                "alpha_N": float(p * q), "alpha_D": float(q)}


LAWS: dict[str, Law] = {law.name: law for law in (Chinchilla(), ChinchillaEqual(), Kaplan())}
"""The point-fit candidates by CLI name (``sweep fit --law NAME``); 'curve' is in curve_law."""


def get_law(name: str) -> Law:
    """The candidate law called ``name``; FitError listing the known names otherwise."""
    if name not in LAWS:
        raise FitError(f"unknown law {name!r}; expected one of {', '.join(LAWS)}")
    return LAWS[name]

