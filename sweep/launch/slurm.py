"""Slurm launcher: one sbatch job array per launch, batched state queries, cancel.

Task i of the array reads line i of a manifest written at submit time (one run directory per
line) and ``exec``s ``python -m sweep.train.worker RUN_DIR`` (or, for several processes per run,
``srun`` + ``torchrun``; the script is rendered by sweep/launch/sbatch.py), so Slurm's warning
signal (``--signal=B:USR1@N``, sent to the batch shell) reaches the worker, which checkpoints
and requeues itself (see sweep/train/worker.py).

The store is the source of truth; Slurm is asked only about runs the store has as queued or
running, in one ``squeue`` call (plus ``scontrol show job`` for jobs that left the queue), never
``sacct`` (it needs slurmdbd). Queries are rate-limited like submitit's
``InfoWatcher.update_if_long_enough``; a failed query is a warning, not an error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sweep.conf_schema import LauncherConf
from sweep.errors import ConfigError, LaunchError
from sweep.fsutil import atomic_write_json, atomic_write_text
from sweep.launch.base import Job, Launcher
from sweep.launch.sbatch import _ranges, parse_time, render_sbatch, time_for  # noqa: F401
from sweep.records import PlannedRun, RunRecord, RunState
from sweep.store import Store
from sweep.train.worker import write_spec

log = logging.getLogger(__name__)

JOB_ID_RE = re.compile(r"\d+(_\d+)?")
QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
                 "RESV_DEL_HOLD", "SUSPENDED", "STOPPED", "RESIZING"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
Runner = Callable[..., subprocess.CompletedProcess]


def is_slurm_id(job_id: str | None) -> bool:
    """Slurm ids are ``123`` or ``123_4`` (array task); local runs have ``local:PID``."""
    return bool(job_id) and JOB_ID_RE.fullmatch(job_id) is not None


@dataclass(frozen=True)
class SchedInfo:
    """Slurm's view of one job: its state word, node list and pending reason."""

    job_id: str
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, … or UNKNOWN (purged from slurmctld)
    node: str = ""
    reason: str = ""

    @property
    def run_state(self) -> RunState | None:
        """queued / running while the job lives; None once it has ended."""
        if self.state in QUEUED_STATES:
            return RunState.QUEUED
        if self.state in RUNNING_STATES:
            return RunState.RUNNING
        return None


class SlurmJob(Job):
    def __init__(self, run_id: str, job_id: str, runner: Runner = subprocess.run):
        self.run_id, self.job_id, self._run = run_id, job_id, runner

    def state(self) -> RunState:
        info = query([self.job_id], self._run)[self.job_id]
        return info.run_state or {"COMPLETED": RunState.COMPLETED,
                                  "CANCELLED": RunState.CANCELLED}.get(info.state, RunState.FAILED)

    def cancel(self) -> None:
        scancel([self.job_id], self._run)


def _call(args: list[str], runner: Runner, env: Mapping[str, str] | None = None
          ) -> subprocess.CompletedProcess:
    """Run a Slurm command; ``env``: variables added to this process's environment (sbatch
    exports its environment to the job, so that is how workers get them)."""
    kw = {"env": {**os.environ, **env}} if env else {}
    try:
        return runner(args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                      **kw)
    except FileNotFoundError:
        raise LaunchError(f"`{args[0]}` not found: is Slurm installed here?") from None
    except subprocess.TimeoutExpired:
        raise LaunchError(f"`{args[0]}` did not answer within 60 s") from None


def query(job_ids: Sequence[str], runner: Runner = subprocess.run) -> dict[str, SchedInfo]:
    """Slurm's state of ``job_ids``: one ``squeue`` call for all the arrays involved, plus
    ``scontrol show job ARRAY`` per array with tasks that left the queue (rare: the worker
    records its end first). Raises LaunchError if Slurm cannot be asked."""
    want = set(job_ids)
    if not want:
        return {}
    arrays = sorted({j.split("_")[0] for j in want}, key=int)
    p = _call(["squeue", "-h", "-r", "-o", "%i|%T|%N|%r", "-j", ",".join(arrays)], runner)
    if p.returncode != 0 and "Invalid job id" not in p.stderr:
        raise LaunchError(f"squeue failed: {p.stderr.strip() or p.returncode}")
    out: dict[str, SchedInfo] = {}
    for line in p.stdout.splitlines() if p.returncode == 0 else []:
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0] in want:
            out[parts[0]] = SchedInfo(parts[0], parts[1], parts[2],
                                      "" if parts[3] == "None" else parts[3])
    # jobs that left the queue: slurmctld keeps them for MinJobAge (scontrol, not sacct)
    for array in sorted({j.split("_")[0] for j in want - set(out)}, key=int):
        p = _call(["scontrol", "show", "job", "-o", array], runner)
        if p.returncode != 0:
            if "Invalid job id" in p.stderr:
                continue  # purged: the whole array is long gone
            raise LaunchError(f"scontrol show job failed: {p.stderr.strip() or p.returncode}")
        for line in p.stdout.splitlines():
            kv = dict(re.findall(r"(\w+)=(\S*)", line))
            task = kv.get("ArrayTaskId", "")
            jid = f"{kv.get('ArrayJobId')}_{task}" if task.isdigit() else kv.get("JobId", "")
            if jid in want and jid not in out:
                out[jid] = SchedInfo(jid, kv.get("JobState", "UNKNOWN"),
                                     kv.get("NodeList", "").replace("(null)", ""),
                                     "" if kv.get("Reason") == "None" else kv.get("Reason", ""))
    for jid in want - set(out):
        out[jid] = SchedInfo(jid, "UNKNOWN")
    return out


def scancel(job_ids: Sequence[str], runner: Runner = subprocess.run) -> None:
    if job_ids:
        p = _call(["scancel", *job_ids], runner)
        if p.returncode != 0:
            raise LaunchError(f"scancel failed: {p.stderr.strip() or p.returncode}")


class InfoWatcher:
    """Rate-limited, cached ``query`` (after submitit's InfoWatcher): the cache, shared by every
    ``sweep status`` through a file, is refreshed at most every min(60, max(2, age / 2)) s, age
    being the time since the newest submission; a failed query is a warning and backs off
    2, 4, 8 … 60 s. Jobs missing from the cache are always queried."""

    def __init__(self, path: Path, runner: Runner = subprocess.run,
                 clock: Callable[[], float] = time.time, max_delay: float = 60.0):
        self.path, self.run, self.clock, self.max_delay = path, runner, clock, max_delay

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"checked_at": 0.0, "submitted_at": 0.0, "failures": 0, "info": {}}

    def _save(self, c: dict) -> None:
        atomic_write_json(self.path, c, indent=None)

    def submitted(self) -> None:
        c = self._load()
        c["submitted_at"], c["checked_at"] = self.clock(), 0.0
        self._save(c)

    def delay(self, c: dict) -> float:
        if c.get("failures"):
            return min(self.max_delay, 2.0 ** c["failures"])
        return min(self.max_delay, max(2.0, (self.clock() - c.get("submitted_at", 0.0)) / 2))

    def states(self, job_ids: Sequence[str], force: bool = False
               ) -> tuple[dict[str, SchedInfo], float] | None:
        """(info per job id, time of that query), or None while Slurm cannot be asked."""
        c, now = self._load(), self.clock()
        waiting = now - max(c["checked_at"], c.get("failed_at", 0.0)) < self.delay(c)
        if waiting and not force:
            if c.get("failures"):
                return None  # backing off after a failed query
            if set(job_ids) <= set(c["info"]):
                return {j: SchedInfo(*c["info"][j]) for j in job_ids}, c["checked_at"]
        try:
            info = query(job_ids, self.run)
        except LaunchError as exc:
            c["failures"], c["failed_at"] = c.get("failures", 0) + 1, now
            self._save(c)
            log.warning("could not ask Slurm for the jobs' state (%s); showing the store's", exc)
            return None
        c.update(checked_at=now, failures=0,
                 info={j: dataclasses.astuple(i) for j, i in info.items()})
        self._save(c)
        return info, now


class SlurmLauncher(Launcher):
    """Submits runs of one sweep as one sbatch array, ``jobs`` at a time (the throttle)."""

    def __init__(self, root: Path, sweep: str, conf: LauncherConf, jobs: int | None = None,
                 python: str | None = None, runner: Runner = subprocess.run, *,
                 env: Mapping[str, str] | None = None):
        super().__init__(Path(root).absolute(), sweep)
        self.env = dict(env or {})  # variables added to the jobs' environment (e.g. WANDB_MODE)
        self.conf, self.throttle = conf, max(1, jobs or conf.jobs)
        # this interpreter, by its absolute path but not resolved: a venv's python is a symlink
        self.python, self.run = python or os.path.abspath(sys.executable), runner
        stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        self.sub_dir = self.root / sweep / "slurm" / stamp  # manifest, script, Slurm's logs
        self.array_id: str | None = None
        self._shorter: dict[str, list[int]] = {}  # per-size time limit → task indices

    def render(self, runs: Sequence[PlannedRun]) -> str:
        """The script. The array asks for the longest per-size time limit; tasks of smaller
        runs get theirs by `scontrol update` after submission (lowering is always allowed)."""
        times = [time_for(r, self.conf) for r in runs]
        longest = max(times, key=lambda t: parse_time(t) or 0.0)
        self._shorter = {}
        for i, t in enumerate(times):
            if parse_time(t) != parse_time(longest):
                self._shorter.setdefault(t, []).append(i)
        return render_sbatch(sweep=self.sweep, n_tasks=len(runs), throttle=self.throttle,
                             conf=self.conf, time_limit=longest,
                             manifest=self.sub_dir / "manifest", log_dir=self.sub_dir,
                             workdir=self.root / self.sweep, python=self.python,
                             task_times=self._shorter, nproc=_nproc(runs, self.conf.nodes))

    def submit(self, runs: Sequence[PlannedRun], attempts: Mapping[str, int] | None = None
               ) -> list[Job]:
        """Write run.json per run, the manifest and the script; sbatch it; return the tasks."""
        script = self.render(runs)
        dirs = [self.run_dir(r) for r in runs]
        for r, d in zip(runs, dirs):
            done = (attempts or {}).get(r.run_id, 0)
            write_spec(d, r, self.root, self.conf.cpus_per_task * r.train.nproc,
                       attempt_limit=done + self.conf.max_attempts)
        self.sub_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.sub_dir / "manifest", "".join(f"{d}\n" for d in dirs))
        atomic_write_text(self.sub_dir / "job.sbatch", script)
        p = _call(["sbatch", "--parsable", str(self.sub_dir / "job.sbatch")], self.run, self.env)
        first = p.stdout.strip().split(";")[0]
        if p.returncode != 0 or not first.isdigit():
            raise LaunchError(f"sbatch refused sweep '{self.sweep}': "
                              f"{(p.stderr or p.stdout).strip() or p.returncode}")
        self.array_id = first
        atomic_write_text(self.sub_dir / "job_id", first + "\n")
        for t, tasks in self._shorter.items():
            u = _call(["scontrol", "update", f"JobId={first}_[{_ranges(tasks)}]",
                       f"TimeLimit={t}"], self.run)
            if u.returncode != 0:
                log.warning("could not lower the time limit of tasks %s to %s: %s",
                            _ranges(tasks), t, u.stderr.strip())
        return [SlurmJob(r.run_id, f"{first}_{i}", self.run) for i, r in enumerate(runs)]

    def poll(self, jobs: Sequence[Job]) -> dict[str, RunState]:
        info = query([j.job_id for j in jobs], self.run)
        return {j.run_id: info[j.job_id].run_state or RunState.FAILED for j in jobs}

    def cancel(self, jobs: Sequence[Job]) -> None:
        scancel([j.job_id for j in jobs], self.run)


def _nproc(runs: Sequence[PlannedRun], nodes: int) -> int:
    """The processes per node of an array's runs (train.nproc): one value for the whole array,
    and every run's batch must split over nodes × nproc processes."""
    found = sorted({r.train.nproc for r in runs})
    if len(found) > 1:
        raise LaunchError(f"runs with different train.nproc ({found}) cannot share one array; "
                          "plan them with one train.nproc")
    nproc = found[0] if found else 1
    bad = [f"{r.run_id} ({r.batch_size})" for r in runs if r.batch_size % (nproc * nodes)]
    if bad:
        raise ConfigError(f"batch (sequences) of run {bad[0]} does not split over launcher.nodes "
                          f"× train.nproc = {nodes * nproc} processes")
    return nproc


def watcher(root: Path, sweep: str, runner: Runner = subprocess.run) -> InfoWatcher:
    return InfoWatcher(Path(root) / sweep / "slurm" / "squeue.json", runner)


def merge_status(store: Store, root: Path, sweep: str, runs: list[RunRecord], *,
                 force: bool = False, runner: Runner = subprocess.run
                 ) -> tuple[list[RunRecord], dict[str, SchedInfo]]:
    """The store's runs with Slurm's view merged in: queued/running from the scheduler for live
    jobs; a run whose job has ended without the worker recording a result is *lost*: failed in
    the store with an error saying so. Returns the runs and Slurm's info per run id."""
    live = {r.run.run_id: r.job_id for r in runs
            if r.state in (RunState.QUEUED, RunState.RUNNING) and is_slurm_id(r.job_id)}
    if not live:
        return runs, {}
    got = watcher(root, sweep, runner).states(sorted(set(live.values())), force=force)
    if got is None:
        return runs, {}
    info, checked_at = got
    out, sched = [], {}
    for r in runs:
        jid = live.get(r.run.run_id)
        if jid is None:
            out.append(r)
            continue
        i = sched[r.run.run_id] = info[jid]
        if i.run_state is not None:
            out.append(dataclasses.replace(r, state=i.run_state))
            continue
        why = (f"lost: Slurm job {jid} ended ({i.state}) without a result from the worker; "
               f"see {Path(root) / sweep / r.run.run_id / 'worker.log'}")
        if store.set_state_if(r.run.run_id, (RunState.QUEUED, RunState.RUNNING), RunState.FAILED,
                              why, job_id=jid, before=checked_at):
            out.append(dataclasses.replace(r, state=RunState.FAILED, error=why))
        else:  # the worker wrote meanwhile: the store wins
            out.append(next(x for x in store.runs(sweep) if x.run.run_id == r.run.run_id))
    return out, sched


def cancel_sweep(store: Store, sweep: str, runner: Runner = subprocess.run) -> list[str]:
    """scancel the sweep's queued and running Slurm tasks; their runs become cancelled.
    Returns the run ids cancelled."""
    recs = [r for r in store.runs(sweep)
            if r.state in (RunState.QUEUED, RunState.RUNNING) and is_slurm_id(r.job_id)]
    scancel([r.job_id for r in recs if r.job_id], runner)
    for r in recs:  # a running worker may get there first (SIGTERM → cancelled)
        store.set_state_if(r.run.run_id, (RunState.QUEUED, RunState.RUNNING),
                           RunState.CANCELLED, f"cancelled by `sweep cancel` (job {r.job_id})",
                           job_id=r.job_id)
    now = {r.run.run_id: r.state for r in store.runs(sweep)}
    return [r.run.run_id for r in recs if now.get(r.run.run_id) == RunState.CANCELLED]
