"""`sweep envelope NAME` on a real store holding synthetic curves with a known optimum."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synth_store import LAW, build

# A = 100, B = 200, alpha = beta = 0.35: N_opt(C) = (A/B)^(1/0.7) (C/6)^0.5, inside the ladder
PARAMS = dict(LAW, A=100.0)
GRID = ["model.widths=[32,64,96,128,160]", "budget=flops", "budget.flops=[1e11,1e12,1e13]"]


def n_opt(c: float) -> float:
    return (PARAMS["A"] / PARAMS["B"]) ** (1 / 0.7) * (c / 6) ** 0.5


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("env") / "runs"
    build(r, "env", points=40, params=PARAMS, overrides=GRID)
    return r


def run(args: list[str], root: Path):
    from click.testing import CliRunner

    from sweep.cli import cli

    return CliRunner().invoke(cli, [*args, "--root", str(root)], catch_exceptions=False)


def test_envelope_json(root: Path) -> None:
    r = run(["envelope", "env", "--compute", "1e13", "--bootstrap", "200", "--json"], root)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["method"] == "envelope" and d["n_runs"] == 15 and d["sweep"] == "env"
    assert d["a"] == pytest.approx(0.5, abs=0.1)  # 5 discrete sizes: a staircase, not a line
    assert d["a"] + d["b"] == pytest.approx(1.0, abs=1e-9)  # D* = C / (6 N*) exactly
    assert d["ci95"]["a"][0] <= d["a"] <= d["ci95"]["a"][1]
    o = d["optima"][0]
    assert o["params"] == pytest.approx(n_opt(1e13), rel=0.25)
    assert o["params_lo95"] <= o["params"] <= o["params_hi95"]
    assert "params_nonembed" in d["conventions"]["params"] and "6ND" in d["conventions"]["flops"]


def test_envelope_text_and_errors(root: Path) -> None:
    r = run(["envelope", "env", "--bootstrap", "50", "--loss", "eval", "--params", "total"], root)
    assert r.exit_code == 0, r.output
    assert "a = " in r.stdout and "FLOPs" in r.stdout and "params (all" in r.stdout
    r = run(["envelope", "nosuch"], root)
    assert r.exit_code == 1 and "unknown sweep" in r.stderr and "Traceback" not in r.output
    r = run(["envelope", "env", "--compute", "0"], root)
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_csv_curves_fit_like_the_stored_sweep(root: Path, tmp_path: Path) -> None:
    """`--data` with renamed columns gives the same envelope and learning curve as the sweep
    the CSV was exported from; bad CSV input is a one-line error, exit 2."""
    from sweep.study import sweep_curves

    df, _ = sweep_curves("env", root)
    csv = tmp_path / "curves.csv"
    df.rename(columns={"run_id": "model", "loss": "L"})[
        ["model", "params", "flops", "L", "batch_tokens"]].to_csv(csv, index=False)
    m = "run=model,loss=L"
    a = json.loads(run(["envelope", "env", "--bootstrap", "50", "--json"], root).stdout)
    b = run(["envelope", "--data", str(csv), "--map", m, "--bootstrap", "50", "--json"], root)
    assert b.exit_code == 0, b.output
    b = json.loads(b.stdout)
    assert b["a"] == pytest.approx(a["a"], rel=1e-6) and b["ci95"]["a"] == pytest.approx(
        a["ci95"]["a"], rel=1e-6)
    assert "as given" in b["conventions"]["params"]
    lc = ["learning-curve", "--bootstrap", "0", "--json"]
    a = json.loads(run([*lc, "env"], root).stdout)
    b = run([*lc, "--data", str(csv), "--map", m], root)
    assert b.exit_code == 0, b.output
    assert json.loads(b.stdout)["params"]["alpha_N"] == pytest.approx(a["params"]["alpha_N"],
                                                                       rel=1e-4)
    for args, needle in [
        (["envelope", "--data", str(csv)], "missing column 'run'"),
        (["envelope", "env", "--data", str(csv)], "either a sweep NAME or --data"),
        (["envelope", "env", "--map", m], "--map applies only with --data"),
        (["envelope", "--data", str(tmp_path / "nope.csv")], "no such file"),
        (["learning-curve", "--data", str(csv), "--map", "run=model,loss=L,batch_tokens=x"],
         "missing column 'x'"),
    ]:
        r = run(args, root)
        assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.output, r.output
    no_batch = tmp_path / "nobatch.csv"
    df.rename(columns={"run_id": "run"})[["run", "params", "tokens", "loss"]].to_csv(
        no_batch, index=False)
    r = run(["learning-curve", "--data", str(no_batch)], root)
    assert r.exit_code == 2 and "batch_tokens or a step column" in r.stderr
