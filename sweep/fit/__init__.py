"""Fitting stage: fit input points and the Chinchilla Approach 3 fit with bootstrap intervals."""

from sweep.fit.chinchilla import compute_optimal, fit_chinchilla
from sweep.fit.points import check_points, load_csv, parse_at, parse_map

__all__ = ["check_points", "compute_optimal", "fit_chinchilla", "load_csv", "parse_at",
           "parse_map"]
