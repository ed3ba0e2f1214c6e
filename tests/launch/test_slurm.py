"""The Slurm launcher: the rendered script (golden, hostile paths), and end to end on a real
one-node Slurm started by the `slurm_cluster` fixture (conftest.py): an array with a throttle
completes and fits, a preempted task requeues and resumes, cancel, lost and retry.

Regenerate the golden script with SWEEP_UPDATE_GOLDEN=1 pytest tests/launch -k golden.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweep import api
from sweep.config import LauncherConf, SizeOverride
from sweep.launch.slurm import InfoWatcher, SchedInfo, SlurmLauncher, query, render_sbatch
from sweep.records import RunState
from sweep.store import Store
from sweep.train.worker import checkpoint_step

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "slurm_array.sbatch"
HOSTILE = "a b'c $(touch PWNED) `touch PWNED2`; touch PWNED3 \"q\" %x 100%"
# the tiny real grid of tests/test_e2e.py: 1 layer, 32-token context, 8 sequences per step
TINY = ["model.depths=[1]", "model.seq_len=32", "train.batch_size=8", "train.eval_tokens=8192",
        "train.log_every=5"]
STATUS_KEYS = {"id", "state", "width", "depth", "params", "params_nonembed", "tokens",
               "tokens_done", "flops", "final_loss", "error"}


def sweep(args: list[str], root: Path, code: int = 0):
    """The real CLI in-process; stdout and stderr apart."""
    from sweep.cli import cli

    r = CliRunner().invoke(cli, [*args, "--root", str(root)], catch_exceptions=False)
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    return r


def runs(root: Path, name: str) -> dict[str, object]:
    with Store(root) as st:
        return {r.run.run_id: r for r in st.runs(name)}


def wait_for(pred, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def running(root: Path, name: str, progress: bool = False):
    """The first run that is running (and, with ``progress``, has logged a point), or None."""
    return next((r for r in runs(root, name).values()
                 if r.state == RunState.RUNNING and (r.tokens_done > 0 or not progress)), None)


def preempt(cluster, job_id: str) -> None:
    """Slurm's warning signal on demand. On 22.05, signalling a task of an array that still has
    pending tasks delivers the signal but exits 229 ("Job can not be altered now" in the
    slurmctld log), so the exit code is not checked here: the tests check the effect."""
    p = cluster.run("scancel", "--signal=USR1", "--batch", job_id, check=False)
    assert p.returncode in (0, 229), p.stderr


def trainer_checkpoints() -> bool:
    from sweep.train.loop import train

    return "checkpoint_dir" in inspect.signature(train).parameters


# ---- the script --------------------------------------------------------------------------


def golden_script() -> str:
    conf = LauncherConf(
        name="slurm", jobs=4, partition="gpu", time="02:00:00", cpus_per_task=4, gpus=1,
        mem="16G", account="proj-1", qos="normal", constraint="a100&ib",
        extra_sbatch=["--exclusive", "--comment=scaling sweep"],
        setup=["module load cuda/12.1", "source /opt/env/bin/activate"], signal_seconds=300,
        size_overrides=[SizeOverride(min_params=1e6, time="02:00:00")])
    top = Path("/scratch/sweeps/demo")
    sub = top / "slurm" / "20250101-000000-abcd"
    return render_sbatch(sweep="demo", n_tasks=12, throttle=4, conf=conf, time_limit="02:00:00",
                         manifest=sub / "manifest", log_dir=sub, workdir=top,
                         python="/opt/venv/bin/python", task_times={"00:30:00": [8, 9, 10, 11]})


def test_sbatch_golden():
    got = golden_script()
    if os.environ.get("SWEEP_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text(), "rendered sbatch changed; SWEEP_UPDATE_GOLDEN=1 to accept"
    assert subprocess.run(["bash", "-n"], input=got, text=True, check=False).returncode == 0


def test_hostile_root_is_quoted_and_runs_as_written(tmp_path, monkeypatch):
    """A root with spaces, quotes, $(…), backticks, ';' and '%': the script parses, every
    #SBATCH value reads back unchanged, and running its body hands the worker the right dir."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / HOSTILE
    api.plan_sweep("h", [*TINY, "model.widths=[32,64]", "budget.tokens=[2e4]"], root)
    stub = root / "bin dir" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv"\n')
    stub.chmod(0o755)
    calls = []

    def fake(args, **kw):  # sbatch/scontrol stand-ins: record, answer like Slurm
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "4242\n" if args[0] == "sbatch" else "", "")

    with Store(root) as st:
        todo = [r.run for r in st.runs("h")]
    launcher = SlurmLauncher(root, "h", LauncherConf(name="slurm"), 2, python=str(stub),
                             runner=fake)
    jobs = launcher.submit(todo)
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1"] and calls[0][0] == "sbatch"
    script_path = Path(calls[0][-1])
    script = script_path.read_text()
    assert subprocess.run(["bash", "-n", str(script_path)], check=False).returncode == 0
    flags = dict(ln[len("#SBATCH --"):].split("=", 1) for ln in script.splitlines()
                 if ln.startswith("#SBATCH --") and "=" in ln)
    assert shlex.split(flags["chdir"]) == [str(root.absolute() / "h")]
    assert shlex.split(flags["output"]) == [
        str(launcher.sub_dir).replace("%", "%%") + "/%A_%a.log"]
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_JOB_ID="4242")
    p = subprocess.run(["bash", str(script_path)], env=env, cwd=tmp_path, capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stderr
    argv = (stub.parent / "argv").read_text().splitlines()
    assert argv == ["-m", "sweep.train.worker", str(launcher.run_dir(todo[1]))]
    assert (launcher.run_dir(todo[1]) / "worker.log").exists()
    spec = json.loads((launcher.run_dir(todo[1]) / "run.json").read_text())
    assert spec["root"] == str(root.absolute()) and spec["attempt_limit"] == 3
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


def test_dry_run_prints_script_submits_nothing(tmp_path):
    root = tmp_path / "runs"
    sweep(["plan", "d", *TINY, "model.widths=[32,64]", "budget.tokens=[2e4,4e4]"], root)
    r = sweep(["launch", "d", "--executor", "slurm", "--dry-run", "--jobs", "3",
               "launcher.time=00:20:00", "launcher.partition=debug q"], root)
    assert r.stdout.startswith("#!/bin/bash\n") and "#SBATCH --array=0-3%3" in r.stdout
    assert "#SBATCH --partition='debug q'" in r.stdout and "--time=00:20:00" in r.stdout
    assert not (root / "d" / "slurm").exists()
    assert {r.state for r in runs(root, "d").values()} == {RunState.PLANNED}
    r = sweep(["launch", "d", "launcher=slurm", "--dry-run", "--json"], root)  # via the config
    out = json.loads(r.stdout)
    assert out["dry_run"] and out["submitted"] == [] and "#SBATCH --array=0-3%2" in out["script"]
    sweep(["launch", "d", "--dry-run"], root, code=2)  # local: nothing to show
    sweep(["retry", "d"], root, code=2)  # retry needs to be told what: --failed


@pytest.mark.parametrize("override", [
    "launcher.name=pbs", "launcher.time=soon", "launcher.signal_seconds=7200",
    "launcher.extra_sbatch=[exclusive]", "launcher.cpus_per_task=0", "launcher.max_attempts=0",
    "launcher.size_overrides=[{min_params:1e6,time:later}]"])
def test_bad_slurm_settings_are_usage_errors(tmp_path, override):
    r = sweep(["plan", "s", *TINY, override], tmp_path / "runs", code=2)
    assert r.stderr.count("Error:") == 1 and "launcher." in r.stderr
    assert not (tmp_path / "runs").exists()


class FakeSlurm:
    """squeue/scontrol stand-ins answering from canned text; counts the calls."""

    def __init__(self, squeue: str = "", scontrol: str = "", squeue_rc: int = 0,
                 squeue_err: str = ""):
        self.out = {"squeue": (squeue_rc, squeue, squeue_err), "scontrol": (0, scontrol, "")}
        self.calls: list[list[str]] = []

    def n(self) -> int:
        return sum(c[0] == "squeue" for c in self.calls)

    def __call__(self, args, **kw):
        self.calls.append(list(args))
        rc, out, err = self.out[args[0]]
        return subprocess.CompletedProcess(args, rc, out, err)


def test_query_batches_and_parses():
    fake = FakeSlurm(
        squeue="7_0|RUNNING|node1|None\n7_2|PENDING||JobArrayTaskLimit\n7_9|RUNNING|x|None\n",
        scontrol="JobId=8 ArrayJobId=7 ArrayTaskId=1 JobState=FAILED Reason=NonZeroExitCode "
                 "NodeList=node2\n")
    info = query(["7_0", "7_1", "7_2", "5_3"], fake)
    assert fake.calls[0] == ["squeue", "-h", "-r", "-o", "%i|%T|%N|%r", "-j", "5,7"]
    assert [c[:3] for c in fake.calls[1:]] == [["scontrol", "show", "job"]] * 2
    assert info["7_0"] == SchedInfo("7_0", "RUNNING", "node1", "")
    assert info["7_0"].run_state == RunState.RUNNING
    assert info["7_2"].run_state == RunState.QUEUED and info["7_2"].reason == "JobArrayTaskLimit"
    assert info["7_1"].state == "FAILED" and info["7_1"].run_state is None
    assert info["5_3"].state == "UNKNOWN" and set(info) == {"7_0", "7_1", "7_2", "5_3"}
    # every array purged: squeue says "Invalid job id" and that is an answer, not an error
    gone = FakeSlurm(squeue_rc=1, squeue_err="slurm_load_jobs error: Invalid job id specified")
    gone.out["scontrol"] = (1, "", "Invalid job id specified")
    assert query(["3_0"], gone)["3_0"].state == "UNKNOWN"


def test_watcher_caches_backs_off_and_warns(tmp_path, caplog):
    now = [1000.0]
    fake = FakeSlurm(squeue="7_0|RUNNING|n|None\n")
    w = InfoWatcher(tmp_path / "squeue.json", fake, clock=lambda: now[0])
    w.submitted()
    assert w.states(["7_0"])[0]["7_0"].state == "RUNNING" and fake.n() == 1
    now[0] += 1.0
    w.states(["7_0"])
    assert fake.n() == 1  # cached: asked again at most every max(2, age / 2) s
    now[0] += 200.0  # age 201 s: the delay has grown to 60 s
    w.states(["7_0"])
    now[0] += 30.0
    w.states(["7_0"])
    assert fake.n() == 2
    w.states(["7_0", "7_1"])  # a job the cache does not know: asked at once
    assert fake.n() == 3
    fake.out["squeue"] = (1, "", "Unable to contact slurm controller")
    assert w.states(["7_0"], force=True) is None and "could not ask Slurm" in caplog.text
    now[0] += 1.0
    assert w.states(["7_0"]) is None and fake.n() == 4  # backing off: 2 s after 1 failure
    now[0] += 2.0
    fake.out["squeue"] = (0, "7_0|COMPLETING|n|None\n", "")
    assert w.states(["7_0"])[0]["7_0"].run_state == RunState.RUNNING and fake.n() == 5


# ---- a real Slurm ------------------------------------------------------------------------


@pytest.mark.slurm
def test_array_with_throttle_completes_and_fits(slurm_cluster, tmp_path):
    """2 widths × 3 budgets as one array, at most 2 at once, under a root with spaces and
    quotes: launch returns at once, all complete into the store, and the sweep fits."""
    root = tmp_path / "a b'c"
    sweep(["plan", "arr", *TINY, "model.widths=[32,64]", "budget.tokens=[2e4,4e4,8e4]"], root)
    t0 = time.monotonic()  # for the printed figure only
    out = json.loads(sweep(["launch", "arr", "--executor", "slurm", "--jobs", "2", "--json"],
                           root).stdout)
    assert len(out["submitted"]) == 6 and out["job_id"]
    array = out["job_id"]
    most = 0

    def done() -> bool:
        nonlocal most
        alive = [s for i, (s, _) in slurm_cluster.jobs().items() if i.startswith(array + "_")]
        most = max(most, alive.count("RUNNING"))
        return all(r.state == RunState.COMPLETED for r in runs(root, "arr").values())

    wait_for(done, 150, "6 runs to complete", poll=0.3)
    wall = time.monotonic() - t0
    assert most == 2, f"throttle 2 not honoured: {most} running at once"
    st = json.loads(sweep(["status", "arr", "--json"], root).stdout)
    assert st["counts"] == {"completed": 6}
    for run in st["runs"]:
        assert set(run) == STATUS_KEYS and run["tokens_done"] == run["tokens"]
    assert all(r.job_id.startswith(array + "_") and r.attempts == 1
               for r in runs(root, "arr").values())
    fit = json.loads(sweep(["fit", "arr", "--bootstrap", "20", "--json"], root).stdout)
    assert fit["n_points"] == 6
    again = json.loads(sweep(["launch", "arr", "--executor", "slurm", "--json"], root).stdout)
    assert again["submitted"] == [] and again["skipped"] == 6
    print(f"\n6-run array, throttle 2: launch → all completed in {wall:.1f} s")


@pytest.mark.slurm
def test_preempted_task_requeues_and_resumes(slurm_cluster, tmp_path):
    """USR1 to a running task (as before its time limit): checkpoint, requeue itself, resume,
    and end with the same final loss and curve as the same run trained uninterrupted."""
    root = tmp_path / "runs"
    grid = [*TINY, "model.widths=[32]", "budget.tokens=[4e5]"]
    for name in ("pre", "ref"):
        sweep(["plan", name, *grid], root)
        sweep(["launch", name, "--executor", "slurm", "--json"], root)
    run = wait_for(lambda: running(root, "pre", progress=True), 90, "the run to train")
    t0 = time.monotonic()
    preempt(slurm_cluster, run.job_id)
    wait_for(lambda: runs(root, "pre")[run.run.run_id].state == RunState.QUEUED, 60,
             "the worker to checkpoint and requeue")
    assert checkpoint_step(root / "pre" / run.run.run_id / "ckpt") is not None
    wait_for(lambda: slurm_cluster.jobs().get(run.job_id) == ("PENDING", "BeginTime"), 30,
             "the requeued task to wait for its begin time")
    # slurmd refuses a job credential made in the same second as the requeue revoked the old
    # one ("Job N already killed, do not launch batch job": the task then fails with exit 1)
    time.sleep(1.1)
    slurm_cluster.run("scontrol", "update", f"JobId={run.job_id}", "StartTime=now")
    wait_for(lambda: runs(root, "pre")[run.run.run_id].state == RunState.COMPLETED, 120,
             "the resumed run to finish")
    print(f"\nrequeue round trip (USR1 → completed): {time.monotonic() - t0:.1f} s")
    wait_for(lambda: all(r.state == RunState.COMPLETED for r in runs(root, "ref").values()), 120,
             "the reference run")
    pre = runs(root, "pre")[run.run.run_id]
    ref = next(iter(runs(root, "ref").values()))
    assert pre.attempts == 2 and pre.job_id == run.job_id
    assert pre.final_loss == pytest.approx(ref.final_loss, abs=1e-6)
    with Store(root) as st:
        a, b = st.curves_df(["pre"]), st.curves_df(["ref"])
    assert list(a.step) == list(b.step)  # no point lost or doubled across the requeue
    assert a.eval_loss.dropna().tolist() == pytest.approx(b.eval_loss.dropna().tolist(), abs=1e-6)


def _kill_worker(run_dir: Path) -> None:
    """SIGKILL the worker training ``run_dir`` (found by its exact command line)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[-2:] == [str(run_dir).encode(), b""] and b"sweep.train.worker" in argv:
            os.kill(int(proc.name), signal.SIGKILL)
            return
    raise AssertionError(f"no worker process for {run_dir}")


@pytest.mark.slurm
def test_cap_lost_cancel_and_retry(slurm_cluster, tmp_path):
    """One array of 3 runs, one at a time, launcher.max_attempts=1: a preempted run fails at
    the cap; a worker killed outright is reported lost; `cancel` cancels a running one;
    `retry --failed` resubmits all three as one array and they complete."""
    root = tmp_path / "runs"
    sweep(["plan", "c", *TINY, "model.widths=[32]", "budget.tokens=[2e4,3e4,4e4]",
           "launcher.max_attempts=1"], root)
    out = json.loads(sweep(["launch", "c", "--executor", "slurm", "--jobs", "1", "--json"],
                           root).stdout)
    held = f"{out['job_id']}_2"  # kept back until the lost run has been seen
    slurm_cluster.run("scontrol", "hold", held)

    first = wait_for(lambda: running(root, "c"), 90, "the first run to start")
    preempt(slurm_cluster, first.job_id)
    rec = wait_for(lambda: (r := runs(root, "c")[first.run.run_id]).state == RunState.FAILED
                   and r, 60, "the preempted run to fail at the cap")
    assert "max_attempts" in rec.error

    second = wait_for(lambda: running(root, "c"), 90, "the second run to start")
    _kill_worker(root / "c" / second.run.run_id)
    lost = wait_for(lambda: next((r for r in json.loads(sweep(["status", "c", "--json"],
                                                              root).stdout)["runs"]
                                  if r["id"] == second.run.run_id and r["state"] == "failed"),
                                 None), 90, "the killed run to show as lost", poll=1.0)
    assert lost["error"].startswith("lost: ")
    assert f"{held} (JobHeld" in sweep(["status", "c"], root).stdout  # why it waits

    slurm_cluster.run("scontrol", "release", held)
    third = wait_for(lambda: running(root, "c"), 90, "the third run to start")
    assert third.job_id == held
    out = json.loads(sweep(["cancel", "c", "--json"], root).stdout)
    assert out["cancelled"] == [third.run.run_id]
    wait_for(lambda: held not in slurm_cluster.jobs(), 30, "the cancelled job to leave")
    assert runs(root, "c")[third.run.run_id].state == RunState.CANCELLED

    out = json.loads(sweep(["retry", "c", "--failed", "--jobs", "2", "--json"], root).stdout)
    assert sorted(out["submitted"]) == sorted(runs(root, "c")) and out["job_id"]
    wait_for(lambda: all(r.state == RunState.COMPLETED for r in runs(root, "c").values()), 150,
             "the retried runs to complete", poll=0.5)
    assert all(r.job_id.startswith(out["job_id"] + "_") for r in runs(root, "c").values())
    assert json.loads(sweep(["status", "c", "--json"], root).stdout)["counts"] == {"completed": 3}


def test_worker_task_id_for_requeue():
    """The id a task requeues: ARRAY_TASK in an array (SLURM_JOB_ID of the last task is the
    array's own id, and requeueing that requeues every task)."""
    from sweep.train.worker import slurm_task_id

    assert slurm_task_id({"SLURM_JOB_ID": "7", "SLURM_ARRAY_JOB_ID": "7",
                          "SLURM_ARRAY_TASK_ID": "3"}) == "7_3"
    assert slurm_task_id({"SLURM_JOB_ID": "9"}) == "9"
    assert slurm_task_id({}) is None


FAKE_TRAINER = '''
import json, os, signal
from sweep.errors import TrainInterrupted
from sweep.records import CurvePoint, TrainResult

def train(run, log, *, threads=None, should_stop=None, checkpoint_dir=None):
    """10 steps; checkpoints ``step_{next:06d}.json`` when told to stop; resumes from one."""
    done = sorted(checkpoint_dir.glob("step_*.json")) if checkpoint_dir.is_dir() else []
    start = json.loads(done[-1].read_text())["next"] if done else 0
    for step in range(start, 10):
        if step == int(os.environ.get("FAKE_USR1_AT", -1)):
            os.kill(os.getpid(), signal.SIGUSR1)
        if should_stop():
            checkpoint_dir.mkdir(exist_ok=True)
            (checkpoint_dir / f"step_{step:06d}.json").write_text(json.dumps({"next": step}))
            raise TrainInterrupted(f"stopped at step {step}")
        loss = 5.0 - 0.1 * step
        log(CurvePoint(run.run_id, step, (step + 1) * run.batch_tokens, 1.0, loss,
                       loss if step == 9 else None, 1e-3, end_of_schedule=step == 9))
    return TrainResult(run.run_id, loss, loss, run.tokens, run.steps, 0.1, 1.0)
'''


def test_worker_requeues_resumes_and_caps(tmp_path):
    """The worker's half of preemption, with a stand-in trainer that checkpoints (the real one
    is tested on Slurm above) and a stand-in `scontrol`: SIGUSR1 → checkpoint → run queued →
    `scontrol requeue ARRAY_TASK` → exit 0; the next attempt keeps the curve up to the
    checkpoint and finishes it; at the attempt cap the run fails instead."""
    from sweep.train.worker import write_spec

    root = tmp_path / "runs"
    api.plan_sweep("w", [*TINY, "model.widths=[32]", "budget.tokens=[2e4]"], root)
    run = next(iter(runs(root, "w").values())).run
    run_dir = root / "w" / run.run_id
    write_spec(run_dir, run, root, 1, attempt_limit=2)
    (tmp_path / "fake_trainer.py").write_text(FAKE_TRAINER)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/scontrol.args"\n')
    (bin_dir / "scontrol").chmod(0o755)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import fake_trainer; "  # no torch
            "sys.modules['sweep.train.loop'] = fake_trainer; "
            "from sweep.train.worker import main; sys.exit(main([sys.argv[2]]))")
    env = dict(os.environ, SLURM_ARRAY_JOB_ID="77", SLURM_ARRAY_TASK_ID="3", SLURM_JOB_ID="80",
               PATH=f"{bin_dir}:{os.environ['PATH']}")

    def attempt(usr1_at: int) -> int:
        return subprocess.run([sys.executable, "-c", code, str(tmp_path), str(run_dir)],
                              env=dict(env, FAKE_USR1_AT=str(usr1_at)), check=False,
                              timeout=120).returncode

    def steps() -> list[int]:
        with Store(root) as st:
            return st.curves_df(["w"]).step.tolist()

    assert attempt(usr1_at=4) == 0
    rec = runs(root, "w")[run.run_id]
    assert rec.state == RunState.QUEUED and rec.attempts == 1 and rec.job_id == "77_3"
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "77_3"]
    assert checkpoint_step(run_dir / "ckpt") == 4 and steps() == [0, 1, 2, 3]
    assert attempt(usr1_at=7) == 1  # attempt 2 of 2: preempted again, no more requeues
    rec = runs(root, "w")[run.run_id]
    assert rec.state == RunState.FAILED and "max_attempts" in rec.error
    assert steps() == list(range(7))
    write_spec(run_dir, run, root, 1, attempt_limit=3)  # what `sweep retry` does
    assert attempt(usr1_at=-1) == 0
    rec = runs(root, "w")[run.run_id]
    assert rec.state == RunState.COMPLETED and rec.attempts == 3
    assert steps() == list(range(10)) and rec.tokens_done == rec.run.tokens
    assert rec.final_loss == pytest.approx(5.0 - 0.9)
