"""The built-in trainer on a GPU, in one command: tokens/s and MFU for a few widths.

    .venv/bin/python benchmarks/bench_gpu.py                 # cuda, bf16, widths 256 512 1024
    .venv/bin/python benchmarks/bench_gpu.py --precision fp32 --compile
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --widths 64 --seq-len 64 --depth 2

For each width: the trainer (``sweep.train.loop.train`` with train.device=cuda, its bf16
autocast with fp32 master weights or TF32 matmuls for fp32, fused AdamW, pinned non-blocking
batches, optional torch.compile) and nanoGPT's own loop (sweep/train/reference.py) on the same
GPU, alternating step by step; tokens per wall-second and MFU against the GPU's data-sheet dense
peak (sweep/train/device.py PEAK_TFLOPS; a GPU not in the table gets a measured matmul peak).
FLOPs per token as nanoGPT's estimate_mfu counts them (tied LM head included). Same measurement
as ``sweep bench train --device cuda --precision bf16 --widths 256,512,1024 --depth 4
--seq-len 256 --batch-size 32``.

Without a GPU it prints why it skipped and exits 0 (``--device cpu`` runs it on the CPU).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu", "mps"])
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the trainer's model")
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    a = ap.parse_args(argv)

    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: skipped: no CUDA GPU here (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}); run with --device cpu to measure the CPU instead")
        return 0
    if a.device == "mps" and not torch.backends.mps.is_available():
        print("bench_gpu: skipped: no MPS device here (torch.backends.mps.is_available() is "
              "False)")
        return 0
    from sweep.train.bench import bench, table

    peak, rows = bench(tuple(a.widths), a.depth, a.seq_len, a.batch_size, a.rounds, a.seconds,
                       threads=None if a.device != "cpu" else 1, device=a.device,
                       precision=a.precision, compile=a.compile,
                       echo=lambda s: print(s, file=sys.stderr))
    print(table(peak, rows, a.depth, a.seq_len, a.batch_size, a.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
