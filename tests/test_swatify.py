"""swatify: in-place replacement, shared parameters, first layer dense, BN untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sw
from sw.layers import SwatConv2d, SwatLinear
from sw.swatify import collect_stats, freeze_topology, set_epoch, swat_layers


def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )


def test_replaces_in_place_and_shares_parameters():
    m = net()
    w0 = m[0].weight
    x = torch.randn(2, 3, 6, 6)
    y_dense = m(x)
    out = sw.swatify(m, 0.9)
    assert out is m
    assert type(m[0]) is SwatConv2d and type(m[3][0]) is SwatConv2d and type(m[6]) is SwatLinear
    assert type(m[1]) is nn.BatchNorm2d
    assert m[0].weight is w0  # same Parameter object: optimizers stay valid
    assert m[0].density == 1.0  # first layer dense (uniform)
    assert m[3][0].density == pytest.approx(0.1) and m[6].density == pytest.approx(0.1)
    assert m[3][0].padding == (1, 1) and m[3][0].bias is not None and m[0].bias is None
    m.eval()
    y = m(x)
    assert y.shape == y_dense.shape
    assert not torch.allclose(y, y_dense)  # sparse now


def test_options_propagate():
    m = sw.swatify(net(), 0.5, method="saw", period=4, structured=True, dims="chw")
    layer = m[3][0]
    assert (layer.method, layer.period, layer.structured, layer.dims) == ("saw", 4, True, "chw")


def test_trains_and_stats():
    m = sw.swatify(net(), 0.8)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, t = torch.randn(4, 3, 6, 6), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), t)
        loss.backward()
        opt.step()
    st = collect_stats(m)
    assert set(st) == {"0", "3.0", "6"}
    assert st["3.0"]["iteration"] == 2
    assert st["3.0"]["weight_density"] == pytest.approx(0.2, abs=0.01)
    # at most ceil(0.2 * 1152) = 231 of the 4*8*6*6 inputs kept (fewer if some kept are zero)
    assert 0 < st["3.0"]["activation_density"] <= 231 / 1152


def test_dense_method_is_identity():
    m = net()
    x = torch.randn(2, 3, 6, 6)
    ref = m(x)
    sw.swatify(m, 0.9, method="dense")
    assert torch.equal(m(x), ref)


def test_keep_dense_and_erk():
    m = sw.swatify(net(), 0.9, keep_dense=("6",))
    assert m[6].density == 1.0
    m = sw.swatify(net(), 0.9, distribution="erk")
    assert m[0].density < 1.0 or m[0].density == 1.0  # ERK decides; just runs
    assert len(swat_layers(m)) == 3


def test_freeze_helpers():
    m = sw.swatify(net(), 0.5, freeze_after_epoch=3)
    set_epoch(m, 2)
    assert not m[3][0].topology_frozen
    set_epoch(m, 3)
    assert m[3][0].topology_frozen
    m2 = sw.swatify(net(), 0.5)
    freeze_topology(m2)
    assert all(layer.topology_frozen for layer in swat_layers(m2).values())


def test_bad_arguments():
    with pytest.raises(ValueError, match="sparsity"):
        sw.swatify(net(), 1.0)
    with pytest.raises(ValueError, match="sparsity"):
        sw.swatify(net(), -0.5)
    with pytest.raises(ValueError, match="unknown method"):
        sw.swatify(net(), 0.5, method="prune")
    with pytest.raises(ValueError, match="unknown distribution"):
        sw.swatify(net(), 0.5, distribution="random")
    with pytest.raises(ValueError, match="unknown dims"):
        sw.swatify(net(), 0.5, dims="nc")


def test_swatify_callable_after_submodule_import():
    import sw.swatify as mod  # binds the module to the attribute sw.swatify

    assert callable(sw.swatify)
    assert isinstance(sw.swatify(net(), 0.5)[3][0], SwatConv2d)
    assert callable(mod.swatify)


def test_resnet18_from_registry():
    from sw import models

    m = models.build("resnet18", num_classes=10)
    n_conv = sum(isinstance(x, nn.Conv2d) for x in m.modules())
    n_bn = sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    sw.swatify(m, 0.9)
    layers = swat_layers(m)
    assert len(layers) == n_conv + 1  # every conv + the classifier
    assert sum(type(x) is nn.BatchNorm2d for x in m.modules()) == n_bn
    first = next(iter(layers.values()))
    assert first.density == 1.0
    assert all(lay.density == pytest.approx(0.1) for lay in list(layers.values())[1:])
    x = torch.randn(2, 3, 4, 4)
    m(x).sum().backward()
    assert all(lay.weight.grad is not None for lay in layers.values())


def test_set_densities():
    from sw.swatify import set_densities

    m = sw.swatify(net(), 0.5)
    set_densities(m, {"3.0": 0.25, "6": 1.0})
    assert m[3][0].density == pytest.approx(0.25) and m[6].density == 1.0
    with pytest.raises(ValueError, match="no SWAT layer"):
        set_densities(m, {"1": 0.5})
    with pytest.raises(ValueError, match="density"):
        set_densities(m, {"6": 0.0})
