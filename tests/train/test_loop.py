"""The training loop: LR schedule, determinism, learning, curve points and failures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import sweep.train.loop as loop
from sweep import shapes
from sweep.errors import TrainError, TrainInterrupted
from sweep.records import CurvePoint, DataSettings, PlannedRun, TrainSettings
from sweep.train.data import load_corpus
from sweep.train.loop import eval_steps, lr_at, train


def make_run(width: int = 32, depth: int = 1, steps: int = 30, lr: float = 1e-2, *,
             seq_len: int = 64, batch_size: int = 16, seed: int = 0, **train_kw: Any) -> PlannedRun:
    """A PlannedRun whose counts come from sweep.shapes (as the planner makes them)."""
    vocab, n = 256, shapes.params_nonembed(width, depth)
    tokens = steps * batch_size * seq_len
    return PlannedRun(
        run_id=f"w{width}-d{depth}-s{steps}", sweep="test", width=width, depth=depth,
        heads=max(1, width // 32), seq_len=seq_len, vocab=vocab,
        params=shapes.params_total(width, depth, vocab, seq_len), params_nonembed=n,
        tokens=tokens, flops_6nd=6.0 * n * tokens,
        flops_attn=shapes.flops_per_token(width, depth, seq_len) * tokens, steps=steps,
        batch_size=batch_size, batch_tokens=batch_size * seq_len, lr=lr, seed=seed,
        train=TrainSettings(**{"log_every": 5, "eval_tokens": 4096, **train_kw}))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus-cache")


@pytest.mark.parametrize("steps,warmup", [(200, 0.05), (37, 0.1), (10, 0.0), (2, 0.5)])
def test_lr_schedule(steps: int, warmup: float) -> None:
    run = make_run(steps=steps, lr=3e-3, warmup_frac=warmup, min_lr_frac=0.1)
    lrs = [lr_at(s, run) for s in range(steps)]
    w = loop.warmup_steps(run)
    assert all(a < b for a, b in zip(lrs[:w], lrs[1:w + 1]))  # warmup rises ...
    assert lrs[w] == pytest.approx(3e-3)  # ... to the peak
    assert all(a >= b for a, b in zip(lrs[w:], lrs[w + 1:]))  # then decays monotonically
    # reaching the minimum exactly at the last step
    assert lrs[-1] == pytest.approx(3e-4, rel=1e-12)
    assert max(lrs) == pytest.approx(3e-3) and min(lrs[w:]) == lrs[-1]


def test_lr_schedule_single_step() -> None:
    assert lr_at(0, make_run(steps=1, lr=1e-3)) == pytest.approx(1e-4)


def test_eval_steps_are_log_spaced_and_end_at_the_last_step() -> None:
    assert eval_steps(976, 4) == [0, 9, 97, 975]
    assert eval_steps(100, 1) == [99]
    s = eval_steps(3, 8)
    assert s == sorted(set(s)) and s[-1] == 2


def test_training_is_deterministic_and_learns(cache: Path) -> None:
    points: list[CurvePoint] = []
    r1 = train(make_run(), points.append, cache_dir=cache, threads=1)
    r2 = train(make_run(), lambda p: None, cache_dir=cache, threads=1)
    assert r1.final_loss == r2.final_loss and r1.final_train_loss == r2.final_train_loss
    corpus = load_corpus(DataSettings(), cache)
    p = np.bincount(np.asarray(corpus.heldout), minlength=256) / len(corpus.heldout)
    unigram = float(-(p[p > 0] * np.log(p[p > 0])).sum())  # ≈ 3.2 nats/byte
    assert r1.final_loss < unigram - 0.1 < 4.0
    assert r1.steps == 30 and r1.tokens == 30 * 1024 and r1.wall_seconds > 0

    run = make_run()
    assert [p.step for p in points] == sorted({4, 9, 14, 19, 24, 29} | set(eval_steps(30, 4)))
    end = [p for p in points if p.end_of_schedule]
    assert len(end) == 1 and end[0] is points[-1] and end[0].step == 29
    assert end[0].eval_loss == r1.final_loss and end[0].train_loss == r1.final_train_loss
    assert end[0].lr == pytest.approx(run.lr * run.train.min_lr_frac)
    for p in points:
        assert p.tokens == (p.step + 1) * run.batch_tokens
        assert p.flops == 6.0 * run.params_nonembed * p.tokens
        assert (p.eval_loss is not None) == (p.step in eval_steps(30, 4))
        assert p.train_loss is not None and math.isfinite(p.train_loss)


def test_nan_loss_is_a_train_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class PoisonedGPT(loop.GPT):
        def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> Any:
            logits, loss = super().forward(idx, targets)
            self.calls = getattr(self, "calls", 0) + self.training  # training forwards only
            return logits, (loss * float("nan") if self.calls > 10 else loss)  # from step 10 on

    monkeypatch.setattr(loop, "GPT", PoisonedGPT)
    with pytest.raises(TrainError, match="nan by step 14"):  # the first log point after step 10
        train(make_run(), lambda p: None, cache_dir=cache, threads=1)


def test_should_stop_interrupts(cache: Path) -> None:
    calls = iter(range(100))
    points: list[CurvePoint] = []
    with pytest.raises(TrainInterrupted, match="stopped at step 7 .*no checkpoint"):
        train(make_run(), points.append, cache_dir=cache, threads=1,
              should_stop=lambda: next(calls) >= 7)
    assert points and not any(p.end_of_schedule for p in points)


def test_divergence_guard_rules() -> None:
    run = make_run(steps=100, warmup_frac=0.1)  # warmup: steps 0-9
    g = loop.DivergenceGuard(run)
    g.check(5.5, 0)
    g.check(2.0, 4)
    g.check(4.5, 9)  # a spike during warmup is tolerated ...
    with pytest.raises(TrainError, match=r"diverged: training loss 4\.5 at step 10 .*more than "
                                         r"2x the lowest so far \(2\)"):
        g.check(4.5, 10)  # ... not after it
    g.check(3.9, 11)
    with pytest.raises(TrainError, match=r"exceeds ln\(vocab\) \+ 1 = 6\.545"):
        loop.DivergenceGuard(run).check(6.6, 0)  # worse than uniform guessing, at any step
    for bad in (math.nan, math.inf):
        with pytest.raises(TrainError, match=f"became {bad} by step 3"):
            loop.DivergenceGuard(run).check(bad, 3)


def test_diverged_run_fails_in_the_store_with_its_reason(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A learning rate far too high: the worker marks the run failed, naming the reason."""
    from sweep.records import RunState
    from sweep.store import Store
    from sweep.train.worker import run_worker, write_spec

    monkeypatch.setenv("SWEEP_CACHE", str(cache))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr("signal.signal", lambda *a: None)  # keep pytest's own handlers
    run = make_run(lr=3.0, grad_clip=0.0)
    root = tmp_path / "runs"
    with Store(root) as st:
        st.put_plan(run.sweep, [], {}, [run])
    write_spec(tmp_path / "run", run, root, threads=1)
    assert run_worker(tmp_path / "run") == 1
    with Store(root) as st:
        rec = st.runs(run.sweep)[0]
    assert rec.state == RunState.FAILED
    assert rec.error.startswith("diverged: training loss ") and "ln(vocab)" in rec.error


def test_held_out_loss_is_logged_in_nats_per_token_and_bits_per_byte(
        cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert loop.bits_per_byte(math.log(2), True) == pytest.approx(1.0)
    assert loop.bits_per_byte(2.0, False) is None  # tokens are not bytes (a .bin corpus)
    caplog.set_level("INFO", logger="sweep.train.loop")
    r = train(make_run(steps=5), lambda p: None, cache_dir=cache, threads=1)
    done = [m for m in caplog.messages if " done: " in m]
    bpb = r.final_loss / math.log(2)
    assert done and f"held-out {r.final_loss:.4f} nats/token = {bpb:.4f} bits/byte" in done[0]


def test_trains_on_a_token_file_and_warns_past_one_epoch(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import dataclasses

    from sweep.errors import ConfigError

    (np.arange(3000) % 50).astype(np.uint16).tofile(tmp_path / "toy.bin")  # 0..49 repeating
    data = DataSettings(path=str(tmp_path / "toy.bin"), heldout_frac=0.2)
    run = dataclasses.replace(make_run(steps=20), data=data)  # 20 · 1024 tokens ≫ 2400
    caplog.set_level("INFO", logger="sweep.train.loop")
    r = train(run, lambda p: None, threads=1)
    assert r.final_loss < math.log(50) - 1  # learns the cycle well beyond uniform over its ids
    warn = [m for m in caplog.messages if "epochs" in m and "data repeats" in m]
    assert warn and "8.53 epochs of the 2400-token training split" in warn[0]
    assert not any("bits/byte" in m for m in caplog.messages)  # tokens are not bytes

    (np.arange(3000) % 300).astype(np.uint16).tofile(tmp_path / "big.bin")
    big = dataclasses.replace(run, data=DataSettings(path=str(tmp_path / "big.bin")))
    with pytest.raises(ConfigError,
                       match=r"model vocab 256 is smaller than the corpus needs \(300"):
        train(big, lambda p: None, threads=1)


def test_eval_points_carry_bits_per_byte_and_the_result_epochs_and_top1(cache: Path) -> None:
    """Every held-out point has eval_bpb = eval_loss / ln 2 (byte corpus), other points none;
    the result carries epochs (tokens / training split) and a held-out top-1 accuracy that a
    trained model lifts above the most frequent byte's share (0.265 → 0.290 measured)."""
    points: list[CurvePoint] = []
    run = make_run(steps=60)
    r = train(run, points.append, cache_dir=cache, threads=1)
    for p in points:
        if p.eval_loss is None:
            assert p.eval_bpb is None
        else:
            assert p.eval_bpb == pytest.approx(p.eval_loss / math.log(2), rel=1e-12)
    corpus = load_corpus(DataSettings(), cache)
    assert r.epochs == pytest.approx(run.tokens / len(corpus.train), rel=1e-12)
    x, y = loop.eval_set(corpus.heldout, run.seq_len, run.train.eval_tokens)
    top_byte = float(np.bincount(y.numpy().ravel(), minlength=256).max() / y.numel())
    assert 0 < r.heldout_top1_acc <= 1 and r.heldout_top1_acc > top_byte + 0.015


def test_top1_accuracy_counts_argmax_hits() -> None:
    class Fixed(torch.nn.Module):  # predicts token (input + 1) mod 4
        def forward(self, idx, targets):
            logits = torch.nn.functional.one_hot((idx + 1) % 4, 4).float() * 10
            return logits, torch.nn.functional.cross_entropy(logits.view(-1, 4),
                                                             targets.reshape(-1))

    x = torch.tensor([[0, 1, 2], [3, 0, 1]])
    y = torch.tensor([[1, 2, 0], [0, 1, 1]])  # hits: 1,2 | 0,1 → 4 of 6
    _, acc = loop.evaluate(Fixed(), x, y)
    assert acc == pytest.approx(4 / 6)
