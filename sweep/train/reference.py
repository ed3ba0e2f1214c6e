"""A minimal nanoGPT training loop: the yardstick of ``sweep bench train``.

``NanoGPT`` is Karpathy's nanoGPT ``model.py`` (MIT licence) with ``bias=False``, cut to what
training uses: its own LayerNorm, causal ``scaled_dot_product_attention``, ``nn.GELU()`` (the exact
erf form), tied token embedding and LM head, GPT-2 init with the scaled residual projections. It is
built in the same module order as ``sweep.train.model.GPT``, so under one seed both start from
the same weights and compute the same function (tests/train/test_bench.py checks it).

``nanogpt_steps`` is the inner loop of nanoGPT's ``train.py`` without DDP, gradient accumulation
or evaluation: ``get_batch`` (``torch.randint`` starts, one ``torch.stack`` of numpy windows per
batch, pinned and copied non-blocking on CUDA), the LR set by hand, forward under the autocast
context, backward, ``clip_grad_norm_``, AdamW step, ``zero_grad(set_to_none=True)`` and
``loss.item()`` every step (``log_interval = 1``). One deliberate difference: nanoGPT's
``configure_optimizers`` uses the fused AdamW on CUDA only; here it is fused on CPU too (as in the
trainer), so a comparison measures the loops, not two AdamW kernels.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sweep.records import PlannedRun


class _LayerNorm(nn.Module):
    def __init__(self, ndim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)


class _Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.c_attn = nn.Linear(d, 3 * d, bias=False)
        self.c_proj = nn.Linear(d, d, bias=False)
        self.n_head, self.n_embd = heads, d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class _MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d, bias=False)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = _LayerNorm(d)
        self.attn = _Attention(d, heads)
        self.ln_2 = _LayerNorm(d)
        self.mlp = _MLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """nanoGPT's GPT (bias=False, dropout 0); ``forward(idx, targets)`` → (logits, loss)."""

    def __init__(self, width: int, depth: int, heads: int, seq_len: int, vocab: int) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, width),
            wpe=nn.Embedding(seq_len, width),
            drop=nn.Dropout(0.0),
            h=nn.ModuleList([_Block(width, heads) for _ in range(depth)]),
            ln_f=_LayerNorm(width),
        ))
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * depth))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                   ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay: float, learning_rate: float,
                             betas: tuple[float, float]) -> torch.optim.AdamW:
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=True)


def nanogpt_steps(run: PlannedRun, data: np.ndarray, device: str = "cpu",
                  precision: str = "fp32") -> Iterator[float]:
    """nanoGPT's training loop on ``data`` (token ids), one step per ``next``; yields the loss
    (nats/token). LR: nanoGPT's linear warmup then cosine (10 warmup steps)."""
    ts, T, B = run.train, run.seq_len, run.batch_size
    torch.manual_seed(run.seed)
    dev = torch.device(device)
    model = NanoGPT(run.width, run.depth, run.heads, T, run.vocab).to(dev)
    opt = model.configure_optimizers(ts.weight_decay, run.lr, (ts.beta1, ts.beta2))
    ctx = (torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16"
           else contextlib.nullcontext())

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(data) - T, (B,))
        x = torch.stack([torch.from_numpy(data[i:i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + T].astype(np.int64)) for i in ix])
        if dev.type == "cuda":
            return x.pin_memory().to(dev, non_blocking=True), y.pin_memory().to(dev,
                                                                                  non_blocking=True)
        return x, y

    X, Y = get_batch()
    for it in range(run.steps):
        lr = run.lr * min(1.0, (it + 1) / 10) * 0.5 * (1 + math.cos(math.pi * it / run.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        with ctx:
            _, loss = model(X, Y)
        X, Y = get_batch()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), ts.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        yield loss.item()
