"""`sweep cancel` and `sweep retry`: stop a sweep's Slurm jobs; resubmit what did not finish."""

from __future__ import annotations

from pathlib import Path

import click

from sweep import runs
from sweep.cli.commands import emit, emit_submitted, executor_option
from sweep.cli.options import SWEEP, json_option, overrides_argument, root_option
from sweep.errors import DataError


@click.command()
@click.argument("name", type=SWEEP)
@json_option
@root_option
def cancel(name: str, as_json: bool, root: str) -> None:
    """Cancel sweep NAME's queued and running runs: its Slurm jobs (scancel) and a local
    `sweep launch NAME` running on this machine (it stops its workers and exits).

    Their runs become cancelled; completed runs keep their results. Resume them later with
    `sweep retry NAME --failed` (a run with a checkpoint resumes from it).
    """
    res = runs.cancel(name, Path(root))
    n = len(res.cancelled)
    if as_json:
        emit({"sweep": name, "cancelled": res.cancelled})
    elif n == 0:
        click.echo(f"{name}: nothing to cancel (no run is queued or running, here or on Slurm)")
    else:
        click.echo(f"{name}: cancelled {n} run{'s' if n != 1 else ''}")


@click.command()
@click.argument("name", type=SWEEP)
@overrides_argument
@click.option("--failed", is_flag=True,
              help="Resubmit the failed runs (lost ones included) and the cancelled ones.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="Runs at once (default: launcher.jobs).")
@executor_option
@click.option("--dry-run", is_flag=True, help="Slurm: print the sbatch script, submit nothing.")
@json_option
@root_option
def retry(name: str, overrides: tuple[str, ...], failed: bool, jobs: int | None,
          executor: str | None, dry_run: bool, as_json: bool, root: str) -> None:
    """Launch sweep NAME's failed, lost and cancelled runs again.

    Runs that last ran on Slurm are resubmitted there as one job array (each with a fresh
    launcher.max_attempts); a run with a checkpoint resumes from it.
    """
    if not failed:
        raise DataError("say what to retry: --failed (failed, lost and cancelled runs)")
    res = runs.retry(name, Path(root), executor=executor, jobs=jobs, overrides=overrides,
                    dry_run=dry_run, progress=not as_json)
    if res.executor == "slurm":
        emit_submitted(res, as_json, dry_run)
        return
    st = runs.status(name, Path(root))
    if as_json:
        emit({"sweep": name, "trained": res.trained, "counts": st.counts})
    else:
        click.echo(f"{name}: retried {len(res.trained)} runs; now " +
                   ", ".join(f"{v} {k}" for k, v in sorted(st.counts.items())))
