"""Law selection by rolling leave-largest-compute-out validation, with calibrated intervals.

Budgets: C = 6ND FLOPs per point, snapped (log10 C within ``tol`` decades of a level's smallest
member is that level), then grouped from the top so that every held-out level has >= ``min_held``
points. Rollout (as in OLMo-core's ladder rollout): for each of the last ``n_steps`` levels, fit
every candidate on the levels below and predict the level; one extra, earlier step only
calibrates. A law's rollout error = mean over steps of the mean |relative error| of predicted
loss (nats/token) on the held-out points.

Intervals (95 %): the bootstrap percentile interval of ln L_hat (parameter uncertainty, resampling
runs) widened in quadrature by z * s, s = the RMS of ln(L_hat / L) on held-out points of the
rollout (the law's own out-of-sample error; z = 1.96):
  ln L_lo = ln L_hat - sqrt((ln L_hat - q2.5)^2 + (z s)^2), likewise ln L_hi.
Coverage is measured honestly: at each reported step, s comes from the earlier steps only and the
bootstrap from that step's training points; so is the auto choice (``nested_error``): the law (or
weights) chosen from earlier steps, scored on the next.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sweep import shapes
from sweep.errors import FitError, InputError
from sweep.fit.laws import LAWS, FittedLaw, Law
from sweep.records import Fit

log = logging.getLogger(__name__)

Z95 = 1.959964
COMBINES = ("best", "softmax", "inverse")
CURVE_LAWS = ("mpl", "curve")
"""Whole-curve laws (sweeps with loss curves). Only mpl is an auto candidate: on the 20-run
sweep of analysis/law_holdout.py the Tissue form (curve) had 4.7 % rollout error against
chinchilla's 1.2 % and cost 3/4 of the auto fit's CPU; ``--law curve`` still fits it."""
AUTO_CURVE_LAWS = ("mpl",)


class RolloutError(FitError):
    """Too few compute budgets to rollout-validate (``fit_law`` then fits unvalidated)."""


def budget_levels(flops: np.ndarray, tol: float = 0.05, min_held: int = 3) -> np.ndarray:
    """Level index (0 = smallest) per point: log10 C snapped within ``tol`` decades, then merged
    downwards from the top until each level above the lowest holds >= ``min_held`` points."""
    lc = np.log10(np.asarray(flops, float))
    order = np.argsort(lc, kind="stable")
    snapped = np.empty(len(lc), int)
    level, start = -1, -math.inf
    for i in order:
        if lc[i] - start > tol:
            level, start = level + 1, lc[i]
        snapped[i] = level
    groups, acc = [], []
    for lv in range(level, -1, -1):  # top down
        acc.append(lv)
        if (np.isin(snapped, acc)).sum() >= min_held:
            groups.append(acc)
            acc = []
    if acc:  # the lowest level only trains: it may hold fewer
        groups.append(acc)
    out = np.empty(len(lc), int)
    for k, g in enumerate(reversed(groups)):
        out[np.isin(snapped, g)] = k
    return out


def _resolve(candidates: Sequence[str | Law]) -> list[Any]:
    out = []
    for c in candidates:
        if isinstance(c, str):
            if c == "curve":
                from sweep.fit.curve_law import CurveLaw

                out.append(CurveLaw())
            elif c == "mpl":
                from sweep.fit.mpl_law import MplLaw

                out.append(MplLaw())
            elif c in LAWS:
                out.append(LAWS[c])
            else:
                raise InputError(f"unknown law {c!r}; expected {', '.join([*LAWS, *CURVE_LAWS])}")
        else:
            out.append(c)
    if not out:
        raise InputError("law selection needs at least one candidate law")
    return out


def _fit(law: Any, df: pd.DataFrame, curves: pd.DataFrame | None, **kw: Any) -> Any:
    if getattr(law, "needs_curves", False):
        if curves is None:
            raise FitError(f"law {law.name!r} needs loss curves")
        return law.fit(df, curves=curves[curves["run_id"].isin(df["run_id"])], **kw)
    return law.fit(df, **kw)


def _predict(fit: Any, df: pd.DataFrame, curves: pd.DataFrame | None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """(predicted loss (n,), bootstrap draws (B, n) or None) at the points of df."""
    if hasattr(fit, "predict_runs") and curves is not None and "run_id" in df:
        return fit.predict_runs(df, curves)
    n, d = df["params"].to_numpy(), df["tokens"].to_numpy()
    return fit.predict(n, d), fit.predict_draws(n, d)


def interval(pred: np.ndarray, draws: np.ndarray | None, sigma: float, z: float = Z95
             ) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated 95 % interval (lo, hi) in nats/token: bootstrap percentiles of ln L_hat
    widened in quadrature by z * sigma (sigma = out-of-sample RMS of ln(L_hat / L))."""
    lp = np.log(pred)
    dlo = dhi = np.zeros_like(lp)
    if draws is not None and len(draws):
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.nanpercentile(np.log(np.where(draws > 0, draws, np.nan)), [2.5, 97.5], axis=0)
        dlo, dhi = np.maximum(lp - q[0], 0.0), np.maximum(q[1] - lp, 0.0)
    zs = z * (sigma if math.isfinite(sigma) else 0.0)
    return np.exp(lp - np.hypot(dlo, zs)), np.exp(lp + np.hypot(dhi, zs))


def combine_weights(errors: dict[str, float], combine: str, tau: float | None = None
                    ) -> dict[str, float]:
    """Weights per law from rollout errors: best (one-hot), softmax exp(-err/tau) (tau default =
    the smallest error) or inverse (1/err)."""
    if combine not in COMBINES:
        raise InputError(f"unknown combine {combine!r}; expected one of {', '.join(COMBINES)}")
    names = [k for k, v in errors.items() if math.isfinite(v)]
    if not names:
        names = list(errors)
        return {k: 1.0 / len(names) for k in names}
    e = np.array([errors[k] for k in names])
    if combine == "best":
        w = (np.arange(len(e)) == np.argmin(e)).astype(float)
    elif combine == "softmax":
        t = tau if tau else max(float(e.min()), 1e-12)
        w = np.exp(-(e - e.min()) / t)
    else:
        w = 1.0 / np.maximum(e, 1e-12)
    w = w / w.sum()
    return {k: float(wi) for k, wi in zip(names, w, strict=True)}


@dataclass
class Selection:
    """The rollout table and the chosen law (or weighted average), fitted on all points."""

    table: pd.DataFrame  # per law: rollout error per step, mean, rms log error, coverage, weight
    steps: list[dict[str, Any]]
    choice: str  # a law name, or "weighted" (average with ``weights``)
    combine: str
    weights: dict[str, float]
    sigma: dict[str, float]  # out-of-sample RMS of ln(L_hat / L) per law (all rollout steps)
    nested_error: float  # mean |rel. error| of the auto procedure, chosen on earlier steps only
    nested_coverage: float  # fraction of held-out points inside the auto's calibrated interval
    chinchilla_error: float  # the plain Chinchilla law's error on the same reported steps
    fits: dict[str, Any] = field(default_factory=dict, repr=False)
    variants: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """combine -> (honest error, coverage, mean interval half-width / prediction)"""
    warnings: list[str] = field(default_factory=list)

    def predict(self, n: Any, d: Any, curves: pd.DataFrame | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(loss, lo95, hi95) in nats/token at N params, D tokens (or at the runs of a points
        frame with ``curves`` for the curve law): the choice's prediction, calibrated interval."""
        df = pd.DataFrame({"params": np.atleast_1d(np.asarray(n, float)),
                           "tokens": np.atleast_1d(np.asarray(d, float))})
        preds = {k: _predict(self.fits[k], df, curves) for k in self.weights if self.weights[k]}
        return _mix(preds, self.weights, self.sigma)

    def to_dict(self) -> dict[str, Any]:
        """The JSON block (NaN and inf as null): choice, weights, rollout table, auto and
        Chinchilla errors, coverage, each fitted law's parameters, warnings."""
        return json_safe({"choice": self.choice, "combine": self.combine, "weights": self.weights,
                "rollout": self.table.to_dict(orient="records"), "steps": self.steps,
                "sigma_log": self.sigma, "auto_mean_abs_rel_error": self.nested_error,
                "auto_coverage": self.nested_coverage,
                "chinchilla_mean_abs_rel_error": self.chinchilla_error,
                "auto_by_combine": {k: {"mean_abs_rel_error": e, "coverage": c,
                                        "mean_rel_half_width": h}
                                    for k, (e, c, h) in self.variants.items()},
                "fits": {k: dict(f.params) for k, f in self.fits.items()},
                "warnings": list(self.warnings),
                "conventions": {"error": "mean |L_hat/L - 1| on held-out points, L nats/token",
                                "budget": "C = 6ND FLOPs", "interval": "95 %, calibrated"}})


def json_safe(x: Any) -> Any:
    """JSON-safe copy: numpy scalars as floats/ints, NaN and inf as None."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _mix(preds: dict[str, tuple[np.ndarray, np.ndarray | None]], weights: dict[str, float],
         sigma: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted prediction with paired bootstrap draws and sigma = sqrt(sum w sigma^2)."""
    ks = [k for k in preds if weights.get(k, 0) > 0]
    w = np.array([weights[k] for k in ks]) / sum(weights[k] for k in ks)
    pred = sum(wi * preds[k][0] for wi, k in zip(w, ks, strict=True))
    draws = None
    if all(preds[k][1] is not None for k in ks):
        m = min(len(preds[k][1]) for k in ks)
        draws = sum(wi * preds[k][1][:m] for wi, k in zip(w, ks, strict=True))
    sig = math.sqrt(sum(wi * sigma.get(k, 0.0) ** 2 for wi, k in zip(w, ks, strict=True)))
    lo, hi = interval(pred, draws, sig)
    return pred, lo, hi


def select_law(df: pd.DataFrame, candidates: Sequence[str | Law] = tuple(LAWS), *,
               curves: pd.DataFrame | None = None, combine: str = "inverse",
               tau: float | None = None, n_steps: int = 3, tol: float = 0.05,
               min_held: int = 3, bootstrap: int = 200, rollout_bootstrap: int = 100,
               sigma_rule: str = "rms", seed: int = 0) -> Selection:
    """Rollout-validate ``candidates`` on points ``df`` (params, tokens, loss; + run_id with
    ``curves`` for the curve law), choose (``combine``: best | softmax | inverse) and refit the
    chosen law(s) on all points with ``bootstrap`` resamples. FitError if no step is possible."""
    laws = _resolve(candidates)
    df = df.reset_index(drop=True)
    if "flops" not in df:
        df = df.assign(flops=shapes.flops_6nd(df["params"].to_numpy(), df["tokens"].to_numpy()))
    level = budget_levels(df["flops"].to_numpy(), tol, min_held)
    # whole-curve laws fit many points per run: the point laws set the minimum
    need = max([getattr(lw, "n_params", 5) for lw in laws
                if not getattr(lw, "needs_curves", False)] or [5]) + 2
    usable = [j for j in range(1, level.max() + 1) if (level < j).sum() >= need
              and df.loc[level < j, "params"].nunique() >= 2
              and df.loc[level < j, "tokens"].nunique() >= 2]
    targets = usable[-(n_steps + 1):]
    if len(targets) < 2:
        raise RolloutError(f"rollout needs >= 2 compute budgets above {need} training points; "
                       f"these {len(df)} points give {len(usable)}")
    names = [law.name for law in laws]
    records, steps = [], []  # per step: (observed losses, {law: (pred, draws)})
    for si, j in enumerate(targets):
        train, test = df[level < j], df[level == j]
        preds = {law.name: _predict(_fit(law, train, curves, seed=seed,
                                         bootstrap=rollout_bootstrap if si else 0), test, curves)
                 for law in laws}
        records.append((test["loss"].to_numpy(), preds))
        steps.append({"calibration_only": si == 0, "n_train": int(len(train)),
                      "n_held_out": int(len(test)),
                      "train_flops_max": float(train["flops"].max()),
                      "held_out_flops": [float(test["flops"].min()), float(test["flops"].max())]})
    err = {k: [float(np.mean(np.abs(p[k][0] / o - 1))) for o, p in records] for k in names}
    mean = {k: float(np.mean(err[k][1:])) for k in names}
    sigma = {k: _sigma([np.log(p[k][0] / o) for o, p in records], sigma_rule) for k in names}
    weights = combine_weights(mean, combine, tau)
    variants = {c: _nested(records, names, c, tau, sigma_rule) for c in COMBINES}
    rows = []
    for k in names:
        row: dict[str, Any] = {"law": k}
        row.update({f"step{i}": e for i, e in enumerate(err[k][1:], 1)})
        row.update(mean_abs_rel_error=mean[k], rms_log_error=sigma[k],
                   coverage=_nested(records, [k], "best", tau, sigma_rule)[1],
                   weight=weights.get(k, 0.0))
        rows.append(row)
    fits = {law.name: _fit(law, df, curves, bootstrap=bootstrap, seed=seed)
            for law in laws if weights.get(law.name, 0) > 0}
    nz = [k for k, w in weights.items() if w > 0]
    choice = nz[0] if len(nz) == 1 else "weighted"
    chin = float(np.mean(err["chinchilla"][1:])) if "chinchilla" in err else math.nan
    nested, cov, _ = variants[combine]
    log.info("law selection: %s (%s), nested error %.4g, coverage %.0f%%", choice, combine,
             nested, 100 * cov)
    return Selection(pd.DataFrame(rows), steps, choice, combine, weights, sigma, nested, cov,
                     chin, fits, variants)


def _sigma(log_errors: list[np.ndarray], rule: str) -> float:
    """Out-of-sample spread of ln(L_hat/L): 'rms' pools the points of all steps; 'max' takes
    the largest per-step RMS (conservative when errors grow with extrapolation)."""
    if rule == "rms":
        return float(np.sqrt(np.mean(np.concatenate(log_errors) ** 2)))
    return float(max(np.sqrt(np.mean(e**2)) for e in log_errors))


def _nested(records: list, names: list[str], combine: str, tau: float | None,
            sigma_rule: str) -> tuple[float, float, float]:
    """(mean |rel. error|, coverage, mean half-width of the interval as a fraction of the
    prediction) of the auto procedure on steps 1.., each step's weights and sigma taken from
    the steps before it only."""
    errs, covered, width = [], [], []
    for i in range(1, len(records)):
        obs, preds = records[i]
        past = {k: float(np.mean([np.mean(np.abs(p[k][0] / o - 1)) for o, p in records[:i]]))
                for k in names}
        sig = {k: _sigma([np.log(p[k][0] / o) for o, p in records[:i]], sigma_rule)
               for k in names}
        p, lo, hi = _mix({k: preds[k] for k in names}, combine_weights(past, combine, tau), sig)
        errs.append(float(np.mean(np.abs(p / obs - 1))))
        covered.append((lo <= obs) & (obs <= hi))
        width.append((hi - lo) / (2 * p))
    return (float(np.mean(errs)), float(np.concatenate(covered).mean()),
            float(np.concatenate(width).mean()))


def fitted(sel: Selection) -> FittedLaw | None:
    """The single fitted law of a 'best' selection (None for a weighted average)."""
    return sel.fits.get(sel.choice)


def fit_law(points: pd.DataFrame, law: str = "auto", *, curves: pd.DataFrame | None = None,
            at: Sequence[tuple[float, float]] = (), bootstrap: int = 200, seed: int = 0,
            combine: str = "inverse", rollout_bootstrap: int = 100
            ) -> tuple[Selection, list[dict[str, float]]]:
    """``sweep fit --law LAW``: 'auto' rollout-validates every candidate (mpl too when
    ``curves`` are given) and predicts with ``combine``; a named law is rollout-validated alone
    (for its calibrated interval and coverage). Too few budgets for a rollout (e.g. a 3 x 3
    grid): 'auto' falls back to chinchilla, and the law is fitted unvalidated (``unvalidated``,
    with a warning; intervals from the bootstrap only). Returns (selection, predictions at ``at`` as
    {params, tokens, flops (6ND), loss, loss_lo95, loss_hi95} in nats/token)."""
    if law == "auto":
        cands: list[str] = [*LAWS, *(AUTO_CURVE_LAWS if curves is not None else ())]
    elif law in LAWS or law in CURVE_LAWS:
        cands = [law]
    else:
        raise InputError(f"unknown law {law!r}; expected auto, "
                         f"{', '.join([*LAWS, *CURVE_LAWS])}")
    try:
        sel = select_law(points, cands, curves=curves, combine=combine, bootstrap=bootstrap,
                         seed=seed, rollout_bootstrap=rollout_bootstrap)
    except RolloutError as exc:  # too few budgets: one law, fitted on all points, unvalidated
        sel = unvalidated(points, "chinchilla" if law == "auto" else law, str(exc),
                          curves=curves, bootstrap=bootstrap, seed=seed)
    preds = []
    if at:
        n, d = (np.array(v, float) for v in zip(*at, strict=True))
        loss, lo, hi = sel.predict(n, d)
        preds = [{"params": float(a), "tokens": float(b), "flops": shapes.flops_6nd(a, b),
                  "loss": float(x), "loss_lo95": float(y), "loss_hi95": float(z)}
                 for a, b, x, y, z in zip(n, d, loss, lo, hi, strict=True)]
    return sel, preds


def unvalidated(points: pd.DataFrame, law: str, why: str, *,
                curves: pd.DataFrame | None = None, bootstrap: int = 200,
                seed: int = 0) -> Selection:
    """A Selection of ``law`` alone fitted on all ``points`` without a rollout: no
    out-of-sample error (NaN), so its 95 % interval is the bootstrap's only; says so."""
    (lw,) = _resolve([law])
    fit = _fit(lw, points.reset_index(drop=True), curves, bootstrap=bootstrap, seed=seed)
    nan = math.nan
    table = pd.DataFrame([{"law": law, "mean_abs_rel_error": nan, "rms_log_error": nan,
                           "coverage": nan, "weight": 1.0}])
    warn = (f"not rollout-validated ({why}): {law} predicts unchecked and its 95 % interval "
            "is the bootstrap's only, no out-of-sample error added")
    return Selection(table, [], law, "best", {law: 1.0}, {law: 0.0}, nan, nan, nan,
                     {law: fit}, {}, [warn])


def to_fit(sel: Selection) -> Fit | None:
    """A records.Fit (E + A/N^alpha + B/D^beta, bootstrap samples) for recommend/next: the
    Chinchilla-form law with the largest weight (alpha = beta for chinchilla-equal), with the
    rollout as its validation; None if no Chinchilla-form law was selected."""
    forms = [k for k in ("chinchilla", "chinchilla-equal") if sel.weights.get(k, 0) > 0]
    if not forms:
        return None
    k = max(forms, key=lambda f: sel.weights[f])
    fl = sel.fits[k]
    p = fl.params
    samples = None
    if fl.samples is not None:
        named = [fl.form.named(t, *fl.centre) for t in fl.samples]
        samples = np.array([[s["E"], s["A"], s["B"], s["alpha"], s["beta"]] for s in named])
    ci = {}
    if samples is not None:
        q = np.nanpercentile(samples, [2.5, 97.5], axis=0)
        ci = {n: [float(q[0, i]), float(q[1, i])] for i, n in enumerate(("E", "A", "B", "alpha",
                                                                          "beta"))}
    al, be = p["alpha"], p["beta"]
    row = sel.table.set_index("law").loc[k]
    validation = None if not sel.steps else json_safe({
        "held_out": "rolling largest budget", "n_steps": len(sel.steps) - 1,
        "mean_abs_rel_error": float(row["mean_abs_rel_error"]),
        "covered_fraction": float(row["coverage"]), "law": k, "auto_choice": sel.choice,
        "auto_mean_abs_rel_error": sel.nested_error,
        "auto_covered_fraction": sel.nested_coverage})
    return Fit(method=k, n_points=fl.n_points, params=dict(p), ci95=ci,
               objective=fl.objective, allocation={"a": be / (al + be), "b": al / (al + be)},
               validation=validation, samples=samples, warnings=list(sel.warnings),
               conventions={"params": "as given", "flops": "6ND"})
