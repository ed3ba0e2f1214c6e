"""The results store: one SQLite database per root (``<root>/sweep.db``); the only module that
touches it. Returns typed records or pandas DataFrames.

Why SQLite: it ships with Python (no server, nothing to install), it is transactional and
crash-safe (WAL journal), and many processes may write to it at once (each worker appends its
curve while it trains; writers queue on a busy timeout). DuckDB allows one writing process only
and Parquet needs a manifest we would have to make atomic by hand.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

from sweep.errors import StoreError
from sweep.records import CurvePoint, PlannedRun, RunRecord, RunState, TrainResult

SCHEMA_VERSION = 1
DB_NAME = "sweep.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY, created_at REAL NOT NULL, overrides TEXT NOT NULL,
    config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, sweep TEXT NOT NULL REFERENCES sweeps(name), position INTEGER,
    in_plan INTEGER NOT NULL DEFAULT 1, spec TEXT NOT NULL,
    width INTEGER, depth INTEGER, params INTEGER, params_nonembed INTEGER, tokens INTEGER,
    flops_6nd REAL, flops_attn REAL, lr REAL,
    state TEXT NOT NULL, job_id TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL, finished_at REAL, heartbeat REAL, tokens_done INTEGER NOT NULL DEFAULT 0,
    final_loss REAL, final_train_loss REAL, wall_seconds REAL, error TEXT);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs(sweep);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL REFERENCES runs(run_id), step INTEGER NOT NULL, tokens INTEGER NOT NULL,
    flops REAL NOT NULL, train_loss REAL, eval_loss REAL, lr REAL,
    end_of_schedule INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (run_id, step));
CREATE TABLE IF NOT EXISTS external (
    sweep TEXT NOT NULL REFERENCES sweeps(name), params REAL NOT NULL, tokens REAL NOT NULL,
    loss REAL NOT NULL, source TEXT NOT NULL, params_convention TEXT NOT NULL,
    imported_at REAL NOT NULL);
"""

_RUN_COLS = ("width", "depth", "params", "params_nonembed", "tokens", "flops_6nd", "flops_attn", "lr")


class Store:
    """``Store(root)`` opens (or creates) ``root/sweep.db``. Use as a context manager."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True):
        self.root = Path(root)
        self.path = self.root / DB_NAME
        if not self.path.exists() and not create:
            raise StoreError(f"no sweep store at {self.path}")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=60000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None

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
        with self.tx() as db:
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                db.execute(stmt)
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {row[0]}, newer than this sweep "
                    f"({SCHEMA_VERSION}); upgrade sweep")

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
        return self.db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None

    def add_external(self, name: str, df, *, source: str, params_convention: str) -> int:
        """Imported (params, tokens, loss) points: they fit like completed runs. Returns rows."""
        self.sweep_overrides(name)
        now = time.time()
        rows = [(name, float(p), float(t), float(lo), source, params_convention, now)
                for p, t, lo in zip(df["params"], df["tokens"], df["loss"])]
        with self.tx() as db:
            db.executemany("INSERT INTO external VALUES (?,?,?,?,?,?,?)", rows)
        return len(rows)

    def external_df(self, names: Sequence[str] | None = None):
        """Imported points: params (as their source counts them), tokens, loss (nats/token)."""
        return self._df("SELECT r.* FROM external r{where} ORDER BY r.sweep, r.rowid", names)

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
        cur = self.db.execute("SELECT state, tokens_done FROM runs WHERE run_id IN (%s)"
                              % ",".join("?" * len(ids)), ids)
        return [(state, tokens or 0) for state, tokens in cur]

    def last_train_loss(self, name: str) -> dict[str, float]:
        """The latest logged train loss (nats/token) of each run of sweep ``name``."""
        cur = self.db.execute(
            "SELECT c.run_id, c.train_loss FROM curves c JOIN runs r USING (run_id) "
            "WHERE r.sweep=? AND c.train_loss IS NOT NULL AND c.step = (SELECT MAX(step) FROM "
            "curves c2 WHERE c2.run_id=c.run_id AND c2.train_loss IS NOT NULL)", (name,))
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
            row = db.execute("SELECT attempts, state FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"unknown run '{run_id}'")
            if row[1] == RunState.COMPLETED:
                raise StoreError(f"run '{run_id}' is already completed")
            if resume_step is None:
                db.execute("DELETE FROM curves WHERE run_id=?", (run_id,))
            else:
                db.execute("DELETE FROM curves WHERE run_id=? AND step>?", (run_id, resume_step))
            done = db.execute("SELECT COALESCE(MAX(tokens), 0) FROM curves WHERE run_id=?",
                              (run_id,)).fetchone()[0]
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
            db.executemany(
                "INSERT OR REPLACE INTO curves VALUES (?,?,?,?,?,?,?,?)",
                [(p.run_id, p.step, p.tokens, p.flops, p.train_loss, p.eval_loss, p.lr,
                  int(p.end_of_schedule)) for p in pts])
            last = max(pts, key=lambda p: p.step)
            db.execute("UPDATE runs SET heartbeat=?, tokens_done=? WHERE run_id=?",
                       (time.time(), last.tokens, last.run_id))

    def finish(self, result: TrainResult) -> None:
        self._set(result.run_id, state=RunState.COMPLETED, finished_at=time.time(),
                  heartbeat=time.time(), final_loss=result.final_loss,
                  final_train_loss=result.final_train_loss, wall_seconds=result.wall_seconds,
                  tokens_done=result.tokens, error=None)

    def fail(self, run_id: str, error: str, state: RunState = RunState.FAILED) -> None:
        self._set(run_id, state=state, finished_at=time.time(), error=error[:2000])

    # ---- DataFrames -------------------------------------------------------------------------
    def _df(self, sql: str, names: Sequence[str] | None, cond: str = ""):
        import pandas as pd

        clauses, args = [c for c in [cond] if c], []
        if names:
            clauses.append(f"r.sweep IN ({','.join('?' * len(names))})")
            args = list(names)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return pd.read_sql_query(sql.format(where=where), self.db, params=args)

    def runs_df(self, names: Sequence[str] | None = None):
        """One row per run (``in_plan`` = 0: dropped by a re-plan): shape, budget, state,
        timings, final held-out loss (nats/token)."""
        df = self._df("SELECT r.* FROM runs r{where} ORDER BY r.sweep, r.position", names)
        return df.drop(columns=["spec"])

    def curves_df(self, names: Sequence[str] | None = None):
        """Every logged point: step, tokens, FLOPs (6ND), train/held-out loss (nats/token), LR."""
        return self._df("SELECT r.sweep, c.* FROM curves c JOIN runs r USING (run_id){where} "
                        "ORDER BY r.sweep, c.run_id, c.step", names)

    def finals_df(self, names: Sequence[str] | None = None):
        """Completed, planned runs with their end-of-schedule held-out loss (nats/token)."""
        return self._df(
            "SELECT r.sweep, r.run_id, r.width, r.depth, r.params, r.params_nonembed, r.tokens,"
            " r.flops_6nd, r.flops_attn, r.final_loss, r.wall_seconds FROM runs r{where}"
            " ORDER BY r.sweep, r.position", names,
            "r.state='completed' AND r.in_plan=1 AND r.final_loss IS NOT NULL")
