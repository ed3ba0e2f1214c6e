"""Fit input: a DataFrame of (params, tokens, flops, loss) points, loaded and checked in one place.

Columns of the returned frame (all float64, all positive and finite):
``params`` = N (parameters), ``tokens`` = D (training tokens), ``flops`` = C = 6·N·D (FLOPs,
Kaplan et al. 2020 convention) and ``loss`` (nats/token). A file may give C instead of D; then
D = C / (6 N).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from sweep.errors import DataError

log = logging.getLogger(__name__)

NAMES = ("params", "tokens", "flops", "loss")
"""Our column names; ``--map`` maps them to a file's columns."""


def parse_map(text: str, names: tuple[str, ...] = NAMES) -> dict[str, str]:
    """Parse ``--map params=COL,tokens=COL,flops=COL,loss=COL`` into {our name: file column}.

    Column names may contain spaces (surrounding quotes are dropped) but not commas.
    Raises DataError on an unknown or repeated key or an empty column name.
    """
    out: dict[str, str] = {}
    if not text or not text.strip():
        raise DataError("--map is empty; expected e.g. params=COL,loss=COL")
    for item in text.split(","):
        key, sep, col = item.partition("=")
        key, col = key.strip(), col.strip()
        if len(col) >= 2 and col[0] == col[-1] and col[0] in "\"'":
            col = col[1:-1]
        if not sep or not col:
            raise DataError(f"--map item {item.strip()!r} is not NAME=COLUMN")
        if key not in names:
            raise DataError(f"--map: unknown name {key!r}; expected one of {', '.join(names)}")
        if key in out:
            raise DataError(f"--map: {key!r} is given twice")
        out[key] = col
    return out


def _positive_number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{what}: {text!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise DataError(f"{what}: {text!r} is not a positive finite number")
    return v


def parse_at(text: str) -> tuple[float, float]:
    """Parse ``--at params=P,tokens=T`` (or ``params=P,flops=C``) into (N, D).

    With flops, D = C / (6 N). Raises DataError on unknown, missing or repeated keys and on
    values that are not positive finite numbers.
    """
    vals: dict[str, float] = {}
    for item in (text or "").split(","):
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep:
            raise DataError(f"--at item {item.strip()!r} is not NAME=VALUE (e.g. params=7e10)")
        if key not in ("params", "tokens", "flops"):
            raise DataError(f"--at: unknown name {key!r}; expected params, tokens or flops")
        if key in vals:
            raise DataError(f"--at: {key!r} is given twice")
        vals[key] = _positive_number(val.strip(), f"--at {key}")
    if "params" not in vals:
        raise DataError(f"--at {text!r}: params=N is missing")
    if ("tokens" in vals) == ("flops" in vals):
        raise DataError(f"--at {text!r}: give exactly one of tokens=D or flops=C")
    n = vals["params"]
    d = vals["tokens"] if "tokens" in vals else vals["flops"] / (6.0 * n)
    return n, d


def _numeric(values: pd.Series, source: str, label: str) -> pd.Series:
    """Convert a column to float64; DataError naming source, 1-based data row and column."""
    raw = values.reset_index(drop=True)
    if raw.dtype == bool:
        raise DataError(f"{source}: column {label} is boolean, not numeric")
    num = pd.to_numeric(raw, errors="coerce").astype("float64")
    text = raw.astype(str).str.strip().str.lower()
    checks = (
        (raw.isna() | (text == ""), "is missing or NaN"),
        (num.isna() & (text != "nan"), "is not a number"),
        (num.isna(), "is NaN"),
        (~num.isna() & ~num.abs().lt(math.inf), "is infinite"),
        (num.le(0), "is not positive"),
    )
    for bad, why in checks:
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{source}: data row {i + 1}, column {label}: value {raw.iloc[i]!r} "
                            f"{why} (need positive finite numbers)")
    return num


def _normalise(df: pd.DataFrame, cols: dict[str, str], source: str) -> pd.DataFrame:
    """Build the checked (params, tokens, flops, loss) frame from the chosen columns."""
    def col(name: str) -> pd.Series:
        """Column ``name`` checked, labelled by the file's name (and ours if it differs)."""
        label = repr(cols[name]) + ("" if cols[name] == name else f" ({name})")
        return _numeric(df[cols[name]], source, label)

    if len(df) == 0:
        raise DataError(f"{source}: no data rows")
    n, loss = col("params"), col("loss")
    d = col("tokens") if "tokens" in cols else col("flops") / (6.0 * n)
    return pd.DataFrame({"params": n, "tokens": d, "flops": 6.0 * n * d, "loss": loss})


def _choose(columns: list[str], mapping: dict[str, str], source: str) -> dict[str, str]:
    """Resolve our names to the frame's columns: mapped names first, then our own names."""
    bad = sorted(set(mapping) - set(NAMES))
    if bad:
        raise DataError(f"{source}: unknown mapped name {bad[0]!r}; expected one of "
                        f"{', '.join(NAMES)}")
    cols: dict[str, str] = {}
    for name in NAMES:
        if name in mapping:
            if mapping[name] not in columns:
                raise DataError(f"{source}: missing column {mapping[name]!r} (mapped to {name}); "
                                f"columns are {', '.join(map(repr, columns))}")
            cols[name] = mapping[name]
        elif name in columns:
            cols[name] = name
    for need in ("params", "loss"):
        if need not in cols:
            raise DataError(f"{source}: missing column {need!r}; columns are "
                            f"{', '.join(map(repr, columns))} (map others with --map {need}=COL)")
    if "tokens" not in cols and "flops" not in cols:
        raise DataError(f"{source}: missing column 'tokens' or 'flops'; columns are "
                        f"{', '.join(map(repr, columns))} (map others with --map tokens=COL)")
    if "tokens" in cols and "flops" in cols:
        log.debug("%s: both tokens and flops given; using tokens, flops = 6ND", source)
        del cols["flops"]
    return cols


def check_points(df: pd.DataFrame, source: str = "points") -> pd.DataFrame:
    """Validate a DataFrame built in Python; return a new float frame (params, tokens, flops, loss).

    Needs ``params`` and ``loss`` and ``tokens`` or ``flops`` (then tokens = flops / (6 params)).
    Raises DataError naming ``source``, the 1-based row and the column of the first bad value.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    cols = _choose([str(c) for c in df.columns], {}, source)
    return _normalise(df, cols, source)


def load_csv(path: str | Path, mapping: dict[str, str] | None = None) -> pd.DataFrame:
    """Read fit points from any CSV; ``mapping`` maps our names to the file's column names.

    Returns the checked frame of :func:`check_points` (params, tokens, flops = 6ND, loss).
    Raises DataError for a missing/unreadable file, a missing column, or a value that is
    non-numeric, NaN, infinite or not positive (naming file, data row and column).
    """
    p = Path(path)
    df = read_table(p)
    cols = _choose(list(df.columns), dict(mapping or {}), str(p))
    return _normalise(df, cols, str(p))


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV as strings with stripped column names; DataError (one line) for a missing, empty
    or unreadable file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{p}: cannot read as CSV ({msg})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df
