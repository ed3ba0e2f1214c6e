"""The k× compute table and the --params / --loss inversions, on a Fit with a known law."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.allocation import OPTIONS, Baseline, allocation_table, allocation_text
from sweep.fit.chinchilla import compute_optimal
from sweep.recommend import compute_for_loss, compute_for_params
from sweep.records import Fit

from .synth import LAW


def law_fit(samples: bool = True) -> Fit:
    s = None
    if samples:
        rng = np.random.default_rng(0)
        base = np.array([LAW[k] for k in ("E", "A", "B", "alpha", "beta")])
        s = base * np.exp(rng.normal(0, 0.02, (200, 5)))
    return Fit("chinchilla", 20, dict(LAW), {}, 0.0, {}, samples=s)


def test_every_option_spends_k_times_the_compute_and_the_optimum_wins():
    fit = law_fit()
    base = Baseline(1e5, 2e6, 1024)
    rows = allocation_table(fit, base, (2, 4, 10, 100))
    assert len(rows) == 4 * len(OPTIONS)
    for r in rows:
        assert r.flops == pytest.approx(r.k * base.flops, rel=1e-9)
        assert r.loss_lo95 <= r.loss <= r.loss_hi95
    for k in (2, 4, 10, 100):
        group = [r for r in rows if r.k == k]
        best = [r for r in group if r.best]
        assert len(best) == 1 and best[0].option == "compute-optimal"
        steps, batch = group[0], group[2]
        assert batch.loss == steps.loss and batch.steps == pytest.approx(base.steps)
        assert steps.steps == pytest.approx(k * base.steps) and batch.note
    assert "*best*" in allocation_text(rows, base)


def test_params_and_loss_inversions():
    fit = law_fit(samples=False)
    c = compute_for_params(fit, 3e5)
    assert compute_optimal(fit, c)[0] == pytest.approx(3e5, rel=1e-9)
    target = 3.0
    c = compute_for_loss(fit, target)
    n, d = compute_optimal(fit, c)
    assert fit.loss(n, d) == pytest.approx(target, rel=1e-9)
    from sweep.errors import FitError

    with pytest.raises(FitError, match="floor"):
        compute_for_loss(fit, LAW["E"] * 0.99)
