"""Training speed, measured in one process: the fp32 matmul peak, then the trainer's ``train()``
against a plain nanoGPT-style reference loop on the same model, batch and optimizer.

MFU = model FLOP/s ÷ the measured peak, with FLOPs per token = 6·N_nonembed + 12·n_layer·d·seq
(``sweep.shapes.flops_per_token``). Rates are per second of this process's CPU time
(``time.process_time``): with 1 thread (the default, one job slot of ``sweep launch``) that is the
time the one core worked for us, so other jobs on a shared machine barely move the figures; wall
rates are reported too. Trainer and reference alternate step by step (``paired_rates``), so load
changes hit both; every figure is the median over rounds, the ratio the median of per-round
ratios. The trainer is timed between its first and last train-loss point (its own logging,
``.item()`` syncs and data sampling included; model set-up and the final evaluation outside).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from sweep import shapes
from sweep.records import DataSettings, PlannedRun, TrainSettings
from sweep.train import loop
from sweep.train.data import load_corpus
from sweep.train.model import GPT, GPTConfig

DEMO_WIDTHS = (32, 64, 96, 128, 256)


@dataclass(frozen=True)
class Rate:
    """Tokens per CPU-second and per wall-second of one measurement."""

    cpu: float
    wall: float


def matmul_peak(sizes: tuple[int, ...] = (1024, 1536, 2048), repeats: int = 5) -> tuple[float, int]:
    """Best fp32 ``torch.mm`` rate (FLOP per CPU-second) over ``sizes`` × ``repeats``, and its
    size."""
    best, at = 0.0, sizes[0]
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        for _ in range(repeats):
            t = time.process_time()
            torch.mm(a, b)
            rate = 2.0 * n**3 / max(time.process_time() - t, 1e-9)
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


def reference_steps(run: PlannedRun, cache_dir=None) -> Iterator[None]:
    """A minimal nanoGPT-style loop (train.py without DDP, AMP or eval), one step per ``next``:
    a Python-built random batch, the LR set by hand, forward, backward, clip, AdamW step; the
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

    for it in range(run.steps):
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
        yield


def _clocks() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def reference_rate(run: PlannedRun, warmup: int, cache_dir=None) -> Rate:
    """Tokens/s of ``reference_steps`` alone over steps ``warmup`` … ``steps − 2``."""
    ref = reference_steps(run, cache_dir)
    for _ in range(warmup):
        next(ref)
    c0, w0 = _clocks()
    for _ in range(run.steps - 1 - warmup):
        next(ref)
    c1, w1 = _clocks()
    tokens = (run.steps - 1 - warmup) * run.batch_tokens
    return Rate(tokens / (c1 - c0), tokens / (w1 - w0))


def paired_rates(run: PlannedRun, warmup: int, cache_dir=None) -> tuple[Rate, Rate]:
    """(trainer, reference) tokens/s, interleaved step by step: ``loop.train`` emits a point
    every step, and its callback runs one reference step, timed apart. The trainer's time is
    from its point at step ``warmup − 1`` to the one at ``steps − 2`` (the last step also
    evaluates: left out) minus the reference steps inside; the reference's, those steps."""
    ref = reference_steps(run, cache_dir)
    spent = [0.0, 0.0, 0.0, 0.0]  # trainer cpu, wall; reference cpu, wall
    prev: list[tuple[float, float]] = []

    def on_point(p) -> None:
        now = _clocks()
        timed = warmup <= p.step <= run.steps - 2
        if timed:
            spent[0] += now[0] - prev[0][0]
            spent[1] += now[1] - prev[0][1]
        if p.step <= run.steps - 2:
            next(ref)
        after = _clocks()
        if timed:
            spent[2] += after[0] - now[0]
            spent[3] += after[1] - now[1]
        prev[:] = [after]

    loop.train(run, on_point, cache_dir=cache_dir)
    tr = (run.steps - 1 - warmup) * run.batch_tokens  # trainer steps warmup … steps − 2
    return Rate(tr / spent[0], tr / spent[1]), Rate(tr / spent[2], tr / spent[3])


@dataclass
class Row:
    """One width: medians over rounds of tokens per CPU-second (and per wall-second)."""

    width: int
    params_nonembed: int
    flops_per_token: float
    steps: int
    trainer_tps: float
    reference_tps: float
    ratio: float  # median over rounds of trainer ÷ reference (tokens per CPU-second)
    ratio_min: float
    ratio_max: float
    trainer_wall_tps: float
    reference_wall_tps: float

    def mfu(self, peak: float, which: str = "trainer") -> float:
        tps = self.trainer_tps if which == "trainer" else self.reference_tps
        return tps * self.flops_per_token / peak


def bench(widths: tuple[int, ...] = DEMO_WIDTHS, depth: int = 2, seq_len: int = 64,
          batch_size: int = 16, rounds: int = 5, seconds: float = 1.0, threads: int | None = 1,
          cache_dir=None, echo=print) -> tuple[float, list[Row]]:
    """Measure the peak, then each width: ``rounds`` interleaved trainer/reference measurements
    of about ``seconds`` CPU-seconds each; returns (peak FLOP per CPU-second, rows of medians).
    ``threads``: torch threads for everything (None: torch's default)."""
    logging.getLogger("sweep.train").setLevel(logging.WARNING)
    if threads:
        torch.set_num_threads(threads)
    peak, at = matmul_peak()
    echo(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP per CPU-second (best at {at}³, "
         f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    load_corpus(DataSettings(), cache_dir)
    rows = []
    for w in widths:
        fpt = shapes.flops_per_token(w, depth, seq_len)
        probe = reference_rate(bench_run(w, depth, seq_len, batch_size, 8), 3, cache_dir).cpu
        warmup = 5
        steps = warmup + 2 + max(20, int(seconds * probe / (batch_size * seq_len)))
        run = bench_run(w, depth, seq_len, batch_size, steps)
        trs, refs = [], []
        for _ in range(rounds):
            t, f = paired_rates(run, warmup, cache_dir)
            trs.append(t)
            refs.append(f)
        ratios = [t.cpu / f.cpu for t, f in zip(trs, refs)]
        med = statistics.median
        row = Row(w, run.params_nonembed, fpt, steps, med(t.cpu for t in trs),
                  med(f.cpu for f in refs), med(ratios), min(ratios), max(ratios),
                  med(t.wall for t in trs), med(f.wall for f in refs))
        rows.append(row)
        echo(f"width {w}: trainer {row.trainer_tps:,.0f}, reference {row.reference_tps:,.0f} "
             f"tokens per CPU-second; ratio {row.ratio:.3f} (rounds {min(ratios):.3f}…"
             f"{max(ratios):.3f}; {steps} steps)")
    return peak, rows


def table(peak: float, rows: list[Row], depth: int = 2, seq_len: int = 64,
          batch_size: int = 16) -> str:
    out = [f"depth {depth}, seq {seq_len}, batch {batch_size}; tok/s and GFLOP/s per CPU-second "
           f"(medians of rounds; '(wall)': per wall-clock second); FLOPs/token = 6·N_nonembed + "
           f"12·n_layer·d·seq",
           f"MFU vs {peak / 1e9:.1f} GFLOP per CPU-second; ratio = median of per-round "
           f"trainer ÷ reference tok/s [min–max over rounds]",
           f"{'width':>5} {'N_nonembed':>10} {'steps':>5} {'trainer tok/s':>13} {'(wall)':>8} "
           f"{'GFLOP/s':>7} {'MFU':>5} {'ref tok/s':>10} {'(wall)':>8} {'MFU':>5} "
           f"{'ratio':>5} {'[min–max]':>11}"]
    for r in rows:
        out.append(f"{r.width:>5} {r.params_nonembed:>10} {r.steps:>5} {r.trainer_tps:>13,.0f} "
                   f"{r.trainer_wall_tps:>8,.0f} "
                   f"{r.trainer_tps * r.flops_per_token / 1e9:>7.1f} {r.mfu(peak):>5.2f} "
                   f"{r.reference_tps:>10,.0f} {r.reference_wall_tps:>8,.0f} "
                   f"{r.mfu(peak, 'reference'):>5.2f} "
                   f"{r.ratio:>5.2f} [{r.ratio_min:.2f}–{r.ratio_max:.2f}]")
    return "\n".join(out)
