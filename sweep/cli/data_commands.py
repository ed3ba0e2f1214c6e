"""`sweep import`, `sweep export` and `sweep list`: move results between the store and files,
and show what a root holds."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sweep.cli.options import SWEEP, emit, json_option, root_option
from sweep.errors import DataError


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _conv(d: dict) -> str:
    return f"params {d['params_convention']}, FLOPs {d['flops_convention']}"


@click.command("import")
@click.argument("name", type=SWEEP)
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--map", "mapping", help="Map columns of FILE: params=COL,tokens=COL,flops=COL,"
              "loss=COL (flops become tokens as C/(6N)).")
@click.option("--wandb", "wandb_dir", type=click.Path(file_okay=False),
              help="Read offline W&B run directories (run-*.wandb) below this directory.")
@click.option("--params-convention", type=click.Choice(["total", "nonembed", "as-given"]),
              default=None, help="How FILE counts N: all parameters, or without embeddings. "
              "Default: the file's own (a `sweep export`: nonembed), else as-given.")
@click.option("--flops-convention", type=click.Choice(["6nd", "attn", "as-given"]), default=None,
              help="How FILE's flops column counts C: 6ND, 6ND + attention, or unknown; tokens "
              "derived from FLOPs are C/(6N) either way.  [default: 6nd]")
@json_option
@root_option
def import_(name: str, file: str | None, mapping: str | None, wandb_dir: str | None,
            params_convention: str | None, flops_convention: str | None, as_json: bool,
            root: str) -> None:
    """Import an external table (FILE.csv) or offline W&B runs (--wandb DIR) into sweep NAME.

    Imported points fit like native runs: `sweep fit NAME` uses them. The same content imported
    again adds nothing. Refused with the file line: duplicate rows, tokens/params outside
    [0.01, 1e6] and FLOPs beside tokens more than 3x off 6ND (units slips). W&B runs logged by
    sweep's own trainer come back whole (plan, curve, final held-out loss). `sweep export`'s
    finals.csv and imported.csv import as they are.
    """
    from sweep import io
    from sweep.fit import parse_map
    from sweep.store import Store

    if (file is None) == (wandb_dir is None):
        raise DataError("give either FILE.csv or --wandb DIR")
    with Store(Path(root)) as store:
        if file is not None:
            res = io.import_csv(store, name, file, parse_map(mapping) if mapping else None,
                                params_convention, flops_convention)
        else:
            if mapping or params_convention or flops_convention:
                raise DataError("--map and the conventions apply to a CSV FILE, not to --wandb")
            res = io.import_wandb(store, name, wandb_dir)
    if as_json:
        emit(res.to_dict())
        return
    rec, src = res.record, file or wandb_dir
    if rec is not None and not res.added:
        click.echo(f"{name}: {src} already imported (same content, {rec.rows} rows) on "
                   f"{_when(rec.created)}; nothing added")
    elif rec is not None:
        click.echo(f"{name}: imported {rec.rows} points from {src} ({_conv(rec.to_dict())})")
    if wandb_dir is not None:
        click.echo(f"{name}: {res.runs} W&B runs imported whole")
    if rec is not None and rec.params_convention == "as-given":
        click.echo("note: N convention not declared; give --params-convention total|nonembed "
                   "(labelled as-given)", err=True)


@click.command()
@click.argument("names", nargs=-1, required=True, type=SWEEP)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True, help="File format of runs, curves, finals and imported.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: ROOT/export/NAME).")
@json_option
@root_option
def export(names: tuple[str, ...], fmt: str, out: str | None, as_json: bool, root: str) -> None:
    """Write runs, curves, finals and imported points of one or more sweeps as CSV or Parquet.

    finals.csv and imported.csv re-import with `sweep import NAME FILE` (no --map)."""
    from sweep import io
    from sweep.store import Store

    dest = Path(out) if out else Path(root) / "export" / "+".join(names)
    with Store(Path(root), create=False) as store:
        files = io.export(store, list(names), dest, fmt)
    if as_json:
        emit({"files": [str(f) for f in files]})
    else:
        click.echo("\n".join(str(f) for f in files))


@click.command("list")
@json_option
@root_option
def list_(as_json: bool, root: str) -> None:
    """List every sweep in the root, one line each: runs per state and imported points."""
    from sweep import io
    from sweep.store import DB_NAME, Store

    if not (Path(root) / DB_NAME).exists():
        rows: list[dict] = []
    else:
        with Store(Path(root), create=False) as store:
            rows = io.list_sweeps(store)
    if as_json:
        emit({"root": str(root), "sweeps": rows})
        return
    if not rows:
        click.echo(f"no sweeps in {root}")
    width = max((len(r["sweep"]) for r in rows), default=0)
    for r in rows:
        states = ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items()))
        parts = [f"{r['runs']} runs" + (f" ({states})" if states else "")]
        if r["imported"]:
            parts.append(f"{r['imported']} imported points ({r['imports']} "
                         f"import{'s' * (r['imports'] != 1)})")
        click.echo(f"{r['sweep']:<{width}}  " + "; ".join(parts))


def imported_points(root: Path, name: str, *, echo: bool = False) -> list[dict]:
    """The imports of sweep ``name`` for `sweep status` (file, rows, conventions, ranges of N,
    D, C = 6ND and loss); with ``echo``, also print them below the runs table."""
    from sweep.store import Store

    with Store(root, create=False) as store:
        imports = store.import_summary(name)
    if echo and imports:
        total = sum(d["rows"] for d in imports)
        click.echo(f"imported: {total} points from {len(imports)} "
                   f"source{'s' * (len(imports) != 1)} (loss in nats/token as given)")
        for d in imports:
            rg = d["ranges"]
            click.echo(f"  {d['file']}: {d['rows']} points ({_conv(d)}), "
                       + ", ".join(f"{label} {_g(rg[k][0])}-{_g(rg[k][1])}" for k, label in
                                   (("params", "N"), ("tokens", "D"), ("flops", "C (6ND FLOPs)"),
                                    ("loss", "loss")))
                       + f"; imported {_when(d['created'])}")
    return imports
