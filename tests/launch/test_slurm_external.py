"""On the real Slurm of conftest.py: the external-trainer contract under a real requeue
(examples/nanogpt_trainer.py gets SIGUSR1 from its worker, checkpoints, exits 75, the worker
requeues the task, the trainer resumes from $SWEEP_CHECKPOINT_DIR to the uninterrupted loss);
a run on two nodes (launcher.nodes=2, train.nproc=1: srun + one torchrun per node, c10d
rendezvous between the two slurmd "nodes" n1, n2) preempted, requeued and matching one process;
and GPU binding (launcher.gpus=1 per rank: each rank sees the node's stand-in GPUs in
CUDA_VISIBLE_DEVICES and picks its own by LOCAL_RANK).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from sweep.records import RunState
from sweep.store import Store
from sweep.train.worker import checkpoint_step

from .test_slurm import preempt, running, runs, sweep, wait_for
from .test_slurm_multi import DDP, matches_one_process

NANOGPT = Path(__file__).resolve().parents[2] / "examples" / "nanogpt_trainer.py"
GPT = ["model.widths=[32]", "model.depths=[1]", "model.seq_len=32", "train.batch_size=8",
       "train.eval_tokens=8192", "train.log_every=10", "train.checkpoint_every=50",
       "budget.tokens=[76800]", f"train.command='{sys.executable} {NANOGPT}'"]


def requeue_now(cluster, job_id: str) -> None:
    """Skip the ≈120 s BeginTime wait of a requeued task (after a second: see
    test_slurm.test_preempted_task_requeues_and_resumes)."""
    wait_for(lambda: cluster.jobs().get(job_id, ("",))[0] == "PENDING", 30,
             "the requeued task to wait")
    time.sleep(1.1)
    cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")


@pytest.mark.slurm
@pytest.mark.slow
def test_external_trainer_requeues_and_resumes_to_the_same_loss(slurm_cluster, tmp_path):
    root = tmp_path / "runs"
    for name in ("pre", "ref"):
        sweep(["plan", name, *GPT], root)
        sweep(["launch", name, "--executor", "slurm", "--json"], root)
    run = wait_for(lambda: running(root, "pre", progress=True), 120, "the trainer to log")
    run_dir = root / "pre" / run.run.run_id
    t0 = time.monotonic()
    preempt(slurm_cluster, run.job_id)
    wait_for(lambda: runs(root, "pre")[run.run.run_id].state == RunState.QUEUED, 90,
             "the trainer to checkpoint, exit 75 and the worker to requeue")
    stopped = checkpoint_step(run_dir / "ckpt")
    assert stopped is not None and stopped < run.run.steps - 1
    requeue_now(slurm_cluster, run.job_id)
    wait_for(lambda: runs(root, "pre")[run.run.run_id].state == RunState.COMPLETED, 150,
             "the resumed run to finish")
    print(f"\nexternal trainer requeue round trip: {time.monotonic() - t0:.1f} s")
    wait_for(lambda: all(r.state == RunState.COMPLETED for r in runs(root, "ref").values()),
             150, "the reference run")
    pre, ref = runs(root, "pre")[run.run.run_id], next(iter(runs(root, "ref").values()))
    assert pre.attempts == 2 and ref.attempts == 1
    print(f"external trainer after a Slurm requeue: {pre.final_loss!r} vs uninterrupted "
          f"{ref.final_loss!r} nats/token (checkpoint at step {stopped})")
    assert abs(pre.final_loss - ref.final_loss) < 1e-6, (pre.final_loss, ref.final_loss)
    log = (run_dir / "worker.log").read_text()
    assert "got SIGUSR1: checkpoint after step" in log and f"resuming after step {stopped}" in log
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(9, 300, 10))  # history kept, no step twice
    with Store(root) as st:
        a, b = st.curves_df(["pre"]), st.curves_df(["ref"])
    assert a.step.tolist() == b.step.tolist() == steps
    assert a.train_loss.tolist() == pytest.approx(b.train_loss.tolist(), abs=1e-6)


@pytest.mark.slurm
@pytest.mark.slow
def test_two_nodes_requeue_and_match(slurm_cluster, tmp_path):
    """launcher.nodes=2 train.nproc=1 on partition "two" (slurmd n1 and n2): one torchrun per
    node, one rank on n1 and one on n2, the rendezvous at n1's NodeAddr; USR1 stops both at one
    step, rank 0 checkpoints and requeues, both resume; loss and curve match one process."""

    root = tmp_path / "runs"
    grid = [*DDP, "train.nproc=1", "budget.tokens=[40960]", "train.checkpoint_every=20"]
    sweep(["plan", "mn", *grid], root)
    out = json.loads(sweep(["launch", "mn", "--executor", "slurm", "--json", "launcher.nodes=2",
                            "launcher.partition=two"], root).stdout)
    script = next((root / "mn" / "slurm").glob("*/job.sbatch")).read_text()
    assert "#SBATCH --nodes=2" in script and "--nproc-per-node 1" in script
    run = wait_for(lambda: running(root, "mn", progress=True), 120, "the run to train")
    assert run.job_id == out["job_id"] + "_0"
    line = slurm_cluster.run("scontrol", "show", "job", "-o", run.job_id).stdout
    assert dict(re.findall(r"(\w+)=(\S*)", line))["NodeList"] == "n[1-2]"
    preempt(slurm_cluster, run.job_id)
    wait_for(lambda: runs(root, "mn")[run.run.run_id].state == RunState.QUEUED, 90,
             "rank 0 to checkpoint and requeue")
    stopped = checkpoint_step(root / "mn" / run.run.run_id / "ckpt")
    assert stopped is not None
    requeue_now(slurm_cluster, run.job_id)
    wait_for(lambda: runs(root, "mn")[run.run.run_id].state == RunState.COMPLETED, 150,
             "the resumed run to finish")
    log = (root / "mn" / run.run.run_id / "worker.log").read_text()
    assert log.count(f"resuming after step {stopped} ") == 2  # both ranks loaded it
    ranks = re.findall(r"rank (\d) of 2 on (n\d),", log)  # per attempt: a rank on each node
    nodes = [{n for _, n in ranks[:2]}, {n for _, n in ranks[2:]}]
    assert len(ranks) == 4 and nodes == [{"n1", "n2"}] * 2
    assert sorted(r for r, _ in ranks) == ["0", "0", "1", "1"]  # c10d orders ranks by arrival

    matches_one_process(root, "mn", run.run)


@pytest.mark.slurm
def test_gpus_bind_one_per_rank(slurm_cluster, tmp_path):
    """launcher.gpus=1 with train.nproc=2 on a node with 2 (stand-in) GPUs: the task holds
    both (Slurm's CUDA_VISIBLE_DEVICES=0,1), rank r has LOCAL_RANK r and so cuda:r; with no
    CUDA in this torch the trainer (device=auto) trains on the CPU and completes."""
    if not slurm_cluster.gpus:
        pytest.skip("stand-in GPU devices could not be made here (mknod not allowed)")
    root = tmp_path / "runs"
    sweep(["plan", "g", *DDP], root)
    out = json.loads(sweep(["launch", "g", "--executor", "slurm", "--json", "launcher.gpus=1",
                            "launcher.partition=two"], root).stdout)
    wait_for(lambda: all(r.state == RunState.COMPLETED for r in runs(root, "g").values()), 150,
             "the GPU run to complete")
    rec = next(iter(runs(root, "g").values()))
    line = slurm_cluster.run("scontrol", "show", "job", "-o", rec.job_id).stdout
    assert "gpu:2" in dict(re.findall(r"(\w+)=(\S*)", line)).get("TresPerTask", "")
    log = (root / "g" / rec.run.run_id / "worker.log").read_text()
    for r in (0, 1):
        assert re.search(rf"rank {r} of 2 on n\d, LOCAL_RANK={r} CUDA_VISIBLE_DEVICES=0,1", log)
    assert out["job_id"] and rec.final_loss is not None
