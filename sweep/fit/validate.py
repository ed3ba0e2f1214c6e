"""How far a fit can be trusted: held-out validation, span and identifiability warnings.

Validation refits without the largest compute budget (C = 6ND FLOPs, budgets = log10 C rounded
to 0.1, widened until >= 3 points are held out) and predicts the held-out losses (nats/token):
the relative errors, and whether the 95 % bootstrap interval of the refit covered them. That
interval is parameter uncertainty only (no point noise), so it is a strict test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from sweep.records import Fit

MIN_DECADES = 1.5
"""Warn below this many decades of N, D or C: exponents are then poorly constrained."""


def budgets(flops: np.ndarray, min_held: int = 3) -> np.ndarray | None:
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


def holdout(df: pd.DataFrame, refit: Callable[[np.ndarray], Fit | None]
            ) -> dict[str, object] | None:
    """Refit on the points outside the largest budget (``refit(train_mask)``; None = impossible)
    and score its predictions there: mean/max |relative error|, interval coverage."""
    mask = budgets(df["flops"].to_numpy())
    if mask is None:
        return None
    sub = refit(~mask)
    if sub is None:
        return None
    held = df[mask]
    preds = [sub.predict(n, d) for n, d in zip(held["params"], held["tokens"], strict=True)]
    obs = held["loss"].to_numpy()
    pred = np.array([p.loss for p in preds])
    rel = np.abs(pred - obs) / obs
    out: dict[str, object] = {
        "held_out": "largest budget", "n_held_out": int(len(held)),
        "held_out_flops_6nd": [float(held["flops"].min()), float(held["flops"].max())],
        "mean_abs_rel_error": float(rel.mean()), "max_abs_rel_error": float(rel.max()),
        "mean_rel_error": float(((pred - obs) / obs).mean()),
    }
    if sub.samples is not None and len(sub.samples):
        lo = np.array([p.loss_lo95 for p in preds])
        hi = np.array([p.loss_hi95 for p in preds])
        inside = (lo <= obs) & (obs <= hi)
        out["covered_fraction"] = float(inside.mean())
        # the interval of the mean predicted loss vs the mean observed one
        draws = sub.draws(held["params"].to_numpy(), held["tokens"].to_numpy()).mean(1)
        with np.errstate(invalid="ignore"):  # inf - inf between two unbounded draws
            mlo, mhi = np.percentile(np.where(np.isnan(draws), np.inf, draws), [2.5, 97.5])
        out["mean_loss_ci95"] = [float(mlo), float(mhi)]
        out["covered"] = bool(mlo <= obs.mean() <= mhi)
    if sub.bootstrap:
        out["bootstrap"] = sub.bootstrap
    return out


def span_warnings(df: pd.DataFrame) -> list[str]:
    """Warnings for grids spanning < MIN_DECADES decades of N (params), D (tokens) or C (FLOPs)."""
    out = []
    for col, name in (("params", "N"), ("tokens", "D"), ("flops", "C (6ND FLOPs)")):
        if col not in df:
            continue
        dec = math.log10(df[col].max() / df[col].min())
        if dec < MIN_DECADES:
            out.append(f"{col} span only {dec:.2f} decades of {name} (< {MIN_DECADES}): "
                       "exponents are poorly constrained")
    return out


NEGLIGIBLE = 1e-4
"""A term A/N^alpha (B/D^beta) below this fraction of every point's loss has vanished: its
coefficient and exponent no longer change the objective, so the data cannot identify them."""


def identifiability(p: Mapping[str, float], ci: Mapping[str, Sequence[float]], *,
                    e_at_floor: bool, on_bound: Sequence[str], ci_on_bound: Sequence[str],
                    vanished: Sequence[str]) -> tuple[dict[str, bool], list[str]]:
    """({E, A, B, alpha, beta: identified?}, one-line warnings). E: not at its floor (0), its
    95 % CI neither near 0 (lo <= 0.05 E) nor wider than E/2 (which covers a > 10x span);
    A, B: CI within a factor of 3; alpha, beta: neither the estimate nor its CI on a bound;
    a vanished term (``vanished`` = "A" and/or "B") identifies neither its coefficient nor its
    exponent. Without bootstrap intervals only the bound and term checks apply."""
    ok = dict.fromkeys(("E", "A", "B", "alpha", "beta"), True)
    out = []
    e, (e_lo, e_hi) = p["E"], ci.get("E", [p["E"], p["E"]])
    if e_at_floor:
        ok["E"] = False
        out.append("E is not identified by these points (the loss floor fell to its bound, 0)")
    elif e_lo <= 0.05 * e or e_hi - e_lo > 0.5 * e:
        ok["E"] = False
        out.append(f"E is not identified by these points (95% CI [{e_lo:.3g}, {e_hi:.3g}] for "
                   f"E = {e:.3g})")
    for k, ex, var in (("A", "alpha", "N"), ("B", "beta", "D")):
        if k in vanished:
            ok[k] = ok[ex] = False
            out.append(f"the {k}/{var}^{ex} term is negligible at every point (< {NEGLIGIBLE:g} "
                       f"of the loss): {k} and {ex} are not identified")
        elif k in ci and ci[k][1] > 3 * ci[k][0]:
            ok[k] = False
            out.append(f"{k} is poorly identified: its 95% CI [{ci[k][0]:.4g}, {ci[k][1]:.4g}] "
                       "spans more than a factor of 3")
    for k in on_bound:
        ok[k] = False
        out.append(f"the fit sits on a bound of {k} = {p[k]:.4g}: {k} is not identified")
    for k in ci_on_bound:
        if k not in on_bound:
            ok[k] = False
            out.append(f"the 95% CI of {k} [{ci[k][0]:.4g}, {ci[k][1]:.4g}] reaches a bound: "
                       f"{k} is not identified")
    return ok, out


def convergence_warnings(converged: bool, boot: Mapping[str, int] | None) -> list[str]:
    """Warnings for a full-data fit that did not converge and bootstrap refits that did not."""
    out = [] if converged else ["the optimiser did not converge on the full data"]
    if boot and boot.get("not_converged"):
        out.append(f"{boot['not_converged']} of {boot['resamples']} bootstrap refits did not "
                   "converge; they are left out of the 95% intervals")
    return out


def validation_text(v: Mapping[str, object] | None) -> str | None:
    """One line for the text output of a fit's validation."""
    if not v:
        return None
    line = (f"validation: fit without the {v.get('held_out')} ({v.get('n_held_out')} points), "
            f"predict it: mean |rel. error| {float(v['mean_abs_rel_error']):.3g}, "  # type: ignore
            f"max {float(v['max_abs_rel_error']):.3g}")  # type: ignore[arg-type]
    if "covered" in v:
        line += (f"; 95% interval covered the mean loss: {'yes' if v['covered'] else 'NO'}, "
                 f"{float(v['covered_fraction']):.0%} of points")  # type: ignore[arg-type]
    return line
