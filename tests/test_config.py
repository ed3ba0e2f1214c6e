import math
from pathlib import Path

import pytest

from sweep import conf_schema, config
from sweep.errors import ConfigError


def test_defaults_compose():
    cfg = config.load([])
    assert cfg.model.widths == [32, 64, 96, 128]
    assert cfg.budget.tokens == [2.5e5, 1e6, 4e6]
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


def test_schema_module_imports_nothing_of_the_domain():
    """sweep.conf_schema (L0) imports only the standard library; config re-exports its names."""
    import ast

    from sweep import conf_schema

    tree = ast.parse(Path(conf_schema.__file__).read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods == {"__future__", "dataclasses", "math", "re", "typing"}
    for name in conf_schema.__all__:
        assert getattr(config, name) is getattr(conf_schema, name)
    t = conf_schema.TrainConf()
    assert (t.device, t.compile) == ("auto", False)
    lc = config.load(["launcher.cores=3", "launcher.slots_dir=/tmp/x"]).launcher
    assert (lc.cores, lc.slots_dir) == (3, "/tmp/x")


@pytest.mark.parametrize("text,seconds", [
    ("90", 5400.0), ("01:30", 90.0), ("01:30:00", 5400.0), ("2-00", 172800.0),
    ("1-02:03:04", 93784.0), ("UNLIMITED", math.inf), ("1h", None), ("", None), ("-5", None),
])
def test_parse_time(text, seconds):
    assert conf_schema.parse_time(text) == seconds


@pytest.mark.parametrize("override,needle", [
    ("launcher.cores=-1", "launcher.cores"),
    ("launcher.time=1h", "launcher.time"),
])
def test_launcher_checks(override, needle):
    with pytest.raises(ConfigError, match=needle):
        config.load([override])


def test_composed_configs_are_cached_and_rebuilt_equal(tmp_path, monkeypatch):
    import shutil

    from sweep import config_cache

    monkeypatch.setenv("SWEEP_CACHE", str(tmp_path / "cache"))
    ov = ["model.widths=[64,128]", "budget.tokens=[1e6,4e6]",
          "train.lr_rule=table", "train.batch_rule=table",
          "train.hp_table=[{params:2e4,lr:0.02,batch_size:8},{params:2e5,lr:0.005,batch_size:32}]"]
    first = config.load(ov)
    files = list((tmp_path / "cache" / "config").glob("*.json"))
    assert len(files) == 1

    def no_hydra(_):
        raise AssertionError("composed again")

    monkeypatch.setattr(config, "_compose", no_hydra)
    again = config.load(ov)
    assert again == first and type(again.budget.tokens[0]) is float
    assert again.train.hp_table[1].batch_size == 32
    # an unreadable entry is ignored and composed afresh, never trusted
    files[0].write_text('{"model": {"widths": "oops"}}')
    monkeypatch.undo()
    monkeypatch.setenv("SWEEP_CACHE", str(tmp_path / "cache"))
    assert config.load(ov) == first
    # the key follows the overrides and every conf/ file's bytes
    conf = tmp_path / "conf"
    shutil.copytree(config.conf_dir(), conf)
    k = config_cache.key(conf, ov)
    assert k != config_cache.key(conf, ov[:1])
    (conf / "train" / "default.yaml").write_text(
        (conf / "train" / "default.yaml").read_text() + "\n# edited\n")
    assert config_cache.key(conf, ov) != k
