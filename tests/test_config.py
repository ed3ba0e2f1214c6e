import pytest

from sweep import config
from sweep.errors import ConfigError


def test_defaults_compose():
    cfg = config.load([])
    assert cfg.model.widths == [32, 64, 96, 128]
    assert cfg.budget.tokens == [2.5e5, 5e5, 1e6]
    assert cfg.fit.method == "chinchilla"


def test_overrides_apply():
    cfg = config.load(["model.widths=[64,128]", "model.depths=[2,4]", "budget.tokens=[2e6,8e6]"])
    assert cfg.model.widths == [64, 128] and cfg.model.depths == [2, 4]
    assert cfg.budget.tokens == [2e6, 8e6]


def test_group_switch_to_flops():
    cfg = config.load(["budget=flops", "budget.flops=[1e12]"])
    assert cfg.budget.tokens is None and cfg.budget.flops == [1e12]


@pytest.mark.parametrize("override,needle", [
    ("model.widht=3", "model.widht"),
    ("foo=1", "foo"),
    ("model.widths=abc", "model.widths"),
    ("train.lr=x", "train.lr"),
    ("model.widths=[0]", "model.widths"),
    ("model.widths=[-64]", "model.widths"),
    ("budget.tokens=[]", "budget.tokens"),
    ("model.widths=[64,", "malformed"),
    ("model=nope", "nope"),
    ("+extra=1", "+extra"),
    ("model.widths=[48]", "head_dim"),
    ("budget.flops=[1e12]", "budget.tokens or budget.flops"),
])
def test_bad_overrides_name_the_problem(override, needle):
    with pytest.raises(ConfigError) as e:
        config.load([override])
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_conf_dir_found():
    assert (config.conf_dir() / "config.yaml").is_file()
