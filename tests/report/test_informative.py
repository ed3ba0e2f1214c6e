"""Most informative next run: expected bootstrap-variance reduction at a target compute."""

from __future__ import annotations

import math

import pytest

from sweep import api
from sweep.informative import candidates, informative_text, most_informative
from sweep.store import Store


def test_ranks_candidates_within_budget(iso_sweep):
    fit = api.fit_sweep("iso", iso_sweep, bootstrap=0)
    with Store(iso_sweep) as st:
        cfg = api.sweep_config(st, "iso")
    pts = api.sweep_points("iso", iso_sweep)
    budget = 3e12
    cands = candidates(fit, cfg, "iso", budget, fractions=(1.0, 0.3), size_factors=(1 / 3, 3.0))
    assert cands and all(6 * c.params_nonembed * c.tokens <= budget * 1.0001 for c in cands)
    res = most_informative(fit, pts, cfg, "iso", budget, 1e14, bootstrap=20, runs=cands)
    assert len(res.candidates) == len(cands) and res.var_before > 0 and res.sigma > 0
    for c in res.candidates:  # each reduction is what its variances say, and the best is the max
        assert c.reduction == pytest.approx(res.var_before - c.var_after)
    assert res.best.reduction == max(c.reduction for c in res.candidates)
    assert all(math.isfinite(c.var_after) for c in res.candidates)
    assert res.best.run.run_id in informative_text(res)


def test_next_informative_appends_the_best(iso_sweep):
    res = api.next_runs("iso", 3e12, iso_sweep, informative=True, target=1e14, bootstrap=0,
                        candidate_bootstrap=10)
    assert res.reason == "most informative" and res.added == 1
    assert res.runs[0].run_id == res.informative.best.run.run_id
