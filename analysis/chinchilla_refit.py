"""Reproduce the Chinchilla refit (Besiroglu et al. 2024) and its recommendation at 5.76e23 FLOPs
from ../shared/data, through the Python API only.

    python analysis/chinchilla_refit.py [--bootstrap 1000]

Approach 3 on the 240 rows left after dropping the 5 highest losses, Huber delta = 1e-3 on
log-loss residuals, summed (shared/README.md: E 1.8172, alpha 0.3473, beta 0.3672, a 0.514,
objective 1.018274e-3). Then the compute-optimal N and D at Gopher/Chinchilla's budget,
5.76e23 FLOPs (6ND), with the predicted loss and its 95 % bootstrap interval, beside Chinchilla
itself (70B params, 1.4T tokens), and its cost on the A100/TPU v4 presets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sweep import cost
from sweep.allocation import Baseline, allocation_table, allocation_text
from sweep.fit import compute_optimal, fit_chinchilla, load_csv

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / \
    "chinchilla_hoffmann2022_epoch.csv"
C_CHINCHILLA = 5.76e23


def main(bootstrap: int) -> None:
    pts = load_csv(str(DATA), {"params": "Model Size", "flops": "Training FLOP", "loss": "loss"})
    pts = pts.drop(pts["loss"].nlargest(5).index).reset_index(drop=True)
    fit = fit_chinchilla(pts, bootstrap=bootstrap, seed=0, at=[(7e10, 1.4e12)])
    p, ci = fit.params, fit.ci95
    print(f"{fit.n_points} points, objective {fit.objective:.7g} (reference 1.018274e-3)")
    for k, ref in (("E", 1.8172), ("A", 478), ("B", 2143), ("alpha", 0.3473), ("beta", 0.3672)):
        print(f"  {k:<6} {p[k]:10.5g}  95% CI [{ci[k][0]:.4g}, {ci[k][1]:.4g}]  reference {ref}")
    print(f"  a = {fit.allocation['a']:.4f} (reference 0.514)  95% CI "
          f"[{ci['a'][0]:.3f}, {ci['a'][1]:.3f}]")
    n, d = compute_optimal(fit, C_CHINCHILLA)
    pr = fit.predict(n, d)
    print(f"\nrecommendation at C = {C_CHINCHILLA:.3g} FLOPs (6ND): N_opt = {n:.3g} params, "
          f"D_opt = {d:.3g} tokens ({d / n:.1f} tokens/param), predicted loss {pr.loss:.4f} "
          f"[{pr.loss_lo95:.4f}, {pr.loss_hi95:.4f}]")
    q = fit.predictions[0]
    print(f"Chinchilla itself (70B, 1.4T tokens): predicted loss {q.loss:.4f} "
          f"[{q.loss_lo95:.4f}, {q.loss_hi95:.4f}]")
    for hw in ("a100", "tpu-v4"):
        a = cost.Assumptions(cost.PRESETS[hw], mfu=0.4, devices=1024)
        c = cost.predict(C_CHINCHILLA, a)
        print(f"cost on {a.describe()}: {c.wall_hours / 24:.1f} days, {c.device_hours:.3g} "
              f"device-hours, ${c.usd:.3g}, {c.mwh:.0f} MWh, {c.tco2e:.0f} tCO2e")
    base = Baseline(n, d, 3_000_000, "compute-optimal at 5.76e23")
    print("\n" + allocation_text(allocation_table(fit, base, (2, 10)), base))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", type=int, default=1000)
    main(ap.parse_args().bootstrap)
