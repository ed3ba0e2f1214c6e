"""Loss curves from a CSV for the curve fits (envelope, learning curve), in the frame
``sweep.study.sweep_curves`` returns for a stored sweep (the store-reading side lives there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sweep import shapes

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
                cols = ", ".join(map(repr, raw.columns))
                raise DataError(f"{p}: missing column {c!r} ({name}); columns are {cols} "
                                f"(map one with --map {name}=COL)")
            return None
        return raw[c] if name == "run" else _numeric(raw[c], str(p), repr(c)).astype(float)

    run, n, loss = col("run"), col("params"), col("loss")
    tokens, flops = col("tokens", False), col("flops", False)
    if tokens is None and flops is None:
        raise DataError(f"{p}: needs a tokens or a flops column (--map tokens=COL or flops=COL)")
    if tokens is None:
        tokens = shapes.tokens_for_flops(flops, n)
    bt, step = col("batch_tokens", False), col("step", False)
    if bt is not None:
        steps = tokens / bt
    elif step is not None:
        steps, bt = step, tokens / step.where(step > 0)
    else:
        steps = bt = pd.Series(np.nan, index=raw.index)
    df = pd.DataFrame({"run_id": run.astype(str), "step": steps - 1, "steps": steps,
                       "tokens": tokens, "batch_tokens": bt, "params": n, "loss": loss})
    df["flops"] = flops if flops is not None else shapes.flops_6nd(n, tokens)
    conventions = {"params": f"as given in {p.name}", "flops": (
        f"as given in {p.name}" if flops is not None else "6ND with N as given"),
        "tokens": "training tokens seen", "loss": f"as given in {p.name} (nats/token assumed)"}
    return df, conventions
