"""Sparsification angle (SWAT ICLR submission §4, Definition 3, Lemma B.1).

The sparsification angle of a vector ``v`` under a sparsifying function ``f`` is the angle
between ``v`` and ``f(v)``. For any masking ``f`` (keep a subset, zero the rest)
``cos = ||f(v)|| / ||v||``, so Top-K (keeping the largest magnitudes) gives the smallest angle
of all maskings with the same number of kept elements (Lemma B.1). For a 1000-dimensional
standard normal vector the Top-K angle at 90 % sparsity is about 48 degrees, far below the
~90 degrees between two random vectors (paper Fig. 9a).

Tensors are flattened: the angle is that of the whole tensor viewed as one vector.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import SwatLayer
from .topk import check_finite, topk

__all__ = ["angle", "sparsification_angle", "layer_angles", "model_angles"]


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle in degrees between ``a`` and ``b`` viewed as flat vectors (float64 arithmetic)."""
    if a.numel() != b.numel():
        raise ValueError(f"angle needs equally many elements, got {a.numel()} and {b.numel()}")
    check_finite(a)
    check_finite(b)
    x = a.detach().reshape(-1).double()
    y = b.detach().reshape(-1).double()
    nx, ny = x.norm(), y.norm()
    if nx == 0 or ny == 0:
        raise ValueError("angle is undefined for a zero vector")
    c = float((x @ y) / (nx * ny))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def sparsification_angle(
    v: torch.Tensor, density: float, dims: str = "nchw", *, generator=None
) -> float:
    """Angle in degrees between ``v`` and its Top-K sparsified version (``sw.topk.topk``)."""
    return angle(v, topk(v, density, dims, generator=generator))


def layer_angles(layer: nn.Module, x: torch.Tensor, density: float | None = None) -> dict:
    """Sparsification angles of one conv/linear layer: its weight and its input ``x``.

    ``density`` defaults to the layer's own (``layer.density`` for SWAT layers). Uses the
    layer's Top-K variant (``dims``) and, for structured layers, its weight selection: whole
    filters (``structured="filter"``) or ``[R, S]`` channel slices (``structured=True``).
    """
    from .topk import topk_channels, topk_filters

    if density is None:
        density = getattr(layer, "density", None)
        if density is None:
            raise ValueError("density is needed for a layer that is not a SWAT layer")
    dims = getattr(layer, "_eff_dims", "nchw")
    w = layer.weight.detach()
    if getattr(layer, "structure", None) == "filter" and w.ndim > 2:
        ws = topk_filters(w, density)
    elif getattr(layer, "structured", False):
        ws = topk_channels(w, density)
    else:
        ws = topk(w, density, dims)
    if isinstance(layer, nn.Linear) and x.ndim > 2:
        x = x.reshape(-1, x.shape[-1])
    return {"weight": angle(w, ws), "activation": sparsification_angle(x, density, dims)}


def model_angles(model: nn.Module, *inputs, density: float | None = None) -> dict:
    """``{layer name: {"weight": deg, "activation": deg}}`` for every SWAT layer (or, with
    ``density`` given, every Conv2d/Linear) on one forward of ``model(*inputs)`` (no grad)."""
    found: dict = {}
    handles = []
    for name, m in model.named_modules():
        plain = density is not None and isinstance(m, (nn.Conv2d, nn.Linear))
        if isinstance(m, SwatLayer) or plain:
            if isinstance(m, SwatLayer) and density is None and m.density >= 1.0:
                continue

            def hook(mod, inp, out, name=name):
                found[name] = layer_angles(mod, inp[0].detach(), density)

            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return found
