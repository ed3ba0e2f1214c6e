"""The training loop: one flat loop in the style of nanoGPT's train.py.

A run trains for exactly ``run.steps`` steps of ``run.batch_size`` × ``run.seq_len`` tokens
(``run.tokens`` = steps · batch_tokens). Losses are nats/token; ``flops`` in curve points follow
the 6·N·D convention with N = ``run.params_nonembed``.

Checkpoints (``checkpoint_dir``): ``step_{step:06d}.pt`` holds everything needed to continue
bit-for-bit after the 0-based step ``step`` (the last completed one): model, optimizer, torch RNG,
the batch sampler's numpy generator and position, the running train-loss accumulator and the
divergence guard's state (and the CUDA RNG on a GPU). Written atomically (``sweep.fsutil``); the
newest ``CKPT_KEEP`` are kept. A run that finds one resumes from it, on any device, and emits no
curve point at or before its step (they were emitted before it was written).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sweep.errors import ConfigError, TrainError, TrainInterrupted
from sweep.records import CurvePoint, PlannedRun, TrainResult
from sweep import shapes
from sweep.train import device as device_
from sweep.train import dist as dist_
from sweep.train import wsd
from sweep.train.ckpt import (CKPT_KEEP, _CKPT_VERSION, _same_run, checkpoints,  # noqa: F401
                              load_checkpoint, save_checkpoint)
from sweep.train.data import BatchSampler, epochs, eval_set, load_corpus
from sweep.train.model import GPT, GPTConfig

logger = logging.getLogger(__name__)

SCHEDULES = ("cosine", "wsd")
EVAL_BATCH = 32  # sequences per forward pass during evaluation (small batches are faster on CPU)


def warmup_steps(run: PlannedRun) -> int:
    """Linear-warmup length in steps: round(warmup_frac · steps), at most steps − 2 so that the
    peak (step ``warmup_steps``) comes before the last step. A WSD run carries its own
    (``run.warmup_steps``, shared by a main run and its branches)."""
    if run.warmup_steps is not None:
        return run.warmup_steps
    return max(0, min(run.steps - 2, round(run.train.warmup_frac * run.steps)))


def lr_at(step: int, run: PlannedRun) -> float:
    """Learning rate at 0-based ``step``: linear warmup to ``run.lr`` over the warmup steps, then
    cosine decay reaching ``run.lr · min_lr_frac`` exactly at the last step (``run.steps − 1``).
    ``schedule='wsd'``: warmup, constant, 1 − sqrt cooldown (sweep.train.wsd)."""
    if run.schedule == "wsd":
        return wsd.wsd_lr(step, run, warmup_steps(run))
    w, last = warmup_steps(run), run.steps - 1
    lo = run.lr * run.train.min_lr_frac
    if step < w:
        return run.lr * (step + 1) / (w + 1)
    if last <= w:
        return lo
    progress = min(1.0, (step - w) / (last - w))
    return lo + 0.5 * (1.0 + math.cos(math.pi * progress)) * (run.lr - lo)


def eval_steps(steps: int, points: int) -> list[int]:
    """0-based steps of the held-out evaluations: ``points`` log-spaced steps, the last at the
    end."""
    if points <= 1:
        return [steps - 1]
    return sorted({int(round(s)) - 1 for s in np.geomspace(1, steps, points)} | {steps - 1})


@torch.no_grad()
def evaluate(model: GPT, x: torch.Tensor, y: torch.Tensor, dev: device_.Device | None = None
             ) -> tuple[float, float]:
    """Mean cross-entropy over all tokens of the evaluation set (nats/token) and the fraction
    of them whose most likely next token (top-1) is the true one; in the run's precision."""
    model.eval()
    total, hits = 0.0, 0
    for i in range(0, len(x), EVAL_BATCH):
        with device_.autocast(dev) if dev is not None else contextlib.nullcontext():
            logits, loss = model(x[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH])
        total += loss.item() * len(x[i:i + EVAL_BATCH])
        hits += int((logits.argmax(-1) == y[i:i + EVAL_BATCH]).sum())
    model.train()
    return total / len(x), hits / y.numel()


class DivergenceGuard:
    """Stops a run whose training loss (the mean at each log point) is not finite, exceeds
    ln(vocab) + ``CEILING_NATS`` (worse than uniform guessing by a margin), or, after warmup,
    exceeds ``SPIKE_FACTOR`` × the lowest logged so far."""

    SPIKE_FACTOR = 2.0
    CEILING_NATS = 1.0

    def __init__(self, run: PlannedRun) -> None:
        self.run_id, self.warmup = run.run_id, warmup_steps(run)
        self.ceiling = math.log(run.vocab) + self.CEILING_NATS
        self.best = math.inf

    def check(self, loss: float, step: int) -> None:
        """Raise TrainError naming the reason if ``loss`` (logged at ``step``) has diverged."""
        where = f"at step {step} of run {self.run_id}"
        if not math.isfinite(loss):
            raise TrainError(f"diverged: training loss became {loss} by step {step} of run "
                             f"{self.run_id}")
        if loss > self.ceiling:
            raise TrainError(f"diverged: training loss {loss:.4g} {where} exceeds ln(vocab) + "
                             f"{self.CEILING_NATS:g} = {self.ceiling:.4g} nats/token")
        if step >= self.warmup and loss > self.SPIKE_FACTOR * self.best:
            raise TrainError(f"diverged: training loss {loss:.4g} {where} is more than "
                             f"{self.SPIKE_FACTOR:g}x the lowest so far ({self.best:.4g})")
        self.best = min(self.best, loss)


def bits_per_byte(nats_per_token: float, byte_level: bool) -> float | None:
    """Bits/byte of a loss in nats/token, for byte-level corpora (one token per byte); None
    when tokens are not bytes (the bytes per token of a tokenizer are not known here)."""
    return nats_per_token / math.log(2) if byte_level else None


def _fmt_loss(nats: float, byte_level: bool) -> str:
    bpb = bits_per_byte(nats, byte_level)
    return f"{nats:.4f} nats/token" + (f" = {bpb:.4f} bits/byte" if bpb is not None else "")


def _mfu_text(run: PlannedRun, dev: device_.Device, tokens_per_s: float) -> str:
    """', MFU x of the device's peak' for the log (FLOPs per token as nanoGPT's estimate_mfu
    counts them, tied LM head included); empty when the device's peak is not known."""
    peak = device_.peak_flops(dev)
    if peak is None:
        return f" on {dev.type}"
    fpt = shapes.flops_per_token_mfu(run.width, run.depth, run.vocab, run.seq_len)
    return (f" on {device_.name(dev)}: {tokens_per_s:,.0f} tokens/s, MFU "
            f"{tokens_per_s * fpt / peak:.1%} of its {dev.precision} peak {peak / 1e12:.0f} "
            "TFLOP/s")


def train(run: PlannedRun, log: Callable[[CurvePoint], None], *,
          cache_dir: str | os.PathLike[str] | None = None, threads: int | None = None,
          should_stop: Callable[[], bool] | None = None,
          checkpoint_dir: str | os.PathLike[str] | None = None,
          on_checkpoint: Callable[[int], None] | None = None,
          dist: dist_.Dist | None = None,
          branches: Sequence[PlannedRun] = (),
          on_branch_start: Callable[[PlannedRun], None] | None = None,
          on_branch_end: Callable[[PlannedRun, TrainResult | None, str | None], None] | None
          = None) -> TrainResult:
    """Train ``run`` and return its result; ``log`` receives every curve point as it is made.

    Train-loss points come every ``train.log_every`` steps and at the last step (the mean loss
    over the steps since the previous point); held-out evaluations at ``eval_steps``, the last one
    flagged ``end_of_schedule``. Raises TrainError when the loss diverges (DivergenceGuard) or a
    held-out loss is not finite.

    With ``checkpoint_dir``: resumes from the newest checkpoint there, if any; writes one every
    ``train.checkpoint_every`` steps (0: only on a stop). ``on_checkpoint(step)`` is called just
    before each is written (the worker flushes its buffered curve points there, so the store
    holds every point a checkpoint covers). When ``should_stop()`` returns True at a step
    boundary, the run saves a checkpoint (if it has a directory) and raises TrainInterrupted.
    ``wall_seconds`` covers the whole call, data loading included, plus the time earlier
    attempts had spent up to the checkpoint resumed from.
    ``dist``: this process's rank when torchrun started several (DDP, see train/dist.py); rank 0
    alone writes checkpoints.

    ``train.device`` (sweep/train/device.py): the model, optimizer state and batches live there
    (``cuda:LOCAL_RANK`` under torchrun); ``train.precision`` bf16 runs forward passes under
    autocast with fp32 master weights; fp32 on CUDA uses TF32 matmuls; ``train.compile``
    compiles the model. Checkpoints load on any device (a GPU run resumes on a CPU and back).

    ``branches`` (WSD): runs whose cooldown starts from this run's state (``branch_of``). At
    each one's decay start the state is saved, ``on_branch_start(branch)`` called, the cooldown
    trained and evaluated (its points go to ``log`` under the branch's id), the state restored,
    and ``on_branch_end(branch, result or None, reason or None)`` called. A branch that diverges
    or is interrupted does not stop this run. Branches that start before a resumed checkpoint
    are skipped (with a warning). Branch time is not in this run's wall time.
    """
    d = dist or dist_.Dist()
    dev = device_.resolve(run.train.device, run.train.precision, d.local_rank)
    with device_.matmul_tf32(dev):  # TF32 on CUDA for this run only; restored on return
        return _train(run, log, dev, d, cache_dir=cache_dir, threads=threads,
                      should_stop=should_stop, checkpoint_dir=checkpoint_dir,
                      on_checkpoint=on_checkpoint, branches=branches,
                      on_branch_start=on_branch_start, on_branch_end=on_branch_end)


def _train(run: PlannedRun, log: Callable[[CurvePoint], None], dev: device_.Device,
           d: dist_.Dist, *, cache_dir, threads, should_stop, checkpoint_dir, on_checkpoint,
           branches, on_branch_start, on_branch_end) -> TrainResult:
    t0 = time.perf_counter()
    ts = run.train
    if run.schedule not in SCHEDULES:
        raise ConfigError(f"unknown lr schedule {run.schedule!r} (known: {', '.join(SCHEDULES)})")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(run.seed)
    corpus = load_corpus(run.data, cache_dir)
    if run.vocab < corpus.vocab:
        raise ConfigError(f"model vocab {run.vocab} is smaller than the corpus needs "
                          f"({corpus.vocab}; set model.vocab)")
    model = GPT(GPTConfig(run.width, run.depth, run.heads, run.seq_len, run.vocab, ts.dropout))
    if model.num_params() != run.params or model.num_params(True) != run.params_nonembed:
        raise TrainError(f"model has {model.num_params()} params, the plan says {run.params}")
    model.to(dev.device)
    opt = model.optimizer(lr_at(0, run), ts.weight_decay, (ts.beta1, ts.beta2),
                          **device_.fused_adamw(dev))
    sampler = BatchSampler(corpus.train, run.batch_size, run.seq_len, seed=run.seed,
                           pin=device_.pin(dev))
    ex, ey = (t.to(dev.device) for t in eval_set(corpus.heldout, run.seq_len, ts.eval_tokens))
    evals = set(eval_steps(run.steps, ts.eval_points))
    guard = DivergenceGuard(run)
    params = list(model.parameters())
    loss_sum, n_sum = torch.zeros((), device=dev.device), 0
    train_loss = eval_loss = float("nan")
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    every = ts.checkpoint_every if ckpt_dir is not None else 0
    start, saved, wall_before = 0, -1, 0.0  # saved: step of the newest checkpoint on disk

    found = load_checkpoint(ckpt_dir) if ckpt_dir is not None else None
    if found is not None:
        path, ck = found
        _same_run(ck["run"], run, path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["torch_rng"])
        device_.set_rng_state(dev, ck.get("device_rng"))
        sampler.load_state_dict(ck["sampler"])
        loss_sum, n_sum = ck["loss_sum"].to(dev.device), ck["n_sum"]
        train_loss, eval_loss = ck["train_loss"], ck["eval_loss"]
        guard.best = ck["guard_best"]
        wall_before = ck["wall_seconds"]
        saved = ck["step"]
        start = saved + 1
        logger.info("run %s: resuming after step %d of %d from %s", run.run_id, saved,
                    run.steps, path)
    # several processes: DDP over rows of each batch (train/dist.py)
    dist_.check_same(start, "step to resume after", d)
    net = device_.maybe_compile(dist_.wrap(model, d, dev.device), ts.compile)
    n_epochs = epochs(run.tokens, corpus)
    logger.info("run %s: %d params (%d non-embedding), %d steps, %.3g tokens = %.3g epochs",
                run.run_id, run.params, run.params_nonembed, run.steps, run.tokens, n_epochs)
    if n_epochs > 1 and found is None:
        logger.warning("run %s trains on %d tokens, %.3g epochs of the %d-token training split "
                       "of %s: data repeats", run.run_id, run.tokens, n_epochs,
                       len(corpus.train), corpus.source)

    def checkpoint(step: int) -> None:
        nonlocal saved, loss_sum
        loss_sum = dist_.mean(loss_sum, d)  # every rank holds the same partial sum from here
        if not d.is_main:  # rank 0 alone writes; all ranks load on resume
            saved = step
            return
        if on_checkpoint is not None:
            on_checkpoint(step)
        save_checkpoint(ckpt_dir, step, {
            "version": _CKPT_VERSION, "step": step, "run": run.to_dict(),
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(), "device_rng": device_.rng_state(dev),
            "sampler": sampler.state_dict(), "loss_sum": loss_sum.cpu(), "n_sum": n_sum,
            "train_loss": train_loss,
            "eval_loss": eval_loss, "guard_best": guard.best,
            "wall_seconds": wall_before + time.perf_counter() - t0})
        saved = step

    pending = sorted((b for b in branches if wsd.branch_step(b) >= start), key=wsd.branch_step)
    if len(pending) < len(branches):
        late = sorted({b.run_id for b in branches} - {b.run_id for b in pending})
        logger.warning("run %s: branches %s start before the resumed step %d; not trained here",
                       run.run_id, late, start)

    autocast = functools.partial(device_.autocast, dev)

    def one_step(lr: float) -> torch.Tensor:
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = device_.to_device(*dist_.shard(*sampler(), d), dev)
        with autocast():
            _, loss = net(x, y)
        loss.backward()
        if ts.grad_clip > 0:
            device_.clip_grads(params, ts.grad_clip, opt)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def bpb(nats: float | None) -> float | None:
        return None if nats is None else bits_per_byte(nats, corpus.byte_level)

    def branch(br: PlannedRun) -> None:
        """Train branch ``br``'s cooldown from the current state, then restore the state."""
        nonlocal t0
        bt0 = time.perf_counter()
        snap = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()),
                torch.get_rng_state(), copy.deepcopy(sampler.state_dict()),
                device_.rng_state(dev))
        if on_branch_start is not None:
            on_branch_start(br)
        bguard = DivergenceGuard(br)
        bguard.best = guard.best
        bsum, bn, result, reason = torch.zeros(()), 0, None, None
        try:
            for step in range(wsd.branch_step(br), br.steps):
                if dist_.stop_requested(should_stop, d):
                    reason = f"interrupted at step {step} of the cooldown of run {br.run_id}"
                    break
                lr = lr_at(step, br)
                bsum += one_step(lr)
                bn += 1
                last = step == br.steps - 1
                if last or (step + 1) % ts.log_every == 0:
                    tl = dist_.mean(bsum, d).item() / bn
                    bsum.zero_()
                    bn = 0
                    bguard.check(tl, step)
                    ev = acc = None
                    if last:
                        ev, acc = evaluate(model, ex, ey, dev)
                        if not math.isfinite(ev):
                            raise TrainError(f"held-out loss is {ev} at step {step} of run "
                                             f"{br.run_id}")
                    tokens = (step + 1) * br.batch_tokens
                    log(CurvePoint(br.run_id, step, tokens,
                                   shapes.flops_6nd(br.params_nonembed, tokens), tl, ev, lr,
                                   end_of_schedule=last, eval_bpb=bpb(ev)))
            else:
                wall = time.perf_counter() - bt0
                result = TrainResult(br.run_id, ev, tl, br.tokens, br.steps, wall,
                                     wsd.decay_steps(br) * br.batch_tokens / wall,
                                     epochs=epochs(br.tokens, corpus), heldout_top1_acc=acc)
                logger.info("run %s (branch of %s) done: held-out %s, %.1f s", br.run_id,
                            run.run_id, _fmt_loss(ev, corpus.byte_level), wall)
        except TrainError as exc:
            reason = str(exc)
        finally:
            model.load_state_dict(snap[0])
            opt.load_state_dict(snap[1])
            torch.set_rng_state(snap[2])
            sampler.load_state_dict(snap[3])
            device_.set_rng_state(dev, snap[4])
            t0 += time.perf_counter() - bt0  # branch time is the branch's, not this run's
        if on_branch_end is not None:
            on_branch_end(br, result, reason)

    acc = None
    for step in range(start, run.steps):
        while pending and wsd.branch_step(pending[0]) == step and not \
                dist_.stop_requested(should_stop, d):
            branch(pending.pop(0))
        if dist_.stop_requested(should_stop, d):
            if ckpt_dir is not None and step - 1 > saved:
                checkpoint(step - 1)
            kept = f"checkpoint after step {saved} in {ckpt_dir}" if saved >= 0 else "no checkpoint"
            raise TrainInterrupted(f"stopped at step {step} of run {run.run_id} ({kept})")
        lr = lr_at(step, run)
        loss_sum += one_step(lr)
        n_sum += 1

        last = step == run.steps - 1
        if last or step in evals or (step + 1) % ts.log_every == 0:
            train_loss = dist_.mean(loss_sum, d).item() / n_sum
            loss_sum.zero_()
            n_sum = 0
            guard.check(train_loss, step)
            ev = None
            if step in evals:
                ev, acc = evaluate(model, ex, ey, dev)
                eval_loss = ev
                if not math.isfinite(ev):
                    raise TrainError(f"held-out loss is {ev} at step {step} of run {run.run_id}")
                logger.info("run %s step %d: held-out %s", run.run_id, step,
                            _fmt_loss(ev, corpus.byte_level))
            tokens = (step + 1) * run.batch_tokens
            log(CurvePoint(run.run_id, step, tokens, shapes.flops_6nd(run.params_nonembed, tokens),
                           train_loss, ev, lr, end_of_schedule=last, eval_bpb=bpb(ev)))
        if every and not last and (step + 1) % every == 0:
            checkpoint(step)

    wall = wall_before + time.perf_counter() - t0
    logger.info("run %s done: held-out %s, train %.4f nats/token, %.1f s%s", run.run_id,
                _fmt_loss(eval_loss, corpus.byte_level), train_loss, wall,
                _mfu_text(run, dev, run.tokens / wall))
    return TrainResult(run.run_id, eval_loss, train_loss, run.tokens, run.steps, wall,
                       run.tokens / wall, epochs=n_epochs, heldout_top1_acc=acc)
