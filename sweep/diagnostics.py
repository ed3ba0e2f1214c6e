"""Where a number predicted from a fit stands, and how to say so (issue 12, "diagnostics travel").

``study_fit`` is how every L4 command gets its fit: once, from ``sweep.study.sweep_fit``, with
the fit's trust region completed from the sweep itself (ln(vocab) as the worst sane loss and one
optimizer batch as the fewest sane tokens, both known only for natively planned runs). ``note``
renders a prediction's trust, extrapolation and warnings next to its number:
``— extrapolated ×40; E is not identified by these points``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep import shapes, study
from sweep.config import SweepConfig
from sweep.records import Fit, TrustRegion
from sweep.store import Store


@dataclass
class Study:
    """One command's view of a sweep: its config, points, fit (with its trust region) and
    whether it has a shape rule (natively planned runs; imported points have none)."""

    name: str
    root: Path
    cfg: SweepConfig
    fit: Fit
    points: Any  # DataFrame params, tokens, loss, run_id (sweep.study.sweep_points)
    planned: list  # records.RunRecord of the natively planned runs
    saved_overrides: list[str]

    @property
    def has_shape(self) -> bool:
        return bool(self.planned)


def load_study(name: str, root: Path, overrides: Sequence[str] = (), *,
               bootstrap: int | None = None, fit: Fit | None = None) -> Study:
    """The sweep's config, points and its one fit (``sweep.study.sweep_fit``), trust completed."""
    root = Path(root)
    fit = fit or study.sweep_fit(name, root, overrides, bootstrap=bootstrap)
    with Store(root, create=False) as store:
        cfg = study.sweep_config(store, name, overrides)
        saved = store.sweep_overrides(name)
        planned = store.runs(name)
    pts = study.sweep_points(name, root, cfg.fit.params)
    if "valid" in pts:  # the points the fit used
        pts = pts[pts["valid"].astype(bool)].reset_index(drop=True)
    return Study(name, root, cfg, with_trust(fit, pts, cfg, planned), pts, planned, saved)


def with_trust(fit: Fit, pts, cfg: SweepConfig | None, planned: Sequence = ()) -> Fit:
    """``fit`` with a trust region: the fit's own if it has one, else one built from ``pts``;
    ln(vocab) and one batch filled in from the planned runs where they are missing."""
    tr = fit.trust
    if tr is None:
        n, d, y = (pts[c].astype(float) for c in ("params", "tokens", "loss"))
        c = [shapes.flops_6nd(a, b) for a, b in zip(n, d, strict=True)]
        ci = fit.ci95.get("E") or [fit.params["E"]] * 2
        e_ok = not any(w.startswith("E is not identified") for w in fit.warnings)
        tr = TrustRegion((float(n.min()), float(n.max())), (float(d.min()), float(d.max())),
                         (float(min(c)), float(max(c))), (float(y.min()), float(y.max())),
                         identified={"E": e_ok}, validation_error=(fit.validation or {}).get(
                             "mean_abs_rel_error"),
                         floor=float(fit.params["E"] if e_ok else max(fit.params["E"], ci[1])),
                         warnings=tuple(fit.warnings))
    runs = [r.run for r in planned]
    if runs and tr.max_loss is None:
        tr = dataclasses.replace(tr, max_loss=math.log(min(r.vocab for r in runs)))
    if runs and tr.min_tokens is None:
        tr = dataclasses.replace(tr, min_tokens=float(min(r.batch_tokens for r in runs)))
    missing = tuple(w for w in fit.warnings if w not in tr.warnings)
    if missing:
        tr = dataclasses.replace(tr, warnings=tr.warnings + missing)
    return dataclasses.replace(fit, trust=tr)


def e_identified(fit: Fit) -> bool:
    if fit.trust is not None and "E" in fit.trust.identified:
        return bool(fit.trust.identified["E"])
    return not any(w.startswith("E is not identified") for w in fit.warnings)


def short(w: str) -> str:
    """A warning's head (before its parenthesis or colon), for one-line text output."""
    for sep in (" (", ": "):
        if sep in w and not w.startswith("extrapolated"):
            w = w.split(sep, 1)[0]
    return w


# a prediction's own warnings (the rest are the fit's)
_OWN = ("predicted loss", "the predicted loss", "N = ", "D = ", "N_opt")


def note(trust: str, k: float, warnings: Sequence[str]) -> str:
    """One line to print after a number: `` — extrapolated ×40 (C ×40, N ×6); E not identified;
    +3 warnings`` (the prediction's own warnings in short, E's identifiability, how many other
    warnings follow in full); '' inside with no warnings."""
    parts = []
    ext = next((w for w in warnings if w.startswith("extrapolated past")), None)
    if trust == "extrapolated":
        parts.append(f"extrapolated ×{k:.3g}" + (f" ({ext.split('(', 1)[1]}" if ext else ""))
    elif trust == "outside":
        parts.append("OUTSIDE what the fit can say")
    rest = 0
    for w in warnings:
        if w.startswith("extrapolated past"):
            continue
        if w.startswith(_OWN):
            parts.append(short(w))
        elif w.startswith("E is not identified"):
            parts.append("E not identified")
        else:
            rest += 1
    if rest:
        parts.append(f"+{rest} warning{'s' if rest > 1 else ''}")
    return (" — " + "; ".join(dict.fromkeys(parts))) if parts else ""


def interval_ok(lo: float, hi: float, factor: float = 2.0) -> bool:
    """True when a positive interval [lo, hi] spans at most ``factor`` (hi / lo)."""
    return bool(lo > 0 and math.isfinite(hi) and hi / lo <= factor)
