"""Hoffmann et al.'s own Approach 3 method (arXiv:2203.15556, App. D.2), kept for comparison.

Objective: Huber (delta = 1e-3) of log L_hat - log L, summed, in the LSE form
log L_hat = LSE(a - alpha ln N, b - beta ln D, e) with the uncentred coordinates (a, b, e,
alpha, beta), A = exp(a), B = exp(b), E = exp(e). L-BFGS-B (analytic gradient) from every point
of their grid of starts: alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
a, b in {0, 5, ..., 25} (4500 starts), but with tight tolerances (ftol 1e-15, gtol 1e-12), so it
converges: with scipy's defaults it stops near Hoffmann's published E = 1.69, A = 406.4,
B = 410.7 (Besiroglu et al. 2024, arXiv:2404.10102). ``starts`` keeps only the best grid points
(by objective at the start), which is much faster and finds the same optimum on Chinchilla.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np

from sweep.fit.objective import Problem

log = logging.getLogger(__name__)


def hoffmann_grid() -> np.ndarray:
    """The 4500 starts (a, b, e, alpha, beta) of Hoffmann et al. (App. D.2)."""
    ab = np.arange(0.0, 25.1, 5.0)
    e = np.arange(-1.0, 1.01, 0.5)
    ex = np.arange(0.0, 2.01, 0.5)
    return np.array(list(itertools.product(ab, ab, e, ex, ex)))


def grid_fit(prob: Problem, starts: int | None = None) -> tuple[np.ndarray, float, bool]:
    """L-BFGS-B from Hoffmann's grid (all of it, or the ``starts`` best points) on an uncentred
    problem; returns the best (theta, objective, converged)."""
    assert prob.xm == 0.0 and prob.ym == 0.0, "Hoffmann's coordinates are uncentred"
    th0 = np.clip(hoffmann_grid(), prob.lo, prob.hi)
    if starts is not None and starts < len(th0):
        f0 = prob.fgh(th0, prob.w[None, :], hess=False)[0]
        th0 = th0[np.argsort(f0)[: max(1, int(starts))]]
    best: tuple[np.ndarray, float, bool] | None = None
    for t in th0:
        th, ok = prob.lbfgs(t, prob.w)
        f = float(prob.fgh(th[None], prob.w[None], hess=False)[0][0])
        if best is None or f < best[1]:
            best = (th, f, ok)
    assert best is not None
    log.info("hoffmann: %d L-BFGS-B starts, best objective %.7g", len(th0), best[1])
    return best
