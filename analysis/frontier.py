"""Draw a sweep's measured final losses and its fitted compute frontier, from the store.

    python analysis/frontier.py demo [--root runs] [--out frontier.png]

Uses only the Python API: Store(root).finals_df() for the points, sweep.api.fit_sweep for the
fitted L(N, D), sweep.recommend for the compute-optimal frontier L(C) with its 95 % band.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sweep import Store, api  # noqa: E402
from sweep.recommend import optimal_params  # noqa: E402


def draw(name: str, root: Path, out: Path, bootstrap: int = 300) -> Path:
    with Store(root, create=False) as store:
        finals = store.finals_df([name])
    fit = api.fit_sweep(name, root, bootstrap=bootstrap)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=130)
    sc = ax.scatter(finals.flops_6nd, finals.final_loss, c=np.log10(finals.params_nonembed),
                    cmap="viridis", s=36, zorder=3, label="runs (end of schedule)")
    fig.colorbar(sc, ax=ax, label="log10 params (non-embedding)")
    c = np.logspace(np.log10(finals.flops_6nd.min()) - 0.3, np.log10(finals.flops_6nd.max()) + 1.5,
                    60)
    preds = [fit.predict(n, cc / (6 * n)) for cc in c for n in [optimal_params(fit, cc)]]
    ax.plot(c, [p.loss for p in preds], color="C3", lw=2, label="fitted frontier L(C)")
    ax.fill_between(c, [p.loss_lo95 for p in preds], [p.loss_hi95 for p in preds], color="C3",
                    alpha=0.2, label="95 % bootstrap band")
    ax.axhline(fit.params["E"], color="grey", ls=":", lw=1, label=f"E = {fit.params['E']:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C (FLOPs, 6·N_nonembed·D)")
    ax.set_ylabel("held-out loss (nats/token)")
    a = fit.allocation["a"]
    ax.set_title(f"sweep '{name}': α={fit.params['alpha']:.3g}, β={fit.params['beta']:.3g}, "
                 f"N_opt ∝ C^{a:.2f}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--root", type=Path, default=Path("runs"))
    ap.add_argument("--out", type=Path, default=Path("frontier.png"))
    args = ap.parse_args()
    print(draw(args.name, args.root, args.out))
