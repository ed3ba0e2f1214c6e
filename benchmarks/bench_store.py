"""Store speed: ingest 1 M curve rows, read the finals of 10 k runs (targets: ≤ 2 s, ≤ 0.2 s).

    python benchmarks/bench_store.py [--rows 1000000] [--runs 10000] [--live-rows 200000]

Writes throwaway stores in a temp dir (WAL, synchronous=NORMAL, as in use). The curves look like
real ones: cosine LR, a held-out loss and bits/byte every 100 steps, the last step flagged.
- ingest: Store.import_curves (the bulk path importers use): 1 M rows of 100 runs, one
  transaction, wall time including the DataFrame → rows conversion;
- live: Store.add_points (the path workers use, one transaction per call) in calls of 10 rows,
  as a worker flushes, reported as rows/s;
- finals: Store.finals_df over 10 k completed runs, best of 5.
Prints the load average too: the machine is shared, so the figures are noisy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sweep import config
from sweep.plan import make_run
from sweep.records import CurvePoint
from sweep.store import Store


def curves(run_ids: list[str], per_run: int) -> pd.DataFrame:
    step = np.tile(np.arange(per_run), len(run_ids))
    ev = (step % 100 == 99) | (step == per_run - 1)
    loss = 3.0 * (step + 10.0) ** -0.1
    return pd.DataFrame({
        "run_id": np.repeat(run_ids, per_run), "step": step, "tokens": (step + 1) * 1024,
        "flops": 6e6 * (step + 1) * 1024, "train_loss": loss,
        "eval_loss": np.where(ev, loss + 0.05, np.nan),
        "lr": 1e-3 * (0.1 + 0.45 * (1 + np.cos(np.pi * step / per_run))),
        "end_of_schedule": (step == per_run - 1).astype(int),
        "eval_bpb": np.where(ev, (loss + 0.05) / np.log(2), np.nan)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--live-rows", type=int, default=200_000)
    args = ap.parse_args()
    cfg = config.load([])
    runs = [make_run("bench", 32 * (1 + i % 8), 1 + i % 4, 1024 * (10 + i), cfg)
            for i in range(args.runs)]
    ids = [r.run_id for r in runs]
    with tempfile.TemporaryDirectory() as tmp:
        with Store(Path(tmp) / "a") as st:
            st.put_plan("bench", [], {}, runs)
            df = curves(ids[:100], args.rows // 100)
            t0, c0 = time.perf_counter(), time.process_time()
            n = st.import_curves(df)
            ingest, ingest_cpu = time.perf_counter() - t0, time.process_time() - c0
            assert st.db.execute("SELECT COUNT(*) FROM curves").fetchone()[0] == n
            st.db.execute("UPDATE runs SET state='completed', final_loss=2.0")
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                fin = st.finals_df(["bench"])
                best = min(best, time.perf_counter() - t0)
            assert len(fin) == args.runs
        with Store(Path(tmp) / "b") as st:
            st.put_plan("bench", [], {}, runs[:100])
            live = curves(ids[:100], args.live_rows // 100)
            pts = [CurvePoint(*row) for row in zip(
                live.run_id, live.step.tolist(), live.tokens.tolist(), live.flops.tolist(),
                live.train_loss.tolist(), [None if np.isnan(x) else x for x in live.eval_loss],
                live.lr.tolist(), live.end_of_schedule.astype(bool).tolist())]
            t0 = time.perf_counter()
            for s in range(0, len(pts), 10):
                st.add_points(pts[s:s + 10])
            live_s = time.perf_counter() - t0
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"ingest {n:,} curve rows (import_curves): {ingest:.2f} s "
          f"wall, {ingest_cpu:.2f} s CPU of this process ({n / ingest:,.0f} rows/s; target <= 2 s)")
    print(f"live add_points, 10 rows per transaction: {len(pts) / live_s:,.0f} rows/s "
          f"({len(pts) / 10 / live_s:,.0f} transactions/s)")
    print(f"read finals of {args.runs:,} runs: {best * 1000:.0f} ms (best of 5; target <= 200 ms)")


if __name__ == "__main__":
    main()
