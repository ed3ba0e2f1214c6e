"""The only module that touches Hydra/OmegaConf: compose conf/ + overrides → SweepConfig.

The schema (sweep/conf_schema.py, re-exported here) is registered in Hydra's ConfigStore as
``base_config``; ``conf/config.yaml`` lists it first in its defaults, so every group file and
override is checked against it: an unknown key or a value of the wrong type is a ConfigError
naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path

from sweep.conf_schema import (
    BudgetConf,
    DataConf,
    FitConf,
    HpRow,
    LauncherConf,
    ModelConf,
    SizeOverride,
    SweepConfig,
    TrainConf,
    WandbConf,
    parse_time,
)
from sweep.errors import ConfigError

__all__ = ["BudgetConf", "DataConf", "FitConf", "HpRow", "LauncherConf", "ModelConf",
           "SizeOverride", "SweepConfig", "TrainConf", "WandbConf", "conf_dir", "load",
           "parse_time", "validate"]


def conf_dir() -> Path:
    """Where conf/ lives: the source tree's top level, or ``sweep/conf`` in an installed wheel."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "conf", here / "conf"):
        if (cand / "config.yaml").is_file():
            return cand
    raise ConfigError(f"config directory not found next to {here}")


def _register() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_config", node=SweepConfig)


def _one_line(exc: BaseException) -> str:
    """Hydra's multi-line messages → one line naming the key and the problem."""
    text = str(exc).strip()
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        return f"unknown config key '{m.group(1)}'"
    m = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if m:
        opts = re.findall(r"^\t(\w+)$", text, flags=re.M)
        return f"unknown {m.group(1)} config '{m.group(2)}' (available: {', '.join(opts)})"
    m = re.search(r"Error merging override (\S+?)=", text)
    if m:
        cause = exc.__cause__
        why = str(cause).strip().splitlines()[0] if cause is not None else "bad value"
        return f"bad value for '{m.group(1)}': {why}"
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, Exception) and type(exc).__name__ == "OverrideParseException":
        return f"malformed override: {first}"
    return first


def load(overrides: list[str] | tuple[str, ...] = ()) -> SweepConfig:
    """Compose conf/config.yaml with Hydra ``overrides`` and return the typed, validated config
    (from sweep.config_cache when these overrides over these conf/ files composed before)."""
    from sweep import config_cache

    for o in overrides:
        if o.startswith("+") or o.startswith("~"):
            raise ConfigError(f"override '{o}' adds or removes a key; only existing keys can be "
                              "set")
    k = config_cache.key(conf_dir(), overrides)
    cached = config_cache.get(k)
    if cached is not None:
        try:
            validate(cached)
            return cached
        except (ConfigError, TypeError, ValueError):  # not what composing gives: compose
            pass
    obj = _compose(overrides)
    config_cache.put(k, obj)
    return obj


def _compose(overrides: list[str] | tuple[str, ...]) -> SweepConfig:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    _register()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
        obj = OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(_one_line(exc)) from None
    assert isinstance(obj, SweepConfig)
    validate(obj)
    return obj


def _check_list(name: str, values: list | None, *, integer: bool = False) -> None:
    if values is None:
        return
    if len(values) == 0:
        raise ConfigError(f"{name} is empty")
    for v in values:
        if not v > 0:
            raise ConfigError(f"{name} must be positive, got {v!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} has duplicate values: {list(values)}")


def validate(cfg: SweepConfig) -> None:
    """Range checks the schema cannot express; each failure names its key."""
    m, b, t = cfg.model, cfg.budget, cfg.train
    _check_list("model.widths", m.widths)
    _check_list("model.depths", m.depths)
    if m.head_dim <= 0 or m.seq_len <= 0 or m.vocab <= 1:
        raise ConfigError("model.head_dim, model.seq_len must be positive and model.vocab > 1")
    for w in m.widths:
        if w % m.head_dim:
            raise ConfigError(f"model.widths: {w} is not a multiple of model.head_dim={m.head_dim}")
    if (b.tokens is None) == (b.flops is None):
        raise ConfigError(
            "give exactly one of budget.tokens or budget.flops (FLOP budgets: budget=flops)")
    _check_list("budget.tokens", b.tokens)
    _check_list("budget.flops", b.flops)
    if t.batch_size <= 0 or not t.lr > 0:
        raise ConfigError("train.batch_size and train.lr must be positive")
    from sweep import hparams  # rule names, anchors and hp_table checked where they are used

    hparams.rules(cfg)
    if t.schedule not in ("cosine", "wsd"):
        raise ConfigError(f"train.schedule must be 'cosine' or 'wsd', got {t.schedule!r}")
    if t.nproc < 1 or t.batch_size % t.nproc:
        raise ConfigError(f"train.nproc ({t.nproc}) must be ≥ 1 and divide train.batch_size "
                          f"({t.batch_size} sequences per step)")
    world = t.nproc * cfg.launcher.nodes
    if world > 1 and t.batch_size % world:
        raise ConfigError(f"train.batch_size ({t.batch_size}) does not split over launcher.nodes"
                          f" × train.nproc = {world} processes")
    if world > 1 and t.command is not None:
        raise ConfigError("train.nproc and launcher.nodes > 1 need the built-in trainer "
                          "(train.command is set)")
    if t.precision not in ("fp32", "bf16"):
        raise ConfigError(f"train.precision must be 'fp32' or 'bf16', got {t.precision!r}")
    if t.device not in ("auto", "cpu", "cuda", "mps"):
        raise ConfigError(f"train.device must be auto, cpu, cuda or mps, got {t.device!r}")
    if not 0 < t.decay_frac < 1:
        raise ConfigError(f"train.decay_frac must be in (0, 1), got {t.decay_frac!r}")
    if t.command is not None:
        import shlex

        try:
            argv = shlex.split(t.command)
        except ValueError as exc:
            raise ConfigError(f"train.command: {exc} in {t.command!r}") from None
        if not argv:
            raise ConfigError("train.command is empty (leave it null for the built-in trainer)")
        if t.schedule == "wsd":
            raise ConfigError("train.schedule=wsd trains cooldown branches inside the built-in "
                              "trainer; with train.command use train.schedule=cosine")
    if not 0 <= t.warmup_frac < 1 or not 0 <= t.min_lr_frac <= 1:
        raise ConfigError("train.warmup_frac must be in [0, 1) and train.min_lr_frac in [0, 1]")
    if t.eval_points < 1 or t.log_every < 1 or t.eval_tokens < m.seq_len:
        raise ConfigError("train.eval_points, train.log_every must be ≥ 1, eval_tokens ≥ seq_len")
    if not 0 < cfg.data.heldout_frac < 1:
        raise ConfigError("data.heldout_frac must be in (0, 1)")
    if cfg.launcher.jobs < 1 or cfg.launcher.threads_per_job < 0 or cfg.launcher.cores < 0:
        raise ConfigError("launcher.jobs must be ≥ 1, launcher.threads_per_job and "
                          "launcher.cores ≥ 0")
    if cfg.launcher.name not in ("local", "slurm"):
        raise ConfigError(f"launcher.name must be 'local' or 'slurm', got {cfg.launcher.name!r}")
    _validate_slurm(cfg.launcher)
    if cfg.fit.method != "chinchilla":
        raise ConfigError(f"fit.method must be 'chinchilla', got {cfg.fit.method!r}")
    if cfg.fit.params not in ("nonembed", "total"):
        raise ConfigError(f"fit.params must be 'nonembed' or 'total', got {cfg.fit.params!r}")
    if cfg.wandb.mode not in ("offline", "online", "disabled"):
        raise ConfigError(f"wandb.mode must be offline, online or disabled, got {cfg.wandb.mode!r}")
    if cfg.fit.bootstrap < 0 or not cfg.fit.delta > 0:
        raise ConfigError("fit.bootstrap must be ≥ 0 and fit.delta > 0")


def _validate_slurm(lc: LauncherConf) -> None:
    """The Slurm fields: positive counts, parseable time limits, flags that look like flags."""
    if lc.nodes < 1:
        raise ConfigError(f"launcher.nodes must be ≥ 1, got {lc.nodes}")
    if lc.cpus_per_task < 1 or lc.gpus < 0 or lc.max_attempts < 1 or lc.signal_seconds < 0:
        raise ConfigError("launcher.cpus_per_task and launcher.max_attempts must be ≥ 1, "
                          "launcher.gpus and launcher.signal_seconds ≥ 0")
    for key, value in [("launcher.time", lc.time),
                       *((f"launcher.size_overrides[{i}].time", o.time)
                         for i, o in enumerate(lc.size_overrides) if o.time is not None)]:
        seconds = parse_time(value)
        if seconds is None:
            raise ConfigError(f"{key}: {value!r} is not a Slurm time limit (e.g. 01:30:00)")
        if seconds <= lc.signal_seconds:
            raise ConfigError(f"{key}: {value!r} leaves no time before launcher.signal_seconds="
                              f"{lc.signal_seconds}")
    for i, flag in enumerate(lc.extra_sbatch):
        if not flag.startswith("--") or "\n" in flag:
            raise ConfigError(f"launcher.extra_sbatch[{i}]: {flag!r} must be one --flag[=value]")
    for i, line in enumerate(lc.setup):
        if "\n" in line:
            raise ConfigError(f"launcher.setup[{i}] must be one line")
