"""`sweep downstream` (a metric such as accuracy against loss or compute, extrapolated) and
`sweep convert` (parameter and FLOP conventions of an external table).

Parse → load (a sweep's stored metrics, or a CSV) → call sweep.fit → print. Results on stdout
(text, or one JSON object with --json); warnings on stderr.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from sweep.cli.options import (POSITIVE, SWEEP, bootstrap_options, emit, json_option,
                               root_option)
from sweep.errors import DataError


def _g(x: float) -> str:
    return f"{x:.4g}"


def downstream_text(f, label: str) -> str:
    unit = "nats/token" if f.against == "loss" else "FLOPs"
    ci = lambda k: (f"95% CI [{_g(f.ci95[k][0])}, {_g(f.ci95[k][1])}]"
                    if k in f.ci95 else "(fixed)" if k in ("lo", "hi") and f.ci95 else "")
    lines = [f"{f.metric} of {label} against {f.against} ({unit}): {f.form}, {f.n_points} points",
             f"  {f.metric} = {f.conventions['form']}"]
    for k, v in f.params.items():
        extra = {"x0": f" ({unit})", "k": "" if f.against == "loss" else " (per decade of C)"}
        lines.append(f"  {k:<3} {_g(v):>10}{extra.get(k, '')}   {ci(k)}")
    lines.append(f"  rmse {f.rmse:.4g} ({f.metric} units)")
    for p in f.predictions:
        iv = f" [{_g(p['lo95'])}, {_g(p['hi95'])}] (95%)" if "lo95" in p else ""
        lines.append(f"  at {f.against} = {_g(p['x'])} {unit}: {f.metric} = {_g(p['value'])}{iv}")
    v = f.validation
    if v:
        lines.append(f"  validation: refit without the {v['held_out']} points of "
                     f"{v['held_out_by']}, predict them: mean |error| {v['mean_abs_error']:.3g}, "
                     f"max {v['max_abs_error']:.3g}; 95% interval covered "
                     f"{v['covered_fraction']:.0%}")
    lines.append("  conventions: " + "; ".join(f"{k}: {v}" for k, v in f.conventions.items()
                                                if k != "form"))
    return "\n".join(lines)


@click.command()
@click.argument("name", type=SWEEP, required=False)
@click.option("--metric", required=True, metavar="NAME",
              help="The stored metric (e.g. heldout_top1_acc), or with --data its column.")
@click.option("--against", type=click.Choice(["loss", "flops"]), default="loss",
              show_default=True, help="x: final held-out loss (nats/token) or compute (FLOPs).")
@click.option("--form", type=click.Choice(["sigmoid", "power"]), default=None,
              help="sigmoid (in loss, or in log10 C) or power law A x^b "
                   "[default: sigmoid against loss, power against flops].")
@click.option("--chance", type=float, default=None, metavar="LO",
              help="Fix the sigmoid's lower level (chance accuracy, e.g. 1/256 for bytes).")
@click.option("--ceiling", type=float, default=None, metavar="HI",
              help="Fix the sigmoid's upper level (e.g. 1 for an accuracy).")
@click.option("--at", type=POSITIVE, multiple=True, metavar="X",
              help="Extrapolate to this loss (nats/token) or compute (FLOPs); repeatable.")
@click.option("--data", type=click.Path(dir_okay=False), help="Points from a CSV instead.")
@click.option("--map", "mapping",
              help="--data columns: params=COL,tokens=COL,flops=COL,loss=COL,metric=COL.")
@bootstrap_options()
@json_option
@root_option
def downstream(name: str | None, metric: str, against: str, form: str | None,
               chance: float | None, ceiling: float | None, at: tuple[float, ...], data: str | None,
               mapping: str | None, bootstrap: int, seed: int, as_json: bool,
               root: str) -> None:
    """Fit a downstream metric (e.g. top-1 accuracy) against loss or compute and extrapolate it.

    Sigmoid in loss: lo + (hi-lo)/(1+exp(k (L-L0))); sigmoid in compute: the same in log10 C;
    power: A x^b. Each --at value gets a 95 % bootstrap interval, and every fit is validated by
    refitting without its most extrapolated fifth (lowest loss or largest compute).
    """
    from sweep import study
    from sweep.fit.downstream import csv_xy, fit_downstream
    from sweep.fit.points import parse_map

    form = form or ("sigmoid" if against == "loss" else "power")
    if data is not None:
        if name is not None:
            raise DataError("give either a sweep NAME or --data FILE, not both")
        names = ("params", "tokens", "flops", "loss", "metric")
        x, y, xconv = csv_xy(data, parse_map(mapping, names) if mapping else {}, metric, against)
        label = str(data)
        f = fit_downstream(x, y, metric=metric, against=against, form=form, chance=chance,
                           ceiling=ceiling, at=at, bootstrap=bootstrap, seed=seed)
        f = dataclasses.replace(f, conventions={**f.conventions, "x": xconv})
    else:
        if name is None:
            raise DataError("give a sweep NAME or --data FILE.csv")
        if mapping:
            raise DataError("--map applies only with --data")
        label = f"sweep '{name}'"
        f = study.downstream_fit(name, metric, Path(root), against=against, form=form,
                               chance=chance, ceiling=ceiling, at=at, bootstrap=bootstrap,
                               seed=seed)
    if as_json:
        emit(dict(f.to_dict(), source=label))
        return
    click.echo(downstream_text(f, label))
    for w in f.warnings:
        click.echo(f"warning: {w}", err=True)


@click.command()
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--map", "mapping",
              help="Columns: params=COL,tokens=COL,flops=COL,loss=COL,d_model=COL,n_layer=COL.")
@click.option("--params-in", type=click.Choice(["total", "nonembed"]), default="total",
              show_default=True, help="How the file counts parameters.")
@click.option("--params", "params_out", type=click.Choice(["total", "nonembed"]),
              default="nonembed", show_default=True, help="Convention to convert params to.")
@click.option("--flops", "flops_out", type=click.Choice(["6nd", "attn"]), default="6nd",
              show_default=True, help="FLOPs as 6ND, or 6ND + 12 n_layer d_model seq_len D.")
@click.option("--shapes", type=click.Path(dir_okay=False),
              help="Shapes table (params_reported, d_model, n_layers), matched to each row's "
                   "params within 5%, e.g. chinchilla_tableA9_model_shapes.csv.")
@click.option("--d-model", type=click.IntRange(1), help="Assume this d_model for every row.")
@click.option("--n-layer", type=click.IntRange(1), help="Assume this n_layer for every row.")
@click.option("--vocab", type=click.IntRange(1), help="Vocabulary size (Chinchilla: 32000).")
@click.option("--untied", is_flag=True, help="Input and output embeddings are separate.")
@click.option("--positions", type=click.IntRange(0), default=0, show_default=True,
              help="Learned position-embedding rows (0 for relative or rotary positions).")
@click.option("--seq-len", type=click.IntRange(1), help="Context length (Chinchilla: 2048).")
@click.option("-o", "--out", type=click.Path(dir_okay=False),
              help="Write the converted CSV here (default: stdout).")
@json_option
def convert(data: str, mapping: str | None, params_in: str, params_out: str, flops_out: str,
            shapes: str | None, d_model: int | None, n_layer: int | None, vocab: int | None,
            untied: bool, positions: int, seq_len: int | None, out: str | None,
            as_json: bool) -> None:
    """Convert an external table's params (total ↔ non-embedding) and FLOPs (6ND ↔ +attention).

    Writes params, tokens, flops, loss in the chosen conventions plus params_total,
    params_nonembed, flops_6nd, flops_attn, d_model, n_layer; `sweep fit --data OUT.csv` then
    fits in the new N convention. Example (Chinchilla): --shapes chinchilla_tableA9_model_shapes.csv
    --vocab 32000 --seq-len 2048 --flops attn.
    """
    import sys

    import pandas as pd

    from sweep.fsutil import atomic_write_text

    from sweep.fit.points import load_csv, parse_map
    from sweep.fit.conventions import Assumptions, load_shapes, match_shapes
    from sweep.fit.conventions import convert as convert_table
    from sweep.fit.points import NAMES

    m = parse_map(mapping, (*NAMES, "d_model", "n_layer")) if mapping else {}
    pts = load_csv(data, {k: v for k, v in m.items() if k in NAMES})
    raw = pd.read_csv(data, skipinitialspace=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    cols = {k: m.get(k, k) for k in ("d_model", "n_layer")}
    shape = None
    if shapes is not None:
        shape = match_shapes(pts["params"].to_numpy(), load_shapes(shapes), str(data))
    elif all(c in raw for c in cols.values()):
        shape = pd.DataFrame({k: pd.to_numeric(raw[c], errors="coerce") for k, c in cols.items()})
        if not (shape.notna().all().all() and (shape > 0).all().all()):
            raise DataError(f"{data}: d_model/n_layer columns need positive numbers")
    elif d_model is not None or n_layer is not None:
        if d_model is None or n_layer is None:
            raise DataError("give both --d-model and --n-layer (or --shapes FILE)")
        shape = pd.DataFrame({"d_model": [float(d_model)] * len(pts),
                              "n_layer": [float(n_layer)] * len(pts)})
    a = Assumptions(params_in, params_out, flops_out, vocab, not untied, positions, seq_len)
    res = convert_table(pts, shape, a)
    conv = a.describe()
    if shapes:
        conv["shapes"] = f"{shapes}, nearest params within 5%"
    ratios = {}
    if "params_nonembed" in res:
        r = res["params_nonembed"] / res["params_total"]
        ratios["params_nonembed/params_total"] = [float(r.min()), float(r.max())]
    if "flops_attn" in res:
        r = res["flops_attn"] / res["flops_6nd"]
        ratios["flops_attn/flops_6nd"] = [float(r.min()), float(r.max())]
    text = res.to_csv(index=False)
    if out is None and not as_json:
        sys.stdout.write(text)
        click.echo("conventions: " + "; ".join(f"{k}: {v}" for k, v in conv.items()), err=True)
        return
    if out is not None:
        atomic_write_text(out, text)
    if as_json:
        emit({"rows": len(res), "out": out, "conventions": conv, "ratios": ratios,
              "columns": list(res.columns),
              **({} if out else {"table": res.to_dict("list")})})
        return
    click.echo(f"{len(res)} rows of {data} written to {out}")
    for k, v in conv.items():
        click.echo(f"  {k}: {v}")
    for k, (lo, hi) in ratios.items():
        click.echo(f"  {k}: {lo:.4g} to {hi:.4g}")
