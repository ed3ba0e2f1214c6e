"""Import into and export out of the store: external tables, offline W&B runs, CSV/Parquet.

Imported points carry their source and conventions and fit like native runs: ``sweep fit NAME``
reads the completed native runs and the imported points of a sweep together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from sweep.errors import DataError
from sweep.plan import check_name
from sweep.records import PlannedRun, TrainResult
from sweep.store import Store

# history keys of a sweep-trained W&B run → curve columns, with the value where a row lacks one
_HISTORY = {"tokens": 0, "flops": 0.0, "train_loss": None, "eval_loss": None, "lr": None,
            "end_of_schedule": 0, "eval_bpb": None}


def import_csv(store: Store, name: str, path: str, mapping: dict[str, str] | None = None,
               params_convention: str = "as given") -> int:
    """Add the rows of an external table (params, loss, tokens or flops) to sweep ``name``."""
    from sweep.fit import load_csv

    check_name(name)
    df = load_csv(path, mapping)
    store.ensure_sweep(name)
    return store.add_external(name, df[["params", "tokens", "loss"]], source=str(path),
                              params_convention=params_convention)


def import_wandb(store: Store, name: str, directory: str | os.PathLike) -> tuple[int, int]:
    """Read offline W&B runs under ``directory`` into sweep ``name``.

    Runs logged by sweep's own trainer (config ``spec``) come back as full runs with their curves
    (a resumed run's attempts merged into one) and final held-out loss; other runs need
    ``params``, ``tokens`` and ``final_loss`` (or ``loss``) in their config/summary and become
    external points. Returns (runs, points).
    """
    import pandas as pd

    from sweep.tracking import read_offline_runs

    check_name(name)
    runs = read_offline_runs(Path(directory))  # the attempts of one run merged
    if not runs:
        raise DataError(f"no offline W&B runs (run-*.wandb) under {directory}")
    store.ensure_sweep(name)
    n_runs, ext = 0, []
    for wr in runs:
        final = wr.summary.get("final_loss", wr.summary.get("loss"))
        if final is None:
            continue  # unfinished or failed run
        spec = wr.config.get("spec")
        if spec:
            orig = PlannedRun.from_dict(spec)
            digest = hashlib.sha256(f"{name}/{orig.run_id}".encode()).hexdigest()[:6]
            run = dataclasses.replace(orig, sweep=name,
                                      run_id=orig.run_id.rsplit("-", 1)[0] + f"-{digest}")
            if store.has_run(run.run_id):
                continue
            store.put_plan(name, [], {}, [run], append=True)
            store.start_attempt(run.run_id, f"wandb:{wr.run_id}")
            hist = [h for h in wr.history if "_step" in h]
            store.import_curves(pd.DataFrame({
                "run_id": run.run_id, "step": [h["_step"] for h in hist],
                **{k: [h.get(k, d) for h in hist] for k, d in _HISTORY.items()}}))
            epochs = wr.summary.get("epochs")
            store.finish(TrainResult(run.run_id, float(final),
                                     float(wr.summary.get("final_train_loss", final)), run.tokens,
                                     run.steps, float(wr.summary.get("wall_seconds", 0.0)),
                                     float(wr.summary.get("tokens_per_second", 0.0)),
                                     None if epochs is None else float(epochs)))
            if wr.summary.get("heldout_top1_acc") is not None:
                store.add_metrics(run.run_id,
                                  {"heldout_top1_acc": wr.summary["heldout_top1_acc"]})
            n_runs += 1
        elif "params" in wr.config and "tokens" in wr.config:
            ext.append({"params": float(wr.config["params"]),
                        "tokens": float(wr.config["tokens"]), "loss": float(final)})
    if ext:
        from sweep.fit import check_points

        store.add_external(name, check_points(pd.DataFrame(ext), str(directory)),
                           source=str(directory), params_convention="as given")
    return n_runs, len(ext)


def export(store: Store, names: Sequence[str], out: Path, fmt: str = "csv") -> list[Path]:
    """Write runs, curves and finals of ``names`` to ``out/{runs,curves,finals}.{csv,parquet}``,
    each file atomically."""
    if fmt not in ("csv", "parquet"):
        raise DataError(f"unknown export format {fmt!r} (csv or parquet)")
    for n in names:
        store.sweep_overrides(n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table, df in (("runs", store.runs_df(names)), ("curves", store.curves_df(names)),
                      ("finals", store.finals_df(names))):
        path = out / f"{table}.{fmt}"
        tmp = out / f".{table}.{fmt}.tmp"
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        written.append(path)
    return written
