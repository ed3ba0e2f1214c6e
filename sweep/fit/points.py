"""Fit input: a DataFrame of (params, tokens, flops, loss) points, loaded and checked in one place.

Columns of the returned frame (all float64, all positive and finite):
``params`` = N (parameters), ``tokens`` = D (training tokens), ``flops`` = C = 6·N·D (FLOPs,
Kaplan et al. 2020 convention) and ``loss`` (nats/token). A file may give C instead of D; then
D = C / (6 N).

A CSV file (``load_csv``, used by ``sweep fit --data`` and ``sweep import``) is also checked as a
table, naming ``file:line`` (1-based, the header is line 1): no duplicate (params, tokens, loss)
rows, tokens/params within ``TOKENS_PER_PARAM``, FLOPs given beside tokens within
``FLOPS_TOLERANCE``× of 6ND. Unit slips (GFLOPs, tokens in billions) fail here, not in a fit.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import pandas as pd

from sweep.errors import DataError
from sweep.shapes import flops_6nd, tokens_for_flops

log = logging.getLogger(__name__)

NAMES = ("params", "tokens", "flops", "loss")
"""Our column names; ``--map`` maps them to a file's columns."""

PARAMS_CONVENTIONS = ("total", "nonembed", "as-given")
"""How a table counts N: every parameter, without the embeddings (Kaplan et al. 2020), or
undeclared."""
FLOPS_CONVENTIONS = ("6nd", "attn", "as-given")
"""How a table's FLOPs column counts C: 6ND, 6ND + attention (12·n_layer·d_model·seq per
token), or unknown. Tokens derived from FLOPs are C/(6N) in every case."""
TOKENS_PER_PARAM = (0.01, 1e6)
"""Plausible D/N of a training run; outside it a column is almost surely in other units."""
FLOPS_TOLERANCE = 3.0
"""FLOPs beside tokens must be within this factor of 6ND (×10 more above with attention)."""


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
    d = vals["tokens"] if "tokens" in vals else tokens_for_flops(vals["flops"], n)
    return n, d


def _where(source: str, i: int, lines) -> str:
    """``file:line: data row k`` (a CSV) or ``source: data row k`` (a frame) of 0-based row i."""
    return (f"{source}: data row {i + 1}" if lines is None
            else f"{source}:{int(lines[i])}: data row {i + 1}")


def _numeric(values: pd.Series, source: str, label: str, lines=None) -> pd.Series:
    """Convert a column to float64; DataError naming source (file:line), data row and column."""
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
            raise DataError(f"{_where(source, i, lines)}, column {label}: value "
                            f"{raw.iloc[i]!r} {why} (need positive finite numbers)")
    return num


def _normalise(df: pd.DataFrame, cols: dict[str, str], source: str, lines=None) -> pd.DataFrame:
    """Build the checked (params, tokens, flops, loss) frame from the chosen columns."""
    def col(name: str) -> pd.Series:
        """Column ``name`` checked, labelled by the file's name (and ours if it differs)."""
        label = repr(cols[name]) + ("" if cols[name] == name else f" ({name})")
        return _numeric(df[cols[name]], source, label, lines)

    if len(df) == 0:
        raise DataError(f"{source}: no data rows")
    n, loss = col("params"), col("loss")
    d = col("tokens") if "tokens" in cols else tokens_for_flops(col("flops"), n)
    return pd.DataFrame({"params": n, "tokens": d, "flops": flops_6nd(n, d), "loss": loss})


def _choose(columns: list[str], mapping: dict[str, str], source: str,
            params_convention: str | None = None) -> dict[str, str]:
    """Resolve our names to the frame's columns: mapped names first, then our own names, then
    the names ``sweep export`` writes (``final_loss``; ``params_nonembed`` with its
    ``flops_6nd`` when N is non-embedding, ``params_total`` when N is total)."""
    bad = sorted(set(mapping) - set(NAMES))
    if bad:
        raise DataError(f"{source}: unknown mapped name {bad[0]!r}; expected one of "
                        f"{', '.join(NAMES)}")
    alias = {"params": {"nonembed": ["params_nonembed"], "total": ["params_total"]}.get(
        params_convention or "", []), "loss": ["final_loss"], "tokens": [], "flops": []}
    cols: dict[str, str] = {}
    for name in NAMES:
        if name in mapping:
            if mapping[name] not in columns:
                raise DataError(f"{source}: missing column {mapping[name]!r} (mapped to {name}); "
                                f"columns are {', '.join(map(repr, columns))}")
            cols[name] = mapping[name]
            continue
        found = [c for c in [*alias[name], name] if c in columns]
        if name == "flops" and not found and cols.get("params") == "params_nonembed" \
                and "flops_6nd" in columns:
            found = ["flops_6nd"]  # sweep's export: 6 · params_nonembed · tokens
        if found:
            cols[name] = found[0]
    for need in ("params", "loss"):
        if need not in cols:
            raise DataError(f"{source}: missing column {need!r}; columns are "
                            f"{', '.join(map(repr, columns))} (map others with --map {need}=COL)")
    if "tokens" not in cols and "flops" not in cols:
        raise DataError(f"{source}: missing column 'tokens' or 'flops'; columns are "
                        f"{', '.join(map(repr, columns))} (map others with --map tokens=COL)")
    return cols


def default_params_convention(columns) -> str | None:
    """The N convention a table implies: ``nonembed`` for sweep's own export (``params`` and
    ``params_nonembed`` side by side, no ``params_total``; sweep fits N without embeddings),
    else None (undeclared)."""
    cols = set(columns)
    return "nonembed" if {"params", "params_nonembed"} <= cols and "params_total" not in cols \
        else None


def check_table(pts: pd.DataFrame, source: str, lines=None, flops: pd.Series | None = None,
                flops_convention: str = "6nd") -> None:
    """The table-level checks of an external file (or W&B points), one line naming file:line.

    Refuses duplicate (params, tokens, loss) rows (up to 5 listed), tokens/params outside
    TOKENS_PER_PARAM, and ``flops`` given beside tokens that differ from 6ND by more than
    FLOPS_TOLERANCE× (up to 10× that above 6ND with ``flops_convention`` ``attn``).
    """
    word = "row" if lines is None else "line"
    num = (lambda i: i + 1) if lines is None else (lambda i: int(lines[i]))
    dup = pts.duplicated(["params", "tokens", "loss"], keep="first").to_numpy()
    if dup.any():
        first = pts.reset_index(drop=True).groupby(["params", "tokens", "loss"]).ngroup()
        head = {}
        for i, g in enumerate(first.to_numpy()):
            head.setdefault(g, i)
        idx = dup.nonzero()[0]
        pairs = ", ".join(f"{word} {num(i)} repeats {word} {num(head[first.iloc[i]])}"
                          for i in idx[:5])
        raise DataError(f"{source}: {len(idx)} duplicate row{'s' * (len(idx) > 1)} (same params, "
                        f"tokens and loss): {pairs}{', …' if len(idx) > 5 else ''}; remove them")
    ratio = (pts["tokens"] / pts["params"]).to_numpy()
    lo, hi = TOKENS_PER_PARAM
    bad = ((ratio < lo) | (ratio > hi)).nonzero()[0]
    if len(bad):
        i = int(bad[0])
        hint = ("are FLOPs in GFLOPs or tokens in billions?" if ratio[i] < lo
                else "are params in millions or billions?")
        raise DataError(f"{source}: tokens/params = {ratio[i]:.2g} at {word} {num(i)} (outside "
                        f"[0.01, 1e6]): {hint} convert first")
    if flops is not None:
        r = (flops.reset_index(drop=True) / pts["flops"].reset_index(drop=True)).to_numpy()
        top = FLOPS_TOLERANCE * (10.0 if flops_convention == "attn" else 1.0)
        bad = ((r > top) | (r < 1.0 / FLOPS_TOLERANCE)).nonzero()[0]
        if len(bad):
            i = int(bad[0])
            attn = (" (FLOPs with attention: --flops-convention attn)"
                    if r[i] > top and flops_convention != "attn" else "")
            raise DataError(
                f"{source}: FLOPs at {word} {num(i)} are {r[i]:.3g}x 6*params*tokens "
                f"({flops.iloc[i]:.4g} vs {pts['flops'].iloc[i]:.4g}; allowed "
                f"{1 / FLOPS_TOLERANCE:.2g}-{top:g}x): are FLOPs in GFLOPs or PF-days, or tokens "
                f"in billions?{attn} convert first, or drop the flops column")


def check_points(df: pd.DataFrame, source: str = "points") -> pd.DataFrame:
    """Validate a DataFrame built in Python; return a new float frame (params, tokens, flops, loss).

    Needs ``params`` and ``loss`` and ``tokens`` or ``flops`` (then tokens = flops / (6 params));
    with both, tokens win and flops = 6ND. Raises DataError naming ``source``, the 1-based row
    and the column of the first bad value.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    cols = _choose([str(c) for c in df.columns], {}, source)
    if "tokens" in cols:
        cols.pop("flops", None)
    return _normalise(df, cols, source)


def load_csv(path: str | Path, mapping: dict[str, str] | None = None, *,
             params_convention: str | None = None,
             flops_convention: str | None = None) -> pd.DataFrame:
    """Read fit points from any CSV; ``mapping`` maps our names to the file's column names.

    Returns the checked frame of :func:`check_points` (params, tokens, flops = 6ND, loss) with
    ``attrs``: ``lines`` (each row's 1-based file line), ``params_convention`` (declared, or
    implied by the file, else None) and ``flops_convention`` (declared, else ``6nd``). A file's
    constant ``params_convention``/``flops_convention`` columns (an export) declare them too.
    Raises DataError (naming file:line) for a missing/unreadable file, a missing column, a value
    that is non-numeric, NaN, infinite or not positive, and the checks of :func:`check_table`.
    """
    p = Path(path)
    df = read_table(p)
    conv = {"params_convention": params_convention, "flops_convention": flops_convention}
    for key, allowed in (("params_convention", PARAMS_CONVENTIONS),
                         ("flops_convention", FLOPS_CONVENTIONS)):
        if key in df.columns and len(df):
            vals = set(df[key].str.strip())
            if len(vals) != 1 or next(iter(vals)) not in allowed:
                raise DataError(f"{p}: column {key} must hold one of {', '.join(allowed)} on "
                                f"every row, got {', '.join(sorted(map(repr, vals)))}")
            val = vals.pop()
            if conv[key] not in (None, val):
                raise DataError(f"{p}: the file says {key} {val}, not {conv[key]}")
            conv[key] = val
    if conv["params_convention"] is None:
        conv["params_convention"] = default_params_convention(df.columns)
    conv["flops_convention"] = conv["flops_convention"] or "6nd"
    lines = _record_lines(p, len(df))
    cols = _choose(list(df.columns), dict(mapping or {}), str(p), conv["params_convention"])
    both = "tokens" in cols and "flops" in cols
    flops = None
    if both:
        flops = _numeric(df[cols["flops"]], str(p), repr(cols["flops"]) + " (flops)", lines)
        del cols["flops"]
    pts = _normalise(df, cols, str(p), lines)
    check_table(pts, str(p), lines, flops, conv["flops_convention"])
    pts.attrs.update(lines=[int(x) for x in lines], **conv)
    return pts


def _record_lines(path: Path, n: int) -> list[int]:
    """The 1-based file line on which each of the ``n`` data records starts (blank lines are
    skipped, as pandas does; a quoted field may span lines)."""
    out: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader, prev = csv.reader(fh, skipinitialspace=True), 0
            for rec in reader:
                if len(rec) > 1 or rec and rec[0].strip():  # pandas skips blank lines
                    out.append(prev + 1)
                prev = reader.line_num
    except (OSError, csv.Error):
        out = []
    return out[1:] if len(out) == n + 1 else [i + 2 for i in range(n)]


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
