"""A nanoGPT-style trainer for `sweep` (train.command) that resumes after preemption.

    sweep plan gpt model.widths=[64,128] budget.tokens=[1e6,4e6] \\
        'train.command="python examples/nanogpt_trainer.py"'
    sweep launch gpt                      # or: sweep launch gpt --executor slurm

It honours sweep's external-trainer contract (sweep/train/external.py):
- reads the run from $SWEEP_RUN_CONFIG (width, depth, heads, seq_len, vocab, steps,
  batch_size, lr, seed, train.{warmup_frac, min_lr_frac, weight_decay, beta1, beta2, grad_clip,
  log_every, eval_tokens, checkpoint_every}, data.{path, heldout_frac});
- appends one JSON line per log point to $SWEEP_METRICS ({"step", "tokens", "loss",
  "eval_loss", "lr"}, losses in nats/token; the last line carries the final held-out loss);
- saves `step_{step:06d}.pt` (model, optimizer, torch RNG, data-sampler position, the running
  log-loss sums) atomically in $SWEEP_CHECKPOINT_DIR every train.checkpoint_every steps, and
  resumes from the newest one there;
- on SIGUSR1 (preemption warning) or SIGTERM (stop) it finishes the current step, saves a
  checkpoint and exits 75 (EX_TEMPFAIL, "resume me"); 0 when the schedule is done.

Deterministic: seeded init and batches, so an interrupted and resumed run reaches the same final
loss as an uninterrupted one (bit-for-bit on CPU with a fixed thread count). Data: byte-level
(vocab 256), the Python standard library's sources or data.path (a text file or directory),
through sweep.train.data. Runs on CUDA when available (LOCAL_RANK picks the GPU), else CPU.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from sweep.records import DataSettings
from sweep.train.data import BatchSampler, eval_set, load_corpus

EXIT_RESUMABLE = 75  # EX_TEMPFAIL: checkpoint saved, start me again to resume
KEEP = 2  # checkpoints kept


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """nanoGPT's model: token + position embeddings, pre-LN blocks, tied output head."""

    def __init__(self, vocab: int, seq_len: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * depth) if name.endswith(("proj.weight",
                                                                    "out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def lr_at(step: int, cfg: dict) -> float:
    """Linear warmup, then cosine from lr down to min_lr_frac · lr at the last step."""
    t, steps = cfg["train"], cfg["steps"]
    warm = round(t["warmup_frac"] * steps)
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    frac = (step - warm) / max(1, steps - 1 - warm)
    return cfg["lr"] * (t["min_lr_frac"] + (1 - t["min_lr_frac"]) * 0.5 * (1 + math.cos(
        math.pi * frac)))


def save(ckpt_dir: Path, step: int, state: dict) -> None:
    """``step_{step:06d}.pt`` written atomically (temp file + rename); the newest KEEP kept."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=ckpt_dir, prefix=f"step_{step:06d}.pt.", suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, ckpt_dir / f"step_{step:06d}.pt")
    for old in sorted(ckpt_dir.glob("step_*.pt"))[:-KEEP]:
        old.unlink()


def newest(ckpt_dir: Path) -> dict | None:
    found = sorted(ckpt_dir.glob("step_*.pt")) if ckpt_dir.is_dir() else []
    return torch.load(found[-1], map_location="cpu", weights_only=False) if found else None


def main() -> int:
    stop = []
    for sig in (signal.SIGUSR1, signal.SIGTERM):  # the handler only sets a flag
        signal.signal(sig, lambda s, _f: stop.append(s))
    cfg = json.loads(Path(os.environ["SWEEP_RUN_CONFIG"]).read_text())
    ckpt_dir = Path(os.environ["SWEEP_CHECKPOINT_DIR"])
    torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "1")))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if cuda else "cpu")
    t = cfg["train"]
    corpus = load_corpus(DataSettings(**cfg["data"]))
    torch.manual_seed(cfg["seed"])
    model = GPT(cfg["vocab"], cfg["seq_len"], cfg["width"], cfg["depth"], cfg["heads"]).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t["weight_decay"]},
                             {"params": other, "weight_decay": 0.0}], lr=cfg["lr"],
                            betas=(t["beta1"], t["beta2"]))
    sampler = BatchSampler(corpus.train, cfg["batch_size"], cfg["seq_len"], cfg["seed"])
    ex, ey = eval_set(corpus.heldout, cfg["seq_len"], t["eval_tokens"])
    start, run_sum, run_n = 0, 0.0, 0
    if (state := newest(ckpt_dir)) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"])
        start, run_sum, run_n = state["step"] + 1, state["run_sum"], state["run_n"]
        print(f"resuming after step {state['step']}", file=sys.stderr)

    def checkpoint(step: int) -> None:
        save(ckpt_dir, step, {"step": step, "model": model.state_dict(), "opt": opt.state_dict(),
                              "sampler": sampler.state_dict(), "rng": torch.get_rng_state(),
                              "run_sum": run_sum, "run_n": run_n})

    steps, per_step = cfg["steps"], cfg["batch_tokens"]
    metrics = open(os.environ["SWEEP_METRICS"], "a", buffering=1)  # line-buffered: sweep tails it
    for step in range(start, steps):
        if stop:  # a step boundary: everything up to step - 1 is done and logged
            if step > start:
                checkpoint(step - 1)
            print(f"got {signal.Signals(stop[0]).name}: checkpoint after step {step - 1}, "
                  f"exit {EXIT_RESUMABLE}", file=sys.stderr)
            return EXIT_RESUMABLE
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = (z.to(device, non_blocking=True) for z in sampler())
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if t["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        opt.step()
        run_sum, run_n = run_sum + loss.item(), run_n + 1
        last = step == steps - 1
        if last or (step + 1) % t["log_every"] == 0:
            line = {"step": step, "tokens": (step + 1) * per_step, "loss": run_sum / run_n,
                    "eval_loss": None, "lr": lr}
            if last:
                model.eval()
                with torch.no_grad():
                    line["eval_loss"] = sum(model(ex[i:i + 64].to(device), ey[i:i + 64]
                                                  .to(device)).item() * len(ex[i:i + 64])
                                            for i in range(0, len(ex), 64)) / len(ex)
            metrics.write(json.dumps(line) + "\n")
            run_sum, run_n = 0.0, 0
        if not last and t["checkpoint_every"] and (step + 1) % t["checkpoint_every"] == 0:
            checkpoint(step)
    print(f"done: {steps} steps, held-out {line['eval_loss']:.6f} nats/token", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
