import pytest

from sweep import config, hparams, shapes
from sweep.errors import ConfigError
from sweep.plan import check_name, compact, plan


def test_grid_is_widths_x_depths_x_budgets():
    cfg = config.load(["model.widths=[64,128]", "model.depths=[2,4]", "budget.tokens=[2e6,8e6]"])
    runs = plan("s", cfg)
    assert len(runs) == 8
    assert len({r.run_id for r in runs}) == 8
    for r in runs:
        assert r.tokens == r.steps * r.batch_tokens
        assert r.params_nonembed == shapes.params_nonembed(r.width, r.depth)
        assert r.params == shapes.params_total(r.width, r.depth, 256, 64)
        assert r.flops_6nd == pytest.approx(6 * r.params_nonembed * r.tokens)
        assert r.flops_attn > r.flops_6nd
        assert r.width % r.heads == 0


def test_flop_budgets_become_tokens_per_model():
    cfg = config.load(["budget=flops", "budget.flops=[1e12]"])
    runs = plan("s", cfg)
    for r in runs:  # isoFLOP: each model trains C/(6N) tokens, within one optimizer step
        assert abs(r.flops_6nd - 1e12) <= 6 * r.params_nonembed * r.batch_tokens
    assert runs[0].tokens > runs[-1].tokens


def test_plan_is_deterministic():
    cfg = config.load([])
    assert [r.run_id for r in plan("a", cfg)] == [r.run_id for r in plan("a", cfg)]
    assert plan("a", cfg)[0].run_id != plan("a", config.load(["train.lr=1e-3"]))[0].run_id


def test_lr_rule_width():
    runs = plan("a", config.load([]))
    by_w = {r.width: r.lr for r in runs}
    assert by_w[64] == pytest.approx(7e-3) and by_w[128] == pytest.approx(3.5e-3)
    assert by_w[128] < by_w[64] < by_w[32]
    runs = plan("a", config.load(["train.lr_rule=constant"]))
    assert {r.lr for r in runs} == {7e-3}
    assert {r.batch_size for r in runs} == {16}


def test_width_and_constant_lr_rules():
    choose = lambda o: hparams.choose(config.load(o), 128, 2, 1e6).lr  # noqa: E731
    assert choose([]) == pytest.approx(3.5e-3)
    assert choose(["train.lr_rule=constant"]) == 7e-3


def test_budget_below_one_step_of_the_runs_own_batch_refused():
    # power batch: width 128 gets 40 sequences × 64 tokens = 2560 tokens per step
    with pytest.raises(ConfigError, match="40 × 64 tokens"):
        plan("a", config.load(["train=olmo", "model.widths=[128]", "budget.tokens=[1200]"]))


def test_budget_below_one_step_refused():
    with pytest.raises(ConfigError, match="less than one optimizer step"):
        plan("a", config.load(["budget.tokens=[10]"]))


@pytest.mark.parametrize("bad", ["a/b", "../x", "a;b", "", "a b", "x" * 65])
def test_bad_names(bad):
    with pytest.raises(ConfigError):
        check_name(bad)


def test_compact():
    assert compact(1e6) == "1e6" and compact(2.5e5) == "2.5e5"
    assert compact(999936) == "1e6" and compact(994999) == "9.95e5"
