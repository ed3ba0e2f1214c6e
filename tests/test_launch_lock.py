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
        assert "Traceback" not in r.output
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    time.sleep(0.1)
    # the dead launcher's lock is gone: the plan's single run can now be claimed
    from sweep.launch.base import launch_lock

    with launch_lock(root, "s"):
        pass
