"""Per-layer density of weights and activations (paper §3.3.2: SWAT-U, SWAT-ERK, SWAT-M).

The "layers" are the ``nn.Conv2d`` / ``nn.Linear`` modules (SWAT twins included) in
``model.named_modules()`` order; their weight element counts ``n_l`` define the budget. The same
density is used for a layer's weights and its input activations (paper §3.3.2).

``"uniform"`` (SWAT-U)
    the first layer is dense (density 1.0) and outside the budget; every other layer has
    density ``1 - sparsity``.
``"erk"`` (SWAT-ERK, RigL's Erdős–Rényi-Kernel, Evci et al. 2020)
    every layer is in the budget, including the first. Density ``d_l = eps * (sum of the weight
    shape dims) / (product of the weight shape dims)`` with one ``eps`` chosen so that
    ``sum_l d_l n_l = (1 - sparsity) * sum_l n_l``. A layer whose ``d_l`` would exceed 1 is made
    dense, its whole count taken out of the budget, and ``eps`` is solved again (iterated until
    no layer exceeds 1, exactly RigL's ``get_sparsities_erdos_renyi`` with power 1). The budget
    is exact in real numbers; kept counts are then ``ceil(d_l n_l)`` (at most one element per
    layer above it).
``"momentum"`` (SWAT-M, after Dettmers & Zettlemoyer's sparse momentum)
    needs the optimizer's momentum (SGD ``momentum_buffer`` or Adam ``exp_avg``). Starting from
    the layers' current densities (a plain model: ``1 - sparsity`` everywhere, first layer in
    the budget), :func:`redistribute` takes ``prune_rate`` of every layer's kept weights away
    and gives the freed total back to the layers in proportion to the mean momentum magnitude
    of each layer's *active* (Top-K) weights, capping every layer at density 1 and handing the
    excess to the others in the same proportion. The total kept count is unchanged. Call
    ``redistribute(model, optimizer)`` periodically during training (e.g. every epoch, as SNFS
    does); ``layer_densities(..., "momentum", optimizer=...)`` is one such step without
    applying it.

``keep_dense`` names layers forced to density 1.0. For ``"erk"`` they stay in the budget like a
saturated layer (as in RigL: their extra kept weights are paid for by the others, so the total
is still ``(1 - sparsity)`` of all layers). For ``"momentum"`` they are fixed at 1.0 and the
redistribution preserves the kept total of the other layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import SwatLayer, check_sparsity
from .topk import topk_mask

__all__ = ["DISTRIBUTIONS", "prunable_layers", "layer_densities", "redistribute", "budget"]

DISTRIBUTIONS = ("uniform", "erk", "momentum")


def prunable_layers(model: nn.Module) -> dict:
    """``{qualified name: module}`` of the Conv2d/Linear layers in registration order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _check(model, sparsity, distribution, keep_dense):
    check_sparsity(sparsity)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"unknown distribution {distribution!r}; expected one of {', '.join(DISTRIBUTIONS)}"
        )
    layers = prunable_layers(model)
    if not layers:
        raise ValueError("model has no Conv2d/Linear layer to sparsify")
    unknown = set(keep_dense) - set(layers)
    if unknown:
        raise ValueError(f"keep_dense names unknown layers: {sorted(unknown)}")
    return layers


def layer_densities(
    model: nn.Module,
    sparsity: float,
    distribution: str = "uniform",
    optimizer=None,
    *,
    keep_dense=(),
    prune_rate: float = 0.5,
) -> dict:
    """``{qualified layer name: density}`` for ``"uniform"``, ``"erk"`` or ``"momentum"``."""
    layers = _check(model, sparsity, distribution, keep_dense)
    names = list(layers)
    d0 = 1.0 - float(sparsity)
    if distribution == "uniform":
        out = {n: d0 for n in names}
        out[names[0]] = 1.0
        for n in keep_dense:
            out[n] = 1.0
        return out
    if distribution == "erk":
        return _erk(layers, d0, keep_dense)
    return _momentum(model, layers, d0, optimizer, keep_dense, prune_rate)


def _erk(layers: dict, density: float, keep_dense) -> dict:
    dense = set(keep_dense)
    shapes = {n: tuple(m.weight.shape) for n, m in layers.items()}
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    while True:
        rhs = 0.0
        divisor = 0.0
        for n in layers:
            if n in dense:
                rhs -= (1.0 - density) * sizes[n]  # its zeros are made up by the others
            else:
                rhs += density * sizes[n]
                divisor += raw[n] * sizes[n]
        if divisor <= 0:
            raise ValueError("ERK: every layer is dense; the sparsity cannot be met")
        eps = rhs / divisor
        free = [n for n in layers if n not in dense]
        top = max(raw[n] for n in free)
        if eps * top > 1.0:
            dense.update(n for n in free if raw[n] == top)
            continue
        break
    return {n: 1.0 if n in dense else eps * raw[n] for n in layers}


def budget(model: nn.Module, densities: dict) -> tuple[float, int]:
    """``(sum_l d_l n_l, sum_l n_l)`` over the named layers (weight elements)."""
    layers = prunable_layers(model)
    kept = sum(densities[n] * layers[n].weight.numel() for n in densities)
    total = sum(layers[n].weight.numel() for n in densities)
    return kept, total


def _momentum_of(optimizer, p: torch.Tensor) -> torch.Tensor:
    if optimizer is None:
        raise ValueError(
            "distribution 'momentum' needs optimizer state: pass optimizer= (SGD with momentum > 0 "
            "or Adam) after at least one optimizer step"
        )
    st = optimizer.state.get(p, {})
    for key in ("momentum_buffer", "exp_avg"):
        buf = st.get(key)
        if buf is not None:
            return buf
    raise ValueError(
        "distribution 'momentum': the optimizer holds no momentum for a layer weight (need SGD "
        "'momentum_buffer' with momentum > 0, or Adam 'exp_avg'; take one optimizer step first)"
    )


def _current_density(m, d0):
    if isinstance(m, SwatLayer):
        return m.density
    return d0


def _momentum(model, layers, d0, optimizer, keep_dense, prune_rate):
    if not 0.0 < prune_rate <= 1.0:
        raise ValueError(f"prune_rate must lie in (0, 1], got {prune_rate!r}")
    dense = set(keep_dense)
    names = [n for n in layers if n not in dense]
    sizes = {n: layers[n].weight.numel() for n in layers}
    cur = {n: min(1.0, _current_density(layers[n], d0)) for n in names}
    if not any(isinstance(layers[n], SwatLayer) for n in names):
        cur = {n: d0 for n in names}
    score = {}
    for n in names:
        m = layers[n]
        mom = _momentum_of(optimizer, m.weight).detach()
        if isinstance(m, SwatLayer):
            mask = m.weight_mask()
        else:
            mask = topk_mask(m.weight.detach(), cur[n])
        act = mom[mask]
        score[n] = float(act.abs().mean()) if act.numel() else 0.0
    kept = {n: cur[n] * sizes[n] for n in names}
    total_kept = sum(kept.values())
    base = {n: (1.0 - prune_rate) * kept[n] for n in names}
    freed = total_kept - sum(base.values())
    new = _allocate(base, freed, score, sizes)
    out = {n: 1.0 for n in dense}
    out.update({n: new[n] / sizes[n] for n in names})
    return {n: out[n] for n in layers}


def _allocate(base: dict, freed: float, score: dict, sizes: dict) -> dict:
    """Give ``freed`` to the layers in proportion to ``score``, capping each at ``sizes``."""
    new = dict(base)
    open_ = {n for n in base if new[n] < sizes[n]}
    for _ in range(len(base) + 1):
        if freed <= 1e-9 or not open_:
            break
        tot = sum(score[n] for n in open_)
        share = (
            {n: score[n] / tot for n in open_} if tot > 0 else {n: 1 / len(open_) for n in open_}
        )
        spill = 0.0
        for n in list(open_):
            new[n] += freed * share[n]
            if new[n] >= sizes[n]:
                spill += new[n] - sizes[n]
                new[n] = float(sizes[n])
                open_.discard(n)
        freed = spill
    return new


def redistribute(model: nn.Module, optimizer, *, prune_rate: float = 0.5, keep_dense=()) -> dict:
    """One SWAT-M step: recompute the momentum densities and set them on the SWAT layers.

    Returns the new ``{name: density}``. The total kept weight count over the budget layers is
    unchanged (the model's layers must be SWAT layers; see :func:`sw.swatify`).
    """
    layers = prunable_layers(model)
    if not any(isinstance(m, SwatLayer) for m in layers.values()):
        raise ValueError("redistribute needs a swatified model (no SWAT layer found)")
    ref = next(m for m in layers.values() if isinstance(m, SwatLayer))
    dens = layer_densities(
        model, 1.0 - ref.density if ref.density < 1 else 0.0, "momentum", optimizer,
        keep_dense=keep_dense, prune_rate=prune_rate,
    )  # fmt: skip
    for n, d in dens.items():
        m = layers[n]
        if isinstance(m, SwatLayer):
            m.sparsity = min(max(0.0, 1.0 - d), math.nextafter(1.0, 0.0))
    return dens
