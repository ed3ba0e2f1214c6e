"""The Python API of sweep, one import away: a facade re-exporting each stage's functions.

    runs:  plan_sweep, launch, status, cancel, retry, demo (sweep/runs.py)
    study: sweep_config, sweep_points, sweep_fit (= fit_sweep), fit_csv, envelope_fit,
           learning_curve_fit, downstream_fit (sweep/study.py)
    recommend_for (sweep/recommend.py), next_runs (next_run.py), prediction_checks
    (predictions.py), study_costs (cost.py), report (report_page.py): imported on first use,
    so that `import sweep.api` (and the CLI) does not load numpy, matplotlib and scipy.
Each takes plain arguments, returns typed records, and raises SweepError subclasses; the click
layer (sweep/cli/) only parses, calls them and prints. Nothing is defined here.
"""

from __future__ import annotations

import importlib

from sweep.runs import (CancelResult, LaunchResult, PlanResult, Status, cancel, demo, launch,
                        plan_sweep, retry, status)
from sweep.study import (downstream_fit, envelope_fit, fit_csv, learning_curve_fit,
                         sweep_config, sweep_fit, sweep_points)

fit_sweep = sweep_fit  # the name earlier releases used

_LATER = {"recommend_for": "sweep.recommend", "NextResult": "sweep.next_run",
          "next_runs": "sweep.next_run", "prediction_checks": "sweep.predictions",
          "study_costs": "sweep.cost", "report": "sweep.report_page"}


def __getattr__(name: str):
    if name in _LATER:
        return getattr(importlib.import_module(_LATER[name]), name)
    raise AttributeError(f"module 'sweep.api' has no attribute {name!r}")


__all__ = ["CancelResult", "LaunchResult", "PlanResult", "Status", "cancel", "demo",
           "downstream_fit", "envelope_fit", "fit_csv", "fit_sweep", "launch",
           "learning_curve_fit", "plan_sweep", "retry", "status", "sweep_config", "sweep_fit",
           "sweep_points", *_LATER]
