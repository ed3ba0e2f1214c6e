"""Local launcher: K worker processes at a time on this machine, threads split between them."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sweep.launch.base import Job, Launcher
from sweep.records import PlannedRun, RunState
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
    """A run waiting for a slot, then a child process."""

    def __init__(self, run: PlannedRun, run_dir: Path):
        self.run, self.run_id, self.run_dir = run, run.run_id, run_dir
        self.proc: subprocess.Popen | None = None
        self.job_id = "local:queued"

    def start(self, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   SWEEP_WATCH_PARENT="2" if self.run.train.nproc > 1 else "1")
        logf = open(self.run_dir / "worker.log", "ab")
        self.proc = subprocess.Popen(
            worker_command(self.run, self.run_dir),
            stdout=logf, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        logf.close()
        self.job_id = f"local:{self.proc.pid}"

    def state(self) -> RunState:
        if self.proc is None:
            return RunState.QUEUED
        rc = self.proc.poll()
        if rc is None:
            return RunState.RUNNING
        return RunState.COMPLETED if rc == 0 else (
            RunState.CANCELLED if rc in (130, -signal.SIGTERM, -signal.SIGKILL) else RunState.FAILED)

    def cancel(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()


class LocalLauncher(Launcher):
    """``submit`` prepares the jobs; ``wait`` runs them ``jobs`` at a time and blocks."""

    def __init__(self, root: Path, sweep: str, jobs: int = 2, threads_per_job: int = 0):
        super().__init__(root, sweep)
        self.jobs = max(1, jobs)
        cores = os.cpu_count() or 1
        self.threads = threads_per_job or max(1, cores // self.jobs)

    def submit(self, runs: Sequence[PlannedRun]) -> list[Job]:
        jobs: list[Job] = []
        for run in runs:
            d = self.run_dir(run)
            write_spec(d, run, self.root, self.threads)
            jobs.append(LocalJob(run, d))
        return jobs

    def wait(self, jobs: Sequence[Job], tick: Callable[[list[LocalJob]], None] | None = None,
             poll_seconds: float = 0.5) -> dict[str, RunState]:
        """Run the jobs, at most ``self.jobs`` at once; Ctrl-C stops the children cleanly."""
        queue = [j for j in jobs if isinstance(j, LocalJob)]
        running: list[LocalJob] = []
        done: dict[str, RunState] = {}
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    job = queue.pop(0)
                    job.start(self.threads)
                    running.append(job)
                for job in list(running):
                    st = job.state()
                    if st != RunState.RUNNING:
                        running.remove(job)
                        done[job.run_id] = st
                if tick:
                    tick(running)
                time.sleep(poll_seconds)
        except BaseException:
            for job in running:
                job.cancel()
            deadline = time.monotonic() + 15
            for job in running:
                assert job.proc is not None
                try:
                    job.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    job.proc.kill()
                    job.proc.wait()
            raise
        return done
