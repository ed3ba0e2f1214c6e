"""`sweep bench train` (sweep.train.bench), on a tiny setting: the table's pieces are there."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import sweep.train.bench as bench
from sweep.cli import cli
from sweep.cli.bench_commands import bench as bench_group


def test_bench_train_json(monkeypatch: pytest.MonkeyPatch) -> None:
    real = bench.matmul_peak
    monkeypatch.setattr(bench, "matmul_peak", lambda: real((256,), 2))
    r = CliRunner().invoke(bench_group, ["train", "--widths", "32", "--rounds", "2",
                                         "--seconds", "0.1", "--threads", "1", "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["peak_flops"] > 1e8 and out["rate_unit"] == "per CPU-second"
    assert set(out) == {"device", "precision", "peak_flops", "rate_unit", "rows"}
    (row,) = out["rows"]
    # nanoGPT's estimate_mfu count: the tied LM head (vocab·d) is in N
    assert row["width"] == 32
    assert row["flops_per_token"] == 6 * (24736 + 256 * 32) + 12 * 2 * 32 * 64
    assert out["device"] == "cpu" and out["precision"] == "fp32"
    assert row["trainer_tps"] > 0 and row["reference_tps"] > 0 and 0 < row["mfu"] < 1
    assert row["trainer_wall_tps"] > 0 and row["reference_wall_tps"] > 0
    assert 0 < row["ratio_min"] <= row["ratio"] <= row["ratio_max"]


def test_bench_train_table_on_stdout_progress_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    real = bench.matmul_peak
    monkeypatch.setattr(bench, "matmul_peak", lambda: real((256,), 2))
    r = CliRunner().invoke(bench_group, ["train", "--widths", "32", "--rounds", "1",
                                         "--seconds", "0.1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "fp32 matmul peak" in r.stderr and "width 32:" in r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("depth 2, seq 64, batch 16, cpu") and lines[-1].split()[0] == "32"


@pytest.mark.parametrize("widths", ["32,x", "0,32", ","])
def test_bench_train_bad_widths(widths: str) -> None:
    r = CliRunner().invoke(cli, ["bench", "train", "--widths", widths])
    assert r.exit_code == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("Error: --widths") and "Traceback" not in r.output


def test_matmul_peak_is_per_cpu_second() -> None:
    peak, at = bench.matmul_peak((128,), 3)
    assert at == 128 and 1e8 < peak < 1e13


def test_table_text() -> None:
    rows = [bench.Row(256, 1_573_376, 9.83e6, 40, 6000.0, 5000.0, 1.2, 1.1, 1.3, 3000.0, 2500.0)]
    text = bench.table(100e9, rows)
    assert "MFU vs 100.0 GFLOP per CPU-second" in text
    last = text.splitlines()[-1].split()
    assert last[-2:] == ["1.20", "[1.10–1.30]"] and last[-6] == "0.59"  # 6000·9.83e6/1e11


def _bench_gpu():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the script would run")
def test_bench_gpu_without_gpu_skips_with_exit_0(capsys: pytest.CaptureFixture) -> None:
    assert _bench_gpu().main([]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("bench_gpu: skipped: no CUDA GPU here")


def test_bench_gpu_on_cpu_prints_tokens_and_mfu(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    real = bench.matmul_peak
    monkeypatch.setattr(bench, "matmul_peak", lambda: real((256,), 2))
    assert _bench_gpu().main(["--device", "cpu", "--widths", "32", "--depth", "1", "--seq-len",
                              "32", "--batch-size", "4", "--rounds", "1", "--seconds", "0.1"]) == 0
    out = capsys.readouterr()
    assert "fp32 matmul peak" in out.err
    last = out.out.strip().splitlines()[-1].split()
    assert last[0] == "32" and 0 < float(last[6]) < 1  # MFU column


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_bench_train_cuda_without_gpu_is_one_line_error() -> None:
    r = CliRunner().invoke(cli, ["bench", "train", "--device", "cuda"])
    assert r.exit_code == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert "train.device=cuda but torch.cuda.is_available() is False" in line
