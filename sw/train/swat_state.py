"""The SWAT side of a training run: SWAT-ifying the model per the configuration, the SWAT layers'
non-parameter state that a checkpoint must carry for a bit-identical resume, and the per-layer
sparsity statistics of an epoch."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..layers import SwatLayer
from .config import TrainConfig

__all__ = ["LayerStats", "apply_method", "load_swat_state", "swat_layers", "swat_state"]


def swat_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{qualified name: SWAT layer}`` of ``model`` in registration order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, SwatLayer)}


def apply_method(model: nn.Module, config: TrainConfig) -> nn.Module:
    """SWAT-ify ``model`` in place per ``config`` (``method="dense"`` leaves it untouched).

    SWAT-M (``distribution="momentum"`` or ``"snfs"``) starts with density ``1 - sparsity`` in
    every layer (there is no momentum yet); :func:`sw.train.train` then moves density between
    layers by momentum after every step (``momentum``, :func:`sw.distribution.momentum_step`)
    or every ``redistribute_every`` epochs (``snfs``, :func:`sw.distribution.redistribute`).
    With ``recipe="paper"`` linear layers recompute their Top-K on every call, and so do
    structured weight masks (the authors' ``custom_linear.py`` / ``drop_structured*``).
    """
    if config.method == "dense":
        return model
    from ..swatify import set_densities, swatify

    momentum = config.distribution in ("momentum", "snfs")
    structured = {"none": False}.get(config.structured, config.structured)
    swatify(model, config.sparsity, method=config.method,
            distribution="uniform" if momentum else config.distribution,
            period=config.period, structured=structured, dims=config.topk_dims,
            seed=config.seed, ties=config.ties)
    if momentum:
        set_densities(model, {n: 1.0 - config.sparsity for n in swat_layers(model)})
    if config.recipe == "paper":
        for m in swat_layers(model).values():
            if m._kind == "linear":
                m.set_periods(weight=1, activation=1)
            elif m.structured:
                m.set_periods(weight=1)
    return model


def swat_state(model: nn.Module) -> dict:
    """The SWAT layers' non-parameter state (held thresholds, call counters, densities)."""
    out = {}
    for name, m in swat_layers(model).items():
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


def load_swat_state(model: nn.Module, state: dict) -> None:
    """Restore what :func:`swat_state` saved (raises ValueError when the layers differ)."""
    layers = swat_layers(model)
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


class LayerStats:
    """Mean weight / activation sparsity of every SWAT layer over an epoch, last thresholds."""

    def __init__(self):
        self.sums: dict[str, dict[str, float]] = {}
        self.counts: dict[str, int] = {}
        self.last: dict[str, dict] = {}

    def add(self, model: nn.Module) -> None:
        for name, m in swat_layers(model).items():
            st = getattr(m, "stats", None) or {}
            s = self.sums.setdefault(name, {"weight_sparsity": 0.0, "activation_sparsity": 0.0})
            s["weight_sparsity"] += 1.0 - float(st.get("weight_density", 1.0))
            s["activation_sparsity"] += 1.0 - float(st.get("activation_density", 1.0))
            self.counts[name] = self.counts.get(name, 0) + 1
            self.last[name] = st

    def record(self, model: nn.Module) -> dict[str, dict]:
        out = {}
        for name, m in swat_layers(model).items():
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
