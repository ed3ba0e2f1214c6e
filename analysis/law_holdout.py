"""Leave-longest-runs-out check of every law on a trained sweep (issue 13).

Per law: fit on the runs with at most --dmax tokens, predict the sweep's longer runs and the runs
of the --extra sweeps (other shapes trained separately); print mean |L_hat/L - 1| of the final
held-out loss (nats/token), the largest error and how many 95 % intervals covered the measured
loss. The README's table came from

    sweep plan wide 'budget.tokens=[2.5e5,5e5,1e6,2e6,4e6]' && sweep launch wide
    sweep plan p96 'model.widths=[96]' 'budget.tokens=[7.52e6]' && sweep launch p96
    sweep plan p192 'model.widths=[192]' 'budget.tokens=[5.64e6]' && sweep launch p192
    python analysis/law_holdout.py --root runs --sweep wide --extra p96 --extra p192
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from sweep.fit.curve_law import store_curves
from sweep.fit.rollout import fit_law
from sweep.study import sweep_points

LAWS = ("chinchilla", "chinchilla-equal", "kaplan", "curve", "mpl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("runs"))
    ap.add_argument("--sweep", default="wide")
    ap.add_argument("--extra", action="append", default=[], help="sweep of further runs")
    ap.add_argument("--dmax", type=float, action="append", default=None,
                    help="fit on runs with at most this many tokens (repeatable; 1e6, 2e6)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    pts = sweep_points(a.sweep, a.root)
    pts = pts[pts.valid].reset_index(drop=True)
    curves = store_curves(a.sweep, a.root, "nonembed")[0]
    extra = pd.concat([sweep_points(s, a.root) for s in a.extra] or [pts.iloc[:0]])
    extra = extra[extra.valid & extra.loss.notna()]
    rows = []
    for dmax in a.dmax or (1e6, 2e6):
        tr, held = pts[pts.tokens <= dmax * 1.01], pts[pts.tokens > dmax * 1.01]
        test = pd.concat([held, extra], ignore_index=True)
        n, d, obs = (test[c].to_numpy(float) for c in ("params", "tokens", "loss"))
        for law in LAWS:
            t = time.process_time()
            cv = curves[curves.run_id.isin(tr.run_id)] if law in ("curve", "mpl") else None
            sel, _ = fit_law(tr[["params", "tokens", "loss", "run_id"]], law, curves=cv,
                             bootstrap=50, rollout_bootstrap=20)
            loss, lo, hi = sel.predict(n, d)
            e, cov = loss / obs - 1, (lo <= obs) & (obs <= hi)
            rows.append({"fit on": f"D <= {dmax:.0e}", "law": law, "held out": len(test),
                         "mean |err|": np.mean(np.abs(e)), "max err": e[np.argmax(np.abs(e))],
                         "covered": f"{cov.sum()}/{len(cov)}", "validated": bool(sel.steps),
                         "cpu s": round(time.process_time() - t, 2)})
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
