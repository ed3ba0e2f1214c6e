"""A real one-node Slurm on localhost for the session (after ../shared/slurm/slurm-up.sh).

`slurm_cluster` writes a slurm.conf with its own ports under a temp dir, starts munged,
``slurmctld -D -i`` and ``slurmd -D -N localhost`` as child processes, waits until ``sinfo``
shows the node idle, points SLURM_CONF at it for the session, and at the end cancels its jobs
and stops exactly the processes it started. No Slurm installed: skip, unless
SWEEP_REQUIRE_SLURM=1 (CI), then fail.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


@dataclass
class SlurmCluster:
    """One slurmctld + slurmd on localhost; its config, state and logs live under ``dir``, the
    munge socket under ``munge`` (munged wants every directory above its socket searchable by
    all, and pytest's temp dirs are 0700)."""

    dir: Path
    munge: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.dir / "slurm.conf"

    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(list(args), capture_output=True, text=True, env=self.env(),
                           timeout=60, check=False)
        if check and p.returncode:
            raise AssertionError(f"{' '.join(args)} failed ({p.returncode}): "
                                 f"{p.stderr.strip()} {p.stdout.strip()} {self.jobs()}")
        return p

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Job id → (state, reason) of every job in the queue (array tasks one by one)."""
        out = self.run("squeue", "-h", "-r", "-o", "%i|%T|%r").stdout
        return {i: (s, r) for i, s, r in (ln.split("|") for ln in out.splitlines() if ln)}

    def logs(self) -> str:
        parts = []
        for f in sorted((self.dir / "log").glob("*")):
            parts.append(f"--- {f.name}\n" + "\n".join(f.read_text().splitlines()[-15:]))
        return "\n".join(parts)

    def start(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.dir / sub).mkdir()
        m, env = self.munge, self.env()
        m.chmod(0o711)
        key = m / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(_conf(self.dir, m, getpass.getuser()))
        self._out = open(self.dir / "log" / "daemons.out", "ab")  # noqa: SIM115 - lives with them
        self._spawn(["munged", "-F", f"--key-file={key}", f"--socket={m}/munge.sock",
                     f"--pid-file={m}/munged.pid", f"--log-file={self.dir}/log/munged.log",
                     f"--seed-file={m}/seed"])
        deadline = time.monotonic() + 10
        while not (m / "munge.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._spawn(["slurmctld", "-D", "-i"])
        self._spawn(["slurmd", "-D", "-N", "localhost"])
        deadline = time.monotonic() + 60
        while True:
            p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                               env=env, timeout=30, check=False)
            if p.stdout.strip() == "idle":
                return
            dead = [pr.args[0] for pr in self.procs if pr.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"exited: {', '.join(dead)}" if dead else "no idle node in 60 s"
                pytest.fail(f"Slurm did not come up ({why})\n{self.logs()}")
            time.sleep(0.1)

    def _spawn(self, cmd: list[str]) -> None:
        self.procs.append(subprocess.Popen(cmd, stdout=self._out, stderr=self._out,
                                           env=self.env(), stdin=subprocess.DEVNULL,
                                           cwd=self.dir))

    def stop(self) -> None:
        """Cancel the jobs, let their workers exit, then stop exactly our three daemons."""
        if len(self.procs) == 3 and all(p.poll() is None for p in self.procs):
            self.run("scancel", f"--user={getpass.getuser()}", check=False)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                q = self.run("squeue", "-h", check=False)
                if q.returncode or not q.stdout.strip():
                    break
                time.sleep(0.2)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if hasattr(self, "_out"):
            self._out.close()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _conf(d: Path, munge: Path, user: str) -> str:
    ctld, slurmd = _free_ports(2)
    return f"""ClusterName=sweeptest
SlurmctldHost=localhost
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}/munge.sock
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=86400
KillWait=5
NodeName=localhost NodeHostname=localhost CPUs={os.cpu_count() or 1} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
"""


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    missing = [c for c in DAEMONS + CLIENTS if shutil.which(c) is None]
    if missing:
        msg = (f"Slurm is not installed here (missing: {', '.join(missing)}; apt-get install "
               "slurm-wlm munge)")
        if os.environ.get("SWEEP_REQUIRE_SLURM") == "1":
            pytest.fail(msg + " but SWEEP_REQUIRE_SLURM=1")
        pytest.skip(msg)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"),
                           Path(tempfile.mkdtemp(prefix="sweep-munge-")))
    mp = pytest.MonkeyPatch()
    try:
        cluster.start()
        mp.setenv("SLURM_CONF", str(cluster.conf))
        yield cluster
    finally:
        mp.undo()
        cluster.stop()
        shutil.rmtree(cluster.munge, ignore_errors=True)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """The corpus cache, shared by the tests of the session (and the Slurm tasks they start)."""
    monkeypatch.setenv("SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
