"""Helpers: a synthetic sweep written straight into a Store: planned runs whose results follow a
known law L = E + A/N^alpha + B/D^beta (N = params_nonembed), no training."""

from __future__ import annotations

import math

import numpy as np

from sweep.records import CurvePoint, TrainResult
from sweep.store import Store

LAW = {"E": 1.7, "A": 60.0, "B": 200.0, "alpha": 0.35, "beta": 0.35}
ISO = ["model.widths=[32,64,96,128,160]", "budget=flops", "budget.flops=[1e11,3e11,1e12,3e12]"]
RATE = 2e9  # pretend achieved FLOP/s for wall_seconds


def law(n: float, d: float) -> float:
    p = LAW
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def finish_runs(root, name: str, noise: float = 0.004, seed: int = 0, only=None) -> None:
    """Write a curve and a result for every not-completed run of the sweep (or of ``only``)."""
    rng = np.random.default_rng(seed)
    with Store(root) as store:
        for rec in store.runs(name):
            r = rec.run
            if rec.state == "completed" or (only is not None and r.run_id not in only):
                continue
            store.start_attempt(r.run_id, "synthetic")
            steps = np.unique(np.linspace(1, r.steps, min(r.steps, 20)).astype(int))
            pts = []
            for s in steps:
                tok = int(s * r.batch_tokens)
                lo = law(r.params_nonembed, tok) * math.exp(rng.normal(0, noise))
                pts.append(CurvePoint(r.run_id, int(s), tok, 6.0 * r.params_nonembed * tok,
                                      lo * 1.01, lo if s in steps[-4:] else None, r.lr,
                                      bool(s == r.steps)))
            store.add_points(pts)
            final = pts[-1].eval_loss
            store.finish(TrainResult(r.run_id, final, final * 1.01, r.tokens, r.steps,
                                     r.flops_6nd / RATE, r.tokens / (r.flops_6nd / RATE)))




def invoke(args: list[str], root):
    """The real CLI in-process (stdout and stderr separate)."""
    from click.testing import CliRunner

    from sweep.cli import cli

    return CliRunner().invoke(cli, [*args, "--root", str(root)], catch_exceptions=False)
