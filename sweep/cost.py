"""Compute → accelerator-hours, cost, energy (MWh) and emissions (tCO2e), as in Patterson et al.

Patterson et al. 2021, "Carbon Emissions and Large Neural Network Training" (arXiv:2104.10350),
Table 4: energy = accelerator-hours × measured power per accelerator × PUE; tCO2e = energy ×
grid intensity. Their GPT-3 row: 3.14e23 FLOPs on 10,000 V100s at 24.6 TFLOP/s each (19.7 % of the
125 TFLOP/s fp16 peak), 330 W per processor (measured, host share included; the TDP is 300 W),
PUE 1.10, 429 gCO2e/kWh → 1,287 MWh, 552 tCO2e (reproduced in tests/report/test_cost.py).

Predicted runs: seconds = FLOPs / (devices × peak × MFU). Measured runs (the study so far): the
store's wall_seconds × devices per run. Prices are documented assumptions (on-demand list prices
seen in 2024, per accelerator), not quotes: give your own with --price or a preset file.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sweep.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hardware:
    """One accelerator (or this machine's CPU): peak dense FLOP/s per precision, board power."""

    name: str
    peak_flops: dict[str, float]  # precision → peak dense FLOP/s (no sparsity)
    watts: float  # board power (TDP) per device, W
    price_per_hour: float  # USD per device-hour (assumption, see ``price_source``)
    source: str  # where the peak and power come from
    price_source: str = "assumption"
    default_precision: str = "bf16"

    def __post_init__(self) -> None:
        if not self.peak_flops or not all(v > 0 for v in self.peak_flops.values()):
            raise ConfigError(f"hardware {self.name!r}: peak_flops must be positive numbers")
        if self.default_precision not in self.peak_flops:
            raise ConfigError(f"hardware {self.name!r}: no peak for precision "
                              f"{self.default_precision!r}")
        if not (self.watts > 0 and self.price_per_hour >= 0):
            raise ConfigError(f"hardware {self.name!r}: watts must be > 0 and price >= 0")

    def peak(self, precision: str | None = None) -> float:
        p = precision or self.default_precision
        if p not in self.peak_flops:
            raise ConfigError(f"hardware {self.name!r} has no peak for precision {p!r} "
                              f"(has {', '.join(self.peak_flops)})")
        return self.peak_flops[p]


T = 1e12
PRESETS: dict[str, Hardware] = {
    "a100": Hardware(
        "NVIDIA A100 SXM 80GB", {"bf16": 312 * T, "fp16": 312 * T, "tf32": 156 * T,
                                 "fp32": 19.5 * T}, 400.0, 4.10,
        "NVIDIA A100 Tensor Core GPU datasheet (2021): 312 TFLOP/s bf16/fp16 dense, 400 W TDP",
        "AWS p4d.24xlarge on-demand $32.77/h ÷ 8 GPUs (2024 list price)"),
    "h100": Hardware(
        "NVIDIA H100 SXM", {"bf16": 989 * T, "fp16": 989 * T, "fp8": 1979 * T, "tf32": 494 * T,
                            "fp32": 67 * T}, 700.0, 12.29,
        "NVIDIA H100 Tensor Core GPU datasheet (2023): 989 TFLOP/s bf16 dense, 700 W TDP",
        "AWS p5.48xlarge on-demand $98.32/h ÷ 8 GPUs (2024 list price)"),
    "v100": Hardware(
        "NVIDIA V100 SXM2", {"fp16": 125 * T, "fp32": 15.7 * T}, 300.0, 3.06,
        "NVIDIA Tesla V100 datasheet (2018): 125 TFLOP/s fp16 tensor, 300 W TDP; Patterson et "
        "al. 2021 measured 330 W per V100 incl. host share",
        "AWS p3.2xlarge on-demand $3.06/h, 1 GPU (2024 list price)", "fp16"),
    "tpu-v4": Hardware(
        "Google TPU v4", {"bf16": 275 * T}, 192.0, 3.22,
        "Jouppi et al. 2023 (TPU v4, ISCA): 275 TFLOP/s bf16; mean power 192 W per chip as used "
        "by Patterson et al. 2022 (The Carbon Footprint of ML Training Will Plateau...)",
        "Google Cloud TPU v4 on-demand $3.22 per chip-hour (2024 list price)"),
}
CPU_WATTS_PER_CORE = 8.0  # assumption: a 250 W 32-core server CPU ≈ 8 W per vCPU
CPU_PRICE_PER_CORE_HOUR = 0.0425  # assumption: AWS c6i.xlarge $0.17/h ÷ 4 vCPU (2024)


def measure_cpu_peak(n: int = 1024, repeats: int = 5) -> float:
    """This machine's fp32 matmul rate (FLOP/s), best of ``repeats`` n³ products (numpy BLAS).
    ``SWEEP_CPU_PEAK`` (FLOP/s) skips the measurement."""
    env = os.environ.get("SWEEP_CPU_PEAK")
    if env:
        try:
            return float(env)
        except ValueError:
            raise ConfigError(f"SWEEP_CPU_PEAK={env!r} is not a number") from None
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def cpu_preset(peak: float | None = None) -> Hardware:
    """This machine's CPU: the measured fp32 matmul peak (or ``peak``), power and price from
    the per-core assumptions above."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    peak = peak or measure_cpu_peak()
    return Hardware(f"this machine's CPU ({cores} cores)", {"fp32": peak},
                    CPU_WATTS_PER_CORE * cores, CPU_PRICE_PER_CORE_HOUR * cores,
                    f"fp32 matmul peak measured at run time ({peak / 1e9:.0f} GFLOP/s, numpy "
                    f"1024³); {CPU_WATTS_PER_CORE:g} W per core assumed",
                    f"assumption: ${CPU_PRICE_PER_CORE_HOUR}/vCPU-hour (AWS c6i, 2024)", "fp32")


def load_presets(path: str | os.PathLike) -> dict[str, Hardware]:
    """User presets from YAML: ``name: {peak_flops: {bf16: 3.12e14}, watts: 400,
    price_per_hour: 2.0, source: "...", default_precision: bf16}`` per entry."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read hardware presets {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of preset name → fields")
    out = {}
    for key, d in raw.items():
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: preset {key!r} is not a mapping")
        try:
            peak = {str(k): float(v) for k, v in dict(d.pop("peak_flops")).items()}
            out[str(key)] = Hardware(name=str(d.pop("name", key)), peak_flops=peak,
                                     watts=float(d.pop("watts")),
                                     price_per_hour=float(d.pop("price_per_hour", 0.0)),
                                     source=str(d.pop("source", f"user preset in {path}")),
                                     price_source=str(d.pop("price_source", "user given")),
                                     default_precision=str(d.pop("default_precision",
                                                                 next(iter(peak)))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: preset {key!r}: bad or missing field ({exc})") from None
        if d:
            raise ConfigError(f"{path}: preset {key!r}: unknown field {next(iter(d))!r}")
    return out


def get_hardware(name: str = "cpu", presets_file: str | None = None) -> Hardware:
    """A preset by name: a100, h100, v100, tpu-v4, cpu (this machine), or one from the file."""
    extra = load_presets(presets_file) if presets_file else {}
    if name in extra:
        return extra[name]
    if name == "cpu":
        return cpu_preset()
    if name not in PRESETS:
        raise ConfigError(f"unknown hardware {name!r}; presets: "
                          f"{', '.join([*PRESETS, 'cpu', *extra])}")
    return PRESETS[name]


@dataclass(frozen=True)
class Assumptions:
    """What turns FLOPs into time, money, energy and carbon (all configurable)."""

    hardware: Hardware
    precision: str | None = None  # None: the hardware's default
    mfu: float = 0.4  # model FLOP/s utilisation: achieved 6ND FLOP/s ÷ peak
    pue: float = 1.1  # data-centre power usage effectiveness (Patterson et al.: 1.10 for GPT-3)
    carbon_kg_per_kwh: float = 0.429  # grid intensity (429 g/kWh: Patterson's GPT-3 row)
    devices: int = 1  # accelerators used together
    watts: float | None = None  # per-device power; None: the hardware's board power
    price_per_hour: float | None = None  # per device; None: the hardware's assumed price

    def __post_init__(self) -> None:
        if not (0 < self.mfu <= 1):
            raise ConfigError(f"MFU must be in (0, 1], got {self.mfu}")
        if not (self.pue >= 1 and self.carbon_kg_per_kwh >= 0 and self.devices >= 1):
            raise ConfigError("PUE must be >= 1, carbon intensity >= 0 and devices >= 1")
        self.hardware.peak(self.precision)

    @property
    def power(self) -> float:
        return self.watts if self.watts is not None else self.hardware.watts

    @property
    def price(self) -> float:
        return self.price_per_hour if self.price_per_hour is not None else \
            self.hardware.price_per_hour

    def describe(self) -> str:
        h = self.hardware
        return (f"{self.devices} × {h.name}, {h.peak(self.precision) / 1e12:.4g} TFLOP/s "
                f"{self.precision or h.default_precision} peak, MFU {self.mfu:.0%}, "
                f"{self.power:g} W, PUE {self.pue:g}, {self.carbon_kg_per_kwh * 1000:g} gCO2e/kWh,"
                f" ${self.price:g}/device-hour")


@dataclass(frozen=True)
class Cost:
    """Accelerator-hours, wall time, USD, energy (MWh) and emissions (tCO2e) of some FLOPs."""

    flops: float
    device_hours: float
    wall_hours: float
    usd: float
    mwh: float
    tco2e: float
    basis: str = "predicted"  # predicted (FLOPs / achieved rate) or measured (wall seconds)

    def to_dict(self) -> dict[str, float | str]:
        return dataclasses.asdict(self)


def from_device_hours(flops: float, device_hours: float, wall_hours: float, a: Assumptions,
                      basis: str) -> Cost:
    mwh = device_hours * a.power * a.pue / 1e6
    return Cost(flops, device_hours, wall_hours, device_hours * a.price, mwh,
                mwh * a.carbon_kg_per_kwh, basis)


def predict(flops: float, a: Assumptions) -> Cost:
    """Cost of training ``flops`` (6ND) FLOPs at the assumed MFU."""
    rate = a.hardware.peak(a.precision) * a.mfu  # achieved FLOP/s per device
    dev_h = flops / rate / 3600.0
    return from_device_hours(flops, dev_h, dev_h / a.devices, a, "predicted")


def measured(flops: float, wall_seconds: float, a: Assumptions) -> Cost:
    """Cost of runs that took ``wall_seconds`` in total (each on ``a.devices`` devices)."""
    wall_h = wall_seconds / 3600.0
    return from_device_hours(flops, wall_h * a.devices, wall_h, a, "measured")


def measured_mfu(finals, peak: float) -> float | None:
    """Achieved 6ND FLOP/s ÷ peak over a sweep's completed runs (store.finals_df with
    flops_6nd and wall_seconds), or None without timings."""
    df = finals.dropna(subset=["wall_seconds"])
    df = df[df["wall_seconds"] > 0]
    if not len(df):
        return None
    return min(1.0, float(df["flops_6nd"].sum() / df["wall_seconds"].sum()) / peak)


def make_assumptions(hardware: str = "cpu", presets_file: str | None = None, *,
                     mfu: float | None = None, finals=None, **kw) -> Assumptions:
    """Assumptions for preset ``hardware``. Without ``mfu``: for this machine's CPU the sweep's
    own measured rate (``finals``: store.finals_df) when it has timings, else 0.4."""
    hw = get_hardware(hardware, presets_file)
    kw = {k: v for k, v in kw.items() if v is not None}
    if mfu is None and hardware == "cpu" and finals is not None:
        mfu = measured_mfu(finals, hw.peak(kw.get("precision")))
    return Assumptions(hw, mfu=mfu if mfu is not None else 0.4, **kw)


def study_costs(name: str, root: str | os.PathLike, flops, assumptions: Assumptions) -> list:
    """Cost rows [(label, Cost)]: the study so far (measured wall time when the assumptions are
    this machine's CPU, else predicted from its FLOPs), then each (label, FLOPs) of ``flops``."""
    from sweep.store import Store

    with Store(Path(root), create=False) as store:
        finals = store.finals_df([name])
    total = float(finals["flops_6nd"].sum())
    secs = float(finals["wall_seconds"].fillna(0).sum())
    if assumptions.hardware.name.startswith("this machine") and secs > 0:
        rows = [(f"study so far ({len(finals)} runs, measured)",
                 measured(total, secs, assumptions))]
    else:
        rows = [(f"study so far ({len(finals)} runs, predicted)", predict(total, assumptions))]
    return rows + [(label, predict(c, assumptions)) for label, c in flops]
