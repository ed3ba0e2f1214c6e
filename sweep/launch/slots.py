"""Machine-wide core slots: every local launcher of this user draws its jobs' threads from them.

A slot is one file ``slot-NNN`` in a lock directory (``launcher.slots_dir``, else
``$SWEEP_SLOTS_DIR``, else ``/tmp/sweep-slots-<uid>``), one per core. A job starts only when it
holds an exclusive ``flock`` on as many slot files as it gets threads, so launchers of one or
several sweeps, in one root or several, never run more threads than cores between them. The
lock fds are handed to the worker (``pass_fds``): a slot is held as long as the worker or its
launcher lives and is freed by the kernel when both are gone, killed or not.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from sweep.errors import LaunchError

log = logging.getLogger(__name__)
ENV_DIR = "SWEEP_SLOTS_DIR"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$SWEEP_SLOTS_DIR`` (read, never written) or ``/tmp/sweep-slots-<uid>``."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_DIR) or f"/tmp/sweep-slots-{os.getuid()}")


class Lease:
    """Slots held by one job: ``n`` threads. ``fds`` go to the worker with ``pass_fds``."""

    def __init__(self, fds: list[int], indices: list[int]):
        self.fds, self.indices = fds, indices

    @property
    def n(self) -> int:
        return len(self.fds)

    def release(self) -> None:
        """Close this process's copies. Never LOCK_UN: that would free the lock under a worker
        that still shares the open file; the kernel frees it when the last copy is closed."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class Slots:
    """``cores`` slot files in ``directory`` (0 / None: all usable cores, the default dir)."""

    def __init__(self, cores: int = 0, directory: str | os.PathLike | None = None):
        self.cores = cores or usable_cores()
        self.dir = Path(directory) if directory else default_dir()
        self._prepare()

    def _prepare(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(self.dir)
        except OSError as exc:
            raise LaunchError(f"cannot create the core slot directory {self.dir}: "
                              f"{exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise LaunchError(f"core slot directory {self.dir} is not a directory owned by you; "
                              f"set launcher.slots_dir or ${ENV_DIR} to another path")

    def path(self, i: int) -> Path:
        return self.dir / f"slot-{i:03d}"

    def try_acquire(self, want: int, least: int = 1, tag: str = "") -> Lease | None:
        """Up to ``want`` free slots if at least ``least`` are free (else None, nothing held).
        A held slot file says ``pid tag`` (for a person looking at the directory)."""
        want = max(1, min(want, self.cores))
        least = max(1, min(least, want))
        fds: list[int] = []
        idx: list[int] = []
        for i in range(self.cores):
            if len(fds) == want:
                break
            fd = os.open(self.path(i), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {tag}\n".encode(), 0)
            fds.append(fd)
            idx.append(i)
        if len(fds) < least:
            Lease(fds, idx).release()
            return None
        return Lease(fds, idx)
