"""The study: a sweep's points (with their conventions, validity and provenance), the one cached
fit of them, and its loss curves and per-run metrics, read from the store in one place.

Every command that needs a fit (fit, recommend, next, compare, allocation, report, cost) gets it
from ``sweep_fit``: the same points under the same conventions, fitted once per (points,
options) and cached in the store (table ``fits``), so no command refits what another just did.
Units: N = parameters (the convention in ``conventions``), D = training tokens, C = FLOPs (6ND),
loss in nats/token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep import config as config_mod
from sweep import shapes
from sweep.config import SweepConfig
from sweep.errors import DataError, FitError
from sweep.plan import check_name
from sweep.records import Fit
from sweep.store import Store

if TYPE_CHECKING:  # numpy and pandas are imported where used: `sweep --help` stays fast
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

FIT_CACHE_VERSION = 1
"""Bump when the fitting code changes its results: cached fits of older versions are ignored."""

POINT_COLUMNS = ("params", "tokens", "loss", "flops", "run_id", "source", "provenance", "valid")
PARAMS_LABEL = {"nonembed": "params_nonembed (embeddings excluded)",
                "total": "params (all, embeddings included)"}
RUN_LOSS = "held-out nats/token at end of schedule"


def sweep_config(store: Store, name: str, overrides: Sequence[str] = ()) -> SweepConfig:
    """An existing sweep's config: its planned overrides, then ``overrides`` on top."""
    return config_mod.load([*store.sweep_overrides(name), *overrides])


# ---- points ----------------------------------------------------------------------------------
def _imported(ext: pd.DataFrame) -> pd.DataFrame:
    """The external table's rows as points: provenance 'file.csv:LINE' (header = line 1) where
    the store kept the line, else 'SOURCE#K' (K-th point of that source); source 'wandb' for
    points of an offline W&B directory (no line, no file suffix), else 'import'."""
    import numpy as np
    import pandas as pd

    src = ext["source"].fillna("").astype(str)
    lines = ext["line"] if "line" in ext else pd.Series(np.nan, index=ext.index)
    nth = src.groupby(src).cumcount() + 1
    prov = [f"{Path(f).name}:{int(ln)}" if ln == ln and ln is not None else f"{Path(f).name}#{k}"
            for f, ln, k in zip(src, lines, nth, strict=True)]
    wandb = lines.isna() & ~src.map(lambda f: bool(Path(f).suffix))
    params, tokens = ext["params"].astype(float), ext["tokens"].astype(float)
    return pd.DataFrame({"params": params, "tokens": tokens, "loss": ext["loss"].astype(float),
                         "flops": shapes.flops_6nd(params, tokens), "run_id": prov,
                         "source": np.where(wandb, "wandb", "import"), "provenance": prov,
                         "valid": True})


def _conventions(convention: str, n_runs: int, ext: pd.DataFrame) -> dict[str, str]:
    """What N, D, C and loss mean for these points (imports labelled by their own words)."""
    ours = PARAMS_LABEL.get(convention, convention)
    imp_p = sorted(set(ext["params_convention"].astype(str))) if len(ext) else []
    imp_f = (sorted(set(ext["flops_convention"].dropna().astype(str)))
             if "flops_convention" in ext and len(ext) else [])
    if not len(ext):
        return {"params": ours, "tokens": "training tokens", "flops": f"6ND, N = {ours}",
                "loss": RUN_LOSS}
    p_imp = ", ".join(imp_p)
    f_imp = ", ".join(imp_f) or "6ND with N as imported"
    if n_runs == 0:
        return {"params": f"imported: {p_imp}", "tokens": "training tokens",
                "flops": f"imported: {f_imp}", "loss": "imported, nats/token (as given)"}
    return {"params": f"runs: {ours}; imported points: {p_imp}", "tokens": "training tokens",
            "flops": f"runs: 6ND, N = {ours}; imported points: {f_imp}",
            "loss": f"runs: {RUN_LOSS}; imported points: as given"}


def sweep_points(name: str, root: Path, convention: str = "nonembed") -> pd.DataFrame:
    """Every point of sweep ``name``: its completed native runs (N in ``convention``:
    nonembed | total), then its imported points (N as their source counts it).

    Columns: params, tokens, loss (nats/token), flops (6ND), run_id, source ('run' | 'wandb' |
    'import'), provenance (run id, or 'file.csv:LINE'), valid (a run is valid only when its
    loss is the held-out loss at the end of its schedule; fits use valid points only). The
    conventions dict is ``df.attrs['conventions']``. Bad stored values: DataError."""
    import numpy as np
    import pandas as pd

    from sweep.fit.points import check_points

    check_name(name)
    with Store(root, create=False) as store:
        store.sweep_overrides(name)  # unknown sweep: one line
        runs = store.runs_df([name])
        ends = store.end_of_schedule_df([name])
        ext = store.external_df([name])
    runs = runs[(runs["state"] == "completed") & (runs["in_plan"] == 1)
                & runs["final_loss"].notna()]
    col = "params_nonembed" if convention == "nonembed" else "params"
    ends = ends.set_index("run_id")
    held = runs["run_id"].map(ends["held_out_final"]).fillna(0).astype(bool)
    no_curve = runs["run_id"].map(ends["n_points"]).fillna(0).eq(0)
    params, tokens = runs[col].astype(float), runs["tokens"].astype(float)
    wandb = runs["job_id"].fillna("").astype(str).str.startswith("wandb:")
    native = pd.DataFrame({
        "params": params, "tokens": tokens, "loss": runs["final_loss"].astype(float),
        "flops": shapes.flops_6nd(params, tokens), "run_id": runs["run_id"],
        "source": np.where(wandb, "wandb", "run"), "provenance": runs["run_id"],
        "valid": (held | no_curve).to_numpy()})
    frames = [native] + ([_imported(ext.reset_index(drop=True))] if len(ext) else [])
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else native.reset_index(
        drop=True)
    ok = df[df["valid"]]
    if len(ok):  # positive and finite, or a one-line DataError naming the sweep and row
        check_points(ok[["params", "tokens", "loss"]], f"sweep '{name}'")
    df = df[list(POINT_COLUMNS)]
    df.attrs["conventions"] = _conventions(convention, len(native), ext)
    return df


def csv_points(path: str | Path, mapping: dict[str, str] | None = None) -> pd.DataFrame:
    """The points of a CSV (columns params, loss, and tokens or flops; ``mapping`` renames),
    in the frame ``sweep_points`` returns: source 'import', provenance 'FILE:LINE'."""
    from sweep.fit.points import load_csv

    p = Path(path)
    pts = load_csv(p, mapping)
    lines = pts.attrs.get("lines") or range(2, len(pts) + 2)  # line 1 is the header
    pts = pts.reset_index(drop=True)
    prov = [f"{p.name}:{ln}" for ln in lines]
    df = pts.assign(run_id=prov, source="import", provenance=prov, valid=True)
    df = df[list(POINT_COLUMNS)]
    pc, fc = pts.attrs.get("params_convention"), pts.attrs.get("flops_convention") or "6nd"
    df.attrs["conventions"] = {
        "params": f"{PARAMS_LABEL[pc]}, from {p.name}" if pc in PARAMS_LABEL
        else f"as given in {p.name}",
        "tokens": "training tokens",
        "flops": "6ND (tokens = C/(6N) where only C given)" if fc == "6nd"
        else f"{fc} as given in {p.name} (tokens = C/(6N) where only C given)",
        "loss": "as given (nats/token assumed)"}
    return df


# ---- fits -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitOptions:
    """Everything besides the points that a fit's result depends on (the cache key)."""

    method: str = "chinchilla"
    delta: float = 1e-3
    bootstrap: int = 1000
    seed: int = 0
    starts: int | None = 20
    weights: tuple[float, ...] | None = None  # one per point, in the points' order
    fixed: dict[str, float] | None = None
    bounds: dict[str, tuple[float, float]] | None = None
    penalty: float = 0.0
    drop: int = 0  # the K highest-loss points left out
    validate: bool = True
    convention: str = "as given"
    max_loss: float | None = None  # ln(vocab): predictions above it are outside the law
    min_tokens: float | None = None  # one optimizer batch
    law: str = "chinchilla"  # or a sweep.fit.rollout law / "auto" (sweep.study_law)


def _canonical(pts: pd.DataFrame, opts: FitOptions) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The valid points, highest-loss ``drop`` removed, in one order (the fit, its bootstrap
    and its key do not depend on the order the store or a file gave)."""
    import numpy as np

    df = pts[pts["valid"]].reset_index(drop=True) if "valid" in pts else pts.reset_index(drop=True)
    w = None if opts.weights is None else np.asarray(opts.weights, float)
    if w is not None and len(w) != len(df):
        raise DataError(f"{len(w)} weights for {len(df)} points")
    if opts.drop:
        keep = ~df.index.isin(df["loss"].nlargest(opts.drop).index)
        df, w = df[keep].reset_index(drop=True), None if w is None else w[keep]
    order = np.lexsort((df["source"].astype(str).to_numpy(), df["loss"].to_numpy(),
                        df["tokens"].to_numpy(), df["params"].to_numpy()))
    return df.iloc[order].reset_index(drop=True), None if w is None else w[order]


def fit_key(pts: pd.DataFrame, weights: np.ndarray | None, opts: FitOptions) -> str:
    """sha256 of the (canonically ordered) points' params, tokens, loss, source (and weight)
    and of every option, with FIT_CACHE_VERSION."""
    rows = [[float(n), float(d), float(lo), str(s)] for n, d, lo, s in zip(
        pts["params"], pts["tokens"], pts["loss"], pts["source"], strict=True)]
    if weights is not None:
        rows = [r + [float(x)] for r, x in zip(rows, weights, strict=True)]
    opt = dataclasses.asdict(dataclasses.replace(opts, weights=None))
    if opt["law"] == "chinchilla":  # the key of a plain fit is what it was before laws
        del opt["law"]
    blob = json.dumps({"version": FIT_CACHE_VERSION, "points": rows, "options": opt},
                      sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


def _fit_chinchilla(df: pd.DataFrame, w: np.ndarray | None, opts: FitOptions) -> Fit:
    from sweep.fit.chinchilla import fit_chinchilla

    return fit_chinchilla(df[["params", "tokens", "loss"]], delta=opts.delta,
                          bootstrap=opts.bootstrap, seed=opts.seed, validate=opts.validate,
                          method=opts.method, starts=opts.starts, weights=w, fixed=opts.fixed,
                          bounds=opts.bounds, penalty=opts.penalty, max_loss=opts.max_loss,
                          min_tokens=opts.min_tokens)


def fit_points(pts: pd.DataFrame, opts: FitOptions = FitOptions(), *,
               at: Sequence[tuple[float, float]] = (), label: str = "points",
               store: Store | None = None, sweep: str | None = None) -> Fit:
    """Chinchilla Approach 3 on ``pts`` (a ``sweep_points``/``csv_points`` frame) with
    ``opts``; with ``store``, looked up in and added to its fit cache. ``at``: (N, D) pairs
    predicted from the fit (not part of the key). Conventions: ``pts.attrs['conventions']``."""
    if opts.law != "chinchilla":  # never cache a plain fit under a law's key
        raise FitError(f"fit_points fits chinchilla only; law {opts.law!r}: sweep.study_law")
    df, w = _canonical(pts, opts)
    if len(df) < 5:
        raise FitError(f"{label} has {len(df)} valid points; a fit needs at least 5"
                       + (f" (after dropping {opts.drop})" if opts.drop else ""))
    key = fit_key(df, w, opts)
    payload = store.get_fit(key) if store is not None else None
    if payload is None:
        fit = _fit_chinchilla(df, w, opts)
        fit.predictions = []
        fit.conventions = dict(pts.attrs.get("conventions") or fit.conventions)
        if opts.drop:
            fit.conventions["rows"] = f"{opts.drop} highest-loss points dropped"
        payload = json.dumps(fit.to_state())
        if store is not None:
            try:
                store.put_fit(key, sweep, payload)
            except sqlite3.Error as exc:  # a read-only or busy store: the fit still stands
                log.warning("%s: fit not cached (%s)", label, exc)
    else:
        log.info("%s: cached fit %s", label, key[:12])
    fit = Fit.from_state(json.loads(payload))  # the same object whether cached or not
    fit.predictions = [fit.predict(float(n), float(d)) for n, d in at]
    return fit


def sweep_fit(name: str, root: Path = Path("runs"), overrides: Sequence[str] = (), *,
              at: Sequence[tuple[float, float]] = (), bootstrap: int | None = None,
              seed: int | None = None, delta: float | None = None,
              cfg: SweepConfig | None = None, **options: Any) -> Fit:
    """The (cached) fit of L(N, D) to sweep ``name``'s valid points: Chinchilla Approach 3 with
    bootstrap intervals, its settings from the sweep's ``fit`` config unless given.
    ``options``: FitOptions fields (method, starts, fixed, bounds, penalty, drop, validate);
    ``cfg``: the sweep's config with ``overrides`` when the caller has it already."""
    check_name(name)
    root = Path(root)
    with Store(root, create=False) as store:
        cfg = cfg or sweep_config(store, name, overrides)
        planned = [r.run for r in store.runs(name)]
    pts = sweep_points(name, root, cfg.fit.params)
    n_runs = int((pts["source"] != "import").sum())
    opts = FitOptions(
        delta=cfg.fit.delta if delta is None else delta,
        bootstrap=cfg.fit.bootstrap if bootstrap is None else bootstrap,
        seed=cfg.fit.seed if seed is None else seed, convention=cfg.fit.params,
        max_loss=math.log(min(r.vocab for r in planned)) if planned else None,
        min_tokens=float(min(r.batch_tokens for r in planned)) if planned else None,
        **options)
    if int(pts["valid"].sum()) < 5 + opts.drop:
        what = (f"{n_runs} completed runs" if n_runs == len(pts) else f"{len(pts)} points")
        raise FitError(f"sweep '{name}' has {what}; a fit needs at least 5 "
                       f"(run `sweep launch {name}`)")
    with Store(root, create=False) as store:
        return fit_points(pts, opts, at=at, label=f"sweep '{name}'", store=store, sweep=name)


def fit_csv(path: str, mapping: dict[str, str] | None = None, *,
            at: Sequence[tuple[float, float]] = (), bootstrap: int = 1000, seed: int = 0,
            delta: float = 1e-3, **options: Any) -> Fit:
    """The same fit on any external table (columns params, loss, and tokens or flops)."""
    pts = csv_points(path, mapping)
    opts = FitOptions(delta=delta, bootstrap=bootstrap, seed=seed, **options)
    return fit_points(pts, opts, at=at, label=str(path))


# ---- curves and per-run metrics (the curve and downstream fits) ------------------------------
def sweep_curves(name: str, root: Path, loss: str = "train", params: str | None = None
                 ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Curves of sweep NAME's completed runs: run_id, step, steps (optimizer steps done),
    tokens, batch_tokens, params, flops (6ND with the chosen N), loss (nats/token).
    ``loss``: train | eval; ``params``: nonembed | total (default: the sweep's fit.params)."""
    import pandas as pd

    if loss not in ("train", "eval"):
        raise FitError(f"unknown curve {loss!r}; expected train or eval")
    check_name(name)
    with Store(Path(root), create=False) as store:
        cfg = sweep_config(store, name)
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
    df["flops"] = shapes.flops_6nd(df["params"], df["tokens"])
    conventions = {
        "params": PARAMS_LABEL["nonembed" if pcol == "params_nonembed" else "total"],
        "flops": f"6ND with N = {pcol}", "tokens": "training tokens seen",
        "loss": f"{'training' if loss == 'train' else 'held-out'} loss, nats/token"}
    return df, conventions


def sweep_metric(name: str, root: Path, metric: str, against: str
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, metric values, x convention) of sweep NAME: x = final held-out loss (nats/token)
    or flops_6nd (FLOPs, N = params_nonembed). Unknown metric: DataError listing the stored."""
    from sweep.fit.downstream import sweep_xy

    check_name(name)
    with Store(Path(root), create=False) as store:
        store.sweep_overrides(name)  # unknown sweep: one line
        x, y = sweep_xy(store.metrics_df([name]), name, metric, against)
    conv = ("final held-out loss, nats/token" if against == "loss"
            else "FLOPs 6ND, N = params_nonembed")
    return x, y, conv


def _curves(name: str | None, root: Path, loss: str, params: str | None, data: str | None,
            mapping: dict[str, str] | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Loss curves of sweep NAME, or of the CSV ``data`` (sweep.fit.sources.csv_curves)."""
    from sweep.fit.sources import csv_curves

    if (name is None) == (data is None):
        raise DataError("give either a sweep NAME or --data FILE.csv")
    if data is not None:
        return csv_curves(data, mapping)
    return sweep_curves(name, root, loss, params)


def envelope_fit(name: str | None, root: Path = Path("runs"), *, loss: str = "train",
                 params: str | None = None, grid: int = 40, bootstrap: int = 1000,
                 seed: int = 0, data: str | None = None, mapping: dict[str, str] | None = None):
    """Approach 1 on the sweep's (or a CSV's) loss curves → sweep.fit.envelope.EnvelopeFit
    (N*, D* ∝ C^a, C^b)."""
    from sweep.fit.envelope import fit_envelope

    df, conv = _curves(name, root, loss, params, data, mapping)
    f = fit_envelope(df[["run_id", "params", "tokens", "flops", "loss"]], n_grid=grid,
                     bootstrap=bootstrap, seed=seed)
    f.conventions = conv
    return f


def learning_curve_fit(name: str | None, root: Path = Path("runs"), *, loss: str = "train",
                       params: str | None = None, data: str | None = None,
                       mapping: dict[str, str] | None = None, **kw):
    """Kaplan's L(N, S) on the sweep's (or a CSV's) curves → records.LearningCurveFit (kw: see
    sweep.fit.learning_curve.fit_learning_curve: bcrit, floor, min_frac, bootstrap, predict)."""
    from sweep.fit.learning_curve import fit_learning_curve

    df, conv = _curves(name, root, loss, params, data, mapping)
    if df["batch_tokens"].isna().any():
        raise DataError(f"{data}: L(N, S) needs a batch_tokens or a step column "
                        "(--map batch_tokens=COL or step=COL)")
    f = fit_learning_curve(df, **kw)
    return dataclasses.replace(f, conventions={"N": conv["params"], "S": "optimizer steps",
                                               "B": "tokens per step", "L": conv["loss"]})


def downstream_fit(name: str, metric: str, root: Path = Path("runs"), *, against: str = "loss",
                   **kw):
    """A stored per-run metric against final loss or compute → records.DownstreamFit (kw: see
    sweep.fit.downstream.fit_downstream: form, chance, ceiling, at, bootstrap, seed)."""
    from sweep.fit.downstream import fit_downstream

    x, y, conv = sweep_metric(name, root, metric, against)
    f = fit_downstream(x, y, metric=metric, against=against, **kw)
    return dataclasses.replace(f, conventions={**f.conventions, "x": conv})
