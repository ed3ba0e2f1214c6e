"""An external trainer: ``train.command="python my_train.py"`` trains a run with the user's code.

The contract (README, "Bring your own trainer"). sweep runs the command (``shlex.split``, no
shell) in its own process group with these environment variables:

``SWEEP_RUN_CONFIG``
    a JSON file: the PlannedRun (shape, ``tokens``, ``steps``, ``batch_size``, ``seq_len``,
    ``lr``, ``seed``, ``train``, ``data``) plus ``metrics_path`` and ``checkpoint_dir``.
``SWEEP_METRICS``
    a JSONL file the command appends one object per line to (flush each line):
    ``{"step": int, "tokens": int, "loss": float|null, "eval_loss": float|null}`` (optional
    ``lr``, ``eval_bpb``); ``step`` is the 0-based index of the optimizer step just done,
    ``tokens`` the tokens trained so far, losses in nats/token. sweep tails it into the store.
``SWEEP_CHECKPOINT_DIR``
    the run's checkpoint directory (``RUN_DIR/ckpt``): the same directory on every attempt of
    the run (requeue, relaunch, `sweep retry`). The command resumes from its newest checkpoint
    there. Name checkpoint files ``step_{step:06d}<suffix>`` (e.g. ``step_000119.pt``), ``step``
    being the 0-based index of the last optimizer step they include (write the metrics lines up
    to that step first), and write them atomically (temporary name, then rename; names ending in
    ``.tmp`` are ignored). sweep reads only the names, never the files.
``SWEEP_THREADS``, ``OMP_NUM_THREADS``
    the CPU threads the command may use (when the launcher sets a number).

Exit codes: ``0`` completes the run: its last metrics line's ``eval_loss`` is the final
(end-of-schedule) held-out loss and its ``tokens`` must be the run's budget (±1 %).
``EXIT_RESUMABLE`` = 75 (``EX_TEMPFAIL``) means "checkpoint saved, resume me": after a stop
request, or on the command's own account (e.g. it caught the cluster's SIGTERM itself); under
Slurm the worker requeues the task, locally the run is left resumable (cancelled, with its
checkpoint; `sweep launch` again resumes it). Any other code fails the run with the command's
last stderr line as the reason.

Signals: a preemption warning (Slurm's ``--signal=B:USR1@N`` or ``scancel --signal=USR1``) is
forwarded to the command's process group as SIGUSR1, a stop request (SIGTERM, Ctrl-C, `sweep
cancel`, the launcher going away) as SIGTERM. On either the command should save a checkpoint at
its next step boundary and exit 75; SIGKILL follows after ``KILL_AFTER`` s. If the worker
itself dies, the command gets SIGKILL (Linux parent-death signal), so no orphan trains on.

History without duplicates: on a relaunch with a checkpoint ``step_K*`` the worker keeps the
metrics lines with ``step <= K`` (the store keeps the same points) and drops the rest (steps
trained after the last checkpoint by an attempt that was killed); the command appends from step
K+1. Should the command restart from an earlier step S anyway, the kept lines from S on are
replaced by the new attempt's at its end: the file never holds a step twice.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sweep.errors import TrainError, TrainInterrupted
from sweep.fsutil import atomic_write_bytes, atomic_write_json
from sweep.records import CurvePoint, PlannedRun, TrainResult
from sweep.shapes import flops_6nd

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
KILL_AFTER = 30.0  # seconds between the forwarded signal and a SIGKILL
TOKENS_TOLERANCE = 0.01  # the last line's tokens may miss the budget by this fraction
EXIT_RESUMABLE = 75  # EX_TEMPFAIL (sysexits.h): the command saved a checkpoint, resume it
_STEP_RE = re.compile(r"step_(\d+)(?!\d)")


class Resumable(TrainInterrupted):
    """The command exited ``EXIT_RESUMABLE``: it saved a checkpoint and can be resumed."""

    resumable = True


def checkpoint_step(ckpt_dir: Path) -> int | None:
    """The step of the newest checkpoint in ``ckpt_dir`` (files ``step_{step:06d}*``), or None.
    Partial writes (``*.tmp``) are ignored."""
    if not ckpt_dir.is_dir():
        return None
    steps = [int(m.group(1)) for p in ckpt_dir.iterdir()
             if not p.name.endswith(".tmp") and (m := _STEP_RE.match(p.name))]
    return max(steps, default=None)


class _Tail:
    """Reads complete new lines of the metrics file and turns them into curve points."""

    def __init__(self, path: Path, run: PlannedRun, pos: int = 0, lineno: int = 0) -> None:
        self.path, self.run = path, run
        self.pos, self.lineno, self.rest = pos, lineno, b""

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
        num = (lambda v: None if v is None else float(v))  # noqa: E731
        return CurvePoint(self.run.run_id, d["step"], d["tokens"],
                          flops_6nd(self.run.params_nonembed, d["tokens"]),
                          num(d.get("loss")), num(d.get("eval_loss")),
                          float(d["lr"]) if d.get("lr") is not None else math.nan,
                          end_of_schedule=final, eval_bpb=num(d.get("eval_bpb")))


def _step_of(line: bytes) -> int | None:
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _keep_history(metrics: Path, resume: int | None) -> tuple[list[bytes], int]:
    """Before an attempt: the metrics file keeps the complete lines with ``step <= resume``
    (none without a checkpoint). Returns those lines and the last kept step (-1: none)."""
    kept: list[bytes] = []
    if resume is not None and metrics.exists():
        for raw in metrics.read_bytes().split(b"\n")[:-1]:  # the last piece is partial or b""
            step = _step_of(raw)
            if step is not None and step <= resume:
                kept.append(raw + b"\n")
    atomic_write_bytes(metrics, b"".join(kept))
    return kept, max((_step_of(k) for k in kept), default=-1)


def _drop_replaced(metrics: Path, history: list[bytes], first_new: int) -> None:
    """After an attempt that restarted at ``first_new`` ≤ a kept step: the kept lines from that
    step on go, so the file holds each step once (the newest attempt's)."""
    new = metrics.read_bytes()[sum(len(h) for h in history):]
    kept = [h for h in history if (_step_of(h) or 0) < first_new]
    atomic_write_bytes(metrics, b"".join(kept) + new)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function giving the child SIGKILL when this thread's process dies (Linux
    prctl PR_SET_PDEATHSIG), or None elsewhere."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _reason(rc: int, last_err: str) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"train.command was killed by {name}"
    return f"{last_err or 'no message on stderr'} (train.command exited with code {rc})"


def train(run: PlannedRun, log: Callable[[CurvePoint], None], *, threads: int | None = None,
          should_stop: Callable[[], bool] | None = None,
          work_dir: str | os.PathLike[str] | None = None,
          checkpoint_dir: str | os.PathLike[str] | None = None,
          stop_signal: Callable[[], int] | None = None) -> TrainResult:
    """Run ``run.train.command`` as the run's trainer (module docstring) and return its result;
    every new metrics line reaches ``log`` as a curve point, the last one (on exit 0) flagged
    ``end_of_schedule``. ``work_dir`` holds run_config.json and metrics.jsonl (default
    ``./RUN_ID``), ``checkpoint_dir`` is ``$SWEEP_CHECKPOINT_DIR`` (default ``work_dir/ckpt``).
    When ``should_stop()`` turns true the command's process group gets ``stop_signal()``
    (default SIGTERM). Raises TrainError (failed), Resumable (exit 75) or TrainInterrupted."""
    t0 = time.perf_counter()
    argv = shlex.split(run.train.command or "")
    if not argv:
        raise TrainError(f"run {run.run_id} has no train.command")
    work = Path(work_dir) if work_dir is not None else Path.cwd() / run.run_id
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else work / "ckpt"
    work.mkdir(parents=True, exist_ok=True)
    ckpt.mkdir(parents=True, exist_ok=True)
    cfg, metrics = work / "run_config.json", work / "metrics.jsonl"
    atomic_write_json(cfg, {**run.to_dict(), "metrics_path": str(metrics),
                            "checkpoint_dir": str(ckpt)})
    resume = checkpoint_step(ckpt)
    history, last_kept = _keep_history(metrics, resume)
    tokens_before = json.loads(history[-1])["tokens"] if history else 0
    env = {**os.environ, "SWEEP_RUN_CONFIG": str(cfg), "SWEEP_METRICS": str(metrics),
           "SWEEP_CHECKPOINT_DIR": str(ckpt)}
    if threads:
        env.update(SWEEP_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                process_group=0, preexec_fn=_die_with_parent())
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

    def signal_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    tail = _Tail(metrics, run, pos=sum(len(h) for h in history), lineno=len(history))
    for h in history:  # again: the store may miss the last ones if the worker was killed
        log(tail.point(tail._parse(h.rstrip(b"\n"))))
    held, first_new, stopped_at = None, None, None
    try:
        while True:
            rc = proc.poll()
            for d in tail.read(final=rc == 0):  # the newest is held: it may be final
                first_new = d["step"] if first_new is None else first_new
                if held is not None:
                    log(tail.point(held))
                held = d
            if rc is not None:
                break
            if stopped_at is None and should_stop is not None and should_stop():
                signal_group(stop_signal() if stop_signal is not None else signal.SIGTERM)
                stopped_at = time.monotonic()
            elif stopped_at is not None and time.monotonic() - stopped_at > KILL_AFTER:
                signal_group(signal.SIGKILL)
            time.sleep(POLL_SECONDS)
    except BaseException:
        if proc.poll() is None:
            signal_group(signal.SIGKILL)
            proc.wait()
        raise
    finally:
        reader.join(timeout=5)
    if first_new is not None and first_new <= last_kept:
        logger.warning("%s: train.command restarted at step %d, before its checkpoint's step "
                       "%d; the older lines from step %d on are replaced", run.run_id, first_new,
                       last_kept, first_new)
        _drop_replaced(metrics, history, first_new)
    wall = time.perf_counter() - t0
    if rc != 0 and held is not None:
        log(tail.point(held))
    if rc == EXIT_RESUMABLE:
        ck = checkpoint_step(ckpt)
        raise Resumable(f"train.command saved a checkpoint (step {ck}) and stopped "
                        f"(exit code {rc})")
    if rc != 0 and (stopped_at is not None or (should_stop is not None and should_stop())):
        sig = signal.Signals(stop_signal() if stop_signal is not None else signal.SIGTERM)
        raise TrainInterrupted(f"stopped run {run.run_id}: train.command got {sig.name} "
                               f"(exit code {rc})")
    if rc != 0:
        raise TrainError(_reason(rc, last_err[0]))
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
                       wall, max(0, held["tokens"] - tokens_before) / wall)
