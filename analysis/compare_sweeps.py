"""Compare two sweeps (e.g. two demo sweeps with different settings) through the Python API.

    python analysis/compare_sweeps.py A B [--root runs] [--out compare.png] [--bootstrap 200]

Fits both (Approach 3), prints their parameters side by side and B's compute multiplier over A
(the compute A needs to reach B's frontier loss, divided by C), and draws both frontiers L(C)
with their 95 % bootstrap bands and measured points on one figure.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sweep import Store, api  # noqa: E402
from sweep.fit import compute_optimal  # noqa: E402
from sweep.fit.compare import compare  # noqa: E402


def main(a: str, b: str, root: Path, out: Path, bootstrap: int) -> None:
    fits, finals = {}, {}
    for name in (a, b):
        fits[name] = api.fit_sweep(name, root, bootstrap=bootstrap)
        with Store(root, create=False) as st:
            finals[name] = st.finals_df([name])
    print(f"{'':8}" + "".join(f"{n:>14}" for n in (a, b)))
    for k in ("E", "A", "B", "alpha", "beta"):
        print(f"{k:8}" + "".join(f"{fits[n].params[k]:>14.4g}" for n in (a, b)))
    print(f"{'a':8}" + "".join(f"{fits[n].allocation['a']:>14.3f}" for n in (a, b)))
    lo = min(float(f["flops_6nd"].min()) for f in finals.values())
    hi = max(float(f["flops_6nd"].max()) for f in finals.values()) * 30
    budgets = [10 ** x for x in np.arange(math.ceil(math.log10(lo)), math.log10(hi) + 1e-9)]
    res = compare(fits[a], fits[b], budgets)
    for c, m in zip(res.compute, res.multiplier, strict=True):
        print(f"C={c:.3g}: {b} is worth x{m:.3g} the compute of {a}")
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    cs = np.logspace(math.log10(lo) - 0.2, math.log10(hi), 60)
    for i, name in enumerate((a, b)):
        f = fits[name]
        preds = [f.predict(*compute_optimal(f, c)) for c in cs]
        ax.plot(cs, [p.loss for p in preds], color=f"C{i}", lw=2, label=f"{name}: frontier")
        ax.fill_between(cs, [p.loss_lo95 for p in preds], [p.loss_hi95 for p in preds],
                        color=f"C{i}", alpha=0.18, lw=0)
        ax.plot(finals[name]["flops_6nd"], finals[name]["final_loss"], "o", color=f"C{i}",
                ms=4, label=f"{name}: runs")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C (FLOPs, 6ND)")
    ax.set_ylabel("final loss (nats/token)")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    print(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--root", type=Path, default=Path("runs"))
    ap.add_argument("--out", type=Path, default=Path("compare.png"))
    ap.add_argument("--bootstrap", type=int, default=200)
    args = ap.parse_args()
    main(args.a, args.b, args.root, args.out, args.bootstrap)
