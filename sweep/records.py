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

from sweep import shapes


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


TRUST_LEVELS = ("inside", "extrapolated", "outside")  # Prediction.trust, worst last


@dataclass(frozen=True)
class TrustRegion:
    """What a fit saw and what it can say (issue 12): the ranges of N, D, C and loss of its
    points, which parameters the data identify, its held-out validation error, and the fit-level
    warnings that go with every number predicted from it. ``assess`` places one prediction.

    ``max_loss`` is ln(vocab) when the vocabulary is known (a predicted loss above it is worse
    than a uniform guess); ``min_tokens`` one optimizer batch when known."""

    params: tuple[float, float]  # min, max N of the fitted points (the fit's N convention)
    tokens: tuple[float, float]  # min, max D (training tokens)
    flops: tuple[float, float]  # min, max C = 6ND (FLOPs)
    loss: tuple[float, float]  # min, max loss (nats/token)
    identified: dict[str, bool] = field(default_factory=dict)  # E, A, B, alpha, beta → bool
    validation_error: float | None = None  # mean |rel. error| predicting the held-out budget
    floor: float = 0.0  # the law's loss floor E (nats/token)
    max_loss: float | None = None  # ln(vocab) where known
    min_tokens: float | None = None  # one optimizer batch (tokens) where known
    warnings: tuple[str, ...] = ()  # fit-level warnings (identifiability, spans, convergence)

    def assess(self, params: float, tokens: float, loss: float
               ) -> tuple[str, float, tuple[str, ...]]:
        """(trust, k, warnings) of a prediction at (N, D) with point loss ``loss``: trust is
        'inside' the data's box, 'extrapolated' (k = how many times past the largest N, D or C
        seen, ≥ 1) or 'outside' what the law can say; warnings say why, then the fit's own."""
        c = shapes.flops_6nd(params, tokens)
        k = max(1.0, params / self.params[1], tokens / self.tokens[1], c / self.flops[1])
        why: list[str] = []
        outside = False
        if not math.isfinite(loss):
            outside = True
            why.append("the predicted loss is not finite")
        if self.max_loss is not None and loss > self.max_loss:
            outside = True
            why.append(f"predicted loss {loss:.4g} is above ln(vocab) = {self.max_loss:.4g} "
                       "nats/token (worse than a uniform guess): the law does not hold there")
        if params < self.params[0] * (1 - 1e-9):
            outside = True
            why.append(f"N = {params:.4g} is below the smallest fitted model ({self.params[0]:.4g})")
        if self.min_tokens is not None and tokens < self.min_tokens:
            outside = True
            why.append(f"D = {tokens:.4g} tokens is less than one batch ({self.min_tokens:.4g})")
        if tokens < self.tokens[0] * (1 - 1e-9) and not outside:
            why.append(f"D = {tokens:.4g} is below the smallest fitted budget "
                       f"({self.tokens[0]:.4g} tokens)")
        if k > 1 + 1e-9:
            what = [f"N ×{params / self.params[1]:.3g}" if params > self.params[1] else "",
                    f"D ×{tokens / self.tokens[1]:.3g}" if tokens > self.tokens[1] else "",
                    f"C ×{c / self.flops[1]:.3g}" if c > self.flops[1] else ""]
            why.append("extrapolated past the fitted data (" + ", ".join(w for w in what if w)
                       + ")")
        trust = "outside" if outside else "extrapolated" if (
            k > 1 + 1e-9 or tokens < self.tokens[0] * (1 - 1e-9)) else "inside"
        return trust, float(k), tuple(why) + self.warnings

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrustRegion:
        d = dict(d)
        for k in ("params", "tokens", "flops", "loss", "warnings"):
            d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Prediction:
    """A predicted loss (nats/token) at (N, D) with its 95 % interval and where it stands
    relative to the fit's trust region (``TrustRegion.assess``)."""

    params: float
    tokens: float
    flops: float  # 6ND
    loss: float
    loss_lo95: float
    loss_hi95: float
    trust: str = "inside"  # inside | extrapolated | outside
    extrapolation: float = 1.0  # × past the largest N, D or C fitted (1 = inside)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["warnings"] = list(self.warnings)
        return d


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
    samples: Any = None  # numpy array (n_boot, 5) in E, A, B, alpha, beta order
    trust: TrustRegion | None = None  # where predictions from this fit can be believed

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
        trust, k, warns = ("inside", 1.0, ()) if self.trust is None else self.trust.assess(
            params, tokens, loss)
        return Prediction(float(params), float(tokens), shapes.flops_6nd(params, tokens),
                          float(loss), min(lo, loss), max(hi, loss), trust, k, warns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n_points": self.n_points,
            "params": self.params,
            "ci95": self.ci95,
            "objective": self.objective,
            "allocation": self.allocation,
            "predictions": [p.to_dict() for p in self.predictions],
            "validation": self.validation,
            "warnings": self.warnings,
            "conventions": self.conventions,
            "trust": None if self.trust is None else self.trust.to_dict(),
        }

    def to_state(self) -> dict[str, Any]:
        """``to_dict`` plus the bootstrap samples: what the fit cache stores."""
        d = self.to_dict()
        d["samples"] = None if self.samples is None else [list(map(float, r))
                                                          for r in self.samples]
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Fit:
        """The inverse of ``to_state`` (a cached fit, samples included)."""
        import numpy as np

        d = dict(d)
        d["predictions"] = [Prediction(**{**p, "warnings": tuple(p.get("warnings", ()))})
                            for p in d.get("predictions", [])]
        d["trust"] = None if d.get("trust") is None else TrustRegion.from_dict(d["trust"])
        d["samples"] = None if d.get("samples") is None else np.asarray(d["samples"], float)
        return cls(**d)


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
    model: dict[str, int] | None  # None: no shape rule (e.g. an imported sweep)
    train: dict[str, float] | None
    conventions: dict[str, str] = field(default_factory=dict)
    trust: str = "inside"  # the predicted loss's place in the fit's trust region
    extrapolation: float = 1.0  # × past the largest N, D or C fitted
    warnings: tuple[str, ...] = ()  # the prediction's warnings, then the fit's

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["warnings"] = list(self.warnings)
        return d


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
