"""Worker entry point: ``python -m sweep.train.worker RUN_DIR``.

Reads ``RUN_DIR/run.json`` ({"run": PlannedRun, "root": store root, "threads": int}), trains the
run and writes its state, heartbeat and curve to the store while it trains. The same contract
serves the local launcher and Slurm array tasks; no pickles.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from sweep.errors import TrainError
from sweep.records import CurvePoint, PlannedRun, RunState
from sweep.store import Store

log = logging.getLogger("sweep.worker")
FLUSH_SECONDS = 1.0


def write_spec(run_dir: Path, run: PlannedRun, root: Path, threads: int | None) -> Path:
    """Write ``run.json`` atomically; returns its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"run": run.to_dict(), "root": str(root), "threads": threads},
                              indent=1))
    os.replace(tmp, path)
    return path


def _watch_parent(stop: threading.Event) -> None:
    """Stop when the launching process dies (we get re-parented), so no orphan trains on."""
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


def run_worker(run_dir: Path) -> int:
    spec = json.loads((run_dir / "run.json").read_text())
    run = PlannedRun.from_dict(spec["run"])
    threads = spec.get("threads")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if os.environ.get("SWEEP_WATCH_PARENT") == "1":
        threading.Thread(target=_watch_parent, args=(stop,), daemon=True).start()

    from sweep.train.loop import train

    with Store(spec["root"]) as store:
        job = os.environ.get("SLURM_JOB_ID") or f"local:{os.getpid()}"
        store.start_attempt(run.run_id, job)
        buf: list[CurvePoint] = []
        last = [time.monotonic()]

        def on_point(p: CurvePoint) -> None:
            buf.append(p)
            if p.end_of_schedule or time.monotonic() - last[0] > FLUSH_SECONDS:
                store.add_points(buf)
                buf.clear()
                last[0] = time.monotonic()

        try:
            result = train(run, on_point, threads=threads, should_stop=stop.is_set)
        except (TrainError, Exception) as exc:  # noqa: BLE001 - every failure lands in the store
            store.add_points(buf)
            if stop.is_set():
                store.fail(run.run_id, "interrupted", RunState.CANCELLED)
                return 130
            reason = str(exc) if isinstance(exc, TrainError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, TrainError):
                traceback.print_exc()
            store.fail(run.run_id, reason)
            return 1
        store.add_points(buf)
        store.finish(result)
    log.info("%s: final loss %.4f nats/token", run.run_id, result.final_loss)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sweep.train.worker RUN_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run_worker(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
