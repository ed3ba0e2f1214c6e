"""The store's schema and its migration chain (used only by sweep/store.py).

A new database is created with ``V1_DDL`` and brought forward by the same steps an old one
takes, so every store, old or new, ends in one schema. Each step ``MIGRATIONS[v]`` turns
version v into v + 1; ``migrate`` runs all of them inside the caller's IMMEDIATE transaction,
so a failure (lock timeout, disk full, a kill) rolls back to the untouched old version.

v1 → v2: ``runs`` gets a stable integer key ``rid`` (``INTEGER PRIMARY KEY``, survives VACUUM)
and ``epochs``; ``curves`` is keyed by (run = runs.rid, step) in a WITHOUT ROWID table (half
the size, faster appends) and gains ``eval_bpb``; new table ``metrics``. Both tables are
rebuilt (rename, create, copy, drop); every row is kept, which the step checks by counting.

v2 → v3: new table ``imports`` (one row per imported file or W&B directory, keyed by
(sweep, sha256 of its normalised rows), with its conventions); ``external`` rows get
``import_id``, ``line`` (the file line, header = 1; NULL for points imported before v3) and
``flops_convention`` beside their ``params_convention`` (so ``external_df`` carries both).
Each v2 import call (same sweep, source, convention and time) becomes one import; a later copy
of the same content (v2 imported it twice) keeps its rows under a ``sha256`` suffixed
``+copyK`` so that nothing is lost and a new re-import is still recognised. New table ``fits``
(the fit cache, sweep/study.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sweep.store_imports import content_sha256

SCHEMA_VERSION = 3

# Version 1, verbatim: the start of the chain. Never edit; add a step instead.
V1_DDL = """
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

_V1_RUN_COLS = ("run_id, sweep, position, in_plan, spec, width, depth, params, params_nonembed, "
                "tokens, flops_6nd, flops_attn, lr, state, job_id, attempts, started_at, "
                "finished_at, heartbeat, tokens_done, final_loss, final_train_loss, "
                "wall_seconds, error")
_V1_CURVE_COLS = "step, tokens, flops, train_loss, eval_loss, lr, end_of_schedule"


def _count(db: sqlite3.Connection, table: str) -> int:
    return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _v1_to_v2(db: sqlite3.Connection) -> None:
    n_runs, n_curves = _count(db, "runs"), _count(db, "curves")
    db.execute("ALTER TABLE curves RENAME TO curves_v1")
    db.execute("ALTER TABLE runs RENAME TO runs_v1")
    db.execute("DROP INDEX runs_sweep")
    db.execute("""CREATE TABLE runs (
        rid INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE,
        sweep TEXT NOT NULL REFERENCES sweeps(name), position INTEGER,
        in_plan INTEGER NOT NULL DEFAULT 1, spec TEXT NOT NULL,
        width INTEGER, depth INTEGER, params INTEGER, params_nonembed INTEGER, tokens INTEGER,
        flops_6nd REAL, flops_attn REAL, lr REAL,
        state TEXT NOT NULL, job_id TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        started_at REAL, finished_at REAL, heartbeat REAL, tokens_done INTEGER NOT NULL DEFAULT 0,
        final_loss REAL, final_train_loss REAL, wall_seconds REAL, error TEXT, epochs REAL)""")
    db.execute("CREATE INDEX runs_sweep ON runs(sweep)")
    db.execute(f"INSERT INTO runs (rid, {_V1_RUN_COLS}) "
               f"SELECT rowid, {_V1_RUN_COLS} FROM runs_v1 ORDER BY rowid")
    db.execute("""CREATE TABLE curves (
        run INTEGER NOT NULL REFERENCES runs(rid), step INTEGER NOT NULL,
        tokens INTEGER NOT NULL, flops REAL NOT NULL, train_loss REAL, eval_loss REAL, lr REAL,
        end_of_schedule INTEGER NOT NULL DEFAULT 0, eval_bpb REAL,
        PRIMARY KEY (run, step)) WITHOUT ROWID""")
    db.execute(f"INSERT INTO curves (run, {_V1_CURVE_COLS}) SELECT r.rid, "
               + ", ".join(f"c.{c.strip()}" for c in _V1_CURVE_COLS.split(","))
               + " FROM curves_v1 c JOIN runs r USING (run_id)")
    if (_count(db, "runs"), _count(db, "curves")) != (n_runs, n_curves):
        raise sqlite3.DatabaseError(
            f"migration to v2 would lose {n_curves - _count(db, 'curves')} curve rows of runs "
            "not in the runs table; store left at v1 (to drop them: DELETE FROM curves WHERE "
            "run_id NOT IN (SELECT run_id FROM runs))")
    db.execute("DROP TABLE curves_v1")
    db.execute("DROP TABLE runs_v1")
    db.execute("""CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs(run_id), name TEXT NOT NULL,
        value REAL NOT NULL, PRIMARY KEY (run_id, name))""")


def _v2_to_v3(db: sqlite3.Connection) -> None:
    n_ext = _count(db, "external")
    db.execute("""CREATE TABLE imports (
        id INTEGER PRIMARY KEY, sweep TEXT NOT NULL, sha256 TEXT NOT NULL, path TEXT,
        rows INTEGER NOT NULL, params_convention TEXT NOT NULL, flops_convention TEXT NOT NULL,
        created REAL NOT NULL, UNIQUE(sweep, sha256))""")
    db.execute("ALTER TABLE external ADD COLUMN import_id INTEGER REFERENCES imports(id)")
    db.execute("ALTER TABLE external ADD COLUMN line INTEGER")
    db.execute("ALTER TABLE external ADD COLUMN flops_convention TEXT")
    groups: dict[tuple, list[tuple]] = {}
    for row in db.execute("SELECT rowid, sweep, source, params_convention, imported_at, params, "
                          "tokens, loss FROM external ORDER BY rowid"):
        groups.setdefault(row[1:5], []).append((row[0], *row[5:]))
    for (sweep, source, conv, created), rows in groups.items():
        sha = content_sha256(r[1:] for r in rows)
        k, key = 1, sha
        while db.execute("SELECT 1 FROM imports WHERE sweep=? AND sha256=?",
                         (sweep, key)).fetchone():
            k += 1
            key = f"{sha}+copy{k}"
        iid = db.execute(
            "INSERT INTO imports (sweep, sha256, path, rows, params_convention, flops_convention,"
            " created) VALUES (?,?,?,?,?,?,?)",
            (sweep, key, source, len(rows), conv, "6nd", created)).lastrowid
        db.executemany("UPDATE external SET import_id=?, flops_convention='6nd' WHERE rowid=?",
                       [(iid, r[0]) for r in rows])
    db.execute("CREATE INDEX external_import ON external(import_id)")
    missing = db.execute("SELECT COUNT(*) FROM external WHERE import_id IS NULL").fetchone()[0]
    counted = db.execute("SELECT COALESCE(SUM(rows), 0) FROM imports").fetchone()[0]
    if (_count(db, "external"), missing, counted) != (n_ext, 0, n_ext):
        raise sqlite3.DatabaseError(f"migration to v3 would mislabel imported points ({n_ext} "
                                    f"rows, {missing} without an import); store left at v2")
    db.execute("CREATE TABLE fits (key TEXT PRIMARY KEY, sweep TEXT, created REAL NOT NULL, "
               "payload TEXT NOT NULL)")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def version(db: sqlite3.Connection) -> int:
    """The schema version recorded in ``db`` (0: an empty database)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() is None:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def migrate(db: sqlite3.Connection, current: int) -> None:
    """Bring ``db`` from version ``current`` (0: empty) to SCHEMA_VERSION. Call inside a
    transaction; raises on failure so the caller rolls back."""
    if current == 0:
        for stmt in filter(str.strip, V1_DDL.split(";")):
            db.execute(stmt)
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        current = 1
    for v in range(current, SCHEMA_VERSION):
        MIGRATIONS[v](db)
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(v + 1),))
