"""Two launchers of one sweep never run at once; a killed launcher's lock dies with it."""

import signal
import subprocess
import sys
import time

from conftest import invoke

HOLDER = r"""
import sys, time
from pathlib import Path
from sweep.launch.base import launch_lock
with launch_lock(Path(sys.argv[1]), "s"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_second_launch_refused_until_holder_dies(runner, root):
    assert invoke(runner, ["plan", "s", "model.widths=[32]", "budget.tokens=[1e4]"], root) \
        .exit_code == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = invoke(runner, ["launch", "s", "--no-progress"], root)
        assert r.exit_code == 1 and "already being launched" in r.stderr
        assert f"(pid {holder.pid})" in r.stderr
        assert "Traceback" not in r.output
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    time.sleep(0.1)
    # the dead launcher's lock is gone: the plan's single run can now be claimed
    from sweep.launch.base import launch_lock

    with launch_lock(root, "s"):
        pass


def test_lock_records_its_holder_and_sigterm_raises_launch_cancelled(root):
    """The lock file names the holder (pid + start time, against pid reuse); while a local
    launcher holds it, SIGTERM raises LaunchCancelled once, and the old handler comes back."""
    import json
    import os

    import pytest

    from sweep.launch.base import LaunchCancelled, launch_lock, process_start, read_lock

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(LaunchCancelled, match="cancelled"):
        with launch_lock(root, "s"):
            info = read_lock(root, "s")
            assert info == {"pid": os.getpid(), "start": process_start(os.getpid()),
                            "kind": "local", "cancel": "SIGTERM"}
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert signal.getsignal(signal.SIGTERM) is before
    assert read_lock(root, "s") is None  # emptied on release
    with launch_lock(root, "s", kind="slurm"):
        assert json.loads((root / "s" / ".launch.lock").read_text())["cancel"] is None
        assert signal.getsignal(signal.SIGTERM) is before  # a submission is not interrupted
    assert process_start(2 ** 22 + 1) is None
