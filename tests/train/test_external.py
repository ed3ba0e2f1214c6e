"""The external trainer (train.command): end to end through `sweep launch` with the example
script, and its failure modes: non-zero exit, bad metrics, wrong budget, stop → SIGTERM; the
resume contract ($SWEEP_CHECKPOINT_DIR, exit 75, metrics history without duplicate steps) with
examples/nanogpt_trainer.py after a real SIGUSR1 and a real SIGKILL (the Slurm requeue is in
tests/launch/test_slurm_external.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
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
NANOGPT = EXAMPLE.with_name("nanogpt_trainer.py")
# 300 steps of a 1-layer width-32 GPT (seq 32 × 8), a checkpoint every 50 steps
GPT = ["model.widths=[32]", "model.depths=[1]", "model.seq_len=32", "train.batch_size=8",
       "train.eval_tokens=8192", "train.log_every=10", "train.checkpoint_every=50",
       "budget.tokens=[76800]", f"train.command='{sys.executable} {NANOGPT}'"]
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


RESTARTS = """
cfg = json.load(open(os.environ["SWEEP_RUN_CONFIG"]))
ck = os.environ["SWEEP_CHECKPOINT_DIR"]
m = open(os.environ["SWEEP_METRICS"], "a")
def line(s, last=False):
    m.write(json.dumps({"step": s, "tokens": (s + 1) * cfg["batch_tokens"], "loss": ATTEMPT + s,
                        "eval_loss": 1.5 if last else None}) + "\\n")
    m.flush()
if not os.listdir(ck):  # attempt 1: steps 0-5, a checkpoint after step 3, 6-7 lost
    for s in range(6):
        line(s)
        if s == 3:
            open(os.path.join(ck, "step_000003.pt"), "w").write("x")
    m.write('{"step": 6, "tok')  # killed mid-line
    sys.exit(75)
for s in range(START, cfg["steps"]):  # attempt 2: the file keeps steps 0-3 at its start
    line(s, s == cfg["steps"] - 1)
"""


@pytest.mark.parametrize("start,loss2", [(4, [0, 1, 2, 3]), (2, [0, 1])])
def test_history_kept_to_the_checkpoint_without_duplicates(tmp_path: Path, start, loss2) -> None:
    """Exit 75 is Resumable; the next attempt finds $SWEEP_CHECKPOINT_DIR as it was, the metrics
    file cut to the checkpoint's step (the lost steps and the partial line gone), and ends with
    each step once: the newest attempt's where it restarted before the checkpoint."""
    def attempt(n: int) -> object:
        cmd = script(tmp_path, f"ATTEMPT, START = {n}, {start}\n" + RESTARTS)
        r = make_run(steps=8)
        return dataclasses.replace(r, train=dataclasses.replace(r.train, command=cmd))

    work = tmp_path / "w"
    with pytest.raises(external.Resumable, match=r"checkpoint \(step 3\).*exit code 75"):
        external.train(attempt(100), lambda p: None, work_dir=work)
    points: list[CurvePoint] = []
    res = external.train(attempt(200), points.append, work_dir=work)
    lines = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(8)) and res.final_loss == 1.5
    assert [x["loss"] for x in lines] == [100 + s if s in loss2 else 200 + s for s in range(8)]
    assert [p.step for p in points][:4] == [0, 1, 2, 3]  # the kept history, replayed to the store
    assert points[-1].end_of_schedule and points[-1].step == 7


def _plan_gpt(root: Path, name: str):
    from sweep import api
    from sweep.train.worker import write_spec

    api.plan_sweep(name, GPT, root)
    with Store(root) as st:
        run = st.runs(name)[0].run
    run_dir = root / name / run.run_id
    write_spec(run_dir, run, root, 1)
    return run, run_dir


def _worker(run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "sweep.train.worker", str(run_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(run_dir / "worker.log", "ab"))


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := pred():
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
def test_nanogpt_resumes_after_usr1_and_sigkill_to_the_same_loss(tmp_path: Path) -> None:
    """examples/nanogpt_trainer.py through the worker: SIGUSR1 to the worker is forwarded, the
    trainer checkpoints and exits 75 (run cancelled, resumable); relaunched, it resumes from
    that checkpoint and is SIGKILLed with its worker past the next periodic checkpoint (the
    trainer dies with its worker); a third attempt finishes. Final loss equal to an
    uninterrupted run's within 1e-6; the metrics file and the store hold each step once."""
    from sweep.train.worker import checkpoint_step

    root = tmp_path / "runs"
    ref_run, ref_dir = _plan_gpt(root, "ref")
    ref = _worker(ref_dir)
    run, run_dir = _plan_gpt(root, "cut")
    ckpt = run_dir / "ckpt"

    w = _worker(run_dir)
    _wait(lambda: (run_dir / "metrics.jsonl").exists()
          and len((run_dir / "metrics.jsonl").read_text().splitlines()) >= 6, 120, "step 60")
    w.send_signal(signal.SIGUSR1)
    assert w.wait(60) == 130  # not under Slurm: left resumable
    first = checkpoint_step(ckpt)
    assert first is not None and 59 <= first < 299
    with Store(root) as st:
        rec = st.runs("cut")[0]
    assert rec.state == RunState.CANCELLED and "launch again to resume" in rec.error

    w = _worker(run_dir)
    trainer = _wait(lambda: _children(w.pid), 30, "the trainer to start")[0]
    _wait(lambda: (checkpoint_step(ckpt) or 0) >= (first // 50 + 1) * 50 + 49, 120,
          "a periodic checkpoint")
    second = checkpoint_step(ckpt)
    w.send_signal(signal.SIGKILL)
    w.wait(10)
    _wait(lambda: not Path(f"/proc/{trainer}").exists()
          or "Z" in Path(f"/proc/{trainer}/stat").read_text().split(")")[1][:3], 10,
          "the trainer to die with its worker")
    assert second < 299

    w = _worker(run_dir)
    assert w.wait(300) == 0 and ref.wait(300) == 0
    with Store(root) as st:
        got, want = st.runs("cut")[0], st.runs("ref")[0]
        a, b = st.curves_df(["cut"]), st.curves_df(["ref"])
    assert got.state == RunState.COMPLETED and got.attempts == 3
    print(f"\nnanoGPT USR1 + SIGKILL + resume: {got.final_loss!r} vs uninterrupted "
          f"{want.final_loss!r} nats/token (checkpoints at steps {first}, {second})")
    assert abs(got.final_loss - want.final_loss) < 1e-6, (got.final_loss, want.final_loss)
    assert a.step.tolist() == b.step.tolist() == list(range(9, 300, 10))
    assert a.train_loss.tolist() == pytest.approx(b.train_loss.tolist(), abs=1e-6)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(9, 300, 10))
    log = (run_dir / "worker.log").read_text()
    assert f"resuming after step {first}" in log and f"resuming after step {second}" in log
    assert "got SIGUSR1: checkpoint after step" in log
