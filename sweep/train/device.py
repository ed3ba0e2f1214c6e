"""Where the built-in trainer runs (``train.device=auto|cpu|cuda|mps``) and what that implies.

One place decides, for the loop, the benchmark and the reference loop alike:

- ``resolve``: the torch device. ``auto`` is ``cuda`` when ``torch.cuda.is_available()``, else
  ``cpu`` (MPS only when asked for: its kernels are not faster than a CPU at these sizes). Under
  torchrun each rank takes ``cuda:LOCAL_RANK``, one GPU per rank. Asking for a device torch cannot
  see is a ``ConfigError`` (one line).
- ``autocast``: bf16 autocast when ``train.precision=bf16`` (the weights, gradients and AdamW
  state stay fp32: the master weights), a no-op context for fp32.
- ``matmul_tf32``: TF32 tensor-core matmuls for fp32 work on CUDA, set on entry and restored on
  exit (``torch.backends.cuda.matmul.fp32_precision``), so no lasting global state is left
  behind by library code; a no-op on other devices.
- ``to_device``: batches go to the GPU from pinned host memory with ``non_blocking=True`` (the
  sampler pins its chunk once, see ``pin``); on the CPU they are returned as they are.
- ``fused_adamw``: the fused AdamW kernel where torch has one (CUDA, and CPU where it is also
  3-4x faster per step than the foreach one); foreach elsewhere (MPS).
- ``maybe_compile``: ``torch.compile`` when ``train.compile=true`` (worth it on GPUs; on this
  kind of CPU it gave no speed-up and costs ≈ 20 s per shape).
- ``peak_flops``: the dense peak of the device for MFU (table below, from the vendors' data
  sheets), or None when the device is not in it (then measure one: ``measured_peak``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from sweep.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")

# Dense (no 2:4 sparsity) peak tensor throughput, TFLOP/s: (bf16, tf32, fp32 without tensor
# cores). Sources: NVIDIA data sheets — H100 Tensor Core GPU (SXM5: bf16 989, tf32 495, fp32 67;
# PCIe: 756, 378, 51; the sheets print the sparse figures, twice these), H200 (same SXM compute
# as H100), A100 Tensor Core GPU (312, 156, 19.5; SXM4 and PCIe alike), L40S (362, 183, 91.6),
# L4 (121, 60, 30.3), A10 (125, 62.5, 31.2), V100 (SXM2: fp16 tensor 125, fp32 15.7; no bf16
# or tf32 units: bf16 autocast runs without tensor cores there), T4 (fp16 65, fp32 8.1).
# nanoGPT's estimate_mfu uses the A100's 312 the same way. Longer names first (substring match on
# torch.cuda.get_device_name()).
PEAK_TFLOPS: dict[str, tuple[float, float, float]] = {
    "H100 PCIe": (756.0, 378.0, 51.0),
    "H100": (989.0, 494.7, 67.0),
    "H200": (989.0, 494.7, 67.0),
    "A100": (312.0, 156.0, 19.5),
    "L40S": (362.0, 183.0, 91.6),
    "L4": (121.0, 60.0, 30.3),
    "A10": (125.0, 62.5, 31.2),
    "V100": (125.0, 15.7, 15.7),
    "T4": (65.0, 8.1, 8.1),
}


@dataclass(frozen=True)
class Device:
    """A resolved device and the precision it trains in (``precision``: fp32 | bf16)."""

    device: torch.device
    precision: str = "fp32"

    @property
    def type(self) -> str:
        return self.device.type

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"


def resolve(name: str = "auto", precision: str = "fp32", local_rank: int = 0) -> Device:
    """``train.device`` → the torch device this process trains on (``cuda:local_rank`` for CUDA:
    one GPU per torchrun rank)."""
    if name not in DEVICES:
        raise ConfigError(f"train.device must be one of {', '.join(DEVICES)}, not {name!r}")
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"train.precision must be 'fp32' or 'bf16', not {precision!r}")
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        raise ConfigError("train.device=cuda but torch.cuda.is_available() is False")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device=mps but torch.backends.mps.is_available() is False")
    if name == "cuda" or (name == "auto" and cuda):
        n = torch.cuda.device_count()
        if local_rank >= n:
            raise ConfigError(f"rank with LOCAL_RANK={local_rank} needs GPU {local_rank}, but "
                              f"only {n} are visible (one GPU per rank)")
        return Device(torch.device("cuda", local_rank), precision)
    return Device(torch.device(name if name == "mps" else "cpu"), precision)


def autocast(dev: Device) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device for ``precision=bf16`` (fp32 master weights), else nothing."""
    if dev.bf16:
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def matmul_tf32(dev: Device, force: bool = False) -> Iterator[None]:
    """TF32 matmuls inside the block on CUDA (``force``: whatever the device, for tests); the
    previous setting is restored on exit."""
    if not (dev.is_cuda or force):
        yield
        return
    m = torch.backends.cuda.matmul
    old = m.fp32_precision
    m.fp32_precision = "tf32"
    try:
        yield
    finally:
        m.fp32_precision = old


def pin(dev: Device) -> bool:
    """Whether host batches should live in pinned memory (for non-blocking copies)."""
    return dev.is_cuda


def to_device(x: torch.Tensor, y: torch.Tensor, dev: Device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the device: non-blocking copies from pinned memory on CUDA; as is on a CPU."""
    if dev.type == "cpu":
        return x, y
    nb = dev.is_cuda
    return x.to(dev.device, non_blocking=nb), y.to(dev.device, non_blocking=nb)


def fused_adamw(dev: Device) -> dict[str, bool]:
    """AdamW keyword for the device: the fused kernel on CUDA and CPU, foreach elsewhere."""
    return {"fused": True} if dev.type in ("cuda", "cpu") else {"foreach": True}


def clip_grads(params: list[torch.Tensor], max_norm: float, opt: torch.optim.Optimizer
               ) -> torch.Tensor:
    """Clip the gradients' global L2 norm to ``max_norm`` (as ``clip_grad_norm_``); returns the
    norm before clipping. With a fused AdamW the scaling is left to the optimizer's kernel
    (``grad_scale``, the hook GradScaler uses to unscale), which divides each gradient by
    max(1, (norm + 1e-6) / max_norm) as it reads it: one pass over the gradients less than
    ``clip_grad_norm_``'s in-place multiply (measured +0.2 % / +1.8 % per step at widths 64 /
    256). Call ``opt.step()`` next: the scale is consumed by that step."""
    fused = all(g.get("fused") for g in opt.param_groups)
    if not fused:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    opt.grad_scale = ((total + 1e-6) / max_norm).clamp_(min=1.0)  # type: ignore[attr-defined]
    return total


def maybe_compile(module: Any, enabled: bool) -> Any:
    """``torch.compile(module)`` when ``enabled`` (train.compile), else the module itself."""
    return torch.compile(module) if enabled else module


def synchronize(dev: Device) -> None:
    """Wait for the device's queued work (for timing); nothing to wait for on a CPU."""
    if dev.is_cuda:
        torch.cuda.synchronize(dev.device)


def rng_state(dev: Device) -> torch.Tensor | None:
    """The device's own RNG state (CUDA), for checkpoints; None on a CPU."""
    return torch.cuda.get_rng_state(dev.device) if dev.is_cuda else None


def set_rng_state(dev: Device, state: torch.Tensor | None) -> None:
    """Restore a CUDA RNG state saved on CUDA; a checkpoint from another device type has none
    (dropout draws then differ from an uninterrupted run; with dropout 0 nothing changes)."""
    if dev.is_cuda and state is not None:
        torch.cuda.set_rng_state(state.cpu(), dev.device)


def name(dev: Device) -> str:
    """Human name of the device: the GPU's product name, or ``cpu``/``mps``."""
    return torch.cuda.get_device_name(dev.device) if dev.is_cuda else dev.type


def peak_flops(dev: Device, device_name: str | None = None) -> float | None:
    """Dense peak FLOP/s of the device at the precision it trains in (bf16; fp32 on CUDA runs
    as TF32, see ``matmul_tf32``), from ``PEAK_TFLOPS``; None when it is not in the table (CPUs,
    MPS, unknown GPUs): measure it with ``measured_peak``."""
    if not dev.is_cuda and device_name is None:
        return None
    label = device_name if device_name is not None else name(dev)
    for key, (bf16, tf32, _fp32) in PEAK_TFLOPS.items():
        if key in label:
            return 1e12 * (bf16 if dev.bf16 else tf32)
    return None


def measured_peak(dev: Device, n: int | None = None, repeats: int = 5) -> float:
    """Best measured ``torch.mm`` rate of an n×n matmul on the device in its training precision
    (FLOP per wall-second; per CPU-second on a CPU, where other jobs share the cores)."""
    n = n or (8192 if dev.is_cuda else 1024)
    dtype = torch.bfloat16 if dev.bf16 and dev.type != "cpu" else torch.float32
    a = torch.randn(n, n, device=dev.device, dtype=dtype)
    b = torch.randn(n, n, device=dev.device, dtype=dtype)
    clock = time.process_time if dev.type == "cpu" else time.perf_counter
    best = 0.0
    with matmul_tf32(dev):
        torch.mm(a, b)
        synchronize(dev)
        for _ in range(repeats):
            t = clock()
            torch.mm(a, b)
            synchronize(dev)
            best = max(best, 2.0 * n**3 / max(clock() - t, 1e-9))
    return best
