"""Predictions made for appended runs (`sweep next`), kept in ``<root>/NAME/predictions.json``,
and the check of each against its measured loss once trained (shown by `sweep fit`).

One JSON object keyed by run id: predicted loss (nats/token) with its 95 % bootstrap interval,
the compute (6ND FLOPs), why it was chosen, the fit it came from (points, time), and where the
prediction stood in the fit's trust region (trust, extrapolation, warnings). Written atomically
(sweep.fsutil).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sweep import fsutil

FILE = "predictions.json"


@dataclass(frozen=True)
class PredictionRecord:
    run_id: str
    predicted_loss: float
    predicted_loss_lo95: float
    predicted_loss_hi95: float
    flops: float
    reason: str  # "compute-optimal" or "most informative"
    fit_points: int
    made_at: float
    trust: str = "inside"  # inside | extrapolated | outside (records.TrustRegion.assess)
    extrapolation: float = 1.0  # × past the largest N, D or C fitted
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PredictionCheck:
    record: PredictionRecord
    measured_loss: float | None  # None until the run completes

    @property
    def inside(self) -> bool | None:
        if self.measured_loss is None:
            return None
        r = self.record
        return r.predicted_loss_lo95 <= self.measured_loss <= r.predicted_loss_hi95

    def text(self) -> str:
        r = self.record
        head = (f"prediction check: run {r.run_id} predicted {r.predicted_loss:.4f} "
                f"[{r.predicted_loss_lo95:.4f}, {r.predicted_loss_hi95:.4f}] nats/token")
        if r.trust != "inside":
            head += f" ({r.trust} ×{r.extrapolation:.3g})"
        if self.measured_loss is None:
            return head + ", not measured yet"
        err = (self.measured_loss - r.predicted_loss) / r.predicted_loss
        return (head + f", measured {self.measured_loss:.4f} ({err:+.1%}, "
                f"{'inside' if self.inside else 'outside'} the interval)")


def path(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / name / FILE


def load(root: str | os.PathLike, name: str) -> dict[str, PredictionRecord]:
    p = path(root, name)
    if not p.is_file():
        return {}
    return {k: PredictionRecord(**v) for k, v in json.loads(p.read_text()).items()}


def add(root: str | os.PathLike, name: str, records: list[PredictionRecord]) -> None:
    """Merge ``records`` into the file (a run predicted again keeps its newest prediction)."""
    cur = load(root, name)
    cur.update({r.run_id: r for r in records})
    fsutil.atomic_write_json(path(root, name), {k: asdict(v) for k, v in cur.items()})


def record(run_id: str, pred, flops: float, reason: str, fit_points: int) -> PredictionRecord:
    """From a records.Prediction (or anything with loss, loss_lo95, loss_hi95)."""
    return PredictionRecord(run_id, float(pred.loss), float(pred.loss_lo95),
                            float(pred.loss_hi95), float(flops), reason, int(fit_points),
                            time.time(), getattr(pred, "trust", "inside"),
                            float(getattr(pred, "extrapolation", 1.0)),
                            list(getattr(pred, "warnings", ())))


def checks(root: str | os.PathLike, name: str, finals: dict[str, float]) -> list[PredictionCheck]:
    """Each recorded prediction beside its measured final loss (``finals``: run id → loss)."""
    return [PredictionCheck(r, finals.get(k)) for k, r in sorted(
        load(root, name).items(), key=lambda kv: kv[1].made_at)]


def prediction_checks(name: str, root: str | os.PathLike) -> list[PredictionCheck]:
    """Recorded predictions of appended runs beside their measured final loss (if any)."""
    from sweep.store import Store

    with Store(root, create=False) as store:
        finals = store.finals_df([name])
    return checks(root, name, dict(zip(finals["run_id"], finals["final_loss"], strict=True)))
