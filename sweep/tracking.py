"""Weights & Biases: every built-in-trainer run is a real W&B run (offline unless told), and
offline run directories can be read back without a server.

A run is logged with project ``sweep``, group = the sweep's name, name and id = the run id; its
config carries N (with and without embeddings), D, FLOPs with their conventions, the attempt
number and the whole PlannedRun under ``spec``, so ``sweep import NAME --wandb DIR`` can rebuild
it. Mode comes from ``WANDB_MODE`` (default ``offline``; ``online`` needs ``wandb login``, never
required here).

Attempts (a run resumed after a kill or a Slurm requeue) are one logical W&B run: every attempt
uses the same id with ``resume="allow"``. Online (not tested here: no network) W&B resumes the
run by id and, per its docs, ignores steps below the last one it holds. Offline, wandb 0.31
ignores ``resume`` and writes one ``offline-run-*-ID`` directory per attempt (checked with real
runs); ``read_offline_runs`` merges those into one history: attempts in order, and each one
replaces the earlier attempts' points from its own first step on (it resumed there), as the store
does. An attempt stopped by a signal the worker handles (TERM, INT, USR1) has its file flushed;
a SIGKILLed one keeps only what wandb-core had written (for a 10-second tiny run: nothing past
the file header, measured), so the store, not W&B, is the complete record.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.errors import DataError
from sweep.records import CurvePoint, PlannedRun, TrainResult

log = logging.getLogger(__name__)


class Tracker:
    """Mirror a run's curve into a W&B run. Failures of W&B never fail the training run."""

    def __init__(self, run: PlannedRun, run_dir: Path, attempt: int = 1):
        self.wb = None
        mode = os.environ.get("WANDB_MODE", "offline")
        if mode == "disabled":
            return
        try:
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            self.wb = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "sweep"), group=run.sweep,
                name=run.run_id, id=run.run_id, resume="allow", dir=str(run_dir), mode=mode,
                job_type="train", reinit=True, config={"attempt": attempt,
                    "params": run.params, "params_nonembed": run.params_nonembed,
                    "tokens": run.tokens, "flops_6nd": run.flops_6nd,
                    "flops_attn": run.flops_attn,
                    "conventions": {"params": "all trainable (tied embedding once)",
                                    "params_nonembed": "without token/position embeddings",
                                    "flops_6nd": "6 * params_nonembed * tokens",
                                    "flops_attn": "(6 N_nonembed + 12 layers d seq) * tokens",
                                    "loss": "nats/token"},
                    "spec": run.to_dict()})
        except Exception as exc:  # noqa: BLE001 - tracking is best effort
            log.warning("W&B disabled for %s: %s", run.run_id, exc)
            self.wb = None

    def log(self, p: CurvePoint) -> None:
        if self.wb is None:
            return
        row: dict[str, Any] = {"tokens": p.tokens, "flops": p.flops, "lr": p.lr}
        if p.train_loss is not None:
            row["train_loss"] = p.train_loss
        if p.eval_loss is not None:
            row["eval_loss"] = p.eval_loss
        if p.eval_bpb is not None:
            row["eval_bpb"] = p.eval_bpb
        if p.end_of_schedule:
            row["end_of_schedule"] = 1
        self.wb.log(row, step=p.step)

    def finish(self, result: TrainResult | None, error: str | None = None) -> None:
        if self.wb is None:
            return
        if result is not None:
            self.wb.summary.update({"final_loss": result.final_loss,
                                    "final_train_loss": result.final_train_loss,
                                    "wall_seconds": result.wall_seconds,
                                    "tokens_per_second": result.tokens_per_second})
            for k in ("epochs", "heldout_top1_acc"):  # optional fields of TrainResult
                if getattr(result, k, None) is not None:
                    self.wb.summary[k] = getattr(result, k)
        if error:
            self.wb.summary["error"] = error
        self.wb.finish(exit_code=0 if result is not None else 1)
        self.wb = None


# ---- reading offline runs ---------------------------------------------------------------------

@dataclass
class OfflineRun:
    """What an offline ``run-*.wandb`` file holds: config, history rows and the last summary."""

    path: Path
    run_id: str = ""
    group: str = ""
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    start_time: float = 0.0  # seconds since the epoch, from the run record
    attempts: int = 1  # offline files merged into this run


_BLOCK = 32768  # the LevelDB log format W&B uses: 32 KiB blocks, 7-byte record headers
_FILE_HEADER = 7  # ":W&B" + magic + version


def _records(data: bytes):
    pos, buf = _FILE_HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        chunk = data[pos:pos + n]
        pos += n
        if kind == 1:
            yield chunk
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            yield buf + chunk
            buf = b""


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(path: Path) -> OfflineRun:
    """Parse one ``run-*.wandb`` file (or the run directory holding it)."""
    from wandb.proto import wandb_internal_pb2 as pb2

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("run-*.wandb"))
        if not files:
            raise DataError(f"no run-*.wandb file in {path}")
        path = files[0]
    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        raise DataError(f"{path} is not a W&B run file")
    out = OfflineRun(path)
    for raw in _records(data):
        rec = pb2.Record()
        try:
            rec.ParseFromString(raw)
        except Exception:  # noqa: BLE001 - a torn last record of a killed run
            continue
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.run_id, out.group = rec.run.run_id, rec.run.run_group
            out.name = rec.run.display_name
            out.start_time = rec.run.start_time.ToMicroseconds() / 1e6
            out.config.update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            out.config.update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            out.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out.summary.update({_key(u): json.loads(u.value_json) for u in rec.summary.update
                                if _key(u)})
    return out


def find_offline_runs(directory: Path) -> list[Path]:
    """Every ``run-*.wandb`` below ``directory`` (a wandb/ dir, a sweep dir, a run dir)."""
    directory = Path(directory)
    if not directory.exists():
        raise DataError(f"W&B directory not found: {directory}")
    return sorted(directory.rglob("run-*.wandb"))


def merge_attempts(parts: list[OfflineRun]) -> OfflineRun:
    """One logical run from the offline files of its attempts (same W&B id): ordered by the
    ``attempt`` in their config (then start time); a later attempt's history replaces the earlier
    ones' from its first logged step on; config and summary are updated in that order."""
    parts = sorted(parts, key=lambda r: (r.config.get("attempt", 0), r.start_time, str(r.path)))
    out = OfflineRun(parts[-1].path, parts[-1].run_id, parts[-1].group, parts[-1].name,
                     start_time=parts[0].start_time, attempts=len(parts))
    for part in parts:
        steps = [h["_step"] for h in part.history if "_step" in h]
        if steps:
            first = min(steps)
            out.history = [h for h in out.history if h.get("_step", -1) < first]
        out.history += part.history
        out.config.update(part.config)
        out.summary.update(part.summary)
        if "error" not in part.summary:  # an earlier attempt's error, cured by this one
            out.summary.pop("error", None)
    return out


def read_offline_runs(directory: Path) -> list[OfflineRun]:
    """Every offline run below ``directory``, the attempts of one run merged into one. Attempts
    belong together by the sweep run id in their ``spec`` (so the per-attempt W&B ids
    ``RUN-a1``, ``RUN-a2`` of older sweep versions merge too), else by W&B id."""
    by_id: dict[str, list[OfflineRun]] = {}
    for f in find_offline_runs(directory):
        r = read_offline_run(f)
        spec = r.config.get("spec")
        key = spec.get("run_id") if isinstance(spec, dict) else None
        by_id.setdefault(key or r.run_id or str(f), []).append(r)
    return [merge_attempts(parts) for parts in by_id.values()]
