"""Sparsity distributions: uniform, ERK budget (RigL), momentum redistribution (SNFS-style)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sw
from sw.distribution import budget, layer_densities, redistribute
from sw.swatify import swat_layers


def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # tiny first layer: ERK saturates it at moderate sparsity
        nn.ReLU(),
        nn.Conv2d(4, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(256, 10),
    )


def test_uniform():
    d = layer_densities(net(), 0.9, "uniform")
    assert list(d) == ["0", "2", "4", "8"]
    assert d["0"] == 1.0
    assert all(d[n] == pytest.approx(0.1) for n in ("2", "4", "8"))


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.95])
def test_erk_budget(sparsity):
    m = net()
    d = layer_densities(m, sparsity, "erk")
    kept, total = budget(m, d)
    assert kept == pytest.approx((1 - sparsity) * total, rel=1e-9)  # first layer in the budget
    assert all(0 < v <= 1.0 for v in d.values())
    # non-saturated layers follow eps * (sum of dims) / (product of dims)
    ratios = []
    for name, mod in m.named_modules():
        if name in d and d[name] < 1.0:
            shp = mod.weight.shape
            ratios.append(d[name] / (sum(shp) / shp.numel()))
    assert max(ratios) == pytest.approx(min(ratios))


def test_erk_saturates_small_layers_iteratively():
    d = layer_densities(net(), 0.5, "erk")
    assert d["0"] == d["2"] == d["8"] == 1.0  # would exceed 1: made dense, eps solved again
    assert d["4"] < 0.5
    d = layer_densities(net(), 0.9, "erk")
    assert d["0"] == 1.0
    assert d["4"] < d["2"] < d["8"] < 1.0  # bigger layers get higher sparsity


def test_erk_keep_dense_still_meets_budget():
    m = net()
    d = layer_densities(m, 0.9, "erk", keep_dense=("8",))
    assert d["8"] == 1.0
    kept, total = budget(m, d)
    assert kept == pytest.approx(0.1 * total)


def test_momentum_needs_optimizer():
    m = sw.swatify(net(), 0.8, distribution="momentum")
    with pytest.raises(ValueError, match="optimizer"):
        layer_densities(m, 0.8, "momentum")
    opt = torch.optim.SGD(m.parameters(), lr=0.1)  # no momentum buffers
    m(torch.randn(2, 3, 4, 4)).sum().backward()
    opt.step()
    with pytest.raises(ValueError, match="momentum"):
        redistribute(m, opt)


def test_momentum_redistribution():
    m = sw.swatify(net(), 0.8, distribution="momentum")
    assert all(layer.density == pytest.approx(0.2) for layer in swat_layers(m).values())
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    m(torch.randn(2, 3, 4, 4)).sum().backward()
    opt.step()
    # large momentum in layer "4", tiny elsewhere
    for name, mod in swat_layers(m).items():
        opt.state[mod.weight]["momentum_buffer"].fill_(10.0 if name == "4" else 0.01)
    before = {n: mod.density for n, mod in swat_layers(m).items()}
    kept0, total = budget(m, before)
    new = redistribute(m, opt)
    kept1, _ = budget(m, new)
    assert kept1 == pytest.approx(kept0, rel=1e-9)  # total kept unchanged
    assert new["4"] > before["4"]
    assert new["2"] < before["2"] and new["8"] < before["8"]
    assert all(0 < v <= 1 for v in new.values())
    assert m[4].density == pytest.approx(new["4"])  # applied to the layers


def test_momentum_caps_at_one():
    m = sw.swatify(net(), 0.3, distribution="momentum")
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    m(torch.randn(2, 3, 4, 4)).sum().backward()
    opt.step()
    for name, mod in swat_layers(m).items():
        opt.state[mod.weight]["momentum_buffer"].fill_(100.0 if name == "0" else 0.01)
    new = redistribute(m, opt, prune_rate=0.9)
    assert new["0"] == pytest.approx(1.0)
    kept, total = budget(m, new)
    assert kept == pytest.approx(0.7 * total)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown distribution"):
        layer_densities(net(), 0.5, "snip")
    with pytest.raises(ValueError, match="sparsity"):
        layer_densities(net(), 1.0, "erk")
    with pytest.raises(ValueError, match="keep_dense"):
        layer_densities(net(), 0.5, "erk", keep_dense=("nope",))
