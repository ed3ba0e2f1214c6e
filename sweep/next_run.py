"""`sweep next`: append the next run to a sweep's plan and record its predicted loss.

Default: the compute-optimal run for a budget (FLOPs, 6ND), when the fit can say what it is: its
E, alpha and beta identified and the run within a reach (default 2×) of the fitted N and D. When
E, alpha or beta is not identified, the compute-optimal allocation rests on guesses, so the run
appended is the most informative one within reach (sweep.informative: the one that most narrows
the interval at 10 × the budget), and the text says why; when they are identified but the
optimum lies farther, the run with the lowest predicted loss within reach. ``informative``: the
most informative run within reach, always. A run whose prediction lies outside the fit's trust
region (loss above ln(vocab), N below the smallest fitted model, fewer tokens than one batch) is
never appended. The prediction, with its trust and warnings, goes to runs/NAME/predictions.json.
"""

from __future__ import annotations

import dataclasses
import math
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
    law: str = "chinchilla"  # the law that chose the run and the one that predicted its loss


REACH = 2.0  # how far past the fitted N and D a next run may go (×), by default
SETTLED = ("E", "alpha", "beta")  # what the compute-optimal allocation rests on


def _far(fit: Fit, n: float, d: float) -> str:
    tr = fit.trust
    parts = [f"{k} ×{v:.3g}" for k, v in (("N", n / tr.params[1]), ("D", d / tr.tokens[1]))
             if v > 1 + 1e-9]
    return f", {', '.join(parts)} past the fitted runs" if parts else ""


def choose(fit: Fit, pts, cfg, name: str, budget: float, *, reach: float = REACH,
           target: float | None = None, candidate_bootstrap: int = 60,
           exclude: Sequence[str] = (), informative: bool = False
           ) -> tuple[PlannedRun, str, str, object | None]:
    """(run, reason, why, informative result) of the next run for ``budget`` FLOPs (6ND).

    The compute-optimal run when the fit identifies E, alpha and beta and the run lies within
    ``reach`` × of the fitted N and D. When it does not identify them, the compute-optimal run
    rests on guesses, so the most informative run within reach (sweep.informative) is chosen
    instead; when they are identified but the optimum is farther than ``reach``, the lowest
    predicted loss within reach. ``informative``: always the most informative within reach."""
    from sweep.informative import most_informative, reach_candidates
    from sweep.plan import make_run
    from sweep.recommend import fit_params, recommend

    rec = recommend(fit, budget, cfg)
    opt = make_run(name, rec.model["width"], rec.model["depth"], rec.tokens, cfg)
    n_opt = fit_params(opt.width, opt.depth, cfg, cfg.fit.params)
    ident = fit.trust.identified if fit.trust is not None else {}
    loose = [k for k in SETTLED if not ident.get(k, True)]
    far = fit.trust is not None and max(n_opt / fit.trust.params[1],
                                        opt.tokens / fit.trust.tokens[1]) > reach * (1 + 1e-9)
    if not (informative or loose or far):
        if rec.trust == "outside":
            raise FitError(f"the compute-optimal run for {budget:.3g} FLOPs is outside what the "
                           "fit can say: " + "; ".join(w for w in rec.warnings
                                                       if w not in fit.warnings))
        return opt, "compute-optimal", "", None
    cands = reach_candidates(fit, cfg, name, budget, reach, exclude=exclude)
    pred = {r.run_id: fit.predict(fit_params(r.width, r.depth, cfg, cfg.fit.params), r.tokens)
            for r in cands}
    runs = [r for r in cands if pred[r.run_id].trust != "outside"]
    if not runs:
        tr = fit.trust
        d_lo = max(tr.tokens[0] / reach, tr.min_tokens or 0.0)
        raise FitError(f"no run within {reach:g}× of the fitted N and D costs at most "
                       f"{budget:.3g} FLOPs: the cheapest (N = {tr.params[0]:.3g}, D = "
                       f"{d_lo:.3g} tokens) costs {shapes.flops_6nd(tr.params[0], d_lo):.3g}")
    where = f"within {reach:g}× of the fitted N and D"
    optimum = (f"the compute-optimal run for {budget:.3g} FLOPs ({opt.run_id}: N = "
               f"{n_opt:.3g}, D = {opt.tokens:.3g} tokens{_far(fit, n_opt, opt.tokens)})")
    if informative or loose:
        info = most_informative(fit, pts, cfg, name, budget, target or 10.0 * budget,
                                bootstrap=candidate_bootstrap, seed=cfg.fit.seed, runs=runs)
        if info.best is None:
            raise FitError(f"no candidate run {where} costing at most {budget:.3g} FLOPs is "
                           "inside what the fit can say")
        why = (f"most narrows the interval at C = {info.target_compute:.3g} FLOPs among runs "
               f"{where} costing at most {budget:.3g} FLOPs; it {info.best.why}")
        if loose and not informative and info.best.run.run_id == opt.run_id:
            why += f"; it is also {optimum}"
        elif loose and not informative:
            why += (f". Switched from {optimum}: {', '.join(loose)} "
                    f"{'is' if len(loose) == 1 else 'are'} not identified by the fitted runs, "
                    "so that allocation rests on guesses")
        return info.best.run, "most informative", why, info
    best = min(runs, key=lambda r: pred[r.run_id].loss)
    why = (f"has the lowest predicted loss among runs {where} costing at most {budget:.3g} "
           f"FLOPs; {optimum} is farther than the fit can be trusted")
    return best, "compute-optimal within reach", why, None


def next_runs(name: str, budget: float, root: Path = Path("runs"), overrides: Sequence[str] = (),
              *, informative: bool = False, target: float | None = None,
              bootstrap: int | None = None, candidate_bootstrap: int = 60,
              fit: Fit | None = None, law: str = "chinchilla", reach: float = REACH
              ) -> NextResult:
    """Append the next run to the plan and record its predicted loss (runs/NAME/predictions.json).

    The run is ``choose``'s: compute-optimal for ``budget`` FLOPs (6ND) when the fit can say so,
    else the most informative (E, alpha or beta not identified) or the best within ``reach`` ×
    of the fitted N and D; ``informative``: the most informative within reach, narrowing the
    interval at ``target`` FLOPs (default 10 × budget). ``law`` other than chinchilla:
    sweep.study_law.SelectedFit (runs chosen by the selection's Chinchilla-form law or the
    plain fit, losses predicted by the selected law or laws)."""
    from sweep.recommend import fit_params

    if not (reach >= 1 and math.isfinite(reach)):
        raise InputError(f"the reach past the fitted N and D must be a finite factor >= 1, got "
                         f"{reach!r}")
    if fit is None and law != "chinchilla":
        from sweep.study_law import sweep_selected_fit

        fit = sweep_selected_fit(name, root, overrides, law=law, bootstrap=bootstrap)
    st = load_study(name, root, overrides, bootstrap=bootstrap, fit=fit)
    if not st.has_shape:
        raise InputError(f"sweep '{name}' has only imported points and no shape rule: `sweep "
                         "next` plans runs of the sweep's own model; use `sweep recommend` for "
                         "N and D")
    cfg, fit = st.cfg, st.fit
    run, reason, why, info = choose(fit, st.points, cfg, name, budget, reach=reach,
                                    target=target, candidate_bootstrap=candidate_bootstrap,
                                    exclude=[r.run.run_id for r in st.planned],
                                    informative=informative)
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
    by = getattr(fit, "predicted_by", "")
    law_note = (f"allocation by {fit.method}, loss predicted by {by}" if by else fit.method)
    return NextResult(name, [run], [rec_], reason, added, info, why, law_note)
