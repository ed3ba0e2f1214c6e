"""The model's parameter counts match sweep.shapes; forward shapes, initial loss, causality."""

from __future__ import annotations

import math

import pytest
import torch

from sweep import shapes
from sweep.train.model import GPT, GPTConfig


@pytest.mark.parametrize("width,depth,heads,seq_len,vocab", [
    (32, 1, 1, 64, 256), (64, 2, 2, 64, 256), (96, 3, 3, 128, 256), (128, 2, 4, 32, 100),
])
def test_param_counts_match_shapes(width: int, depth: int, heads: int, seq_len: int,
                                   vocab: int) -> None:
    model = GPT(GPTConfig(width, depth, heads, seq_len, vocab))
    assert model.num_params() == shapes.params_total(width, depth, vocab, seq_len)
    assert model.num_params(non_embedding=True) == shapes.params_nonembed(width, depth)
    assert model.transformer.wte.weight is model.lm_head.weight
    assert all(not n.endswith("bias") for n, _ in model.named_parameters())


def test_forward_shapes_and_initial_loss() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(64, 2, 2, 32))
    idx, targets = torch.randint(0, 256, (2, 4, 32))
    logits, loss = model(idx, targets)
    assert logits.shape == (4, 32, 256)
    assert loss is not None and abs(loss.item() - math.log(256)) < 0.1  # near-uniform at init
    logits, loss = model(idx[:, :10])
    assert logits.shape == (4, 10, 256) and loss is None


def test_attention_is_causal() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(32, 2, 1, 16)).eval()
    a = torch.randint(0, 256, (1, 16))
    b = a.clone()
    b[0, 10:] = (b[0, 10:] + 1) % 256
    with torch.no_grad():
        la, _ = model(a)
        lb, _ = model(b)
    assert torch.equal(la[0, :10], lb[0, :10])
    assert not torch.allclose(la[0, 10:], lb[0, 10:])


def test_optimizer_decays_only_matrices() -> None:
    model = GPT(GPTConfig(32, 1, 1, 16))
    decay, no_decay = model.optimizer(1e-3, 0.1, (0.9, 0.95)).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params()


def test_model_is_nanogpts() -> None:
    """Same seed, same weights and same loss as nanoGPT's own model (sweep.train.reference), so
    `sweep bench train` compares loops on one model; and the MLP uses torch's exact GELU."""
    from sweep.train.reference import NanoGPT

    torch.manual_seed(0)
    ours = GPT(GPTConfig(64, 2, 2, 32))
    torch.manual_seed(0)
    ref = NanoGPT(64, 2, 2, 32, 256)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), ref.parameters()))
    idx, targets = torch.randint(0, 256, (2, 4, 32))
    assert torch.allclose(ours(idx, targets)[1], ref(idx, targets)[1], rtol=0, atol=1e-6)
    assert isinstance(ours.transformer.h[0].mlp.gelu, torch.nn.GELU)
    assert ours.transformer.h[0].mlp.gelu.approximate == "none"


def test_optimizer_kernel_choice() -> None:
    model = GPT(GPTConfig(32, 1, 1, 16))
    assert model.optimizer(1e-3, 0.1, (0.9, 0.95)).defaults["fused"] is True
    foreach = model.optimizer(1e-3, 0.1, (0.9, 0.95), foreach=True).defaults
    assert foreach["foreach"] is True and not foreach["fused"]
