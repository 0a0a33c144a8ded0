"""Multi-process training on CPU: the gloo process group, reductions over the ranks, and
:func:`spawn` (local processes without torchrun)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Dist", "all_reduce_sum", "init_distributed", "spawn", "sync_buffers"]


@dataclass
class Dist:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    owned: bool = False  # whether train() initialised the process group

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group set up by the caller or torchrun (``WORLD_SIZE > 1``: gloo)."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), False)
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws > 1:
        dist.init_process_group("gloo")
        return Dist(dist.get_rank(), dist.get_world_size(), True)
    return Dist()


def sync_buffers(model: nn.Module, d: Dist) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks, so every
    rank evaluates and checkpoints the same model (each rank updates them from its own shard;
    DDP only re-broadcasts rank 0's at the next forward)."""
    if d.world_size == 1:
        return
    with torch.no_grad():
        for b in model.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b.div_(d.world_size)


def all_reduce_sum(values: list[float], d: Dist) -> list[float]:
    """Sum ``values`` over the ranks (float64)."""
    if d.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _spawn_worker(rank: int, world_size: int, config: dict, result_dir: str) -> None:
    from .loop import train

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    # a file in the run's own folder as the rendezvous: no TCP port to pick, so none that
    # another process can take between picking and binding it
    dist.init_process_group("gloo", init_method="file://" + os.path.join(result_dir, "rdzv"),
                            rank=rank, world_size=world_size)
    try:
        res = train(config)
        state = {k: v.clone() for k, v in res.model.state_dict().items()}
        torch.save({"model": state, "history": res.history},
                   os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def spawn(config, nprocs: int = 2) -> list[dict]:
    """Train ``config`` (a TrainConfig or dict) with ``nprocs`` local DistributedDataParallel
    processes (gloo, CPU) without torchrun; returns each rank's ``{"model": state_dict,
    "history": [...]}``."""
    import tempfile

    import torch.multiprocessing as mp

    from .config import as_config

    cfg = as_config(config, {}).resolved().to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_spawn_worker, args=(nprocs, cfg, tmp), nprocs=nprocs, join=True)
        return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True)
                for r in range(nprocs)]
