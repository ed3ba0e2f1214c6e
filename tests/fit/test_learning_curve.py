"""Kaplan's L(N, S) with B_crit(L): known-truth recovery from synthetic curves, curve
prediction for a larger model, CLI smoke test on a real store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweep.errors import FitError, InputError
from sweep.fit.learning_curve import fit_learning_curve, predict_curve, s_min

sys.path.insert(0, str(Path(__file__).parent))
from synth_store import build

# B_crit(L) = 3e3 / L^(1/0.21) is ~1e3-1e5 tokens at these losses: batches 256-16384 straddle it
TRUE = {"N_c": 1e4, "alpha_N": 0.3, "S_c": 0.5, "alpha_S": 0.5, "B_star": 3e3, "alpha_B": 0.21,
        "E": 0.0}


SIZES = np.geomspace(2e4, 6e5, 5)


def curves(batches, noise=0.005, seed=0, sizes=SIZES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for b in batches:
            s = np.unique(np.round(np.geomspace(10, 5000, 30)))
            loss = predict_curve(TRUE, n, b, s) * np.exp(rng.normal(0, noise, s.size))
            rows.append(pd.DataFrame({"run_id": f"n{n:.0f}-b{b}", "params": n,
                                      "batch_tokens": b, "steps": s, "loss": loss}))
    return pd.concat(rows, ignore_index=True)


def test_predicted_curve_solves_the_implicit_law() -> None:
    s = np.array([10.0, 100.0, 1000.0])
    L = predict_curve(TRUE, 1e5, 1024, s)
    sm = s_min(s, 1024, L, TRUE["B_star"], TRUE["alpha_B"])
    rhs = (TRUE["N_c"] / 1e5) ** 0.3 + (TRUE["S_c"] / sm) ** 0.5
    assert np.allclose(L, rhs, rtol=1e-10) and np.all(np.diff(L) < 0)


def test_one_batch_size_recovered_with_bcrit_fixed() -> None:
    f = fit_learning_curve(curves([1024]), bcrit=(3e3, 0.21), bootstrap=20,
                           predict=[(2e6, 1024, 5000)])
    assert f.params["alpha_N"] == pytest.approx(0.3, abs=0.03)
    assert f.params["alpha_S"] == pytest.approx(0.5, abs=0.05)
    assert f.params["N_c"] == pytest.approx(1e4, rel=0.3)
    assert f.params["S_c"] == pytest.approx(0.5, rel=0.2)
    assert set(f.fixed) == {"B_star", "alpha_B", "E"} and f.rmse_log < 0.008
    # a whole curve for a 3x larger model than any fitted: within 2 % of the truth over the
    # fitted range of steps (10-5000)
    p = f.predictions[0]
    steps = np.array(p["steps"])
    truth = predict_curve(TRUE, 2e6, 1024, steps)
    assert np.allclose(np.array(p["loss"])[steps >= 10], truth[steps >= 10], rtol=0.02)
    assert all(lo <= v <= hi for lo, v, hi in zip(p["loss_lo95"], p["loss"], p["loss_hi95"]))
    assert f.validation["mean_abs_rel_error"] < 0.01


def test_one_batch_size_defaults_to_kaplan_bcrit() -> None:
    f = fit_learning_curve(curves([1024]), bootstrap=0)
    assert f.params["B_star"] == 2e8 and f.params["alpha_B"] == 0.21
    assert any("not identifiable" in w for w in f.warnings)


def test_several_batch_sizes_fit_bcrit() -> None:
    f = fit_learning_curve(curves([256, 2048, 16384]), bootstrap=10)
    assert f.fixed == ["E"]
    assert f.params["alpha_B"] == pytest.approx(0.21, abs=0.03)
    assert f.params["B_star"] == pytest.approx(3e3, rel=0.5)
    assert f.params["alpha_N"] == pytest.approx(0.3, abs=0.02)
    assert f.params["alpha_S"] == pytest.approx(0.5, abs=0.05)
    assert f.ci95["alpha_B"][0] <= f.params["alpha_B"] <= f.ci95["alpha_B"][1]


def test_errors() -> None:
    c = curves([1024])
    with pytest.raises(InputError):
        fit_learning_curve(c.drop(columns="batch_tokens"))
    with pytest.raises(FitError):
        fit_learning_curve(c[c["params"] == c["params"].min()])


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("lc") / "runs"
    build(r, "lc", points=30, overrides=["model.widths=[32,64,128]", "budget.tokens=[1e5,1e6]"])
    return r


def run(args: list[str], root: Path):
    from click.testing import CliRunner

    from sweep.cli import cli

    return CliRunner().invoke(cli, [*args, "--root", str(root)], catch_exceptions=False)


def test_cli_smoke(root: Path) -> None:
    r = run(["learning-curve", "lc", "--predict", "params=1e6,steps=2000", "--bootstrap", "5",
             "--json"], root)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["n_runs"] == 6 and d["fixed"] == ["B_star", "E", "alpha_B"]
    assert len(d["predictions"][0]["loss"]) == len(d["predictions"][0]["steps"])
    assert "optimizer steps" in d["conventions"]["S"] and "not identifiable" in d["warnings"][0]
    r = run(["learning-curve", "lc", "--bcrit", "1e4,0.3", "--bootstrap", "0"], root)
    assert r.exit_code == 0 and "(fixed)" in r.stdout and "nats/token" in r.stdout
    for bad in (["--bcrit", "2e8"], ["--bcrit", "a,b"], ["--predict", "params=1e6"],
                ["--predict", "steps=-1,params=1"]):
        r = run(["learning-curve", "lc", *bad], root)
        assert r.exit_code == 2 and "Traceback" not in r.output, bad
        assert len(r.stderr.strip().splitlines()) == 1


@settings(max_examples=20, deadline=None)
@given(a_n=st.floats(0.05, 1.0), a_s=st.floats(0.1, 2.0), b_star=st.floats(1e2, 1e9),
       a_b=st.floats(0.1, 0.5), e=st.floats(0.0, 2.0), batch=st.floats(32, 1e6))
def test_predicted_curves_fall_with_steps_and_size(a_n, a_s, b_star, a_b, e, batch) -> None:
    """Any law: more steps or more parameters never predict a higher loss; all above E."""
    p = {"N_c": 1e4, "alpha_N": a_n, "S_c": 10.0, "alpha_S": a_s, "B_star": b_star,
         "alpha_B": a_b, "E": e}
    s = np.geomspace(1, 1e5, 25)
    small, big = predict_curve(p, 1e5, batch, s), predict_curve(p, 1e6, batch, s)
    assert np.all(np.diff(small) <= 1e-9 * small[:-1]) and np.all(big <= small * (1 + 1e-9))
    assert np.all(big > e)
