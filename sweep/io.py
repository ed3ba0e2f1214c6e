"""Import into and export out of the store: external tables, offline W&B runs, CSV/Parquet.

Imported points carry their source and conventions and fit like native runs: ``sweep fit NAME``
reads the completed native runs and the imported points of a sweep together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sweep.errors import DataError
from sweep.fsutil import atomic_write_bytes, atomic_write_text
from sweep.plan import check_name
from sweep.records import PlannedRun, TrainResult
from sweep.shapes import flops_6nd
from sweep.store import Store
from sweep.store_imports import ImportRecord

# history keys of a sweep-trained W&B run → curve columns, with the value where a row lacks one
_HISTORY = {"tokens": 0, "flops": 0.0, "train_loss": None, "eval_loss": None, "lr": None,
            "end_of_schedule": 0, "eval_bpb": None}


@dataclass(frozen=True)
class ImportResult:
    """What ``sweep import`` did: ``record`` is the import (new, or the earlier one of the same
    content when ``added`` is False); ``runs`` counts W&B runs that came back whole."""

    sweep: str
    record: ImportRecord | None
    added: bool
    runs: int = 0

    @property
    def points(self) -> int:
        return self.record.rows if self.record is not None and self.added else 0

    def to_dict(self) -> dict:
        rec = self.record
        return {"sweep": self.sweep, "runs": self.runs, "points": self.points,
                "already_imported": rec is not None and not self.added,
                "import": None if rec is None else rec.to_dict()}


def import_csv(store: Store, name: str, path: str, mapping: dict[str, str] | None = None,
               params_convention: str | None = None,
               flops_convention: str | None = None) -> ImportResult:
    """Add the rows of an external table (params, loss, tokens or flops) to sweep ``name``,
    checked by ``load_csv`` (duplicates, units, FLOPs vs 6ND). Same content again: nothing
    added. Conventions: declared, else the file's (an export), else ``as-given``."""
    from sweep.fit import load_csv

    check_name(name)
    df = load_csv(path, mapping, params_convention=params_convention,
                  flops_convention=flops_convention)
    store.ensure_sweep(name)
    rec, added = store.add_import(
        name, df, path=str(Path(path).resolve()),
        params_convention=df.attrs["params_convention"] or "as-given",
        flops_convention=df.attrs["flops_convention"], lines=df.attrs["lines"])
    if not added and params_convention not in (None, rec.params_convention):
        raise DataError(f"{path}: already imported into '{name}' with params convention "
                        f"{rec.params_convention}; import it into a new sweep to count N as "
                        f"{params_convention}")
    return ImportResult(name, rec, added)


def import_wandb(store: Store, name: str, directory: str | os.PathLike) -> ImportResult:
    """Read offline W&B runs under ``directory`` into sweep ``name``.

    Runs logged by sweep's own trainer (config ``spec``) come back as full runs with their curves
    (a resumed run's attempts merged into one) and final held-out loss; other runs need
    ``params``, ``tokens`` and ``final_loss`` (or ``loss``) in their config/summary and become
    external points, checked like a CSV's rows (one import of the directory; same points again:
    nothing added). Runs already in the store are skipped.
    """
    import pandas as pd

    from sweep.tracking import read_offline_runs

    check_name(name)
    runs = read_offline_runs(Path(directory))  # the attempts of one run merged
    if not runs:
        raise DataError(f"no offline W&B runs (run-*.wandb) under {directory}")
    done = [(wr, wr.summary.get("final_loss", wr.summary.get("loss"))) for wr in runs]
    done = [(wr, final) for wr, final in done if final is not None]  # else unfinished or failed
    whole = [(wr, final) for wr, final in done if wr.config.get("spec")]
    ext = [{"params": wr.config["params"], "tokens": wr.config["tokens"], "loss": final}
           for wr, final in done if not wr.config.get("spec")
           and "params" in wr.config and "tokens" in wr.config]
    pts = None
    if ext:  # checked before anything is written
        from sweep.fit.points import check_points, check_table

        pts = check_points(pd.DataFrame(ext), str(directory))
        check_table(pts, str(directory))
    store.ensure_sweep(name)
    n_runs = 0
    for wr, final in whole:
        orig = PlannedRun.from_dict(wr.config["spec"])
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
            store.add_metrics(run.run_id, {"heldout_top1_acc": wr.summary["heldout_top1_acc"]})
        n_runs += 1
    rec, added = None, False
    if pts is not None:
        rec, added = store.add_import(name, pts, path=str(directory),
                                      params_convention="as-given", flops_convention="6nd")
    return ImportResult(name, rec, added, n_runs)


def imported_df(store: Store, names: Sequence[str]):
    """The imported points of ``names`` as ``sweep import`` reads them back: sweep, file, line,
    params, tokens, flops (6ND), loss (nats/token as imported), params/flops_convention."""
    import pandas as pd

    cols = ["sweep", "file", "line", "params", "tokens", "flops", "loss", "params_convention",
            "flops_convention"]
    ext = store.external_df(list(names))
    if ext.empty:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame({"sweep": ext["sweep"], "file": ext["source"], "line": ext["line"],
                         "params": ext["params"], "tokens": ext["tokens"],
                         "flops": flops_6nd(ext["params"], ext["tokens"]), "loss": ext["loss"],
                         "params_convention": ext["params_convention"],
                         "flops_convention": ext["flops_convention"]})[cols]


def export(store: Store, names: Sequence[str], out: Path, fmt: str = "csv") -> list[Path]:
    """Write runs, curves, finals and imported points of ``names`` to
    ``out/{runs,curves,finals,imported}.{csv,parquet}``, each file atomically. ``sweep import``
    reads finals.csv (N without embeddings, as sweep fits) and imported.csv back as they are."""
    if fmt not in ("csv", "parquet"):
        raise DataError(f"unknown export format {fmt!r} (csv or parquet)")
    for n in names:
        store.sweep_overrides(n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table, df in (("runs", store.runs_df(names)), ("curves", store.curves_df(names)),
                      ("finals", store.finals_df(names)), ("imported", imported_df(store, names))):
        path = out / f"{table}.{fmt}"
        if fmt == "csv":
            atomic_write_text(path, df.to_csv(index=False))
        else:
            atomic_write_bytes(path, df.to_parquet(index=False))
        written.append(path)
    return written


def list_sweeps(store: Store) -> list[dict]:
    """Every sweep of the store, by name: run counts per state (planned runs only), planned
    runs in all, imported points and imports (files or W&B directories)."""
    return store.sweep_summaries()
