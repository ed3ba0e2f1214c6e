"""Fit speed, measured in one process: Approach 3 + 1000 bootstraps on the 245 Chinchilla rows,
Approach 2 on the 947 isoFLOP rows, and Hoffmann's grid method (L-BFGS-B from each of 4500
starts, timed on a sample of starts and scaled to the full grid). ``--small`` times the small
sweeps of issue 12 instead: fit_chinchilla with 1000 bootstraps and the default validation refit
on t1's 9 points and on 20 synthetic points (wall and CPU seconds, best of 3, and how many
bootstrap refits did not converge); ``--old REF`` times the same with the code of git REF
(``git archive`` into a temporary directory, run in a child process) right before, so both
figures come from one run on the same machine load.

    .venv/bin/python benchmarks/bench_fit.py [--hoffmann-sample 40]
    .venv/bin/python benchmarks/bench_fit.py --small [--old HEAD]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sweep.fit import fit_chinchilla, load_csv
from sweep.fit.hoffmann import hoffmann_grid
from sweep.fit.isoflop import fit_isoflops
from sweep.fit.objective import Problem

DATA = (Path(__file__).parents[1] / "../shared/data").resolve()


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


# t1 (issue 12): widths 32/64/96 x 2 layers (params_nonembed) x 5e4-2e5 tokens, final losses
T1_N = [24736, 98624, 221664]
T1_D = [50176, 100352, 199680]
T1_LOSS = [2.997433513402939, 2.784292556345463, 2.585769757628441, 3.0058849081397057,
           2.867170311510563, 2.4224396273493767, 2.861789271235466, 2.621280662715435,
           2.3012982569634914]


def small_cases() -> dict[str, pd.DataFrame]:
    n, d = np.meshgrid(T1_N, T1_D, indexing="ij")
    t1 = pd.DataFrame({"params": n.ravel() * 1.0, "tokens": d.ravel() * 1.0, "loss": T1_LOSS})
    n, d = np.meshgrid(np.geomspace(2.5e4, 4e5, 4), np.geomspace(5e4, 8e5, 5), indexing="ij")
    n, d = n.ravel(), d.ravel()
    loss = (1.5 + 20 / n**0.3 + 40 / d**0.35) * np.exp(
        np.random.default_rng(0).normal(0, 0.01, n.size))
    return {"t1, 9 points": t1,
            "synthetic, 20 points": pd.DataFrame({"params": n, "tokens": d, "loss": loss})}


def time_small(repeat: int = 3) -> dict[str, dict[str, float]]:
    """Best-of-``repeat`` wall and CPU seconds of fit_chinchilla(bootstrap=1000, seed=0) with
    its default validation refit, per small case, and the not-converged count."""
    out = {}
    for name, pts in small_cases().items():
        best = (float("inf"), float("inf"))
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            fit = fit_chinchilla(pts, bootstrap=1000, seed=0)
            best = min(best, (time.perf_counter() - t, time.process_time() - c))
        boot = getattr(fit, "bootstrap", None)
        if boot is None:  # old code: only a warning "K bootstrap refits did not converge"
            m = [re.match(r"(\d+) bootstrap refits did not converge", w) for w in fit.warnings]
            boot = {"not_converged": next((int(x.group(1)) for x in m if x), 0)}
        out[name] = {"wall_s": best[0], "cpu_s": best[1],
                     "not_converged": boot["not_converged"]}
    return out


def old_small(ref: str) -> dict[str, dict[str, float]]:
    """time_small(1) with the sweep package of git ``ref``, in a child process (once: the old
    code takes 10-30 s per fit here)."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tar = subprocess.run(["git", "-C", str(root), "archive", ref, "sweep"], check=True,
                             capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
        env = dict(os.environ, PYTHONPATH=tmp)  # the child's own env; ours is untouched
        res = subprocess.run([sys.executable, __file__, "--small", "--json", "--repeat", "1"],
                             env=env,
                             check=True, capture_output=True, text=True)
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hoffmann-sample", type=int, default=40)
    ap.add_argument("--small", action="store_true", help="time the small sweeps only")
    ap.add_argument("--old", metavar="REF", help="with --small: also time git REF's code")
    ap.add_argument("--json", action="store_true", help="with --small: print JSON")
    ap.add_argument("--repeat", type=int, default=3, help="with --small: best of REPEAT")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    if args.small:
        old = old_small(args.old) if args.old else None
        new = time_small(args.repeat)
        if args.json:
            print(json.dumps(new))
            return
        for name, v in new.items():
            line = (f"{name}: fit + 1000 bootstraps + validation: {v['wall_s']:.2f} s wall, "
                    f"{v['cpu_s']:.2f} s CPU, {v['not_converged']} refits not converged")
            if old:
                o = old[name]
                line += (f"; {args.old}: {o['wall_s']:.2f} s wall, {o['cpu_s']:.2f} s CPU, "
                         f"{o['not_converged']} not converged ({o['cpu_s'] / v['cpu_s']:.1f}x "
                         "CPU)")
            print(line + " (target <= 2 s wall)")
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        return
    pts = load_csv(DATA / "chinchilla_hoffmann2022_epoch.csv",
                   {"params": "Model Size", "flops": "Training FLOP"})
    iso = pd.read_csv(DATA / "isoflops_multi_source.csv")
    t3 = best_of(lambda: fit_chinchilla(pts, bootstrap=1000, validate=False))
    t3v = best_of(lambda: fit_chinchilla(pts, bootstrap=1000), 1)
    t3fit = best_of(lambda: fit_chinchilla(pts, bootstrap=0, validate=False))
    t2 = best_of(lambda: fit_isoflops(iso, bootstrap=1000))
    prob = Problem(pts, 1e-3, centre=False)
    rng = np.random.default_rng(0)
    grid = hoffmann_grid()
    sample = np.clip(grid[rng.choice(len(grid), args.hoffmann_sample, replace=False)],
                     prob.lo, prob.hi)
    t = time.perf_counter()
    for th in sample:
        prob.lbfgs(th, prob.w)
    per_start = (time.perf_counter() - t) / len(sample)
    t_grid = per_start * len(grid)
    print(f"Approach 3 (variable projection + Newton), 245 rows, 1000 bootstraps: {t3:.2f} s "
          f"(target <= 5 s); with held-out validation: {t3v:.2f} s; fit alone: {t3fit:.3f} s")
    print(f"Approach 2 (isoFLOP parabolas), 947 rows, 8 experiments, 1000 bootstraps each: "
          f"{t2:.2f} s (target <= 1 s)")
    print(f"Hoffmann grid method: {per_start * 1e3:.0f} ms per L-BFGS-B start "
          f"(mean of {len(sample)}) x {len(grid)} starts = {t_grid:.0f} s estimated, no bootstrap")
    print(f"speed-up of Approach 3 fit over the Hoffmann grid fit: {t_grid / t3fit:.0f}x "
          f"(fit alone); {t_grid / t3:.0f}x including 1000 bootstraps")


if __name__ == "__main__":
    main()
