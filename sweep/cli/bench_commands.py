"""`sweep bench train`: the trainer's speed on this machine (sweep.train.bench).

Register in sweep/cli/__init__.py with ``cli.add_command(bench_commands.bench)``.
"""

from __future__ import annotations

import dataclasses
import json

import click

from sweep.cli.options import json_option
from sweep.errors import ConfigError


@click.group()
def bench() -> None:
    """Measure this machine: `sweep bench train`."""


@bench.command("train")
@click.option("--widths", default="32,64,96,128,256", show_default=True,
              help="Comma-separated d_model values.")
@click.option("--depth", type=click.IntRange(1), default=2, show_default=True)
@click.option("--seq-len", type=click.IntRange(1), default=64, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True,
              help="Interleaved trainer/reference measurements per width (medians reported).")
@click.option("--seconds", type=click.FloatRange(0.1), default=1.0, show_default=True,
              help="Approximate CPU-seconds of one measurement.")
@click.option("--threads", type=click.IntRange(0), default=1, show_default=True,
              help="torch threads; 1 = one job slot of `sweep launch`, 0 = torch's default.")
@json_option
def train_(widths: str, depth: int, seq_len: int, batch_size: int, rounds: int, seconds: float,
           threads: int | None, as_json: bool) -> None:
    """fp32 matmul peak, then tokens/s, model FLOP/s and MFU of the trainer and of a plain
    nanoGPT-style loop (same model, batch, optimizer), interleaved; ratio trainer ÷ reference.

    Rates are per CPU-second of this process (robust on a shared machine), medians of rounds."""
    from sweep.train.bench import bench as run_bench, table

    try:
        ws = tuple(int(w) for w in widths.split(",") if w.strip())
    except ValueError:
        raise ConfigError(f"--widths: not a list of integers: {widths!r}") from None
    echo = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))  # progress
    if not ws or min(ws) < 1:
        raise ConfigError(f"--widths: widths must be positive integers: {widths!r}")
    peak, rows = run_bench(ws, depth, seq_len, batch_size, rounds, seconds, threads or None,
                           echo=echo)
    if as_json:
        click.echo(json.dumps({"peak_flops": peak, "rate_unit": "per CPU-second", "rows": [
            {**dataclasses.asdict(r), "mfu": r.mfu(peak), "reference_mfu": r.mfu(peak, "reference")}
            for r in rows]}, indent=1))
    else:
        click.echo(table(peak, rows, depth, seq_len, batch_size))
