"""`sweep bench train` (sweep.train.bench), on a tiny setting: the table's pieces are there."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import sweep.train.bench as bench
from sweep.cli.bench_commands import bench as bench_group


def test_bench_train_json(monkeypatch: pytest.MonkeyPatch) -> None:
    real = bench.matmul_peak
    monkeypatch.setattr(bench, "matmul_peak", lambda: real((256,), 2))
    r = CliRunner().invoke(bench_group, ["train", "--widths", "32", "--rounds", "1",
                                         "--seconds", "0.1", "--threads", "1", "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["peak_flops"] > 1e8
    (row,) = out["rows"]
    assert row["width"] == 32 and row["flops_per_token"] == 6 * 24736 + 12 * 2 * 32 * 64
    assert row["trainer_tps"] > 0 and row["reference_tps"] > 0 and 0 < row["mfu"] < 1
    assert row["ratio"] == pytest.approx(row["trainer_tps"] / row["reference_tps"])


def test_table_text() -> None:
    rows = [bench.Row(256, 1_573_376, 9.83e6, 40, 6000.0, 5000.0)]
    text = bench.table(100e9, rows)
    assert "MFU vs 100.0 GFLOP/s" in text and text.splitlines()[-1].split()[-1] == "1.20"
