"""The Python API behind every command: plan → launch → status → fit → recommend → demo.

Each function takes plain arguments, returns typed records, and raises SweepError subclasses;
the click layer (sweep/cli/) only parses, calls these and prints.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sweep import config as config_mod
from sweep.config import SweepConfig
from sweep.errors import ConfigError, DataError, FitError, StoreError
from sweep.plan import check_name, plan
from sweep.records import Fit, PlannedRun, Recommendation, RunRecord, RunState
from sweep.store import Store
from sweep.study import fit_csv, sweep_config, sweep_fit, sweep_points  # noqa: F401

fit_sweep = sweep_fit  # the name earlier releases used

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
    _write_plan_file(Path(root) / name, runs)
    return PlanResult(name, runs, added, kept, dropped)


def _write_plan_file(sweep_dir: Path, runs: Sequence[PlannedRun]) -> None:
    import json
    import os

    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / "plan.json.tmp"
    tmp.write_text(json.dumps([r.to_dict() for r in runs], indent=1))
    os.replace(tmp, sweep_dir / "plan.json")


def launch(name: str, root: Path = Path("runs"), *, jobs: int | None = None,
           overrides: Sequence[str] = (), progress: bool = True, executor: str | None = None,
           dry_run: bool = False, only: Sequence[str] | None = None) -> LaunchResult:
    """Train every not-yet-completed run of the plan (or of ``only``, run ids): on this machine
    ``jobs`` at a time, blocking; or with ``executor='slurm'`` (default: launcher.name) as one
    sbatch array, returning at once (``dry_run``: render the script, submit nothing)."""
    from sweep.launch.base import launch_lock, pending_runs
    from sweep.launch.local import LocalLauncher

    check_name(name)
    t0 = time.monotonic()
    with Store(root, create=False) as store:
        cfg = sweep_config(store, name, overrides)
        k = jobs or cfg.launcher.jobs
        # workers (local children, Slurm tasks) inherit these; a user's environment wins
        os.environ.setdefault("WANDB_MODE", cfg.wandb.mode)
        os.environ.setdefault("WANDB_PROJECT", cfg.wandb.project)
        os.environ.setdefault("WANDB_SILENT", "true")
        if (executor or cfg.launcher.name) == "slurm":
            return _launch_slurm(store, name, Path(root), cfg, k, dry_run, only, t0)
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
            launcher = LocalLauncher(Path(root), name, k, cfg.launcher.threads_per_job)
            jobs_ = launcher.submit(todo)
            for j in jobs_:
                store.mark_queued(j.run_id, "local")
            bar = _Progress(store, todo) if progress and todo else None
            try:
                states = launcher.wait(jobs_, tick=bar.update if bar else None)
            finally:
                if bar:
                    bar.close()
                _reap(store, name)
    return LaunchResult(name, [r.run_id for r in todo], skipped, states, time.monotonic() - t0,
                        branches=branches)


def _launch_slurm(store: Store, name: str, root: Path, cfg: SweepConfig, jobs: int,
                  dry_run: bool, only: Sequence[str] | None, t0: float) -> LaunchResult:
    """Submit the runs not completed nor already queued/running in Slurm as one job array."""
    from sweep.launch import slurm
    from sweep.launch.base import launch_lock, pending_runs

    with launch_lock(root, name):
        recs, _ = slurm.merge_status(store, root, name, store.runs(name), force=True)
        busy = {r.run.run_id for r in recs if r.state in (RunState.QUEUED, RunState.RUNNING)}
        todo = [r for r in pending_runs(store, name)
                if r.run_id not in busy and (only is None or r.run_id in only)]
        skipped = len(recs) - len(todo)
        launcher = slurm.SlurmLauncher(root, name, cfg.launcher, jobs)
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
    """Cancel the sweep's queued and running Slurm jobs (scancel); their runs become cancelled.
    Completed runs keep their results; `retry --failed` resubmits the rest."""
    from sweep.launch.slurm import cancel_sweep, watcher

    check_name(name)
    with Store(root, create=False) as store:
        done = cancel_sweep(store, name)
    watcher(Path(root), name).submitted()  # states changed: the next status asks Slurm again
    return CancelResult(name, done)


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


class _Progress:
    """A rich progress bar on stderr: tokens trained over tokens planned, read from the store."""

    def __init__(self, store: Store, runs: Sequence[PlannedRun]):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
            TimeElapsedColumn, TimeRemainingColumn

        self.store, self.ids = store, {r.run_id for r in runs}
        self.total = sum(r.tokens for r in runs)
        self.p = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                          TextColumn("{task.percentage:>3.0f}% of tokens"), MofNCompleteColumn(),
                          TextColumn("runs"), TimeElapsedColumn(), TimeRemainingColumn(),
                          console=Console(stderr=True), transient=False)
        self.task = self.p.add_task("training", total=len(runs))
        self.p.start()

    def update(self, running: list) -> None:
        rows = self.store.progress(self.ids)
        done = sum(1 for state, _ in rows if state in (RunState.COMPLETED, RunState.FAILED))
        tokens = sum(t for _, t in rows)
        self.p.update(self.task, completed=done,
                      description=f"training ({tokens / max(self.total, 1):.0%} tokens, "
                                  f"{len(running)} running)")

    def close(self) -> None:
        self.update([])
        self.p.stop()


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


def recommend(name: str, compute: float, root: Path = Path("runs"),
              overrides: Sequence[str] = (), *, bootstrap: int | None = None,
              fit: Fit | None = None) -> Recommendation:
    """The compute-optimal next run for ``compute`` FLOPs, from the sweep's fit (or ``fit``)."""
    from sweep.recommend import recommend as _recommend

    fit = fit or fit_sweep(name, root, overrides, bootstrap=bootstrap)
    with Store(root, create=False) as store:
        cfg = sweep_config(store, name, overrides)
    return _recommend(fit, compute, cfg)


def demo(root: Path = Path("runs"), name: str = "demo", *, jobs: int | None = None,
         overrides: Sequence[str] = (), compute: float = 1e13,
         echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr)
         ) -> tuple[PlanResult, LaunchResult, Fit, Recommendation]:
    """plan + launch + fit + recommend on the default config."""
    try:
        p = plan_sweep(name, overrides, root)
    except StoreError:
        raise StoreError(f"sweep '{name}' exists with a different plan; use another --name or "
                         "--root") from None
    echo(f"planned {len(p.runs)} runs ({p.added} new) in {Path(root) / name}")
    lr = launch(name, root, jobs=jobs)
    echo(f"trained {len(lr.trained)} runs in {lr.wall_seconds:.0f} s ({lr.skipped} already done)")
    fit = fit_sweep(name, root)
    rec = recommend(name, compute, root, fit=fit)
    return p, lr, fit, rec


# ---- issue 8: next run, cost, allocation, report ---------------------------------------------
@dataclass(frozen=True)
class NextResult:
    sweep: str
    runs: list[PlannedRun]  # appended to the plan (already planned ones are kept, not added)
    predictions: list  # sweep.predictions.PredictionRecord, one per run
    reason: str  # "compute-optimal" or "most informative"
    added: int = 0
    informative: object | None = None  # sweep.informative.InformativeResult


def next_runs(name: str, budget: float, root: Path = Path("runs"), overrides: Sequence[str] = (),
              *, informative: bool = False, target: float | None = None,
              bootstrap: int | None = None, candidate_bootstrap: int = 60,
              fit: Fit | None = None) -> NextResult:
    """Append the next run to the plan and record its predicted loss (runs/NAME/predictions.json).

    Default: the compute-optimal run for ``budget`` FLOPs (6ND). ``informative``: among
    candidates costing at most ``budget``, the one that most narrows the bootstrap interval of
    the predicted loss at ``target`` FLOPs (default 10 × budget)."""
    from sweep import predictions
    from sweep.plan import make_run
    from sweep.recommend import _fit_params
    from sweep.recommend import recommend as _recommend

    fit = fit or fit_sweep(name, root, overrides, bootstrap=bootstrap)
    with Store(root, create=False) as store:
        cfg = sweep_config(store, name, overrides)
        saved = store.sweep_overrides(name)
        planned = [r.run.run_id for r in store.runs(name)]
    info = None
    if informative:
        from sweep.informative import most_informative

        pts = sweep_points(name, root, cfg.fit.params)
        info = most_informative(fit, pts, cfg, name, budget, target or 10.0 * budget,
                                bootstrap=candidate_bootstrap, seed=cfg.fit.seed,
                                exclude=planned)
        if info.best is None:
            raise FitError(f"no candidate run fits in a budget of {budget:.3g} FLOPs")
        run, reason = info.best.run, "most informative"
    else:
        rec = _recommend(fit, budget, cfg)
        run = make_run(name, rec.model["width"], rec.model["depth"], rec.tokens, cfg)
        reason = "compute-optimal"
    n = _fit_params(run.width, run.depth, cfg, cfg.fit.params)
    rec_ = predictions.record(run.run_id, fit.predict(n, run.tokens), 6.0 * n * run.tokens,
                              reason, fit.n_points)
    with Store(root, create=False) as store:
        added, _, _ = store.put_plan(name, saved, dataclasses.asdict(cfg), [run], append=True)
        _write_plan_file(Path(root) / name, [r.run for r in store.runs(name)])
    predictions.add(root, name, [rec_])
    return NextResult(name, [run], [rec_], reason, added, info)


def prediction_checks(name: str, root: Path = Path("runs")) -> list:
    """Recorded predictions of appended runs beside their measured final loss (if any)."""
    from sweep import predictions

    with Store(root, create=False) as store:
        finals = store.finals_df([name])
    return predictions.checks(root, name, dict(zip(finals["run_id"], finals["final_loss"])))


def study_costs(name: str, root: Path, flops: Sequence[tuple[str, float]], assumptions) -> list:
    """Cost rows [(label, sweep.cost.Cost)]: the study so far (measured wall time when the
    assumptions are this machine's CPU, else predicted from its FLOPs), then each (label, FLOPs)."""
    from sweep import cost

    with Store(root, create=False) as store:
        finals = store.finals_df([name])
    total = float(finals["flops_6nd"].sum())
    secs = float(finals["wall_seconds"].fillna(0).sum())
    if assumptions.hardware.name.startswith("this machine") and secs > 0:
        rows = [(f"study so far ({len(finals)} runs, measured)",
                 cost.measured(total, secs, assumptions))]
    else:
        rows = [(f"study so far ({len(finals)} runs, predicted)", cost.predict(total, assumptions))]
    return rows + [(label, cost.predict(c, assumptions)) for label, c in flops]


def report(name: str, root: Path = Path("runs"), out: Path | None = None, *,
           target: float | None = None, hardware: Sequence[object] = (),
           ks: Sequence[float] = (2, 4, 10, 100), bootstrap: int | None = None) -> Path:
    """Write runs/NAME/report/index.html (or ``out``/index.html) with its PNG figures; returns
    the HTML path. ``hardware``: sweep.cost.Assumptions to cost the study and the target run."""
    from sweep.report import ReportData, write_report

    data = ReportData.collect(name, Path(root), target=target, hardware=list(hardware), ks=ks,
                              bootstrap=bootstrap)
    return write_report(data, Path(out) if out else Path(root) / name / "report")


# ---- issue 7: fits on curves and downstream metrics ------------------------------------------
def _curves(name: str | None, root: Path, loss: str, params: str | None, data: str | None,
            mapping: dict[str, str] | None):
    """Loss curves of sweep NAME, or of the CSV ``data`` (sweep.fit.sources.csv_curves)."""
    from sweep.fit.sources import csv_curves, sweep_curves

    if (name is None) == (data is None):
        raise DataError("give either a sweep NAME or --data FILE.csv")
    if data is not None:
        return csv_curves(data, mapping)
    check_name(name)
    return sweep_curves(name, root, loss, params)


def envelope_fit(name: str | None, root: Path = Path("runs"), *, loss: str = "train",
                 params: str | None = None, grid: int = 40, bootstrap: int = 1000,
                 seed: int = 0, data: str | None = None, mapping: dict[str, str] | None = None):
    """Approach 1 on the sweep's (or a CSV's) loss curves → sweep.fit.envelope.EnvelopeFit
    (N*, D* ∝ C^a, C^b)."""
    from sweep.fit.envelope import fit_envelope

    df, conv = _curves(name, root, loss, params, data, mapping)
    f = fit_envelope(df[["run_id", "params", "tokens", "flops", "loss"]], n_grid=grid,
                     bootstrap=bootstrap, seed=seed)
    f.conventions = conv
    return f


def learning_curve_fit(name: str | None, root: Path = Path("runs"), *, loss: str = "train",
                       params: str | None = None, data: str | None = None,
                       mapping: dict[str, str] | None = None, **kw):
    """Kaplan's L(N, S) on the sweep's (or a CSV's) curves → records.LearningCurveFit (kw: see
    sweep.fit.learning_curve.fit_learning_curve: bcrit, floor, min_frac, bootstrap, predict)."""
    from sweep.fit.learning_curve import fit_learning_curve

    df, conv = _curves(name, root, loss, params, data, mapping)
    if df["batch_tokens"].isna().any():
        raise DataError(f"{data}: L(N, S) needs a batch_tokens or a step column "
                         "(--map batch_tokens=COL or step=COL)")
    f = fit_learning_curve(df, **kw)
    return dataclasses.replace(f, conventions={"N": conv["params"], "S": "optimizer steps",
                                               "B": "tokens per step", "L": conv["loss"]})


def downstream_fit(name: str, metric: str, root: Path = Path("runs"), *, against: str = "loss",
                   **kw):
    """A stored per-run metric against final loss or compute → records.DownstreamFit (kw: see
    sweep.fit.downstream.fit_downstream: form, chance, ceiling, at, bootstrap, seed)."""
    from sweep.fit.downstream import fit_downstream
    from sweep.fit.sources import sweep_metric

    check_name(name)
    x, y, conv = sweep_metric(name, root, metric, against)
    f = fit_downstream(x, y, metric=metric, against=against, **kw)
    return dataclasses.replace(f, conventions={**f.conventions, "x": conv})
