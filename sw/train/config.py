"""The training configuration: one typed, validated object that a run depends on.

:class:`TrainConfig` holds every option of ``swat-train`` (the CLI builds one from its flags, the
function API takes one, a dict or keyword overrides). ``resolved()`` fills the dataset and model
defaults (paper Tables 11-13) and validates every field, raising :class:`ConfigError` with a
message that names the option the way the CLI spells it, so the CLI can print it as one line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DISTRIBUTIONS",
    "METHODS",
    "SCHEDULES",
    "TOPK_DIMS",
    "RECIPES",
    "STRUCTURES",
    "TIES",
    "ConfigError",
    "TrainConfig",
    "as_config",
    "default_milestones",
]

METHODS = ("swat", "saw", "meprop", "dense")
DISTRIBUTIONS = ("uniform", "erk", "momentum", "snfs")
SCHEDULES = ("step", "cosine", "constant")
TOPK_DIMS = ("nchw", "chw", "hw", "random")
STRUCTURES = ("none", "channel", "filter")
RECIPES = ("project", "paper")
TIES = ("exact", "keep")
# Models with a dropout layer (``--dropout``); the authors' WRN-16-8 uses 0.3.
DROPOUT_MODELS = {"wrn16_8": 0.3}


class ConfigError(ValueError):
    """An invalid training argument; the message names the argument and the problem."""


DATASET_DEFAULTS = {
    "digits": dict(model="digits_cnn", epochs=10, batch_size=64, lr=0.05, weight_decay=5e-4),
    "cifar10": dict(model="resnet18", epochs=150, batch_size=128, lr=0.1, weight_decay=5e-4),
    "cifar100": dict(model="resnet18", epochs=150, batch_size=128, lr=0.1, weight_decay=5e-4),
}
# Per-model overrides on CIFAR (paper Tables 11 and 12).
MODEL_DEFAULTS = {
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
    structured: bool | str = False  # False/"none", True/"channel" or "filter" (weights)
    topk_dims: str = "nchw"
    recipe: str = "project"  # "paper": the Top-K period as the authors' code runs it
    ties: str | None = None  # "exact" (default) or "keep" (the authors'; default of "paper")
    dropout: float | None = None  # WRN-16-8 only (default 0; 0.3 with recipe "paper")
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
    redistribute_every: int = 1  # epochs between SNFS redistributions (distribution "snfs")
    seed: int = 0
    out: str | None = None
    resume: str | None = None  # checkpoint file or run folder ("auto": <out>/checkpoint.pt)
    force: bool = False  # start again in an ``out`` that already holds a run (no resume)
    progress: bool = False
    verbose: bool = False
    plots: bool = True
    eval_batch_size: int = 512
    threads: int | None = None  # torch intra-op threads (digits default 1: tiny tensors)
    backend: str = "torch"  # GEMM backend (sw.backend): torch | intref | rtl | fpga
    grad_quant: str = "tensor"  # int8 dY operand of the integer backends (sw.hil.GRAD_QUANT)
    port: str | None = None  # serial port of the fpga backend

    def resolved(self) -> TrainConfig:
        """A copy with defaults filled in and every field validated (raises ConfigError)."""
        c = dataclasses.replace(self)
        c.dataset = _choice("dataset", c.dataset, tuple(DATASET_DEFAULTS),
                            normalise=lambda s: s.lower().replace("-", ""))
        dd = DATASET_DEFAULTS[c.dataset]
        if c.model is None:
            c.model = dd["model"]
        from .. import models

        try:
            c.model = models._canonical(c.model)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--model: {e}") from None
        md = _model_defaults(c)
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
        c.structured = structure_name(c.structured)
        c.recipe = _choice("recipe", c.recipe, RECIPES)
        if c.ties is None:
            c.ties = "keep" if c.recipe == "paper" else "exact"
        c.ties = _choice("ties", c.ties, TIES)
        if c.dropout is None:
            c.dropout = DROPOUT_MODELS.get(c.model, 0.0) if c.recipe == "paper" else 0.0
        c.dropout = _number("dropout", c.dropout, lo=0.0, hi=1.0, hi_open=True)
        if c.dropout and c.model not in DROPOUT_MODELS:
            raise ConfigError(f"--dropout: model {c.model} has no dropout layer (only "
                              f"{', '.join(DROPOUT_MODELS)})")
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
        if c.milestones is None:
            if c.epochs is not None:
                c.milestones = default_milestones(c, c.epochs)
        else:
            ms = [_integer("milestones", m, lo=1) for m in c.milestones]
            if ms != sorted(ms):
                raise ConfigError(f"--milestones must be increasing, got {ms}")
            c.milestones = ms
        for key in ("progress", "verbose", "plots", "nesterov", "force"):
            v = getattr(c, key)
            if not isinstance(v, bool):
                raise ConfigError(f"--{key} must be true or false, got {v!r}")
        if c.resume is not None and c.resume == "auto" and c.out is None:
            raise ConfigError("--resume without a path needs --out (resumes <out>/checkpoint.pt)")
        _check_backend(c)
        return c

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def structure_name(value) -> str:
    """``"none"``, ``"channel"`` or ``"filter"`` for a ``structured`` value (``False`` and
    ``True`` mean ``"none"`` and ``"channel"``, as before whole-filter sparsity existed)."""
    if value is False or value is None:
        return "none"
    if value is True:
        return "channel"
    return _choice("structured", value, STRUCTURES)


def _check_backend(c: TrainConfig) -> None:
    """The integer backends lower what the hardware runs (``docs/hardware-in-the-loop.md``)."""
    from ..backend import BACKENDS
    from ..hil import GRAD_QUANT

    c.backend = _choice("backend", c.backend, BACKENDS)
    c.grad_quant = _choice("grad-quant", c.grad_quant, GRAD_QUANT)
    if c.backend == "torch":
        return
    if c.method not in ("swat", "dense"):
        raise ConfigError(f"--backend {c.backend} runs --method swat or dense, not {c.method}")
    if c.period != 1 or c.structured != "none" or c.topk_dims != "nchw":
        raise ConfigError(f"--backend {c.backend} runs unstructured per-tensor Top-K every "
                          "iteration (--period 1, --topk-dims nchw, no --structured)")
    if c.ties != "exact":
        raise ConfigError(f"--backend {c.backend} keeps exactly k (the select unit's tie rule), "
                          f"not --ties {c.ties}")


def _model_defaults(c: TrainConfig) -> dict:
    return MODEL_DEFAULTS.get(c.model, {}) if c.dataset != "digits" else {}


def default_milestones(c: TrainConfig, epochs: int) -> list[int]:
    """The model's default lr milestones for a run of ``epochs`` epochs (1/3 and 2/3; WRN
    30/60/80 %). Used by ``resolved()`` and, when ``max_steps`` alone fixes the epoch count, by
    the loop once it knows the number of steps per epoch."""
    frac = _model_defaults(c).get("milestones_frac", (1 / 3, 2 / 3))
    return sorted({max(1, round(f * epochs)) for f in frac})


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


def as_config(config, overrides: dict) -> TrainConfig:
    """``config`` (None, a dict or a TrainConfig) with keyword ``overrides`` applied."""
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
