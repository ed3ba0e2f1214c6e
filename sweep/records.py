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
            raise ValueError(f"{type(obj).__name__}.{n} must be a positive finite number, got {v!r}")


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


@dataclass(frozen=True)
class Prediction:
    params: float
    tokens: float
    flops: float
    loss: float
    loss_lo95: float
    loss_hi95: float


@dataclass
class Fit:
    """A fitted L(N, D) = E + A/N^alpha + B/D^beta with bootstrap intervals.

    ``samples`` holds the bootstrap parameter vectors (columns E, A, B, alpha, beta) and is not
    part of the JSON; ``predict`` uses it for intervals.
    """

    method: str
    n_points: int
    params: dict[str, float]
    ci95: dict[str, list[float]]
    objective: float
    allocation: dict[str, float]
    validation: dict[str, Any] | None = None
    predictions: list[Prediction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)
    samples: Any = None  # numpy array (n_boot, 5), not serialised

    def loss(self, params: float, tokens: float) -> float:
        p = self.params
        return p["E"] + p["A"] / params ** p["alpha"] + p["B"] / tokens ** p["beta"]

    def predict(self, params: float, tokens: float) -> Prediction:
        """Point prediction and 95 % bootstrap interval at (N, D)."""
        import numpy as np

        loss = self.loss(params, tokens)
        lo = hi = loss
        if self.samples is not None and len(self.samples):
            s = np.asarray(self.samples)
            draws = s[:, 0] + s[:, 1] / params ** s[:, 3] + s[:, 2] / tokens ** s[:, 4]
            draws = draws[np.isfinite(draws)]
            if len(draws):
                lo, hi = (float(x) for x in np.percentile(draws, [2.5, 97.5]))
        return Prediction(float(params), float(tokens), 6.0 * params * tokens, float(loss),
                          min(lo, loss), max(hi, loss))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n_points": self.n_points,
            "params": self.params,
            "ci95": self.ci95,
            "objective": self.objective,
            "allocation": self.allocation,
            "predictions": [dataclasses.asdict(p) for p in self.predictions],
            "validation": self.validation,
            "warnings": self.warnings,
            "conventions": self.conventions,
        }


@dataclass(frozen=True)
class Recommendation:
    """The next compute-optimal run; keys are the shared JSON interface."""

    compute: float
    params: float
    params_nonembed: float
    tokens: float
    flops: float
    predicted_loss: float
    predicted_loss_lo95: float
    predicted_loss_hi95: float
    model: dict[str, int]
    train: dict[str, float]
    conventions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DownstreamFit:
    """A downstream metric (e.g. top-1 accuracy) fitted against loss (nats/token) or compute
    (FLOPs): ``form`` sigmoid (params lo, hi, k, x0) or power (params A, b); ``predictions``
    are dicts x, value, lo95, hi95 (bootstrap over runs)."""

    metric: str
    against: str  # "loss" | "flops"
    form: str  # "sigmoid" | "power"
    n_points: int
    params: dict[str, float]
    ci95: dict[str, list[float]]
    rmse: float  # root-mean-square residual, in the metric's own units
    predictions: list[dict[str, float]] = field(default_factory=list)
    validation: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LearningCurveFit:
    """Kaplan et al. 2020 §5: L(N, S) = E + (N_c/N)^alpha_N + (S_c/S_min)^alpha_S with
    S_min = S / (1 + B_crit(L)/B), B_crit(L) = B_star / L^(1/alpha_B) (B, B_star in tokens,
    N in params, S optimizer steps, L nats/token). ``fixed`` names parameters not fitted."""

    n_runs: int
    n_points: int
    params: dict[str, float]  # N_c, alpha_N, S_c, alpha_S, B_star, alpha_B, E
    ci95: dict[str, list[float]]
    fixed: list[str]
    rmse_log: float  # root-mean-square residual of ln L
    predictions: list[dict[str, Any]] = field(default_factory=list)  # params, batch_tokens,
    # steps [...], loss [...], loss_lo95 [...], loss_hi95 [...] (a whole predicted curve)
    validation: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
