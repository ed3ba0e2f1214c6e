"""Multi-process training (``train.nproc > 1``): torchrun's environment → a process group, and
the few collectives the training loop needs.

Every rank draws the SAME global batch from the seeded sampler and trains on its contiguous slice
of rows (rank r: rows r·b/N … (r+1)·b/N of b); DDP averages the gradients over ranks, so with
equal slices the update equals the single-process one up to float summation order. Logged train
losses are averaged over ranks; held-out evaluations run identically on every rank. Rank 0 alone
writes the store, W&B and checkpoints; every rank loads a checkpoint on resume. A stop request
seen by any rank stops all of them at the same step boundary (one all-reduce per step).

Backend (``backend()``): gloo when torch sees no GPU; with CUDA and NCCL, ``cpu:gloo,cuda:nccl``,
so collectives on GPU tensors (gradients, the logged loss) go over NCCL and the few small CPU ones
(stop flags, the resume step) over gloo. Each rank trains on ``cuda:LOCAL_RANK``
(sweep/train/device.py), one GPU per rank.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

BACKEND = "gloo"  # without CUDA; see backend()
TIMEOUT_S = 600  # a collective waits this long for a missing rank before raising
# torchrun forwards these signals to its workers (SIGUSR1: Slurm's warning before the time limit)
SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world`` processes (world 1: no DDP),
    ``local_world`` of them on this node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in a world of {self.world} processes")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env(env: Mapping[str, str] = os.environ) -> Dist:
    """Rank and world size from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, …)."""
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    return Dist(int(env["RANK"]), world, int(env.get("LOCAL_RANK", "0") or 0),
                int(env.get("LOCAL_WORLD_SIZE", str(world)) or world))


def backend() -> str:
    """The process-group backend: NCCL for CUDA tensors when torch has both, gloo for the rest."""
    import torch
    import torch.distributed as td

    if torch.cuda.is_available() and td.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return BACKEND


def init(env: Mapping[str, str] = os.environ) -> Dist:
    """Join the process group when started by torchrun; a no-op for a single process."""
    d = from_env(env)
    if d.enabled:
        import torch.distributed as td

        be = backend()
        if not td.is_initialized():
            td.init_process_group(be, rank=d.rank, world_size=d.world,
                                  timeout=datetime.timedelta(seconds=TIMEOUT_S))
        logger.info("rank %d of %d joined the %s process group", d.rank, d.world, be)
    return d


def close() -> None:
    """Leave the process group, if this process joined one."""
    td = sys.modules.get("torch.distributed")
    if td is not None and td.is_available() and td.is_initialized():
        td.destroy_process_group()


def rank_threads(threads: int | None, d: Dist) -> int | None:
    """Threads per rank: the run's thread budget on this node split evenly (at least one)."""
    if not d.enabled:
        return threads
    return max(1, (threads or os.cpu_count() or 1) // d.local_world)


def torchrun_args(nproc: int, *, standalone: bool = True) -> list[str]:
    """``torch.distributed.run`` options shared by the local launcher and Slurm."""
    args = ["--nproc-per-node", str(nproc), "--signals-to-handle", SIGNALS]
    return (["--standalone"] if standalone else []) + args


def wrap(model: Any, d: Dist, device: Any = None) -> Any:
    """The module to train: ``model`` itself, or DDP around it (averages gradients); on a CUDA
    ``device`` DDP is bound to that one GPU (one GPU per rank)."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device is not None and getattr(device, "type", "cpu") == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def shard(x: Any, y: Any, d: Dist) -> tuple[Any, Any]:
    """This rank's contiguous slice of the global batch's rows."""
    if not d.enabled:
        return x, y
    b = x.shape[0]
    if b % d.world:
        raise ValueError(f"batch of {b} sequences does not split over {d.world} processes")
    lo, hi = d.rank * b // d.world, (d.rank + 1) * b // d.world
    return x[lo:hi], y[lo:hi]


def stop_requested(should_stop: Callable[[], bool] | None, d: Dist) -> bool:
    """True on every rank if any rank was asked to stop (Slurm or torchrun may signal one)."""
    flag = should_stop is not None and should_stop()
    if not d.enabled:
        return flag
    import torch
    import torch.distributed as td

    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item())


def mean(value: Any, d: Dist) -> Any:
    """The mean over ranks of a tensor (a copy; the input is left alone)."""
    if not d.enabled:
        return value
    import torch.distributed as td

    t = value.detach().clone()
    td.all_reduce(t, op=td.ReduceOp.SUM)
    return t / d.world


def check_same(value: int, what: str, d: Dist) -> None:
    """Raise if the ranks disagree on ``value`` (e.g. the step they resume after)."""
    if not d.enabled:
        return
    import torch
    import torch.distributed as td

    lo = torch.tensor([value], dtype=torch.int64)
    hi = lo.clone()
    td.all_reduce(lo, op=td.ReduceOp.MIN)
    td.all_reduce(hi, op=td.ReduceOp.MAX)
    if lo.item() != hi.item():
        from sweep.errors import TrainError

        raise TrainError(f"ranks disagree on the {what} ({lo.item()} vs {hi.item()})")
