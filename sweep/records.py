"""Typed records that flow between stages: plan → launch → train → store → fit → recommend.

Units are in the names: ``params`` counts all trainable parameters (tied embedding counted once),
``params_nonembed`` excludes the token and position embeddings; ``tokens`` are training tokens;
``flops_6nd`` = 6 · params_nonembed · tokens (Kaplan et al. 2020 convention), ``flops_attn``
adds the attention term, 12 · n_layer · d_model · seq_len per token; losses are nats/token.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunState(StrEnum):
    """A run's state; the words are the shared JSON interface (shared/README.md)."""

    PLANNED = "planned"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _positive(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(
                f"{type(obj).__name__}.{n} must be a positive finite number, got {v!r}")


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and logging settings shared by every run of a sweep (conf/train/*.yaml)."""

    warmup_frac: float = 0.05  # linear warmup, fraction of the run's steps
    min_lr_frac: float = 0.1  # cosine decays to lr * min_lr_frac exactly at the last step
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    dropout: float = 0.0
    log_every: int = 10  # steps between train-loss points
    eval_points: int = 4  # held-out evaluations, log-spaced, the last one at the end
    eval_tokens: int = 65536  # size of the fixed held-out evaluation set (tokens)
    checkpoint_every: int = 0  # steps between checkpoints (0: none)
    decay_frac: float = 0.2  # wsd: each cooldown is the last decay_frac of its run's steps
    command: str | None = None  # external trainer command line (sweep.train.external)
    nproc: int = 1  # processes per run (torchrun + DDP); the global batch is split among them
    precision: str = "fp32"  # fp32 | bf16 (torch.autocast where the device supports it)
    device: str = "auto"  # auto | cpu | cuda | mps (auto: cuda when available, else cpu)
    compile: bool = False  # torch.compile the model (worth it on GPUs, not on CPUs)


@dataclass(frozen=True)
class DataSettings:
    """Where the text comes from (conf/data/*.yaml)."""

    name: str = "stdlib"  # built-in corpus: the running interpreter's standard-library sources
    path: str | None = None  # a text file or directory instead of the built-in corpus
    heldout_frac: float = 0.05  # fraction of files held out (deterministic, by file-name hash)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: shape, budget and hyperparameters, everything a worker needs."""

    run_id: str
    sweep: str
    width: int
    depth: int
    heads: int
    seq_len: int
    vocab: int
    params: int
    params_nonembed: int
    tokens: int
    flops_6nd: float
    flops_attn: float
    steps: int
    batch_size: int  # sequences per step
    batch_tokens: int  # tokens per step = batch_size * seq_len
    lr: float
    schedule: str = "cosine"
    seed: int = 0
    train: TrainSettings = field(default_factory=TrainSettings)
    data: DataSettings = field(default_factory=DataSettings)
    warmup_steps: int | None = None  # None: round(train.warmup_frac * steps); wsd sets it
    branch_of: str | None = None  # wsd: the main run whose worker trains this run's cooldown

    def __post_init__(self) -> None:
        _positive(self, "width", "depth", "heads", "seq_len", "vocab", "params", "tokens",
                  "steps", "batch_size", "batch_tokens", "lr")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.batch_tokens != self.batch_size * self.seq_len:
            raise ValueError("batch_tokens must equal batch_size * seq_len")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlannedRun:
        d = dict(d)
        d["train"] = TrainSettings(**d.get("train", {}))
        d["data"] = DataSettings(**d.get("data", {}))
        return cls(**d)


@dataclass(frozen=True)
class CurvePoint:
    """One logged point of a run's curve. ``eval_loss`` is None where no evaluation ran."""

    run_id: str
    step: int
    tokens: int
    flops: float  # 6ND convention, N = params_nonembed
    train_loss: float | None
    eval_loss: float | None
    lr: float
    end_of_schedule: bool = False  # True only for the point at the run's last step
    eval_bpb: float | None = None  # held-out bits/byte where an evaluation ran


@dataclass(frozen=True)
class HParams:
    """A run's peak LR and batch, and the rules that chose them (sweep/hparams.py)."""

    lr: float
    batch_size: int  # sequences of seq_len tokens per optimizer step
    lr_rule: str
    batch_rule: str

    def __post_init__(self) -> None:
        _positive(self, "lr", "batch_size")


@dataclass(frozen=True)
class TrainResult:
    """What a finished training run returns."""

    run_id: str
    final_loss: float  # held-out loss at the end of the schedule, nats/token
    final_train_loss: float
    tokens: int
    steps: int
    wall_seconds: float
    tokens_per_second: float
    epochs: float | None = None  # passes over the training split (tokens / split size)
    heldout_top1_acc: float | None = None  # final held-out top-1 next-token accuracy (0-1)


@dataclass(frozen=True)
class RunRecord:
    """A run as the store knows it: its plan plus its state."""

    run: PlannedRun
    state: RunState
    job_id: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat: float | None = None
    tokens_done: int = 0
    final_loss: float | None = None
    error: str | None = None


# the fit stage's records live in sweep.fit_records; importable from here as before
from sweep.fit_records import (  # noqa: E402,F401
    TRUST_LEVELS, DownstreamFit, Fit, LearningCurveFit, Prediction, Recommendation, TrustRegion)
