"""Multi-process training (train.nproc): DDP under torchrun matches one process; signals and
resume work through the real worker path; precision and nproc are validated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sweep import config
from sweep.errors import ConfigError
from sweep.launch.local import worker_command
from sweep.records import CurvePoint, PlannedRun, RunState
from sweep.store import Store
from sweep.train import dist
from sweep.train.loop import train
from sweep.train.worker import checkpoint_step, write_spec

from test_loop import make_run  # tests/train is on sys.path (pytest rootdir-less import)

# Float summation order differs between DDP (two half-batch gradients, averaged) and one
# process. At lr 3e-3 × 40 steps this tiny model stays within ~1e-7 of itself under such
# reorderings (measured: 1 vs 2 threads, 3e-8 on the final loss), so 1e-5 is a tight bound
# that a wrong split (overlapping or missing rows, unaveraged gradients) exceeds by far.
# At lr 1e-2 × 60 steps the same reordering noise grows to ~1e-3 (chaotic, not a bug).
TOL = 1e-5


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus-cache")


def ddp_run(steps: int = 40, **kw) -> PlannedRun:
    return make_run(steps=steps, lr=3e-3, seq_len=32, batch_size=8, eval_tokens=8192,
                    log_every=10, nproc=2, **kw)


def prepare(run: PlannedRun, root: Path) -> Path:
    with Store(root) as st:
        st.put_plan(run.sweep, [], {}, [run])
    run_dir = root / run.sweep / run.run_id
    write_spec(run_dir, run, root, threads=2)
    return run_dir


def env_for(cache: Path) -> dict[str, str]:
    # W&B offline start-up costs seconds per rank-0 process and is not under test here
    return {**os.environ, "SWEEP_CACHE": str(cache), "WANDB_MODE": "disabled"}


def stored(root: Path, run: PlannedRun):
    """The run's record and curve as the store holds them."""
    with Store(root) as st:
        return st.runs(run.sweep)[0], st.curves_df([run.sweep])


def reference(run: PlannedRun, cache: Path) -> tuple[list[CurvePoint], float]:
    pts: list[CurvePoint] = []
    r = train(run, pts.append, cache_dir=cache, threads=1)  # one process, the whole batch
    return pts, r.final_loss


def alive(run_dir: Path) -> list[int]:
    """Pids of processes whose command line names ``run_dir`` (torchrun and its ranks)."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and str(run_dir).encode() in (p / "cmdline").read_bytes():
                pids.append(int(p.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_two_processes_match_one(cache: Path, tmp_path: Path) -> None:
    """nproc=2 through the real worker path (torchrun, gloo): the store's final loss and every
    curve point equal the single-process run's within TOL; rank 0 alone wrote the store."""
    run = ddp_run()
    root = tmp_path / "runs"
    run_dir = prepare(run, root)
    cmd = worker_command(run, run_dir)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env_for(cache), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    wall = time.monotonic() - t0
    assert p.returncode == 0, p.stderr[-3000:]
    assert "rank 1 of 2 joined the gloo process group" in p.stderr
    assert wall < 60, f"nproc=2 run took {wall:.1f} s"

    ref, ref_final = reference(run, cache)
    rec, curve = stored(root, run)
    assert rec.state == RunState.COMPLETED and rec.attempts == 1
    assert abs(rec.final_loss - ref_final) < TOL, (rec.final_loss, ref_final)
    assert ref_final < 4.0  # it learned (uniform guessing: ln 256 = 5.55 nats/token)
    assert curve.step.tolist() == [q.step for q in ref]  # one writer: no point doubled
    assert curve.train_loss.tolist() == pytest.approx([q.train_loss for q in ref], abs=TOL)


STAND_IN_LAUNCHER = """
import sys, time
from pathlib import Path
from sweep.launch.local import LocalJob
from sweep.records import PlannedRun
from sweep.train.worker import json
run_dir = Path(sys.argv[1])
job = LocalJob(PlannedRun.from_dict(json.loads((run_dir / "run.json").read_text())["run"]), run_dir)
job.start(2)
print(job.proc.pid, flush=True)
time.sleep(600)
"""


def wait_checkpoint(run_dir: Path, after: int, proc: subprocess.Popen) -> int:
    deadline = time.monotonic() + 60
    while (step := checkpoint_step(run_dir / "ckpt")) is None or step <= after:
        assert proc.poll() is None, f"exited early ({proc.returncode})"
        assert time.monotonic() < deadline, f"no checkpoint after step {after} within 60 s"
        time.sleep(0.01)
    return step


@pytest.mark.slow
def test_sigterm_or_dead_launcher_cancels_then_resume_matches(cache: Path,
                                                              tmp_path: Path) -> None:
    """1) SIGTERM to torchrun (what LocalJob.cancel sends) and 2) SIGKILL of the launcher that
    started torchrun (LocalJob.start in a stand-in process): every rank stops at one step, rank 0
    checkpoints and marks the run cancelled, no process is left. 3) Launched again, both ranks
    load the checkpoint and the run ends at the single-process loss (TOL)."""
    run = ddp_run(steps=300, checkpoint_every=20)  # 300 steps: 6e-8 float-order noise (measured)
    root = tmp_path / "runs"
    run_dir = prepare(run, root)
    cmd, env = worker_command(run, run_dir), env_for(cache)

    def state() -> RunState:
        with Store(root) as st:
            return st.runs(run.sweep)[0].state

    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_checkpoint(run_dir, -1, proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not alive(run_dir), "ranks left running after torchrun exited"
    first = checkpoint_step(run_dir / "ckpt")
    assert state() == RunState.CANCELLED and first is not None and first < run.steps - 1

    launcher = subprocess.Popen([sys.executable, "-c", STAND_IN_LAUNCHER, str(run_dir)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        torchrun = int(launcher.stdout.readline())
        wait_checkpoint(run_dir, first, launcher)
        launcher.kill()  # SIGKILL: nothing of the launcher runs any more
        launcher.wait()
        deadline = time.monotonic() + 60
        while alive(run_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert not alive(run_dir), f"torchrun ({torchrun}) or its ranks outlived their launcher"
    second = checkpoint_step(run_dir / "ckpt")
    assert state() == RunState.CANCELLED and first < second < run.steps - 1

    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from the checkpoint at step {second}" in done.stderr
    assert done.stderr.count(f"resuming after step {second} ") == 2  # both ranks loaded it
    ref, ref_final = reference(run, cache)
    rec, curve = stored(root, run)
    assert rec.state == RunState.COMPLETED and rec.attempts == 3
    assert abs(rec.final_loss - ref_final) < TOL, (rec.final_loss, ref_final)
    assert curve.step.tolist() == [q.step for q in ref]  # nothing lost or doubled
    assert curve.train_loss.tolist() == pytest.approx([q.train_loss for q in ref], abs=TOL)


def test_worker_command_and_rank_helpers() -> None:
    one, two = make_run(), make_run(nproc=2)
    assert worker_command(one, Path("/r d"))[1:] == ["-m", "sweep.train.worker", "/r d"]
    cmd = worker_command(two, Path("/r d"))
    assert cmd[cmd.index("--nproc-per-node") + 1] == "2"
    assert "SIGUSR1" in cmd[cmd.index("--signals-to-handle") + 1]
    assert cmd[-3:] == ["-m", "sweep.train.worker", "/r d"]

    assert dist.from_env({}) == dist.Dist()
    d1 = dist.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (d1.rank, d1.world, d1.is_main, d1.enabled) == (1, 2, False, True)
    two_nodes = dist.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"})
    assert dist.rank_threads(8, two_nodes) == 4  # the node's threads over the node's ranks
    x = torch.arange(8 * 3).reshape(8, 3)
    rows = [dist.shard(x, x + 1, dist.Dist(r, 2))[0] for r in range(2)]
    assert torch.equal(torch.cat(rows), x)  # disjoint slices covering the global batch
    assert dist.rank_threads(4, d1) == 2 and dist.rank_threads(1, d1) == 1
    with pytest.raises(ValueError, match="does not split"):
        dist.shard(x[:7], x[:7], d1)


def test_config_nproc_and_precision() -> None:
    cfg = config.load(["budget.tokens=[1e5]"])
    assert (cfg.train.nproc, cfg.train.precision) == (1, "fp32")
    assert config.load(["budget.tokens=[1e5]", "train.nproc=4"]).train.nproc == 4
    with pytest.raises(ConfigError, match=r"train.nproc \(3\) must .* divide train.batch_size"):
        config.load(["budget.tokens=[1e5]", "train.nproc=3"])
    with pytest.raises(ConfigError, match="train.nproc"):
        config.load(["budget.tokens=[1e5]", "train.nproc=0"])
    with pytest.raises(ConfigError, match="train.precision must be 'fp32' or 'bf16'"):
        config.load(["budget.tokens=[1e5]", "train.precision=fp16"])


def test_bf16_runs_under_autocast(cache: Path) -> None:
    """bf16 (slow on CPUs without bf16 instructions: a few steps only) trains to a finite loss
    that differs from fp32's, so autocast really ran."""
    kw = dict(steps=3, seq_len=32, batch_size=4, eval_tokens=1024, eval_points=1)
    r16 = train(make_run(precision="bf16", **kw), lambda p: None, cache_dir=cache, threads=1)
    r32 = train(make_run(**kw), lambda p: None, cache_dir=cache, threads=1)
    assert torch.isfinite(torch.tensor(r16.final_loss)) and r16.final_loss < 6.0
    assert r16.final_loss != r32.final_loss


def test_wsd_branches_under_two_processes_match_one(cache: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A WSD shape with two cooldown branches, launched with train.nproc=2 and with 1: every
    run (main and branches, trained by the main run's ranks in lockstep) ends at the same loss."""
    from sweep import api

    monkeypatch.setenv("SWEEP_CACHE", str(cache))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "runs"
    finals = []
    for n in (1, 2):
        api.plan_sweep(f"p{n}", ["train.schedule=wsd", "model.widths=[32]", "model.depths=[1]",
                                 "train.lr=3e-3", "train.eval_tokens=4096",
                                 "budget.tokens=[1e4,2e4,4e4]", f"train.nproc={n}"], root)
        api.launch(f"p{n}", root, jobs=1, progress=False)
        with Store(root) as st:
            recs = st.runs(f"p{n}")
        assert {r.state for r in recs} == {RunState.COMPLETED}, [r.error for r in recs]
        finals.append(sorted((r.run.tokens, r.final_loss) for r in recs))
    assert [t for t, _ in finals[0]] == [t for t, _ in finals[1]] and len(finals[0]) == 3
    for (_, one), (_, two) in zip(*finals):
        assert abs(one - two) < 1e-4  # ~2e-5 measured at this size (float summation order)
