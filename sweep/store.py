"""The results store: one SQLite database per root (``<root>/sweep.db``); the only module that
touches it. Returns typed records or pandas DataFrames.

Why SQLite: it ships with Python (no server, nothing to install), it is transactional and
crash-safe (WAL journal), and many processes may write to it at once (each worker appends its
curve while it trains; writers queue on a busy timeout). DuckDB allows one writing process only
and Parquet needs a manifest we would have to make atomic by hand.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from sweep.errors import DataError, StoreError
from sweep.records import CurvePoint, PlannedRun, RunRecord, RunState, TrainResult
from sweep.store_frames import Frames
from sweep.store_imports import Imports
from sweep.store_schema import SCHEMA_VERSION, migrate, version

__all__ = ["DB_NAME", "SCHEMA_VERSION", "Store"]

DB_NAME = "sweep.db"

_RUN_COLS = ("width", "depth", "params", "params_nonembed", "tokens", "flops_6nd", "flops_attn",
             "lr")
_NAN = float("nan")  # binds as SQL NULL, without the slow adapter lookup Python does for None
_CURVE_COLS = ("run", "step", "tokens", "flops", "train_loss", "lr", "eval_loss", "eval_bpb",
               "end_of_schedule")
_DENSE_COLS = _CURVE_COLS[:6]  # what every logged point has
_ROWS_PER_STMT = 100  # rows per multi-row INSERT in import_curves


def _num(x: float | None) -> float:
    return _NAN if x is None else x


def _insert_rows(db: sqlite3.Connection, names: Sequence[str], arrays: Sequence) -> None:
    """INSERT OR REPLACE the rows of column ``arrays`` (numpy) into curves, many rows per
    statement: binding, not SQLite, is the cost, and it is per statement and per value."""
    m, n = len(names), len(arrays[0])
    if n == 0:
        return
    flat: list = [None] * (m * n)
    for i, a in enumerate(arrays):
        flat[i::m] = a.tolist()
    head = f"INSERT OR REPLACE INTO curves ({', '.join(names)}) VALUES "
    row = "(" + ",".join("?" * m) + ")"
    full, rest = divmod(n, _ROWS_PER_STMT)
    w = m * _ROWS_PER_STMT
    db.executemany(head + ",".join([row] * _ROWS_PER_STMT),
                   (flat[j * w:(j + 1) * w] for j in range(full)))
    if rest:
        db.execute(head + ",".join([row] * rest), flat[full * w:])


class Store(Frames, Imports):
    """``Store(root)`` opens (or creates) ``root/sweep.db``. Use as a context manager.
    Imported points: sweep/store_imports.py (``add_import``, ``imports``, ``import_summary``)."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True, timeout: float = 60.0):
        self.root = Path(root)
        self.path = self.root / DB_NAME
        if not self.path.exists() and not create:
            raise StoreError(f"no sweep store at {self.path}")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        try:
            self.db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        except StoreError:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self):
        """One IMMEDIATE transaction: the write lock is taken up front, so no deadlocks."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def _migrate(self) -> None:
        """Create or upgrade the schema (sweep/store_schema.py) in one IMMEDIATE transaction;
        a failure leaves the file at its old version."""
        if version(self.db) == SCHEMA_VERSION:
            return  # the common case: no write lock taken
        with self.tx() as db:
            v = version(db)
            if v > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {v}, newer than this sweep "
                    f"({SCHEMA_VERSION}); upgrade sweep")
            migrate(db, v)

    def schema_version(self) -> int:
        return version(self.db)

    def _rid(self, db: sqlite3.Connection, run_id: str) -> int:
        row = db.execute("SELECT rid FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown run '{run_id}'")
        return row[0]

    # ---- sweeps and plans -------------------------------------------------------------------
    def sweep_names(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM sweeps ORDER BY name")]

    def sweep_overrides(self, name: str) -> list[str]:
        row = self.db.execute("SELECT overrides FROM sweeps WHERE name=?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"unknown sweep '{name}' in {self.root} (run `sweep plan {name}`)")
        return json.loads(row[0])

    def put_plan(self, name: str, overrides: Sequence[str], config: dict,
                 runs: Sequence[PlannedRun], *, force: bool = False, append: bool = False
                 ) -> tuple[int, int, int]:
        """Write a sweep's plan. Returns (added, kept, dropped) run counts.

        Re-planning the same grid changes nothing. A different grid refuses unless ``force``;
        then runs no longer planned are kept with their results but leave the plan
        (``in_plan = 0``). ``append`` adds runs to an existing plan.
        """
        new_ids = [r.run_id for r in runs]
        with self.tx() as db:
            exists = db.execute("SELECT 1 FROM sweeps WHERE name=?", (name,)).fetchone()
            old = {r[0]: r[1] for r in db.execute(
                "SELECT run_id, in_plan FROM runs WHERE sweep=?", (name,))}
            planned_old = {k for k, v in old.items() if v}
            if exists and not append and planned_old != set(new_ids) and not force:
                raise StoreError(
                    f"sweep '{name}' already has a different plan ({len(planned_old)} runs); "
                    "use --force to replace it (finished runs keep their results)")
            now = time.time()
            if not exists:
                db.execute("INSERT INTO sweeps VALUES (?,?,?,?)",
                           (name, now, json.dumps(list(overrides)), json.dumps(config)))
            elif not append:
                db.execute("UPDATE sweeps SET overrides=?, config=? WHERE name=?",
                           (json.dumps(list(overrides)), json.dumps(config), name))
            pos0 = db.execute("SELECT COALESCE(MAX(position)+1, 0) FROM runs WHERE sweep=?",
                              (name,)).fetchone()[0]
            added = kept = 0
            for i, r in enumerate(runs):
                if r.run_id in old:
                    db.execute("UPDATE runs SET in_plan=1 WHERE run_id=?", (r.run_id,))
                    kept += 1
                    continue
                vals = [getattr(r, c) for c in _RUN_COLS]
                db.execute(
                    f"INSERT INTO runs (run_id, sweep, position, spec, {', '.join(_RUN_COLS)}, "
                    f"state) VALUES (?,?,?,?,{','.join('?' * len(_RUN_COLS))},?)",
                    [r.run_id, name, pos0 + i, json.dumps(r.to_dict()), *vals, RunState.PLANNED])
                added += 1
            dropped = 0
            if not append:
                gone = planned_old - set(new_ids)
                for rid in gone:
                    db.execute("UPDATE runs SET in_plan=0 WHERE run_id=?", (rid,))
                dropped = len(gone)
        return added, kept, dropped

    def ensure_sweep(self, name: str) -> None:
        """Create an empty sweep (for imports) if it does not exist."""
        with self.tx() as db:
            db.execute("INSERT OR IGNORE INTO sweeps VALUES (?,?,?,?)",
                       (name, time.time(), "[]", "{}"))

    def has_run(self, run_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row is not None

    # ---- runs -----------------------------------------------------------------------------
    def runs(self, name: str, *, include_dropped: bool = False) -> list[RunRecord]:
        self.sweep_overrides(name)  # raises for an unknown sweep
        q = "SELECT * FROM runs WHERE sweep=?" + ("" if include_dropped else " AND in_plan=1")
        cur = self.db.execute(q + " ORDER BY position", (name,))
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur:
            d = dict(zip(cols, row))
            out.append(RunRecord(
                run=PlannedRun.from_dict(json.loads(d["spec"])), state=RunState(d["state"]),
                job_id=d["job_id"], attempts=d["attempts"], started_at=d["started_at"],
                finished_at=d["finished_at"], heartbeat=d["heartbeat"],
                tokens_done=d["tokens_done"], final_loss=d["final_loss"], error=d["error"]))
        return out

    def progress(self, run_ids) -> list[tuple[str, int]]:
        """(state, tokens_done) of the given runs, for progress bars."""
        ids = list(run_ids)
        cur = self.db.execute("SELECT state, tokens_done FROM runs WHERE run_id IN "
                              f"({','.join('?' * len(ids))})", ids)
        return [(state, tokens or 0) for state, tokens in cur]

    def last_train_loss(self, name: str) -> dict[str, float]:
        """The latest logged train loss (nats/token) of each run of sweep ``name``."""
        cur = self.db.execute(
            "SELECT r.run_id, c.train_loss FROM curves c JOIN runs r ON r.rid=c.run "
            "WHERE r.sweep=? AND c.train_loss IS NOT NULL AND c.step = (SELECT MAX(step) FROM "
            "curves c2 WHERE c2.run=c.run AND c2.train_loss IS NOT NULL)", (name,))
        return dict(cur.fetchall())

    def _set(self, run_id: str, **fields: object) -> None:
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.tx() as db:
            n = db.execute(f"UPDATE runs SET {sets} WHERE run_id=?", [*fields.values(), run_id])
            if n.rowcount != 1:
                raise StoreError(f"unknown run '{run_id}'")

    def mark_queued(self, run_id: str, job_id: str) -> None:
        self._set(run_id, state=RunState.QUEUED, job_id=job_id, error=None)

    def start_attempt(self, run_id: str, job_id: str | None = None,
                      resume_step: int | None = None) -> int:
        """A worker starts (or restarts) a run. Returns the attempt number (1, 2, …).

        A fresh start clears the old curve; a resumed one (``resume_step``: the 0-based step of
        the last point its checkpoint covers) keeps the points up to that step only."""
        with self.tx() as db:
            row = db.execute("SELECT attempts, state, rid FROM runs WHERE run_id=?",
                             (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"unknown run '{run_id}'")
            if row[1] == RunState.COMPLETED:
                raise StoreError(f"run '{run_id}' is already completed")
            if resume_step is None:
                db.execute("DELETE FROM curves WHERE run=?", (row[2],))
            else:
                db.execute("DELETE FROM curves WHERE run=? AND step>?", (row[2], resume_step))
            done = db.execute("SELECT COALESCE(MAX(tokens), 0) FROM curves WHERE run=?",
                              (row[2],)).fetchone()[0]
            now = time.time()
            db.execute(
                "UPDATE runs SET state=?, attempts=?, started_at=?, heartbeat=?, finished_at=NULL,"
                " tokens_done=?, final_loss=NULL, error=NULL, job_id=COALESCE(?, job_id)"
                " WHERE run_id=?", (RunState.RUNNING, row[0] + 1, now, now, done, job_id, run_id))
        return row[0] + 1

    def mark_submitted(self, run_id: str, job_id: str) -> bool:
        """After sbatch: the run is queued on ``job_id``, unless its worker already started
        (a task can start before sbatch returns; then the worker's own record stands)."""
        with self.tx() as db:
            n = db.execute("UPDATE runs SET state=?, job_id=?, error=NULL WHERE run_id=? AND "
                           "COALESCE(job_id, '') != ?", (RunState.QUEUED, job_id, run_id, job_id))
            return n.rowcount == 1

    def mark_requeued(self, run_id: str, note: str | None = None) -> None:
        """A preempted worker saved its checkpoint and requeues itself: queued again."""
        self._set(run_id, state=RunState.QUEUED, heartbeat=time.time(), error=note)

    def set_state_if(self, run_id: str, from_states: Sequence[RunState], state: RunState,
                     error: str | None = None, *, job_id: str | None = None,
                     before: float | None = None) -> bool:
        """Move a run to ``state`` only if it is still in ``from_states`` (and, if given, still
        on ``job_id`` with no heartbeat since ``before``). Returns whether it moved."""
        q = (f"UPDATE runs SET state=?, error=?, finished_at=? WHERE run_id=? AND state IN "
             f"({','.join('?' * len(from_states))})")
        args: list[object] = [state, error, time.time(), run_id, *from_states]
        if job_id is not None:
            q += " AND job_id=?"
            args.append(job_id)
        if before is not None:
            q += " AND COALESCE(heartbeat, 0) < ?"
            args.append(before)
        with self.tx() as db:
            return db.execute(q, args).rowcount == 1

    def add_points(self, points: Iterable[CurvePoint]) -> None:
        """Append curve points (one transaction) and advance the run's heartbeat/progress."""
        pts = list(points)
        if not pts:
            return
        with self.tx() as db:
            rids = {r: self._rid(db, r) for r in {p.run_id for p in pts}}
            db.executemany(
                "INSERT OR REPLACE INTO curves VALUES (?,?,?,?,?,?,?,?,?)",
                [(rids[p.run_id], p.step, p.tokens, p.flops, _num(p.train_loss),
                  _num(p.eval_loss), _num(p.lr), int(p.end_of_schedule), _num(p.eval_bpb))
                 for p in pts])
            now = time.time()
            for run_id, rid in rids.items():
                last = max((p for p in pts if p.run_id == run_id), key=lambda p: p.step)
                db.execute("UPDATE runs SET heartbeat=?, tokens_done=? WHERE rid=?",
                           (now, last.tokens, rid))

    def import_curves(self, df) -> int:
        """Bulk-add curve points, all or nothing, for importers (live workers use add_points).

        ``df`` has ``run_id`` (runs already in the store), ``step``, ``tokens``, ``flops`` (6ND)
        and optionally ``train_loss``, ``eval_loss`` (nats/token), ``lr``, ``end_of_schedule``,
        ``eval_bpb``; NaN means none. A point replaces an existing one at the same (run, step).
        Returns the number of rows written."""
        import numpy as np
        import pandas as pd

        for c in ("run_id", "step", "tokens", "flops"):
            if c not in df:
                raise DataError(f"curve table has no {c!r} column")
        n = len(df)
        if n == 0:
            return 0
        codes, uniq = pd.factorize(df["run_id"])
        if (codes < 0).any():
            raise DataError("curve table has rows without a run_id")
        col: dict[str, np.ndarray] = {}
        for c in _CURVE_COLS[1:]:
            integer = c in ("step", "tokens", "end_of_schedule")
            if c not in df:
                col[c] = np.zeros(n, np.int64) if integer else np.full(n, _NAN)
                continue
            x = np.asarray(df[c])
            if x.dtype.kind not in "iub" or not integer:
                try:
                    x = x.astype(np.float64)
                except (TypeError, ValueError):
                    raise DataError(f"curve table column {c!r} is not numeric") from None
                if integer and not (np.isfinite(x).all() and (x == np.round(x)).all()):
                    raise DataError(f"curve table column {c!r} is not numeric integers throughout")
            col[c] = x.astype(np.int64) if integer else x
        # rows with an evaluation or the end flag (few) carry all columns; the rest leave
        # eval_loss, eval_bpb, end_of_schedule to their defaults: fewer values to bind
        full = ((col["end_of_schedule"] != 0) | ~np.isnan(col["eval_loss"])
                | ~np.isnan(col["eval_bpb"]))
        with self.tx() as db:
            col["run"] = np.array([self._rid(db, str(u)) for u in uniq], dtype=np.int64)[codes]
            try:
                _insert_rows(db, _DENSE_COLS, [col[c][~full] for c in _DENSE_COLS])
                _insert_rows(db, _CURVE_COLS, [col[c][full] for c in _CURVE_COLS])
            except sqlite3.IntegrityError:
                raise DataError("curve table has a missing step, tokens or flops value") from None
            top = pd.Series(col["tokens"]).groupby(col["run"]).max()
            db.executemany("UPDATE runs SET tokens_done=MAX(tokens_done, ?) WHERE rid=?",
                           zip(top.tolist(), top.index.tolist()))
        return n

    def finish(self, result: TrainResult) -> None:
        self._set(result.run_id, state=RunState.COMPLETED, finished_at=time.time(),
                  heartbeat=time.time(), final_loss=result.final_loss,
                  final_train_loss=result.final_train_loss, wall_seconds=result.wall_seconds,
                  tokens_done=result.tokens, epochs=result.epochs, error=None)

    def fail(self, run_id: str, error: str, state: RunState = RunState.FAILED) -> None:
        self._set(run_id, state=state, finished_at=time.time(), error=error[:2000])

    # ---- downstream metrics -------------------------------------------------------------------
    def add_metrics(self, run_id: str, values: Mapping[str, float]) -> None:
        """Set (insert or replace) named per-run metrics, e.g. ``heldout_top1_acc`` (a fraction).
        Names are non-empty strings; values finite numbers (else DataError)."""
        rows = []
        for name, value in values.items():
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"metric name must be a non-empty string, got {name!r}")
            try:
                v = float(value)
            except (TypeError, ValueError):
                v = float("nan")
            if not math.isfinite(v):
                raise DataError(f"metric {name!r} of run '{run_id}' is not a finite number: "
                                f"{value!r}")
            rows.append((run_id, name, v))
        with self.tx() as db:
            self._rid(db, run_id)
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?)", rows)
