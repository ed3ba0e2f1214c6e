"""Store speed: ingest 1 M curve rows, read the finals of 10 k runs (targets: ≤ 2 s, ≤ 0.2 s).

    python benchmarks/bench_store.py [--rows 1000000] [--runs 10000]

Writes a throwaway store in a temp dir. Ingest goes through Store.add_points (the path workers
use), in batches of 10 k rows per transaction; the read is Store.finals_df over all runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sweep import config
from sweep.plan import make_run
from sweep.records import CurvePoint, TrainResult
from sweep.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=10_000)
    args = ap.parse_args()
    cfg = config.load([])
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp)) as st:
        runs = [make_run("bench", 32 * (1 + i % 8), 1 + i % 4, 1024 * (10 + i), cfg)
                for i in range(args.runs)]
        st.put_plan("bench", [], {}, runs)
        per_run = args.rows // 100
        points = [CurvePoint(runs[i // per_run].run_id, i % per_run, (i % per_run + 1) * 1024,
                             6e6 * i, 3.0 - 1e-6 * i, None, 1e-3) for i in range(args.rows)]
        t0 = time.perf_counter()
        for s in range(0, len(points), 10_000):
            st.add_points(points[s:s + 10_000])
        ingest = time.perf_counter() - t0
        for r in runs:
            st.db.execute("UPDATE runs SET state='completed', final_loss=2.0 WHERE run_id=?",
                          (r.run_id,))
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            df = st.finals_df(["bench"])
            best = min(best, time.perf_counter() - t0)
        assert len(df) == args.runs
        n = st.db.execute("SELECT COUNT(*) FROM curves").fetchone()[0]
    print(f"ingest {n:,} curve rows: {ingest:.2f} s ({n / ingest:,.0f} rows/s; target <= 2 s)")
    print(f"read finals of {args.runs:,} runs: {best * 1000:.0f} ms (best of 5; target <= 200 ms)")


if __name__ == "__main__":
    main()
