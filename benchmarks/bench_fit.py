"""Fit speed, measured in one process: Approach 3 + 1000 bootstraps on the 245 Chinchilla rows,
Approach 2 on the 947 isoFLOP rows, and Hoffmann's grid method (L-BFGS-B from each of 4500
starts, timed on a sample of starts and scaled to the full grid).

    /work/venv/bin/python benchmarks/bench_fit.py [--hoffmann-sample 40]
"""

from __future__ import annotations

import argparse
import logging
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hoffmann-sample", type=int, default=40)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
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
