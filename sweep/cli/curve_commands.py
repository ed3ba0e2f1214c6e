"""Fits on whole loss curves: `sweep envelope` (Chinchilla Approach 1) and `sweep learning-curve`
(Kaplan et al.'s L(N, S) with the critical batch size).

Parse → read the sweep's curves from the store → call sweep.fit → print (text, or one JSON
object with --json); warnings on stderr.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from sweep.cli.options import (POSITIVE, SWEEP, bootstrap_options, emit, json_option,
                               root_option)


def _g(x: float) -> str:
    return f"{x:.4g}"


def _data_options(f):
    """--data CURVES.csv and --map, shared by both commands."""
    f = click.option("--map", "mapping", default=None, metavar="NAME=COL,...",
                     help="--data columns: run=COL,params=COL,tokens=COL,flops=COL,loss=COL,"
                          "batch_tokens=COL,step=COL.")(f)
    return click.option("--data", type=click.Path(dir_okay=False),
                        help="Curves from a CSV instead of a sweep: one row per point, columns "
                             "run, params, loss, tokens or flops (and batch_tokens or step for "
                             "learning-curve).")(f)


@click.command()
@click.argument("name", type=SWEEP, required=False)
@_data_options
@click.option("--loss", type=click.Choice(["train", "eval"]), default="train", show_default=True,
              help="Curve to use: training loss (logged every few steps; Hoffmann et al. used "
                   "it) or held-out loss (a few log-spaced points per run).")
@click.option("--params", type=click.Choice(["nonembed", "total"]), default=None,
              help="N convention (default: the sweep's fit.params).")
@click.option("--grid", type=click.IntRange(3, 10000), default=40, show_default=True,
              help="Log-spaced FLOP budgets at which the envelope is taken.")
@click.option("--compute", type=POSITIVE, multiple=True, metavar="C",
              help="Also give N*(C) and D*(C) at C FLOPs (6ND); repeatable.")
@bootstrap_options()
@json_option
@root_option
def envelope(name: str | None, data: str | None, mapping: str | None, loss: str,
             params: str | None, grid: int, compute: tuple[float, ...], bootstrap: int, seed: int,
             as_json: bool, root: str) -> None:
    """Approach 1: the lower envelope of all loss curves against FLOPs → N*(C), D*(C) exponents.

    At each of GRID log-spaced budgets the run with the lowest (interpolated) loss is
    compute-optimal; ln N* and ln D* are then fitted linearly in ln C (Hoffmann et al. 2022,
    §3.1), with a bootstrap over runs for 95 % intervals.
    """
    from sweep import study

    f = study.envelope_fit(name, Path(root), loss=loss, params=params, grid=grid,
                         bootstrap=bootstrap, seed=seed, data=data, mapping=_map(mapping, data))
    conv = f.conventions
    optima = [f.optimum(c) for c in compute]
    if as_json:
        emit(dict(f.to_dict(), sweep=name, data=data, optima=optima))
        return
    ci = lambda k: (f"95% CI [{f.ci95[k][0]:.3f}, {f.ci95[k][1]:.3f}]"
                    if k in f.ci95 else "(no interval)")
    label = f"sweep '{name}'" if data is None else str(data)
    lines = [(f"{label}: Approach 1 (lower envelope of {f.n_runs} loss curves, "
              f"{f.n_grid} budgets)"),
             (f"  N*(C) = {_g(math.exp(f.k_n))} C^a   a = {f.a:.3f}  "
              f"{ci('a')}   (N*: params, C: FLOPs)"),
             (f"  D*(C) = {_g(math.exp(f.k_d))} C^b   b = {f.b:.3f}  "
              f"{ci('b')}   (D*: tokens)")]

    def iv(o: dict, k: str) -> str:
        return f" [{_g(o[k + '_lo95'])}, {_g(o[k + '_hi95'])}]" if k + "_lo95" in o else ""

    for o in optima:
        lines.append(f"  at C = {_g(o['compute'])} FLOPs: N* = {_g(o['params'])} params"
                     f"{iv(o, 'params')}, D* = {_g(o['tokens'])} tokens{iv(o, 'tokens')}")
    lines.append("  conventions: " + "; ".join(f"{k}: {v}" for k, v in conv.items()))
    click.echo("\n".join(lines))
    for w in f.warnings:
        click.echo(f"warning: {w}", err=True)


def _map(mapping: str | None, data: str | None) -> dict[str, str] | None:
    """--map, parsed; only with --data."""
    from sweep.errors import DataError
    from sweep.fit.points import parse_map
    from sweep.fit.sources import CURVE_NAMES

    if mapping is None:
        return None
    if data is None:
        raise DataError("--map applies only with --data")
    return parse_map(mapping, CURVE_NAMES)


def _predict_arg(text: str) -> tuple[float, float | None, float]:
    """--predict params=N,steps=S[,batch=B] → (N, B or None, S)."""
    from sweep.errors import DataError

    vals: dict[str, float] = {}
    for item in text.split(","):
        k, sep, v = item.partition("=")
        k = k.strip()
        if not sep or k not in ("params", "steps", "batch"):
            raise DataError(f"--predict item {item.strip()!r}: expected params=N, steps=S, batch=B")
        try:
            vals[k] = float(v)
        except ValueError:
            raise DataError(f"--predict {k}: {v.strip()!r} is not a number") from None
        if not (math.isfinite(vals[k]) and vals[k] > 0):
            raise DataError(f"--predict {k}: {v.strip()!r} is not a positive number")
    if "params" not in vals or "steps" not in vals:
        raise DataError(f"--predict {text!r}: needs params=N and steps=S")
    return vals["params"], vals.get("batch"), vals["steps"]


@click.command("learning-curve")
@click.argument("name", type=SWEEP, required=False)
@_data_options
@click.option("--loss", type=click.Choice(["train", "eval"]), default="train", show_default=True,
              help="Curve to fit: training loss (every few steps) or held-out loss.")
@click.option("--params", type=click.Choice(["nonembed", "total"]), default=None,
              help="N convention (default: the sweep's fit.params; Kaplan: nonembed).")
@click.option("--bcrit", default=None, metavar="B_STAR,ALPHA_B",
              help="Fix B_crit(L) = B_STAR / L^(1/ALPHA_B) (tokens). Default: fitted with "
                   "several batch sizes, else Kaplan's 2e8,0.21.")
@click.option("--floor", is_flag=True, help="Add an irreducible loss E (Kaplan's form has none).")
@click.option("--min-frac", type=click.FloatRange(0, 0.99), default=0.1, show_default=True,
              help="Drop each run's first fraction of steps (warmup, initial transient).")
@click.option("--predict", "predict", multiple=True, metavar="params=N,steps=S[,batch=B]",
              help="Predict a whole curve (batch default: the sweep's); repeatable.")
@bootstrap_options(100, most=10000)
@json_option
@root_option
def learning_curve(name: str | None, data: str | None, mapping: str | None, loss: str,
                   params: str | None, bcrit: str | None, floor: bool,
                   min_frac: float, predict: tuple[str, ...], bootstrap: int, seed: int,
                   as_json: bool, root: str) -> None:
    """Kaplan's learning-curve law L(N, S) with the critical batch size, from stored curves.

    L(N, S) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S, S_min = S / (1 + B_crit(L)/B),
    B_crit(L) = B_star / L^(1/alpha_B) (Kaplan et al. 2020 §5). Validated by refitting without
    the largest model and predicting its whole curve.
    """
    from sweep import study
    from sweep.errors import DataError

    bc = None
    if bcrit is not None:
        parts = bcrit.split(",")
        try:
            bc = (float(parts[0]), float(parts[1]))
        except (ValueError, IndexError):
            raise DataError(f"--bcrit {bcrit!r}: expected B_STAR,ALPHA_B, e.g. 2e8,0.21") from None
        if len(parts) != 2 or not all(math.isfinite(v) and v > 0 for v in bc):
            raise DataError(f"--bcrit {bcrit!r}: expected two positive numbers B_STAR,ALPHA_B")
    asks = [_predict_arg(t) for t in predict]
    f = study.learning_curve_fit(name, Path(root), loss=loss, params=params, bcrit=bc,
                               data=data, mapping=_map(mapping, data),
                               floor=floor, min_frac=min_frac, bootstrap=bootstrap, seed=seed,
                               predict=asks)
    conv = f.conventions
    if as_json:
        emit(dict(f.to_dict(), sweep=name, data=data, conventions=conv))
        return
    e = " + E" if floor else ""
    label = f"sweep '{name}'" if data is None else str(data)
    lines = [(f"{label}: L(N, S) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S{e}, "
              f"S_min = S/(1 + B_crit(L)/B), B_crit = B_star/L^(1/alpha_B)   "
              f"({f.n_runs} runs, {f.n_points} points)")]
    unit = {"N_c": "params", "S_c": "steps", "B_star": "tokens", "E": "nats/token"}
    for k in ("N_c", "alpha_N", "S_c", "alpha_S", "B_star", "alpha_B", "E"):
        if k == "E" and not floor:
            continue
        iv = (f"95% CI [{_g(f.ci95[k][0])}, {_g(f.ci95[k][1])}]" if k in f.ci95
              else "(fixed)" if k in f.fixed else "")
        lines.append(f"  {k:<8} {_g(f.params[k]):>10} {unit.get(k, ''):<10} {iv}")
    lines.append(f"  rms residual of ln L: {f.rmse_log:.4g}")
    for p in f.predictions:
        lines.append(f"  predicted curve, N = {_g(p['params'])} params, B = {_g(p['batch_tokens'])}"
                     " tokens/step (loss in nats/token):")
        for i in range(0, len(p["steps"]), 3):
            iv = (f" [{p['loss_lo95'][i]:.4f}, {p['loss_hi95'][i]:.4f}]" if "loss_lo95" in p
                  else "")
            lines.append(f"    step {p['steps'][i]:>9.0f}: {p['loss'][i]:.4f}{iv}")
    v = f.validation
    if v:
        lines.append(f"  validation: refit without the {v['held_out']}, predict them: mean "
                     f"|rel. error| {v['mean_abs_rel_error']:.3g}, "
                     f"max {v['max_abs_rel_error']:.3g}")
    lines.append("  conventions: " + "; ".join(f"{k}: {v}" for k, v in conv.items()))
    click.echo("\n".join(lines))
    for w in f.warnings:
        click.echo(f"warning: {w}", err=True)
