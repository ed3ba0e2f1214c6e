"""Wall time of the fit-consuming commands on a small sweep, this code beside an older revision,
measured in one run (issue 12): `fit`, `recommend`, `report`, `compare`, each a fresh process.

    python benchmarks/bench_commands.py --root runs --sweep t1 [--old 6e479a4] [--repeats 2]

The old revision is checked out with `git worktree` into a temporary directory and run from
there (PYTHONPATH); each code gets its own copy of the root (a newer store schema is refused by
older code). Runs alternate old/new so both see the same machine load. A trained sweep is
needed: e.g. `sweep plan t1 model.widths=[32,64,96] budget.tokens=[5e4,1e5,2e5] && sweep launch
t1` (≈ 40 s on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "fit": ["fit", "{s}"],
    "recommend": ["recommend", "{s}", "--compute", "1e13"],
    "report": ["report", "{s}"],
    "compare": ["compare", "{s}", "{s}", "--bootstrap", "200"],
}


def run(code: Path, root: Path, args: list[str]) -> tuple[float, int]:
    env = dict(os.environ, PYTHONPATH=str(code), SWEEP_ROOT=str(root), WANDB_MODE="offline",
               WANDB_SILENT="true")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", "from sweep.cli import main; main()", *args],
                       env=env, cwd=root, capture_output=True, text=True)
    return time.perf_counter() - t0, p.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="runs")
    ap.add_argument("--sweep", default="t1")
    ap.add_argument("--old", default="6e479a4", help="git revision to compare against")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--commands", default=",".join(COMMANDS))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), a.old],
                       check=True, capture_output=True)
        try:
            codes = {"old": old, "new": REPO}
            print(f"{'command':<10} {'old (s)':>9} {'new (s)':>9} {'new/old':>8} "
                  f"{'new, again':>11}   (cold: fresh copy of the root each time; median of "
                  f"{a.repeats}; 'again' = the same command repeated on new's root)")
            for name in a.commands.split(","):
                args = [x.format(s=a.sweep) for x in COMMANDS[name]]
                t: dict[str, list[float]] = {"old": [], "new": [], "again": []}
                rc: dict[str, int] = {}
                for i in range(a.repeats):
                    for label in ("old", "new"):
                        root = tmp / f"root-{label}-{name}-{i}"
                        shutil.copytree(a.root, root)
                        dt, rc[label] = run(codes[label], root, args)
                        t[label].append(dt)
                        if label == "new":
                            t["again"].append(run(codes[label], root, args)[0])
                m = {k: statistics.median(v) for k, v in t.items()}
                print(f"{name:<10} {m['old']:9.2f} {m['new']:9.2f} {m['new'] / m['old']:8.3f} "
                      f"{m['again']:11.2f}   (exit codes {rc['old']}/{rc['new']})")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                           capture_output=True)


if __name__ == "__main__":
    main()
