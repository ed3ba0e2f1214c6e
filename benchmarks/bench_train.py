"""Training speed, measured in one process: this machine's fp32 matmul peak, then tokens/s,
model FLOP/s and MFU of the trainer's ``train()`` and of a plain nanoGPT-style reference loop
(same model, batch and optimizer), interleaved, on the demo grid's widths at depth 2, seq 64,
batch 16, and 256; the ratio trainer ÷ reference. Rates per CPU-second, medians of rounds, 1
thread by default (one job slot). Same as ``sweep bench train``.

    .venv/bin/python benchmarks/bench_train.py [--widths 32 64 96 128 256] [--rounds 5]

The reference is nanoGPT's own loop and model (sweep/train/reference.py). On a GPU see
benchmarks/bench_gpu.py.
"""

from __future__ import annotations

import argparse

from sweep.train.bench import DEMO_WIDTHS, bench, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=list(DEMO_WIDTHS))
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="CPU-seconds per measurement")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    peak, rows = bench(tuple(a.widths), a.depth, a.seq_len, a.batch_size, a.rounds, a.seconds,
                       a.threads or None)
    print(table(peak, rows, a.depth, a.seq_len, a.batch_size))


if __name__ == "__main__":
    main()
