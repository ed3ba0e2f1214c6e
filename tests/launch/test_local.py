"""The local launcher: `sweep cancel` stops a real `sweep launch` process; concurrent launchers
share the machine's cores through the slot lock directory; the workers get ``env``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import invoke
from sweep.errors import LaunchError
from sweep.launch.local import cancel_local
from sweep.launch.slots import Slots
from sweep.records import RunState
from sweep.store import Store

SWEEP = [sys.executable, "-m", "sweep"]
LONG = ["model.widths=[32]", "budget.tokens=[2e6]"]  # trains for minutes: stopped long before


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, SWEEP_SLOTS_DIR=str(tmp_path / "slots"), WANDB_MODE="offline",
                WANDB_SILENT="true")


def _runs(root: Path, name: str):
    with Store(root, create=False) as st:
        return st.runs(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start_long_launch(runner, root: Path, tmp_path: Path, name: str, widths: str = "[32]",
                       jobs: int = 2):
    """A real `sweep launch` process, returned once a worker trains (tokens counted), with
    the running run's id and its worker's pid."""
    assert invoke(runner, ["plan", name, f"model.widths={widths}", LONG[1]], root).exit_code == 0
    proc = subprocess.Popen([*SWEEP, "launch", name, "--no-progress", "--jobs", str(jobs),
                             "--root", str(root)], env=_env(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no worker started training within 180 s"
        for rec in _runs(root, name):
            if rec.state == RunState.RUNNING and rec.tokens_done > 0 and ":" in rec.job_id:
                return proc, rec.run.run_id, int(rec.job_id.split(":")[1])
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def test_cancel_local_stops_a_real_launch(runner, root, tmp_path):
    """--jobs 1 of 2 runs: one trains, one waits; both end cancelled, the worker is gone."""
    launch, run_id, worker = _start_long_launch(runner, root, tmp_path, "c", "[32,64]", jobs=1)
    try:
        ids = sorted(r.run.run_id for r in _runs(root, "c"))
        assert cancel_local(root, "c", timeout=60) == ids
        out, err = launch.communicate(timeout=30)  # cancel_local returns once it has exited
        assert launch.returncode == 1, (out, err)
        assert "cancelled (SIGTERM" in err and "Traceback" not in err
    finally:
        _stop(launch)
    assert not _alive(worker), f"worker {worker} outlived its cancelled launcher"
    recs = {r.run.run_id: r for r in _runs(root, "c")}
    assert {r.state for r in recs.values()} == {RunState.CANCELLED}
    assert 0 < recs[run_id].tokens_done < recs[run_id].run.tokens
    other = next(r for i, r in recs.items() if i != run_id)
    assert other.tokens_done == 0 and "sweep cancel" in other.error
    assert cancel_local(root, "c") == []  # nothing running now
    assert cancel_local(root, "never-launched") == []


def test_cli_cancel_of_a_local_launch(runner, root, tmp_path):
    launch, run_id, worker = _start_long_launch(runner, root, tmp_path, "c")
    try:
        r = invoke(runner, ["cancel", "c"], root)
        assert r.exit_code == 0 and r.stdout.strip() == "c: cancelled 1 run", r.output
        launch.communicate(timeout=30)
    finally:
        _stop(launch)
    assert not _alive(worker) and _runs(root, "c")[0].state == RunState.CANCELLED
    r = invoke(runner, ["cancel", "c"], root)
    assert r.exit_code == 0 and "nothing to cancel" in r.stdout


def test_cancel_refuses_a_lock_it_cannot_signal(root, tmp_path):
    """A lock held outside the main thread (no SIGTERM handler) is not signalled: the holder,
    maybe a notebook, would die instead of stopping its runs."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE,
                              text=True, env=_env(tmp_path))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LaunchError, match="cannot be stopped from here"):
            cancel_local(root, "s", timeout=5)
        assert holder.poll() is None
    finally:
        _stop(holder)


HOLDER = r"""
import sys, threading, time
from pathlib import Path
from sweep.launch.base import launch_lock
def hold():
    with launch_lock(Path(sys.argv[1]), "s"):
        print("locked", flush=True)
        time.sleep(600)
t = threading.Thread(target=hold); t.start(); t.join()
"""

DRIVER = r"""
import sys
from pathlib import Path
from sweep.launch.base import pending_runs
from sweep.launch.local import LocalLauncher
from sweep.store import Store
root, name, slots = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with Store(root) as store:
    todo = pending_runs(store, name)
launcher = LocalLauncher(root, name, jobs=2, cores=2, slots_dir=slots,
                         env={"SWEEP_TEST_MARK": name})
states = launcher.wait(launcher.submit(todo), poll_seconds=0.1)
print(sorted(s.value for s in states.values()), launcher.max_threads, flush=True)
"""


def _workers(parents: set[int]) -> dict[int, dict[str, str]]:
    """Live worker processes started by ``parents`` (launchers) → their environment. Only
    direct children count: a worker's own fork (before an exec) looks like a worker too."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[1]) not in parents:
                continue
            if b"sweep.train.worker" not in (d / "cmdline").read_bytes():
                continue
            raw = (d / "environ").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        out[int(d.name)] = dict(kv.split("=", 1) for kv in raw if "=" in kv)
    return out


def test_two_launchers_share_the_cores(runner, root, tmp_path):
    """Two launchers, each of 2 runs with jobs=2, on a 2-core budget: never more than 2 worker
    threads at once (4 without the shared slots); every worker's threads = its slots."""
    for name in ("a", "b"):
        assert invoke(runner, ["plan", name, "model.widths=[32,64]", "budget.tokens=[4e4]"],
                      root).exit_code == 0
    seen: list[int] = []
    marks: set[str] = set()
    stop = threading.Event()

    def observe() -> None:
        while not stop.is_set():
            ws = _workers(parents)
            seen.append(sum(int(e.get("OMP_NUM_THREADS", "999")) for e in ws.values()))
            marks.update(e.get("SWEEP_TEST_MARK", "") for e in ws.values())
            time.sleep(0.02)

    procs = [subprocess.Popen([sys.executable, "-c", DRIVER, str(root), name,
                               str(tmp_path / "slots")], env=_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    parents = {p.pid for p in procs}
    obs = threading.Thread(target=observe)
    obs.start()
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        stop.set()
        obs.join()
        for p in procs:
            _stop(p)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.startswith("['completed', 'completed']"), (out, err[-2000:])
        assert int(out.split()[-1]) <= 2
    assert max(seen) <= 2, f"{max(seen)} worker threads at once on 2 cores"
    assert max(seen) == 2  # the budget was used (the observer saw workers)
    assert marks == {"a", "b"}  # LocalLauncher(env=...) reached the workers
    assert "SWEEP_TEST_MARK" not in os.environ
    assert all(r.state == RunState.COMPLETED for n in "ab" for r in _runs(root, n))


KEEP = r"""
import sys, time
from sweep.launch.slots import Slots
lease = Slots(2, sys.argv[1]).try_acquire(2)
print(lease.n, flush=True)
time.sleep(600)
"""


def test_slots_lease_and_release(tmp_path):
    slots = Slots(3, tmp_path / "s")
    a = slots.try_acquire(2, tag="a")
    assert a is not None and a.n == 2
    assert slots.try_acquire(2, least=2) is None  # one left, two needed: nothing held
    b = slots.try_acquire(2, tag="b")
    assert b is not None and b.n == 1
    assert slots.try_acquire(1) is None
    a.release()
    c = slots.try_acquire(5)
    assert c is not None and c.n == 2  # capped at what is free
    b.release()
    c.release()
    # a holder killed with SIGKILL frees its slots (flocks die with the process)
    keep = subprocess.Popen([sys.executable, "-c", KEEP, str(tmp_path / "k")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert keep.stdout.readline().strip() == "2"
        assert Slots(2, tmp_path / "k").try_acquire(1) is None
    finally:
        _stop(keep)
    d = Slots(2, tmp_path / "k").try_acquire(2)
    assert d is not None and d.n == 2
    d.release()


def test_slot_dir_from_env_and_not_someone_elses(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_SLOTS_DIR", str(tmp_path / "from-env"))
    assert Slots(1).dir == tmp_path / "from-env"
    assert Slots(1, tmp_path / "explicit").dir == tmp_path / "explicit"
    (tmp_path / "link").symlink_to(tmp_path / "explicit")
    with pytest.raises(LaunchError, match="not a directory owned by you"):
        Slots(1, tmp_path / "link")  # a symlink planted in /tmp is not followed
    (tmp_path / "file").write_text("")
    with pytest.raises(LaunchError, match="cannot create the core slot directory"):
        Slots(1, tmp_path / "file")
