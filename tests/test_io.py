"""Import and export: external tables fit like native runs; exports are complete."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import invoke

from sweep import config
from sweep.plan import plan
from sweep.store import Store
from sweep.tracking import OfflineRun, merge_attempts, read_offline_run, read_offline_runs
from sweep.train.worker import checkpoint_step, write_spec

MAP = "params=Model Size,flops=Training FLOP,loss=loss"


def test_import_csv_fits_like_fit_data(runner, root, shared_data):
    csv = shared_data / "chinchilla_hoffmann2022_epoch.csv"
    r = invoke(runner, ["import", "chin", str(csv), "--map", MAP, "--json"], root)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {k: out[k] for k in ("sweep", "runs", "points", "already_imported")} == {
        "sweep": "chin", "runs": 0, "points": 245, "already_imported": False}
    a = json.loads(invoke(runner, ["fit", "chin", "--bootstrap", "0", "--json"], root).stdout)
    b = json.loads(invoke(runner, ["fit", "--data", str(csv), "--map", MAP, "--bootstrap", "0",
                               "--json"], root).stdout)
    assert a["n_points"] == b["n_points"] == 245
    for k in ("E", "alpha", "beta"):
        assert abs(a["params"][k] - b["params"][k]) < 1e-6


def test_import_bad_inputs(runner, root, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("params,tokens,loss\n1e6,1e9,abc\n")
    for args in (["import", "x", str(bad)], ["import", "x"],
                 ["import", "x", str(tmp_path / "missing.csv")],
                 ["import", "x", "--wandb", str(tmp_path / "nowhere")]):
        r = invoke(runner, args, root)
        assert r.exit_code == 2 and r.stderr.startswith("Error:"), r.output
        assert "Traceback" not in r.output


def test_export_csv_and_parquet(runner, root, shared_data, tmp_path):
    csv = shared_data / "chinchilla_hoffmann2022_epoch.csv"
    invoke(runner, ["plan", "p"], root)
    invoke(runner, ["import", "p", str(csv), "--map", MAP], root)
    for fmt in ("csv", "parquet"):
        out = tmp_path / fmt
        r = invoke(runner, ["export", "p", "--format", fmt, "--out", str(out), "--json"], root)
        files = json.loads(r.stdout)["files"]
        assert [f.split("/")[-1] for f in files] == [f"runs.{fmt}", f"curves.{fmt}",
                                                     f"finals.{fmt}", f"imported.{fmt}"]
        runs = pd.read_csv(files[0]) if fmt == "csv" else pd.read_parquet(files[0])
        assert len(runs) == 12 and set(runs.state) == {"planned"}
        imp = pd.read_csv(files[3]) if fmt == "csv" else pd.read_parquet(files[3])
        assert len(imp) == 245 and imp.line.tolist() == list(range(2, 247))
        assert set(imp.params_convention) == {"as-given"} and not list(out.glob(".*tmp*"))
    with Store(root) as st:
        assert len(st.external_df(["p"])) == 245


@pytest.mark.slow
def test_wandb_round_trip_of_an_interrupted_and_resumed_run(runner, root, tmp_path_factory):
    """A real worker logs to offline W&B, is stopped (SIGTERM, as `sweep cancel` or a scheduler
    does) mid-run and resumed from its checkpoint: its two attempts share one W&B id, and
    importing them gives the store's final loss and curve, step for step."""
    cfg = config.load(["model.widths=[32]", "model.depths=[1]", "model.seq_len=32",
                       "train.batch_size=8", "budget.tokens=[4e4]", "train.eval_tokens=8192",
                       "train.log_every=10", "train.checkpoint_every=20"])
    (run,) = plan("wb", cfg)
    with Store(root) as st:
        st.put_plan("wb", [], {}, [run])
    run_dir = root / "wb" / run.run_id
    write_spec(run_dir, run, root, threads=1)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "SWEEP_CACHE": str(tmp_path_factory.getbasetemp() / "cache")}
    cmd = [sys.executable, "-m", "sweep.train.worker", str(run_dir)]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while (checkpoint_step(run_dir / "ckpt") or 0) < 40:  # well into the run, not done
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 130, proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    files = sorted((run_dir / "wandb").rglob("run-*.wandb"))
    assert len(files) == 2 and {f.name for f in files} == {f"run-{run.run_id}.wandb"}
    parts = [read_offline_run(f) for f in files]
    assert sorted(p.config["attempt"] for p in parts) == [1, 2] and all(p.history for p in parts)
    (merged,) = read_offline_runs(run_dir)
    assert merged.attempts == 2 and merged.summary["final_loss"] > 0
    r = invoke(runner, ["import", "copy", "--wandb", str(run_dir), "--json"], root)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["runs"] == 1
    with Store(root) as st:
        rec = st.runs("wb")[0]
        f = st.finals_df(["wb", "copy"])
        c = st.curves_df(["wb", "copy"])
    assert rec.attempts == 2 and rec.state == "completed"
    assert f.final_loss.tolist()[0] == f.final_loss.tolist()[1]
    assert f.epochs.tolist()[0] == f.epochs.tolist()[1] > 0
    m = st_metrics(root)
    assert len(m) == 2 and m.value.nunique() == 1 and set(m.name) == {"heldout_top1_acc"}
    a, b = c[c.sweep == "wb"], c[c.sweep == "copy"]
    assert len(a) > 10 and a.step.tolist() == b.step.tolist()  # no step lost or doubled
    for col in ("tokens", "train_loss", "eval_loss", "lr", "end_of_schedule", "eval_bpb"):
        pd.testing.assert_series_equal(a[col].reset_index(drop=True),
                                       b[col].reset_index(drop=True), check_exact=False,
                                       rtol=1e-9)


def st_metrics(root):
    with Store(root) as st:
        return st.metrics_df(["wb", "copy"])


def test_merge_attempts_later_attempt_wins_from_its_first_step():
    def part(attempt, steps, summary, t=0.0):
        return OfflineRun(f"a{attempt}", "rid", config={"attempt": attempt}, start_time=t,
                          history=[{"_step": s, "x": 10 * attempt + s} for s in steps],
                          summary=summary)

    # given out of order; attempt 2 resumed at step 3 (its steps 3.. replace attempt 1's)
    got = merge_attempts([part(2, [3, 4, 5], {"final_loss": 2.0}, 5.0),
                          part(1, [0, 1, 2, 3, 4, 6], {"error": "killed"}, 1.0)])
    assert [(h["_step"], h["x"]) for h in got.history] == [(0, 10), (1, 11), (2, 12), (3, 23),
                                                            (4, 24), (5, 25)]
    assert got.summary == {"final_loss": 2.0} and got.attempts == 2 and got.start_time == 1.0
    # a fresh restart (from step 0) replaces everything before it
    got = merge_attempts([part(1, [0, 1, 2], {}), part(2, [0, 1], {"final_loss": 1.0})])
    assert [h["x"] for h in got.history] == [20, 21]


LEGACY_ATTEMPTS = r"""
import sys, time, wandb
for attempt, steps in ((1, range(0, 6)), (2, range(3, 9))):  # attempt 2 resumed at step 3
    r = wandb.init(project="sweep", id=f"w8-d1-x-abc123-a{attempt}", mode="offline",
                   dir=sys.argv[1], config={"spec": {"run_id": "w8-d1-x-abc123"}})
    for s in steps:
        r.log({"train_loss": 10.0 * attempt + s}, step=s)
    if attempt == 2:
        r.summary["final_loss"] = 1.5
    r.finish()
    time.sleep(1.1)  # distinct start times: the only order older runs carry
"""


def test_read_offline_runs_merges_legacy_per_attempt_ids(tmp_path):
    """Real offline runs as older sweep versions wrote them (one W&B id per attempt, no
    ``attempt`` in the config) merge by the sweep run id in their spec, in start-time order."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-c", LEGACY_ATTEMPTS, str(tmp_path)], env=env, check=True,
                   timeout=120, capture_output=True)
    assert len(list(tmp_path.rglob("run-*.wandb"))) == 2
    (run,) = read_offline_runs(tmp_path)
    assert run.attempts == 2 and run.summary["final_loss"] == 1.5
    assert [(h["_step"], h["train_loss"]) for h in run.history] == [
        (0, 10.0), (1, 11.0), (2, 12.0), (3, 23.0), (4, 24.0), (5, 25.0), (6, 26.0), (7, 27.0),
        (8, 28.0)]
