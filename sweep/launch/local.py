"""Local launcher: K worker processes at a time on this machine, their threads drawn from the
machine-wide core slots (slots.py) that every local launcher of this user shares.

Each worker runs in its own process group (session), so stopping a job reaches everything it
started. ``cancel_local`` stops a running local launch from another process (``sweep cancel``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sweep.errors import LaunchError
from sweep.fsutil import atomic_write_json
from sweep.launch.base import (
    Job,
    LaunchCancelled,
    Launcher,
    lock_path,
    process_start,
    read_lock,
)
from sweep.launch.slots import Lease, Slots
from sweep.records import PlannedRun, RunState
from sweep.store import Store
from sweep.train.dist import torchrun_args
from sweep.train.worker import write_spec

log = logging.getLogger(__name__)


def worker_command(run: PlannedRun, run_dir: Path) -> list[str]:
    """The worker's argv: one process, or torchrun with ``train.nproc`` ranks on this machine
    (``--standalone`` picks a free rendezvous port; torchrun forwards SIGTERM/SIGINT/SIGUSR1 to
    the ranks and SIGKILLs them if they have not exited 30 s later)."""
    worker = ["-m", "sweep.train.worker", str(run_dir)]
    if run.train.nproc <= 1:
        return [sys.executable, *worker]
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(run.train.nproc), *worker]


class LocalJob(Job):
    """A run waiting for a slot, then a child process leading its own process group."""

    def __init__(self, run: PlannedRun, run_dir: Path):
        self.run, self.run_id, self.run_dir = run, run.run_id, run_dir
        self.proc: subprocess.Popen | None = None
        self.job_id = "local:queued"
        self.threads = 0

    def start(self, threads: int, *, env: Mapping[str, str] | None = None,
              pass_fds: Sequence[int] = ()) -> None:
        """Start the worker with ``threads`` threads (run.json, OMP/MKL), this process's
        environment plus ``env``, and the fds ``pass_fds`` (its core slots) inherited."""
        spec_path = self.run_dir / "run.json"
        spec = json.loads(spec_path.read_text())
        if spec.get("threads") != threads:
            spec["threads"] = threads
            atomic_write_json(spec_path, spec)
        child_env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(threads),
                     "MKL_NUM_THREADS": str(threads),
                     "SWEEP_WATCH_PARENT": "2" if self.run.train.nproc > 1 else "1"}
        logf = open(self.run_dir / "worker.log", "ab")
        self.proc = subprocess.Popen(
            worker_command(self.run, self.run_dir), stdout=logf, stderr=subprocess.STDOUT,
            env=child_env, stdin=subprocess.DEVNULL, pass_fds=tuple(pass_fds),
            start_new_session=True)
        logf.close()
        self.threads = threads
        self.job_id = f"local:{self.proc.pid}"

    def state(self) -> RunState:
        if self.proc is None:
            return RunState.QUEUED
        rc = self.proc.poll()
        if rc is None:
            return RunState.RUNNING
        if rc == 0:
            return RunState.COMPLETED
        stopped = rc in (130, -signal.SIGTERM, -signal.SIGKILL)
        return RunState.CANCELLED if stopped else RunState.FAILED

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def cancel(self) -> None:
        """SIGTERM to the worker's process group: it checkpoints, marks its run cancelled and
        exits (torchrun and its ranks, an external trainer's children included)."""
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)


class LocalLauncher(Launcher):
    """``submit`` prepares the jobs; ``wait`` runs them, at most ``jobs`` at once, each when it
    holds its threads' core slots, and blocks.

    ``threads_per_job``: threads a job asks for (0: cores // jobs); it starts with what is free,
    at least one per rank. ``cores``/``slots_dir``: the machine-wide budget (slots.Slots).
    ``env``: variables added to the workers' environment (this process's is never changed).
    """

    def __init__(self, root: Path, sweep: str, jobs: int = 2, threads_per_job: int = 0, *,
                 env: Mapping[str, str] | None = None, cores: int = 0,
                 slots_dir: str | os.PathLike | None = None):
        super().__init__(root, sweep)
        self.jobs = max(1, jobs)
        self.slots = Slots(cores, slots_dir)
        self.threads = min(threads_per_job or max(1, self.slots.cores // self.jobs),
                           self.slots.cores)
        self.env = dict(env or {})
        self.max_threads = 0  # most threads this launcher's workers held at once

    def submit(self, runs: Sequence[PlannedRun]) -> list[Job]:
        jobs: list[Job] = []
        for run in runs:
            d = self.run_dir(run)
            write_spec(d, run, self.root, self.threads)
            jobs.append(LocalJob(run, d))
        return jobs

    def _start_next(self, queue: list[LocalJob], running: list[LocalJob],
                    leases: dict[str, Lease]) -> bool:
        """Start the next job if its slots are free (it moves from ``queue`` to ``running``)."""
        job = queue[0]
        nproc = job.run.train.nproc
        lease = self.slots.try_acquire(max(self.threads, nproc), least=nproc, tag=job.run_id)
        if lease is None:
            return False
        leases[job.run_id] = lease
        queue.pop(0)
        running.append(job)
        job.start(lease.n, env=self.env, pass_fds=lease.fds)
        return True

    def wait(self, jobs: Sequence[Job], tick: Callable[[list[LocalJob]], None] | None = None,
             poll_seconds: float = 0.5) -> dict[str, RunState]:
        """Run the jobs; Ctrl-C or SIGTERM (LaunchCancelled, see launch_lock) stops the workers'
        process groups, marks their runs (and those not started) cancelled, and re-raises."""
        queue = [j for j in jobs if isinstance(j, LocalJob)]
        running: list[LocalJob] = []
        leases: dict[str, Lease] = {}
        done: dict[str, RunState] = {}
        waiting = False
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    if not self._start_next(queue, running, leases):
                        if not waiting:
                            log.info("%s: waiting for a free core (all %d slots in %s are held)",
                                     self.sweep, self.slots.cores, self.slots.dir)
                        waiting = True
                        break
                    waiting = False
                self.max_threads = max(self.max_threads, sum(j.threads for j in running))
                for job in list(running):
                    st = job.state()
                    if st != RunState.RUNNING:
                        running.remove(job)
                        leases.pop(job.run_id).release()
                        done[job.run_id] = st
                if tick:
                    tick(running)
                time.sleep(poll_seconds)
        except BaseException as exc:
            why = ("cancelled by `sweep cancel` (SIGTERM to the launcher)"
                   if isinstance(exc, LaunchCancelled) else "cancelled: the launcher was "
                   "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt)
                   else f"cancelled: the launcher stopped ({type(exc).__name__}: {exc})")
            self._stop(running, queue, why)
            raise
        finally:
            for lease in leases.values():
                lease.release()
        return done

    def _stop(self, running: list[LocalJob], queue: list[LocalJob], why: str) -> None:
        """Stop the workers (SIGTERM to their groups, SIGKILL after 15 s), then mark their runs
        and the never-started ones cancelled unless the worker recorded an outcome itself."""
        for job in running:
            job.cancel()
        deadline = time.monotonic() + 15
        for job in running:
            if job.proc is None:  # interrupted while starting
                continue
            try:
                job.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                job.kill()
                job.proc.wait()
        try:
            with Store(self.root, create=False) as store:
                for job in [*running, *queue]:
                    store.set_state_if(job.run_id, [RunState.QUEUED, RunState.RUNNING],
                                       RunState.CANCELLED, why)
        except Exception as exc:  # noqa: BLE001 - the caller's error matters more
            log.warning("%s: could not mark stopped runs cancelled: %s", self.sweep, exc)


def cancel_local(root: Path, name: str, timeout: float = 60.0) -> list[str]:
    """Stop the local launcher running sweep ``name`` in ``root``, if any: SIGTERM to the pid its
    launch lock records (checked against its start time), then wait up to ``timeout`` s for the
    lock to be free. The launcher stops its workers and marks their runs cancelled; runs it
    left queued or running are marked here. Returns the ids of the runs this cancelled (empty:
    no local launch was running). A lock held by a Slurm submission is waited for, not signalled.
    """
    path = lock_path(root, name)
    if not path.exists():
        return []
    with open(path, "a+") as fh:
        if _try_lock(fh):
            return []
        info = read_lock(root, name)
        pid = info["pid"] if info else None
        local = bool(info) and info.get("kind", "local") == "local"
        if local and (info.get("cancel") != "SIGTERM" or process_start(pid) != info.get("start")):
            raise LaunchError(f"sweep '{name}' is being launched by pid {pid}, which cannot be "
                              "stopped from here (not in its main thread, or gone)")
        before: set[str] = set()
        if local:
            with Store(root, create=False) as store:
                before = {r.run.run_id for r in store.runs(name)
                          if r.state in (RunState.QUEUED, RunState.RUNNING)
                          and (r.job_id or "local").startswith("local")}
            os.kill(pid, signal.SIGTERM)
            log.info("%s: sent SIGTERM to its launcher (pid %d)", name, pid)
        deadline = time.monotonic() + timeout
        while not _try_lock(fh):
            if time.monotonic() > deadline:
                raise LaunchError(f"the launcher of sweep '{name}' (pid {pid}) did not stop "
                                  f"within {timeout:g} s")
            time.sleep(0.1)
        try:
            if not local:
                return []
            with Store(root, create=False) as store:
                for run_id in before:
                    store.set_state_if(run_id, [RunState.QUEUED, RunState.RUNNING],
                                       RunState.CANCELLED, "cancelled by sweep cancel")
                now = {r.run.run_id: r.state for r in store.runs(name)}
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return sorted(r for r in before if now.get(r) == RunState.CANCELLED)


def _try_lock(fh) -> bool:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
