"""The store's pandas readers and its fit cache (a mixin of sweep.store.Store, on its connection).

Units: losses in nats/token, ``eval_bpb`` in bits/byte, ``flops_6nd`` = 6 · params_nonembed ·
tokens, ``epochs`` in passes over the training split.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

FITS_KEPT = 32  # cached fits kept per sweep (the newest); older ones are deleted on put


class Frames:
    """DataFrames of runs, curves, finals, metrics and imported points of one or many sweeps
    (``names``; None: all)."""

    db: sqlite3.Connection

    def _df(self, sql: str, names: Sequence[str] | None, cond: str = "",
            cond_args: Sequence[object] = ()):
        import pandas as pd

        clauses, args = [c for c in [cond] if c], list(cond_args)
        if names:
            clauses.append(f"r.sweep IN ({','.join('?' * len(names))})")
            args += list(names)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return pd.read_sql_query(sql.format(where=where), self.db, params=args)

    def runs_df(self, names: Sequence[str] | None = None):
        """One row per run (``in_plan`` = 0: dropped by a re-plan): shape, budget, state,
        timings, final held-out loss (nats/token)."""
        df = self._df("SELECT r.* FROM runs r{where} ORDER BY r.sweep, r.position", names)
        return df.drop(columns=["spec", "rid"])

    def curves_df(self, names: Sequence[str] | None = None):
        """Every logged point: step, tokens, FLOPs (6ND), train/held-out loss (nats/token), LR,
        held-out bits/byte (``eval_bpb``)."""
        return self._df("SELECT r.sweep, r.run_id, c.step, c.tokens, c.flops, c.train_loss, "
                        "c.eval_loss, c.lr, c.end_of_schedule, c.eval_bpb FROM curves c "
                        "JOIN runs r ON r.rid=c.run{where} ORDER BY r.sweep, r.run_id, c.step",
                        names)

    def finals_df(self, names: Sequence[str] | None = None):
        """Completed, planned runs with their end-of-schedule held-out loss (nats/token) and
        ``epochs`` (passes over the training split; null where unknown)."""
        return self._df(
            "SELECT r.sweep, r.run_id, r.width, r.depth, r.params, r.params_nonembed, r.tokens,"
            " r.flops_6nd, r.flops_attn, r.final_loss, r.wall_seconds, r.epochs FROM runs r{where}"
            " ORDER BY r.sweep, r.position", names,
            "r.state='completed' AND r.in_plan=1 AND r.final_loss IS NOT NULL")

    def end_of_schedule_df(self, names: Sequence[str] | None = None):
        """Per run: ``held_out_final`` (1 if a curve point at the end of the schedule has a
        held-out loss) and ``n_points`` (logged curve points)."""
        return self._df(
            "SELECT r.run_id, COALESCE(MAX(c.end_of_schedule=1 AND c.eval_loss IS NOT NULL), 0)"
            " AS held_out_final, COUNT(c.step) AS n_points FROM runs r LEFT JOIN curves c"
            " ON c.run=r.rid{where} GROUP BY r.run_id", names)

    def external_df(self, names: Sequence[str] | None = None):
        """Imported points: params (as their source counts them), tokens, loss (nats/token)."""
        return self._df("SELECT r.* FROM external r{where} ORDER BY r.sweep, r.rowid", names)

    def metrics_df(self, names: Sequence[str] | None = None, *,
                   metrics: Sequence[str] | None = None):
        """One row per (run, metric) of sweeps ``names`` (all if None), optionally only the
        metric names in ``metrics``: run_id, sweep, name, value, params, params_nonembed,
        tokens, flops_6nd (6ND, N = params_nonembed), final_loss (nats/token, null if unfinished).
        """
        cond, args = "", []
        if metrics:
            cond = f"m.name IN ({','.join('?' * len(metrics))})"
            args = list(metrics)
        df = self._df(
            "SELECT m.run_id, r.sweep, m.name, m.value, r.params, r.params_nonembed, r.tokens,"
            " r.flops_6nd, r.final_loss FROM metrics m JOIN runs r USING (run_id){where}"
            " ORDER BY r.sweep, r.position, m.name", names, cond, args)
        return df

    # ---- the fit cache (sweep.study.fit_points): table fits (schema v3), one row per key ----
    def get_fit(self, key: str) -> str | None:
        """The cached fit's payload (JSON of Fit.to_state()) under ``key``, or None."""
        row = self.db.execute("SELECT payload FROM fits WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def put_fit(self, key: str, sweep: str | None, payload: str) -> None:
        """Cache a fit's payload under ``key``; keep the newest FITS_KEPT of the sweep."""
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO fits VALUES (?,?,?,?)",
                       (key, sweep, time.time(), payload))
            db.execute("DELETE FROM fits WHERE sweep IS ? AND key NOT IN (SELECT key FROM fits "
                       "WHERE sweep IS ? ORDER BY created DESC LIMIT ?)",
                       (sweep, sweep, FITS_KEPT))
