"""Checkpoint files of the training loop: ``step_{step:06d}.pt`` in a run's checkpoint
directory, written atomically (``sweep.fsutil.atomic_write_bytes``), the newest ``CKPT_KEEP``
kept; an unreadable newest one falls back to the previous."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import torch

from sweep.errors import TrainError
from sweep.fsutil import atomic_write_bytes
from sweep.records import PlannedRun

logger = logging.getLogger("sweep.train.loop")

CKPT_KEEP = 2  # checkpoints kept per run (the newest); an unreadable newest falls back to the next
_CKPT_RE = re.compile(r"step_(\d+)\.pt$")
_CKPT_VERSION = 1


def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``ckpt_dir`` as (step, path), newest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT_RE.match(p.name))]
    return sorted(found, reverse=True)


def save_checkpoint(ckpt_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``state`` as ``step_{step:06d}.pt`` atomically (``sweep.fsutil``), then drop all
    but the newest ``CKPT_KEEP`` checkpoints. A process killed mid-write leaves only a
    ``.step_*.tmp-*`` file. Tensors are saved on the device they live on; ``load_checkpoint``
    maps them to the CPU, and the loop moves them to its own device (a run resumes anywhere)."""
    path = ckpt_dir / f"step_{step:06d}.pt"
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getbuffer())
    for _, old in checkpoints(ckpt_dir)[CKPT_KEEP:]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(ckpt_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint in ``ckpt_dir`` (path, state), or None. Leftover
    temporary files of an interrupted write are removed."""
    if ckpt_dir.is_dir():  # fsutil's temporaries, and the older loop's "step_*.tmp"
        for p in [*ckpt_dir.glob(".step_*.tmp-*"), *ckpt_dir.glob("step_*.tmp")]:
            p.unlink(missing_ok=True)
    for step, path in checkpoints(ckpt_dir):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged file: fall back to the previous one
            logger.warning("checkpoint %s is unreadable (%s); trying an older one", path, exc)
            continue
        if state.get("version") != _CKPT_VERSION or state.get("step") != step:
            logger.warning("checkpoint %s is not a version-%d checkpoint of step %d; skipped",
                           path, _CKPT_VERSION, step)
            continue
        return path, state
    return None


def _same_run(saved: dict[str, Any], run: PlannedRun, path: Path) -> None:
    """A checkpoint resumes only the run that wrote it."""
    now = run.to_dict()
    diff = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    if diff:
        raise TrainError(f"checkpoint {path} was written by a different run configuration "
                         f"(differs in: {', '.join(diff)}); delete {path.parent} to start over")
