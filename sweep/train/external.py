"""An external trainer: ``train.command="python my_train.py"`` trains a run with the user's code.

The contract (README, "Bring your own trainer"): sweep writes the run's config (PlannedRun as
JSON: shape, ``tokens``, ``steps``, ``batch_size``, ``seq_len``, ``lr``, ``seed``, ``train``,
``data``) to a file named by ``$SWEEP_RUN_CONFIG`` and runs the command (``shlex.split``, no
shell) with ``$SWEEP_METRICS`` naming a JSONL file the command appends one object per line to:
``{"step": int, "tokens": int, "loss": float|null, "eval_loss": float|null}`` (optional ``lr``,
``eval_bpb``); losses in nats/token, ``tokens`` trained so far. sweep tails the file into the
store while the command runs. Exit code 0 completes the run: its last line's ``eval_loss`` is the
final (end-of-schedule) loss and its ``tokens`` must be the run's budget. A non-zero exit fails
the run with the command's last stderr line as the reason. A stop request (SIGTERM, Ctrl-C, the
launcher going away) is forwarded as SIGTERM (SIGKILL after ``KILL_AFTER`` s). An external
trainer has no checkpoint contract: a relaunched run starts again from scratch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sweep.errors import TrainError, TrainInterrupted
from sweep.records import CurvePoint, PlannedRun, TrainResult

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
KILL_AFTER = 30.0  # seconds between the forwarded SIGTERM and a SIGKILL
TOKENS_TOLERANCE = 0.01  # the last line's tokens may miss the budget by this fraction


class _Tail:
    """Reads complete new lines of the metrics file and turns them into curve points."""

    def __init__(self, path: Path, run: PlannedRun) -> None:
        self.path, self.run = path, run
        self.pos, self.lineno, self.rest = 0, 0, b""

    def read(self, final: bool = False) -> list[dict]:
        """Parsed new complete lines; ``final``: also a last line without its newline."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.pos)
                data = fh.read()
        except FileNotFoundError:
            return []
        self.pos += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        if final:
            lines, self.rest = [*lines, self.rest], b""
        out = []
        for raw in lines:
            self.lineno += 1
            if raw.strip():
                out.append(self._parse(raw))
        return out

    def _parse(self, raw: bytes) -> dict:
        where = f"{self.path}:{self.lineno}"
        try:
            d = json.loads(raw)
        except ValueError:
            raise TrainError(f"{where}: not a JSON object: {raw[:80]!r}") from None
        if not isinstance(d, dict):
            raise TrainError(f"{where}: not a JSON object: {raw[:80]!r}")
        for key in ("step", "tokens"):
            if not isinstance(d.get(key), int) or isinstance(d[key], bool) or d[key] < 0:
                raise TrainError(f"{where}: '{key}' must be a non-negative integer, got "
                                 f"{d.get(key)!r}")
        for key in ("loss", "eval_loss", "lr", "eval_bpb"):
            v = d.get(key)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                raise TrainError(f"{where}: '{key}' must be a number or null, got {v!r}")
        return d

    def point(self, d: dict, final: bool = False) -> CurvePoint:
        n = self.run.params_nonembed
        num = (lambda v: None if v is None else float(v))  # noqa: E731
        return CurvePoint(self.run.run_id, d["step"], d["tokens"], 6.0 * n * d["tokens"],
                          num(d.get("loss")), num(d.get("eval_loss")),
                          float(d["lr"]) if d.get("lr") is not None else math.nan,
                          end_of_schedule=final, eval_bpb=num(d.get("eval_bpb")))


def _write_config(run: PlannedRun, path: Path, metrics: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**run.to_dict(), "metrics_path": str(metrics)}, indent=1))
    os.replace(tmp, path)


def train(run: PlannedRun, log: Callable[[CurvePoint], None], *, threads: int | None = None,
          should_stop: Callable[[], bool] | None = None,
          work_dir: str | os.PathLike[str] | None = None) -> TrainResult:
    """Run ``run.train.command`` as the run's trainer (module docstring) and return its result;
    every metrics line reaches ``log`` as a curve point, the last one (on exit 0) flagged
    ``end_of_schedule``. Raises TrainError (failed) or TrainInterrupted (stopped)."""
    t0 = time.perf_counter()
    argv = shlex.split(run.train.command or "")
    if not argv:
        raise TrainError(f"run {run.run_id} has no train.command")
    work = Path(work_dir) if work_dir is not None else Path.cwd() / run.run_id
    work.mkdir(parents=True, exist_ok=True)
    cfg, metrics = work / "run_config.json", work / "metrics.jsonl"
    _write_config(run, cfg, metrics)
    metrics.write_bytes(b"")  # a fresh attempt: the previous attempt's lines are gone
    env = {**os.environ, "SWEEP_RUN_CONFIG": str(cfg), "SWEEP_METRICS": str(metrics)}
    if threads:
        env.update(SWEEP_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise TrainError(f"train.command {argv[0]!r} cannot be started: "
                         f"{exc.strerror or exc}") from None
    last_err = [""]

    def pump() -> None:  # the command's stderr goes on to ours; its last line is kept
        for line in iter(proc.stderr.readline, b""):
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
            text = line.decode(errors="replace").strip()
            if text:
                last_err[0] = text

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    tail, held, stopped_at = _Tail(metrics, run), None, None
    try:
        while True:
            rc = proc.poll()
            for d in tail.read(final=rc is not None):  # the newest is held: it may be final
                if held is not None:
                    log(tail.point(held))
                held = d
            if rc is not None:
                break
            if stopped_at is None and should_stop is not None and should_stop():
                proc.send_signal(signal.SIGTERM)
                stopped_at = time.monotonic()
            elif stopped_at is not None and time.monotonic() - stopped_at > KILL_AFTER:
                proc.kill()
            time.sleep(POLL_SECONDS)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        reader.join(timeout=5)
    wall = time.perf_counter() - t0
    if stopped_at is not None or (rc != 0 and should_stop is not None and should_stop()):
        if held is not None:
            log(tail.point(held))
        raise TrainInterrupted(f"stopped run {run.run_id}: the external trainer got SIGTERM "
                               f"(exit code {rc})")
    if rc != 0:
        if held is not None:
            log(tail.point(held))
        why = last_err[0] or "no message on stderr"
        raise TrainError(f"{why} (train.command exited with code {rc})")
    if held is None or held.get("eval_loss") is None:
        raise TrainError(f"train.command exited 0 but the last line of {metrics} has no "
                         "eval_loss (the final held-out loss)")
    if abs(held["tokens"] - run.tokens) > TOKENS_TOLERANCE * run.tokens:
        raise TrainError(f"train.command ended at {held['tokens']} tokens, the run's budget is "
                         f"{run.tokens} ({metrics}, last line)")
    final = tail.point(held, final=True)
    if not math.isfinite(final.eval_loss):
        raise TrainError(f"train.command's final eval_loss is {final.eval_loss}")
    log(final)
    train_loss = final.train_loss if final.train_loss is not None else math.nan
    return TrainResult(run.run_id, final.eval_loss, train_loss, held["tokens"], held["step"] + 1,
                       wall, held["tokens"] / wall)
