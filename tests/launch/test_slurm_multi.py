"""Slurm runs with several processes (train.nproc, launcher.nodes): the rendered srun +
torchrun script (golden, run by bash with stand-ins), and on the real one-node Slurm of
conftest.py a 1 node × 2 processes run that is preempted, requeues, resumes and matches one
process; per-size time limits as Slurm applies them.

Regenerate the golden script with SWEEP_UPDATE_GOLDEN=1 pytest tests/launch -k golden.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweep import api
from sweep.config import LauncherConf
from sweep.errors import ConfigError, LaunchError
from sweep.launch.slurm import SlurmLauncher, render_sbatch
from sweep.records import RunState
from sweep.store import Store
from sweep.train.worker import checkpoint_step

from .test_slurm import GOLDEN, HOSTILE, TINY, preempt, running, runs, sweep, wait_for

GOLDEN_DDP = GOLDEN.with_name("slurm_ddp.sbatch")
# 40 steps at lr 3e-3: float-order noise stays ~1e-7 (tests/train/test_ddp.py), so DDP over
# 2 processes must land within 1e-5 of one process
DDP = [*TINY, "model.widths=[32]", "budget.tokens=[10240]", "train.lr_rule=constant",
       "train.lr=3e-3", "train.nproc=2"]


def ddp_script() -> str:
    conf = LauncherConf(name="slurm", jobs=2, partition="cpu", time="04:00:00", cpus_per_task=2,
                        nodes=2, mem="8G", setup=["source /opt/env/bin/activate"])
    top = Path("/scratch/sweeps/ddp demo")
    sub = top / "slurm" / "20250101-000000-abcd"
    return render_sbatch(sweep="ddp", n_tasks=3, throttle=2, conf=conf, time_limit="04:00:00",
                         manifest=sub / "manifest", log_dir=sub, workdir=top,
                         python="/opt/venv/bin/python", nproc=2)


def test_sbatch_golden_multi_process():
    got = ddp_script()
    if os.environ.get("SWEEP_UPDATE_GOLDEN") == "1":
        GOLDEN_DDP.write_text(got)
    assert got == GOLDEN_DDP.read_text(), "rendered sbatch changed; SWEEP_UPDATE_GOLDEN=1 to accept"
    assert subprocess.run(["bash", "-n"], input=got, text=True, check=False).returncode == 0
    assert "#SBATCH --nodes=2" in got and "#SBATCH --cpus-per-task=4" in got  # 2 ranks × 2


def test_multi_process_script_runs_as_written(tmp_path):
    """The rendered multi-process script, run by bash with stand-in `scontrol` and `srun` on a
    root with spaces and quotes: srun gets one torchrun per node with the first node as the
    rendezvous host, a free port, the job id and the task's run directory; run.json gives each
    of the node's ranks cpus_per_task threads. Runs with different nproc cannot share an array."""
    root = tmp_path / HOSTILE
    api.plan_sweep("m", [*DDP, "budget.tokens=[1e4,2e4]", "launcher.cpus_per_task=3"], root)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && '
                                      'printf "node-a\\nnode-b\\n"\n')
    (bin_dir / "srun").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path}/srun.argv\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    fake = lambda args, **kw: subprocess.CompletedProcess(args, 0, "4242\n", "")  # noqa: E731
    with Store(root) as st:
        todo = [r.run for r in st.runs("m")]
    launcher = SlurmLauncher(root, "m", LauncherConf(name="slurm", cpus_per_task=3), 2,
                             python=sys.executable, runner=fake)
    launcher.submit(todo)
    script = launcher.sub_dir / "job.sbatch"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_ARRAY_TASK_ID="1",
               SLURM_ARRAY_JOB_ID="4242", SLURM_JOB_ID="4244", SLURM_NNODES="2",
               SLURM_JOB_NODELIST="node-[a-b]", SLURM_CPUS_PER_TASK="6")
    p = subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stderr
    argv = (tmp_path / "srun.argv").read_text().splitlines()
    i = argv.index(sys.executable)
    assert argv[:i] == ["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=6",
                        "--kill-on-bad-exit=1"]
    tr = argv[i + 1:]
    host, port = tr[tr.index("--rdzv-endpoint") + 1].split(":")
    assert host == "node-a" and 1024 <= int(port) < 65536
    assert tr[:8] == ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "2",
                      "--rdzv-backend", "c10d"]
    assert tr[tr.index("--rdzv-id") + 1] == "4244" and "SIGUSR1" in tr[tr.index("--rdzv-id") + 3]
    assert tr[-3:] == ["-m", "sweep.train.worker", str(launcher.run_dir(todo[1]))]
    spec = json.loads((launcher.run_dir(todo[1]) / "run.json").read_text())
    assert spec["threads"] == 6  # 2 ranks on the node × cpus_per_task 3
    assert not list(tmp_path.rglob("PWNED*"))
    one = dataclasses.replace(todo[0], train=dataclasses.replace(todo[0].train, nproc=1))
    with pytest.raises(LaunchError, match="different train.nproc"):
        launcher.render([one, todo[1]])
    three = SlurmLauncher(root, "m", LauncherConf(name="slurm", nodes=3), 2, runner=fake)
    with pytest.raises(ConfigError, match=r"\(8\) does not split over .* = 6 processes"):
        three.render(todo)  # 8 sequences over 3 nodes × 2


def test_nodes_and_nproc_must_split_the_batch(tmp_path):
    r = sweep(["plan", "s", *TINY, "train.nproc=2", "launcher.nodes=3"], tmp_path / "runs",
              code=2)
    assert "does not split over launcher.nodes × train.nproc = 6" in r.stderr
    r = sweep(["plan", "s", *TINY, "launcher.nodes=0"], tmp_path / "runs", code=2)
    assert r.stderr.count("Error:") == 1 and "launcher.nodes" in r.stderr


def matches_one_process(root: Path, name: str, planned) -> None:
    """The requeued multi-process run ended where one uninterrupted process ends: final loss and
    whole curve within 1e-5 (float summation order), after exactly 2 attempts."""
    from sweep.train.loop import train

    ref: list = []
    r_ref = train(planned, ref.append, threads=1)
    rec = runs(root, name)[planned.run_id]
    assert rec.attempts == 2
    assert abs(rec.final_loss - r_ref.final_loss) < 1e-5, (rec.final_loss, r_ref.final_loss)
    with Store(root) as st:
        curve = st.curves_df([name])
    assert curve.step.tolist() == [p.step for p in ref]
    assert curve.train_loss.tolist() == pytest.approx([p.train_loss for p in ref], abs=1e-5)


@pytest.mark.slurm
@pytest.mark.slow
def test_one_node_two_processes_requeue_and_match(slurm_cluster, tmp_path):
    """1 node × 2 processes (srun + torchrun, gloo) on the real Slurm: the run trains, gets
    Slurm's warning signal (USR1 to the batch shell, i.e. srun), every rank stops at the same
    step, rank 0 checkpoints and requeues the task, the task resumes on both ranks, and the
    final loss and curve match the same run trained in one process within 1e-5."""

    root = tmp_path / "runs"
    sweep(["plan", "ddp", *DDP, "budget.tokens=[40960]", "train.checkpoint_every=20"], root)
    out = json.loads(sweep(["launch", "ddp", "--executor", "slurm", "--json"], root).stdout)
    script = (root / "ddp" / "slurm").glob("*/job.sbatch").__next__().read_text()
    assert "srun" in script and "--nproc-per-node 2" in script
    run = wait_for(lambda: running(root, "ddp", progress=True), 120, "the run to train")
    assert run.job_id == out["job_id"] + "_0"
    t0 = time.monotonic()
    preempt(slurm_cluster, run.job_id)
    wait_for(lambda: runs(root, "ddp")[run.run.run_id].state == RunState.QUEUED, 90,
             "rank 0 to checkpoint and requeue")
    stopped = checkpoint_step(root / "ddp" / run.run.run_id / "ckpt")
    assert stopped is not None
    wait_for(lambda: slurm_cluster.jobs().get(run.job_id, ("",))[0] == "PENDING", 30,
             "the requeued task to wait")
    time.sleep(1.1)  # see test_preempted_task_requeues_and_resumes
    slurm_cluster.run("scontrol", "update", f"JobId={run.job_id}", "StartTime=now")
    wait_for(lambda: runs(root, "ddp")[run.run.run_id].state == RunState.COMPLETED, 150,
             "the resumed run to finish")
    print(f"\n1 node × 2 processes: requeue round trip {time.monotonic() - t0:.1f} s")
    log = (root / "ddp" / run.run.run_id / "worker.log").read_text()
    assert log.count(f"resuming after step {stopped} ") == 2  # both ranks loaded it
    assert "rank 1 of 2 joined the gloo process group" in log

    matches_one_process(root, "ddp", run.run)


@pytest.mark.slurm
def test_per_size_time_limits_reach_slurm(slurm_cluster, tmp_path):
    """launcher.size_overrides on the real Slurm: the array asks for the longest limit and the
    smaller run's task is lowered after submission; `scontrol show job` shows each task's own."""
    root = tmp_path / "runs"
    sweep(["plan", "t", *TINY, "model.widths=[32,64]", "budget.tokens=[4e5]"], root)
    sweep(["launch", "t", "--executor", "slurm", "--jobs", "1", "launcher.time=00:20:00",
           "launcher.size_overrides=[{min_params:5e4,time:'02:00:00'}]"], root)
    try:
        limits = {}
        for rec in runs(root, "t").values():
            line = slurm_cluster.run("scontrol", "show", "job", "-o", rec.job_id).stdout
            limits[rec.run.width] = dict(re.findall(r"(\w+)=(\S*)", line))["TimeLimit"]
        assert limits == {64: "02:00:00", 32: "00:20:00"}  # 67,776 and 21,600 params
    finally:
        sweep(["cancel", "t"], root)
