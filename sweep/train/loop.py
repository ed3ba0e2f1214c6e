"""The training loop: one flat loop in the style of nanoGPT's train.py.

A run trains for exactly ``run.steps`` steps of ``run.batch_size`` × ``run.seq_len`` tokens
(``run.tokens`` = steps · batch_tokens). Losses are nats/token; ``flops`` in curve points follow
the 6·N·D convention with N = ``run.params_nonembed``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Callable

import numpy as np
import torch

from sweep.errors import ConfigError, TrainError
from sweep.records import CurvePoint, PlannedRun, TrainResult
from sweep.train.data import BatchSampler, epochs, eval_set, load_corpus
from sweep.train.model import GPT, GPTConfig

logger = logging.getLogger(__name__)

SCHEDULES = ("cosine",)
EVAL_BATCH = 32  # sequences per forward pass during evaluation (small batches are faster on CPU)


def warmup_steps(run: PlannedRun) -> int:
    """Linear-warmup length in steps: round(warmup_frac · steps), at most steps − 2 so that the
    peak (step ``warmup_steps``) comes before the last step."""
    return max(0, min(run.steps - 2, round(run.train.warmup_frac * run.steps)))


def lr_at(step: int, run: PlannedRun) -> float:
    """Learning rate at 0-based ``step``: linear warmup to ``run.lr`` over the warmup steps, then
    cosine decay reaching ``run.lr · min_lr_frac`` exactly at the last step (``run.steps − 1``)."""
    w, last = warmup_steps(run), run.steps - 1
    lo = run.lr * run.train.min_lr_frac
    if step < w:
        return run.lr * (step + 1) / (w + 1)
    if last <= w:
        return lo
    progress = min(1.0, (step - w) / (last - w))
    return lo + 0.5 * (1.0 + math.cos(math.pi * progress)) * (run.lr - lo)


def eval_steps(steps: int, points: int) -> list[int]:
    """0-based steps of the held-out evaluations: ``points`` log-spaced steps, the last at the end."""
    if points <= 1:
        return [steps - 1]
    return sorted({int(round(s)) - 1 for s in np.geomspace(1, steps, points)} | {steps - 1})


@torch.no_grad()
def evaluate(model: GPT, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy over all tokens of the evaluation set, nats/token."""
    model.eval()
    total = 0.0
    for i in range(0, len(x), EVAL_BATCH):
        _, loss = model(x[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH])
        total += loss.item() * len(x[i:i + EVAL_BATCH])
    model.train()
    return total / len(x)


def train(run: PlannedRun, log: Callable[[CurvePoint], None], *,
          cache_dir: str | os.PathLike[str] | None = None, threads: int | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train ``run`` and return its result; ``log`` receives every curve point as it is made.

    Train-loss points come every ``train.log_every`` steps and at the last step (the mean loss
    over the steps since the previous point); held-out evaluations at ``eval_steps``, the last one
    flagged ``end_of_schedule``. Raises TrainError on a non-finite loss or when ``should_stop()``
    returns True at a step boundary. ``wall_seconds`` covers the whole call, data loading included.
    """
    t0 = time.perf_counter()
    ts = run.train
    if run.schedule not in SCHEDULES:
        raise ConfigError(f"unknown lr schedule {run.schedule!r} (known: {', '.join(SCHEDULES)})")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(run.seed)
    corpus = load_corpus(run.data, cache_dir)
    if run.vocab < corpus.vocab:
        raise ConfigError(f"vocab {run.vocab} is smaller than the byte-level corpus needs ({corpus.vocab})")
    model = GPT(GPTConfig(run.width, run.depth, run.heads, run.seq_len, run.vocab, ts.dropout))
    if model.num_params() != run.params or model.num_params(True) != run.params_nonembed:
        raise TrainError(f"model has {model.num_params()} params, the plan says {run.params}")
    opt = model.optimizer(lr_at(0, run), ts.weight_decay, (ts.beta1, ts.beta2))
    sampler = BatchSampler(corpus.train, run.batch_size, run.seq_len, seed=run.seed)
    ex, ey = eval_set(corpus.heldout, run.seq_len, ts.eval_tokens)
    evals = set(eval_steps(run.steps, ts.eval_points))
    logger.info("run %s: %d params (%d non-embedding), %d steps, %.3g tokens = %.3g epochs",
                run.run_id, run.params, run.params_nonembed, run.steps, run.tokens,
                epochs(run.tokens, corpus))

    params = list(model.parameters())
    loss_sum, n_sum = torch.zeros(()), 0
    train_loss = eval_loss = float("nan")
    for step in range(run.steps):
        if should_stop is not None and should_stop():
            raise TrainError(f"stopped at step {step}")
        lr = lr_at(step, run)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = sampler()
        _, loss = model(x, y)
        loss.backward()
        if ts.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, ts.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        n_sum += 1

        last = step == run.steps - 1
        if not (last or step in evals or (step + 1) % ts.log_every == 0):
            continue
        train_loss = loss_sum.item() / n_sum
        loss_sum.zero_()
        n_sum = 0
        if not math.isfinite(train_loss):
            raise TrainError(f"training loss became {train_loss} by step {step} of run {run.run_id}")
        ev = None
        if step in evals:
            ev = eval_loss = evaluate(model, ex, ey)
            if not math.isfinite(ev):
                raise TrainError(f"held-out loss is {ev} at step {step} of run {run.run_id}")
        tokens = (step + 1) * run.batch_tokens
        log(CurvePoint(run.run_id, step, tokens, 6.0 * run.params_nonembed * tokens,
                       train_loss, ev, lr, end_of_schedule=last))

    wall = time.perf_counter() - t0
    logger.info("run %s done: held-out %.4f, train %.4f nats/token, %.1f s", run.run_id,
                eval_loss, train_loss, wall)
    return TrainResult(run.run_id, eval_loss, train_loss, run.tokens, run.steps, wall,
                       run.tokens / wall)
