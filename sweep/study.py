"""The study: one sweep's points (with their conventions and provenance) and the fit of them.

Every command that needs a fit (fit, recommend, next, compare, allocation, report, cost) gets it
here, so they all see the same points under the same conventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sweep import config as config_mod
from sweep.config import SweepConfig
from sweep.errors import FitError
from sweep.plan import check_name
from sweep.records import Fit
from sweep.store import Store


def sweep_config(store: Store, name: str, overrides: Sequence[str] = ()) -> SweepConfig:
    """An existing sweep's config: its planned overrides, then ``overrides`` on top."""
    return config_mod.load([*store.sweep_overrides(name), *overrides])



def sweep_points(name: str, root: Path, convention: str = "nonembed"):
    """(params, tokens, loss) of the completed runs, N in ``convention`` (nonembed | total),
    followed by the sweep's imported points (their N as their source counts it)."""
    import pandas as pd

    with Store(root, create=False) as store:
        store.sweep_overrides(name)
        df = store.finals_df([name])
        ext = store.external_df([name])
    col = "params_nonembed" if convention == "nonembed" else "params"
    native = pd.DataFrame({"params": df[col].astype(float), "tokens": df["tokens"].astype(float),
                           "loss": df["final_loss"].astype(float), "run_id": df["run_id"]})
    if ext.empty:
        return native
    imported = pd.DataFrame({"params": ext["params"], "tokens": ext["tokens"], "loss": ext["loss"],
                             "run_id": [f"import:{i}" for i in range(len(ext))]})
    return pd.concat([native, imported], ignore_index=True)


def sweep_fit(name: str, root: Path = Path("runs"), overrides: Sequence[str] = (), *,
              at: Sequence[tuple[float, float]] = (), bootstrap: int | None = None) -> Fit:
    """Fit L(N, D) to a sweep's completed runs (Chinchilla Approach 3, bootstrap intervals)."""
    from sweep.fit import fit_chinchilla

    check_name(name)
    with Store(root, create=False) as store:
        cfg = sweep_config(store, name, overrides)
    pts = sweep_points(name, root, cfg.fit.params)
    if len(pts) < 5:
        raise FitError(f"sweep '{name}' has {len(pts)} completed runs; a fit needs at least 5 "
                       f"(run `sweep launch {name}`)")
    fit = fit_chinchilla(pts[["params", "tokens", "loss"]], delta=cfg.fit.delta,
                         bootstrap=cfg.fit.bootstrap if bootstrap is None else bootstrap,
                         seed=cfg.fit.seed, at=list(at))
    fit.conventions = {"params": "params_nonembed (embeddings excluded)"
                       if cfg.fit.params == "nonembed" else "params (all, embeddings included)",
                       "flops": "6ND", "loss": "held-out nats/token at end of schedule"}
    return fit


def fit_csv(path: str, mapping: dict[str, str] | None = None, *,
            at: Sequence[tuple[float, float]] = (), bootstrap: int = 1000, seed: int = 0,
            delta: float = 1e-3) -> Fit:
    """The same fit on any external table (columns params, loss, and tokens or flops)."""
    from sweep.fit import fit_chinchilla, load_csv

    pts = load_csv(path, mapping)
    fit = fit_chinchilla(pts, delta=delta, bootstrap=bootstrap, seed=seed, at=list(at))
    fit.conventions = {"params": "as given", "flops": "6ND (tokens = C/(6N) where only C given)",
                       "loss": "as given"}
    return fit
