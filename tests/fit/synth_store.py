"""A synthetic sweep written straight into a real Store (no training): planned runs whose curves
follow L = E + A/N^alpha + B/D^beta (N = params_nonembed, nats/token), plus optional metrics."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sweep import api
from sweep.records import CurvePoint, TrainResult
from sweep.store import Store

LAW = {"E": 1.7, "A": 60.0, "B": 200.0, "alpha": 0.35, "beta": 0.35}
GRID = ["model.widths=[32,64,96,128,160]", "budget=flops", "budget.flops=[1e11,3e11,1e12,3e12]"]


def law(n: float, d: float, p: dict[str, float] = LAW) -> float:
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def build(root: Path, name: str = "syn", *, noise: float = 0.003, seed: int = 0,
          points: int = 20, metric: Callable[[float], float] | None = None,
          overrides: list[str] | None = None, params: dict[str, float] = LAW) -> None:
    """Plan ``name`` and write a curve (``points`` per run), a result and, with ``metric``, a
    ``heldout_top1_acc`` = metric(final loss) for every run."""
    api.plan_sweep(name, overrides or GRID, root)
    rng = np.random.default_rng(seed)
    with Store(root) as store:
        for rec in store.runs(name):
            r = rec.run
            store.start_attempt(r.run_id, "synthetic")
            steps = np.unique(np.geomspace(1, r.steps, min(r.steps, points)).astype(int))
            pts = []
            for s in steps:
                tok = int(s * r.batch_tokens)
                lo = law(r.params_nonembed, tok, params) * math.exp(rng.normal(0, noise))
                pts.append(CurvePoint(r.run_id, int(s) - 1, tok, 6.0 * r.params_nonembed * tok,
                                      lo, lo, r.lr, bool(s == r.steps)))
            store.add_points(pts)
            final = pts[-1].eval_loss
            store.finish(TrainResult(r.run_id, final, final, r.tokens, r.steps, 1.0, 1.0))
            if metric is not None:
                store.add_metrics(r.run_id, {"heldout_top1_acc": metric(final)})
