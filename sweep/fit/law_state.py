"""A law selection (sweep.fit.rollout.Selection) as plain JSON and back, for the fit cache.

The fitted laws keep what they predict with (theta, centring, bootstrap samples; the
whole-curve laws their schedule template and held-out gap), so a cached selection predicts
exactly as the fresh one. NaN and inf stay as JSON's NaN/Infinity (Python's json reads them back).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sweep.errors import FitError
from sweep.fit.laws import LAWS, FittedLaw
from sweep.fit.rollout import Selection

STATE_VERSION = 1


def _arr(a: Any) -> Any:
    return None if a is None else np.asarray(a, float).tolist()


def _fit_state(f: Any) -> dict[str, Any]:
    if isinstance(f, FittedLaw):
        return {"kind": "point", "law": f.law, "params": f.params, "objective": f.objective,
                "converged": f.converged, "n_points": f.n_points, "theta": _arr(f.theta),
                "centre": list(f.centre), "samples": _arr(f.samples)}
    if getattr(f, "law", None) == "curve":
        return {"kind": "curve", "params": f.params, "objective": float(f.objective),
                "converged": bool(f.converged), "n_points": f.n_points, "n_runs": f.n_runs,
                "theta": _arr(f.theta), "scale": list(f.scale), "lam": f.lam, "gap": f.gap,
                "template": {k: (_arr(v) if isinstance(v, np.ndarray) else v)
                             for k, v in f.template.items()},
                "samples": _arr(f.samples)}
    if getattr(f, "law", None) == "mpl":
        return {"kind": "mpl", "params": f.params, "objective": float(f.objective),
                "converged": bool(f.converged), "n_points": f.n_points, "n_runs": f.n_runs,
                "theta": _arr(f.theta), "scale": list(f.scale), "gap": f.gap,
                "template": {k: (_arr(v) if isinstance(v, np.ndarray) else v)
                             for k, v in f.template.items()},
                "samples": _arr(f.samples), "relative": bool(f.relative)}
    raise FitError(f"cannot cache a fit of type {type(f).__name__}")


def _fit_from(d: dict[str, Any]) -> Any:
    samples = None if d["samples"] is None else np.asarray(d["samples"], float)
    if d["kind"] == "point":
        return FittedLaw(d["law"], d["params"], d["objective"], d["converged"], d["n_points"],
                         np.asarray(d["theta"], float), tuple(d["centre"]), LAWS[d["law"]],
                         samples)
    tmpl = {k: (np.asarray(v, float) if isinstance(v, list) else v)
            for k, v in d["template"].items()}
    if d["kind"] == "mpl":
        from sweep.fit.mpl_law import MplFit

        return MplFit(d["params"], d["objective"], d["converged"], d["n_points"], d["n_runs"],
                      np.asarray(d["theta"], float), tuple(d["scale"]), d["gap"], tmpl, samples,
                      d["relative"])
    from sweep.fit.curve_law import CurveFit

    return CurveFit(d["params"], d["objective"], d["converged"], d["n_points"], d["n_runs"],
                    np.asarray(d["theta"], float), tuple(d["scale"]), d["lam"], d["gap"], tmpl,
                    samples)


def to_state(sel: Selection) -> dict[str, Any]:
    """Everything ``Selection`` holds, as JSON-able lists and dicts."""
    return {"version": STATE_VERSION, "table": sel.table.to_dict(orient="records"),
            "steps": sel.steps, "choice": sel.choice, "combine": sel.combine,
            "weights": sel.weights, "sigma": sel.sigma, "nested_error": sel.nested_error,
            "nested_coverage": sel.nested_coverage, "chinchilla_error": sel.chinchilla_error,
            "fits": {k: _fit_state(f) for k, f in sel.fits.items()},
            "variants": {k: list(v) for k, v in sel.variants.items()},
            "warnings": list(sel.warnings)}


def from_state(d: dict[str, Any]) -> Selection:
    """The inverse of ``to_state``; FitError for another state version."""
    if d.get("version") != STATE_VERSION:
        raise FitError(f"cached law selection has version {d.get('version')!r}")
    return Selection(pd.DataFrame(d["table"]), d["steps"], d["choice"], d["combine"],
                     d["weights"], d["sigma"], d["nested_error"], d["nested_coverage"],
                     d["chinchilla_error"], {k: _fit_from(f) for k, f in d["fits"].items()},
                     {k: tuple(v) for k, v in d["variants"].items()}, list(d["warnings"]))
