"""Imported points in the store (a mixin of sweep.store.Store): one ``imports`` row per file (or
W&B directory) imported into a sweep, keyed by the sha256 of its normalised rows, and its points
in ``external`` with their file line and both conventions (``external_df`` reads them there).

Re-importing the same content into the same sweep (even under other column names, or with the
rows in another order) adds nothing: ``add_import`` returns the earlier import instead.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sweep.errors import DataError, StoreError
from sweep.shapes import flops_6nd


def content_sha256(rows: Iterable[tuple[float, float, float]]) -> str:
    """The key of an import: sha256 of its (params, tokens, loss) rows, each number to 12
    significant digits, rows sorted (order and column names do not matter)."""
    text = "\n".join(sorted(f"{p:.12g},{t:.12g},{lo:.12g}" for p, t, lo in rows))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ImportRecord:
    """One import: ``rows`` points of ``path`` into ``sweep`` at ``created`` (Unix seconds),
    N counted as ``params_convention`` (total | nonembed | a legacy note), FLOPs of the file as
    ``flops_convention`` (6nd | attn | as-given; tokens derived from FLOPs are C/(6N))."""

    id: int
    sweep: str
    sha256: str
    path: str | None
    rows: int
    params_convention: str
    flops_convention: str
    created: float

    def to_dict(self) -> dict:
        return {"file": self.path, "rows": self.rows, "params_convention": self.params_convention,
                "flops_convention": self.flops_convention, "sha256": self.sha256,
                "created": self.created}


_COLS = "id, sweep, sha256, path, rows, params_convention, flops_convention, created"


class Imports:
    """Imports of external points (see the module docstring)."""

    db: sqlite3.Connection  # and Store's sweep_overrides() and tx()

    def add_import(self, name: str, df, *, path: str | None, params_convention: str,
                   flops_convention: str, lines: Sequence[int] | None = None
                   ) -> tuple[ImportRecord, bool]:
        """Add the (params, tokens, loss) rows of ``df`` to sweep ``name`` as one import, all or
        nothing. Returns (the import, True) — or (the earlier import of the same content,
        False) without writing anything. ``lines``: each row's file line (None: no file)."""
        self.sweep_overrides(name)  # raises for an unknown sweep
        pts = [(float(p), float(t), float(lo))
               for p, t, lo in zip(df["params"], df["tokens"], df["loss"])]
        if not pts:
            raise DataError(f"{path}: no points to import")
        lines = list(lines) if lines is not None else [None] * len(pts)
        if len(lines) != len(pts):
            raise StoreError("add_import: one line number per row needed")
        sha, now = content_sha256(pts), time.time()
        with self.tx() as db:
            old = db.execute(f"SELECT {_COLS} FROM imports WHERE sweep=? AND sha256=?",
                             (name, sha)).fetchone()
            if old is not None:
                return ImportRecord(*old), False
            cur = db.execute(
                "INSERT INTO imports (sweep, sha256, path, rows, params_convention, "
                "flops_convention, created) VALUES (?,?,?,?,?,?,?)",
                (name, sha, path, len(pts), params_convention, flops_convention, now))
            iid = cur.lastrowid
            db.executemany(
                "INSERT INTO external (sweep, params, tokens, loss, source, params_convention, "
                "imported_at, import_id, line, flops_convention) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(name, p, t, lo, path or "", params_convention, now, iid, ln, flops_convention)
                 for (p, t, lo), ln in zip(pts, lines)])
        return ImportRecord(iid, name, sha, path, len(pts), params_convention, flops_convention,
                            now), True

    def imports(self, name: str | None = None) -> list[ImportRecord]:
        """The imports of sweep ``name`` (None: of every sweep), oldest first."""
        q, args = f"SELECT {_COLS} FROM imports", ()
        if name is not None:
            q, args = q + " WHERE sweep=?", (name,)
        return [ImportRecord(*r) for r in self.db.execute(q + " ORDER BY id", args)]

    def import_summary(self, name: str) -> list[dict]:
        """Per import of sweep ``name``: file, rows, conventions and the [min, max] of its
        points' params, tokens, flops (6ND) and loss (nats/token as imported)."""
        import numpy as np

        out = []
        for rec in self.imports(name):
            rows = self.db.execute("SELECT params, tokens, loss FROM external WHERE import_id=?",
                                   (rec.id,)).fetchall()
            n, d, loss = np.array(rows, dtype=float).reshape(-1, 3).T
            cols = {"params": n, "tokens": d, "flops": flops_6nd(n, d), "loss": loss}
            out.append({**rec.to_dict(), "ranges": {
                k: [float(v.min()), float(v.max())] if len(v) else None
                for k, v in cols.items()}})
        return out

    def sweep_summaries(self) -> list[dict]:
        """Every sweep by name: ``counts`` of its planned runs per state, ``runs`` (planned runs
        in all), ``imported`` (points) and ``imports`` (files or W&B directories)."""
        counts: dict[str, dict[str, int]] = {}
        for sweep, state, k in self.db.execute(
                "SELECT sweep, state, COUNT(*) FROM runs WHERE in_plan=1 GROUP BY sweep, state"):
            counts.setdefault(sweep, {})[state] = k
        points = dict(self.db.execute("SELECT sweep, COUNT(*) FROM external GROUP BY sweep"))
        files = dict(self.db.execute("SELECT sweep, COUNT(*) FROM imports GROUP BY sweep"))
        names = [r[0] for r in self.db.execute("SELECT name FROM sweeps ORDER BY name")]
        return [{"sweep": n, "counts": counts.get(n, {}), "runs": sum(counts.get(n, {}).values()),
                 "imported": points.get(n, 0), "imports": files.get(n, 0)} for n in names]
