"""Fitting stage: Approach 3 (chinchilla / hoffmann), Approach 2 (isoflop), Approach 1
(envelope), Kaplan's laws, compute multipliers (compare); input points loaded and checked here."""

from sweep.fit.chinchilla import compute_optimal, fit_chinchilla
from sweep.fit.points import check_points, load_csv, parse_at, parse_map

__all__ = ["check_points", "compute_optimal", "fit_chinchilla", "load_csv", "parse_at",
           "parse_map"]
# heavier modules stay lazy: sweep.fit.isoflop.fit_isoflop(s), sweep.fit.envelope.fit_envelope,
# sweep.fit.kaplan.fit_kaplan, sweep.fit.compare.compare, sweep.fit.downstream.fit_downstream,
# sweep.fit.learning_curve.fit_learning_curve, sweep.fit.conventions.convert
