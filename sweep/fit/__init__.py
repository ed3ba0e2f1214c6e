"""Fitting stage: Approach 3 (chinchilla / hoffmann), Approach 2 (isoflop), Approach 1
(envelope), Kaplan's laws, compute multipliers (compare); input points loaded and checked here.

Names load on first use (PEP 562), so importing ``sweep.fit.points`` does not pull in scipy."""

from __future__ import annotations

import importlib

_WHERE = {"compute_optimal": "chinchilla", "fit_chinchilla": "chinchilla",
          "check_points": "points", "load_csv": "points", "parse_at": "points",
          "parse_map": "points"}
__all__ = sorted(_WHERE)
# also: sweep.fit.isoflop.fit_isoflop(s), sweep.fit.envelope.fit_envelope,
# sweep.fit.kaplan.fit_kaplan, sweep.fit.compare.compare, sweep.fit.downstream.fit_downstream,
# sweep.fit.learning_curve.fit_learning_curve, sweep.fit.conventions.convert


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"sweep.fit.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'sweep.fit' has no attribute {name!r}")
