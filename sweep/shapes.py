"""Model shape ↔ parameter counts and FLOPs: the one copy every stage uses.

The model is nanoGPT's decoder-only transformer without biases (sweep/train/model.py): per layer
attention 4·d² (qkv + proj), MLP 8·d² (4× expansion), two LayerNorm weights (2·d); a final LayerNorm
(d); tied token embedding (vocab·d) and learned positions (seq·d).

Conventions (Kaplan et al. 2020, §2.1): ``params_nonembed`` excludes the embeddings; training
FLOPs are 6·N·D with N = params_nonembed ("6ND"), or with attention 6·N + 12·n_layer·d·seq per
token ("attn"). 1 PF-day = 8.64e19 FLOP.
"""

from __future__ import annotations

import math

PF_DAY = 8.64e19


def params_nonembed(width: int, depth: int) -> int:
    return depth * (12 * width * width + 2 * width) + width


def params_total(width: int, depth: int, vocab: int, seq_len: int) -> int:
    return params_nonembed(width, depth) + vocab * width + seq_len * width


def flops_per_token(width: int, depth: int, seq_len: int, attention: bool = True) -> float:
    """Training FLOPs per token: 6·N_nonembed, plus 12·n_layer·d·seq with ``attention``."""
    f = 6.0 * params_nonembed(width, depth)
    if attention:
        f += 12.0 * depth * width * seq_len
    return f


def heads_for(width: int, head_dim: int) -> int:
    return max(1, width // head_dim)


def round_width(width: float, head_dim: int) -> int:
    return max(head_dim, int(round(width / head_dim)) * head_dim)


def shape_for_params(
    target_nonembed: float, head_dim: int, depth: int | None = None, aspect: float | None = None
) -> tuple[int, int, int]:
    """(width, depth, heads) whose params_nonembed is closest to ``target_nonembed``.

    The shape rule: with a fixed ``depth`` only the width grows; otherwise width and depth grow
    together at a fixed ``aspect`` = width/depth (compound scaling, as the sweep's own grid does).
    Width is a multiple of ``head_dim``.
    """
    if target_nonembed <= 0:
        raise ValueError("target parameter count must be positive")
    if depth is None:
        if not aspect or aspect <= 0:
            raise ValueError("either depth or a positive aspect ratio is needed")
        # N ≈ 12·d²·L with d = aspect·L  →  L = (N / (12·aspect²))^(1/3)
        d0 = max(1, round((target_nonembed / (12.0 * aspect * aspect)) ** (1 / 3)))
        candidates = range(max(1, d0 - 2), d0 + 3)
    else:
        candidates = [depth]
    best: tuple[float, int, int] | None = None
    for L in candidates:
        w_cont = math.sqrt(target_nonembed / (12.0 * L))
        for w in {round_width(w_cont, head_dim), round_width(w_cont, head_dim) + head_dim,
                  max(head_dim, round_width(w_cont, head_dim) - head_dim)}:
            if depth is None and aspect:
                # stay near the aspect ratio: penalise shapes far from it
                err = abs(math.log(params_nonembed(w, L) / target_nonembed)) + 0.5 * abs(
                    math.log((w / L) / aspect))
            else:
                err = abs(math.log(params_nonembed(w, L) / target_nonembed))
            if best is None or err < best[0]:
                best = (err, w, L)
    assert best is not None
    _, w, L = best
    return w, L, heads_for(w, head_dim)


# ---- FLOP accounting: the one copy of 6ND every stage uses ------------------------------------
def flops_6nd(params: float, tokens: float) -> float:
    """Training FLOPs by the 6ND convention (Kaplan et al. 2020): 6 · N · D, N in the caller's
    parameter convention (the sweep's: params_nonembed)."""
    return 6.0 * params * tokens


def tokens_for_flops(flops: float, params: float) -> float:
    """Tokens D with 6 · N · D = C (the inverse of ``flops_6nd``)."""
    return flops / (6.0 * params)


def flops_per_token_mfu(width: int, depth: int, vocab: int, seq_len: int) -> float:
    """Training FLOPs per token as nanoGPT's ``estimate_mfu`` counts them (PaLM App. B):
    6 · N + 12 · n_layer · d · seq with N = all parameters but the position embedding, so the
    tied LM head (vocab · d) is counted: it is a real matmul on every token."""
    return 6.0 * (params_nonembed(width, depth) + vocab * width) + 12.0 * depth * width * seq_len


def flops_per_token_deepseek(width: int, depth: int, seq_len: int) -> float:
    """M of the `deepseek` LR/batch rule (DeepSeek LLM 2024, §3.2: non-embedding training FLOPs
    per token with attention), as sweep.hparams has counted it since the rule was added:
    6·N_nonembed + 6·n_layer·seq·d."""
    return 6.0 * params_nonembed(width, depth) + 6.0 * depth * seq_len * width
