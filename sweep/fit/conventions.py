"""Parameter and FLOP conventions of external tables, converted (issue 7 item 7).

- params: ``total`` counts every parameter (a tied or input-only token embedding once);
  ``nonembed`` leaves the embeddings out (Kaplan et al. 2020):
  nonembed = total - vocab · d_model · (1 if tied else 2) - positions · d_model.
- FLOPs: ``6nd`` = 6 · N · D (Kaplan et al.; N = the table's params after conversion);
  ``attn`` adds the attention score/value products, 12 · n_layer · d_model · seq_len per token
  (Kaplan et al. 2020 Table 1), = 6ND + 12 · n_layer · d_model · seq_len · D.
Shapes (d_model, n_layer) come from the table's own columns, a shapes table matched to each
row's parameter count (e.g. Chinchilla's Table A9), or one assumed shape for every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sweep.errors import DataError
from sweep.shapes import flops_6nd

MATCH_TOLERANCE = 0.05
"""A row matches a shapes-table entry when their parameter counts differ by < 5 %."""


@dataclass(frozen=True)
class Assumptions:
    """What a conversion assumes; every field is printed beside the converted numbers."""

    params_in: str  # "total" | "nonembed": how the table counts N
    params_out: str  # "total" | "nonembed"
    flops_out: str  # "6nd" | "attn"
    vocab: int | None = None
    tied: bool = True
    positions: int = 0  # learned position embeddings (rows), 0 for relative/rotary
    seq_len: int | None = None

    def describe(self) -> dict[str, str]:
        emb = (f"{self.vocab} x d_model ({'tied, counted once' if self.tied else 'untied, x2'})"
               + (f" + {self.positions} x d_model positions" if self.positions else "")
               if self.vocab else "not needed")
        return {"params_in": self.params_in, "params": self.params_out, "embeddings": emb,
                "flops": ("6ND" if self.flops_out == "6nd" else
                          f"6ND + 12 n_layer d_model seq_len D (seq_len {self.seq_len})"),
                "N in FLOPs": f"params ({self.params_out})"}


def load_shapes(path: str | Path) -> pd.DataFrame:
    """A shapes table: columns params (or params_reported), d_model, n_layers (or n_layer)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such shapes file")
    df = pd.read_csv(p)
    df.columns = [str(c).strip() for c in df.columns]
    ren = {"params_reported": "params", "n_layers": "n_layer"}
    df = df.rename(columns={k: v for k, v in ren.items() if k in df})
    for c in ("params", "d_model", "n_layer"):
        if c not in df:
            raise DataError(f"{p}: shapes need columns params (or params_reported), d_model, "
                            f"n_layers; missing {c!r}")
    return df[["params", "d_model", "n_layer"]].astype(float)


def match_shapes(params: np.ndarray, shapes: pd.DataFrame, source: str = "data",
                 tol: float = MATCH_TOLERANCE) -> pd.DataFrame:
    """(d_model, n_layer) for each parameter count: the shapes row nearest in log N. A row with
    no entry within ``tol`` (relative) is a DataError naming the row."""
    ref = shapes["params"].to_numpy(float)
    dist = np.abs(np.log(np.asarray(params, float)[:, None] / ref[None, :]))
    j = dist.argmin(1)
    bad = dist[np.arange(len(j)), j] > math.log1p(tol)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: data row {i + 1}: params {params[i]:.4g} match no shape "
                        f"within {tol:.0%} (nearest {ref[j[i]]:.4g})")
    return shapes.iloc[j][["d_model", "n_layer"]].reset_index(drop=True)


def convert(df: pd.DataFrame, shape: pd.DataFrame | None, a: Assumptions) -> pd.DataFrame:
    """Add params_total, params_nonembed, flops_6nd, flops_attn (where computable) to a
    (params, tokens, loss, ...) frame and set params/flops to the requested conventions."""
    out = df.copy().reset_index(drop=True)
    n = out["params"].to_numpy(float)
    need_emb = a.params_in != a.params_out
    if (need_emb or a.flops_out == "attn") and shape is None:
        raise DataError("this conversion needs model shapes: give d_model/n_layer columns, "
                        "--shapes FILE, or --d-model and --n-layer")
    if shape is not None:
        out["d_model"] = shape["d_model"].to_numpy(float)
        out["n_layer"] = shape["n_layer"].to_numpy(float)
    if need_emb or shape is not None and a.vocab:
        if not a.vocab:
            raise DataError("converting params between total and non-embedding needs --vocab")
        emb = (a.vocab * (1 if a.tied else 2) + a.positions) * out["d_model"].to_numpy(float)
        total = n if a.params_in == "total" else n + emb
        nonembed = n - emb if a.params_in == "total" else n
        if (nonembed <= 0).any():
            i = int(np.flatnonzero(nonembed <= 0)[0])
            raise DataError(f"data row {i + 1}: embeddings ({emb[i]:.4g}) exceed params "
                            f"{n[i]:.4g}: wrong --vocab or shapes?")
        out["params_total"], out["params_nonembed"] = total, nonembed
        out["params"] = total if a.params_out == "total" else nonembed
    d = out["tokens"].to_numpy(float)
    out["flops_6nd"] = flops_6nd(out["params"].to_numpy(float), d)
    if shape is not None and a.seq_len:  # + attention, 12 n_layer d_model seq per token
        attn = 12.0 * out["n_layer"] * out["d_model"] * a.seq_len
        out["flops_attn"] = out["flops_6nd"] + attn * d
    elif a.flops_out == "attn":
        raise DataError("FLOPs with attention need --seq-len (and model shapes)")
    out["flops"] = out["flops_attn"] if a.flops_out == "attn" else out["flops_6nd"]
    return out
