"""Compute multiplier of sweep B over sweep A (both Approach 3 fits, records.Fit).

At budget C (FLOPs, 6ND), B's compute-optimal loss is L*_B(C); the multiplier is C_A / C where
L*_A(C_A) = L*_B(C): how much more compute A needs to match B. > 1: B is better. Intervals pair
the bootstrap samples of the two fits (row i with row i). Infinite when B's loss lies below A's
floor E_A (no compute suffices).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sweep.errors import FitError, InputError
from sweep.records import Fit
from sweep.shapes import tokens_for_flops


@dataclass
class Comparison:
    """B's compute multiplier over A at each budget (FLOPs, 6ND)."""

    compute: list[float]
    multiplier: list[float]
    multiplier_lo95: list[float | None]
    multiplier_hi95: list[float | None]
    loss_a: list[float]  # A's compute-optimal loss at C, nats/token
    loss_b: list[float]
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=lambda: {"flops": "6ND"})
    method: str = "compare"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def optimal_loss(p: np.ndarray, c: np.ndarray) -> np.ndarray:
    """L* at compute C for parameter rows p (K, 5: E, A, B, alpha, beta), broadcast with c.
    In logs: ln N* = ln G + a ln(C/6), ln D* = ln(C/6) - ln N*; a term past the float range is
    inf (a loss above any target), never an overflow error."""
    e, a, b, al, be = (p[:, i : i + 1] for i in range(5))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ln_c6 = np.log(tokens_for_flops(np.asarray(c, float), 1.0))  # ln(C/6)
        ln_g = (np.log(al) + np.log(a) - np.log(be) - np.log(b)) / (al + be)
        ln_n = ln_g + be / (al + be) * ln_c6
        return e + np.exp(np.log(a) - al * ln_n) + np.exp(np.log(b) - be * (ln_c6 - ln_n))


def _needed(pa: np.ndarray, target: np.ndarray) -> np.ndarray:
    """C with L*_A(C) = target, by bisection in ln C (rows: samples, cols: budgets)."""
    lo, hi = np.full(target.shape, np.log(1e0)), np.full(target.shape, np.log(1e60))
    for _ in range(80):
        mid = (lo + hi) / 2
        with np.errstate(all="ignore"):
            above = optimal_loss(pa, np.exp(mid)) > target
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    out = np.exp((lo + hi) / 2)
    return np.where(target <= pa[:, :1], np.inf, out)


def _vec(f: Fit) -> np.ndarray:
    return np.array([[f.params[k] for k in ("E", "A", "B", "alpha", "beta")]])


def compare(fit_a: Fit, fit_b: Fit, compute: list[float] | np.ndarray) -> Comparison:
    """Compute multiplier of B over A at each C in ``compute`` (FLOPs, 6ND), with intervals."""
    c = np.asarray(compute, float)
    if c.ndim != 1 or not len(c) or not (np.isfinite(c).all() and (c > 0).all()):
        raise InputError("compute must be positive finite FLOP budgets")
    pa, pb = _vec(fit_a), _vec(fit_b)
    if (pa[:, 1:] <= 0).any() or (pb[:, 1:] <= 0).any():
        raise FitError("a fit has non-positive A, B, alpha or beta: no compute-optimal loss")
    lb = optimal_loss(pb, c[None])
    mult = (_needed(pa, lb) / c)[0]
    lo = hi = [None] * len(c)
    sa, sb = fit_a.samples, fit_b.samples
    if sa is not None and sb is not None and len(sa) and len(sb):
        k = min(len(sa), len(sb))
        m = _needed(np.asarray(sa)[:k], optimal_loss(np.asarray(sb)[:k], c[None])) / c
        # 1e300 stands for "never" (JSON has no inf)
        q = np.percentile(np.where(np.isfinite(m), m, 1e300), [2.5, 97.5], axis=0)
        lo, hi = [float(x) for x in q[0]], [float(x) for x in q[1]]
    warns = [f"at C={ci:.3g} B's loss is below A's floor: A never reaches it"
             for ci, m in zip(c, mult, strict=True) if not np.isfinite(m)]
    return Comparison([float(x) for x in c], [float(x) for x in mult], lo, hi,
                      [float(x) for x in optimal_loss(pa, c[None])[0]],
                      [float(x) for x in lb[0]], warns)
