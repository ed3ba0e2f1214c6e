"""Rollout table of the candidate laws on ../shared/data (issue 13, items 2, 3 and 5).

Per data set: each law's leave-largest-compute-out rollout error (mean |L_hat/L - 1| on the
held-out budgets, L in nats/token, budgets C = 6ND FLOPs), the auto choice's honest error (law
chosen on earlier steps only) against the plain Chinchilla fit's, and the coverage of the
calibrated 95 % intervals on held-out points.

    .venv/bin/python analysis/rollout_table.py [--combine best|softmax|inverse] [--steps 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from sweep import shapes
from sweep.fit.rollout import select_law

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def datasets(data: Path = DATA) -> dict[str, pd.DataFrame]:
    """{name: points (params, tokens, loss)}: the Chinchilla Epoch CSV (5 highest-loss rows
    dropped; D = C / 6N) and each experiment of isoflops_multi_source.csv (non-outliers)."""
    c = pd.read_csv(data / "chinchilla_hoffmann2022_epoch.csv")
    n = c["Model Size"].astype(float)
    out = {"chinchilla_epoch": pd.DataFrame({
        "params": n, "tokens": shapes.tokens_for_flops(c["Training FLOP"].astype(float), n),
        "loss": c["loss"].astype(float)}).sort_values("loss").iloc[:-5].reset_index(drop=True)}
    iso = pd.read_csv(data / "isoflops_multi_source.csv")
    iso = iso[~iso["outlier"].astype(str).str.lower().eq("true")]
    for exp, g in iso.groupby("experiment", sort=True):
        out[str(exp)] = g[["params", "tokens", "loss"]].astype(float).reset_index(drop=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--combine", default="inverse", choices=("best", "softmax", "inverse"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--sigma", default="rms", choices=("rms", "max"))
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"no shared data at {DATA}", file=sys.stderr)
        return 2
    rows = []
    for name, df in datasets().items():
        t = time.perf_counter()
        sel = select_law(df, combine=args.combine, n_steps=args.steps,
                         bootstrap=args.bootstrap, rollout_bootstrap=args.bootstrap,
                         sigma_rule=args.sigma)
        dt = time.perf_counter() - t
        tab = sel.table.set_index("law")
        print(f"\n{name}: {len(df)} points, {len(sel.steps) - 1} rollout steps "
              f"(+1 calibration), {dt:.1f} s")
        print(tab.to_string(float_format=lambda v: f"{v:.4f}"))
        print(f"  auto ({sel.combine}) -> {sel.choice}; honest auto error "
              f"{sel.nested_error:.4f} vs chinchilla {sel.chinchilla_error:.4f}; "
              f"coverage {sel.nested_coverage:.0%}")
        print("  honest auto by combine: " + "; ".join(
            f"{k} {e:.4f} (coverage {c:.0%}, half-width {h:.2%})"
            for k, (e, c, h) in sel.variants.items()))
        rows.append({"dataset": name, **{f"err_{k}": v for k, v in
                                         tab["mean_abs_rel_error"].items()},
                     "choice": sel.choice, "auto_err": sel.nested_error,
                     "chinchilla_err": sel.chinchilla_error,
                     "auto_le_chinchilla": sel.nested_error <= sel.chinchilla_error + 1e-12,
                     "coverage": sel.nested_coverage,
                     "half_width": sel.variants[sel.combine][2],
                     **{f"auto_{k}": v[0] for k, v in sel.variants.items()}})
    print("\nsummary (errors = mean |rel. error| of held-out loss; coverage of 95 % intervals)")
    print(pd.DataFrame(rows).set_index("dataset").to_string(
        float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
