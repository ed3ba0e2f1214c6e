"""Checkpoint and resume: a stopped or killed run, resumed, ends exactly as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sweep.errors import TrainError, TrainInterrupted
from sweep.records import CurvePoint, RunState
from sweep.store import Store
from sweep.train.data import BatchSampler
from sweep.train.loop import CKPT_KEEP, checkpoints, train
from sweep.train.worker import checkpoint_step, write_spec

from test_loop import make_run  # tests/train is on sys.path (pytest rootdir-less import)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus-cache")


def stop_at(step: int):
    """A should_stop that says stop at the step boundary before 0-based ``step`` of this call."""
    calls = iter(range(10**6))
    return lambda: next(calls) >= step


def key(p: CurvePoint) -> tuple:
    return (p.step, p.tokens, p.train_loss, p.eval_loss, p.lr, p.end_of_schedule)


@pytest.mark.parametrize("chunk_pos", [0, 1, 5, 7, 8])
def test_sampler_state_round_trip(chunk_pos: int) -> None:
    tokens = np.arange(5000, dtype=np.uint16) % 256
    a = BatchSampler(tokens, 4, 16, seed=3, chunk=8)
    for _ in range(8 + chunk_pos):  # one whole chunk, then chunk_pos batches into the next
        a()
    b = BatchSampler(tokens, 4, 16, seed=99, chunk=8)
    b.load_state_dict(a.state_dict())
    for _ in range(20):
        (xa, ya), (xb, yb) = a(), b()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_resume_equals_uninterrupted(cache: Path, tmp_path: Path) -> None:
    """Stopped twice (one stop right after a periodic checkpoint, one between), resumed each
    time: the same points, final losses equal to 1e-6 (in fact bit for bit)."""
    run = make_run(steps=40, checkpoint_every=10)
    ref: list[CurvePoint] = []
    r_ref = train(run, ref.append, cache_dir=cache, threads=1)

    ckpt, got = tmp_path / "ckpt", []
    with pytest.raises(TrainInterrupted, match=r"stopped at step 13 .*after step 12"):
        train(run, got.append, cache_dir=cache, threads=1, should_stop=stop_at(13),
              checkpoint_dir=ckpt)
    assert [s for s, _ in checkpoints(ckpt)] == [12, 9] and checkpoint_step(ckpt) == 12
    assert max(p.step for p in got) <= 12
    with pytest.raises(TrainInterrupted, match=r"stopped at step 20 .*after step 19"):
        train(run, got.append, cache_dir=cache, threads=1, should_stop=stop_at(7),
              checkpoint_dir=ckpt)  # 13 + 7: stops right after the periodic one at step 19
    assert [s for s, _ in checkpoints(ckpt)] == [19, 12]
    r = train(run, got.append, cache_dir=cache, threads=1, checkpoint_dir=ckpt)

    assert [key(p) for p in got] == [key(p) for p in ref]  # nothing lost or repeated
    assert r.final_loss == pytest.approx(r_ref.final_loss, abs=1e-6)
    assert r.final_train_loss == pytest.approx(r_ref.final_train_loss, abs=1e-6)
    assert r.steps == r_ref.steps and r.tokens == r_ref.tokens
    assert len(checkpoints(ckpt)) == CKPT_KEEP and checkpoints(ckpt)[0][0] == 29


def test_stop_before_any_step_and_on_checkpoint_hook(cache: Path, tmp_path: Path) -> None:
    run = make_run(steps=12, checkpoint_every=5)
    with pytest.raises(TrainInterrupted, match="stopped at step 0 .*no checkpoint"):
        train(run, lambda p: None, cache_dir=cache, threads=1, should_stop=lambda: True,
              checkpoint_dir=tmp_path)
    assert checkpoints(tmp_path) == []
    seen: list[int] = []
    train(run, lambda p: None, cache_dir=cache, threads=1, checkpoint_dir=tmp_path,
          on_checkpoint=seen.append)
    assert seen == [4, 9]  # never at the last step: the run is complete there


def test_damaged_checkpoint_falls_back_and_other_run_refused(cache: Path, tmp_path: Path) -> None:
    run = make_run(steps=25, checkpoint_every=10)
    ref = train(run, lambda p: None, cache_dir=cache, threads=1)
    with pytest.raises(TrainInterrupted):
        train(run, lambda p: None, cache_dir=cache, threads=1, should_stop=stop_at(15),
              checkpoint_dir=tmp_path)
    newest = checkpoints(tmp_path)[0][1]
    newest.write_bytes(newest.read_bytes()[:100])  # torn (cannot happen with os.replace; disk)
    (tmp_path / "step_000020.pt.abc.tmp").write_bytes(b"partial")  # a write killed midway
    got: list[CurvePoint] = []
    r = train(run, got.append, cache_dir=cache, threads=1, checkpoint_dir=tmp_path)
    assert got[0].step == 14  # resumed after step 9: the points after it come again
    assert r.final_loss == pytest.approx(ref.final_loss, abs=1e-6)
    assert not list(tmp_path.glob("*.tmp"))

    with pytest.raises(TrainError, match="different run configuration .*lr"):
        train(make_run(steps=25, checkpoint_every=10, lr=2e-2), lambda p: None,
              cache_dir=cache, threads=1, checkpoint_dir=tmp_path)


def test_worker_killed_with_sigkill_resumes(cache: Path, tmp_path: Path) -> None:
    """A real worker process, SIGKILLed once a checkpoint exists, started again: the store ends
    with the uninterrupted run's final loss (1e-6) and exactly its curve."""
    run = make_run(steps=160, seq_len=32, batch_size=8, eval_tokens=8192, log_every=10,
                   checkpoint_every=20)
    root = tmp_path / "runs"
    with Store(root) as st:
        st.put_plan(run.sweep, [], {}, [run])
    run_dir = root / run.sweep / run.run_id
    write_spec(run_dir, run, root, threads=1)
    # W&B offline start-up costs seconds and is not under test here
    env = {**os.environ, "SWEEP_CACHE": str(cache), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "sweep.train.worker", str(run_dir)]

    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while checkpoint_step(run_dir / "ckpt") is None:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.005)
        time.sleep(0.03)  # some steps past it: points after the checkpoint, some unflushed
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoint_step(run_dir / "ckpt")
    with Store(root) as st:
        rec = st.runs(run.sweep)[0]
        assert rec.state == RunState.RUNNING and rec.attempts == 1  # as the kill left it
        assert st.curves_df([run.sweep]).step.max() < run.steps - 1

    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"resuming from the checkpoint at step {killed_at}" in done.stderr

    ref: list[CurvePoint] = []
    r_ref = train(run, ref.append, cache_dir=cache, threads=1)
    with Store(root) as st:
        rec = st.runs(run.sweep)[0]
        curve = st.curves_df([run.sweep])
    assert rec.state == RunState.COMPLETED and rec.attempts == 2
    assert rec.final_loss == pytest.approx(r_ref.final_loss, abs=1e-6)
    assert curve.step.tolist() == [p.step for p in ref]  # no point lost or doubled
    assert curve.train_loss.tolist() == pytest.approx([p.train_loss for p in ref], abs=1e-6)
    assert curve.eval_loss.dropna().tolist() == pytest.approx(
        [p.eval_loss for p in ref if p.eval_loss is not None], abs=1e-6)
