"""Kaplan et al. 2020 (arXiv:2001.08361) §5: the learning-curve law L(N, S) with the critical
batch size, fitted to stored loss curves, and whole-curve predictions for other sizes.

    L(N, S) = E + (N_c / N)^alpha_N + (S_c / S_min)^alpha_S       (E = 0 in Kaplan et al.)
    S_min   = S / (1 + B_crit(L) / B),   B_crit(L) = B_star / L^(1 / alpha_B)

N: parameters; S: optimizer steps; B: tokens per step; L: loss in nats/token (Kaplan: nats per
BPE token; B_star = 2e8 tokens, alpha_B = 0.21). Fitting follows Kaplan: S_min uses each point's
observed loss, so L is explicit. For fixed exponents (and B_star, alpha_B) L is linear in
(E, N_c^alpha_N, S_c^alpha_S): a vectorised grid over the exponents gives the start, then
scipy's least_squares polishes all parameters on ln L. With a single batch size B_crit is not
identifiable and B_star, alpha_B are fixed (to Kaplan's values unless given). Predicting a curve
solves the implicit equation in L by bisection (its right side falls as L grows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from sweep.errors import FitError, InputError
from sweep.records import LearningCurveFit

KAPLAN_BCRIT = (2e8, 0.21)
"""Kaplan et al. 2020 eq. 5.3: B_crit(L) = B_star / L^(1/alpha_B), B_star ≈ 2e8 tokens."""
NAMES = ("N_c", "alpha_N", "S_c", "alpha_S", "B_star", "alpha_B", "E")
COLUMNS = ("run_id", "params", "batch_tokens", "steps", "loss")
LOGS = ("N_c", "S_c", "B_star")  # fitted as logs


LOG_MAX = 230.0
"""|ln| bound of N_c, S_c, B_star while fitting (1e±100): exp() of them can never overflow."""


def _log_s_min(steps, batch, log_loss, b_star: float, alpha_b: float):
    """ln S_min = ln S - ln(1 + B_crit(L)/B), B_crit(L) = B_star / L^(1/alpha_B), in log
    space (log-sum-exp), so a tiny alpha_B or a huge B_star cannot overflow."""
    q = math.log(b_star) - np.asarray(log_loss, float) / max(alpha_b, 1e-12) - np.log(
        np.asarray(batch, float))
    return np.log(np.asarray(steps, float)) - np.logaddexp(0.0, q)


def s_min(steps, batch, loss, b_star: float, alpha_b: float):
    """Kaplan's S_min: the steps needed at a batch far below B_crit(L) (eq. 5.4)."""
    return np.exp(_log_s_min(steps, batch, np.log(np.asarray(loss, float)), b_star, alpha_b))


def log_explicit_loss(p: dict[str, float], n, steps, batch, log_loss_obs):
    """ln L(N, S) with S_min at the observed loss: ln(E + e^u + e^v), u = alpha_N ln(N_c/N),
    v = alpha_S ln(S_c/S_min), by log-sum-exp (no overflow for any parameters)."""
    u = p["alpha_N"] * (math.log(p["N_c"]) - np.log(np.asarray(n, float)))
    v = p["alpha_S"] * (math.log(p["S_c"]) - _log_s_min(steps, batch, log_loss_obs,
                                                        p["B_star"], p["alpha_B"]))
    out = np.logaddexp(u, v)
    return np.logaddexp(out, math.log(p["E"])) if p["E"] > 0 else out


def explicit_loss(p: dict[str, float], n, steps, batch, loss_obs):
    """L(N, S) with S_min taken at the observed loss (the form that is fitted); inf where the
    law exceeds the float range."""
    with np.errstate(over="ignore"):
        return np.exp(log_explicit_loss(p, n, steps, batch, np.log(np.asarray(loss_obs, float))))


def predict_curve(p: dict[str, float], n: float, batch: float, steps) -> np.ndarray:
    """The loss curve (nats/token) of a model of ``n`` params at ``steps`` with ``batch``
    tokens per step: the root of L = L(N, S_min(S, L)), by bisection (vectorised) in log L,
    since the bracket [E + (N_c/N)^α_N, L(N, S_min(S, that))] can span many decades early on."""
    s = np.asarray(steps, float)
    u = p["alpha_N"] * (math.log(p["N_c"]) - math.log(n))
    lo = np.full(s.shape, np.logaddexp(u, math.log(p["E"])) if p["E"] > 0 else u)
    rhs = lambda log_l: log_explicit_loss(p, n, s, batch, log_l)  # noqa: E731
    hi = rhs(lo)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        up = mid - rhs(mid) > 0
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    with np.errstate(over="ignore"):
        return np.exp(0.5 * (lo + hi))


def _unpack(x: np.ndarray, fixed: dict[str, float]) -> dict[str, float]:
    free = [k for k in NAMES if k not in fixed]
    p = dict(fixed)
    for k, v in zip(free, x, strict=True):
        p[k] = math.exp(min(max(v, -LOG_MAX), LOG_MAX)) if k in LOGS else float(v)
    return p


def _pack(p: dict[str, float], fixed: dict[str, float]) -> np.ndarray:
    return np.array([min(max(math.log(p[k]), -LOG_MAX), LOG_MAX) if k in LOGS else p[k]
                     for k in NAMES if k not in fixed])


def _grid_start(d: pd.DataFrame, fixed: dict[str, float], floor: bool) -> dict[str, float]:
    """Best (exponents, B_star, alpha_B) on a grid, levels by least squares on relative error."""
    n, s, b, y = (d[c].to_numpy(float) for c in ("params", "steps", "batch_tokens", "loss"))
    an = np.geomspace(0.02, 2.0, 16)
    as_ = np.geomspace(0.03, 3.0, 18)
    bstars = [fixed["B_star"]] if "B_star" in fixed else np.geomspace(1e1, 1e13, 13)
    alphabs = [fixed["alpha_B"]] if "alpha_B" in fixed else [0.1, 0.21, 0.4, 0.8]
    ln_n = np.log(n / np.exp(np.log(n).mean()))
    u = np.exp(-np.outer(an, ln_n)) / y  # (16, pts): (N/N̄)^-a / L
    best = (math.inf, None)
    for bs in bstars:
        for ab in alphabs:
            sm = s_min(s, b, y, bs, ab)
            ln_s = np.log(sm / np.exp(np.log(sm).mean()))
            v = np.exp(-np.outer(as_, ln_s)) / y  # (18, pts)
            one = 1.0 / y
            cols = [u[:, None, :].repeat(len(as_), 1), v[None, :, :].repeat(len(an), 0)]
            if floor:
                cols.append(np.broadcast_to(one, cols[0].shape))
            m = np.stack(cols, -1)  # (16, 18, pts, k)
            g = np.einsum("ijpk,ijpl->ijkl", m, m)
            r = m.sum(2)  # target is all ones (relative residual)
            coef = np.linalg.solve(g + 1e-12 * np.eye(g.shape[-1]), r[..., None])[..., 0]
            res = np.einsum("ijpk,ijk->ijp", m, coef) - 1.0
            sse = np.where((coef >= 0).all(-1), (res**2).sum(-1), np.inf)
            i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
            if sse[i, j] < best[0]:
                ln_nbar, ln_sbar = np.log(n).mean(), np.log(sm).mean()
                a, c = max(coef[i, j, 0], 1e-300), max(coef[i, j, 1], 1e-300)
                ln_nc = min(max(math.log(a) / an[i] + ln_nbar, -LOG_MAX), LOG_MAX)
                ln_sc = min(max(math.log(c) / as_[j] + ln_sbar, -LOG_MAX), LOG_MAX)
                best = (sse[i, j], {
                    "N_c": math.exp(ln_nc), "alpha_N": an[i], "S_c": math.exp(ln_sc),
                    "alpha_S": as_[j], "B_star": bs, "alpha_B": ab,
                    "E": coef[i, j, 2] if floor else 0.0})
    if best[1] is None:
        raise FitError("no non-negative start for L(N, S): the curves do not fall with N and S")
    return best[1]


def _polish(d: pd.DataFrame, start: dict[str, float], fixed: dict[str, float]
            ) -> tuple[dict[str, float], float]:
    n, s, b, y = (d[c].to_numpy(float) for c in ("params", "steps", "batch_tokens", "loss"))
    ly = np.log(y)

    def res(x: np.ndarray) -> np.ndarray:
        r = log_explicit_loss(_unpack(x, fixed), n, s, b, ly) - ly
        return np.where(np.isfinite(r), r, 1e3)

    free = [k for k in NAMES if k not in fixed]
    lb = [0.0 if k in ("alpha_N", "alpha_S", "E") else 1e-3 if k == "alpha_B" else -LOG_MAX
          for k in free]
    ub = [float(y.min()) if k == "E" else 5.0 if k.startswith("alpha") else LOG_MAX
          for k in free]
    x0 = np.clip(_pack(start, fixed), np.array(lb) + 1e-9, np.array(ub) - 1e-9)
    sol = least_squares(res, x0, bounds=(lb, ub), x_scale="jac", xtol=1e-12, ftol=1e-12,
                        gtol=1e-12, max_nfev=3000)
    return _unpack(sol.x, fixed), float(np.sqrt(np.mean(sol.fun**2)))


def _fit(d: pd.DataFrame, fixed: dict[str, float], floor: bool,
         start: dict[str, float] | None = None) -> tuple[dict[str, float], float]:
    return _polish(d, start or _grid_start(d, fixed, floor), fixed)


def prepare(curves: pd.DataFrame, min_frac: float = 0.1) -> pd.DataFrame:
    """Check a (run_id, params, batch_tokens, steps, loss) frame; drop each run's first
    ``min_frac`` of steps (warmup and the initial transient, which the law does not model)."""
    missing = [c for c in COLUMNS if c not in curves]
    if missing:
        raise InputError(f"curves need columns {', '.join(COLUMNS)}; missing {missing[0]!r}")
    d = curves[list(COLUMNS)].copy()
    num = d[list(COLUMNS[1:])].to_numpy(float)
    if not (np.isfinite(num).all() and (num > 0).all()):
        raise InputError("curve points need positive finite params, batch_tokens, steps, loss")
    last = d.groupby("run_id")["steps"].transform("max")
    return d[d["steps"] >= min_frac * last].reset_index(drop=True)


def fit_learning_curve(curves: pd.DataFrame, *, bcrit: tuple[float, float] | None = None,
                       floor: bool = False, min_frac: float = 0.1, bootstrap: int = 100,
                       seed: int = 0,
                       predict: Sequence[tuple[float, float | None, float]] = (),
                       validate: bool = True) -> LearningCurveFit:
    """Fit L(N, S) to curves (columns run_id, params, batch_tokens, steps, loss).

    ``bcrit`` = (B_star tokens, alpha_B) fixes B_crit(L); with one batch size it is fixed anyway
    (default Kaplan's). ``predict``: (params, batch_tokens or None for the curves' median batch,
    steps) → a whole predicted curve at 16 log-spaced steps up to ``steps``, with 95 % intervals
    (bootstrap over runs).
    """
    d = prepare(curves, min_frac)
    runs = sorted(d["run_id"].unique())
    sizes = np.unique(d["params"])
    if len(sizes) < 2 or len(d) < 8:
        raise FitError(f"L(N, S) needs curves of at least 2 model sizes and 8 points; got "
                       f"{len(sizes)} sizes, {len(d)} points")
    warns, fixed = [], {}
    n_batch = d["batch_tokens"].nunique()
    if bcrit is not None:
        fixed = {"B_star": float(bcrit[0]), "alpha_B": float(bcrit[1])}
    elif n_batch < 2:
        fixed = {"B_star": KAPLAN_BCRIT[0], "alpha_B": KAPLAN_BCRIT[1]}
        warns.append("one batch size: B_crit is not identifiable; B_star = 2e8 tokens and "
                     "alpha_B = 0.21 fixed at Kaplan et al.'s values (set them with --bcrit)")
    if not floor:
        fixed["E"] = 0.0
    p, rmse = _fit(d, fixed, floor)
    ci: dict[str, list[float]] = {}
    samples: list[dict[str, float]] = []
    if bootstrap:
        rng = np.random.default_rng(seed)
        groups = {r: g for r, g in d.groupby("run_id")}
        for _ in range(int(bootstrap)):
            pick = rng.choice(runs, len(runs))
            bd = pd.concat([groups[r] for r in pick], ignore_index=True)
            if bd["params"].nunique() < 2:
                continue
            samples.append(_fit(bd, fixed, floor, p)[0])
        if samples:
            for k in NAMES:
                if k not in fixed:
                    q = np.nanpercentile([s[k] for s in samples], [2.5, 97.5])
                    ci[k] = [float(q[0]), float(q[1])]
    b0 = float(d["batch_tokens"].median())
    preds = [_curve(p, samples, n, b0 if b is None else b, s) for n, b, s in predict]
    val = _validate(d, fixed, floor) if validate and len(sizes) >= 3 else None
    ln_bc = math.log(p["B_star"]) - np.log(d["loss"].to_numpy(float)) / p["alpha_B"]
    with np.errstate(over="ignore"):
        bc = np.exp(ln_bc)  # B_crit(L) of every point, tokens (inf past the float range)
    if math.log(d["batch_tokens"].max()) < math.log(0.1) + ln_bc.min():
        warns.append(f"every batch ({d['batch_tokens'].max():.4g} tokens or less) is far below "
                     f"B_crit ({bc.min():.3g} to {bc.max():.3g} tokens): the curves depend on "
                     "tokens S*B only, so S_c and B_star trade off")
    if p["E"] == 0 and floor:
        warns.append("the floor E fell to 0: not identified by these curves")
    return LearningCurveFit(len(runs), len(d), p, ci, sorted(fixed), rmse, preds, val, warns,
                            {"N": "params (as given)", "S": "optimizer steps",
                             "B": "tokens per step", "L": "loss, nats/token"})


def _curve(p: dict[str, float], samples: list[dict[str, float]], n: float, batch: float,
           steps: float) -> dict[str, object]:
    s = np.unique(np.round(np.geomspace(1, steps, 16)))
    out: dict[str, object] = {"params": n, "batch_tokens": batch, "steps": s.tolist(),
                              "loss": predict_curve(p, n, batch, s).tolist()}
    if samples:
        draws = np.array([predict_curve(q, n, batch, s) for q in samples])
        lo, hi = np.nanpercentile(draws, [2.5, 97.5], axis=0)
        out["loss_lo95"] = np.minimum(lo, out["loss"]).tolist()
        out["loss_hi95"] = np.maximum(hi, out["loss"]).tolist()
    return out


def _validate(d: pd.DataFrame, fixed: dict[str, float], floor: bool) -> dict[str, object]:
    """Refit without the largest model's curves and predict them whole: |relative error|."""
    big = d["params"].max()
    p, _ = _fit(d[d["params"] < big], fixed, floor)
    errs = []
    for _, g in d[d["params"] == big].groupby("run_id"):
        pred = predict_curve(p, big, float(g["batch_tokens"].iloc[0]), g["steps"].to_numpy())
        errs.append(np.abs(pred / g["loss"].to_numpy() - 1.0))
    e = np.concatenate(errs)
    return {"held_out": f"curves of the largest model (N = {big:.4g})",
            "mean_abs_rel_error": float(e.mean()), "max_abs_rel_error": float(e.max())}
