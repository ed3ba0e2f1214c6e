"""Hardware presets, cost/energy/carbon arithmetic, Patterson et al.'s GPT-3 row."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from sweep import cost
from sweep.errors import ConfigError


def test_gpt3_row_of_patterson_et_al():
    # Patterson et al. 2021, Table 4: 3.14e23 FLOPs, 10,000 V100s at 24.6 TFLOP/s each,
    # 330 W measured per processor, PUE 1.10, 429 gCO2e/kWh -> 1,287 MWh, 552 tCO2e, 14.8 days.
    v100 = cost.PRESETS["v100"]
    a = cost.Assumptions(v100, mfu=24.6 / 125, pue=1.10, carbon_kg_per_kwh=0.429,
                         devices=10_000, watts=330.0)
    c = cost.predict(3.14e23, a)
    assert c.mwh == pytest.approx(1287, rel=0.005)
    assert c.tco2e == pytest.approx(552, rel=0.005)
    assert c.wall_hours / 24 == pytest.approx(14.8, rel=0.01)


def test_presets_have_sources_and_datasheet_peaks():
    p = cost.PRESETS
    assert p["a100"].peak("bf16") == 312e12 and p["a100"].watts == 400
    assert p["h100"].peak("bf16") == 989e12 and p["h100"].watts == 700
    assert p["v100"].peak() == 125e12 and p["v100"].watts == 300
    assert p["tpu-v4"].peak() == 275e12 and p["tpu-v4"].watts == 192
    for hw in p.values():
        assert hw.source and hw.price_source and hw.price_per_hour > 0


def test_cpu_preset_measured_or_configured(monkeypatch):
    monkeypatch.setenv("SWEEP_CPU_PEAK", "1.5e11")
    assert cost.get_hardware("cpu").peak() == 1.5e11
    monkeypatch.delenv("SWEEP_CPU_PEAK")
    assert 1e8 < cost.measure_cpu_peak(n=256, repeats=2) < 1e14


def test_measured_and_predicted_agree_at_the_measured_mfu(monkeypatch):
    monkeypatch.setenv("SWEEP_CPU_PEAK", "1e11")
    finals = pd.DataFrame({"flops_6nd": [1e12, 3e12], "wall_seconds": [100.0, 300.0]})
    a = cost.make_assumptions("cpu", finals=finals)
    assert a.mfu == pytest.approx(0.1)  # 4e12 FLOPs in 400 s = 1e10 FLOP/s of 1e11
    m, p = cost.measured(4e12, 400.0, a), cost.predict(4e12, a)
    assert m.device_hours == pytest.approx(p.device_hours)
    assert m.mwh == pytest.approx(400 / 3600 * a.power * a.pue / 1e6)


def test_user_presets_from_yaml(tmp_path):
    f = tmp_path / "hw.yaml"
    f.write_text("mi300x:\n  peak_flops: {bf16: 1.307e15}\n  watts: 750\n  price_per_hour: 5\n"
                 "  source: AMD MI300X datasheet\n")
    hw = cost.get_hardware("mi300x", str(f))
    assert hw.peak() == 1.307e15 and hw.watts == 750 and hw.default_precision == "bf16"
    f.write_text("bad:\n  peak_flops: {bf16: 1e15}\n  watts: 1\n  colour: red\n")
    with pytest.raises(ConfigError, match="colour"):
        cost.load_presets(f)
    with pytest.raises(ConfigError, match="unknown hardware"):
        cost.get_hardware("nope")


def test_assumptions_validate():
    with pytest.raises(ConfigError):
        cost.Assumptions(cost.PRESETS["a100"], mfu=1.5)
    with pytest.raises(ConfigError, match="precision"):
        cost.Assumptions(cost.PRESETS["tpu-v4"], precision="fp8")
    a = dataclasses.replace(cost.Assumptions(cost.PRESETS["a100"]), devices=8)
    assert cost.predict(1e21, a).wall_hours == pytest.approx(
        cost.predict(1e21, a).device_hours / 8)
