"""LR and batch rules (sweep/hparams.py): the papers' numbers at their own scale, anchoring at the
reference size, monotonicity in N, the user table, and bad rules through the CLI."""

import math

import pytest

from conftest import invoke
from sweep import config, hparams, shapes
from sweep.errors import ConfigError
from sweep.hparams import DeepSeek, Power, Size, Table
from sweep.plan import plan

TABLE = "train.hp_table=[{params:2e4,lr:0.02,batch_size:8},{params:2e5,lr:0.005,batch_size:32}]"


def test_power_at_the_papers_scale():
    # Porian et al. 2024: lr = 0.0047·(N/108e6)^(-1/3), batch = 160·(N/108e6)^(2/3) × 2048 tokens
    rule = Power()
    at_ref = Size(108e6, 768, 12, 2048, 1e9)
    assert rule.lr(at_ref) == pytest.approx(0.0047, rel=1e-12)
    assert rule.batch_tokens(at_ref) == pytest.approx(160 * 2048, rel=1e-12)
    eight = Size(8 * 108e6, 1536, 24, 2048, 1e9)  # 8× N: lr halves, batch grows 4×
    assert rule.lr(eight) == pytest.approx(0.0047 / 2, rel=1e-12)
    assert rule.batch_tokens(eight) == pytest.approx(640 * 2048, rel=1e-12)
    rules = hparams.Rules(rule, rule, seq_len=2048)
    w, d = 768, 12  # GPT-2 small shape: N = 85.0M non-embedding
    n = shapes.params_nonembed(w, d)
    hp = rules.choose(w, d, 1e9)
    assert hp.lr == pytest.approx(0.0047 * (n / 108e6) ** (-1 / 3), rel=1e-12)
    assert hp.batch_size == round(160 * (n / 108e6) ** (2 / 3))


def test_deepseek_at_the_papers_scale():
    # DeepSeek LLM 2024 eq. 1: η = 0.3118·C^-0.125, B = 0.2920·C^0.3271 tokens
    rule = DeepSeek()
    s = Size(1e9, 2048, 20, 4096, 1.0)  # M·D with D = 1: pick D so that C = 1e20 exactly
    s = Size(1e9, 2048, 20, 4096, 1e20 / s.flops_deepseek)
    assert s.flops_deepseek == pytest.approx(1e20, rel=1e-12)
    assert rule.lr(s) == pytest.approx(0.3118 * 10 ** -2.5, rel=1e-12)  # 9.86e-4
    assert rule.batch_tokens(s) == pytest.approx(0.2920 * 10 ** (20 * 0.3271), rel=1e-12)
    # M is DeepSeek's non-embedding FLOPs/token incl. attention: 72·L·d² + 6·L·seq·d (+ norms)
    w, d, seq = 4096, 30, 4096
    m = Size.of(w, d, seq, 1.0).flops_deepseek
    assert m == pytest.approx(72 * d * w * w + 6 * d * seq * w, rel=1e-4)


def test_anchoring_gives_the_reference_values_at_the_reference_size():
    cfg = config.load(["train=olmo", "train.lr=3e-3", "train.batch_size=12"])
    assert cfg.train.hp_ref_params == shapes.params_nonembed(64, 2)
    by_w = {r.width: r for r in plan("a", cfg)}
    assert by_w[64].lr == pytest.approx(3e-3, rel=1e-12) and by_w[64].batch_size == 12
    # the paper's exponents are kept: lr ∝ N^(-1/3), batch ∝ N^(2/3)
    n32, n64 = by_w[32].params_nonembed, by_w[64].params_nonembed
    assert by_w[32].lr == pytest.approx(3e-3 * (n32 / n64) ** (-1 / 3), rel=1e-12)
    assert by_w[32].batch_size == round(12 * (n32 / n64) ** (2 / 3))
    # deepseek: anchored at the reference compute
    c_ref = Size.of(64, 2, 64, 5e5).flops_deepseek
    cfg = config.load(["train=deepseek", f"train.hp_ref_flops={c_ref!r}",
                       "budget.tokens=[5e5]"])
    r64 = next(r for r in plan("a", cfg) if r.width == 64)
    assert r64.lr == pytest.approx(7e-3, rel=1e-12) and r64.batch_size == 16


@pytest.mark.parametrize("overrides", [
    ["train=olmo"], ["train.lr_rule=power", "train.batch_rule=power"],
    ["train=deepseek"], ["train.lr_rule=deepseek", "train.batch_rule=deepseek"],
    ["train.lr_rule=width"], ["train.lr_rule=table", "train.batch_rule=table", TABLE]])
def test_monotonic_in_n(overrides):
    cfg = config.load(["model.widths=[32,64,96,128,192,256]", "budget.tokens=[1e6]",
                       *overrides])
    runs = sorted(plan("a", cfg), key=lambda r: r.params_nonembed)
    lrs, batches = [r.lr for r in runs], [r.batch_size for r in runs]
    assert all(b <= a for a, b in zip(lrs, lrs[1:])) and lrs[0] > lrs[-1]
    assert all(b >= a for a, b in zip(batches, batches[1:]))
    for r in runs:  # steps are rounded to each run's own batch
        assert r.tokens == r.steps * r.batch_size * r.seq_len
        assert r.batch_tokens == r.batch_size * r.seq_len
        assert abs(r.tokens - 1e6) <= r.batch_tokens / 2


def test_deepseek_lr_falls_with_budget_at_fixed_size():
    runs = plan("a", config.load(["train=deepseek", "model.widths=[64]"]))
    assert [r.tokens for r in runs] == sorted(r.tokens for r in runs)
    assert runs[0].lr > runs[1].lr > runs[2].lr
    assert runs[0].batch_size < runs[1].batch_size < runs[2].batch_size


def test_table_interpolates_lr_and_takes_nearest_batch():
    t = Table(((1e4, 0.01, 8), (1e6, 0.001, 64)), seq_len=32)
    at = lambda n: Size(n, 64, 2, 32, 1e6)  # noqa: E731
    assert t.lr(at(1e4)) == pytest.approx(0.01) and t.lr(at(1e6)) == pytest.approx(0.001)
    assert t.lr(at(1e5)) == pytest.approx(math.sqrt(0.01 * 0.001))  # midway in log N
    assert t.lr(at(10.0)) == 0.01 and t.lr(at(1e9)) == 0.001  # clamped
    assert t.batch_tokens(at(9e4)) == 8 * 32 and t.batch_tokens(at(2e5)) == 64 * 32


def test_table_lr_only_needs_no_batch_column():
    cfg = config.load(["train.lr_rule=table", "train.hp_table=[{params:1e4,lr:1e-2},"
                       "{params:1e6,lr:1e-3}]"])
    runs = plan("a", cfg)
    assert {r.batch_size for r in runs} == {16}
    assert runs[0].lr > runs[-1].lr


@pytest.mark.parametrize("overrides,needle", [
    (["train.lr_rule=cosmic"], "train.lr_rule must be one of"),
    (["train.batch_rule=width"], "train.batch_rule must be one of"),
    (["train.lr_rule=table"], "train.hp_table is empty"),
    (["train.batch_rule=table", "train.hp_table=[{params:2e5,batch_size:8},"
      "{params:2e4,batch_size:4}]"], "sorted by params"),
    (["train.lr_rule=table", "train.hp_table=[{params:2e4,batch_size:8}]"], "lr=None"),
    (["train.hp_table=[{params:2e5,lr:1e-3},{params:2e5,lr:1e-3}]"], "sorted by params"),
    (["train.lr_rule=power", "train.hp_ref_params=-5"], "train.hp_ref_params"),
])
def test_bad_rules_are_one_line_config_errors(overrides, needle):
    with pytest.raises(ConfigError) as e:
        config.load(overrides)
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides", [
    ["train.lr_rule=cosmic"], ["train.lr_rule=table"],
    ["train.lr_rule=table", "train.hp_table=[{params:2e5,lr:1e-3},{params:2e4,lr:1e-2}]"]])
def test_bad_rules_through_the_cli_exit_2(runner, root, overrides):
    r = invoke(runner, ["plan", "s", *overrides], root)
    assert r.exit_code == 2, r.output
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errs) == 1 and "train." in errs[0] and "Traceback" not in r.output
    assert not (root / "s").exists()


def test_plan_shows_rule_lr_and_batch(runner, root):
    r = invoke(runner, ["plan", "p", "train=olmo", "model.widths=[32,128]",
                        "budget.tokens=[2.5e5]"], root)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("lr and batch by rule 'power'") and "Porian" in lines[0]
    assert "batch(seq)" in lines[1] and "batch(tok)" in lines[1] and "lr(peak)" in lines[1]
    rows = {ln.split()[0]: ln.split() for ln in lines[3:]}
    w32 = next(v for k, v in rows.items() if k.startswith("w32"))
    w128 = next(v for k, v in rows.items() if k.startswith("w128"))
    assert (int(w32[-3]), int(w32[-2])) == (6, 6 * 64)  # 16·(N32/N64)^(2/3) = 6.4 sequences
    assert (int(w128[-3]), int(w128[-2])) == (40, 40 * 64)
    assert float(w32[-1]) > float(w128[-1])


def test_rule_changes_run_ids(runner, root):
    ids = {}
    for rule in ([], ["train=olmo"], ["train=deepseek"]):
        cfg = config.load(["model.widths=[32]", "budget.tokens=[2.5e5]", *rule])
        ids[tuple(rule)] = plan("a", cfg)[0].run_id
    assert len(set(ids.values())) == 3


def test_batches_are_a_multiple_of_nproc():
    cfg = config.load(["train=olmo", "train.nproc=4", "model.widths=[32,96,128]"])
    for r in plan("a", cfg):
        assert r.batch_size % 4 == 0 and r.batch_size >= 4


def test_wsd_branches_share_lr_and_batch():
    cfg = config.load(["train=olmo", "train.schedule=wsd", "model.widths=[32,128]"])
    runs = plan("a", cfg)
    for w in (32, 128):
        same = [r for r in runs if r.width == w]
        assert len({(r.lr, r.batch_size) for r in same}) == 1 and len(same) == 3
    with pytest.raises(ConfigError, match="deepseek"):
        config.load(["train=deepseek", "train.schedule=wsd"])


@pytest.mark.parametrize("overrides", [[], ["train=olmo"]])
def test_recommend_uses_the_sweeps_rule(overrides):
    """The recommended run's LR and batch are the ones `plan` would give that shape."""
    from sweep.records import Fit
    from sweep.recommend import recommend

    cfg = config.load(overrides)
    fit = Fit("chinchilla", 12, {"E": 1.0, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28},
              {}, 0.0, {"a": 0.45, "b": 0.55})
    rec = recommend(fit, 1e15, cfg)
    hp = hparams.choose(cfg, rec.model["width"], rec.model["depth"], rec.tokens)
    assert rec.train["lr"] == pytest.approx(hp.lr)
    assert rec.train["batch_tokens"] == hp.batch_size * cfg.model.seq_len
    if overrides:  # the power rule grows the batch past the constant 16 sequences
        assert hp.batch_size > cfg.train.batch_size


def test_rules_take_the_bare_schema():
    """hparams needs only sweep.conf_schema's dataclasses, not Hydra (no config ↔ hparams cycle)."""
    from sweep.conf_schema import SweepConfig

    cfg = SweepConfig()
    hp = hparams.rules(cfg).choose(cfg.train.lr_ref_width, 2, 1e6)  # width rule, at its anchor
    assert cfg.train.lr_rule == "width" and hp.lr == pytest.approx(cfg.train.lr, rel=1e-12)
