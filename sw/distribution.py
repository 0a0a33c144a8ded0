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
``"momentum"`` (SWAT-M as the authors' code does it: ``dynamic_sparsity.py``)
    needs the optimizer's momentum (SGD ``momentum_buffer``; Adam: ``exp_avg / (sqrt(exp_avg_sq)
    + 1e-8)``). After *every* optimizer step (:func:`momentum_step`), per layer ``m_l`` is the
    mean ``|momentum|`` over the weights that were active in that step's forward
    (``gather_momentum``), normalised to shares ``s_l = m_l / sum m``; with the budget
    ``B = (1 - sparsity) * sum_l n_l`` (every layer, first and last included) each layer gets
    ``ceil(s_l * B)`` kept weights, and :func:`regrow` (``sparsity_regrowth``) makes a layer
    that would exceed 0.99 of its size dense and spreads the excess evenly over all layers in
    further rounds. A plain model starts at ``1 - sparsity`` everywhere. Departure: a layer whose
    mask is empty (NaN mean) gets share 0 where theirs would stop with an error.
``"snfs"`` (the project's earlier SWAT-M, after Dettmers & Zettlemoyer's sparse momentum)
    starting from the layers' current densities, :func:`redistribute` takes ``prune_rate`` of
    every layer's kept weights away and gives the freed total back to the layers in proportion
    to the mean momentum magnitude of each layer's active (Top-K) weights, capping every layer
    at density 1 and handing the excess to the others in the same proportion. The total kept
    count is unchanged. Called once per epoch (as SNFS does). It gives densities up to ~0.36
    apart from the authors' scheme after one step and does not converge to them.

``keep_dense`` names layers forced to density 1.0. For ``"erk"`` they stay in the budget like a
saturated layer (as in RigL: their extra kept weights are paid for by the others, so the total
is still ``(1 - sparsity)`` of all layers). For ``"snfs"`` they are fixed at 1.0 and the
redistribution preserves the kept total of the other layers; ``"momentum"`` ignores them (the
authors' scheme has no such layers).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import SwatLayer, check_sparsity
from .topk import check_density, topk_mask

__all__ = [
    "DISTRIBUTIONS",
    "active_weight_masks",
    "budget",
    "layer_densities",
    "momentum_step",
    "prunable_layers",
    "redistribute",
    "regrow",
]

DISTRIBUTIONS = ("uniform", "erk", "momentum", "snfs")


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
    masks: dict | None = None,
) -> dict:
    """``{qualified layer name: density}`` for ``"uniform"``, ``"erk"``, ``"momentum"`` or
    ``"snfs"`` (the last two: one redistribution step without applying it; ``masks`` are the
    active-weight masks for ``"momentum"``, default each layer's current Top-K mask)."""
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
    if distribution == "momentum":
        return _momentum_paper(layers, d0, optimizer, masks)
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


def _momentum_of(optimizer, p: torch.Tensor, adam_normalised: bool = False) -> torch.Tensor:
    if optimizer is None:
        raise ValueError(
            "distribution 'momentum' needs optimizer state: pass optimizer= (SGD with momentum > 0 "
            "or Adam) after at least one optimizer step"
        )
    st = optimizer.state.get(p, {})
    if st.get("momentum_buffer") is not None:
        return st["momentum_buffer"]
    if st.get("exp_avg") is not None:
        # Adam as the authors' get_momentum_for_weight: exp_avg / (sqrt(exp_avg_sq) + 1e-8)
        if adam_normalised and st.get("exp_avg_sq") is not None:
            return st["exp_avg"] / (torch.sqrt(st["exp_avg_sq"]) + 1e-08)
        return st["exp_avg"]
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


def regrow(sizes: dict, shares: dict, density: float) -> dict:
    """Kept weight counts per layer: the authors' ``sparsity_regrowth``, line for line.

    ``sizes``: ``{layer: weight count}``, ``shares``: ``{layer: momentum share}`` (summing to
    1), ``density``: the overall density. Round 1 gives every layer ``ceil(share * B)`` with
    ``B = density * sum(sizes)``; a layer above ``0.99 * size`` is set to its size and the
    difference (negative when the layer was between 0.99 and 1.0 of its size) goes to the
    residual. While the residual exceeds the number of layers, every layer gets
    ``ceil(residual / layers)`` more in the next round (full ones overflow again). It stops once
    the previous round's total exceeded ``B``, the residual is spent, or after 1000 rounds.
    """
    total = sum(sizes.values())
    target = density * total
    kept: dict = {}
    residual, mean_residual, rounds, total_kept = 9999, 0, 0, 0
    while residual > 0 and rounds < 1000:
        if total_kept > target:
            break
        residual = total_kept = 0
        for n, size in sizes.items():
            grow = kept[n] if n in kept else math.ceil(shares[n] * density * total)
            grow += mean_residual
            if grow > 0.99 * size:
                kept[n] = size
                residual += grow - size
            else:
                kept[n] = grow
            total_kept += kept[n]
        if not kept:
            mean_residual = 0
        elif residual > len(kept):
            mean_residual = math.ceil(residual / len(kept))
        else:
            residual = 0
        rounds += 1
    return kept


def active_weight_masks(model: nn.Module) -> dict:
    """``{name: bool mask}`` of the weights each SWAT layer's last training forward used: the
    held (or just recomputed) threshold applied to the current weights, as the authors'
    ``gather_statistic`` does (call it before ``optimizer.step()``)."""
    out = {}
    for n, m in prunable_layers(model).items():
        if not isinstance(m, SwatLayer):
            continue
        if m._frozen_mask is not None:
            out[n] = m._frozen_mask
            continue
        h = m._w_holder
        w = m.weight.detach()
        mask = h.held_mask(w) if h.threshold is not None else None
        out[n] = mask if mask is not None else m.weight_mask()
    return out


def _momentum_paper(layers: dict, d0: float, optimizer, masks) -> dict:
    names = list(layers)
    sizes = {n: layers[n].weight.numel() for n in names}
    score = {}
    for n in names:
        m = layers[n]
        mom = _momentum_of(optimizer, m.weight, adam_normalised=True).detach()
        if masks is not None and n in masks:
            mask = masks[n]
        elif isinstance(m, SwatLayer):
            mask = m.weight_mask()
        else:
            mask = topk_mask(m.weight.detach(), d0)
        act = mom[mask]
        score[n] = float(act.abs().mean()) if act.numel() else 0.0
    tot = sum(score.values())
    if not tot > 0:
        raise ValueError("distribution 'momentum': the momentum of every layer's active weights "
                         "is zero; take an optimizer step with a non-zero gradient first")
    kept = regrow(sizes, {n: score[n] / tot for n in names}, d0)
    return {n: kept[n] / sizes[n] for n in names}


def _overall_density(model: nn.Module) -> float:
    """The overall density the SWAT layers hold now (kept weights / weights)."""
    layers = [m for m in prunable_layers(model).values() if isinstance(m, SwatLayer)]
    if not layers:
        raise ValueError("redistribution needs a swatified model (no SWAT layer found)")
    kept = sum(m.density * m.weight.numel() for m in layers)
    return kept / sum(m.weight.numel() for m in layers)


def _apply(model: nn.Module, dens: dict) -> None:
    layers = prunable_layers(model)
    for n, d in dens.items():
        m = layers[n]
        if isinstance(m, SwatLayer):
            m.sparsity = min(max(0.0, 1.0 - d), math.nextafter(1.0, 0.0))


def momentum_step(model: nn.Module, optimizer, *, density: float | None = None,
                  masks: dict | None = None) -> dict:
    """One SWAT-M step as the authors do it after every ``optimizer.step()``; sets and returns
    the new ``{name: density}`` of the SWAT layers.

    ``density``: the overall density to keep (default: what the layers hold now); ``masks``:
    :func:`active_weight_masks` taken *before* the optimizer step (default: each layer's current
    Top-K mask).
    """
    d0 = _overall_density(model) if density is None else check_density(density)
    layers = {n: m for n, m in prunable_layers(model).items() if isinstance(m, SwatLayer)}
    dens = _momentum_paper(layers, d0, optimizer, masks)
    _apply(model, dens)
    return dens


def redistribute(model: nn.Module, optimizer, *, prune_rate: float = 0.5, keep_dense=()) -> dict:
    """One SNFS-style step (``"snfs"``): recompute the momentum densities and set them on the
    SWAT layers.

    Returns the new ``{name: density}``. The total kept weight count over the budget layers is
    unchanged (the model's layers must be SWAT layers; see :func:`sw.swatify`).
    """
    layers = prunable_layers(model)
    if not any(isinstance(m, SwatLayer) for m in layers.values()):
        raise ValueError("redistribute needs a swatified model (no SWAT layer found)")
    ref = next(m for m in layers.values() if isinstance(m, SwatLayer))
    dens = layer_densities(
        model, 1.0 - ref.density if ref.density < 1 else 0.0, "snfs", optimizer,
        keep_dense=keep_dense, prune_rate=prune_rate,
    )  # fmt: skip
    _apply(model, dens)
    return dens
