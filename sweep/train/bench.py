"""Training speed, measured in one process: the device's peak, then the trainer's ``train()``
against nanoGPT's own training loop and model (``sweep.train.reference``) on the same batch shape,
optimizer settings and seed, step by step alternately.

MFU = model FLOP/s ÷ peak, with FLOPs per token as nanoGPT's ``estimate_mfu`` counts them:
6·(N_nonembed + vocab·d) + 12·n_layer·d·seq, the tied LM head included
(``sweep.shapes.flops_per_token_mfu``).

On a CPU (the default) the peak is the measured fp32 matmul rate and rates are per second of this
process's CPU time (``time.process_time``): with 1 thread (the default, one job slot of ``sweep
launch``) that is the time the one core worked for us, so other jobs on a shared machine barely
move the figures; wall rates are reported too. On a GPU (``device="cuda"``) rates are per
wall-second (each step's ``loss.item()`` waits for the GPU, in both loops) and the peak is the
data-sheet dense peak of ``sweep.train.device.PEAK_TFLOPS`` for the precision (bf16, or TF32 for
fp32), or a measured bf16/TF32 matmul peak for a GPU not in the table.

Trainer and reference alternate step by step (``paired_rates``), so load changes hit both; every
figure is the median over rounds, the ratio the median of per-round ratios. The trainer is timed
between its first and last train-loss point (its own logging, ``.item()`` syncs and data sampling
included; model set-up and the final evaluation outside).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Iterator

import torch

from sweep import shapes
from sweep.records import DataSettings, PlannedRun, TrainSettings
from sweep.train import device as device_
from sweep.train import loop
from sweep.train.data import load_corpus
from sweep.train.reference import nanogpt_steps

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
              lr: float = 3e-3, device: str = "cpu", precision: str = "fp32",
              compile: bool = False) -> PlannedRun:
    """A PlannedRun of this shape (counts from sweep.shapes, as the planner makes them) with one
    evaluation (at the end) on a small set, a train-loss point every step, on ``device``."""
    vocab, n = 256, shapes.params_nonembed(width, depth)
    tokens = steps * batch_size * seq_len
    return PlannedRun(
        run_id=f"bench-w{width}-d{depth}", sweep="bench", width=width, depth=depth,
        heads=shapes.heads_for(width, 32), seq_len=seq_len, vocab=vocab,
        params=shapes.params_total(width, depth, vocab, seq_len), params_nonembed=n,
        tokens=tokens, flops_6nd=shapes.flops_6nd(n, tokens),
        flops_attn=shapes.flops_per_token(width, depth, seq_len) * tokens, steps=steps,
        batch_size=batch_size, batch_tokens=batch_size * seq_len, lr=lr, seed=0,
        train=TrainSettings(log_every=1, eval_points=1, eval_tokens=seq_len * 8, device=device,
                            precision=precision, compile=compile),
        data=DataSettings())


def reference_steps(run: PlannedRun, cache_dir=None) -> Iterator[float]:
    """The yardstick: nanoGPT's own loop and model (``sweep.train.reference``), one step per
    ``next``, on the same corpus, batch shape, optimizer settings and seed."""
    dev = device_.resolve(run.train.device, run.train.precision)
    return nanogpt_steps(run, load_corpus(run.data, cache_dir).train, str(dev.device),
                         run.train.precision)


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
    """One width: medians over rounds of tokens per CPU-second on a CPU, per wall-second on a
    GPU (and per wall-second in the ``*_wall_tps`` fields)."""

    width: int
    params_nonembed: int
    flops_per_token: float
    steps: int
    trainer_tps: float
    reference_tps: float
    ratio: float  # median over rounds of trainer ÷ reference (tokens per CPU- or wall-second)
    ratio_min: float
    ratio_max: float
    trainer_wall_tps: float
    reference_wall_tps: float

    def mfu(self, peak: float, which: str = "trainer") -> float:
        tps = self.trainer_tps if which == "trainer" else self.reference_tps
        return tps * self.flops_per_token / peak


def rate_unit(device: str) -> str:
    """What a rate is per: CPU-seconds on a CPU (robust to a shared machine), else wall-seconds."""
    return "per CPU-second" if device == "cpu" else "per wall-second"


def peak_for(dev: device_.Device, echo=print) -> float:
    """The peak MFU is measured against, announced through ``echo``."""
    if dev.type == "cpu":
        peak, at = matmul_peak()
        echo(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP per CPU-second (best at {at}³, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__})")
        return peak
    label = device_.name(dev)
    kind = f"{dev.precision} (TF32 matmuls)" if not dev.bf16 else "bf16"
    peak = device_.peak_flops(dev)
    if peak is not None:
        echo(f"{label}: data-sheet dense {kind} peak {peak / 1e12:.1f} TFLOP/s "
             "(sweep.train.device.PEAK_TFLOPS)")
        return peak
    peak = device_.measured_peak(dev)
    echo(f"{label}: not in the peak table; measured {kind} matmul peak {peak / 1e12:.1f} TFLOP/s")
    return peak


def bench(widths: tuple[int, ...] = DEMO_WIDTHS, depth: int = 2, seq_len: int = 64,
          batch_size: int = 16, rounds: int = 5, seconds: float = 1.0, threads: int | None = 1,
          cache_dir=None, echo=print, device: str = "cpu", precision: str = "fp32",
          compile: bool = False) -> tuple[float, list[Row]]:
    """Measure the peak, then each width: ``rounds`` interleaved trainer/reference measurements
    of about ``seconds`` (CPU-)seconds each; returns (peak FLOP/s, rows of medians), rates
    ``rate_unit(device)``. ``threads``: torch threads for everything (None: torch's default).
    ``device``/``precision``/``compile``: the trainer's train.device, .precision, .compile (the
    reference runs on the same device in the same precision, never compiled)."""
    logging.getLogger("sweep.train").setLevel(logging.WARNING)
    dev = device_.resolve(device, precision)  # ConfigError (one line) without such a device
    if threads:
        torch.set_num_threads(threads)
    peak = peak_for(dev, echo)
    pick = (lambda r: r.cpu) if dev.type == "cpu" else (lambda r: r.wall)
    unit = rate_unit(dev.type)
    load_corpus(DataSettings(), cache_dir)
    rows = []
    for w in widths:
        fpt = shapes.flops_per_token_mfu(w, depth, 256, seq_len)
        probe_run = bench_run(w, depth, seq_len, batch_size, 8, device=device,
                              precision=precision)
        probe = pick(reference_rate(probe_run, 3, cache_dir))
        warmup = 5 if not compile else 10  # compiling happens in the first steps
        steps = warmup + 2 + max(20, int(seconds * probe / (batch_size * seq_len)))
        run = bench_run(w, depth, seq_len, batch_size, steps, device=device, precision=precision,
                        compile=compile)
        trs, refs = [], []
        for _ in range(rounds):
            t, f = paired_rates(run, warmup, cache_dir)
            trs.append(t)
            refs.append(f)
        ratios = [pick(t) / pick(f) for t, f in zip(trs, refs)]
        med = statistics.median
        row = Row(w, run.params_nonembed, fpt, steps, med(pick(t) for t in trs),
                  med(pick(f) for f in refs), med(ratios), min(ratios), max(ratios),
                  med(t.wall for t in trs), med(f.wall for f in refs))
        rows.append(row)
        echo(f"width {w}: trainer {row.trainer_tps:,.0f}, reference {row.reference_tps:,.0f} "
             f"tokens {unit}; MFU {row.mfu(peak):.3f}; ratio {row.ratio:.3f} (rounds "
             f"{min(ratios):.3f}…{max(ratios):.3f}; {steps} steps)")
    return peak, rows


def table(peak: float, rows: list[Row], depth: int = 2, seq_len: int = 64,
          batch_size: int = 16, device: str = "cpu") -> str:
    unit = rate_unit(device)
    scale, flop = (1e9, "GFLOP") if device == "cpu" else (1e12, "TFLOP")
    out = [f"depth {depth}, seq {seq_len}, batch {batch_size}, {device}; tok/s and {flop}/s "
           f"{unit} (medians of rounds; '(wall)': per wall-clock second); FLOPs/token = "
           f"6·(N_nonembed + vocab·d) + 12·n_layer·d·seq (nanoGPT's estimate_mfu: tied LM head "
           f"counted)",
           f"MFU vs {peak / scale:.1f} {flop} {unit}; ratio = median "
           f"of per-round trainer ÷ reference (nanoGPT) tok/s [min–max over rounds]",
           f"{'width':>5} {'N_nonembed':>10} {'steps':>5} {'trainer tok/s':>13} {'(wall)':>8} "
           f"{flop + '/s':>7} {'MFU':>5} {'ref tok/s':>10} {'(wall)':>8} {'MFU':>5} "
           f"{'ratio':>5} {'[min–max]':>11}"]
    for r in rows:
        out.append(f"{r.width:>5} {r.params_nonembed:>10} {r.steps:>5} {r.trainer_tps:>13,.0f} "
                   f"{r.trainer_wall_tps:>8,.0f} "
                   f"{r.trainer_tps * r.flops_per_token / scale:>7.1f} {r.mfu(peak):>5.2f} "
                   f"{r.reference_tps:>10,.0f} {r.reference_wall_tps:>8,.0f} "
                   f"{r.mfu(peak, 'reference'):>5.2f} "
                   f"{r.ratio:>5.2f} [{r.ratio_min:.2f}–{r.ratio_max:.2f}]")
    return "\n".join(out)
