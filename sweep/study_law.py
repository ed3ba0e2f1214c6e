"""Law selection on a study's points (issue 13): `sweep fit/recommend/next --law LAW`.

LAW is chinchilla (sweep.study's plain fit, unchanged), chinchilla-equal, kaplan, mpl (the
multi-power whole-curve law, sweeps only), curve (Tissue's whole-curve law, sweeps only) or
auto (every candidate rollout-validated, mpl but not curve among them, predicting with a
validation-weighted average; sweep.fit.rollout). The plain Chinchilla fit is made too (cached):
its trust region places every prediction in the data, whatever the law. Selections are cached in
the sweep's store like fits, under a key of the points, the options and the law (and the
curves). Units: N = parameters (the points' convention), D = tokens, C = 6ND FLOPs, loss in
nats/token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep import study
from sweep.errors import FitError, InputError
from sweep.plan import check_name
from sweep.records import Fit, Prediction
from sweep.store import Store

if TYPE_CHECKING:
    import pandas as pd

    from sweep.fit.rollout import Selection

log = logging.getLogger(__name__)

LAW_NAMES = ("chinchilla", "auto", "chinchilla-equal", "kaplan", "mpl", "curve")
LAW_BOOTSTRAP = 200
"""Default bootstrap resamples of a law selection's final refits."""
SMALL = 20
"""At most this many points: 50 final and 20 rollout resamples instead of 200 and 100 (a
20-run synthetic sweep: 2.1 -> 1.3 s CPU at 100/30, same errors and coverage; on the 9 shared
data sets 50/30 gave the same rollout coverage, 94-100 %, as 200/100; on the 20-run sweep of
analysis/law_holdout.py 50/20 gave the same rollout table and coverage as 100/30)."""
SMALL_BOOTSTRAP, SMALL_ROLLOUT_BOOTSTRAP = 50, 20
CHINCHILLA_FORMS = ("chinchilla", "chinchilla-equal")


def check_law(law: str) -> str:
    if law not in LAW_NAMES:
        raise InputError(f"unknown law {law!r}; expected one of {', '.join(LAW_NAMES)}")
    return law


@dataclass
class LawFit:
    """A law selection with what the commands need: the plain Chinchilla fit (``base``, for
    the trust region), predictions at --at placed in it, and the Chinchilla-form ``fit`` for
    recommend/next (None when only Kaplan or the curve law was chosen)."""

    law: str
    sel: Selection
    base: Fit
    predictions: list[Prediction]
    fit: Fit | None
    cached: bool = False

    def predicts_with(self) -> str:
        w = {k: v for k, v in self.sel.weights.items() if v > 0}
        if len(w) == 1:
            return next(iter(w))
        return "weighted average of " + ", ".join(f"{k} ({v:.2f})" for k, v in w.items())

    def validation(self) -> dict[str, Any] | None:
        s = self.sel
        if not s.steps:
            return None
        row = s.table.set_index("law")
        err, cov = ((s.nested_error, s.nested_coverage) if self.law == "auto" else
                    (row.loc[s.choice, "mean_abs_rel_error"], row.loc[s.choice, "coverage"]))
        return {"held_out": "rolling largest budget (C = 6ND)", "n_steps": len(s.steps) - 1,
                "law": s.choice, "mean_abs_rel_error": float(err),
                "covered_fraction": float(cov)}

    def to_dict(self) -> dict[str, Any]:
        """The keys of `sweep fit --json` (``params`` … ``allocation`` from the Chinchilla-form
        law used for allocation, named in ``params_law``) plus ``law_selection``."""
        from sweep.fit.rollout import json_safe

        src = self.fit or self.base
        d = self.base.to_dict()
        d.update(method=self.law, params=src.params, ci95=src.ci95, objective=src.objective,
                 allocation=src.allocation, params_law=src.method if self.fit else
                 "chinchilla (plain fit: the selected law has no allocation)",
                 validation=self.validation(), predictions=[p.to_dict() for p in
                                                            self.predictions],
                 warnings=list(dict.fromkeys([*self.sel.warnings, *self.base.warnings])),
                 law_selection=dict(self.sel.to_dict(), predicts_with=self.predicts_with(),
                                    cached=self.cached))
        return json_safe(d)


@dataclass
class CalibratedFit(Fit):
    """A Chinchilla-form Fit whose 95 % intervals are widened, in quadrature on ln L, by
    z * ``sigma_log`` (the law's out-of-sample RMS of ln(L_hat/L) in the rollout), as
    sweep.fit.rollout.interval does: recommend/next then quote calibrated intervals."""

    sigma_log: float = 0.0

    def predict(self, params: float, tokens: float) -> Prediction:
        import math

        from sweep.fit.rollout import Z95

        p = super().predict(params, tokens)
        zs = Z95 * self.sigma_log
        if not (zs > 0 and p.loss > 0 and p.loss_lo95 > 0 and math.isfinite(p.loss_hi95)):
            return p
        ll = math.log(p.loss)
        lo = math.exp(ll - math.hypot(ll - math.log(p.loss_lo95), zs))
        hi = math.exp(ll + math.hypot(math.log(p.loss_hi95) - ll, zs))
        return dataclasses.replace(p, loss_lo95=lo, loss_hi95=hi)


@dataclasses.dataclass
class SelectedFit(CalibratedFit):
    """What recommend/next use under a law other than chinchilla: the allocation (parameters,
    bootstrap samples: compute-optimal N and D, the most informative run) of the selection's
    Chinchilla-form law, or of the plain fit when none was selected (mpl, kaplan, curve), and
    every predicted loss and interval from the selection itself (the law or weighted laws the
    text names), placed in the plain fit's trust region."""

    selection: Any = None
    base_fit: Any = None
    predicted_by: str = ""

    def predict(self, params: float, tokens: float) -> Prediction:
        return predict(self.selection, self.base_fit, [(float(params), float(tokens))])[0]


def _key(df: pd.DataFrame, opts: study.FitOptions, curves: pd.DataFrame | None) -> str:
    key = study.fit_key(df, None, opts)
    if curves is None:
        return key
    digest = [len(curves), float(curves["loss"].sum()), float(curves["lr"].sum())]
    return hashlib.sha256(json.dumps([key, digest]).encode()).hexdigest()


def law_fit(pts: pd.DataFrame, law: str, base: Fit, *, curves: pd.DataFrame | None = None,
            at: Sequence[tuple[float, float]] = (), bootstrap: int | None = None,
            seed: int = 0, drop: int = 0, store: Store | None = None,
            sweep: str | None = None, label: str = "points") -> LawFit:
    """Select/fit ``law`` on the valid points ``pts`` (a sweep_points/csv_points frame; the
    ``drop`` highest-loss left out), cached in ``store``; ``base`` = the plain Chinchilla fit
    of the same points, whose trust region places the predictions at ``at``."""
    from sweep.fit import law_state
    from sweep.fit.rollout import fit_law, to_fit

    check_law(law)
    if law == "chinchilla":
        raise InputError("--law chinchilla is the plain fit (sweep.study.fit_points)")
    df, _ = study._canonical(pts, study.FitOptions(drop=drop))
    if len(df) < 5:
        raise FitError(f"{label} has {len(df)} valid points; a fit needs at least 5")
    small = len(df) <= SMALL
    if bootstrap is None:
        bootstrap = SMALL_BOOTSTRAP if small else LAW_BOOTSTRAP
    opts = study.FitOptions(bootstrap=bootstrap, seed=seed, drop=drop, law=law)
    key = _key(df, opts, curves)
    payload = store.get_fit(key) if store is not None else None
    sel = None
    if payload is not None:
        try:
            sel = law_state.from_state(json.loads(payload))
            log.info("%s: cached law selection %s", label, key[:12])
        except (FitError, KeyError, TypeError, ValueError) as exc:  # refit over it
            log.warning("%s: cached law selection %s unreadable (%s)", label, key[:12], exc)
    cached = sel is not None
    if sel is None:
        sel, _ = fit_law(df[["params", "tokens", "loss", "run_id"]], law, curves=curves,
                         bootstrap=bootstrap, seed=seed,
                         rollout_bootstrap=SMALL_ROLLOUT_BOOTSTRAP if small else 100)
        if store is not None:
            try:
                store.put_fit(key, sweep, json.dumps(law_state.to_state(sel)))
            except sqlite3.Error as exc:
                log.warning("%s: law selection not cached (%s)", label, exc)
    preds = predict(sel, base, at)
    fit = to_fit(sel)
    if fit is not None:  # the data's trust region, the law's own validation error
        tr = base.trust and dataclasses.replace(base.trust, validation_error=(
            fit.validation or {}).get("mean_abs_rel_error"))
        sig = sel.sigma.get(fit.method, 0.0)
        fit = CalibratedFit(**{f.name: getattr(fit, f.name) for f in dataclasses.fields(Fit)},
                            sigma_log=sig if sig == sig else 0.0)
        fit = dataclasses.replace(fit, trust=tr, conventions=dict(base.conventions),
                                  warnings=list(dict.fromkeys([*fit.warnings, *base.warnings])))
    return LawFit(law, sel, base, preds, fit, cached)


def predict(sel: Selection, base: Fit, at: Sequence[tuple[float, float]]) -> list[Prediction]:
    """The selection's predictions (calibrated 95 % intervals) at (N, D) pairs, each placed in
    the plain fit's trust region (trust, extrapolation, warnings)."""
    import numpy as np

    from sweep import shapes

    if not at:
        return []
    n, d = (np.array(v, float) for v in zip(*at, strict=True))
    if not sel.steps and sel.choice == "chinchilla":
        # unvalidated fallback to the plain law: the plain fit is that law on these points, with
        # its full bootstrap; a second, smaller bootstrap would only give another interval
        plain = [base.predict(float(a), float(b)) for a, b in zip(n, d, strict=True)]
        loss, lo, hi = (np.array(v) for v in zip(*[(q.loss, q.loss_lo95, q.loss_hi95)
                                                   for q in plain], strict=True))
    else:
        loss, lo, hi = sel.predict(n, d)
    own = set(base.warnings) | set(base.trust.warnings if base.trust else ())
    chin_form = all(k in CHINCHILLA_FORMS for k, w in sel.weights.items() if w > 0)
    out = []
    for a, b, x, y, z in zip(n, d, loss, lo, hi, strict=True):
        trust, k, warns = (("inside", 1.0, tuple(base.warnings)) if base.trust is None
                           else base.trust.assess(float(a), float(b), float(x)))
        # the plain fit's identifiability warnings are about its law: kept for Chinchilla forms
        warns = tuple(w for w in warns if chin_form or w not in own or " span only " in w)
        out.append(Prediction(float(a), float(b), shapes.flops_6nd(a, b), float(x),
                              float(min(y, x)), float(max(z, x)), trust, k,
                              tuple(sel.warnings) + warns))
    return out


def sweep_law_fit(name: str, root: Path = Path("runs"), overrides: Sequence[str] = (), *,
                  law: str = "auto", at: Sequence[tuple[float, float]] = (),
                  bootstrap: int | None = None, seed: int | None = None,
                  drop: int = 0) -> LawFit:
    """`sweep fit NAME --law LAW`: the sweep's valid points (and, for curve/mpl/auto, the loss
    curves of its runs, sweep.fit.curve_law.store_curves), cached in its store."""
    from sweep.fit.curve_law import store_curves

    check_law(law)
    check_name(name)
    root = Path(root)
    with Store(root, create=False) as store:
        cfg = study.sweep_config(store, name, overrides)
    base = study.sweep_fit(name, root, overrides, bootstrap=bootstrap, seed=seed, drop=drop,
                           cfg=cfg)
    pts = study.sweep_points(name, root, cfg.fit.params)
    pts = pts[pts["valid"]].reset_index(drop=True)
    curves = None
    if law in ("auto", "curve", "mpl"):
        imported = int((pts["source"] == "import").sum())
        if imported and law != "auto":
            raise FitError(f"the {law} law needs a loss curve per point; sweep '{name}' has "
                           f"{imported} imported points")
        if not imported:
            curves = store_curves(name, root, cfg.fit.params)[0]
    with Store(root, create=False) as store:
        return law_fit(pts, law, base, curves=curves, at=at, bootstrap=bootstrap,
                       seed=cfg.fit.seed if seed is None else seed, drop=drop, store=store,
                       sweep=name, label=f"sweep '{name}'")


def csv_law_fit(path: str, mapping: dict[str, str] | None = None, *, law: str = "auto",
                at: Sequence[tuple[float, float]] = (), bootstrap: int | None = None,
                seed: int = 0, drop: int = 0) -> LawFit:
    """`sweep fit --data FILE --law LAW` (no curves in a table: not the curve law)."""
    check_law(law)
    if law in ("curve", "mpl"):
        raise InputError(f"--law {law} needs loss curves: fit a sweep, not --data")
    base = study.fit_csv(path, mapping, bootstrap=1000 if bootstrap is None else bootstrap,
                         seed=seed, drop=drop)
    return law_fit(study.csv_points(path, mapping), law, base,
                   at=at, bootstrap=bootstrap,
                   seed=seed, drop=drop, label=str(path))


def sweep_selected_fit(name: str, root: Path, overrides: Sequence[str] = (), *, law: str,
                       bootstrap: int | None = None) -> Fit | None:
    """The Fit recommend/next use under ``law``: None for chinchilla (the study's own fit), else
    a SelectedFit: allocation from the selection's Chinchilla-form law (or the plain fit),
    predicted losses from the selection."""
    if check_law(law) == "chinchilla":
        return None
    lf = sweep_law_fit(name, root, overrides, law=law, bootstrap=bootstrap)
    alloc = lf.fit if lf.fit is not None else lf.base
    fields = {f.name: getattr(alloc, f.name) for f in dataclasses.fields(Fit)}
    return SelectedFit(**fields, sigma_log=getattr(alloc, "sigma_log", 0.0), selection=lf.sel,
                       base_fit=lf.base, predicted_by=lf.predicts_with())
