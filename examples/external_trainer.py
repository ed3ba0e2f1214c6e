"""A tiny external trainer for `sweep` (train.command), standing in for your own training code.

    sweep plan mine model.widths=[32,64] budget.tokens=[5e4,1e5,2e5] \\
        'train.command="python examples/external_trainer.py"'
    sweep launch mine

It reads the run's config from $SWEEP_RUN_CONFIG (JSON: width, tokens, steps, batch_size,
seq_len, lr, seed, train.log_every, ...), trains exactly `steps` optimizer steps of
batch_size × seq_len predicted tokens (so it ends at the run's token budget), and appends one
JSON line per log point to $SWEEP_METRICS: {"step", "tokens", "loss", "eval_loss", "lr"} with
losses in nats/token; the last line carries the final held-out loss. Exit code 0 means done.

The model is a byte-level context MLP (Bengio et al. 2003): the previous CONTEXT bytes, each
embedded in `width` dimensions, concatenated, one hidden layer of 4·width, logits over 256 bytes.
Data: the Python standard library's own sources (files hashed into train / held-out).
Only numpy and torch are needed; nothing here imports sweep.
"""

from __future__ import annotations

import json
import math
import os
import sys
import sysconfig
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CONTEXT = 4  # bytes of context per prediction
MAX_BYTES = 4_000_000  # enough text for these budgets; keeps start-up short


def load_bytes() -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) byte arrays from the stdlib's .py files, split by a hash of the path."""
    train, held = [], []
    total = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        data = path.read_bytes()
        (held if zlib.crc32(path.name.encode()) % 20 == 0 else train).append(data)
        total += len(data)
        if total > MAX_BYTES:
            break
    return tuple(np.frombuffer(b"\n".join(parts), dtype=np.uint8).astype(np.int64)
                 for parts in (train, held))


class ContextMLP(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(256, width)
        self.hidden = torch.nn.Linear(CONTEXT * width, 4 * width)
        self.out = torch.nn.Linear(4 * width, 256)

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:  # (B, CONTEXT) → (B, 256) logits
        return self.out(F.gelu(self.hidden(self.emb(ctx).flatten(1))))


def windows(data: np.ndarray, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Contexts (n, CONTEXT) and next bytes (n,) at the given start offsets."""
    idx = starts[:, None] + np.arange(CONTEXT + 1)
    w = torch.from_numpy(data[idx])
    return w[:, :CONTEXT], w[:, CONTEXT]


def main() -> int:
    cfg = json.loads(Path(os.environ["SWEEP_RUN_CONFIG"]).read_text())
    metrics = open(os.environ["SWEEP_METRICS"], "a", buffering=1)  # line-buffered: sweep tails it
    torch.manual_seed(cfg["seed"])
    torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "1")))
    rng = np.random.default_rng(cfg["seed"])
    train, held = load_bytes()
    steps, per_step = cfg["steps"], cfg["batch_size"] * cfg["seq_len"]  # predicted tokens
    model = ContextMLP(cfg["width"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.0)
    ex, ey = windows(held, np.arange(0, len(held) - CONTEXT - 1, 97)[:8192])
    log_every = cfg["train"]["log_every"]
    running, n = 0.0, 0
    for step in range(steps):
        lr = cfg["lr"] * 0.5 * (1 + math.cos(math.pi * step / max(1, steps - 1)))  # cosine to 0
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = windows(train, rng.integers(0, len(train) - CONTEXT - 1, per_step))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running, n = running + loss.item(), n + 1
        last = step == steps - 1
        if last or (step + 1) % log_every == 0:
            line = {"step": step, "tokens": (step + 1) * per_step, "loss": running / n,
                    "eval_loss": None, "lr": lr}
            if last:
                with torch.no_grad():
                    line["eval_loss"] = F.cross_entropy(model(ex), ey).item()
            metrics.write(json.dumps(line) + "\n")
            running, n = 0.0, 0
    print(f"done: {steps} steps, held-out {line['eval_loss']:.4f} nats/token", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
