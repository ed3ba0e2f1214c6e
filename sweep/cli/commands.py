"""The commands: parse → call sweep.runs / sweep.study → print. Results on stdout, everything
else on stderr."""

from __future__ import annotations

from pathlib import Path

import click

from sweep import runs
from sweep.cli.fit_commands import fit_options, law_option, law_text, run_fit, run_law_fit
from sweep.cli.options import (POSITIVE, SWEEP, emit, force_option, json_option,
                               overrides_argument, root_option)
from sweep.cli.report_commands import assumptions, cost_line, cost_options
from sweep.errors import DataError
from sweep.records import Fit, Prediction, Recommendation

executor_option = click.option(
    "--executor", type=click.Choice(["local", "slurm"]), default=None,
    help="Where runs train: this machine, or a Slurm job array (default: launcher.name).")


def _g(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain, aligned text table (numbers right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    def line(cells):
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


@click.command()
@click.argument("name", type=SWEEP)
@overrides_argument
@force_option
@json_option
@root_option
def plan(name: str, overrides: tuple[str, ...], force: bool, as_json: bool, root: str) -> None:
    """Enumerate widths × depths × budgets of sweep NAME and write its plan.

    OVERRIDES are Hydra overrides of conf/, e.g. model.widths=[64,128] model.depths=[2,4]
    budget.tokens=[2e6,8e6], or budget=flops budget.flops=[1e12,3e12] for FLOP budgets.
    Re-planning the same grid changes nothing; a different grid needs --force.
    """
    res = runs.plan_sweep(name, overrides, Path(root), force=force)
    if as_json:
        emit({"sweep": name, "added": res.added, "kept": res.kept, "dropped": res.dropped,
              "runs": [r.to_dict() for r in res.runs]})
        return
    from sweep import config, hparams

    rows = [[r.run_id, str(r.width), str(r.depth), str(r.heads), _g(r.params),
             _g(r.params_nonembed), _g(r.tokens), _g(r.flops_6nd, 3), _g(r.flops_attn, 3),
             str(r.steps), str(r.batch_size), str(r.batch_tokens), _g(r.lr, 3)] for r in res.runs]
    click.echo(hparams.rules(config.load(overrides)).describe())
    click.echo(table(["run", "width", "depth", "heads", "params(all)", "params(non-emb)",
                      "tokens", "FLOPs(6ND)", "FLOPs(+attn)", "steps", "batch(seq)", "batch(tok)",
                      "lr(peak)"], rows))
    from sweep.train.wsd import describe  # WSD branches: where each starts, what it costs

    for line in describe(res.runs):
        click.echo(line)
    click.echo(f"\n{len(res.runs)} runs: {res.added} new, {res.kept} unchanged, {res.dropped} "
               f"dropped; plan in {Path(root) / name}. FLOPs(6ND) = 6·params(non-emb)·tokens; "
               "FLOPs(+attn) adds 12·layers·width·seq per token.", err=True)


@click.command()
@click.argument("name", type=SWEEP)
@overrides_argument
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="Runs trained at once (default: launcher.jobs); cores are split between them.")
@click.option("--no-progress", is_flag=True, help="Do not draw the progress bar.")
@executor_option
@click.option("--dry-run", is_flag=True,
              help="Slurm: print the sbatch script on stdout and submit nothing.")
@json_option
@root_option
def launch(name: str, overrides: tuple[str, ...], jobs: int | None, no_progress: bool,
           executor: str | None, dry_run: bool, as_json: bool, root: str) -> None:
    """Train every planned, not yet completed run of sweep NAME.

    Locally (the default) the runs train on this machine and launch waits for them; with
    --executor slurm (or launcher=slurm) they are submitted as one sbatch job array with at most
    --jobs running at once, and launch returns: follow with `sweep status NAME`.
    Completed runs are never trained again: after Ctrl-C or a kill, launch again to finish
    what is missing. OVERRIDES may change launcher settings (e.g. launcher.time=04:00:00).
    """
    res = runs.launch(name, Path(root), jobs=jobs, overrides=overrides,
                      progress=not no_progress and not as_json, executor=executor,
                      dry_run=dry_run)
    if res.executor == "slurm":
        emit_submitted(res, as_json, dry_run)
        return
    st = runs.status(name, Path(root))
    if as_json:
        emit({"sweep": name, "trained": res.trained, "skipped": res.skipped,
              "wall_seconds": res.wall_seconds, "counts": st.counts})
        return
    extra = f" (+{res.branches} WSD branches with them)" if res.branches else ""
    click.echo(f"{name}: trained {len(res.trained)} runs{extra} in {res.wall_seconds:.1f} s, "
               f"{res.skipped} already completed; now " +
               ", ".join(f"{v} {k}" for k, v in sorted(st.counts.items())))
    failed = [r for r in st.runs if r.state == "failed"]
    for r in failed:
        click.echo(f"  failed {r.run.run_id}: {r.error}", err=True)
    if failed:
        raise click.exceptions.Exit(1)


def emit_submitted(res: runs.LaunchResult, as_json: bool, dry_run: bool) -> None:
    """Print a Slurm submission (or the script of a dry run)."""
    if as_json:
        emit({"sweep": res.sweep, "executor": res.executor, "dry_run": dry_run,
              "submitted": [] if dry_run else res.trained, "job_id": res.job_id,
              "skipped": res.skipped, "script": res.script})
    elif dry_run:
        if res.script:
            click.echo(res.script, nl=False)
        click.echo(f"dry run: {len(res.trained)} runs would be submitted, {res.skipped} "
                   "completed or already queued; nothing submitted", err=True)
    elif res.trained:
        click.echo(f"{res.sweep}: submitted {len(res.trained)} runs as Slurm job array "
                   f"{res.job_id}; {res.skipped} completed or already queued. "
                   f"Follow with `sweep status {res.sweep}`.")
    else:
        click.echo(f"{res.sweep}: nothing to submit ({res.skipped} runs completed or already "
                   "queued).")


def status_dict(st: runs.Status) -> dict:
    return {"sweep": st.sweep, "counts": st.counts, "runs": [
        {"id": r.run.run_id, "state": r.state.value, "width": r.run.width, "depth": r.run.depth,
         "params": r.run.params, "params_nonembed": r.run.params_nonembed,
         "tokens": r.run.tokens, "tokens_done": r.tokens_done, "flops": r.run.flops_6nd,
         "final_loss": r.final_loss, "error": r.error} for r in st.runs]}


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _status_rows(st: runs.Status) -> list[list[str]]:
    import time

    now, rows = time.time(), []
    for r in st.runs:
        wall = eta = None
        if r.started_at:
            wall = (r.finished_at or (now if r.state == "running" else r.heartbeat or now)) \
                - r.started_at
            if r.state == "running" and r.tokens_done:
                eta = wall * (r.run.tokens - r.tokens_done) / r.tokens_done
        loss = r.final_loss if r.final_loss is not None else st.last_loss.get(r.run.run_id)
        mark = "" if r.final_loss is not None or loss is None else " (train)"
        rows.append([r.run.run_id, r.state.value, _g(r.run.params_nonembed), _g(r.run.tokens),
                     f"{r.tokens_done / r.run.tokens:.0%}", _g(loss) + mark, _duration(wall),
                     _duration(eta) if r.state == "running" else "", _where(st, r),
                     r.error or ""])
    return rows


@click.command()
@click.argument("name", type=SWEEP)
@click.option("--watch", type=click.FloatRange(0.5), default=None, metavar="SECONDS",
              help="Redraw every SECONDS until Ctrl-C (text output only).")
@json_option
@root_option
def status(name: str, watch: float | None, as_json: bool, root: str) -> None:
    """Show each run of sweep NAME: state, tokens done of planned, loss so far (held-out at the
    end of the schedule, else the latest train loss), wall time and ETA."""
    import time

    from sweep.cli.data_commands import imported_points

    while True:
        st = runs.status(name, Path(root))
        if as_json:
            emit({**status_dict(st), "imported": imported_points(Path(root), name)})
            return
        if watch:
            click.clear()
        click.echo(table(["run", "state", "params(non-emb)", "tokens", "done", "loss(nats/tok)",
                          "wall", "ETA", "job (node / why pending)", "error"], _status_rows(st)))
        click.echo(", ".join(f"{v} {k}" for k, v in sorted(st.counts.items())))
        imported_points(Path(root), name, echo=True)
        if not watch or all(r.state not in ("queued", "running", "planned") for r in st.runs):
            return
        time.sleep(watch)


def _where(st: runs.Status, r) -> str:
    """The job id, plus Slurm's node (running) or pending reason, for the status table."""
    if r.state not in ("queued", "running") or not r.job_id:
        return ""
    info = st.sched.get(r.run.run_id)
    extra = (info.node if r.state == "running" else info.reason) if info else ""
    return f"{r.job_id} ({extra})" if extra else r.job_id


def _parse_at(values: tuple[str, ...]) -> list[tuple[float, float]]:
    from sweep.fit.points import parse_at

    return [parse_at(v) for v in values]


def trust_note(p: Prediction | Recommendation) -> str:
    """' — extrapolated ×3.2 (C ×3.2); E is not identified': where a predicted number stands in
    its fit's trust region and why (sweep.diagnostics.note); '' inside with nothing to say."""
    from sweep.diagnostics import note

    return note(p.trust, p.extrapolation, p.warnings)


def fit_text(fit: Fit) -> str:
    lines = [f"L(N, D) = E + A/N^alpha + B/D^beta   ({fit.method}, Approach 3, Huber on log loss; "
             f"{fit.n_points} points; N = params, D = tokens, L in nats/token)"]
    for k in ("E", "A", "B", "alpha", "beta"):
        lo, hi = fit.ci95.get(k, [None, None])
        lines.append(f"  {k:<6}{_g(fit.params[k]):>10}   95% CI [{_g(lo)}, {_g(hi)}]")
    for k in ("a", "b"):
        lo, hi = fit.ci95.get(k, [None, None])
        lines.append(f"  {k:<6}{_g(fit.allocation[k]):>10}   95% CI [{_g(lo)}, {_g(hi)}]   "
                     f"({'N' if k == 'a' else 'D'}_opt ∝ C^{k})")
    lines.append(f"  objective {fit.objective:.7g} (summed Huber)")
    for p in fit.predictions:
        lines.append(f"  predict N={_g(p.params)} D={_g(p.tokens)} (C={_g(p.flops)} FLOPs 6ND): "
                     f"{p.loss:.4f} [{p.loss_lo95:.4f}, {p.loss_hi95:.4f}] nats/token"
                     + trust_note(p))
    if fit.validation:
        from sweep.fit.validate import validation_text

        lines.append("  " + validation_text(fit.validation))
    if fit.conventions:
        lines.append("  conventions: " + "; ".join(f"{k}: {v}" for k, v in fit.conventions.items()))
    lines += [f"  warning: {w}" for w in fit.warnings]
    return "\n".join(lines)


@click.command()
@click.argument("name", type=SWEEP, required=False)
@overrides_argument
@click.option("--data", type=click.Path(dir_okay=False),
              help="Fit an external CSV instead of a sweep (columns params, loss, tokens or "
                   "flops).")
@click.option("--map", "mapping",
              help='Map columns: params=COL,tokens=COL,flops=COL,loss=COL (with --data).')
@click.option("--at", multiple=True, metavar="params=P,tokens=T",
              help="Also predict the loss here (tokens may be flops=C); repeatable.")
@click.option("--bootstrap", type=click.IntRange(0, 100000), default=None,
              help="Bootstrap resamples for the 95% intervals (default: fit.bootstrap = 1000).")
@click.option("--seed", type=int, default=None,
              help="Bootstrap seed (default: the sweep's fit.seed; 0 with --data).")
@fit_options
@law_option
@json_option
@root_option
def fit(name: str | None, overrides: tuple[str, ...], data: str | None, mapping: str | None,
        at: tuple[str, ...], bootstrap: int | None, seed: int | None, law: str, as_json: bool,
        root: str, **opts) -> None:
    """Fit L(N, D) = E + A/N^α + B/D^β to sweep NAME (or to --data FILE.csv).

    Chinchilla Approach 3 (Hoffmann et al. 2022): Huber (δ = 1e-3) on log-loss residuals,
    summed over points, solved to convergence; 95 % intervals by bootstrap over runs. The fit is
    validated by refitting without the largest compute budget and predicting it. A sweep's fit
    is cached in its store per (points, options, law): a new completed run makes a new fit.
    --law auto rollout-validates every candidate law and predicts with a validation-weighted
    average (the text prints the rollout table; --json adds "law_selection"); a law other
    than chinchilla bootstraps 200 times by default (50 on at most 20 points).
    Other laws: `sweep isoflop`, `sweep envelope`, `sweep kaplan`, `sweep compare`.
    """
    if law != "chinchilla":
        lf = run_law_fit(name, data, mapping, root, overrides, _parse_at(at), bootstrap, seed,
                         law, **opts)
        f, text = lf, None if as_json else law_text(lf)
    else:
        f = run_fit(name, data, mapping, root, overrides, _parse_at(at), bootstrap, seed,
                    **opts)
        text = None if as_json else fit_text(f)
    if as_json:
        emit(f.to_dict())
    else:
        click.echo(text)
        if name is not None and data is None:  # runs appended by `sweep next`: how they landed
            from sweep.predictions import prediction_checks

            for c in prediction_checks(name, Path(root)):
                click.echo("  " + c.text())


@click.command()
@click.argument("name", type=SWEEP)
@overrides_argument
@click.option("--compute", type=POSITIVE, default=None,
              help="Training compute in FLOPs, 6ND convention (e.g. 1e16).")
@click.option("--params", "n_params", type=POSITIVE, default=None,
              help="Instead of --compute: the compute for which N = PARAMS is optimal.")
@click.option("--loss", type=POSITIVE, default=None,
              help="Instead of --compute: the least compute predicted to reach LOSS (nats/token).")
@click.option("--bootstrap", type=click.IntRange(0, 100000), default=None,
              help="Bootstrap resamples for the interval (default: fit.bootstrap).")
@law_option
@cost_options
@json_option
@root_option
def recommend(name: str, overrides: tuple[str, ...], compute: float | None,
              n_params: float | None, loss: float | None, bootstrap: int | None, law: str,
              as_json: bool, root: str, **cost_kw) -> None:
    """Recommend the compute-optimal next run of sweep NAME for --compute FLOPs
    (or for --params N, or to reach --loss L).

    N_opt and D_opt under C = 6ND from the fitted law, made concrete by the sweep's own shape
    rule (width, depth, heads), with LR, batch and steps, the predicted loss with its
    95 % bootstrap interval, and (text) the expected wall time and cost (--hardware).
    """
    from sweep import cost
    from sweep.recommend import recommend_for, recommendation_text

    if sum(x is not None for x in (compute, n_params, loss)) != 1:
        raise DataError("give exactly one of --compute, --params or --loss")
    r = recommend_for(name, Path(root), overrides, compute=compute, params=n_params, loss=loss,
                      bootstrap=bootstrap, law=law)
    if as_json:
        emit(r.to_dict())
        return
    click.echo(recommendation_text(r))
    for a in assumptions(name, root, **cost_kw):
        click.echo(cost_line("expected", cost.predict(r.flops, a), a))


@click.command()
@click.option("--name", type=SWEEP, default="demo", show_default=True, help="Sweep name.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="Runs trained at once (default: launcher.jobs = 2).")
@click.option("--compute", type=POSITIVE, default=1e13, show_default=True,
              help="Compute (FLOPs, 6ND) for the final recommendation.")
@json_option
@root_option
def demo(name: str, jobs: int | None, compute: float, as_json: bool, root: str) -> None:
    """Plan, train, fit and recommend the default sweep on the built-in corpus (minutes).

    4 widths (32–128) × 3 token budgets (0.25M, 1M, 4M) at depth 2, byte-level text from
    Python's own standard library. Re-running it skips what is already trained.
    """
    from sweep.recommend import recommend_for, recommendation_text

    p, lr, f = runs.demo(Path(root), name, jobs=jobs, echo=lambda s: click.echo(s, err=True))
    r = recommend_for(name, Path(root), compute=compute, fit=f)
    if as_json:
        emit({"sweep": name, "wall_seconds": lr.wall_seconds, "fit": f.to_dict(),
              "recommendation": r.to_dict()})
        return
    click.echo(fit_text(f))
    click.echo()
    click.echo(recommendation_text(r))
    click.echo(f"next: `sweep next {name} --budget {compute:g}` appends the run the fit can "
               f"stand behind (it says why), then `sweep launch {name}`", err=True)
