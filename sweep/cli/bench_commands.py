"""`sweep bench train`: the trainer's speed on this machine (sweep.train.bench).

Register in sweep/cli/__init__.py with ``cli.add_command(bench_commands.bench)``.
"""

from __future__ import annotations

import dataclasses

import click

from sweep.cli.options import emit, json_option
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
              help="Approximate CPU-seconds (wall-seconds on a GPU) of one measurement.")
@click.option("--threads", type=click.IntRange(0), default=1, show_default=True,
              help="torch threads; 1 = one job slot of `sweep launch`, 0 = torch's default.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "mps", "auto"]), default="cpu",
              show_default=True, help="Where both loops train (train.device); cuda without a "
              "GPU is an error.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
              show_default=True, help="train.precision (bf16: autocast, fp32 master weights).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the trainer's model.")
@json_option
def train_(widths: str, depth: int, seq_len: int, batch_size: int, rounds: int, seconds: float,
           threads: int | None, device: str, precision: str, compile_: bool,
           as_json: bool) -> None:
    """Peak FLOP/s, then tokens/s, model FLOP/s and MFU of the trainer and of nanoGPT's own
    loop and model (same batch, optimizer settings, seed), interleaved; ratio trainer ÷ nanoGPT.

    On a CPU rates are per CPU-second of this process (robust on a shared machine) and the peak
    is the measured fp32 matmul rate; on a GPU rates are per wall-second and the peak is the
    data-sheet one (sweep/train/device.py). Medians of rounds."""
    from sweep.train import device as device_
    from sweep.train.bench import bench as run_bench, rate_unit, table

    try:
        ws = tuple(int(w) for w in widths.split(",") if w.strip())
    except ValueError:
        raise ConfigError(f"--widths: not a list of integers: {widths!r}") from None
    echo = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))  # progress
    if not ws or min(ws) < 1:
        raise ConfigError(f"--widths: widths must be positive integers: {widths!r}")
    dev = device_.resolve(device, precision)  # one-line ConfigError without such a device
    peak, rows = run_bench(ws, depth, seq_len, batch_size, rounds, seconds, threads or None,
                           echo=echo, device=device, precision=precision, compile=compile_)
    if as_json:
        emit({"device": device_.name(dev), "precision": precision, "peak_flops": peak,
              "rate_unit": rate_unit(dev.type), "rows": [
                  {**dataclasses.asdict(r), "mfu": r.mfu(peak),
                   "reference_mfu": r.mfu(peak, "reference")} for r in rows]})
    else:
        click.echo(table(peak, rows, depth, seq_len, batch_size, dev.type))
