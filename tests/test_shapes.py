import pytest

from sweep import shapes


def test_counts():
    assert shapes.params_nonembed(64, 2) == 2 * (12 * 64 * 64 + 128) + 64
    assert shapes.params_total(64, 2, 256, 64) == shapes.params_nonembed(64, 2) + 320 * 64


def test_flops_attention_term():
    assert shapes.flops_per_token(64, 2, 64, attention=False) == 6 * shapes.params_nonembed(64, 2)
    assert shapes.flops_per_token(64, 2, 64) - shapes.flops_per_token(64, 2, 64, False) == \
        12 * 2 * 64 * 64


@pytest.mark.parametrize("target", [3e4, 1e5, 1e6, 1e8])
def test_shape_fixed_depth(target):
    w, d, h = shapes.shape_for_params(target, 32, depth=2)
    assert d == 2 and w % 32 == 0 and w // h == 32
    n = shapes.params_nonembed(w, d)
    # the nearest multiple of head_dim: within one width step
    assert shapes.params_nonembed(w - 32, d) < target * 1.5 or w == 32
    assert 0.5 < n / target < 2 or w == 32


@pytest.mark.parametrize("target", [1e6, 1e7, 1e9])
def test_shape_fixed_aspect(target):
    w, d, h = shapes.shape_for_params(target, 64, aspect=64)
    assert 0.6 < shapes.params_nonembed(w, d) / target < 1.6
    assert 32 <= w / d <= 128
