"""Whole-curve law: the loss curve under a run's LR schedule, across model sizes.

Tissue et al. 2024 ("Scaling law with learning rate annealing", arXiv:2408.11029):
L(s) = L0 + A S1^-alpha - C S2, with S1 = sum_{i<=s} eta_i (forward area) and
S2 = sum_{i<=s} m_i, m_i = lambda m_{i-1} + (eta_{i-1} - eta_i) (annealing area, momentum form,
lambda = 0.999 per step). Extended across sizes as in Chinchilla, L0 -> E + A_N / N^alpha_N:

    L(N, s) = E + A_N N^-alpha_N + B S1(s)^-beta - C S2(s)

with the areas counted in LR x tokens (S1 = sum eta_i b_i, b_i tokens of step i), so a constant
LR eta gives S1 = eta D and runs with other batch sizes compare. Warmup is left out of S2 (the
LR is held at its running peak for the differences), and points before the LR peak and in the
first ``skip_frac`` of a run are not fitted. One fit uses every logged point of every run
(train loss, nats/token); an ``eval_loss`` column, where given, sets a held-out gap
g = mean ln(eval_end / train_end) applied to predicted final losses. The fit: variable projection
(NNLS of relative residuals in E, A_N, B, C >= 0 on a grid of (alpha_N, beta)), then L-BFGS-B on
the summed Huber (delta = 1e-3) of log-loss residuals; the bootstrap resamples runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sweep.errors import FitError
from sweep.fit.laws import DELTA, huber, newton, resample_counts

LAMBDA = 0.999
KEYS = ("E", "A_N", "alpha_N", "B", "beta", "C")
COLUMNS = ("run_id", "step", "tokens", "params", "lr", "loss")
TINY = 1e-6


def schedule(steps: np.ndarray, lr: np.ndarray, tokens: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step LR rebuilt from logged (step, lr, tokens) points: (eta (S,), tokens per step
    (S,), index of each logged point). Linear interpolation; a run logged first in warmup
    starts from LR 0 at step 0."""
    o = np.argsort(steps)
    st, lr, tok = steps[o].astype(int), lr[o].astype(float), tokens[o].astype(float)
    last = int(st[-1])
    grid = np.arange(last + 1)
    xs, ys = st, lr
    if st[0] > 0 and lr[0] < lr.max():
        xs, ys = np.r_[-1, st], np.r_[0.0, lr]
    eta = np.interp(grid, xs, ys)
    b = np.full(last + 1, tok[-1] / (last + 1))
    idx = np.empty(len(o), int)
    idx[o] = st
    return eta, b, idx


def areas(eta: np.ndarray, b: np.ndarray, lam: float = LAMBDA) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (S1, S2) after each step, in LR x tokens (Tissue et al. 2024 eqs. 1-3)."""
    s1 = np.cumsum(eta * b)
    # warmup is not annealing: the LR is held at the schedule's peak until it is reached
    held = np.where(np.arange(len(eta)) < int(np.argmax(eta)), eta.max(), eta)
    drop = np.r_[0.0, held[:-1] - held[1:]]
    return s1, np.cumsum(momentum(drop, lam) * b)


def momentum(x: np.ndarray, lam: float, block: int = 256) -> np.ndarray:
    """m_i = lam m_{i-1} + x_i (m_{-1} = 0), vectorised in blocks: within a block
    m_j = lam^j (m_in + sum_{k<=j} x_k lam^-k), lam^-k bounded by lam^-block."""
    x = np.asarray(x, float)
    out = np.empty_like(x)
    p = lam ** np.arange(block)
    carry = 0.0
    for s in range(0, len(x), block):
        xs = x[s : s + block]
        pk = p[: len(xs)]
        out[s : s + block] = lam * carry * pk + pk * np.cumsum(xs / pk)
        carry = out[s + len(xs) - 1]
    return out


def _run_areas(g: pd.DataFrame, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    eta, b, idx = schedule(g["step"].to_numpy(), g["lr"].to_numpy(), g["tokens"].to_numpy())
    s1, s2 = areas(eta, b, lam)
    return s1[idx], s2[idx], eta


@dataclass
class CurveFit:
    """A fitted whole-curve law: ``params`` (KEYS), areas in LR x tokens, loss nats/token."""

    params: dict[str, float]
    objective: float
    converged: bool
    n_points: int
    n_runs: int
    theta: np.ndarray
    scale: tuple[float, float, float]  # (mean ln N, mean ln S1, S2 scale) of the fit
    lam: float
    gap: float  # ln(eval/train) at the end of the schedule, applied to final predictions
    template: dict = field(repr=False, default_factory=dict)
    samples: np.ndarray | None = field(default=None, repr=False)
    law: str = "curve"

    def _loss(self, th: np.ndarray, n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        xm, um, sc = self.scale
        return _model(np.atleast_2d(th), np.log(n) - xm, np.log(s1) - um, s2 / sc)[0]

    def predict_areas(self, n, s1, s2) -> np.ndarray:
        """Loss (nats/token) at N params after areas S1, S2 (LR x tokens), no held-out gap."""
        n, s1, s2 = (np.atleast_1d(np.asarray(v, float)) for v in (n, s1, s2))
        return self._loss(self.theta, n, s1, s2)[0]

    def final_areas(self, n: float, d: float) -> tuple[float, float]:
        """(S1, S2) at the end of a run of N params and D tokens on the template schedule."""
        eta, b = template_schedule(self.template, n, d)
        s1, s2 = areas(eta, b, self.lam)
        return float(s1[-1]), float(s2[-1])

    def _final(self, th_rows: np.ndarray, n, s1, s2) -> np.ndarray:
        return self._loss(th_rows, n, s1, s2) * math.exp(self.gap)

    def predict(self, n, d) -> np.ndarray:
        """Final loss (nats/token, held-out if the fit saw eval losses) of runs of N params and
        D tokens on the template schedule (the fitted runs' shape, peak LR by size)."""
        n, d = np.broadcast_arrays(np.asarray(n, float), np.asarray(d, float))
        a = np.array([self.final_areas(ni, di) for ni, di in zip(n.ravel(), d.ravel(),
                                                                  strict=True)])
        return self._final(self.theta[None], n.ravel(), a[:, 0], a[:, 1])[0]

    def predict_draws(self, n, d) -> np.ndarray | None:
        if self.samples is None:
            return None
        n, d = np.broadcast_arrays(np.asarray(n, float), np.asarray(d, float))
        a = np.array([self.final_areas(ni, di) for ni, di in zip(n.ravel(), d.ravel(),
                                                                  strict=True)])
        return self._final(self.samples, n.ravel(), a[:, 0], a[:, 1])

    def predict_runs(self, points: pd.DataFrame, curves: pd.DataFrame
                     ) -> tuple[np.ndarray, np.ndarray | None]:
        """Final losses of the runs in ``points`` (run_id) on their own logged schedules
        (``curves``: lr per logged step; the losses are not used) and bootstrap draws."""
        n, s1, s2 = [], [], []
        for rid in points["run_id"]:
            g = curves[curves["run_id"] == rid]
            if g.empty:
                raise FitError(f"curve law: no curve for run {rid!r}")
            a1, a2, _ = _run_areas(g.sort_values("step"), self.lam)
            n.append(float(g["params"].iloc[0]))
            s1.append(a1[-1])
            s2.append(a2[-1])
        n, s1, s2 = np.array(n), np.array(s1), np.array(s2)
        pred = self._final(self.theta[None], n, s1, s2)[0]
        draws = None if self.samples is None else self._final(self.samples, n, s1, s2)
        return pred, draws


def _model(th: np.ndarray, x: np.ndarray, u: np.ndarray, s2: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """(L_hat (B, n), dL_hat/dtheta (B, n, 6)) for theta rows (B, 6) = (ln E, a', alpha_N,
    b', beta, ln C), a' = ln A_N - alpha_N mean ln N, b' = ln B - beta mean ln S1, C per unit
    of scaled S2."""
    e, a, al, b, be, c = (th[:, k : k + 1] for k in range(6))
    t_n, t_s, cc, ee = np.exp(a - al * x), np.exp(b - be * u), np.exp(c), np.exp(e)
    lh = ee + t_n + t_s - cc * s2
    jac = np.stack([ee + 0 * x, t_n, -x * t_n, t_s, -u * t_s, -cc * s2], -1)
    return lh, jac


def _objective(th, x, u, s2, z, w, delta):
    """Summed Huber of ln L_hat - ln L per theta row, and its gradient."""
    lh, jac = _model(th, x, u, s2)
    ok = lh > TINY
    zh = np.log(np.where(ok, lh, TINY))
    f, psi = huber(zh - z, w, delta)
    return f, np.einsum("bnp,bn->bp", jac, np.where(ok, psi / np.where(ok, lh, 1.0), 0.0))


class CurveLaw:
    """Candidate 'curve' for law selection: ``fit(points, curves=...)`` -> CurveFit."""

    name = "curve"
    n_params = 6
    needs_curves = True

    def __init__(self, lam: float = LAMBDA, skip_frac: float = 0.1, per_run: int = 60,
                 delta: float = DELTA) -> None:
        self.lam, self.skip_frac, self.per_run, self.delta = lam, skip_frac, per_run, delta

    def prepare(self, curves: pd.DataFrame) -> tuple[pd.DataFrame, dict, float]:
        """Fitted points (run_id, params, s1, s2, loss), the schedule template, the gap."""
        runs, template, gap = scan_runs(curves, self.skip_frac, self.per_run, "curve law")
        rows = []
        for r in runs:
            s1, s2 = areas(r["eta"], r["b"], self.lam)
            t = r["t"]
            rows.append(pd.DataFrame({"run_id": r["run_id"], "params": r["params"],
                                      "s1": s1[t], "s2": s2[t], "loss": r["loss"]}))
        return pd.concat(rows, ignore_index=True), template, gap

    def fit(self, points: pd.DataFrame | None = None, *, curves: pd.DataFrame,
            bootstrap: int = 0, seed: int = 0, **_: object) -> CurveFit:
        """Fit on every kept point of ``curves`` (run_id, step, tokens, params, lr, loss
        [, eval_loss]); ``points`` is unused (rollout passes the runs' final points)."""
        pts, template, gap = self.prepare(curves)
        if pts["params"].nunique() < 2:
            raise FitError("curve law needs runs of >= 2 model sizes")
        ln_n, ln_s1 = np.log(pts["params"].to_numpy()), np.log(pts["s1"].to_numpy())
        xm, um = float(ln_n.mean()), float(ln_s1.mean())
        sc = float(np.exp(ln_s1).mean())
        x, u, s2 = ln_n - xm, ln_s1 - um, pts["s2"].to_numpy() / sc
        z = np.log(pts["loss"].to_numpy())
        runs, ridx = np.unique(pts["run_id"].to_numpy(), return_inverse=True)
        w = np.ones(len(z))
        th0 = self._starts(x, u, s2, z)
        lo = np.array([z.min() - 20, z.min() - 30, 1e-3, z.min() - 30, 1e-3, -40.0])
        hi = np.array([z.max() + 1, z.max() + 20, 4.0, z.max() + 20, 4.0, 20.0])

        def obj(t, wt):
            return _objective(t, x, u, s2, z, wt, self.delta)

        def run(t0, wt, maxiter):
            return newton(obj, t0, wt, lo, hi, 1e-9 * wt.sum(1) * self.delta, maxiter)

        ths, fs, _ = run(th0, np.tile(w, (len(th0), 1)), 30)
        th, f, ok = (v[0] for v in run(ths[[np.argmin(fs)]], w[None], 200))
        if not ok:  # rare (slow valleys): more Newton steps
            th, f, ok = (v[0] for v in run(th[None], w[None], 1000))
        samples = None
        if bootstrap:
            counts = resample_counts(len(runs), bootstrap, seed)[:, ridx]
            samples = run(np.tile(th, (bootstrap, 1)), counts, 50)[0]
        e, a, al, b, be, c = th
        params = {"E": math.exp(e), "A_N": math.exp(a + al * xm), "alpha_N": al,
                  "B": math.exp(b + be * um), "beta": be, "C": math.exp(c) / sc}
        return CurveFit(params, f, ok, len(z), len(runs), th, (xm, um, sc), self.lam, gap,
                        template, samples)

    @staticmethod
    def _starts(x, u, s2, z, k: int = 3) -> np.ndarray:
        """Variable projection on a (alpha_N, beta) grid: NNLS of (E + A t_N + B t_S - C s2)/L
        = 1; the k best grid points as starts."""
        from scipy.optimize import nnls

        inv = np.exp(-z)
        res = []
        grid = np.linspace(0.05, 1.5, 20)
        for al in grid:
            for be in grid:
                m = np.column_stack([inv, np.exp(-al * x) * inv, np.exp(-be * u) * inv,
                                     -s2 * inv])
                sc = np.linalg.norm(m, axis=0) + 1e-300
                coef, rn = nnls(m / sc, np.ones(len(z)))
                res.append((rn, al, be, coef / sc))
        res.sort(key=lambda r: r[0])
        out = []
        floor = 1e-3 * math.exp(z.min())
        for _, al, be, c in res[:k]:
            c = np.where(c > 0, c, floor)
            out.append([math.log(c[0]), math.log(c[1]), al, math.log(c[2]), be, math.log(c[3])])
        return np.array(out)


def scan_runs(curves: pd.DataFrame, skip_frac: float, per_run: int, what: str = "curve law"
              ) -> tuple[list[dict], dict, float]:
    """The runs of ``curves`` a whole-curve law fits: per run {run_id, params, eta, b (per-step
    LR and tokens), t (step index of each kept point), loss (train, nats/token), eval_end (the
    held-out loss logged at the last step, or NaN)}, the schedule
    template (peak LR by ln N, the longest run's LR shape, tokens per step) and the held-out gap.
    Kept: logged points at or after the LR peak and past ``skip_frac`` of the run, thinned
    log-uniformly in step to ``per_run`` (the last point always kept)."""
    miss = [c for c in COLUMNS if c not in curves]
    if miss:
        raise FitError(f"{what}: curves lack column(s) {', '.join(miss)}")
    runs, gaps, tmpl = [], [], {"ln_n": [], "ln_peak": []}
    longest = None
    cur = curves.dropna(subset=["lr", "tokens", "step"]).sort_values(["run_id", "step"],
                                                                      kind="stable")
    ids = cur["run_id"].to_numpy()
    cut = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    cols = {c: np.split(cur[c].to_numpy(), cut) for c in ("step", "lr", "tokens", "loss",
                                                            "params")}
    has_eval = "eval_loss" in cur
    evl = np.split(cur["eval_loss"].to_numpy(float), cut) if has_eval else None
    for i, rid in enumerate(ids[np.r_[0, cut]] if len(ids) else []):
        st, lr, tok, loss = (cols[c][i] for c in ("step", "lr", "tokens", "loss"))
        if len(st) < 3 or not (lr > 0).any():
            continue
        eta, b, idx = schedule(st, lr, tok)
        s1 = np.cumsum(eta * b)[idx]
        ok = ~np.isnan(loss) & (st >= np.argmax(eta)) & (st >= skip_frac * st[-1]) & (s1 > 0)
        keep = np.flatnonzero(ok)
        if len(keep) > per_run:  # thin log-uniformly in step, keep the last point
            pos = np.unique(np.searchsorted(
                st[keep], np.geomspace(max(st[keep][0], 1), st[keep][-1], per_run)))
            keep = np.unique(np.r_[keep[np.minimum(pos, len(keep) - 1)], keep[-1]])
        n = float(cols["params"][i][0])
        runs.append({"run_id": rid, "params": n, "eta": eta, "b": b, "t": idx[keep],
                     "loss": loss[keep], "eval_end": math.nan})
        tmpl["ln_n"].append(math.log(n))
        tmpl["ln_peak"].append(math.log(eta.max()))
        if has_eval and ~np.isnan(evl[i]).all() and ~np.isnan(loss).all():
            e_at, t_at = np.flatnonzero(~np.isnan(evl[i]))[-1], np.flatnonzero(~np.isnan(loss))[-1]
            if st[e_at] == st[-1]:
                gaps.append(math.log(evl[i][e_at] / loss[t_at]))
                runs[-1]["eval_end"] = float(evl[i][e_at])
        if longest is None or len(eta) > len(longest[0]):
            longest = (eta, float(tok[-1]) / len(eta))
    if len(runs) < 2:
        raise FitError(f"{what} needs curves of >= 2 runs with lr, got {len(runs)}")
    o = np.argsort(tmpl["ln_n"])
    eta, batch = longest
    template = {"ln_n": np.array(tmpl["ln_n"])[o], "ln_peak": np.array(tmpl["ln_peak"])[o],
                "frac": np.linspace(0, 1, len(eta)), "shape": eta / eta.max(), "batch": batch}
    return runs, template, float(np.mean(gaps)) if gaps else 0.0


def template_schedule(template: dict, n: float, d: float) -> tuple[np.ndarray, np.ndarray]:
    """(per-step LR, tokens per step) of a run of N params and D tokens on the template: the
    fitted runs' LR shape, peak LR interpolated in ln N, their tokens per step."""
    t = template
    steps = max(int(round(d / t["batch"])), 2)
    peak = float(np.exp(np.interp(math.log(n), t["ln_n"], t["ln_peak"])))
    return peak * np.interp(np.linspace(0, 1, steps), t["frac"], t["shape"]), np.full(steps,
                                                                                   d / steps)


def store_curves(name: str, root, params: str = "nonembed"
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves, points) of sweep NAME's completed runs. curves: run_id, step, tokens, params,
    lr, loss (train, nats/token), eval_loss; points: run_id, params, tokens, loss (the final
    held-out loss, nats/token). ``params``: nonembed | total."""
    from pathlib import Path

    from sweep.store import Store

    with Store(Path(root), create=False) as store:
        cur, runs = store.curves_df([name]), store.runs_df([name])
    runs = runs[(runs["state"] == "completed") & (runs["in_plan"] == 1)
                & runs["final_loss"].notna()]
    if runs.empty:
        raise FitError(f"sweep '{name}' has no completed runs (run `sweep launch {name}`)")
    pcol = "params_nonembed" if params == "nonembed" else "params"
    p = runs.set_index("run_id")[pcol].astype(float)
    cur = cur[cur["run_id"].isin(p.index)]
    curves = pd.DataFrame({"run_id": cur["run_id"], "step": cur["step"].astype(int),
                           "tokens": cur["tokens"].astype(float),
                           "params": cur["run_id"].map(p), "lr": cur["lr"].astype(float),
                           "loss": cur["train_loss"].astype(float),
                           "eval_loss": cur["eval_loss"].astype(float)}).reset_index(drop=True)
    points = pd.DataFrame({"run_id": runs["run_id"], "params": runs[pcol].astype(float),
                           "tokens": runs["tokens"].astype(float),
                           "loss": runs["final_loss"].astype(float)}).reset_index(drop=True)
    return curves, points
