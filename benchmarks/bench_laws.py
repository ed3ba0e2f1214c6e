"""Speed of law selection and of the whole-curve law, measured in one process (issue 13, item 6).

- select_law (3 candidate laws, rollout with 100 bootstrap refits per step, final fit with 200)
  on 20 synthetic runs (4 sizes x 5 budgets) and on a plain Chinchilla-form 25-run grid;
- each law's fit alone and with 200 bootstrap refits on the 20 runs, and the latter on the
  other Hessian (sweep.fit.laws: exact for the Chinchilla forms, differences for Kaplan);
- the whole-curve law on 12 synthetic runs (4 sizes x 3 budgets, cosine/WSD/constant, logged
  every 10 steps: 1,372 points), fit alone and with 100 run-level bootstrap refits.
Wall and CPU (process) seconds, best of 3: on a shared machine CPU seconds are the steadier
figure. Targets: <= 2 s for fits on <= 20 runs incl. selection; <= 10 s for a curve fit.

    .venv/bin/python benchmarks/bench_laws.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sweep.fit.curve_law import CurveLaw
from sweep.fit.laws import LAWS
from sweep.fit.rollout import select_law

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fit"))


def best_of(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds) of ``repeat`` calls."""
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def grid25() -> pd.DataFrame:
    n, d = np.meshgrid(np.geomspace(1e6, 1e9, 5), np.geomspace(1e8, 1e11, 5))
    n, d = n.ravel(), d.ravel()
    loss = (1.8 + 400 / n**0.34 + 2000 / d**0.37) * np.exp(
        0.005 * np.random.default_rng(0).standard_normal(n.size))
    return pd.DataFrame({"params": n, "tokens": d, "loss": loss})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    r = ap.parse_args(argv).repeat
    from test_curve_law import sweep_curves
    from test_rollout import kaplan_grid

    runs20, runs25, curves = kaplan_grid(noise=0.005), grid25(), sweep_curves(noise=0.003)
    rows = [("select_law, 20 runs (Kaplan form)", lambda: select_law(runs20)),
            ("select_law, 25 runs (Chinchilla form)", lambda: select_law(runs25))]
    for name, law in LAWS.items():
        rows.append((f"{name} fit, 20 runs", lambda law=law: law.fit(runs20)))
        rows.append((f"{name} fit + 200 bootstrap, 20 runs",
                     lambda law=law: law.fit(runs20, bootstrap=200)))
        other = copy.copy(law)  # the same fit on the other Hessian (exact vs differences)
        other.exact_hessian = not law.exact_hessian
        rows.append((f"  same, {'difference' if law.exact_hessian else 'exact'} Hessian",
                     lambda law=other: law.fit(runs20, bootstrap=200)))
    rows.append(("curve law fit, 12 runs / 1372 points", lambda: CurveLaw().fit(curves=curves)))
    rows.append(("curve law fit + 100 run bootstrap", lambda: CurveLaw().fit(
        curves=curves, bootstrap=100)))
    print(f"{'what':48s} {'wall s':>8s} {'CPU s':>8s}   (best of {r})")
    for what, fn in rows:
        w, c = best_of(fn, r)
        print(f"{what:48s} {w:8.3f} {c:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
