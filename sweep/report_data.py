"""What `sweep report` shows, gathered once: the sweep's points, its one fit (with its trust
region), the recommendation at the target compute, the allocation table, costs, prediction
checks. sweep/report.py only draws and writes it.

Units: N = parameters in the fit's convention, D = tokens, C = 6ND FLOPs, loss in nats/token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sweep import cost as cost_mod
from sweep import predictions, shapes
from sweep.diagnostics import load_study, note
from sweep.records import Fit, Recommendation


@dataclass
class ReportData:
    name: str
    fit: Fit
    finals: Any  # DataFrame run_id, params_fit (N in the fit's convention), tokens, final_loss,
    #              flops_6nd (6ND of params_fit), native (bool: a run of this sweep, not imported)
    curves: Any  # DataFrame: store.curves_df (empty for imported points)
    rec: Recommendation
    target: float
    param_label: str
    isoflop: Any = None  # sweep.fit.isoflop.IsoFlopFit or None
    isoflop_note: str = ""
    allocation: list = field(default_factory=list)  # allocation.AllocationRow
    baseline: Any = None  # allocation.Baseline
    costs: list = field(default_factory=list)  # (assumptions, [(label, Cost)])
    checks: list = field(default_factory=list)  # predictions.PredictionCheck
    has_shape: bool = True  # False: imported points only (N and D, no shape rule)
    limits: dict = field(default_factory=dict)  # figure file → [(xlim, ylim) per axes] drawn

    @property
    def max_loss(self) -> float | None:
        """ln(vocab) where known: a band above it is not drawn."""
        return self.fit.trust.max_loss if self.fit.trust is not None else None

    def headline(self) -> list[str]:
        """The report's first lines: the target's predicted loss with its trust, then the fit's
        warnings."""
        r = self.rec
        own = [w for w in r.warnings if w not in self.fit.warnings]
        out = [f"At C = {self.target:.3g} FLOPs (6ND): predicted loss {r.predicted_loss:.4g} "
               f"[{r.predicted_loss_lo95:.4g}, {r.predicted_loss_hi95:.4g}] nats/token, "
               f"trust: {r.trust}" + note(r.trust, r.extrapolation, own)]
        best = [x for x in self.allocation if x.best]
        if self.allocation and not best:
            out.append("allocation: no option is marked best (every interval spans more than "
                       "2× or lies outside the fit)")
        for x in best:
            out.append(f"allocation ×{x.k:g}: best {x.option}, loss {x.loss:.4g} "
                       f"[{x.loss_lo95:.4g}, {x.loss_hi95:.4g}], trust: {x.trust}"
                       + (f" ×{x.extrapolation:.3g}" if x.trust != "inside" else ""))
        return out

    @classmethod
    def collect(cls, name: str, root: Path, *, target: float | None = None,
                hardware: Sequence[Any] = (), ks: Sequence[float] = (2, 4, 10, 100),
                bootstrap: int | None = None, fit: Fit | None = None) -> ReportData:
        import pandas as pd

        from sweep.allocation import Baseline, allocation_table
        from sweep.recommend import recommend
        from sweep.store import Store

        st = load_study(name, root, bootstrap=bootstrap, fit=fit)
        cfg, fit = st.cfg, st.fit
        with Store(root, create=False) as store:
            curves = store.curves_df([name])
        pts = st.points
        col = "params_nonembed" if cfg.fit.params == "nonembed" else "params"
        native = (pts["source"] != "import") if "source" in pts else (
            ~pts["run_id"].astype(str).str.startswith("import:"))
        finals = pd.DataFrame({
            "run_id": pts["run_id"].astype(str), "params_fit": pts["params"].astype(float),
            "tokens": pts["tokens"].astype(float), "final_loss": pts["loss"].astype(float),
            "flops_6nd": [shapes.flops_6nd(n, d) for n, d in zip(pts["params"], pts["tokens"],
                                                                  strict=True)],
            "native": native.to_numpy()})
        label = col if st.has_shape else "N as imported"
        target = target or 10.0 * float(finals["flops_6nd"].max())
        rec = recommend(fit, target, cfg if st.has_shape else None)
        iso, iso_note = _isoflop(finals, cfg, st.has_shape)
        big = finals.loc[finals["flops_6nd"].idxmax()]
        batch = (min(r.run.batch_tokens for r in st.planned) if st.has_shape else None)
        base = Baseline(float(big["params_fit"]), float(big["tokens"]), batch,
                        f"run {big['run_id']}")
        costs = [(a, cost_mod.study_costs(name, root, [(f"recommended run (C={target:.3g})",
                                                        rec.flops)], a)) for a in hardware]
        return cls(name, fit, finals, curves, rec, target, label, iso, iso_note,
                   allocation_table(fit, base, ks), base, costs,
                   predictions.prediction_checks(name, root), st.has_shape)


def _isoflop(finals, cfg, has_shape: bool):
    """(IsoFlopFit or None, note): Approach 2 on sweeps planned with FLOP budgets."""
    from sweep.errors import FitError

    if not has_shape:
        return None, "imported points: no isoFLOP budgets were planned, so no isoFLOP profiles."
    if not cfg.budget.flops:
        return None, ("this sweep has token budgets (the same tokens for every size), not "
                      "isoFLOP budgets: no isoFLOP profiles. Plan with budget=flops for them.")
    import pandas as pd

    from sweep.fit.isoflop import fit_isoflop

    f = finals[finals["native"]]
    pts = pd.DataFrame({"params": f["params_fit"], "tokens": f["tokens"],
                        "loss": f["final_loss"], "budget": budgets(f["params_fit"], f["tokens"])})
    try:
        return fit_isoflop(pts, bootstrap=200), ""
    except FitError as exc:
        return None, f"no isoFLOP fit: {exc}"


def budgets(params, tokens):
    """6ND snapped to 0.05 dex: the isoFLOP budget of each run."""
    c = shapes.flops_6nd(np.asarray(params, float), np.asarray(tokens, float))
    return 10 ** (np.round(np.log10(c) * 20) / 20)
