"""A real Slurm on localhost for the session (after ../shared/slurm/slurm-up.sh).

`slurm_cluster` writes a slurm.conf with its own ports under a temp dir, starts munged,
``slurmctld -D -i`` and three slurmd daemons on this machine: ``slurmd -D -N n0`` (the default
partition ``debug``) and ``-N n1``, ``-N n2`` (partition ``two``: two "nodes" with their own
slurmd port, NodeAddr 127.0.0.1, 2 CPUs and 2 stand-in GPUs each: GPU gres whose device files
are character devices made in the temp dir as aliases of /dev/null (1, 3), so Slurm binds them
and sets CUDA_VISIBLE_DEVICES). Debian's slurmd 22.05 runs several daemons per host with
distinct ``-N`` names (no node may be *named* like the others' NodeHostname: a node "localhost"
beside them is refused with "fatal: Duplicated NodeHostName n1"). It waits until ``sinfo`` shows
every node idle, points SLURM_CONF at it for the session, and at the end cancels its jobs and
stops exactly the processes it started. No Slurm installed: skip, unless SWEEP_REQUIRE_SLURM=1
(CI), then fail.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
NODES = ("n0", "n1", "n2")  # one slurmd each; n1 and n2 form partition "two"
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


@dataclass
class SlurmCluster:
    """One slurmctld + slurmd on localhost; its config, state and logs live under ``dir``, the
    munge socket under ``munge`` (munged wants every directory above its socket searchable by
    all, and pytest's temp dirs are 0700)."""

    dir: Path
    munge: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    gpus: bool = False  # the stand-in GPU gres of n1, n2 could be made (mknod allowed)

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
        for sub in ("state", "spool", "log", "spool/n0", "spool/n1", "spool/n2", "dev"):
            (self.dir / sub).mkdir()
        self.gpus = _stand_in_gpus(self.dir)
        m, env = self.munge, self.env()
        m.chmod(0o711)
        key = m / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(_conf(self.dir, m, getpass.getuser(), self.gpus))
        self._out = open(self.dir / "log" / "daemons.out", "ab")  # noqa: SIM115 - lives with them
        self._spawn(["munged", "-F", f"--key-file={key}", f"--socket={m}/munge.sock",
                     f"--pid-file={m}/munged.pid", f"--log-file={self.dir}/log/munged.log",
                     f"--seed-file={m}/seed"])
        deadline = time.monotonic() + 10
        while not (m / "munge.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._spawn(["slurmctld", "-D", "-i"])
        for node in NODES:
            self._spawn(["slurmd", "-D", "-N", node])
        deadline = time.monotonic() + 60
        while True:
            p = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                               env=env, timeout=30, check=False)
            if p.stdout.split() == ["idle"] * len(NODES):
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
        if len(self.procs) == 2 + len(NODES) and all(p.poll() is None for p in self.procs):
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


def _stand_in_gpus(d: Path) -> bool:
    """Two character devices aliasing /dev/null under ``d/dev`` and a gres.conf naming them as
    GPUs (Slurm takes only device files); False where mknod is not allowed."""
    try:
        for i in range(2):
            os.mknod(d / "dev" / f"nvidia{i}", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError:
        return False
    (d / "gres.conf").write_text(f"NodeName=n[1-2] Name=gpu File={d}/dev/nvidia[0-1]\n")
    return True


def _conf(d: Path, munge: Path, user: str, gpus: bool) -> str:
    ctld, slurmd, n1, n2 = _free_ports(4)
    gres = " Gres=gpu:2" if gpus else ""
    return f"""ClusterName=sweeptest
{"GresTypes=gpu" if gpus else ""}
SlurmctldHost=localhost
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}/munge.sock
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.%n.log
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
NodeName=n0 NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory=4000
NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port={n1} CPUs=2 RealMemory=2000{gres}
NodeName=n2 NodeHostname=localhost NodeAddr=127.0.0.1 Port={n2} CPUs=2 RealMemory=2000{gres}
PartitionName=debug Nodes=n0 Default=YES MaxTime=INFINITE State=UP
PartitionName=two Nodes=n1,n2 MaxTime=INFINITE State=UP
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
