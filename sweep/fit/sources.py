"""A stored sweep's inputs for the curve and downstream fits: loss curves with N, batch and
steps, and per-run metrics, read from the store with their conventions named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sweep.errors import FitError


def sweep_curves(name: str, root: Path, loss: str = "train", params: str | None = None
                 ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Curves of sweep NAME's completed runs: run_id, step, steps (optimizer steps done),
    tokens, batch_tokens, params, flops (= 6 · N · tokens with the chosen N), loss (nats/token).
    ``loss``: train | eval; ``params``: nonembed | total (default: the sweep's fit.params)."""
    from sweep import study
    from sweep.store import Store

    if loss not in ("train", "eval"):
        raise FitError(f"unknown curve {loss!r}; expected train or eval")
    with Store(Path(root), create=False) as store:
        cfg = study.sweep_config(store, name)
        curves = store.curves_df([name])
        runs = store.runs_df([name])
        batch = {r.run.run_id: r.run.batch_tokens for r in store.runs(name)}
    pcol = "params_nonembed" if (params or cfg.fit.params) == "nonembed" else "params"
    runs = runs[(runs["state"] == "completed") & (runs["in_plan"] == 1)]
    col = {"train": "train_loss", "eval": "eval_loss"}[loss]
    c = curves[curves["run_id"].isin(runs["run_id"])].dropna(subset=[col])
    if c.empty:
        raise FitError(f"sweep '{name}' has no completed runs with {col} points "
                       f"(run `sweep launch {name}`)")
    p = runs.set_index("run_id")[pcol].astype(float)
    tokens = c["tokens"].astype(float)
    bt = c["run_id"].map(batch).astype(float)
    df = pd.DataFrame({"run_id": c["run_id"], "step": c["step"], "steps": tokens / bt,
                       "tokens": tokens, "batch_tokens": bt, "params": c["run_id"].map(p),
                       "loss": c[col].astype(float)}).reset_index(drop=True)
    df["flops"] = 6.0 * df["params"] * df["tokens"]
    conventions = {
        "params": ("params_nonembed (embeddings excluded)" if pcol == "params_nonembed"
                   else "params (all, embeddings included)"),
        "flops": f"6ND with N = {pcol}", "tokens": "training tokens seen",
        "loss": f"{'training' if loss == 'train' else 'held-out'} loss, nats/token"}
    return df, conventions


def sweep_metric(name: str, root: Path, metric: str, against: str
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, metric values, x convention) of sweep NAME: x = final held-out loss (nats/token)
    or flops_6nd (FLOPs, N = params_nonembed). Unknown metric: DataError listing the stored."""
    from sweep.fit.downstream import sweep_xy
    from sweep.store import Store

    with Store(Path(root), create=False) as store:
        store.sweep_overrides(name)  # unknown sweep: one line
        x, y = sweep_xy(store.metrics_df([name]), name, metric, against)
    conv = ("final held-out loss, nats/token" if against == "loss"
            else "FLOPs 6ND, N = params_nonembed")
    return x, y, conv


CURVE_NAMES = ("run", "params", "tokens", "flops", "loss", "step", "batch_tokens")


def csv_curves(path: str | Path, mapping: dict[str, str] | None = None
               ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Loss curves from a CSV, one row per point, in the frame ``sweep_curves`` returns.

    Columns (renamed with ``mapping``, ``--map run=COL,...``): ``run`` (which curve a point
    belongs to), ``params``, ``loss`` (nats/token), ``tokens`` or ``flops`` (then tokens =
    C / (6·params)); optional ``batch_tokens`` (tokens per optimizer step) or ``step`` (optimizer
    steps done), needed only by the learning-curve law. Numbers are taken in the file's own
    conventions (convert them first with `sweep convert`)."""
    from sweep.errors import DataError
    from sweep.fit.points import _numeric, read_table

    mapping = mapping or {}
    p = Path(path)
    raw = read_table(p)
    if len(raw) == 0:
        raise DataError(f"{p}: no data rows")

    def col(name: str, required: bool = True) -> pd.Series | None:
        c = mapping.get(name, name)
        if c not in raw.columns:
            if required or name in mapping:
                raise DataError(f"{p}: missing column {c!r} ({name}); columns are "
                                f"{', '.join(map(repr, raw.columns))} (map one with --map {name}=COL)")
            return None
        return raw[c] if name == "run" else _numeric(raw[c], str(p), repr(c)).astype(float)

    run, n, loss = col("run"), col("params"), col("loss")
    tokens, flops = col("tokens", False), col("flops", False)
    if tokens is None and flops is None:
        raise DataError(f"{p}: needs a tokens or a flops column (--map tokens=COL or flops=COL)")
    if tokens is None:
        tokens = flops / (6.0 * n)
    bt, step = col("batch_tokens", False), col("step", False)
    if bt is not None:
        steps = tokens / bt
    elif step is not None:
        steps, bt = step, tokens / step.where(step > 0)
    else:
        steps = bt = pd.Series(np.nan, index=raw.index)
    df = pd.DataFrame({"run_id": run.astype(str), "step": steps - 1, "steps": steps,
                       "tokens": tokens, "batch_tokens": bt, "params": n, "loss": loss})
    df["flops"] = flops if flops is not None else 6.0 * n * tokens
    conventions = {"params": f"as given in {p.name}", "flops": (
        f"as given in {p.name}" if flops is not None else "6ND with N as given"),
        "tokens": "training tokens seen", "loss": f"as given in {p.name} (nats/token assumed)"}
    return df, conventions
