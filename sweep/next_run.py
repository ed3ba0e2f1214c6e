"""`sweep next`: append the next run to a sweep's plan and record its predicted loss.

Default: the compute-optimal run for a budget (FLOPs, 6ND); ``informative``: among candidates
costing at most the budget, the one that most narrows the bootstrap interval of the predicted
loss at a target compute (sweep.informative). A run whose prediction lies outside the fit's trust
region (loss above ln(vocab), N below the smallest fitted model, fewer tokens than one batch) is
never appended. The prediction, with its trust and warnings, goes to runs/NAME/predictions.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sweep import predictions, shapes
from sweep.diagnostics import load_study
from sweep.errors import FitError, InputError
from sweep.records import Fit, PlannedRun
from sweep.runs import write_plan_file
from sweep.store import Store


@dataclass(frozen=True)
class NextResult:
    sweep: str
    runs: list[PlannedRun]  # appended to the plan (already planned ones are kept, not added)
    predictions: list  # sweep.predictions.PredictionRecord, one per run
    reason: str  # "compute-optimal" or "most informative"
    added: int = 0
    informative: object | None = None  # sweep.informative.InformativeResult
    why: str = ""  # what the chosen run pins down (informative) or its trust


def next_runs(name: str, budget: float, root: Path = Path("runs"), overrides: Sequence[str] = (),
              *, informative: bool = False, target: float | None = None,
              bootstrap: int | None = None, candidate_bootstrap: int = 60,
              fit: Fit | None = None, law: str = "chinchilla") -> NextResult:
    """Append the next run to the plan and record its predicted loss (runs/NAME/predictions.json).

    Default: the compute-optimal run for ``budget`` FLOPs (6ND). ``informative``: among
    candidates costing at most ``budget``, the one that most narrows the bootstrap interval of
    the predicted loss at ``target`` FLOPs (default 10 × budget). ``law`` other than
    chinchilla: the Chinchilla-form law of sweep.study_law's selection."""
    from sweep.plan import make_run
    from sweep.recommend import fit_params, recommend

    if fit is None and law != "chinchilla":
        from sweep.study_law import sweep_selected_fit

        fit = sweep_selected_fit(name, root, overrides, law=law, bootstrap=bootstrap)
    st = load_study(name, root, overrides, bootstrap=bootstrap, fit=fit)
    if not st.has_shape:
        raise InputError(f"sweep '{name}' has only imported points and no shape rule: `sweep "
                         "next` plans runs of the sweep's own model; use `sweep recommend` for "
                         "N and D")
    cfg, fit = st.cfg, st.fit
    info, why = None, ""
    if informative:
        from sweep.informative import most_informative

        info = most_informative(fit, st.points, cfg, name, budget, target or 10.0 * budget,
                                bootstrap=candidate_bootstrap, seed=cfg.fit.seed,
                                exclude=[r.run.run_id for r in st.planned])
        if info.best is None:
            extra = f" ({info.skipped[0]})" if info.skipped else ""
            raise FitError(f"no candidate run within a budget of {budget:.3g} FLOPs is inside "
                           f"what the fit can say{extra}")
        run, reason, why = info.best.run, "most informative", info.best.why
    else:
        rec = recommend(fit, budget, cfg)
        if rec.trust == "outside":
            raise FitError(f"the compute-optimal run for {budget:.3g} FLOPs is outside what the "
                           "fit can say: " + "; ".join(w for w in rec.warnings
                                                       if w not in fit.warnings))
        run = make_run(name, rec.model["width"], rec.model["depth"], rec.tokens, cfg)
        reason = "compute-optimal"
    n = fit_params(run.width, run.depth, cfg, cfg.fit.params)
    pred = fit.predict(n, run.tokens)
    if pred.trust == "outside":  # rounding to whole steps may still push it out
        raise FitError(f"run {run.run_id} would be outside what the fit can say: "
                       + "; ".join(w for w in pred.warnings if w not in fit.warnings))
    rec_ = predictions.record(run.run_id, pred, shapes.flops_6nd(n, run.tokens), reason,
                              fit.n_points)
    with Store(root, create=False) as store:
        added, _, _ = store.put_plan(name, st.saved_overrides, dataclasses.asdict(cfg), [run],
                                     append=True)
        write_plan_file(Path(root) / name, [r.run for r in store.runs(name)])
    predictions.add(root, name, [rec_])
    return NextResult(name, [run], [rec_], reason, added, info, why)
