"""The launcher interface (after submitit's Executor/Job): submit runs, get jobs with state."""

from __future__ import annotations

import abc
import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sweep.errors import LaunchError
from sweep.records import PlannedRun, RunState
from sweep.store import Store


class Job(abc.ABC):
    """One submitted run."""

    run_id: str
    job_id: str

    @abc.abstractmethod
    def state(self) -> RunState:
        """The scheduler's view of the job (the store holds the worker's own view)."""

    @abc.abstractmethod
    def cancel(self) -> None: ...


class Launcher(abc.ABC):
    """Submits runs of one sweep; each run becomes ``python -m sweep.train.worker RUN_DIR``."""

    def __init__(self, root: Path, sweep: str):
        self.root, self.sweep = Path(root), sweep

    def run_dir(self, run: PlannedRun) -> Path:
        return self.root / self.sweep / run.run_id

    @abc.abstractmethod
    def submit(self, runs: Sequence[PlannedRun]) -> list[Job]: ...


def pending_runs(store: Store, sweep: str) -> list[PlannedRun]:
    """Runs of the plan that are not completed, largest compute first (balances the slots).

    A WSD branch (``branch_of``) is not launched while its main run is pending: the main run's
    worker trains its cooldown. Once the main run is completed, a branch still not completed
    (it failed, or started before a checkpoint the main run resumed from) is launched as a
    standalone run of the same schedule, which ends where the branch would have."""
    todo = [r.run for r in store.runs(sweep) if r.state != RunState.COMPLETED]
    mains = {r.run_id for r in todo}
    todo = [r for r in todo if r.branch_of is None or r.branch_of not in mains]
    return sorted(todo, key=lambda r: -r.flops_6nd)


@contextmanager
def launch_lock(root: Path, sweep: str) -> Iterator[None]:
    """One launcher per sweep at a time. An flock dies with its process, so a killed launcher's
    sweep is free again at once."""
    path = Path(root) / sweep / ".launch.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise LaunchError(f"sweep '{sweep}' is already being launched by another process "
                              f"({fh.read().strip() or 'unknown pid'})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
