"""The real loop on a tiny grid: plan → launch → fit → next → launch → fit shows the appended
run's predicted and measured loss side by side. Slow (real training)."""

from __future__ import annotations

import json

import pytest

from sweep import shapes

from .synth import invoke

pytestmark = pytest.mark.slow

TINY = ["model.widths=[32,64]", "model.depths=[1]", "model.seq_len=32", "train.batch_size=8",
        "budget.tokens=[2e4,4e4,8e4]", "train.eval_tokens=8192", "train.log_every=5"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("SWEEP_CPU_PEAK", "1.5e11")


def test_next_launch_fit_closes_the_loop(root):
    assert invoke(["plan", "t", *TINY], root).exit_code == 0
    assert invoke(["launch", "t", "--jobs", "2", "--no-progress"], root).exit_code == 0
    r = invoke(["next", "t", "--budget", "3e10", "--bootstrap", "50", "--json"], root)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    rid, run = out["runs"][0]["run_id"], out["runs"][0]
    # never past 2x the fitted N and D (--max-extrapolation), whatever the reason
    assert out["reason"] in ("compute-optimal", "most informative",
                             "compute-optimal within reach")
    assert run["tokens"] <= 2 * 8e4 * 1.0001
    assert run["params_nonembed"] <= 2 * shapes.params_nonembed(64, 1) * 1.0001
    r = invoke(["launch", "t", "--no-progress", "--json"], root)
    assert json.loads(r.stdout)["trained"] == [rid]
    r = invoke(["fit", "t", "--bootstrap", "50"], root)
    assert r.exit_code == 0, r.output
    line = next(x for x in r.stdout.splitlines() if "prediction check" in x)
    assert rid in line and "measured" in line and "not measured" not in line
    assert "7 points" in r.stdout
