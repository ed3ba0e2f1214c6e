"""`sweep next` chooses what the fit can stand behind (issue 13, item 4): the compute-optimal run
when E, alpha and beta are identified and the run is within reach of the fitted N and D; the
most informative run within reach when they are not; the best run within reach when the
optimum is too far. Real fits on synthetic sweeps written into a real store."""

from __future__ import annotations

import json

from sweep import api
from sweep.recommend import fit_params, recommend
from sweep.store import Store
from tests.conftest import invoke
from tests.fit import synth_store

FLAT = dict(synth_store.LAW, E=0.0)  # no loss floor: E falls to its bound, not identified


def _box(root, name):
    fit = api.fit_sweep(name, root, bootstrap=100)
    with Store(root) as st:
        cfg = api.sweep_config(st, name)
    return fit, cfg


def _within(fit, cfg, run, reach=2.0):
    n = fit_params(run.width, run.depth, cfg, cfg.fit.params)
    tr = fit.trust
    return (tr.params[0] * (1 - 1e-9) <= n <= reach * tr.params[1] * (1 + 1e-9)
            and run.tokens <= reach * tr.tokens[1] * 1.0001)


def test_identified_and_near_is_the_compute_optimal_run(root):
    synth_store.build(root)
    fit, cfg = _box(root, "syn")
    assert all(fit.trust.identified[k] for k in ("E", "alpha", "beta"))
    res = api.next_runs("syn", 3e12, root, bootstrap=100)
    assert res.reason == "compute-optimal" and res.why == "" and res.informative is None
    rec = recommend(fit, 3e12, cfg)
    assert (res.runs[0].width, res.runs[0].depth) == (rec.model["width"], rec.model["depth"])


def test_identified_but_far_is_the_best_run_within_reach(root):
    synth_store.build(root)
    fit, cfg = _box(root, "syn")
    res = api.next_runs("syn", 1e15, root, bootstrap=100)
    run = res.runs[0]
    assert res.reason == "compute-optimal within reach" and "farther" in res.why
    assert _within(fit, cfg, run) and res.predictions[0].flops <= 1e15 * 1.0001
    # the lowest predicted loss within reach: wider reach, lower (or equal) loss
    far = api.next_runs("syn", 1e15, root, bootstrap=100, reach=4.0)
    assert far.predictions[0].predicted_loss <= res.predictions[0].predicted_loss + 1e-12


def test_unidentified_floor_switches_to_the_most_informative_run(root, runner):
    synth_store.build(root, params=FLAT)
    fit, cfg = _box(root, "syn")
    assert not fit.trust.identified["E"]
    r = invoke(runner, ["next", "syn", "--budget", "1e13", "--bootstrap", "100",
                        "--candidate-bootstrap", "10", "--json"], root)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["reason"] == "most informative"
    assert "Switched from the compute-optimal run" in out["why"] and "E" in out["why"]
    run = out["runs"][0]
    with Store(root) as st:
        planned = {x.run.run_id: x.run for x in st.runs("syn")}
    assert run["run_id"] in planned and _within(fit, cfg, planned[run["run_id"]])
    text = invoke(runner, ["next", "syn", "--budget", "1e13", "--bootstrap", "100",
                           "--candidate-bootstrap", "10"], root)
    assert "chosen because it most narrows the interval" in text.stdout
    assert "not identified by the fitted runs" in text.stdout


def test_bad_reach_is_a_usage_error(root, runner):
    synth_store.build(root)
    r = invoke(runner, ["next", "syn", "--budget", "1e13", "--max-extrapolation", "0.5"], root)
    assert r.exit_code == 2 and "max-extrapolation" in r.output


def test_a_budget_below_every_run_within_reach_is_one_line(root, runner):
    synth_store.build(root, params=FLAT)
    r = invoke(runner, ["next", "syn", "--budget", "1e9", "--bootstrap", "50"], root)
    assert r.exit_code == 1 and "the cheapest" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
