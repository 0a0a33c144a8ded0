"""Turn a dense PyTorch model into a SWAT model in place (``sw.swatify``).

Every ``nn.Conv2d`` / ``nn.Linear`` (in ``model.named_modules()`` order) is replaced by its
:class:`sw.layers.SwatConv2d` / :class:`sw.layers.SwatLinear` twin sharing the same parameter
objects (an optimizer built before ``swatify`` keeps working). BatchNorm and every other module
is untouched (paper Appendix A.8). The per-layer densities come from
:func:`sw.distribution.layer_densities`; with ``"uniform"`` the first layer (first Conv2d/Linear
in registration order) is dense.
"""

from __future__ import annotations

from torch import nn

from .layers import (
    MaskReLU,
    SwatConv2d,
    SwatLayer,
    SwatLinear,
    check_method,
    check_sparsity,
)

__all__ = [
    "swatify",
    "swat_layers",
    "collect_stats",
    "set_epoch",
    "freeze_topology",
    "set_densities",
]


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def swatify(
    model: nn.Module,
    sparsity: float,
    *,
    method: str = "swat",
    distribution: str = "uniform",
    period: int = 1,
    structured: bool | str = False,
    dims: str = "nchw",
    mask_update: bool = False,
    freeze_after_epoch: int | None = None,
    keep_dense=(),
    optimizer=None,
    seed: int = 0,
    mask_relu: bool = False,
    ties: str = "exact",
) -> nn.Module:
    """Replace every Conv2d/Linear of ``model`` in place by its SWAT twin; returns ``model``.

    ``sparsity`` in ``[0, 1)`` is the target (see :mod:`sw.distribution` for how
    ``distribution`` spreads it). ``keep_dense`` names layers to leave dense (density 1.0) on top
    of the distribution's choice (e.g. the WRN first/last layers of the paper's Table 12).
    Already-SWAT layers are reconfigured, not wrapped twice. ``mask_relu=True`` also replaces
    every ``nn.ReLU`` module by :class:`sw.layers.MaskReLU` (saves a 1-bit mask instead of its
    dense output, so the saved-activation memory really shrinks; functional ``F.relu`` calls
    inside other modules are not reached). ``structured``: ``False``, ``True`` / ``"channel"``
    or ``"filter"``; ``ties``: ``"exact"`` or ``"keep"`` (see :mod:`sw.layers`).
    """
    from .distribution import layer_densities, prunable_layers

    check_sparsity(sparsity)
    check_method(method)
    if not isinstance(model, nn.Module):
        raise ValueError(f"swatify needs an nn.Module, got {type(model).__name__}")
    if distribution in ("momentum", "snfs") and (optimizer is None or not optimizer.state):
        # SWAT-M starts from the same density everywhere (first layer in the budget; an optimizer
        # without state has no momentum yet); the training loop then calls
        # sw.distribution.momentum_step / redistribute periodically.
        dens = {n: 1.0 - float(sparsity) for n in prunable_layers(model)}
        dens.update({n: 1.0 for n in keep_dense})
    else:
        dens = layer_densities(
            model, sparsity, distribution, optimizer=optimizer, keep_dense=keep_dense
        )
    kw = dict(
        method=method,
        period=period,
        structured=structured,
        dims=dims,
        mask_update=mask_update,
        freeze_after_epoch=freeze_after_epoch,
        seed=seed,
        ties=ties,
    )
    targets = [
        (n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n
    ]
    if isinstance(model, (nn.Conv2d, nn.Linear)):
        raise ValueError("swatify needs a container model; wrap a single layer in nn.Sequential")
    for name, m in targets:
        sp = max(0.0, 1.0 - dens[name])
        if isinstance(m, SwatLayer):
            m._swat_init(sparsity=sp, **kw)
            continue
        cls = SwatConv2d if isinstance(m, nn.Conv2d) else SwatLinear
        new = cls.from_dense(m, sparsity=sp, **kw)
        new.distribution = distribution
        _set_submodule(model, name, new)
    if mask_relu:
        relus = [n for n, m in model.named_modules() if type(m) is nn.ReLU and n]
        for name in relus:
            _set_submodule(model, name, MaskReLU())
    model.swat_config = dict(
        sparsity=sparsity, distribution=distribution, mask_relu=mask_relu, **kw
    )
    return model


def swat_layers(model: nn.Module) -> dict:
    """``{qualified name: layer}`` of the SWAT layers of ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, SwatLayer)}


def collect_stats(model: nn.Module) -> dict:
    """``{name: layer.stats}`` (thresholds, achieved densities of the last training step)."""
    return {n: dict(m.stats) for n, m in swat_layers(model).items()}


def set_epoch(model: nn.Module, epoch: int) -> None:
    """Tell every SWAT layer the epoch (freezes topologies with ``freeze_after_epoch``)."""
    for m in swat_layers(model).values():
        m.set_epoch(epoch)


def freeze_topology(model: nn.Module) -> None:
    """Freeze the weight mask of every SWAT layer now (Fig. 8 ablation)."""
    for m in swat_layers(model).values():
        m.freeze_topology()


def set_densities(model: nn.Module, densities: dict) -> None:
    """Set the density of the named SWAT layers (e.g. after momentum redistribution)."""
    layers = swat_layers(model)
    for name, d in densities.items():
        if name not in layers:
            raise ValueError(f"no SWAT layer named {name!r}")
        d = float(d)
        if not 0.0 < d <= 1.0:
            raise ValueError(f"density of {name!r} must lie in (0, 1], got {d}")
        layers[name].sparsity = max(0.0, 1.0 - d)


# `import sw.swatify` binds the *module* to the attribute `sw.swatify`, shadowing the lazy export
# of the function in sw/__init__.py. Make the module itself callable so that `sw.swatify(model,
# ...)` works whichever of the two the attribute currently holds.
class _CallableModule(__import__("types").ModuleType):
    def __call__(self, *args, **kwargs):
        return swatify(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
