"""sweep: plan, train, fit and extrapolate scaling-law sweeps of language models.

Python API (each stage usable on its own):

    from sweep import api, Store
    api.plan_sweep("small", ["model.widths=[64,128]"], root)
    api.launch("small", root, jobs=2)
    pts = api.sweep_points("small", root)       # DataFrame: params, tokens, loss, provenance...
    fit = api.sweep_fit("small", root)          # -> sweep.records.Fit (cached in the store)
    rec = api.recommend_for("small", root, compute=1e16)  # -> sweep.records.Recommendation
    Store(root).finals_df(["small"])            # pandas DataFrames of runs, curves, finals
"""

from sweep.records import (CurvePoint, Fit, PlannedRun, Prediction, Recommendation, RunRecord,
                           RunState, TrainResult)
from sweep.store import Store

__all__ = ["CurvePoint", "Fit", "PlannedRun", "Prediction", "Recommendation", "RunRecord",
           "RunState", "Store", "TrainResult"]
