"""The fitting commands through click: JSON shape, options, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from sweep.cli import cli
from sweep.cli import fit_commands

for _c in (fit_commands.isoflop, fit_commands.compare, fit_commands.kaplan):
    cli.add_command(_c)  # the lead registers them in sweep/cli/__init__.py

DATA = (Path(__file__).parents[2] / "../shared/data").resolve()
CHIN = ["--data", str(DATA / "chinchilla_hoffmann2022_epoch.csv"),
        "--map", "params=Model Size,flops=Training FLOP"]


@pytest.fixture
def grid_csv(tmp_path: Path) -> Path:
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, 5), np.geomspace(1e9, 1e12, 5))
    n, d = n.ravel(), d.ravel()
    p = tmp_path / "g.csv"
    pd.DataFrame({"params": n, "tokens": d,
                  "loss": 1.8 + 400 / n**0.34 + 2000 / d**0.36}).to_csv(p, index=False)
    return p


def test_fit_drop_highest_loss_json() -> None:
    r = CliRunner().invoke(cli, ["fit", *CHIN, "--drop-highest-loss", "5", "--bootstrap", "50",
                                 "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert {"method", "n_points", "params", "ci95", "objective", "allocation", "predictions",
            "validation"} <= set(d)
    assert d["n_points"] == 240 and d["objective"] <= 1.01828e-3


def test_fit_options_and_errors(grid_csv: Path) -> None:
    run = CliRunner().invoke
    r = run(cli, ["fit", "--data", str(grid_csv), "--fix", "E=1.8", "--bound", "alpha=0.1:1",
                  "--bootstrap", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["params"]["E"] == pytest.approx(1.8)
    for bad in (["--fix", "Q=1"], ["--bound", "alpha=1"], ["--weights", "nope"]):
        r = run(cli, ["fit", "--data", str(grid_csv), "--bootstrap", "0", *bad])
        assert r.exit_code == 2 and "Traceback" not in r.output, bad


def test_isoflop_command() -> None:
    r = CliRunner().invoke(cli, ["isoflop", "--data", str(DATA / "isoflops_multi_source.csv"),
                                 "--bootstrap", "20", "--compute", "1e22", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["method"] == "isoflop" and len(d["fits"]) == 8 and d["outliers_dropped"]
    f = d["fits"]["llama_3__raw_loss"]
    assert f["a"] == pytest.approx(0.50, abs=0.02) and f["optima"][0]["compute"] == 1e22


def test_compare_and_kaplan_commands(grid_csv: Path) -> None:
    r = CliRunner().invoke(cli, ["compare", str(grid_csv), str(grid_csv), "--bootstrap", "20",
                                 "--compute", "1e20", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["multiplier"] == [pytest.approx(1.0, rel=1e-6)]
    r = CliRunner().invoke(cli, ["kaplan", "--data", str(grid_csv), "--law", "C", "--json"])
    assert r.exit_code in (0, 1), r.output  # a 5x5 grid's frontier may be too short
