"""nanoGPT-style decoder-only transformer (Karpathy's nanoGPT, without biases).

Shapes match ``sweep.shapes``: per layer attention 4·d² and MLP 8·d² weights plus two LayerNorm
weights (2·d); a final LayerNorm (d); the token embedding ``wte`` (vocab·d) is tied with the output
head and the learned positions ``wpe`` are seq_len·d. Losses are mean cross-entropy, nats/token.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GPTConfig:
    """Model shape: ``width`` = d_model, ``depth`` = n_layer, ``seq_len`` = context in tokens."""

    width: int
    depth: int
    heads: int
    seq_len: int
    vocab: int = 256
    dropout: float = 0.0


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        assert cfg.width % cfg.heads == 0, "width must be divisible by heads"
        self.heads = cfg.heads
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.width, 3 * cfg.width, bias=False)
        self.c_proj = nn.Linear(cfg.width, cfg.width, bias=False)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.width, 4 * cfg.width, bias=False)
        # nanoGPT's nn.GELU() (exact erf form). It replaced a hand-written tanh GELU that torch
        # 2.13's own kernels outrun: a step at widths 64/128/256 took 16/42/119 ms with it,
        # 15/39/113 ms with torch's tanh GELU and 14/36/108 ms with this one (1 thread,
        # interleaved; its forward and backward were 11 % of a step at width 64).
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.width, cfg.width, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.width, bias=False)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.width, bias=False)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer; ``forward(idx, targets)`` returns (logits, loss in nats/token)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab, cfg.width),
            wpe=nn.Embedding(cfg.seq_len, cfg.width),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg.depth)]),
            ln_f=nn.LayerNorm(cfg.width, bias=False),
        ))
        self.lm_head = nn.Linear(cfg.width, cfg.vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.register_buffer("pos", torch.arange(cfg.seq_len), persistent=False)
        self.apply(self._init_weights)
        # GPT-2 scaled init of the residual projections
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.depth))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Trainable parameters (tied embedding counted once); ``non_embedding`` drops wte, wpe."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel() + self.transformer.wpe.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: (B, T) int64 token ids, T ≤ seq_len → logits (B, T, vocab), loss or
        None."""
        T = idx.shape[1]
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence of length {T} exceeds seq_len {self.cfg.seq_len}")
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(self.pos[:T]))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def optimizer(self, lr: float, weight_decay: float, betas: tuple[float, float],
                  **kernel: bool) -> torch.optim.AdamW:
        """AdamW with weight decay on 2-D weights only (matmuls, embeddings), none on norms.

        ``kernel``: AdamW's kernel choice (``sweep.train.device.fused_adamw``); by default the
        fused kernel, on CPU 3-4x faster per step than the foreach one, and on CUDA."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **(kernel or {"fused": True}))
