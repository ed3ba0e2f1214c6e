"""The runs of a sweep: plan → launch (here or on Slurm) → status → cancel / retry, and demo.

Each function takes plain arguments, returns typed records and raises SweepError subclasses.
Nothing here writes ``os.environ``: the workers' environment (W&B defaults from the sweep's
config, the user's own values winning) is built once and handed to the launcher.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sweep import config as config_mod
from sweep.config import SweepConfig
from sweep.errors import ConfigError, StoreError
from sweep.fsutil import atomic_write_json
from sweep.plan import check_name, plan
from sweep.records import Fit, PlannedRun, RunRecord, RunState
from sweep.store import Store
from sweep.study import sweep_config, sweep_fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanResult:
    sweep: str
    runs: list[PlannedRun]
    added: int
    kept: int
    dropped: int


@dataclass(frozen=True)
class LaunchResult:
    sweep: str
    trained: list[str]  # local: trained; slurm: submitted (or, with dry_run, to be submitted)
    skipped: int
    states: dict[str, RunState]
    wall_seconds: float
    executor: str = "local"
    job_id: str | None = None  # slurm: the array's job id
    script: str | None = None  # slurm dry run: the sbatch script that was not submitted
    branches: int = 0  # WSD branch runs not yet completed, trained by their main runs' workers


@dataclass(frozen=True)
class Status:
    sweep: str
    runs: list[RunRecord]
    counts: dict[str, int] = field(default_factory=dict)
    sched: dict = field(default_factory=dict)  # run id → launch.slurm.SchedInfo (node, reason)
    last_loss: dict = field(default_factory=dict)  # run id → latest train loss (nats/token)


@dataclass(frozen=True)
class CancelResult:
    sweep: str
    cancelled: list[str]  # run ids


def plan_sweep(name: str, overrides: Sequence[str] = (), root: Path = Path("runs"), *,
               force: bool = False) -> PlanResult:
    """Compose the config, enumerate the grid, write the plan to the store and runs/NAME/."""
    check_name(name)
    cfg = config_mod.load(overrides)
    runs = plan(name, cfg)
    with Store(root) as store:
        added, kept, dropped = store.put_plan(
            name, list(overrides), dataclasses.asdict(cfg), runs, force=force)
    write_plan_file(Path(root) / name, runs)
    return PlanResult(name, runs, added, kept, dropped)


def write_plan_file(sweep_dir: Path, runs: Sequence[PlannedRun]) -> None:
    """runs/NAME/plan.json: the planned runs, for people and external tools (atomic)."""
    atomic_write_json(Path(sweep_dir) / "plan.json", [r.to_dict() for r in runs])


def worker_env(cfg: SweepConfig, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the workers' environment adds to ``base`` (default: this process's): WANDB_MODE,
    WANDB_PROJECT and WANDB_SILENT from the sweep's config, each only where ``base`` does not
    set it (the user's environment wins). Handed to the launcher; os.environ is never written."""
    base = os.environ if base is None else base
    defaults = {"WANDB_MODE": cfg.wandb.mode, "WANDB_PROJECT": cfg.wandb.project,
                "WANDB_SILENT": "true"}
    return {k: v for k, v in defaults.items() if k not in base}


def launch(name: str, root: Path = Path("runs"), *, jobs: int | None = None,
           overrides: Sequence[str] = (), progress: bool = True, executor: str | None = None,
           dry_run: bool = False, only: Sequence[str] | None = None) -> LaunchResult:
    """Train every not-yet-completed run of the plan (or of ``only``, run ids): on this machine
    ``jobs`` at a time, blocking; or with ``executor='slurm'`` (default: launcher.name) as one
    sbatch array, returning at once (``dry_run``: render the script, submit nothing)."""
    from sweep.launch.base import launch_lock, pending_runs
    from sweep.launch.local import LocalLauncher
    from sweep.launch.progress import Progress

    check_name(name)
    t0 = time.monotonic()
    with Store(root, create=False) as store:
        cfg = sweep_config(store, name, overrides)
        k = jobs or cfg.launcher.jobs
        env = worker_env(cfg)
        if (executor or cfg.launcher.name) == "slurm":
            return _launch_slurm(store, name, Path(root), cfg, k, dry_run, only, t0, env)
        if dry_run:
            raise ConfigError("--dry-run shows a Slurm script: use it with --executor slurm")
        with launch_lock(Path(root), name):
            in_slurm = _in_slurm(store, name)
            todo = [r for r in pending_runs(store, name)
                    if (only is None or r.run_id in only) and r.run_id not in in_slurm]
            recs = store.runs(name)
            skipped = sum(r.state == RunState.COMPLETED for r in recs)
            mains = {r.run_id for r in todo}
            branches = sum(r.run.branch_of in mains and r.state != RunState.COMPLETED
                           for r in recs)
            launcher = LocalLauncher(Path(root), name, k, cfg.launcher.threads_per_job, env=env,
                                     cores=cfg.launcher.cores,
                                     slots_dir=cfg.launcher.slots_dir or None)
            jobs_ = launcher.submit(todo)
            for j in jobs_:
                store.mark_queued(j.run_id, "local")
            bar = Progress(store, todo) if progress and todo else None
            try:
                states = launcher.wait(jobs_, tick=bar.update if bar else None)
            finally:
                if bar:
                    bar.close()
                _reap(store, name)
    return LaunchResult(name, [r.run_id for r in todo], skipped, states, time.monotonic() - t0,
                        branches=branches)


def _launch_slurm(store: Store, name: str, root: Path, cfg: SweepConfig, jobs: int,
                  dry_run: bool, only: Sequence[str] | None, t0: float,
                  env: dict[str, str]) -> LaunchResult:
    """Submit the runs not completed nor already queued/running in Slurm as one job array."""
    from sweep.launch import slurm
    from sweep.launch.base import launch_lock, pending_runs

    with launch_lock(root, name, kind="slurm"):
        recs, _ = slurm.merge_status(store, root, name, store.runs(name), force=True)
        busy = {r.run.run_id for r in recs if r.state in (RunState.QUEUED, RunState.RUNNING)}
        todo = [r for r in pending_runs(store, name)
                if r.run_id not in busy and (only is None or r.run_id in only)]
        skipped = len(recs) - len(todo)
        launcher = slurm.SlurmLauncher(root, name, cfg.launcher, jobs, env=env)
        if dry_run or not todo:
            script = launcher.render(todo) if todo else None
            return LaunchResult(name, [r.run_id for r in todo], skipped, {},
                                time.monotonic() - t0, "slurm", None, script)
        tasks = launcher.submit(todo, attempts={r.run.run_id: r.attempts for r in recs})
        for t in tasks:
            store.mark_submitted(t.run_id, t.job_id)
        slurm.watcher(root, name).submitted()
    log.info("submitted %d runs of %s as Slurm job array %s", len(tasks), name, launcher.array_id)
    return LaunchResult(name, [r.run_id for r in todo], skipped,
                        {t.run_id: RunState.QUEUED for t in tasks}, time.monotonic() - t0,
                        "slurm", launcher.array_id)


def cancel(name: str, root: Path = Path("runs")) -> CancelResult:
    """Cancel the sweep's queued and running runs: a local `sweep launch` of it on this machine
    (SIGTERM to the pid its launch lock holds; it stops its workers) and its Slurm jobs
    (scancel). Their runs become cancelled; completed runs keep their results; `retry`
    launches the rest again."""
    from sweep.launch.local import cancel_local
    from sweep.launch.slurm import cancel_sweep, watcher

    check_name(name)
    with Store(root, create=False) as store:
        store.sweep_overrides(name)  # unknown sweep: one line, before any signal
    local = cancel_local(Path(root), name)
    with Store(root, create=False) as store:
        done = cancel_sweep(store, name)
    watcher(Path(root), name).submitted()  # states changed: the next status asks Slurm again
    return CancelResult(name, sorted(set(local) | set(done)))


def retry(name: str, root: Path = Path("runs"), *, executor: str | None = None,
          jobs: int | None = None, overrides: Sequence[str] = (), dry_run: bool = False,
          progress: bool = True) -> LaunchResult:
    """Launch again the sweep's failed (lost included) and cancelled runs. The executor defaults
    to Slurm when those runs last ran there, else to launcher.name."""
    from sweep.launch.slurm import is_slurm_id

    st = status(name, root)
    again = [r for r in st.runs if r.state in (RunState.FAILED, RunState.CANCELLED)]
    if executor is None and any(is_slurm_id(r.job_id) for r in again):
        executor = "slurm"
    return launch(name, root, jobs=jobs, overrides=overrides, progress=progress,
                  executor=executor, dry_run=dry_run, only=[r.run.run_id for r in again])


def _in_slurm(store: Store, name: str) -> set[str]:
    """Run ids the store has as queued or running on a Slurm job (not ours to train locally)."""
    from sweep.launch.slurm import is_slurm_id

    return {r.run.run_id for r in store.runs(name)
            if r.state in (RunState.RUNNING, RunState.QUEUED) and is_slurm_id(r.job_id)}


def _reap(store: Store, name: str) -> None:
    """Runs left 'running' or 'queued' after their worker is gone died without a word."""
    in_slurm = _in_slurm(store, name)
    for rec in store.runs(name):
        if rec.state in (RunState.RUNNING, RunState.QUEUED) and rec.run.run_id not in in_slurm:
            store.fail(rec.run.run_id, "worker exited without a result", RunState.CANCELLED)


def status(name: str, root: Path = Path("runs")) -> Status:
    """The store's runs; runs queued or running in Slurm get the scheduler's view merged in
    (running on which node, why pending; a vanished job makes its run failed, 'lost')."""
    from sweep.launch.slurm import is_slurm_id, merge_status

    check_name(name)
    sched: dict = {}
    with Store(root, create=False) as store:
        runs = store.runs(name)
        if any(r.state in (RunState.QUEUED, RunState.RUNNING) and is_slurm_id(r.job_id)
               for r in runs):
            runs, sched = merge_status(store, Path(root), name, runs)
        last = store.last_train_loss(name)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    return Status(name, runs, counts, sched, last)


def demo(root: Path = Path("runs"), name: str = "demo", *, jobs: int | None = None,
         overrides: Sequence[str] = (),
         echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr)
         ) -> tuple[PlanResult, LaunchResult, Fit]:
    """plan + launch + fit of the default config (the CLI adds the recommendation)."""
    try:
        p = plan_sweep(name, overrides, root)
    except StoreError:
        raise StoreError(f"sweep '{name}' exists with a different plan; use another --name or "
                         "--root") from None
    echo(f"planned {len(p.runs)} runs ({p.added} new) in {Path(root) / name}")
    lr = launch(name, root, jobs=jobs)
    echo(f"trained {len(lr.trained)} runs in {lr.wall_seconds:.0f} s ({lr.skipped} already done)")
    return p, lr, sweep_fit(name, root)
