"""The external trainer (train.command): end to end through `sweep launch` with the example
script, and its failure modes: non-zero exit, bad metrics, wrong budget, stop → SIGTERM."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import pytest

from sweep.errors import TrainError, TrainInterrupted
from sweep.records import CurvePoint, RunState
from sweep.store import Store
from sweep.train import external

from conftest import invoke  # tests/ is on sys.path (pytest rootdir-less import)
from test_loop import make_run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "external_trainer.py"
PY = shlex.quote(sys.executable)


def script(tmp_path: Path, body: str) -> str:
    """A command line running ``body`` as a Python script (it may read the SWEEP_* vars)."""
    path = tmp_path / "trainer.py"
    path.write_text("import json, os, signal, sys, time\n" + body)
    return f"{PY} {shlex.quote(str(path))}"


def run_with(cmd: str, **kw):
    r = make_run(steps=4, **kw)
    return dataclasses.replace(r, train=dataclasses.replace(r.train, command=cmd))


LINES = """
m = open(os.environ["SWEEP_METRICS"], "a")
cfg = json.load(open(os.environ["SWEEP_RUN_CONFIG"]))
for s in range(cfg["steps"]):
    last = s == cfg["steps"] - 1
    m.write(json.dumps({"step": s, "tokens": (s + 1) * cfg["batch_tokens"] * TOKSCALE,
                        "loss": 3.0 - s / 10, "eval_loss": 2.5 if last else None}) + "\\n")
m.close()
"""


def test_metrics_become_points_and_the_last_line_is_final(tmp_path: Path) -> None:
    run = run_with(script(tmp_path, "TOKSCALE = 1\n" + LINES))
    points: list[CurvePoint] = []
    res = external.train(run, points.append, work_dir=tmp_path / "w")
    assert [p.step for p in points] == [0, 1, 2, 3]
    assert [p.end_of_schedule for p in points] == [False, False, False, True]
    assert points[-1].eval_loss == res.final_loss == 2.5 and res.tokens == run.tokens
    assert points[1].flops == 6.0 * run.params_nonembed * 2 * run.batch_tokens
    cfg = json.loads((tmp_path / "w" / "run_config.json").read_text())
    assert cfg["tokens"] == run.tokens and cfg["train"]["command"] == run.train.command


def test_wrong_budget_and_missing_final_loss_fail(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"ended at 8192 tokens, the run's budget is 4096"):
        external.train(run_with(script(tmp_path, "TOKSCALE = 2\n" + LINES)), lambda p: None,
                       work_dir=tmp_path / "a")
    cmd = script(tmp_path, 'open(os.environ["SWEEP_METRICS"], "a").write(\'{"step": 0, '
                           '"tokens": 4096, "loss": 3.0}\\n\')\n')
    with pytest.raises(TrainError, match="has no eval_loss"):
        external.train(run_with(cmd), lambda p: None, work_dir=tmp_path / "b")
    cmd = script(tmp_path, 'open(os.environ["SWEEP_METRICS"], "a").write("step 0\\n")\n')
    with pytest.raises(TrainError, match=r"metrics.jsonl:1: not a JSON object"):
        external.train(run_with(cmd), lambda p: None, work_dir=tmp_path / "c")


def test_nonzero_exit_fails_with_the_last_stderr_line(tmp_path: Path) -> None:
    cmd = script(tmp_path, "print('loading', file=sys.stderr)\n"
                           "print('CUDA out of memory', file=sys.stderr)\nsys.exit(3)\n")
    why = r"^CUDA out of memory \(train.command exited with code 3\)$"
    with pytest.raises(TrainError, match=why):
        external.train(run_with(cmd), lambda p: None, work_dir=tmp_path / "w")
    with pytest.raises(TrainError, match="cannot be started"):
        external.train(run_with("/nonexistent/trainer --x"), lambda p: None, work_dir=tmp_path)


def test_stop_forwards_sigterm(tmp_path: Path) -> None:
    flag = tmp_path / "got-sigterm"
    cmd = script(tmp_path, f"""
def on_term(*_):
    open({str(flag)!r}, "w").write("yes")
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
open(os.environ["SWEEP_METRICS"], "a").write('{{"step": 0, "tokens": 1024, "loss": 3.0}}\\n')
time.sleep(60)
""")
    t0 = time.monotonic()
    points: list[CurvePoint] = []
    with pytest.raises(TrainInterrupted, match="SIGTERM"):
        external.train(run_with(cmd), points.append, work_dir=tmp_path / "w",
                       should_stop=lambda: time.monotonic() - t0 > 1.5)
    assert flag.read_text() == "yes" and time.monotonic() - t0 < 30
    assert [p.step for p in points] == [0] and not points[0].end_of_schedule


@pytest.mark.slow
def test_example_trainer_through_sweep_launch(runner, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example: plan with train.command, `sweep launch`, both runs completed with
    the script's final held-out loss as their end-of-schedule point."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "runs"
    cmd = f"{sys.executable} {EXAMPLE}"
    r = invoke(runner, ["plan", "ext", "model.widths=[32]", "budget.tokens=[2e4,4e4]",
                        f"train.command='{cmd}'"], root)
    assert r.exit_code == 0, r.output
    r = invoke(runner, ["launch", "ext", "--no-progress"], root)
    assert r.exit_code == 0, r.output
    with Store(root) as st:
        recs = st.runs("ext")
        curves = st.curves_df(["ext"])
    assert [x.state for x in recs] == [RunState.COMPLETED] * 2
    for rec in recs:
        c = curves[curves["run_id"] == rec.run.run_id]
        end = c[c["end_of_schedule"] == 1]
        assert len(end) == 1 and float(end["eval_loss"].iloc[0]) == rec.final_loss
        assert int(end["tokens"].iloc[0]) == rec.run.tokens
        assert 1.0 < rec.final_loss < 5.6  # learned something, below uniform ln 256 = 5.55
        lines = (root / "ext" / rec.run.run_id / "metrics.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["eval_loss"] == rec.final_loss
    big, small = sorted(recs, key=lambda x: -x.run.tokens)
    assert big.final_loss < small.final_loss  # more tokens, lower loss


def test_empty_command_is_a_config_error(runner, tmp_path: Path) -> None:
    r = invoke(runner, ["plan", "ext", "train.command=''"], tmp_path / "runs")
    assert r.exit_code == 2 and "train.command is empty" in r.output
    assert "Traceback" not in r.output
    r = invoke(runner, ["plan", "ext", "train.command='python x.py'", "train.schedule=wsd"],
               tmp_path / "runs")
    assert r.exit_code == 2 and "with train.command use train.schedule=cosine" in r.output
