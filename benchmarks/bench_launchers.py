"""Concurrent local launchers share the cores: one launcher of one run alone vs two at once.

    python benchmarks/bench_launchers.py [--width 128] [--tokens 5e5] [--jobs 1] [--repeat 1]

Every launcher is a real ``sweep launch`` process of its own one-run sweep (width W, depth 2) in
its own root, timed from start to exit (process start, imports and the store included).
Scenarios, in this order, in one process:
- alone:  one launcher;
- shared: two launchers at once drawing from one slot directory (the machine-wide budget);
- split:  two launchers at once, each with its own slot directory: what happened before the
          budget was shared (each launcher splits all the cores among its own jobs).
``--jobs`` is passed to every launch: 1 asks for all the cores per run (cores // jobs threads),
the situation of issue 14; 2 (the default launcher.jobs) asks for half. Printed per scenario:
each launcher's wall seconds and its ratio to alone, the threads each run got (run.json), and
the throughput (runs per wall second of the scenario) relative to alone. The slot directories are
private to this script, so other users' launchers do not hold its slots; but the machine may be
shared (load average printed): compare ratios measured in one run, not absolute times. On a
machine loaded by other work the wall ratios say little about oversubscription (every process
gets a share of a contended machine, so more processes get more of it); the CPU seconds per run
(the launcher and its worker, from wait4) show whether threads collapsed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = [sys.executable, "-m", "sweep"]


def plan(root: Path, width: int, tokens: float, env: dict[str, str]) -> None:
    subprocess.run([*SWEEP, "plan", "b", f"model.widths=[{width}]", "model.depths=[2]",
                    f"budget.tokens=[{tokens:g}]", "--root", str(root)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def launch_all(roots: list[Path], slot_dirs: list[Path], jobs: int,
               env: dict[str, str]) -> list[tuple[float, int, float]]:
    """Start one launcher per root at once; (wall seconds, threads its run got, CPU seconds of
    the launcher and its worker) for each."""
    t0 = time.monotonic()
    procs = [subprocess.Popen([*SWEEP, "launch", "b", "--no-progress", "--jobs", str(jobs),
                               "--root", str(r)], env={**env, "SWEEP_SLOTS_DIR": str(s)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for r, s in zip(roots, slot_dirs)]
    walls, cpus, rcs = [0.0] * len(procs), [0.0] * len(procs), [0] * len(procs)
    by_pid = {p.pid: i for i, p in enumerate(procs)}
    while by_pid:  # wait4: the rusage of a launcher includes its reaped worker's
        pid, status, ru = os.wait4(-1, 0)
        if pid in by_pid:
            i = by_pid.pop(pid)
            walls[i], cpus[i] = time.monotonic() - t0, ru.ru_utime + ru.ru_stime
            rcs[i] = os.waitstatus_to_exitcode(status)
            procs[i].returncode = rcs[i]
    out = []
    for r, w, c, rc in zip(roots, walls, cpus, rcs):
        if rc != 0:
            raise SystemExit(f"launch in {r} failed ({rc}); see {r}/b/*/worker.log")
        spec = json.loads(next((r / "b").glob("*/run.json")).read_text())
        out.append((w, int(spec["threads"]), c))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--tokens", type=float, default=5e5)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    from sweep.launch.slots import usable_cores

    print(f"width {args.width} depth 2, {args.tokens:g} tokens per run, --jobs {args.jobs}, "
          f"{usable_cores()} cores; load average {os.getloadavg()[0]:.2f} (1 min) at start",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-launchers-") as tmp:
        base = Path(tmp)
        n = 0

        def fresh(k: int) -> list[Path]:
            nonlocal n
            roots = []
            for _ in range(k):
                n += 1
                roots.append(base / f"root{n}")
                plan(roots[-1], args.width, args.tokens, env)
            return roots

        for rep in range(args.repeat):
            alone = launch_all(fresh(1), [base / f"slots-alone{rep}"], args.jobs, env)[0]
            print(f"alone : {alone[0]:7.1f} s wall, {alone[1]} threads, {alone[2]:.0f} CPU-s; "
                  "throughput 1.00", flush=True)
            for name in ("shared", "split"):
                dirs = ([base / f"slots-shared{rep}"] * 2 if name == "shared"
                        else [base / f"slots-split{rep}-{i}" for i in range(2)])
                res = launch_all(fresh(2), dirs, args.jobs, env)
                cells = ", ".join(f"{w:7.1f} s ({w / alone[0]:.2f}× alone, {t} threads, "
                                  f"{c:.0f} CPU-s)" for w, t, c in res)
                thr = 2 * alone[0] / max(w for w, _, _ in res)
                print(f"{name:6s}: {cells}; throughput {thr:.2f}× alone; load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
