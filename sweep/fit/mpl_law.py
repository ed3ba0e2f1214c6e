"""Multi-power law: the loss curve under a run's LR schedule, across model sizes.

Luo et al. 2025 ("A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules",
arXiv:2503.12811), checked against the paper's text (arxiv.org/html/2503.12811v1 and its
summary): L(t) = L0 + A (S1(t) + S_W)^-alpha - LD(t), S1(t) = sum_{tau=1..t} eta_tau the LR sum
after warmup, S_W the warmup's LR sum, and the loss reduction of LR decay
LD(t) = B sum_{k=1..t} (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)), G(x) = 1 - (C x + 1)^-beta,
S_k(t) = sum_{tau=k..t} eta_tau (eta_0 = the peak LR at the end of warmup). Since G < 1, the
gain is bounded: LD(t) <= B (eta_0 - eta_t) for a decaying schedule (Tissue's C S2 is not).
Extended across sizes as the curve law, L0 -> E + A_N N^-alpha_N:

    L(N, t) = E + A_N N^-alpha_N + A S1(t)^-alpha - LD(t)

with S1(t) + S_W = the whole LR area and S_k in LR x tokens (sum eta_i b_i, b_i tokens of step
i), so runs with other batch sizes compare. By default (``relative``) eta is in units of each
run's peak LR: on the 20-run sweep of analysis/law_holdout.py (peak LR ~ 1/width), fitted on
D <= 2e6 tokens, runs of 4e6 were predicted with mean |error| 0.9 % (absolute LRs: 4.0 %;
rollout 1.2 % vs 2.2 %).
Warmup is not decay (the LR is held at its peak for the differences). LD is summed over
``knots`` blocks of equal LR drop (per block: the summed drop, the drop-weighted mean eta_k
and S1(k-1)); within 0.5 % of the direct loop at 12 blocks (tests check 1 %).
Points (train loss, nats/token): the logged points from the LR peak and past ``skip_frac``
of each run, thinned to ``per_run``; where a run logged its held-out loss at its end, that end
point is the eval loss brought to the train scale (one batch's train loss is noisy: on that sweep
ln(eval/train) at the end has sd 2.4 %) and weighs as much as the rest of the curve
(``end_weight``): a first fit on the train points gives the gap g = mean ln(eval_end / fitted
train loss at the end), the ends become ln eval_end - g and the fit is redone from there; g is
then re-measured and applied to final predictions. On that sweep (fit on D <= 1e6, 4x-D runs held
out) this took the error from 15 % (train points only) to 1.7 %.
The fit: variable projection (exact NNLS of relative residuals in E, A_N, A, B >= 0 on a grid
of the exponents) for starts, then a batched Levenberg-Marquardt on the summed Huber
(delta = 1e-3) of log-loss residuals (Gauss-Newton with IRLS weights); the bootstrap resamples
runs and refits from the full fit (3 LM steps). Template schedule as sweep.fit.curve_law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sweep.errors import FitError
from sweep.fit.curve_law import schedule, scan_runs, template_schedule
from sweep.fit.laws import DELTA, resample_counts

KEYS = ("E", "A_N", "alpha_N", "A", "alpha", "B", "C", "beta", "gamma")
KNOTS = 12
TINY = 1e-6


def knots(eta: np.ndarray, b: np.ndarray, t: np.ndarray, k: int = KNOTS
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """At steps ``t`` of a run (per-step LR ``eta``, tokens ``b``): S1(t) (P,) and per block of
    decay steps k <= t (P, k): the summed drop eta_{k-1} - eta_k, the drop-weighted mean eta_k
    and S_k(t) = S1(t) - S1(k-1), S1 in LR x tokens. Blocks split the steps from the LR peak
    to t into equal parts of the summed |drop|; empty blocks have drop 0."""
    eta = np.asarray(eta, float)
    s1 = np.cumsum(eta * b)
    peak = int(np.argmax(eta))
    held = np.where(np.arange(len(eta)) < peak, eta[peak], eta)
    drop = np.r_[0.0, held[:-1] - held[1:]]
    w = np.abs(drop)

    def pre(v):
        return np.r_[0.0, np.cumsum(v)]

    cd, cw, cws, cwe = pre(drop), pre(w), pre(w * np.r_[0.0, s1[:-1]]), pre(w * eta)
    t = np.atleast_1d(np.asarray(t, int))
    lo = peak + 1
    hi = np.maximum(t + 1, lo)
    # blocks of equal summed |drop| (the LR decays unevenly: WSD is flat, then falls)
    q = cw[lo] + np.linspace(0, 1, k + 1)[None] * (cw[hi] - cw[lo])[:, None]
    edges = np.clip(np.searchsorted(cw, q, side="left"), lo, hi[:, None])
    edges[:, 0], edges[:, -1] = lo, hi
    a, z = edges[:, :-1], edges[:, 1:]
    ws = cw[z] - cw[a]
    ok = ws > 0
    ws = np.where(ok, ws, 1.0)
    sk = s1[t][:, None] - (cws[z] - cws[a]) / ws
    ek = (cwe[z] - cwe[a]) / ws
    return (s1[t], np.where(ok, cd[z] - cd[a], 0.0), np.where(ok, ek, eta[peak]),
            np.where(ok & (sk > 0), sk, 1.0))


@dataclass
class MplFit:
    """A fitted multi-power law: ``params`` (KEYS; C per LR^gamma per LR x token, B per unit of
    LR), loss nats/token."""

    params: dict[str, float]
    objective: float
    converged: bool
    n_points: int
    n_runs: int
    theta: np.ndarray
    scale: tuple[float, float, float, float, float]  # mean ln N, mean ln S1, mean ln eta, S, eta
    gap: float  # ln(eval/train) at the end of the schedule, applied to final predictions
    template: dict = field(repr=False, default_factory=dict)
    samples: np.ndarray | None = field(default=None, repr=False)
    relative: bool = True  # LR in units of each run's peak LR
    law: str = "mpl"

    def _knots(self, eta: np.ndarray, b: np.ndarray):
        return knots(eta / eta.max() if self.relative else eta, b, [len(eta) - 1])

    def _features(self, n, s1, dr, ek, sk):
        xm, um, lm, ss, es = self.scale
        return (np.log(np.asarray(n, float)) - xm, np.log(s1) - um, dr / es, np.log(ek) - lm,
                sk / ss)

    def _final(self, th_rows: np.ndarray, feats) -> np.ndarray:
        return _model(np.atleast_2d(th_rows), *feats)[0] * math.exp(self.gap)

    def _areas(self, n, d):
        n, d = np.broadcast_arrays(np.asarray(n, float), np.asarray(d, float))
        rows = []
        for ni, di in zip(n.ravel(), d.ravel(), strict=True):
            rows.append(self._knots(*template_schedule(self.template, ni, di)))
        return self._features(n.ravel(), *(np.concatenate(v) for v in zip(*rows, strict=True)))

    def predict(self, n, d) -> np.ndarray:
        """Final loss (nats/token, held-out if the fit saw eval losses) of runs of N params and
        D tokens on the template schedule (the fitted runs' shape, peak LR by size)."""
        return self._final(self.theta, self._areas(n, d))[0]

    def predict_draws(self, n, d) -> np.ndarray | None:
        return None if self.samples is None else self._final(self.samples, self._areas(n, d))

    def predict_runs(self, points: pd.DataFrame, curves: pd.DataFrame
                     ) -> tuple[np.ndarray, np.ndarray | None]:
        """Final losses of the runs in ``points`` (run_id) on their own logged schedules
        (``curves``: lr per logged step; the losses are not used) and bootstrap draws."""
        rows, ns = [], []
        for rid in points["run_id"]:
            g = curves[curves["run_id"] == rid].sort_values("step")
            if g.empty:
                raise FitError(f"mpl law: no curve for run {rid!r}")
            eta, b, _ = schedule(g["step"].to_numpy(), g["lr"].to_numpy(),
                                 g["tokens"].to_numpy())
            rows.append(self._knots(eta, b))
            ns.append(float(g["params"].iloc[0]))
        feats = self._features(np.array(ns), *(np.concatenate(v) for v in zip(*rows,
                                                                               strict=True)))
        pred = self._final(self.theta, feats)[0]
        return pred, None if self.samples is None else self._final(self.samples, feats)


def _model(th: np.ndarray, x, u, dr, le, sk) -> tuple[np.ndarray, np.ndarray]:
    """(L_hat (B, P), dL_hat/dtheta (B, P, 9)) for theta rows (ln E, a', alpha_N, ln A',
    alpha, ln B', ln C', beta, gamma): centred ln N ``x``, ln S1 ``u`` (P,), and per knot
    (P, K) the scaled drop ``dr``, centred ln eta_k ``le`` and scaled S_k ``sk``."""
    e, a, al, a2, alp, lb, lc, be, ga = (th[:, i : i + 1] for i in range(9))
    ee, tn, ts = np.exp(e) + 0 * x, np.exp(a - al * x), np.exp(a2 - alp * u)
    cx = np.exp(lc[..., None] - ga[..., None] * le) * sk  # C x, (B, P, K)
    ly = np.log1p(cx)
    ymb = np.exp(-be[..., None] * ly)  # y^-beta
    bb = np.exp(lb)
    ld = bb * np.einsum("pk,bpk->bp", dr, 1 - ymb)
    q = dr * be[..., None] * ymb * (cx / (1 + cx))  # d G / d ln C, times the drop
    jac = np.stack([ee, tn, -x * tn, ts, -u * ts, -ld, -bb * q.sum(-1),
                    -bb * np.einsum("pk,bpk->bp", dr, ly * ymb), bb * (q * le).sum(-1)], -1)
    return ee + tn + ts - ld, jac


def _lm(th, w, lo, hi, feats, z, delta, maxiter):
    """Batched Levenberg-Marquardt on sum w Huber(ln L_hat - z) with IRLS weights: rows of th
    (B, 9), w (B, P). Returns (theta, f, converged)."""
    th = np.clip(np.array(th, float), lo, hi)

    def ev(t, wt):
        lh, jac = _model(t, *feats)
        bad = ~(lh > TINY)
        r = np.log(np.where(bad, TINY, lh)) - z
        a = np.abs(r)
        f = (wt * np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))).sum(-1)
        f = np.where(bad.any(-1), np.inf, f)
        return f, r, jac / np.where(bad, 1.0, lh)[..., None]

    f, r, j = ev(th, w)
    lam = np.full(len(th), 1e-3)
    done, conv = np.zeros(len(th), bool), np.zeros(len(th), bool)
    eye = np.eye(th.shape[1])
    for _ in range(maxiter):
        act = np.flatnonzero(~done)
        if not len(act):
            break
        ra, ja, wa = r[act], j[act], w[act]
        g = np.einsum("bpi,bp->bi", ja, wa * np.clip(ra, -delta, delta))
        om = wa * np.minimum(1.0, delta / np.maximum(np.abs(ra), 1e-300))
        h = np.einsum("bpi,bp,bpj->bij", ja, om, ja)
        free = ~(((th[act] <= lo) & (g > 0)) | ((th[act] >= hi) & (g < 0)))
        dg = np.maximum(np.diagonal(h, axis1=1, axis2=2), 1e-12)
        m = h + lam[act, None, None] * dg[:, :, None] * eye + (~free)[:, :, None] * eye * 1e12
        stp = -np.linalg.solve(m, (g * free)[..., None])[..., 0]
        new = np.clip(th[act] + stp, lo, hi)
        fn, rn, jn = ev(new, wa)
        ok = np.isfinite(fn) & (fn < f[act])
        gain = f[act] - np.where(ok, fn, f[act])
        acc = act[ok]
        th[acc], f[acc], r[acc], j[acc] = new[ok], fn[ok], rn[ok], jn[ok]
        lam[act] = np.where(ok, lam[act] / 3, lam[act] * 4)
        small = (ok & (gain <= 1e-6 * np.maximum(f[act], 1e-12))) | (lam[act] > 1e10)
        conv[act] |= small & (lam[act] <= 1e10)
        done[act] |= small
    return th, f, conv


class MplLaw:
    """Candidate 'mpl' for law selection: ``fit(points, curves=...)`` -> MplFit."""

    name = "mpl"
    n_params = 9
    needs_curves = True

    def __init__(self, skip_frac: float = 0.3, per_run: int = 40, knots: int = KNOTS,
                 delta: float = DELTA, relative: bool = True,
                 end_weight: float | None = None) -> None:
        self.skip_frac, self.per_run, self.knots, self.delta = skip_frac, per_run, knots, delta
        self.relative = relative
        self.end_weight = end_weight
        self.boot_iter = 3  # LM steps per bootstrap refit, from the full fit

    def prepare(self, curves: pd.DataFrame):
        """(run index per point, N, S1, drop, eta_k, S_k, train loss, eval loss at the run's
        end for its last point else NaN), template, (gap from the last train points,
        [(N, knots at the end, eval loss at the end)] per run with one)."""
        runs, template, gap = scan_runs(curves, self.skip_frac, self.per_run, "mpl law")
        ends = [(r["params"], *self._knots(r["eta"], r["b"], [len(r["eta"]) - 1]),
                 r["eval_end"]) for r in runs if r["eval_end"] == r["eval_end"]]
        parts = []
        for i, r in enumerate(runs):
            s1, dr, ek, sk = self._knots(r["eta"], r["b"], r["t"])
            ev = np.full(len(s1), math.nan)
            if len(s1) and r["t"][-1] == len(r["eta"]) - 1:
                ev[-1] = r["eval_end"]
            parts.append((np.full(len(s1), i), np.full(len(s1), r["params"]), s1, dr, ek, sk,
                          r["loss"].astype(float), ev))
        cols = [np.concatenate(v) for v in zip(*parts, strict=True)]
        ok = np.isfinite(cols[-2]) & (cols[-2] > 0)
        return [c[ok] for c in cols], template, (gap, ends)

    @staticmethod
    def _gap(th, feats, end, ev) -> float:
        lh = _model(th[None], *(f[end] for f in feats))[0][0]
        return float(np.mean(np.log(ev[end] / lh)))

    def _knots(self, eta, b, t):
        return knots(eta / eta.max() if self.relative else eta, b, t, self.knots)

    def fit(self, points: pd.DataFrame | None = None, *, curves: pd.DataFrame,
            bootstrap: int = 0, seed: int = 0, **_: object) -> MplFit:
        """Fit on every kept point of ``curves`` (run_id, step, tokens, params, lr, loss
        [, eval_loss]); ``points`` is unused (rollout passes the runs' final points)."""
        (ridx, n, s1, dr, ek, sk, loss, ev), template, (gap, ends) = self.prepare(curves)
        if len(np.unique(n)) < 2:
            raise FitError("mpl law needs runs of >= 2 model sizes")
        ln_n, ln_s1 = np.log(n), np.log(s1)
        pos = dr != 0
        es = float(np.abs(dr).sum(1).mean()) or 1.0  # mean total drop per point
        lm = float(np.log(ek[pos]).mean()) if pos.any() else 0.0
        ss = float(np.median(sk[pos])) if pos.any() else 1.0
        scale = (float(ln_n.mean()), float(ln_s1.mean()), lm, ss, es)
        feats = (ln_n - scale[0], ln_s1 - scale[1], dr / es, np.log(ek) - lm, sk / ss)
        z = np.log(loss)
        th0 = self._starts(feats, z)
        lo = np.array([z.min() - 20, z.min() - 30, 1e-3, z.min() - 30, 1e-3, z.min() - 30,
                       -20.0, 0.02, 0.0])
        hi = np.array([z.max() + 1, z.max() + 20, 4.0, z.max() + 20, 4.0, z.max() + 10,
                       20.0, 5.0, 2.0])
        w = np.ones(len(z))
        ths, fs, _ = _lm(th0, np.tile(w, (len(th0), 1)), lo, hi, feats, z, self.delta, 40)
        th, f, ok = (v[0] for v in _lm(ths[[np.argmin(fs)]], w[None], lo, hi, feats, z,
                                       self.delta, 300))
        end = np.flatnonzero(np.isfinite(ev))
        if len(end) and self.end_weight != 0:  # refit with the ends on the held-out losses
            g = self._gap(th, feats, end, ev)
            z = z.copy()
            z[end] = np.log(ev[end]) - g
            w[end] = (np.bincount(ridx)[ridx[end]] - 1 if self.end_weight is None
                      else self.end_weight)
            th, f, ok = (v[0] for v in _lm(th[None], w[None], lo, hi, feats, z, self.delta,
                                           300))
        runs = int(ridx.max()) + 1
        if ends:  # held-out gap against the fitted final train loss, not one noisy batch's
            en, es1, edr, eek, esk, eve = (np.concatenate([np.atleast_1d(e[i]) for e in ends])
                                           for i in range(6))
            lh = _model(th[None], np.log(en) - scale[0], np.log(es1) - scale[1], edr / es,
                        np.log(eek) - lm, esk / ss)[0][0]
            gap = float(np.mean(np.log(eve / lh)))
        samples = None
        if bootstrap:
            counts = resample_counts(runs, bootstrap, seed)[:, ridx] * w
            samples = _lm(np.tile(th, (bootstrap, 1)), counts, lo, hi, feats, z, self.delta,
                          self.boot_iter)[0]
        xm, um, lm, ss, es = scale
        e, a, al, a2, alp, lb, lc, be, ga = th
        params = {"E": math.exp(e), "A_N": math.exp(a + al * xm), "alpha_N": al,
                  "A": math.exp(a2 + alp * um), "alpha": alp, "B": math.exp(lb) / es,
                  "C": math.exp(lc + ga * lm) / ss, "beta": be, "gamma": ga}
        return MplFit(params, float(f), bool(ok), len(z), runs, th, scale, gap, template,
                      samples, self.relative)

    @staticmethod
    def _starts(feats, z, k: int = 3) -> np.ndarray:
        """Variable projection: NNLS of (E + A_N t_N + A t_S - B LD1)/L = 1 on a grid of
        (alpha_N, alpha, C, beta, gamma); the k best grid points as starts."""
        x, u, dr, le, sk = feats
        inv = np.exp(-z)
        grid = np.linspace(0.05, 1.2, 6)
        tn = np.exp(-grid[:, None] * x) * inv
        ts = np.exp(-grid[:, None] * u) * inv
        mats, keys = [], []
        for lc, be, ga in ((-2.0, 0.6, 0.5), (0.0, 0.6, 0.5), (2.0, 0.6, 0.5)):
            ldv = (dr * (1 - (1 + np.exp(lc - ga * le) * sk) ** -be)).sum(1) * inv
            for i, al in enumerate(grid):
                for j, alp in enumerate(grid):
                    mats.append(np.column_stack([inv, tn[i], ts[j], -ldv]))
                    keys.append((al, alp, lc, be, ga))
        coef, rss = nnls_small(np.array(mats), np.ones(len(z)))
        floor = 1e-3 * math.exp(z.min())
        out = []
        for g in np.argsort(rss)[:k]:
            c = np.where(coef[g] > 0, coef[g], floor)
            al, alp, lc, be, ga = keys[g]
            out.append([math.log(c[0]), math.log(c[1]), al, math.log(c[2]), alp,
                        math.log(c[3]), lc, be, ga])
        return np.array(out)


def nnls_small(m: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact non-negative least squares of a batch of small problems min |m c - y|, c >= 0
    (m (G, n, p), p small): every support of the columns is solved by its normal equations,
    the best feasible one kept. Returns (c (G, p), residual sum of squares (G,))."""
    sc = np.linalg.norm(m, axis=1, keepdims=True) + 1e-300
    ms = m / sc
    gram, h = np.einsum("gni,gnj->gij", ms, ms), np.einsum("gni,n->gi", ms, y)
    p = m.shape[2]
    best = np.full(len(m), float(y @ y))
    coef = np.zeros((len(m), p))
    for mask in range(1, 2**p):
        idx = [i for i in range(p) if mask >> i & 1]
        g = gram[:, idx][:, :, idx] + 1e-12 * np.eye(len(idx))
        c = np.linalg.solve(g, h[:, idx][..., None])[..., 0]
        rss = float(y @ y) - np.einsum("gi,gi->g", c, h[:, idx])
        ok = (c >= 0).all(1) & (rss < best)
        best = np.where(ok, rss, best)
        full = np.zeros((len(m), p))
        full[:, idx] = c
        coef[ok] = full[ok]
    return coef / sc[:, 0, :], best
