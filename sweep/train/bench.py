"""Training speed, measured in one process: the fp32 matmul peak, then the trainer's ``train()``
against a plain nanoGPT-style reference loop on the same model, batch and optimizer.

MFU = model FLOP/s ÷ the measured peak, with FLOPs per token = 6·N_nonembed + 12·n_layer·d·seq
(``sweep.shapes.flops_per_token``). Trainer and reference alternate per round so that machine
noise hits both; each reports its best round. The trainer is timed between its first and last
train-loss point (its own logging, ``.item()`` syncs and data sampling included; model set-up and
the single final evaluation outside), the reference over its steps after a warm-up.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from sweep import shapes
from sweep.records import DataSettings, PlannedRun, TrainSettings
from sweep.train import loop
from sweep.train.data import load_corpus
from sweep.train.model import GPT, GPTConfig

DEMO_WIDTHS = (32, 64, 96, 128, 256)


def matmul_peak(sizes: tuple[int, ...] = (1024, 1536, 2048), repeats: int = 5) -> tuple[float, int]:
    """Best fp32 ``torch.mm`` rate (FLOP/s) over ``sizes`` × ``repeats``, and its size."""
    best, at = 0.0, sizes[0]
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            rate = 2.0 * n**3 / (time.perf_counter() - t)
            if rate > best:
                best, at = rate, n
    return best, at


def bench_run(width: int, depth: int, seq_len: int, batch_size: int, steps: int,
              lr: float = 3e-3) -> PlannedRun:
    """A PlannedRun of this shape (counts from sweep.shapes, as the planner makes them) with one
    evaluation (at the end) on a small set, a train-loss point every step."""
    vocab, n = 256, shapes.params_nonembed(width, depth)
    tokens = steps * batch_size * seq_len
    return PlannedRun(
        run_id=f"bench-w{width}-d{depth}", sweep="bench", width=width, depth=depth,
        heads=shapes.heads_for(width, 32), seq_len=seq_len, vocab=vocab,
        params=shapes.params_total(width, depth, vocab, seq_len), params_nonembed=n,
        tokens=tokens, flops_6nd=6.0 * n * tokens,
        flops_attn=shapes.flops_per_token(width, depth, seq_len) * tokens, steps=steps,
        batch_size=batch_size, batch_tokens=batch_size * seq_len, lr=lr, seed=0,
        train=TrainSettings(log_every=1, eval_points=1, eval_tokens=seq_len * 8),
        data=DataSettings())


def trainer_rate(run: PlannedRun, warmup: int, cache_dir=None) -> float:
    """Tokens/s of ``loop.train`` over steps ``warmup`` … ``steps − 2`` (points every step)."""
    stamps: dict[int, float] = {}
    loop.train(run, lambda p: stamps.__setitem__(p.step, time.perf_counter()), cache_dir=cache_dir)
    a, b = warmup - 1, run.steps - 2  # the last step also evaluates: left out
    return (b - a) * run.batch_tokens / (stamps[b] - stamps[a])


def reference_rate(run: PlannedRun, warmup: int, cache_dir=None) -> float:
    """Tokens/s of a minimal nanoGPT-style loop (train.py without DDP, AMP or eval): per step a
    Python-built random batch, the LR set by hand, forward, backward, clip, AdamW step; the
    loss read with ``.item()`` every step as nanoGPT's ``log_interval=1`` does."""
    ts, T, B = run.train, run.seq_len, run.batch_size
    data = load_corpus(run.data, cache_dir).train
    torch.manual_seed(run.seed)
    model = GPT(GPTConfig(run.width, run.depth, run.heads, T, run.vocab))
    opt = model.optimizer(run.lr, ts.weight_decay, (ts.beta1, ts.beta2))

    def get_batch():
        ix = torch.randint(len(data) - T, (B,))
        x = torch.stack([torch.from_numpy(data[i:i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + T].astype(np.int64)) for i in ix])
        return x, y

    t = 0.0
    for it in range(run.steps - 1):
        if it == warmup:
            t = time.perf_counter()
        lr = run.lr * min(1.0, (it + 1) / 10) * 0.5 * (1 + math.cos(math.pi * it / run.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        X, Y = get_batch()
        _, loss = model(X, Y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), ts.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    return (run.steps - 1 - warmup) * run.batch_tokens / (time.perf_counter() - t)


@dataclass
class Row:
    width: int
    params_nonembed: int
    flops_per_token: float
    steps: int
    trainer_tps: float
    reference_tps: float

    def mfu(self, peak: float, which: str = "trainer") -> float:
        tps = self.trainer_tps if which == "trainer" else self.reference_tps
        return tps * self.flops_per_token / peak


def bench(widths: tuple[int, ...] = DEMO_WIDTHS, depth: int = 2, seq_len: int = 64,
          batch_size: int = 16, rounds: int = 3, seconds: float = 1.5, threads: int | None = None,
          cache_dir=None, echo=print) -> tuple[float, list[Row]]:
    """Measure the peak, then each width: ``rounds`` interleaved trainer/reference measurements
    of about ``seconds`` each; returns (peak FLOP/s, rows with the best round of each)."""
    logging.getLogger("sweep.train").setLevel(logging.WARNING)
    if threads:
        torch.set_num_threads(threads)
    peak, at = matmul_peak()
    echo(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s (best at {at}³, "
         f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    load_corpus(DataSettings(), cache_dir)
    rows = []
    for w in widths:
        fpt = shapes.flops_per_token(w, depth, seq_len)
        probe = reference_rate(bench_run(w, depth, seq_len, batch_size, 8), 3, cache_dir)
        warmup = 5
        steps = warmup + 2 + max(30, int(seconds * probe / (batch_size * seq_len)))
        run = bench_run(w, depth, seq_len, batch_size, steps)
        tr, ref = 0.0, 0.0
        for _ in range(rounds):
            tr = max(tr, trainer_rate(run, warmup, cache_dir))
            ref = max(ref, reference_rate(run, warmup, cache_dir))
        rows.append(Row(w, run.params_nonembed, fpt, steps, tr, ref))
        echo(f"width {w}: trainer {tr:,.0f}, reference {ref:,.0f} tokens/s ({steps} steps)")
    return peak, rows


def table(peak: float, rows: list[Row], depth: int = 2, seq_len: int = 64,
          batch_size: int = 16) -> str:
    out = [f"depth {depth}, seq {seq_len}, batch {batch_size}; FLOPs/token = 6·N_nonembed + "
           f"12·n_layer·d·seq; MFU vs {peak / 1e9:.1f} GFLOP/s",
           f"{'width':>5} {'N_nonembed':>10} {'steps':>5} {'trainer tok/s':>13} "
           f"{'GFLOP/s':>7} {'MFU':>5} {'ref tok/s':>10} {'GFLOP/s':>7} {'MFU':>5} "
           f"{'ratio':>5}"]
    for r in rows:
        out.append(f"{r.width:>5} {r.params_nonembed:>10} {r.steps:>5} {r.trainer_tps:>13,.0f} "
                   f"{r.trainer_tps * r.flops_per_token / 1e9:>7.1f} {r.mfu(peak):>5.2f} "
                   f"{r.reference_tps:>10,.0f} "
                   f"{r.reference_tps * r.flops_per_token / 1e9:>7.1f} "
                   f"{r.mfu(peak, 'reference'):>5.2f} "
                   f"{r.trainer_tps / r.reference_tps:>5.2f}")
    return "\n".join(out)
