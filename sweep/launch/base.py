"""The launcher interface (after submitit's Executor/Job): submit runs, get jobs with state."""

from __future__ import annotations

import abc
import fcntl
import json
import os
import signal
import threading
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


class LaunchCancelled(LaunchError):
    """Raised in a local launcher by SIGTERM (``sweep cancel``): it stops its runs and exits."""


def lock_path(root: Path, sweep: str) -> Path:
    return Path(root) / sweep / ".launch.lock"


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot, /proc/PID/stat field 22), or None if
    there is no such process: with the pid it names one process, never a later reuse."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text[text.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def read_lock(root: Path, sweep: str) -> dict | None:
    """What the sweep's launch lock file says about its holder: ``{"pid", "start", "kind",
    "cancel"}`` (``cancel``: the signal that stops it, or None), or None if it says nothing.
    It is only meaningful while the lock is held."""
    try:
        info = json.loads(lock_path(root, sweep).read_text() or "null")
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


@contextmanager
def launch_lock(root: Path, sweep: str, kind: str = "local") -> Iterator[None]:
    """One launcher per sweep at a time. An flock dies with its process, so a killed launcher's
    sweep is free again at once. The file records the holder's pid and start time.

    ``kind='local'`` (a launcher that waits for its workers), in the main thread: while held,
    SIGTERM raises LaunchCancelled here (once; later ones are ignored while it cleans up), so
    the launcher stops its workers, marks their runs cancelled and exits; that is how
    ``sweep.launch.local.cancel_local`` stops it. ``kind='slurm'``: submission only, no handler.
    """
    path = lock_path(root, sweep)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = read_lock(root, sweep)
            who = f"pid {info['pid']}" if info else "unknown pid"
            raise LaunchError(f"sweep '{sweep}' is already being launched by another process "
                              f"({who})") from None
        handler = kind == "local" and threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGTERM, _on_term(sweep)) if handler else None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "start": process_start(os.getpid()),
                                 "kind": kind, "cancel": "SIGTERM" if handler else None}))
            fh.flush()
            yield
        finally:
            if handler:
                signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _on_term(sweep: str):
    fired: list[bool] = []

    def handler(signum: int, frame: object) -> None:
        if fired:
            return
        fired.append(True)
        raise LaunchCancelled(f"launch of sweep '{sweep}' cancelled (SIGTERM, e.g. `sweep cancel "
                              f"{sweep}`): its runs were stopped; launch again to resume them")

    return handler
