"""The training loop: :func:`train` sets a run up (data, model, optimizer, schedule, resume),
runs its epochs and writes checkpoint, metrics and plots; :func:`evaluate` gives test loss and
accuracy.

A run is a :class:`_Run` object whose fields are the state a checkpoint carries (epoch, next
batch, step, history, the unfinished epoch's running sums), so saving and resuming name the same
things and a resumed run continues bit-identically.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .. import models
from ..checkpoint import (
    FORMAT,
    VERSION,
    atomic_save,
    get_rng_state,
    load_checkpoint,
    set_rng_state,
)
from ..data import load_dataset
from ..distribution import active_weight_masks, momentum_step, redistribute
from .config import ConfigError, TrainConfig, as_config, default_milestones, structure_name
from .ddp import Dist, all_reduce_sum, init_distributed, sync_buffers
from .outdir import prepare_out
from .schedule import LRSchedule
from .swat_state import LayerStats, apply_method, load_swat_state, swat_layers, swat_state

__all__ = ["StepInfo", "TrainResult", "evaluate", "train"]

# Options a resumed run must share with its checkpoint (the others may change, e.g. --epochs),
# with the value a checkpoint written before the option existed implies.
RESUME_KEYS = {"dataset": None, "model": None, "method": None, "sparsity": None,
               "distribution": None, "period": None, "structured": False, "topk_dims": None,
               "seed": None, "batch_size": None, "recipe": "project", "ties": "exact",
               "dropout": 0.0}


def _saved_option(ck_config: dict, key: str):
    v = ck_config.get(key, RESUME_KEYS[key])
    return structure_name(v) if key == "structured" else v


@dataclass
class StepInfo:
    """Handed to ``callback`` after every optimisation step."""

    step: int  # optimisation steps done so far (1 after the first)
    epoch: int  # 0-based epoch of this step
    batch: int  # 0-based batch index within the epoch
    loss: float
    lr: float
    model: nn.Module  # the unwrapped model
    optimizer: torch.optim.Optimizer
    inputs: torch.Tensor
    targets: torch.Tensor


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict]
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    scheduler: Any
    dataset: Any
    steps: int
    out: Path | None = None
    final: dict = field(default_factory=dict)  # last history record
    rank: int = 0
    world_size: int = 1


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, batch_size: int = 512, rank: int = 0,
             world_size: int = 1) -> dict:
    """Test loss and accuracy of ``model`` (eval mode; sharded over ranks and summed)."""
    was = model.training
    model.eval()
    loss_sum = correct = count = 0.0
    n = len(dataset.test_y)
    idx = torch.arange(rank, n, world_size)
    for i in range(0, len(idx), batch_size):
        sel = idx[i:i + batch_size]
        x = dataset._prepare(dataset.test_x[sel])
        y = dataset.test_y[sel]
        out = model(x)
        loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
        correct += float((out.argmax(1) == y).sum())
        count += len(y)
    model.train(was)
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], Dist(rank, world_size))
    return {"test_loss": loss_sum / max(1.0, count), "test_acc": correct / max(1.0, count)}


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_batch(x: torch.Tensor, loss: torch.Tensor, epoch: int, batch: int) -> None:
    """Raise a message naming the batch when the loss is not finite (bad input or divergence)."""
    if torch.isfinite(loss):
        return
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"NaN or infinite values in the inputs of epoch {epoch} batch {batch}")
    raise FloatingPointError(
        f"training loss became {float(loss)} at epoch {epoch} batch {batch}; "
        "the run diverged (try a smaller --lr)"
    )


def train(config: TrainConfig | dict | None = None, *,
          callback: Callable[[StepInfo], None] | None = None, net: nn.Module | None = None,
          data=None, **overrides) -> TrainResult:
    """Train per ``config`` (plus keyword ``overrides``); see :mod:`sw.train`.

    ``net`` (an ``nn.Module``) / ``data`` (a :class:`sw.data.Dataset`) replace the model and
    dataset ``config`` names (``net`` is still SWAT-ified per ``config.method``). Under
    ``torchrun`` (``WORLD_SIZE > 1``) the process group is set up here (gloo) and torn down at
    the end.
    """
    cfg = as_config(config, overrides).resolved()
    threads = torch.get_num_threads()
    d = init_distributed()
    run = None
    try:
        run = _Run(cfg, d, model=net, dataset=data)
        if run.hil is not None:  # started once ``run`` holds it: a Ctrl-C now still closes it
            run.hil.start()
        if cfg.resume is not None:
            run.resume()
        return run.run(callback)
    finally:
        if run is not None and run.hil is not None:
            run.hil.close()  # stops the simulator process (also on an exception or Ctrl-C)
        torch.set_num_threads(threads)  # --threads applies to this run only
        if d.owned and dist.is_initialized():
            dist.destroy_process_group()


class _Run:
    """One training run: its objects and the position a checkpoint records."""

    def __init__(self, cfg: TrainConfig, d: Dist, *, model: nn.Module | None = None,
                 dataset=None):
        if cfg.batch_size % d.world_size:
            raise ConfigError(f"--batch-size {cfg.batch_size} is not divisible by the "
                              f"{d.world_size} processes")
        self.cfg, self.d = cfg, d
        self.out = Path(cfg.out) if cfg.out else None
        removed = prepare_out(self.out, resume=cfg.resume is not None, force=cfg.force,
                              main=d.main)
        if removed:
            self.log(f"removed {len(removed)} temporary file(s) of an interrupted write in "
                     f"{self.out}")
        self.local_bs = cfg.batch_size // d.world_size
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir)
        seed_everything(cfg.seed)
        if model is None:
            want = models.input_shape(cfg.model)[0]
            if want != self.ds.sample_shape[0]:
                raise ConfigError(f"model {cfg.model} takes {want}-channel inputs but dataset "
                                  f"{cfg.dataset} has {self.ds.sample_shape[0]} channels")
            extra = {"dropout": cfg.dropout} if cfg.dropout else {}
            model = models.build(cfg.model, self.ds.num_classes, **extra)
        self.optimizer = torch.optim.SGD(list(model.parameters()), lr=cfg.lr,
                                         momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                         nesterov=cfg.nesterov)
        self.model = apply_method(model, cfg)
        self.hil = None  # GEMMs on an integer backend (sw.hil_run), started before training
        if cfg.backend != "torch":
            from ..hil_run import HilRun

            self.hil = HilRun(cfg.backend, grad_quant=cfg.grad_quant, port=cfg.port)
            self.model = self.hil.attach(self.model)  # started by train(), which closes it
        self.steps_per_epoch = self.ds.num_batches("train", self.local_bs, d.world_size)
        if cfg.epochs is None:  # max_steps without epochs: just enough epochs
            cfg.epochs = math.ceil(cfg.max_steps / self.steps_per_epoch)
            if cfg.milestones is None:
                cfg.milestones = default_milestones(cfg, cfg.epochs)
        total = cfg.epochs * self.steps_per_epoch  # the schedule's horizon; max_steps stops early
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, LRSchedule(cfg.schedule, self.steps_per_epoch, total,
                                       cfg.milestones, cfg.gamma, cfg.warmup_epochs))
        # the position: next epoch and batch, steps done, records, the unfinished epoch's sums
        self.epoch, self.start_batch, self.step = 0, 0, 0
        self.history: list[dict] = []
        self.partial: dict | None = None

    # ----------------------------------------------------------------- checkpoint

    def resume(self) -> None:
        cfg = self.cfg
        path = self.out / "checkpoint.pt" if cfg.resume == "auto" else Path(cfg.resume)
        ck = load_checkpoint(path)
        saved = {k: _saved_option(ck["config"], k) for k in RESUME_KEYS}
        mismatched = [k for k in RESUME_KEYS if saved[k] != getattr(cfg, k)]
        if mismatched:
            raise ConfigError(
                f"--resume {path}: the checkpoint was trained with different "
                + ", ".join(f"{k} ({saved[k]!r} vs {getattr(cfg, k)!r})" for k in mismatched))
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        load_swat_state(self.model, ck.get("swat", {}))
        self.epoch, self.start_batch = ck["data"]["epoch"], ck["data"]["batch"]
        self.step, self.partial = ck["step"], ck["partial"]
        self.history = [r for r in ck["history"] if r.get("complete", True)]
        rngs = ck["rng"]
        set_rng_state(rngs[self.d.rank] if len(rngs) == self.d.world_size else rngs[0])
        if self.epoch >= cfg.epochs or self._finished():
            limit = (f"--max-steps {cfg.max_steps}" if self._finished()
                     else f"--epochs {cfg.epochs}")
            raise ConfigError(f"--resume {path}: the run is already finished ({limit} reached "
                              f"at step {self.step}); raise {limit.split()[0]} to train further")

    def save_checkpoint(self) -> None:
        rng = get_rng_state()
        rngs = [rng]
        if self.d.world_size > 1:
            rngs = [None] * self.d.world_size
            dist.all_gather_object(rngs, rng)
        if self.out is None or not self.d.main:
            return
        atomic_save({
            "format": FORMAT, "version": VERSION, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.sched.state_dict(),
            "swat": swat_state(self.model), "rng": rngs,
            "data": {"seed": self.cfg.seed, "epoch": self.epoch, "batch": self.start_batch},
            "step": self.step, "partial": self.partial, "history": self.history,
            "config": self.cfg.to_dict(),
        }, self.out / "checkpoint.pt")

    # ----------------------------------------------------------------- the loop

    def log(self, msg: str) -> None:
        if self.cfg.verbose and self.d.main:
            print(msg, file=sys.stderr, flush=True)

    def _finished(self) -> bool:
        return self.cfg.max_steps is not None and self.step >= self.cfg.max_steps

    def run(self, callback: Callable[[StepInfo], None] | None) -> TrainResult:
        cfg, d, model = self.cfg, self.d, self.model
        net = nn.parallel.DistributedDataParallel(model) if d.world_size > 1 else model
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        while self.epoch < cfg.epochs and not self._finished():
            self._epoch(net, loss_fn, callback)
        if self.out is not None and d.main and cfg.plots and self.history:
            from ..plots import plot_history

            plot_history(self.history, self.out)
        if self.hil is not None and self.out is not None and d.main:
            self.hil.write_steps(self.out, self.history, plots=cfg.plots)
        return TrainResult(model=model, history=self.history, config=cfg,
                           optimizer=self.optimizer, scheduler=self.sched, dataset=self.ds,
                           steps=self.step, out=self.out,
                           final=self.history[-1] if self.history else {}, rank=d.rank,
                           world_size=d.world_size)

    def _epoch(self, net: nn.Module, loss_fn, callback) -> None:
        from tqdm.auto import tqdm

        cfg, d, model, optimizer = self.cfg, self.d, self.model, self.optimizer
        epoch = self.epoch
        net.train()
        for m in swat_layers(model).values():
            m.set_epoch(epoch)
            if cfg.recipe == "paper":  # the authors' batch_idx % P, restarting every epoch
                m.set_batch_index(self.start_batch)
        swat_m = cfg.distribution == "momentum" and cfg.method != "dense"
        acc = self.partial or {"loss": 0.0, "correct": 0.0, "count": 0.0, "time": 0.0}
        stats = LayerStats()
        t0 = time.perf_counter()
        bar = tqdm(total=self.steps_per_epoch, initial=self.start_batch, desc=f"epoch {epoch + 1}",
                   disable=not (cfg.progress and d.main), leave=False, dynamic_ncols=True)
        batch = self.start_batch
        for x, y in self.ds.batches("train", self.local_bs, seed=cfg.seed, epoch=epoch,
                                    rank=d.rank, world_size=d.world_size,
                                    start=self.start_batch):
            outp = net(x)
            loss = loss_fn(outp, y)
            check_batch(x, loss, epoch, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            masks = active_weight_masks(model) if swat_m else None
            optimizer.step()
            if swat_m:  # SWAT-M as the authors: after every optimizer step
                momentum_step(model, optimizer, density=1.0 - cfg.sparsity, masks=masks)
            lr = optimizer.param_groups[0]["lr"]
            self.sched.step()
            self.step += 1
            batch += 1
            lv = float(loss.detach())
            acc["loss"] += lv * len(y)
            acc["correct"] += float((outp.detach().argmax(1) == y).sum())
            acc["count"] += len(y)
            stats.add(model)
            if self.hil is not None:
                self.hil.step(self.step)
            bar.update(1)
            bar.set_postfix(loss=f"{lv:.3f}", lr=f"{lr:.3g}")
            if callback is not None:
                callback(StepInfo(self.step, epoch, batch - 1, lv, lr, model, optimizer, x, y))
            if self._finished():
                break
        bar.close()
        acc["time"] += time.perf_counter() - t0
        sync_buffers(model, d)
        complete = batch >= self.steps_per_epoch
        loss_sum, correct, count = all_reduce_sum([acc["loss"], acc["correct"], acc["count"]], d)
        if (cfg.distribution == "snfs" and cfg.method != "dense" and complete
                and (epoch + 1) % cfg.redistribute_every == 0):
            redistribute(model, optimizer)
        rec = {"epoch": epoch + 1, "step": self.step, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": loss_sum / max(1.0, count), "train_acc": correct / max(1.0, count),
               **evaluate(model, self.ds, batch_size=cfg.eval_batch_size, rank=d.rank,
                          world_size=d.world_size),
               "epoch_time_s": acc["time"], "complete": complete}
        if self.hil is not None:
            rec.update(self.hil.epoch_fields())
        layers = stats.record(model)
        if layers:
            rec["layers"] = layers
        self.history.append(rec)
        self.log(f"epoch {epoch + 1}/{cfg.epochs} step {self.step}: train loss "
                 f"{rec['train_loss']:.4f} acc {rec['train_acc']:.4f} | test loss "
                 f"{rec['test_loss']:.4f} acc {rec['test_acc']:.4f} | {acc['time']:.1f}s")
        if complete:
            self.epoch, self.start_batch, self.partial = epoch + 1, 0, None
        else:  # stopped by max_steps: resuming continues this epoch at the next batch
            self.start_batch, self.partial = batch, acc
        self.save_checkpoint()  # the record of an unfinished epoch is dropped again on resume
        if self.out is not None and d.main:
            from ..metrics import write_metrics

            write_metrics(self.history, self.out)
