"""`sweep next`, `sweep report`, `sweep cost` and the cost options `sweep recommend` shares.

Parse → call the L4 modules (sweep.next_run, sweep.report_data, sweep.cost) → print. Results
on stdout (text, or one JSON object with --json, sweep.cli.options.emit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import click

from sweep.cli.fit_commands import law_option
from sweep.cli.options import (POSITIVE, SWEEP, emit, json_option, overrides_argument,
                               root_option)

HARDWARE_HELP = ("Hardware preset: cpu (this machine, measured), a100, h100, v100, tpu-v4, or "
                 "a name from --hardware-file; repeatable.")


def cost_options(f: Callable) -> Callable:
    """--hardware, --hardware-file, --mfu, --pue, --carbon, --devices, --price, --watts."""
    opts = [
        click.option("--hardware", "hardware", multiple=True, metavar="NAME", help=HARDWARE_HELP),
        click.option("--hardware-file", type=click.Path(dir_okay=False, exists=True),
                     help="YAML of extra presets: NAME: {peak_flops: {bf16: 3.12e14}, watts: 400, "
                          "price_per_hour: 2.0, source: ...}."),
        click.option("--mfu", type=click.FloatRange(0, 1, min_open=True), default=None,
                     help="Model FLOP/s utilisation (default: measured for cpu, else 0.4)."),
        click.option("--pue", type=click.FloatRange(1), default=1.1, show_default=True,
                     help="Data-centre power usage effectiveness."),
        click.option("--carbon", type=click.FloatRange(0), default=0.429, show_default=True,
                     help="Grid carbon intensity, kgCO2e per kWh."),
        click.option("--devices", type=click.IntRange(1), default=1, show_default=True,
                     help="Devices training together (wall time = device-hours / devices)."),
        click.option("--price", type=click.FloatRange(0), default=None,
                     help="USD per device-hour (default: the preset's documented assumption)."),
        click.option("--watts", type=click.FloatRange(0, min_open=True), default=None,
                     help="Power per device, W (default: the preset's board power)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def assumptions(name: str | None, root: str, hardware: Sequence[str], hardware_file: str | None,
                mfu: float | None, pue: float, carbon: float, devices: int,
                price: float | None, watts: float | None) -> list:
    """One sweep.cost.Assumptions per --hardware (default: cpu)."""
    from sweep import cost

    finals = None
    if name is not None:
        from sweep.store import Store

        with Store(Path(root), create=False) as store:
            finals = store.finals_df([name])
    return [cost.make_assumptions(h, hardware_file, mfu=mfu, finals=finals, pue=pue,
                                  carbon_kg_per_kwh=carbon, devices=devices,
                                  price_per_hour=price, watts=watts)
            for h in (hardware or ("cpu",))]


def cost_line(label: str, c, a) -> str:
    hours = c.wall_hours
    wall = f"{hours * 3600:.3g} s" if hours < 1 else (f"{hours:.3g} h" if hours < 48
                                                       else f"{hours / 24:.3g} days")
    return (f"  {label}: {wall} wall ({c.device_hours:.3g} device-hours on {a.devices} × "
            f"{a.hardware.name}, MFU {a.mfu:.1%}), ${c.usd:.3g}, {c.mwh:.3g} MWh, "
            f"{c.tco2e:.3g} tCO2e")


@click.command("next")
@click.argument("name", type=SWEEP)
@overrides_argument
@click.option("--budget", type=POSITIVE, required=True,
              help="Compute of the next run in FLOPs (6ND); with --informative the most a "
                   "candidate may cost.")
@click.option("--informative", is_flag=True,
              help="Append the run within --max-extrapolation that most narrows the interval "
                   "at --target, whatever the fit identifies.")
@click.option("--target", type=POSITIVE, default=None,
              help="Most informative run: the compute whose predicted loss should be pinned "
                   "down (FLOPs; default 10 × budget).")
@click.option("--bootstrap", type=click.IntRange(0, 100000), default=None,
              help="Bootstrap resamples of the fit (default: fit.bootstrap).")
@click.option("--candidate-bootstrap", type=click.IntRange(10, 10000), default=60,
              show_default=True, help="Most informative run: resamples per hypothetical refit.")
@click.option("--max-extrapolation", "reach", type=click.FloatRange(1.0, 1e6), default=2.0,
              show_default=True,
              help="How far past the fitted N and D (×) the next run may go; a compute-optimal "
                   "run farther out is replaced by the best run within it.")
@law_option
@cost_options
@json_option
@root_option
def next_(name: str, overrides: tuple[str, ...], budget: float, informative: bool,
          target: float | None, bootstrap: int | None, candidate_bootstrap: int, reach: float,
          law: str, as_json: bool, root: str, **cost_kw) -> None:
    """Append the next run of sweep NAME to its plan and record its predicted loss.

    The compute-optimal run for --budget FLOPs when the fit can say what it is. When the fit
    does not identify E, alpha or beta, that allocation rests on guesses, so the most
    informative run (the one that most narrows the interval at --target) within
    --max-extrapolation of the fitted N and D is appended instead, and the text says why; when
    they are identified but the optimum lies farther out, the best run within reach.
    `sweep launch NAME` then trains it, and `sweep fit NAME` shows how far it landed from the
    prediction (kept in runs/NAME/predictions.json).
    """
    from sweep import cost
    from sweep.diagnostics import note
    from sweep.informative import informative_text
    from sweep.next_run import next_runs

    res = next_runs(name, budget, Path(root), overrides, informative=informative,
                        target=target, bootstrap=bootstrap,
                        candidate_bootstrap=candidate_bootstrap, law=law, reach=reach)
    ass = assumptions(name, root, **cost_kw)
    if as_json:
        emit({"sweep": name, "reason": res.reason, "why": res.why, "law": res.law,
              "added": res.added,
              "runs": [r.to_dict() for r in res.runs],
              "predictions": [vars(p) for p in res.predictions],
              "cost": [dict(cost.predict(p.flops, a).to_dict(), hardware=a.hardware.name)
                       for p in res.predictions for a in ass]})
        return
    if res.informative is not None:
        costs = {c.run.run_id: f"${cost.predict(c.flops, ass[0]).usd:.3g}"
                 for c in res.informative.candidates}
        click.echo(informative_text(res.informative, costs))
    for r, p in zip(res.runs, res.predictions, strict=True):
        click.echo(f"{'appended' if res.added else 'already planned'} ({res.reason}): {r.run_id}"
                   f"  width {r.width}, depth {r.depth}, heads {r.heads}, {r.tokens:.4g} tokens "
                   f"({r.steps} steps × {r.batch_tokens}), lr {r.lr:.3g}, C={p.flops:.4g} FLOPs")
        click.echo(f"  predicted loss {p.predicted_loss:.4f} [{p.predicted_loss_lo95:.4f}, "
                   f"{p.predicted_loss_hi95:.4f}] nats/token (95% interval)"
                   + note(p.trust, p.extrapolation, p.warnings))
        if res.why:
            click.echo(f"  chosen because it {res.why}")
        if res.law != "chinchilla":
            click.echo(f"  law: {res.law}")
        for a in ass:
            click.echo(cost_line("expected", cost.predict(p.flops, a), a))
    click.echo(f"next: `sweep launch {name}`, then `sweep fit {name}`", err=True)


@click.command()
@click.argument("name", type=SWEEP)
@click.option("--target", type=POSITIVE, default=None,
              help="Target compute in FLOPs (6ND) (default: 10 × the largest run's).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Directory for index.html and the PNGs (default: ROOT/NAME/report).")
@click.option("--k", "ks", type=POSITIVE, multiple=True,
              help="Compute multiples for the allocation table (default 2, 4, 10, 100).")
@click.option("--bootstrap", type=click.IntRange(0, 100000), default=None,
              help="Bootstrap resamples of the fit (default: fit.bootstrap).")
@cost_options
@json_option
@root_option
def report(name: str, target: float | None, out: str | None, ks: tuple[float, ...],
           bootstrap: int | None, as_json: bool, root: str, **cost_kw) -> None:
    """Write an HTML report of sweep NAME with PNG figures: loss curves, isoFLOP profiles,
    frontier with extrapolation band, residuals, N_opt(C) and D_opt(C), allocation and cost."""
    from sweep.report import figure_files
    from sweep.report_data import ReportData
    from sweep.report_page import write_report

    hw = cost_kw.get("hardware") or ("cpu", "a100")
    ass = assumptions(name, root, **dict(cost_kw, hardware=hw))
    data = ReportData.collect(name, Path(root), target=target, hardware=ass,
                              ks=ks or (2, 4, 10, 100), bootstrap=bootstrap)
    path = write_report(data, Path(out) if out else Path(root) / name / "report")
    figs = [str(p) for p in figure_files(path)]
    r = data.rec
    if as_json:
        emit({"sweep": name, "html": str(path), "figures": figs, "headline": data.headline(),
              "target": data.target, "predicted_loss": r.predicted_loss,
              "predicted_loss_lo95": r.predicted_loss_lo95,
              "predicted_loss_hi95": r.predicted_loss_hi95, "trust": r.trust,
              "extrapolation": r.extrapolation, "warnings": list(r.warnings)})
        return
    click.echo(f"{path}  ({len(figs)} figures)")
    for line in data.headline():
        click.echo("  " + line)
    for w in data.fit.warnings:
        click.echo(f"  warning: {w}")


@click.command()
@click.argument("name", type=SWEEP)
@click.option("--compute", type=POSITIVE, multiple=True,
              help="Also cost a run of this many FLOPs (6ND); repeatable.")
@cost_options
@json_option
@root_option
def cost(name: str, compute: tuple[float, ...], as_json: bool, root: str, **cost_kw) -> None:
    """Accelerator-hours, cost, MWh and tCO2e of sweep NAME so far (and of --compute runs)."""
    from sweep.cost import study_costs

    out = []
    for a in assumptions(name, root, **cost_kw):
        rows = study_costs(name, Path(root), [(f"run of C={c:.3g}", c) for c in compute], a)
        out.append((a, rows))
    if as_json:
        emit({"sweep": name, "hardware": [
            {"assumptions": a.describe(), "source": a.hardware.source,
             "price_source": a.hardware.price_source,
             "rows": [dict(c.to_dict(), label=lab) for lab, c in rows]} for a, rows in out]})
        return
    for a, rows in out:
        click.echo(a.describe())
        for lab, c in rows:
            click.echo(cost_line(lab, c, a))
