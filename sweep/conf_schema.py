"""The config schema: typed dataclasses of every key in conf/, and nothing of the domain.

Imports only the standard library, so any module (hparams, plan, the launchers) can name the
config types without importing Hydra or the checks in ``sweep.config``, which composes conf/
and validates it (and re-exports these names).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import List, Optional

__all__ = ["BudgetConf", "DataConf", "FitConf", "HpRow", "LauncherConf", "ModelConf",
           "SizeOverride", "SweepConfig", "TrainConf", "WandbConf", "parse_time"]


@dataclass
class ModelConf:
    widths: List[int] = field(default_factory=lambda: [32, 64, 96, 128])
    depths: List[int] = field(default_factory=lambda: [2])
    head_dim: int = 32
    seq_len: int = 64
    vocab: int = 256


@dataclass
class BudgetConf:
    tokens: Optional[List[float]] = None
    flops: Optional[List[float]] = None


@dataclass
class HpRow:
    """One row of train.hp_table (GPT-3 style): the LR and batch chosen at a size."""

    params: float = 0.0  # non-embedding parameters of the size this row is for
    lr: Optional[float] = None  # peak learning rate (needed with train.lr_rule=table)
    batch_size: Optional[int] = None  # sequences per step (needed with train.batch_rule=table)


@dataclass
class TrainConf:
    batch_size: int = 16
    lr: float = 7e-3
    lr_rule: str = "width"
    lr_ref_width: int = 64
    lr_exponent: float = 1.0
    batch_rule: str = "constant"
    hp_ref_params: Optional[float] = None
    hp_ref_flops: Optional[float] = None
    hp_table: List[HpRow] = field(default_factory=list)
    schedule: str = "cosine"
    warmup_frac: float = 0.15
    min_lr_frac: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    dropout: float = 0.0
    log_every: int = 10
    eval_points: int = 4
    eval_tokens: int = 65536
    checkpoint_every: int = 200
    seed: int = 0
    decay_frac: float = 0.2
    command: Optional[str] = None
    nproc: int = 1
    precision: str = "fp32"
    device: str = "auto"
    compile: bool = False


@dataclass
class DataConf:
    name: str = "stdlib"
    path: Optional[str] = None
    heldout_frac: float = 0.05


@dataclass
class SizeOverride:
    """Slurm resources for runs with at least ``min_params`` parameters (all, with embeddings)."""

    min_params: float = 0.0  # applies to runs with params >= this; the largest match wins
    time: Optional[str] = None  # Slurm time limit for those runs, e.g. "04:00:00"


@dataclass
class LauncherConf:
    name: str = "local"  # local | slurm (sweep launch --executor overrides)
    jobs: int = 2  # local: runs at once; slurm: array throttle K in --array=0-N%K
    threads_per_job: int = 0
    # --- Slurm only (conf/launcher/slurm.yaml); empty strings/None are left out of the script
    partition: str = ""  # --partition; "" = the cluster's default partition
    time: str = "01:00:00"  # --time per run (D-HH:MM:SS, HH:MM:SS or minutes)
    cpus_per_task: int = 1  # --cpus-per-task per process (× train.nproc per node); its threads
    nodes: int = 1  # --nodes per run; > 1 (or train.nproc > 1): srun + torchrun, DDP
    gpus: int = 0  # GPUs per process (rank): --gpus-per-task = gpus × train.nproc (0: none)
    mem: str = ""  # --mem per run, e.g. "4G"; "" = the cluster's default
    account: str = ""  # --account
    qos: str = ""  # --qos
    constraint: str = ""  # --constraint
    extra_sbatch: List[str] = field(default_factory=list)  # more flags, e.g. ["--exclusive"]
    setup: List[str] = field(default_factory=list)  # shell lines run before the worker (modules)
    signal_seconds: int = 120  # --signal=B:USR1@N: checkpoint and requeue N s before the limit
    max_attempts: int = 3  # attempts per run and submission (first + requeues); then failed
    size_overrides: List[SizeOverride] = field(default_factory=list)  # per size, e.g. more time
    # --- local only: the machine-wide core budget shared by every local launcher of this user
    cores: int = 0  # cores the launchers may use in all (0: the cores this process may run on)
    slots_dir: str = ""  # lock dir of the core slots ("": $SWEEP_SLOTS_DIR or /tmp/sweep-slots-UID)


@dataclass
class FitConf:
    method: str = "chinchilla"
    delta: float = 1e-3
    bootstrap: int = 1000
    seed: int = 0
    params: str = "nonembed"


@dataclass
class WandbConf:
    mode: str = "offline"
    project: str = "sweep"


@dataclass
class SweepConfig:
    model: ModelConf = field(default_factory=ModelConf)
    budget: BudgetConf = field(default_factory=BudgetConf)
    train: TrainConf = field(default_factory=TrainConf)
    data: DataConf = field(default_factory=DataConf)
    launcher: LauncherConf = field(default_factory=LauncherConf)
    fit: FitConf = field(default_factory=FitConf)
    wandb: WandbConf = field(default_factory=WandbConf)


def parse_time(text: str) -> float | None:
    """A Slurm time limit in seconds (``M``, ``M:S``, ``H:M:S``, ``D-H[:M[:S]]``, ``UNLIMITED``),
    or None if it is not one."""
    t = str(text).strip()
    if t.lower() in ("unlimited", "infinite"):
        return math.inf
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", t)
    if not m:
        return None
    d, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if d is not None:
        return float(d * 86400 + a * 3600 + (b or 0) * 60 + (c or 0))
    if b is None:
        return float(a * 60)
    return float(a * 60 + b if c is None else a * 3600 + b * 60 + c)
