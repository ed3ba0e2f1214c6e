"""`sweep import` and `sweep export`: move results between the store and files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sweep.cli.options import SWEEP, json_option, root_option
from sweep.errors import DataError


@click.command("import")
@click.argument("name", type=SWEEP)
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--map", "mapping", help="Map columns of FILE: params=COL,tokens=COL,flops=COL,"
              "loss=COL (flops become tokens as C/(6N)).")
@click.option("--wandb", "wandb_dir", type=click.Path(file_okay=False),
              help="Read offline W&B run directories (run-*.wandb) below this directory.")
@click.option("--params-convention", default="as given", show_default=True,
              help="How FILE counts parameters (e.g. 'with embeddings'), kept with the points.")
@json_option
@root_option
def import_(name: str, file: str | None, mapping: str | None, wandb_dir: str | None,
            params_convention: str, as_json: bool, root: str) -> None:
    """Import an external table (FILE.csv) or offline W&B runs (--wandb DIR) into sweep NAME.

    Imported points fit like native runs: `sweep fit NAME` uses them. W&B runs logged by sweep's
    own trainer come back whole (plan, curve, final held-out loss).
    """
    from sweep import io
    from sweep.fit import parse_map
    from sweep.store import Store

    if (file is None) == (wandb_dir is None):
        raise DataError("give either FILE.csv or --wandb DIR")
    with Store(Path(root)) as store:
        if file is not None:
            n = io.import_csv(store, name, file, parse_map(mapping) if mapping else None,
                              params_convention)
            out = {"sweep": name, "runs": 0, "points": n}
        else:
            if mapping:
                raise DataError("--map applies to a CSV FILE, not to --wandb")
            runs, pts = io.import_wandb(store, name, wandb_dir)
            out = {"sweep": name, "runs": runs, "points": pts}
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(f"{name}: imported {out['runs']} runs and {out['points']} points")


@click.command()
@click.argument("names", nargs=-1, required=True, type=SWEEP)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True, help="File format of runs, curves and finals.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: ROOT/export/NAME).")
@json_option
@root_option
def export(names: tuple[str, ...], fmt: str, out: str | None, as_json: bool, root: str) -> None:
    """Write runs, curves and finals of one or more sweeps as CSV or Parquet files."""
    from sweep import io
    from sweep.store import Store

    dest = Path(out) if out else Path(root) / "export" / "+".join(names)
    with Store(Path(root), create=False) as store:
        files = io.export(store, list(names), dest, fmt)
    if as_json:
        click.echo(json.dumps({"files": [str(f) for f in files]}))
    else:
        click.echo("\n".join(str(f) for f in files))
