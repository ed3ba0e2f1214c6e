"""The device code path (sweep/train/device.py) on the CPU, the same functions the CUDA path
calls; tests that need a GPU run when torch sees one and are skipped with the reason otherwise."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import sweep.train.device as device_
from sweep.errors import ConfigError, TrainInterrupted
from sweep.train.ckpt import checkpoints, load_checkpoint, save_checkpoint
from sweep.train.data import BatchSampler
from sweep.train.loop import train
from sweep.train.model import GPT, GPTConfig

from test_loop import make_run  # tests/train is on sys.path (pytest rootdir-less import)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() "
                                                 "is False)")
CPU = device_.Device(torch.device("cpu"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus-cache")


def test_resolve_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_.resolve("auto").device == torch.device("cpu")
    assert device_.resolve("cpu", "bf16") == device_.Device(torch.device("cpu"), "bf16")
    with pytest.raises(ConfigError) as e:
        device_.resolve("cuda")
    assert str(e.value) == "train.device=cuda but torch.cuda.is_available() is False"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="train.device=mps but"):
        device_.resolve("mps")
    with pytest.raises(ConfigError, match="train.device must be one of auto, cpu, cuda, mps"):
        device_.resolve("tpu")
    with pytest.raises(ConfigError, match="train.precision must be"):
        device_.resolve("cpu", "fp16")


def test_resolve_one_gpu_per_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto picks CUDA when torch sees it; torchrun's LOCAL_RANK picks the GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_.resolve("auto").device == torch.device("cuda", 0)
    assert device_.resolve("cuda", local_rank=1).device == torch.device("cuda", 1)
    assert device_.resolve("cpu", local_rank=1).device == torch.device("cpu")
    with pytest.raises(ConfigError, match="LOCAL_RANK=2 needs GPU 2, but only 2 are visible"):
        device_.resolve("auto", local_rank=2)


def test_process_group_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """gloo without a GPU; NCCL for CUDA tensors (gloo for the small CPU ones) with one."""
    import torch.distributed as td

    from sweep.train import dist

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dist.backend() == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(td, "is_nccl_available", lambda: True)
    assert dist.backend() == "cpu:gloo,cuda:nccl"
    monkeypatch.setattr(td, "is_nccl_available", lambda: False)
    assert dist.backend() == "gloo"


def test_train_on_cuda_without_gpu_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                                     cache: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^train.device=cuda but torch.cuda.is_available\(\) "
                                          r"is False$"):
        train(make_run(steps=2, device="cuda"), lambda p: None, cache_dir=cache, threads=1)


def test_cpu_device_is_the_default_path(cache: Path) -> None:
    """device=cpu and device=auto (no GPU here, or a GPU: then only cpu is checked) run the same
    code on a CPU: the same curve bit for bit."""
    a, b = [], []
    train(make_run(steps=12, device="cpu"), a.append, cache_dir=cache, threads=1)
    ra = make_run(steps=12, device="auto")
    if not CUDA:
        train(ra, b.append, cache_dir=cache, threads=1)
        assert [(p.train_loss, p.eval_loss) for p in a] == [(p.train_loss, p.eval_loss) for p in b]
    assert all(p.train_loss == p.train_loss for p in a)  # finite, not NaN


def test_autocast_bf16_keeps_fp32_master_weights() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(32, 1, 1, 16))
    x = torch.randint(0, 256, (2, 16))
    with device_.autocast(device_.Device(torch.device("cpu"), "bf16")):
        assert torch.is_autocast_enabled("cpu")
        logits, loss = model(x, x)
    assert logits.dtype == torch.bfloat16
    loss.backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in model.parameters())
    with device_.autocast(CPU):  # fp32: no autocast at all
        assert not torch.is_autocast_enabled("cpu")
        assert model(x)[0].dtype == torch.float32


def test_tf32_is_set_inside_and_restored_after() -> None:
    m = torch.backends.cuda.matmul
    before = m.fp32_precision
    with device_.matmul_tf32(CPU):  # not CUDA: nothing changes
        assert m.fp32_precision == before
    with pytest.raises(RuntimeError, match="boom"):
        with device_.matmul_tf32(CPU, force=True):
            assert m.fp32_precision == "tf32"
            raise RuntimeError("boom")
    assert m.fp32_precision == before


def test_batches_and_optimizer_choice_on_cpu() -> None:
    x, y = torch.zeros(2, 3, dtype=torch.int64), torch.ones(2, 3, dtype=torch.int64)
    bx, by = device_.to_device(x, y, CPU)
    assert bx is x and by is y and not device_.pin(CPU)
    assert device_.fused_adamw(CPU) == {"fused": True}
    assert device_.fused_adamw(device_.Device(torch.device("cuda", 0))) == {"fused": True}
    assert device_.fused_adamw(device_.Device(torch.device("mps"))) == {"foreach": True}
    assert device_.rng_state(CPU) is None and device_.maybe_compile(x, False) is x
    assert not BatchSampler(torch.arange(100).numpy(), 2, 8, seed=0).pin


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])  # clipping active / inactive
def test_fused_clipping_equals_clip_grad_norm(max_norm: float) -> None:
    """clip_grads with a fused AdamW (the scale applied in the optimizer's kernel) takes the
    same steps as clip_grad_norm_ followed by the step, to float rounding."""
    torch.manual_seed(0)
    a = GPT(GPTConfig(32, 1, 1, 16))
    b = copy.deepcopy(a)
    oa, ob = a.optimizer(1e-2, 0.1, (0.9, 0.95)), b.optimizer(1e-2, 0.1, (0.9, 0.95))
    for _ in range(5):
        x = torch.randint(0, 256, (4, 16))
        a(x, x)[1].backward()
        b(x, x)[1].backward()
        na = device_.clip_grads(list(a.parameters()), max_norm, oa)
        nb = torch.nn.utils.clip_grad_norm_(list(b.parameters()), max_norm)
        assert na.item() == pytest.approx(nb.item(), rel=1e-6)
        oa.step()
        ob.step()
        oa.zero_grad(set_to_none=True)
        ob.zero_grad(set_to_none=True)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, rtol=0, atol=2e-6)  # lr 1e-2: rounding, not a step


def test_peak_table() -> None:
    bf16 = device_.Device(torch.device("cuda", 0), "bf16")
    fp32 = device_.Device(torch.device("cuda", 0), "fp32")
    assert device_.peak_flops(bf16, "NVIDIA H100 80GB HBM3") == 989e12
    assert device_.peak_flops(fp32, "NVIDIA H100 80GB HBM3") == pytest.approx(494.7e12)
    assert device_.peak_flops(bf16, "NVIDIA H100 PCIe") == 756e12
    assert device_.peak_flops(bf16, "NVIDIA A100-SXM4-80GB") == 312e12
    assert device_.peak_flops(fp32, "NVIDIA A100-PCIE-40GB") == 156e12
    assert device_.peak_flops(bf16, "NVIDIA A10") == 125e12
    assert device_.peak_flops(bf16, "NVIDIA L40S") == 362e12
    assert device_.peak_flops(bf16, "NVIDIA L4") == 121e12
    assert device_.peak_flops(bf16, "Tesla V100-SXM2-16GB") == 125e12
    assert device_.peak_flops(bf16, "Some Future GPU") is None
    assert device_.peak_flops(CPU) is None


def test_measured_peak_on_cpu() -> None:
    assert 1e8 < device_.measured_peak(CPU, n=128, repeats=2) < 1e13


def _as_if_saved_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save then records every storage's location as cuda:0, as a GPU run's file does."""
    import torch.serialization as ser

    monkeypatch.setattr(ser, "location_tag", lambda storage: "cuda:0")


def test_checkpoint_round_trip_maps_to_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    state = {"version": 1, "step": 3, "run": {"a": 1}, "w": torch.arange(4.0),
             "loss_sum": torch.tensor(2.5), "device_rng": None}
    save_checkpoint(tmp_path, 3, state)
    path, got = load_checkpoint(tmp_path)
    assert path.name == "step_000003.pt" and got["w"].device.type == "cpu"
    assert {k: v for k, v in got.items() if not torch.is_tensor(v)} == \
        {k: v for k, v in state.items() if not torch.is_tensor(v)}
    assert torch.equal(got["w"], state["w"]) and torch.equal(got["loss_sum"], state["loss_sum"])
    assert not list(tmp_path.glob(".*tmp*"))  # fsutil's temporary is gone
    with monkeypatch.context() as m:
        _as_if_saved_on_cuda(m)
        save_checkpoint(tmp_path, 4, {**state, "step": 4})
    if not CUDA:  # the file really says cuda: a plain load fails here, ours maps it to the CPU
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "step_000004.pt", weights_only=True)
    path, got = load_checkpoint(tmp_path)
    assert path.name == "step_000004.pt" and got["w"].device.type == "cpu"


def test_run_checkpointed_on_a_gpu_resumes_on_the_cpu(cache: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint whose tensors are tagged cuda:0 (what a GPU run writes) resumes on the CPU
    and ends where the uninterrupted run does."""
    run = make_run(steps=20, checkpoint_every=10)
    ref = train(run, lambda p: None, cache_dir=cache, threads=1)
    with monkeypatch.context() as m:
        _as_if_saved_on_cuda(m)
        with pytest.raises(TrainInterrupted):
            calls = iter(range(100))
            train(run, lambda p: None, cache_dir=cache, threads=1, checkpoint_dir=tmp_path,
                  should_stop=lambda: next(calls) >= 12)
    assert [s for s, _ in checkpoints(tmp_path)] == [11, 9]
    r = train(run, lambda p: None, cache_dir=cache, threads=1, checkpoint_dir=tmp_path)
    assert r.final_loss == pytest.approx(ref.final_loss, abs=1e-6)


@needs_cuda
def test_cuda_bf16_trains_and_resumes_across_devices(cache: Path, tmp_path: Path) -> None:
    """On a GPU: bf16 autocast trains to a finite loss; a run stopped on the GPU resumes on the
    CPU and one stopped on the CPU resumes on the GPU (same steps, close losses: TF32/bf16 and
    fp32 round differently)."""
    import dataclasses

    run = make_run(steps=20, checkpoint_every=5, device="cuda", precision="bf16")
    assert train(run, lambda p: None, cache_dir=cache).final_loss < 6.0
    for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
        r1 = make_run(steps=20, checkpoint_every=5, device=first)
        r2 = dataclasses.replace(r1, train=dataclasses.replace(r1.train, device=second))
        d = tmp_path / first
        calls = iter(range(100))
        with pytest.raises(TrainInterrupted):
            train(r1, lambda p: None, cache_dir=cache, checkpoint_dir=d,
                  should_stop=lambda: next(calls) >= 8)
        whole = train(r1, lambda p: None, cache_dir=cache)
        resumed = train(r2, lambda p: None, cache_dir=cache, checkpoint_dir=d)
        assert resumed.steps == whole.steps
        assert resumed.final_loss == pytest.approx(whole.final_loss, abs=0.05)


@needs_cuda
def test_cuda_batches_are_pinned_and_on_the_gpu() -> None:
    dev = device_.resolve("cuda")
    s = BatchSampler(torch.arange(1000).numpy() % 256, 4, 16, seed=0, pin=device_.pin(dev))
    x, y = s()
    assert x.is_pinned() and y.is_pinned()
    gx, gy = device_.to_device(x, y, dev)
    assert gx.device == dev.device and torch.equal(gx.cpu(), x)


@pytest.mark.slow
def test_compile_trains_like_eager(cache: Path) -> None:
    """train.compile=true (torch.compile; ≈ 20 s of compiling per shape on a CPU, no speed-up
    there) trains the same run to the same losses up to kernel rounding."""
    eager = train(make_run(steps=6, lr=3e-3), lambda p: None, cache_dir=cache, threads=1)
    comp = train(make_run(steps=6, lr=3e-3, compile=True), lambda p: None, cache_dir=cache,
                 threads=1)
    assert comp.final_loss == pytest.approx(eager.final_loss, rel=1e-3)
