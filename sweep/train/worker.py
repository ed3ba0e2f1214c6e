"""Worker entry point: ``python -m sweep.train.worker RUN_DIR``.

Reads ``RUN_DIR/run.json`` ({"run": PlannedRun, "root": store root, "threads": int,
"attempt_limit": int | null}), trains the run and writes its state, heartbeat and curve to the
store while it trains. The same contract serves the local launcher and Slurm array tasks; no
pickles. Checkpoints live in ``RUN_DIR/ckpt``; a run that finds one resumes from it (an
external trainer gets that directory as ``$SWEEP_CHECKPOINT_DIR``; sweep/train/external.py).

Signals: SIGTERM/SIGINT stop the run as cancelled. SIGUSR1 (Slurm's warning before the time
limit or a preemption, ``--signal=B:USR1@N``) stops it at the next step boundary with a
checkpoint; under Slurm the worker then marks the run queued, requeues its own array task with
``scontrol requeue ARRAYJOB_TASK`` and exits 0, unless the attempt cap is reached (then failed).
An external trainer gets the signal forwarded (SIGUSR1 or SIGTERM to its process group); its
exit code 75 (checkpoint saved) is handled like a preemption unless the run was cancelled.

Under torchrun (``train.nproc > 1``) every rank runs this module: all train in lockstep
(sweep/train/dist.py), rank 0 alone writes the store and W&B and requeues; torchrun forwards
SIGTERM/SIGINT/SIGUSR1 to the ranks (``--signals-to-handle``).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from sweep.errors import InputError, TrainError, TrainInterrupted
from sweep.fsutil import atomic_write_json
from sweep.records import CurvePoint, PlannedRun, RunState
from sweep.store import Store
from sweep.tracking import Tracker
from sweep.train import dist as dist_
from sweep.train.external import checkpoint_step

log = logging.getLogger("sweep.worker")
FLUSH_SECONDS = 1.0


def write_spec(run_dir: Path, run: PlannedRun, root: Path, threads: int | None, *,
               attempt_limit: int | None = None) -> Path:
    """Write ``run.json`` atomically; returns its path. ``attempt_limit``: the store's attempt
    count past which the run gives up instead of starting again (None: no limit)."""
    return atomic_write_json(run_dir / "run.json", {
        "run": run.to_dict(), "root": str(root), "threads": threads,
        "attempt_limit": attempt_limit})


def slurm_task_id(env: dict[str, str] | os._Environ = os.environ) -> str | None:
    """This Slurm job's own id: ``ARRAYJOB_TASK`` in an array. ``SLURM_JOB_ID`` alone is wrong
    there: the last task's SLURM_JOB_ID equals the array's id, and `scontrol requeue` on it
    requeues every task of the array (seen on Slurm 22.05)."""
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return env.get("SLURM_JOB_ID") or None


def _ppid_of(pid: int) -> int | None:
    """The parent of ``pid`` from /proc (Linux), or None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _watch_parent(on_gone, stop: threading.Event, levels: int = 1) -> None:
    """Cancel when the launching process dies (we get re-parented), so no orphan trains on.
    ``levels`` 2: the launcher is our grandparent (we are a torchrun rank); its death re-parents
    torchrun, which does not stop its ranks by itself."""
    parent = os.getppid()
    grand = _ppid_of(parent) if levels > 1 else None
    while not stop.wait(1.0):
        if os.getppid() != parent or (grand is not None and _ppid_of(parent) != grand):
            on_gone()


def _train_kwargs(train, ckpt_dir: Path) -> dict:
    """Checkpointing is passed only to a trainer that takes it (the built-in loop and the
    external trainer do); the external one also keeps its files beside run.json."""
    params = inspect.signature(train).parameters
    kw: dict = {"checkpoint_dir": ckpt_dir} if "checkpoint_dir" in params else {}
    if "work_dir" in params:
        kw["work_dir"] = ckpt_dir.parent
    return kw


def _branches(root: str, run: PlannedRun) -> list[PlannedRun]:
    """WSD: the runs branching off ``run`` that the store does not have as completed."""
    with Store(root) as store:
        return [r.run for r in store.runs(run.sweep)
                if r.run.branch_of == run.run_id and r.state != RunState.COMPLETED]


def _metrics(store: Store, result) -> None:
    if result.heldout_top1_acc is not None:
        store.add_metrics(result.run_id, {"heldout_top1_acc": result.heldout_top1_acc})


def _requeue(store: Store, run: PlannedRun, attempt: int, limit: int | None,
             ckpt_dir: Path) -> int:
    """After a stop on SIGUSR1 (checkpoint saved by the trainer): requeue this array task, or
    give up at the attempt cap."""
    task = slurm_task_id()
    if task is None:
        store.fail(run.run_id, "preempted outside Slurm, checkpoint kept; launch again to "
                               "resume", RunState.CANCELLED)
        return 130
    if limit is not None and attempt >= limit:
        store.fail(run.run_id, f"preempted on attempt {attempt}, the last one allowed by "
                               f"launcher.max_attempts; checkpoint kept in {ckpt_dir}")
        return 1
    store.mark_requeued(run.run_id)  # before requeueing: Slurm kills this job right away
    try:
        proc = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL, check=False)
        rc, why = proc.returncode, (proc.stderr or proc.stdout).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        rc, why = 1, str(exc)
    if rc > 0:  # rc < 0: scontrol was killed with the job it requeued
        store.fail(run.run_id, f"preempted, but `scontrol requeue {task}` failed: {why}")
        return 1
    log.info("%s: preempted and requeued as %s (attempt %d)", run.run_id, task, attempt)
    return 0


def _follow(train, run: PlannedRun, threads: int | None, should_stop, kwargs: dict) -> int:
    """A rank other than 0 trains in lockstep with rank 0, which alone writes the store and W&B
    (it sees the same losses, stop requests and errors, and reports them). Exiting 0 on those
    keeps torchrun from stopping rank 0 before it has written why."""
    try:
        train(run, lambda _p: None, threads=threads, should_stop=should_stop, **kwargs)
    except (TrainError, TrainInterrupted, InputError) as exc:
        log.info("%s rank %d: %s", run.run_id, kwargs["dist"].rank, exc)
    return 0


def run_worker(run_dir: Path) -> int:
    spec = json.loads((run_dir / "run.json").read_text())
    run = PlannedRun.from_dict(spec["run"])
    threads = spec.get("threads")
    limit = spec.get("attempt_limit")
    stop, cancel, preempt = threading.Event(), threading.Event(), threading.Event()

    def on_cancel(*_: object) -> None:
        cancel.set()
        stop.set()

    def on_preempt(*_: object) -> None:
        preempt.set()
        stop.set()

    signal.signal(signal.SIGTERM, on_cancel)
    signal.signal(signal.SIGINT, on_cancel)
    signal.signal(signal.SIGUSR1, on_preempt)
    if os.environ.get("SWEEP_WATCH_PARENT") in ("1", "2"):  # 2: started by torchrun
        levels = int(os.environ["SWEEP_WATCH_PARENT"])
        threading.Thread(target=_watch_parent, args=(on_cancel, stop, levels),
                         daemon=True).start()

    if run.train.command:  # train.command: the user's own trainer
        from sweep.train.external import train
    else:
        from sweep.train.loop import train

    ckpt_dir = run_dir / "ckpt"
    kwargs = _train_kwargs(train, ckpt_dir)
    if "stop_signal" in inspect.signature(train).parameters:  # the external trainer
        kwargs["stop_signal"] = lambda: (signal.SIGUSR1 if preempt.is_set() and not cancel.is_set()
                                         else signal.SIGTERM)
    if "branches" in inspect.signature(train).parameters:
        kwargs["branches"] = _branches(spec["root"], run)
    resume = checkpoint_step(ckpt_dir) if kwargs else None
    d = dist_.init()  # under torchrun (train.nproc > 1): join the group; rank 0 reports
    env = os.environ
    log.info("%s: rank %d of %d on %s, LOCAL_RANK=%s CUDA_VISIBLE_DEVICES=%s", run.run_id, d.rank,
             d.world, env.get("SLURMD_NODENAME") or socket.gethostname(),
             env.get("LOCAL_RANK", "-"), env.get("CUDA_VISIBLE_DEVICES", "-"))
    if d.enabled:
        threads = dist_.rank_threads(threads, d)
        kwargs["dist"] = d
        if not d.is_main:
            return _follow(train, run, threads, stop.is_set, kwargs)
    with Store(spec["root"]) as store:
        job = slurm_task_id() or f"local:{os.getpid()}"
        attempt = store.start_attempt(run.run_id, job, resume_step=resume)
        if limit is not None and attempt > limit:
            store.fail(run.run_id, f"attempt {attempt} exceeds launcher.max_attempts "
                                   f"(limit {limit} for this submission)")
            return 1
        if resume is not None:
            log.info("%s: resuming from the checkpoint at step %d", run.run_id, resume)
        buf: list[CurvePoint] = []
        last = [time.monotonic()]
        tracker = Tracker(run, run_dir, attempt)

        def on_point(p: CurvePoint) -> None:
            if p.run_id == run.run_id:  # not a WSD branch's cooldown
                tracker.log(p)
            buf.append(p)
            if p.end_of_schedule or time.monotonic() - last[0] > FLUSH_SECONDS:
                store.add_points(buf)
                buf.clear()
                last[0] = time.monotonic()

        def flush(_step: int) -> None:  # before a checkpoint: the store gets every point it covers
            store.add_points(buf)
            buf.clear()
            last[0] = time.monotonic()

        if kwargs and "on_checkpoint" in inspect.signature(train).parameters:
            kwargs["on_checkpoint"] = flush

        def branch_start(br: PlannedRun) -> None:  # WSD: this worker trains br's cooldown now
            flush(0)
            store.start_attempt(br.run_id, job)

        def branch_end(br: PlannedRun, res, reason: str | None) -> None:
            flush(0)
            if res is not None:
                store.finish(res)
                _metrics(store, res)
            else:
                store.fail(br.run_id, reason or "failed",
                           RunState.CANCELLED if stop.is_set() else RunState.FAILED)

        if "branches" in kwargs:
            kwargs.update(on_branch_start=branch_start, on_branch_end=branch_end)
        try:
            result = train(run, on_point, threads=threads, should_stop=stop.is_set, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure lands in the store
            store.add_points(buf)
            tracker.finish(None, str(exc) or type(exc).__name__)
            if stop.is_set() or isinstance(exc, TrainInterrupted):
                resumable = preempt.is_set() or getattr(exc, "resumable", False)
                if resumable and not cancel.is_set():
                    return _requeue(store, run, attempt, limit, ckpt_dir)
                store.fail(run.run_id, "interrupted", RunState.CANCELLED)
                return 130
            reason = str(exc) if isinstance(exc, TrainError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, TrainError):
                traceback.print_exc()
            store.fail(run.run_id, reason)
            return 1
        store.add_points(buf)
        store.finish(result)
        _metrics(store, result)
        tracker.finish(result)
    log.info("%s: final loss %.4f nats/token", run.run_id, result.final_loss)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sweep.train.worker RUN_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return run_worker(Path(args[0]))
    finally:
        dist_.close()


if __name__ == "__main__":
    sys.exit(main())
