"""Chinchilla Approach 1: the lower envelope of loss curves against FLOPs (Hoffmann et al. 2022,
sec. 3.1).

Every run's curve (loss in nats/token against C = FLOPs, as stored: 6ND) is interpolated in
ln C onto a common log grid; at each grid budget the run with the lowest loss is the
compute-optimal one, giving N*(C) (its params) and D*(C) (its tokens there). Then
ln N* = a ln C + k_N and ln D* = b ln C + k_D by least squares. Intervals: a seeded bootstrap
over runs (the envelope recomputed from the resampled runs, vectorised).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sweep.errors import FitError, InputError
from sweep.fit.isoflop import PowerAllocation
from sweep.fit.validate import MIN_DECADES

COLUMNS = ("run_id", "params", "tokens", "flops", "loss")


@dataclass
class EnvelopeFit(PowerAllocation):
    """Approach 1 result: N* = exp(k_N) C^a, D* = exp(k_D) C^b with 95 % bootstrap intervals."""

    n_runs: int
    n_grid: int
    a: float
    b: float
    k_n: float
    k_d: float
    ci95: dict[str, list[float]]
    envelope: list[dict[str, float]]  # per grid budget: flops, loss, params, tokens, run_id
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)
    method: str = "envelope"
    samples: Any = None  # bootstrap (a, k_N, b, k_D) rows; not serialised

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "samples"}
        return dict(d, allocation={"a": self.a, "b": self.b})


def curves_points(curves: pd.DataFrame, runs: pd.DataFrame, loss: str = "eval_loss",
                  params: str = "params_nonembed") -> pd.DataFrame:
    """The store's curves_df (run_id, step, tokens, flops, train/eval loss) joined with runs_df's
    ``params`` column into the (run_id, params, tokens, flops, loss) frame of fit_envelope."""
    for col in ("run_id", "tokens", "flops", loss):
        if col not in curves:
            raise InputError(f"curves have no {col!r} column")
    p = runs.set_index("run_id")[params]
    df = curves[["run_id", "tokens", "flops", loss]].rename(columns={loss: "loss"})
    df = df.assign(params=df["run_id"].map(p)).dropna(subset=["loss", "params"])
    return df[list(COLUMNS)].reset_index(drop=True)


def _padded(fin: np.ndarray) -> np.ndarray:
    """A (sizes, grid) mask with a False row before and after (no size beyond the ladder)."""
    z = np.zeros((1, fin.shape[1]), bool)
    return np.vstack([z, fin, z])


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, icpt = np.polyfit(x, y, 1)
    return float(slope), float(icpt)


def fit_envelope(curves: pd.DataFrame, *, n_grid: int = 40, bootstrap: int = 1000,
                 seed: int = 0) -> EnvelopeFit:
    """Approach 1 on loss curves with columns run_id, params, tokens, flops, loss."""
    missing = [c for c in COLUMNS if c not in curves]
    if missing:
        raise InputError(f"curves need columns {', '.join(COLUMNS)}; missing {missing[0]!r}")
    if int(bootstrap) != bootstrap or bootstrap < 0 or n_grid < 3:
        raise InputError(f"bad settings bootstrap={bootstrap!r}, n_grid={n_grid!r}")
    df = curves[list(COLUMNS)].copy()
    num = df[["params", "tokens", "flops", "loss"]].to_numpy(float)
    if not (np.isfinite(num).all() and (num > 0).all()):
        raise InputError("curve points must have positive finite params, tokens, flops, loss")
    runs = [g.sort_values("flops") for _, g in df.groupby("run_id", sort=True) if len(g) >= 2]
    runs.sort(key=lambda g: (float(g["params"].iloc[0]), str(g["run_id"].iloc[0])))
    if len(runs) < 2 or len({float(g["params"].iloc[0]) for g in runs}) < 2:
        raise FitError("Approach 1 needs curves (>= 2 points each) of at least 2 model sizes")
    lo = max(min(float(g["flops"].iloc[0]) for g in runs), 1.0)
    hi = max(float(g["flops"].iloc[-1]) for g in runs)
    lc = np.linspace(math.log(lo), math.log(hi), n_grid)
    k = len(runs)
    loss = np.full((k, n_grid), np.inf)
    ltok = np.zeros((k, n_grid))
    for i, g in enumerate(runs):
        x = np.log(g["flops"].to_numpy())
        inside = (lc >= x[0]) & (lc <= x[-1])
        loss[i, inside] = np.interp(lc[inside], x, g["loss"].to_numpy())
        ltok[i, inside] = np.interp(lc[inside], x, np.log(g["tokens"].to_numpy()))
    lnp = np.log([float(g["params"].iloc[0]) for g in runs])
    # runs are sorted by N: sizes are contiguous groups of runs (several budgets per size)
    starts = np.flatnonzero(np.r_[True, np.diff(lnp) > 0])
    size_of = np.searchsorted(starts, np.arange(k), side="right") - 1
    cover = np.isfinite(loss).sum(0) >= 2  # a budget where at least two runs compete
    if cover.sum() < 3:
        raise FitError("the loss curves overlap in fewer than 3 grid budgets; no envelope")
    # a budget counts only when the winner's neighbouring model sizes (the next smaller and
    # larger N) compete there too: else the optimum may lie beyond the ladder
    win = size_of[np.argmin(loss, 0)]
    fin_s = _padded(np.isfinite(np.minimum.reduceat(loss, starts, axis=0)))  # (sizes+2, grid)
    nbr = np.arange(n_grid)
    inner = fin_s[win, nbr] & fin_s[win + 2, nbr]
    warns = []
    use_inner = bool((cover & inner).sum() >= 3)
    if use_inner:
        if (cover & ~inner).any():
            warns.append(f"{int((cover & ~inner).sum())} grid budgets left out: their winner's "
                         "neighbours in size do not reach them (optimum possibly off the ladder)")
        cover &= inner
    else:
        warns.append(f"only {int((cover & inner).sum())} grid budgets have the winner's "
                     "neighbouring sizes competing: all budgets kept, but the optimum may lie "
                     "off the ladder (smallest or largest size winning) and a is biased")
    lc, loss, ltok = lc[cover], loss[:, cover], ltok[:, cover]
    best = np.argmin(loss, 0)
    cols = np.arange(len(lc))
    a, kn = _line(lc, lnp[best])
    b, kd = _line(lc, ltok[best, cols])
    ci: dict[str, list[float]] = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        counts = np.stack([np.bincount(r, minlength=k) for r in rng.integers(0, k, (bootstrap, k))])
        lb = np.where(counts[:, :, None] > 0, loss[None], np.inf)  # (B, runs, grid)
        fin = np.stack([_padded(np.isfinite(np.minimum.reduceat(x, starts, axis=0)))
                        for x in lb])  # (B, sizes+2, grid)
        bb = np.argmin(lb, 1)
        ws = size_of[bb]
        cols_ = np.arange(loss.shape[1])
        rows_ = np.arange(bootstrap)[:, None]
        ok = np.isfinite(np.min(lb, 1))  # (B, grid)
        if use_inner:
            ok &= fin[rows_, ws, cols_] & fin[rows_, ws + 2, cols_]
        xs = []
        for i in range(bootstrap):
            m = ok[i]
            if m.sum() >= 3 and np.ptp(lnp[bb[i, m]]) > 0:
                xs.append((*_line(lc[m], lnp[bb[i, m]]), *_line(lc[m], ltok[bb[i, m], m])))
        if xs:
            q = np.percentile(np.array(xs), [2.5, 97.5], axis=0)
            ci = {"a": [float(q[0, 0]), float(q[1, 0])], "b": [float(q[0, 2]), float(q[1, 2])]}
    env = [{"flops": math.exp(c), "loss": float(loss[best[j], j]),
            "params": math.exp(lnp[best[j]]), "tokens": math.exp(ltok[best[j], j]),
            "run_id": str(runs[best[j]]["run_id"].iloc[0])} for j, c in enumerate(lc)]
    winners = len(set(size_of[best].tolist()))
    if winners < 3:
        warns.append(f"only {winners} model sizes form the envelope: a is poorly constrained")
    dec = (lc[-1] - lc[0]) / math.log(10)
    if dec < MIN_DECADES:
        warns.append(f"the envelope spans only {dec:.2f} decades of C (< {MIN_DECADES})")
    return EnvelopeFit(k, len(lc), a, b, kn, kd, ci, env, warns,
                       {"params": "as given", "flops": "as given (store: 6ND)",
                        "loss": "nats/token"}, samples=np.array(xs) if bootstrap and xs else None)
