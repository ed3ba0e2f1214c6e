"""SweepConfig → list[PlannedRun]: widths × depths × budgets. Pure; no I/O.

Budgets are tokens (same for every size) or 6ND FLOPs, turned into tokens per size as
D = C / (6 · N_nonembed). Tokens are rounded to whole optimizer steps, so every run's schedule ends
exactly where its budget ends; the recorded ``tokens`` and FLOPs are the rounded, trained ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re

from sweep import hparams, shapes
from sweep.config import SweepConfig
from sweep.errors import ConfigError
from sweep.records import DataSettings, PlannedRun, TrainSettings

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(name: str) -> str:
    """A sweep name is a safe directory name: letters, digits, '.', '_', '-' (≤ 64)."""
    if not NAME_RE.fullmatch(name or "") or ".." in name:
        raise ConfigError(
            f"invalid sweep name {name!r}: use letters, digits, '.', '_' or '-' (at most 64), "
            "starting with a letter or digit")
    return name


def compact(x: float) -> str:
    """1000000 → '1e6', 250000 → '2.5e5' (for run ids)."""
    if x <= 0:
        return str(x)
    e = int(math.floor(math.log10(x)))
    m = x / 10**e
    if round(m, 2) >= 10:  # 999936 → '1e6', not '10e5'
        e, m = e + 1, m / 10
    ms = f"{m:.2f}".rstrip("0").rstrip(".")
    return f"{ms}e{e}"


def _settings(cfg: SweepConfig) -> tuple[TrainSettings, DataSettings]:
    t = cfg.train
    ts = TrainSettings(
        warmup_frac=t.warmup_frac, min_lr_frac=t.min_lr_frac, weight_decay=t.weight_decay,
        beta1=t.beta1, beta2=t.beta2, grad_clip=t.grad_clip, dropout=t.dropout,
        log_every=t.log_every, eval_points=t.eval_points, eval_tokens=t.eval_tokens,
        checkpoint_every=t.checkpoint_every, decay_frac=t.decay_frac, command=t.command)
    ts = dataclasses.replace(ts, nproc=t.nproc, precision=t.precision, device=t.device,
                             compile=t.compile)
    ds = DataSettings(name=cfg.data.name, path=cfg.data.path, heldout_frac=cfg.data.heldout_frac)
    return ts, ds


def make_run(sweep: str, width: int, depth: int, tokens_wanted: float, cfg: SweepConfig
             ) -> PlannedRun:
    """One planned run of ``width`` × ``depth`` trained on ≈ ``tokens_wanted`` tokens."""
    m, t = cfg.model, cfg.train
    ts, ds = _settings(cfg)
    hp = hparams.choose(cfg, width, depth, tokens_wanted)  # LR and batch from train.*_rule
    batch_tokens = hp.batch_size * m.seq_len
    if tokens_wanted < batch_tokens / 2:
        raise ConfigError(
            f"budget of {tokens_wanted:.3g} tokens for width {width} × depth {depth} is less than "
            f"one optimizer step ({hp.batch_size} × {m.seq_len} tokens, train.batch_rule="
            f"{t.batch_rule})")
    steps = max(1, round(tokens_wanted / batch_tokens))
    tokens = steps * batch_tokens
    n_ne = shapes.params_nonembed(width, depth)
    body = dict(
        sweep=sweep, width=width, depth=depth, heads=shapes.heads_for(width, m.head_dim),
        seq_len=m.seq_len, vocab=m.vocab,
        params=shapes.params_total(width, depth, m.vocab, m.seq_len), params_nonembed=n_ne,
        tokens=tokens, flops_6nd=shapes.flops_6nd(n_ne, tokens),
        flops_attn=shapes.flops_per_token(width, depth, m.seq_len) * tokens,
        steps=steps, batch_size=hp.batch_size, batch_tokens=batch_tokens,
        lr=hp.lr, schedule=t.schedule, seed=t.seed, train=ts, data=ds)
    return with_id(PlannedRun(run_id="x", **body))


_V1_RUN = {"run_id", "sweep", "width", "depth", "heads", "seq_len", "vocab", "params",
           "params_nonembed", "tokens", "flops_6nd", "flops_attn", "steps", "batch_size",
           "batch_tokens", "lr", "schedule", "seed", "train", "data"}
_V1_TRAIN = {"warmup_frac", "min_lr_frac", "weight_decay", "beta1", "beta2", "grad_clip",
             "dropout", "log_every", "eval_points", "eval_tokens", "checkpoint_every"}


def with_id(run: PlannedRun) -> PlannedRun:
    """``run`` with its id: prefix + hash of its content. Fields added to PlannedRun and
    TrainSettings after the first release count only when not at their default, so the ids of
    existing sweeps' runs do not change."""
    d = run.to_dict()
    d["run_id"] = "x"
    top = {f.name: f.default for f in dataclasses.fields(PlannedRun)}
    for k in [k for k in d if k not in _V1_RUN and d[k] == top[k]]:
        del d[k]
    tdef = dataclasses.asdict(TrainSettings())
    d["train"] = {k: v for k, v in d["train"].items() if k in _V1_TRAIN or v != tdef.get(k)}
    digest = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return dataclasses.replace(
        run, run_id=f"w{run.width}-d{run.depth}-t{compact(run.tokens)}-{digest}")


def plan(sweep: str, cfg: SweepConfig) -> list[PlannedRun]:
    """Enumerate widths × depths × budgets, smallest model first."""
    check_name(sweep)
    m, b = cfg.model, cfg.budget
    runs = []
    for depth in sorted(m.depths):
        for width in sorted(m.widths):
            n_ne = shapes.params_nonembed(width, depth)
            if b.tokens is not None:
                wanted = sorted(b.tokens)
            else:
                wanted = [shapes.tokens_for_flops(c, n_ne) for c in sorted(b.flops or [])]
            for tok in wanted:  # make_run refuses a budget below one step of the run's batch
                runs.append(make_run(sweep, width, depth, tok, cfg))
    if cfg.train.schedule == "wsd":
        from sweep.train.wsd import group_branches

        runs = group_branches(runs, with_id)
    return runs
