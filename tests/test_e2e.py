"""End to end through the real CLI: plan → launch (real training) → status → fit → recommend,
and resume after the launcher is killed. Marked slow (about a minute); CI runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import invoke
from sweep.records import RunState
from sweep.store import Store

pytestmark = pytest.mark.slow

# 2 widths × 3 budgets, 1 layer, short context: 6 real runs in a few seconds each.
TINY = ["model.widths=[32,64]", "model.depths=[1]", "model.seq_len=32", "train.batch_size=8",
        "budget.tokens=[2e4,4e4,8e4]", "train.eval_tokens=8192", "train.log_every=5"]

STATUS_KEYS = {"id", "state", "width", "depth", "params", "params_nonembed", "tokens",
               "tokens_done", "flops", "final_loss", "error"}
FIT_KEYS = {"method", "n_points", "params", "ci95", "objective", "allocation", "predictions",
            "validation", "warnings", "conventions", "trust", "bootstrap"}
PRED_KEYS = {"params", "tokens", "flops", "loss", "loss_lo95", "loss_hi95", "trust",
             "extrapolation", "warnings"}
REC_KEYS = {"compute", "params", "params_nonembed", "tokens", "flops", "predicted_loss",
            "predicted_loss_lo95", "predicted_loss_hi95", "model", "train", "conventions",
            "trust", "extrapolation", "warnings"}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_plan_launch_status_fit_recommend(runner, root):
    assert invoke(runner, ["plan", "tiny", *TINY], root).exit_code == 0
    r = invoke(runner, ["launch", "tiny", "--jobs", "2", "--json"], root)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["trained"]) == 6 and out["counts"] == {"completed": 6}

    st = json.loads(invoke(runner, ["status", "tiny", "--json"], root).stdout)
    assert st["sweep"] == "tiny" and st["counts"] == {"completed": 6}
    for run in st["runs"]:
        assert set(run) == STATUS_KEYS
        assert run["state"] == "completed" and run["tokens_done"] == run["tokens"]
        assert 0 < run["final_loss"] < 5.6  # below the uniform-byte loss ln 256
    # more parameters or more tokens → lower final loss, on real text
    loss = {(r["width"], r["tokens"]): r["final_loss"] for r in st["runs"]}
    widths = sorted({w for w, _ in loss})
    toks = sorted({t for _, t in loss})
    assert loss[(widths[-1], toks[-1])] < loss[(widths[0], toks[0])]

    with Store(root) as store:
        curves = store.curves_df(["tiny"])
        assert curves.groupby("run_id").end_of_schedule.sum().eq(1).all()
        assert curves.eval_loss.notna().sum() >= 6

    r = invoke(runner, ["fit", "tiny", "--bootstrap", "50", "--json",
                        "--at", "params=1e5,tokens=1e6"], root)
    assert r.exit_code == 0, r.output
    fit = json.loads(r.stdout)
    assert set(fit) == FIT_KEYS and fit["n_points"] == 6
    assert set(fit["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert len(fit["predictions"]) == 1
    p = fit["predictions"][0]
    assert set(p) == PRED_KEYS and p["trust"] in ("inside", "extrapolated", "outside")
    assert p["loss_lo95"] <= p["loss"] <= p["loss_hi95"]
    # a second fit is the cached one: the identical JSON
    again = invoke(runner, ["fit", "tiny", "--bootstrap", "50", "--json",
                            "--at", "params=1e5,tokens=1e6"], root)
    assert again.stdout == r.stdout

    r = invoke(runner, ["recommend", "tiny", "--compute", "1e13", "--bootstrap", "50", "--json"],
               root)
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert set(rec) == REC_KEYS
    assert rec["flops"] == pytest.approx(1e13, rel=1e-9)
    assert set(rec["model"]) == {"width", "depth", "heads"} and rec["model"]["depth"] == 1
    assert set(rec["train"]) == {"lr", "batch_tokens", "steps"}

    # W&B round trip: every run left a real offline W&B run; importing them rebuilds the finals
    assert len(list((root / "tiny").rglob("run-*.wandb"))) == 6
    r = invoke(runner, ["import", "copy", "--wandb", str(root / "tiny"), "--json"], root)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["runs"] == 6
    with Store(root) as store:
        f = store.finals_df(["tiny", "copy"])
    key = ["width", "depth", "tokens"]
    a = f[f.sweep == "tiny"].sort_values(key).final_loss.tolist()
    b = f[f.sweep == "copy"].sort_values(key).final_loss.tolist()
    assert a == pytest.approx(b, rel=1e-9)

    # relaunch: nothing left to train
    r = invoke(runner, ["launch", "tiny", "--json"], root)
    assert json.loads(r.stdout)["trained"] == [] and json.loads(r.stdout)["skipped"] == 6


def _default_sigint() -> None:
    # a shell starts background jobs with SIGINT ignored, and children inherit that (Python then
    # installs no KeyboardInterrupt handler): give the launcher the terminal's usual SIGINT
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sweep(args, root, **kw):
    env = dict(os.environ, SWEEP_ROOT=str(root))
    return subprocess.Popen([sys.executable, "-m", "sweep", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint, **kw)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_resume_after_interrupt(root, sig):
    plan = _sweep(["plan", "r", *TINY, "budget.tokens=[2e4,4e4,1.6e5]"], root)
    assert plan.wait(60) == 0
    proc = _sweep(["launch", "r", "--jobs", "1", "--no-progress"], root)
    # wait until at least one run has completed and another is under way, then interrupt
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        with Store(root) as st:
            states = [r.state for r in st.runs("r")]
        if states.count(RunState.COMPLETED) >= 1 and RunState.RUNNING in states:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"launch made no progress: {states}")
    proc.send_signal(sig)
    proc.wait(60)
    time.sleep(1.5)  # orphaned workers notice their parent is gone within a second
    with Store(root) as st:
        before = {r.run.run_id: r for r in st.runs("r")}
    done = {k for k, v in before.items() if v.state == RunState.COMPLETED}
    assert 1 <= len(done) < 6

    again = _sweep(["launch", "r", "--jobs", "2", "--json"], root)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()
    res = json.loads(out)
    assert set(res["trained"]) == set(before) - done  # only what was missing
    with Store(root) as st:
        after = {r.run.run_id: r for r in st.runs("r")}
    assert all(r.state == RunState.COMPLETED for r in after.values())
    for k in done:  # completed runs were not touched
        assert after[k].attempts == before[k].attempts == 1
        assert after[k].final_loss == before[k].final_loss
