"""Training CLI and function API for SWAT (``python -m sw.train`` / ``swat-train``).

Function API::

    from sw.train import TrainConfig, train
    result = train(TrainConfig(dataset="digits", method="swat", sparsity=0.9, max_steps=300))
    result.model, result.history, result.final["test_acc"]

``train`` takes a :class:`TrainConfig` (or a dict, or keyword overrides), returns a
:class:`TrainResult`, and optionally calls ``callback(info)`` after every optimisation step.
:func:`capture_step` runs one training step of a model and returns, per SWAT layer, the tensors
of its three passes (the hardware comparison streams those through the core).

Defaults follow the paper (Tables 11-13) for CIFAR: SGD momentum 0.9 (Nesterov for WRN),
weight decay 5e-4, lr 0.1 divided by 10 at 1/3 and 2/3 of the epochs, batch 128 (64 for
DenseNet-121), 150 epochs (WRN: 200 epochs, lr x0.2 at 30/60/80 %). Digits defaults are small:
the default run (SWAT-U, 90 % sparsity, digits CNN, 10 epochs) takes seconds on a CPU.

Checkpoints (``<out>/checkpoint.pt``) are written atomically after every epoch and hold the
model, optimizer, scheduler, the RNG states of every rank, the SWAT layers' held thresholds and
the data-order state, so ``--resume`` continues bit-identically. Per-epoch metrics go to
``<out>/metrics.json`` / ``metrics.csv``, plots to ``<out>/*.png``.

Multi-process: run under ``torchrun --nproc_per_node N -m sw.train ...`` (gloo on CPU,
DistributedDataParallel); ``--batch-size`` is the global batch, split evenly over the ranks.
:func:`spawn` starts N local processes without torchrun.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DISTRIBUTIONS",
    "METHODS",
    "SCHEDULES",
    "TOPK_DIMS",
    "ConfigError",
    "LRSchedule",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "apply_method",
    "build_parser",
    "capture_step",
    "evaluate",
    "main",
    "spawn",
    "train",
]

METHODS = ("swat", "saw", "meprop", "dense")
DISTRIBUTIONS = ("uniform", "erk", "momentum")
SCHEDULES = ("step", "cosine", "constant")
TOPK_DIMS = ("nchw", "chw", "hw", "random")


class ConfigError(ValueError):
    """An invalid training argument; the message names the argument and the problem."""


# --------------------------------------------------------------------------- configuration

_DATASET_DEFAULTS = {
    "digits": dict(model="digits_cnn", epochs=10, batch_size=64, lr=0.05, weight_decay=5e-4),
    "cifar10": dict(model="resnet18", epochs=150, batch_size=128, lr=0.1, weight_decay=5e-4),
    "cifar100": dict(model="resnet18", epochs=150, batch_size=128, lr=0.1, weight_decay=5e-4),
}
# Per-model overrides on CIFAR (paper Tables 11 and 12).
_MODEL_DEFAULTS = {
    "densenet121": dict(batch_size=64),
    "wrn16_8": dict(epochs=200, nesterov=True, gamma=0.2, milestones_frac=(0.3, 0.6, 0.8)),
}


@dataclass
class TrainConfig:
    """Everything a training run depends on. ``None`` fields take dataset/model defaults."""

    dataset: str = "digits"
    data_dir: str | None = None
    model: str | None = None
    method: str = "swat"
    distribution: str = "uniform"
    sparsity: float = 0.9
    period: int = 1
    structured: bool = False
    topk_dims: str = "nchw"
    epochs: int | None = None  # None with max_steps: as many as max_steps needs
    max_steps: int | None = None  # stop after this many optimisation steps (may cut an epoch)
    batch_size: int | None = None  # global batch (split over DDP ranks)
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    nesterov: bool | None = None
    schedule: str = "step"
    milestones: list[int] | None = None  # epochs at which lr *= gamma (default: 1/3, 2/3)
    gamma: float | None = None
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    redistribute_every: int = 1  # epochs between momentum redistributions (SWAT-M)
    seed: int = 0
    out: str | None = None
    resume: str | None = None  # checkpoint file or run folder ("auto": <out>/checkpoint.pt)
    progress: bool = False
    verbose: bool = False
    plots: bool = True
    eval_batch_size: int = 512
    threads: int | None = None  # torch intra-op threads (digits default 1: tiny tensors)

    def resolved(self) -> TrainConfig:
        """A copy with defaults filled in and every field validated (raises ConfigError)."""
        c = dataclasses.replace(self)
        c.dataset = _choice("dataset", c.dataset, tuple(_DATASET_DEFAULTS),
                            normalise=lambda s: s.lower().replace("-", ""))
        dd = _DATASET_DEFAULTS[c.dataset]
        if c.model is None:
            c.model = dd["model"]
        from . import models

        try:
            c.model = models._canonical(c.model)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--model: {e}") from None
        md = _MODEL_DEFAULTS.get(c.model, {}) if c.dataset != "digits" else {}
        auto_epochs = c.epochs is None and c.max_steps is not None
        for key in ("epochs", "batch_size", "lr", "weight_decay"):
            if getattr(c, key) is None and not (key == "epochs" and auto_epochs):
                setattr(c, key, md.get(key, dd[key]))
        if c.nesterov is None:
            c.nesterov = bool(md.get("nesterov", False))
        if c.gamma is None:
            c.gamma = float(md.get("gamma", 0.1))
        c.method = _choice("method", c.method, METHODS)
        c.distribution = _choice("distribution", c.distribution, DISTRIBUTIONS)
        c.topk_dims = _choice("topk-dims", c.topk_dims, TOPK_DIMS)
        c.schedule = _choice("schedule", c.schedule, SCHEDULES)
        c.sparsity = _number("sparsity", c.sparsity, lo=0.0, hi=1.0, hi_open=True)
        c.period = _integer("period", c.period, lo=1)
        if not auto_epochs:
            c.epochs = _integer("epochs", c.epochs, lo=1)
        if c.max_steps is not None:
            c.max_steps = _integer("max-steps", c.max_steps, lo=1)
        c.batch_size = _integer("batch-size", c.batch_size, lo=1)
        c.eval_batch_size = _integer("eval-batch-size", c.eval_batch_size, lo=1)
        c.lr = _number("lr", c.lr, lo=0.0, lo_open=True)
        c.momentum = _number("momentum", c.momentum, lo=0.0, hi=1.0, hi_open=True)
        c.weight_decay = _number("weight-decay", c.weight_decay, lo=0.0)
        c.gamma = _number("gamma", c.gamma, lo=0.0, hi=1.0, lo_open=True)
        c.warmup_epochs = _number("warmup-epochs", c.warmup_epochs, lo=0.0)
        c.label_smoothing = _number("label-smoothing", c.label_smoothing, lo=0.0, hi=1.0,
                                    hi_open=True)
        c.redistribute_every = _integer("redistribute-every", c.redistribute_every, lo=1)
        c.seed = _integer("seed", c.seed, lo=0)
        if c.threads is None and c.dataset == "digits":
            c.threads = 1
        if c.threads is not None:
            c.threads = _integer("threads", c.threads, lo=1)
        if c.nesterov and c.momentum == 0:
            raise ConfigError("--nesterov needs a momentum > 0")
        c._milestones_frac = tuple(md.get("milestones_frac", (1 / 3, 2 / 3)))
        if c.milestones is None:
            if c.epochs is not None:
                c.milestones = sorted({max(1, round(f * c.epochs)) for f in c._milestones_frac})
        else:
            ms = [_integer("milestones", m, lo=1) for m in c.milestones]
            if ms != sorted(ms):
                raise ConfigError(f"--milestones must be increasing, got {ms}")
            c.milestones = ms
        for key in ("structured", "progress", "verbose", "plots", "nesterov"):
            v = getattr(c, key)
            if not isinstance(v, bool):
                raise ConfigError(f"--{key} must be true or false, got {v!r}")
        if c.resume is not None and c.resume == "auto" and c.out is None:
            raise ConfigError("--resume without a path needs --out (resumes <out>/checkpoint.pt)")
        return c

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _choice(name: str, value, choices: tuple[str, ...], normalise=str.lower) -> str:
    if not isinstance(value, str) or normalise(value.strip()) not in choices:
        raise ConfigError(f"--{name}: unknown value {value!r}; choose from {', '.join(choices)}")
    return normalise(value.strip())


def _number(name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name} must be a number, got {value!r}") from None
    if math.isnan(v) or math.isinf(v):
        raise ConfigError(f"--{name} must be finite, got {value!r}")
    lo_bad = lo is not None and (v < lo or (lo_open and v == lo))
    hi_bad = hi is not None and (v > hi or (hi_open and v == hi))
    if lo_bad or hi_bad:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        rng = f"{lb}{lo_s}, {hi_s}{rb}"
        raise ConfigError(f"--{name} must lie in {rng}, got {value!r}")
    return v


def _integer(name: str, value, *, lo=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"--{name} must be an integer, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ConfigError(f"--{name} must be >= {lo}, got {value}")
    return value


def _as_config(config, overrides: dict) -> TrainConfig:
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        unknown = set(config) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        config = TrainConfig(**config)
    elif not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig or dict, got {type(config).__name__}")
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        config = dataclasses.replace(config, **overrides)
    return config


# --------------------------------------------------------------------------- LR schedule


class LRSchedule:
    """Per-iteration multiplier of the base lr (a callable object, so ``LambdaLR`` checkpoints it).

    ``step``: ``gamma ** (number of milestones <= current epoch)`` (epoch-wise steps as in the
    paper's tables); ``cosine``: half-cosine over all steps; ``constant``. A linear warm-up over
    ``warmup_epochs`` multiplies any of them.
    """

    def __init__(self, kind: str, steps_per_epoch: int, total_steps: int,
                 milestones: list[int], gamma: float, warmup_epochs: float = 0.0):
        self.kind = kind
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_steps = int(total_steps)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))

    def __call__(self, step: int) -> float:
        if self.kind == "step":
            epoch = step // self.steps_per_epoch
            f = self.gamma ** sum(epoch >= m for m in self.milestones)
        elif self.kind == "cosine":
            f = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, self.total_steps))))
        else:
            f = 1.0
        if self.warmup_steps > 0 and step < self.warmup_steps:
            f *= (step + 1) / self.warmup_steps
        return f


# --------------------------------------------------------------------------- SWAT plumbing


def _swat_layers(model: nn.Module) -> dict[str, nn.Module]:
    try:
        from .layers import SwatLayer
    except ImportError:
        return {}
    return {n: m for n, m in model.named_modules() if isinstance(m, SwatLayer)}


def apply_method(model: nn.Module, config: TrainConfig) -> nn.Module:
    """SWAT-ify ``model`` in place per ``config`` (``method="dense"`` leaves it untouched).

    SWAT-M (``distribution="momentum"``) starts with density ``1 - sparsity`` in every layer
    (there is no momentum yet); :func:`train` then moves density between layers by momentum
    every ``redistribute_every`` epochs (:func:`sw.distribution.redistribute`).
    """
    if config.method == "dense":
        return model
    from .swatify import set_densities, swat_layers, swatify

    dist_ = "uniform" if config.distribution == "momentum" else config.distribution
    swatify(model, config.sparsity, method=config.method, distribution=dist_,
            period=config.period, structured=config.structured, dims=config.topk_dims,
            seed=config.seed)
    if config.distribution == "momentum":
        set_densities(model, {n: 1.0 - config.sparsity for n in swat_layers(model)})
    return model


def _redistribute(model: nn.Module, optimizer) -> None:
    """SWAT-M: move density between layers by the momentum of their active weights."""
    from .distribution import redistribute

    redistribute(model, optimizer)


def _swat_state(model: nn.Module) -> dict:
    """The SWAT layers' non-parameter state (held thresholds, call counters, densities)."""
    out = {}
    for name, m in _swat_layers(model).items():
        st: dict[str, Any] = {"iteration": int(getattr(m, "iteration", 0)),
                              "sparsity": float(m.sparsity)}
        for h in ("_w_holder", "_a_holder"):
            holder = getattr(m, h, None)
            if holder is not None and hasattr(holder, "state_dict"):
                st[h] = holder.state_dict()
        fm = getattr(m, "_frozen_mask", None)
        st["frozen_mask"] = None if fm is None else fm.clone()
        gen = getattr(m, "_generator", None)
        st["generator"] = None if gen is None else gen.get_state()
        out[name] = st
    return out


def _load_swat_state(model: nn.Module, state: dict) -> None:
    layers = _swat_layers(model)
    if set(layers) != set(state):
        raise ValueError(
            "checkpoint SWAT layers differ from the model's: "
            f"{sorted(set(layers) ^ set(state))[:5]} (was it written with another --method?)"
        )
    for name, st in state.items():
        m = layers[name]
        m.iteration = st["iteration"]
        m.sparsity = st["sparsity"]
        for h in ("_w_holder", "_a_holder"):
            if h in st and getattr(m, h, None) is not None:
                getattr(m, h).load_state_dict(st[h])
        m._frozen_mask = st.get("frozen_mask")
        if st.get("generator") is not None and getattr(m, "_generator", None) is not None:
            m._generator.set_state(st["generator"])


class _LayerStatsAccumulator:
    """Mean weight / activation sparsity of every SWAT layer over an epoch, last thresholds."""

    def __init__(self):
        self.sums: dict[str, dict[str, float]] = {}
        self.counts: dict[str, int] = {}
        self.last: dict[str, dict] = {}

    def add(self, model: nn.Module) -> None:
        for name, m in _swat_layers(model).items():
            st = getattr(m, "stats", None) or {}
            s = self.sums.setdefault(name, {"weight_sparsity": 0.0, "activation_sparsity": 0.0})
            s["weight_sparsity"] += 1.0 - float(st.get("weight_density", 1.0))
            s["activation_sparsity"] += 1.0 - float(st.get("activation_density", 1.0))
            self.counts[name] = self.counts.get(name, 0) + 1
            self.last[name] = st

    def record(self, model: nn.Module) -> dict[str, dict]:
        out = {}
        for name, m in _swat_layers(model).items():
            n = self.counts.get(name, 0)
            rec: dict[str, Any] = {"density": float(m.density)}
            if n:
                rec.update({k: v / n for k, v in self.sums[name].items()})
            last = self.last.get(name, {})
            for k in ("weight_threshold", "activation_threshold"):
                v = last.get(k)
                if isinstance(v, torch.Tensor):  # per-group thresholds: their mean
                    v = float(v.float().mean())
                if v is not None:
                    rec[k] = float(v)
            out[name] = rec
        return out


# --------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    owned: bool = False  # whether train() initialised the process group

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> _Dist:
    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), False)
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws > 1:
        dist.init_process_group("gloo")
        return _Dist(dist.get_rank(), dist.get_world_size(), True)
    return _Dist()


def _sync_buffers(model: nn.Module, d: _Dist) -> None:
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


def _all_reduce_sum(values: list[float], d: _Dist) -> list[float]:
    if d.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- train / evaluate


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
    loss_sum, correct, count = _all_reduce_sum([loss_sum, correct, count],
                                               _Dist(rank, world_size))
    return {"test_loss": loss_sum / max(1.0, count), "test_acc": correct / max(1.0, count)}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_batch(x: torch.Tensor, loss: torch.Tensor, epoch: int, batch: int) -> None:
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
    """Train per ``config`` (plus keyword ``overrides``); see the module docstring.

    ``net`` (an ``nn.Module``) / ``data`` (a :class:`sw.data.Dataset`) replace the model and
    dataset ``config`` names (``net`` is still SWAT-ified per ``config.method``). Under
    ``torchrun`` (``WORLD_SIZE > 1``) the process group is set up here (gloo) and torn down at
    the end.
    """
    from . import models
    from .checkpoint import atomic_save, get_rng_state, load_checkpoint, set_rng_state
    from .data import load_dataset

    cfg = _as_config(config, overrides).resolved()
    threads = torch.get_num_threads()
    d = _init_distributed()
    try:
        return _train(cfg, d, callback, net, data, models, load_dataset, atomic_save,
                      get_rng_state, load_checkpoint, set_rng_state)
    finally:
        torch.set_num_threads(threads)  # --threads applies to this run only
        if d.owned and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg, d, callback, model, dataset, models, load_dataset, atomic_save, get_rng_state,
           load_checkpoint, set_rng_state) -> TrainResult:
    from .checkpoint import FORMAT, VERSION

    if cfg.batch_size % d.world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is not divisible by the "
                          f"{d.world_size} processes")
    local_bs = cfg.batch_size // d.world_size
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir)
    _seed_everything(cfg.seed)
    if model is None:
        want = models.input_shape(cfg.model)[0]
        if want != ds.sample_shape[0]:
            raise ConfigError(f"model {cfg.model} takes {want}-channel inputs but dataset "
                              f"{cfg.dataset} has {ds.sample_shape[0]} channels")
        model = models.build(cfg.model, ds.num_classes)
    opt_params = list(model.parameters())
    optimizer = torch.optim.SGD(opt_params, lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    model = apply_method(model, cfg)
    steps_per_epoch = ds.num_batches("train", local_bs, d.world_size)
    if cfg.epochs is None:  # max_steps without epochs: just enough epochs
        cfg.epochs = math.ceil(cfg.max_steps / steps_per_epoch)
        if cfg.milestones is None:
            frac = getattr(cfg, "_milestones_frac", (1 / 3, 2 / 3))
            cfg.milestones = sorted({max(1, round(f * cfg.epochs)) for f in frac})
    total = cfg.epochs * steps_per_epoch  # the schedule's horizon; max_steps only stops early
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, LRSchedule(cfg.schedule, steps_per_epoch, total, cfg.milestones, cfg.gamma,
                              cfg.warmup_epochs))
    out = Path(cfg.out) if cfg.out else None
    epoch, start_batch, step, history, partial = 0, 0, 0, [], None

    if cfg.resume is not None:
        path = out / "checkpoint.pt" if cfg.resume == "auto" else Path(cfg.resume)
        ck = load_checkpoint(path)
        mismatched = [k for k in ("dataset", "model", "method", "sparsity", "distribution",
                                  "period", "structured", "topk_dims", "seed", "batch_size")
                      if ck["config"].get(k) != getattr(cfg, k)]
        if mismatched:
            raise ConfigError(
                f"--resume {path}: the checkpoint was trained with different "
                + ", ".join(f"{k} ({ck['config'].get(k)!r} vs {getattr(cfg, k)!r})"
                            for k in mismatched))
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _load_swat_state(model, ck.get("swat", {}))
        epoch, start_batch = ck["data"]["epoch"], ck["data"]["batch"]
        step, history, partial = ck["step"], list(ck["history"]), ck["partial"]
        history = [r for r in history if r.get("complete", True)]
        rngs = ck["rng"]
        set_rng_state(rngs[d.rank] if len(rngs) == d.world_size else rngs[0])

    net = model
    if d.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def log(msg: str) -> None:
        if cfg.verbose and d.main:
            print(msg, file=sys.stderr, flush=True)

    def save_checkpoint() -> None:
        rng = get_rng_state()
        rngs = [rng]
        if d.world_size > 1:
            rngs = [None] * d.world_size
            dist.all_gather_object(rngs, rng)
        if out is None or not d.main:
            return
        atomic_save({
            "format": FORMAT, "version": VERSION, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": sched.state_dict(),
            "swat": _swat_state(model), "rng": rngs,
            "data": {"seed": cfg.seed, "epoch": epoch, "batch": start_batch},
            "step": step, "partial": partial, "history": history, "config": cfg.to_dict(),
        }, out / "checkpoint.pt")

    from tqdm.auto import tqdm

    stop = cfg.max_steps is not None and step >= cfg.max_steps
    while epoch < cfg.epochs and not stop:
        net.train()
        for m in _swat_layers(model).values():
            if hasattr(m, "set_epoch"):
                m.set_epoch(epoch)
        acc = partial or {"loss": 0.0, "correct": 0.0, "count": 0.0, "time": 0.0}
        stats = _LayerStatsAccumulator()
        t0 = time.perf_counter()
        bar = tqdm(total=steps_per_epoch, initial=start_batch, desc=f"epoch {epoch + 1}",
                   disable=not (cfg.progress and d.main), leave=False, dynamic_ncols=True)
        batch = start_batch
        for x, y in ds.batches("train", local_bs, seed=cfg.seed, epoch=epoch, rank=d.rank,
                               world_size=d.world_size, start=start_batch):
            outp = net(x)
            loss = loss_fn(outp, y)
            _check_batch(x, loss, epoch, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            sched.step()
            step += 1
            batch += 1
            lv = float(loss.detach())
            acc["loss"] += lv * len(y)
            acc["correct"] += float((outp.detach().argmax(1) == y).sum())
            acc["count"] += len(y)
            stats.add(model)
            bar.update(1)
            bar.set_postfix(loss=f"{lv:.3f}", lr=f"{lr:.3g}")
            if callback is not None:
                callback(StepInfo(step, epoch, batch - 1, lv, lr, model, optimizer, x, y))
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stop = True
                break
        bar.close()
        acc["time"] += time.perf_counter() - t0
        _sync_buffers(model, d)
        complete = batch >= steps_per_epoch
        loss_sum, correct, count = _all_reduce_sum([acc["loss"], acc["correct"], acc["count"]], d)
        if (cfg.distribution == "momentum" and cfg.method != "dense" and complete
                and (epoch + 1) % cfg.redistribute_every == 0):
            _redistribute(model, optimizer)
        rec = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": loss_sum / max(1.0, count), "train_acc": correct / max(1.0, count),
               **evaluate(model, ds, batch_size=cfg.eval_batch_size, rank=d.rank,
                          world_size=d.world_size),
               "epoch_time_s": acc["time"], "complete": complete}
        layers = stats.record(model)
        if layers:
            rec["layers"] = layers
        history.append(rec)
        log(f"epoch {epoch + 1}/{cfg.epochs} step {step}: train loss {rec['train_loss']:.4f} "
            f"acc {rec['train_acc']:.4f} | test loss {rec['test_loss']:.4f} "
            f"acc {rec['test_acc']:.4f} | {acc['time']:.1f}s")
        if complete:
            epoch, start_batch, partial = epoch + 1, 0, None
        else:  # stopped by max_steps: resuming continues this epoch at the next batch
            start_batch, partial = batch, acc
        save_checkpoint()  # the record of an unfinished epoch is dropped again on resume
        if out is not None and d.main:
            from .metrics import write_metrics

            write_metrics(history, out)
    if out is not None and d.main and cfg.plots and history:
        from .plots import plot_history

        plot_history(history, out)
    return TrainResult(model=model, history=history, config=cfg, optimizer=optimizer,
                       scheduler=sched, dataset=ds, steps=step, out=out,
                       final=history[-1] if history else {}, rank=d.rank,
                       world_size=d.world_size)


# --------------------------------------------------------------------------- one step's tensors


def capture_step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                 optimizer: torch.optim.Optimizer | None = None,
                 loss_fn: Callable | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Run one training step (forward, backward and, if ``optimizer`` is given, the update) and
    return per Conv2d/Linear layer (qualified name) the tensors of its three passes:

    ``input`` (A, dense), ``output`` (Y), ``grad_output`` (dY), ``weight`` (W, before the
    update), ``grad_weight`` (dW), ``grad_input`` (dA, ``None`` for the first layer) and, for
    SWAT layers, ``weight_mask`` / ``sparse_weight`` (Ws, the mask the forward used) and
    ``activation_mask`` / ``sparse_input`` (As, exact Top-K of A at the layer's density).
    """
    from .topk import topk_mask

    loss_fn = loss_fn or nn.CrossEntropyLoss()
    records: dict[str, dict[str, Any]] = {}
    handles = []
    swat = _swat_layers(model)
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d | nn.Linear):
            continue
        rec: dict[str, Any] = {"weight": m.weight.detach().clone()}
        if name in swat and swat[name].method != "dense":
            layer = swat[name]
            wm = layer.weight_mask().clone()
            rec["weight_mask"] = wm
            rec["sparse_weight"] = torch.where(wm, rec["weight"], torch.zeros(()))
        records[name] = rec

        def fwd_hook(mod, args, output, rec=rec, name=name):
            a = args[0].detach()
            rec["input"] = a.clone()
            rec["output"] = output.detach().clone()
            if name in swat and swat[name].method != "dense":
                layer = swat[name]
                am = topk_mask(a, layer.density, layer._eff_dims)
                rec["activation_mask"] = am
                rec["sparse_input"] = torch.where(am, a, torch.zeros((), dtype=a.dtype))

        def bwd_hook(mod, grad_input, grad_output, rec=rec):
            rec["grad_output"] = grad_output[0].detach().clone()
            gi = grad_input[0] if grad_input else None
            rec["grad_input"] = None if gi is None else gi.detach().clone()

        handles.append(m.register_forward_hook(fwd_hook))
        handles.append(m.register_full_backward_hook(bwd_hook))
    was = model.training
    model.train()
    try:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        else:
            for p in model.parameters():
                p.grad = None
        inputs = inputs.detach().requires_grad_(False)
        loss = loss_fn(model(inputs), targets)
        with warnings.catch_warnings():  # the first layer's input needs no gradient
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        for name, m in model.named_modules():
            if name in records:
                records[name]["grad_weight"] = m.weight.grad.detach().clone()
        if optimizer is not None:
            optimizer.step()
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    for rec in records.values():
        rec.setdefault("grad_input", None)
    records["__loss__"] = {"loss": loss.detach()}
    return records


# --------------------------------------------------------------------------- local multi-process


def _spawn_worker(rank: int, world_size: int, port: int, config: dict, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    res = train(config)
    state = {k: v.clone() for k, v in res.model.state_dict().items()}
    torch.save({"model": state, "history": res.history},
               os.path.join(result_dir, f"rank{rank}.pt"))


def spawn(config: TrainConfig | dict, nprocs: int = 2) -> list[dict]:
    """Train ``config`` with ``nprocs`` local DistributedDataParallel processes (gloo, CPU)
    without torchrun; returns each rank's ``{"model": state_dict, "history": [...]}``."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    cfg = _as_config(config, {}).resolved().to_dict()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_spawn_worker, args=(nprocs, port, cfg, tmp), nprocs=nprocs, join=True)
        return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True)
                for r in range(nprocs)]


# --------------------------------------------------------------------------- CLI


def _bool_flag(p: argparse.ArgumentParser, name: str, help: str) -> None:
    p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="swat-train",
        description="Train a CNN with Sparse Weight Activation Training (SWAT). Defaults: "
                    "digits (bundled with scikit-learn), digits CNN, SWAT-U at 90%% sparsity.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", default="digits", help="digits | cifar10 | cifar100")
    p.add_argument("--data-dir", default=None,
                   help="folder with the CIFAR python-pickle files (default $SWAT_DATA or ./data)")
    p.add_argument("--model", default=None,
                   help="digits_cnn | resnet18 | vgg16_bn | densenet121 | wrn16_8 | resnet50 "
                        "(default: digits_cnn for digits, resnet18 for CIFAR)")
    p.add_argument("--method", default="swat", help="swat | saw | meprop | dense")
    p.add_argument("--distribution", default="uniform", help="uniform | erk | momentum")
    p.add_argument("--sparsity", default=0.9, type=str, help="target sparsity in [0, 1)")
    p.add_argument("--period", default=1, type=str, help="Top-K threshold period (iterations)")
    p.add_argument("--structured", action="store_true", help="channel Top-K of the weights")
    p.add_argument("--topk-dims", default="nchw", help="nchw | chw | hw | random")
    p.add_argument("--epochs", default=None, type=str, help="epochs (digits 10, CIFAR 150)")
    p.add_argument("--max-steps", default=None, type=str,
                   help="stop after this many optimisation steps")
    p.add_argument("--batch-size", default=None, type=str,
                   help="global batch size (digits 64, CIFAR 128, DenseNet 64)")
    p.add_argument("--lr", default=None, type=str, help="initial lr (digits 0.05, CIFAR 0.1)")
    p.add_argument("--momentum", default=0.9, type=str)
    p.add_argument("--weight-decay", default=None, type=str, help="(default 5e-4)")
    _bool_flag(p, "nesterov", "Nesterov momentum (default: on for WRN, off otherwise)")
    p.add_argument("--schedule", default="step", help="step | cosine | constant")
    p.add_argument("--milestones", default=None,
                   help="comma-separated epochs where lr *= gamma (default 1/3 and 2/3 of epochs)")
    p.add_argument("--gamma", default=None, type=str, help="step factor (default 0.1)")
    p.add_argument("--warmup-epochs", default=0.0, type=str, help="linear lr warm-up")
    p.add_argument("--label-smoothing", default=0.0, type=str)
    p.add_argument("--seed", default=0, type=str)
    p.add_argument("--threads", default=None, type=str,
                   help="torch intra-op threads (default: 1 for digits, torch's default otherwise)")
    p.add_argument("--out", default="runs/swat", help="folder for checkpoint, metrics, plots")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from a checkpoint (no value: <out>/checkpoint.pt)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--quiet", action="store_true", help="no per-epoch summary lines")
    return p


def _parse_num(name: str, s, kind):
    if s is None:
        return None
    try:
        return kind(s)
    except ValueError:
        try:
            v = float(s)
        except ValueError:
            raise ConfigError(f"--{name} must be a number, got {s!r}") from None
        if kind is int and v.is_integer():
            return int(v)
        return v  # validated (and rejected with a clear message) by TrainConfig.resolved


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    a = build_parser().parse_args(argv)
    ms = None
    if a.milestones is not None:
        ms = [_parse_num("milestones", s.strip(), int) for s in a.milestones.split(",")
              if s.strip()]
    return TrainConfig(
        dataset=a.dataset, data_dir=a.data_dir, model=a.model, method=a.method,
        distribution=a.distribution, sparsity=_parse_num("sparsity", a.sparsity, float),
        period=_parse_num("period", a.period, int), structured=a.structured,
        topk_dims=a.topk_dims, epochs=_parse_num("epochs", a.epochs, int),
        max_steps=_parse_num("max-steps", a.max_steps, int),
        batch_size=_parse_num("batch-size", a.batch_size, int),
        lr=_parse_num("lr", a.lr, float), momentum=_parse_num("momentum", a.momentum, float),
        weight_decay=_parse_num("weight-decay", a.weight_decay, float), nesterov=a.nesterov,
        schedule=a.schedule, milestones=ms, gamma=_parse_num("gamma", a.gamma, float),
        warmup_epochs=_parse_num("warmup-epochs", a.warmup_epochs, float),
        label_smoothing=_parse_num("label-smoothing", a.label_smoothing, float),
        seed=_parse_num("seed", a.seed, int), threads=_parse_num("threads", a.threads, int),
        out=a.out, resume=a.resume,
        progress=not a.no_progress, verbose=not a.quiet, plots=not a.no_plots,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``swat-train`` / ``python -m sw.train``; returns the exit code."""
    try:
        cfg = config_from_args(argv).resolved()
        res = train(cfg)
    except (ConfigError, FileNotFoundError) as e:
        print(f"swat-train: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FloatingPointError) as e:
        print(f"swat-train: error: {e}", file=sys.stderr)
        return 1
    if res.final and res.rank == 0:
        f = res.final
        print(f"final: epoch {f['epoch']} step {res.steps} test acc {f['test_acc']:.4f} "
              f"test loss {f['test_loss']:.4f}" + (f" -> {res.out}" if res.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
