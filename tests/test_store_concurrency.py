"""8 processes write curves into one store at once; one is SIGKILLed mid-write. The store stays
readable and every row of the survivors is there."""

import signal
import subprocess
import sys
import time

from sweep import config
from sweep.plan import plan
from sweep.store import Store

WRITER = r"""
import sys, time
from sweep.records import CurvePoint
from sweep.store import Store
root, run_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Store(root) as st:
    for s in range(0, n, 5):  # 5 points per transaction, as a worker flushes
        st.add_points([CurvePoint(run_id, k, (k + 1) * 1024, 6.0 * k, 3.0 - k * 1e-4, None, 1e-3)
                       for k in range(s, min(s + 5, n))])
print("done", flush=True)
"""


def test_concurrent_writers_and_a_kill(root):
    cfg = config.load(["model.widths=[32,64,96,128]", "model.depths=[1,2]",
                       "budget.tokens=[1e5]"])
    runs = plan("c", cfg)
    assert len(runs) == 8
    with Store(root) as st:
        st.put_plan("c", [], {}, runs)
        for r in runs:
            st.start_attempt(r.run_id)
    n = 6000
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), r.run_id, str(n)],
                              stdout=subprocess.PIPE) for r in runs]
    victim = procs[3]
    deadline = time.monotonic() + 120
    with Store(root) as st:  # kill the victim once it is well into its writes
        while time.monotonic() < deadline:
            k = st.db.execute("SELECT COUNT(*) FROM curves c JOIN runs r ON r.rid=c.run "
                              "WHERE r.run_id=?", (runs[3].run_id,)).fetchone()[0]
            if k >= 200:
                break
            time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(300)
    assert victim.returncode == -signal.SIGKILL
    with Store(root) as st:
        assert st.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        c = st.curves_df(["c"])
    counts = c.groupby("run_id").size().to_dict()
    for r, p in zip(runs, procs):
        if p is victim:
            assert counts.get(r.run_id, 0) % 5 == 0  # whole transactions only
        else:
            assert p.returncode == 0 and counts[r.run_id] == n
            got = c[c.run_id == r.run_id].step.tolist()
            assert got == list(range(n))
    with Store(root) as st:  # the killed writer left no lock: a full checkpoint is not busy
        assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        busy, _, _ = st.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
