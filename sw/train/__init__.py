"""Training CLI and function API for SWAT (``python -m sw.train`` / ``swat-train``).

Function API::

    from sw.train import TrainConfig, train
    result = train(TrainConfig(dataset="digits", method="swat", sparsity=0.9, max_steps=300))
    result.model, result.history, result.final["test_acc"]

``train`` takes a :class:`TrainConfig` (or a dict, or keyword overrides), returns a
:class:`TrainResult`, and optionally calls ``callback(info)`` after every optimisation step.
:func:`capture_step` runs one training step of a model and returns, per SWAT layer, the tensors
of its three passes (the hardware comparison streams those through the core).

The package has one module per job:

=============  ==============================================================================
``config``     :class:`TrainConfig` (typed, validated by ``resolved()``), defaults, ConfigError
``cli``        the ``swat-train`` argument parser and :func:`main`
``loop``       :func:`train`, the epoch/step loop, :func:`evaluate`, :class:`TrainResult`
``outdir``     the run folder: checked before training, stale temporary files, ``--force``
``swat_state`` SWAT-ifying a model per the config, the SWAT layers' checkpointed state, stats
``schedule``   :class:`LRSchedule`, the per-iteration learning-rate multiplier
``capture``    :func:`capture_step`, one step's tensors per layer
``ddp``        process-group set-up, buffer and metric reduction, :func:`spawn`
=============  ==============================================================================

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

from .capture import capture_step
from .cli import build_parser, config_from_args, main
from .config import (
    DISTRIBUTIONS,
    METHODS,
    SCHEDULES,
    TOPK_DIMS,
    ConfigError,
    TrainConfig,
)
from .ddp import spawn
from .loop import StepInfo, TrainResult, evaluate, train
from .schedule import LRSchedule
from .swat_state import apply_method

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
    "config_from_args",
    "evaluate",
    "main",
    "spawn",
    "train",
]
