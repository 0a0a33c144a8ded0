"""Sparsity distributions: uniform, ERK budget (RigL), SWAT-M as the authors (momentum, per step)
and the SNFS-style per-epoch redistribution (snfs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sw
from sw.distribution import (
    active_weight_masks,
    budget,
    layer_densities,
    momentum_step,
    redistribute,
    regrow,
)
from sw.swatify import swat_layers
from sw.topk import kept_count


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


def test_snfs_redistribution():
    m = sw.swatify(net(), 0.8, distribution="snfs")
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


def test_snfs_caps_at_one():
    m = sw.swatify(net(), 0.3, distribution="snfs")
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


# ------------------------------------------------------------------ SWAT-M as the authors


def test_regrow_worked_example():
    # sizes a=100, b=1000, c=10 (1110 weights), density 0.5: B = 555; shares .5/.3/.2.
    # round 1: a ceil(277.5)=278 > 99 -> 100 (residual 178), b ceil(166.5)=167,
    #          c ceil(111.0)=111 > 9.9 -> 10 (residual 101): total 277, residual 279 > 3 layers
    #          -> every layer gets ceil(279/3)=93 more next round (a and c overflow again).
    # b then grows 167 -> 260 -> 322 -> 364 -> 392 -> 411 -> 424 -> 433 -> 439 -> 443 -> 446
    # (+93, 62, 42, 28, 19, 13, 9, 6, 4, 3), totals 370 ... 553, 556; 556 > 555 stops it.
    kept = regrow({"a": 100, "b": 1000, "c": 10}, {"a": 0.5, "b": 0.3, "c": 0.2}, 0.5)
    assert kept == {"a": 100, "b": 446, "c": 10}
    # no layer saturates: ceil(share * B) each, one round
    assert regrow({"a": 1000, "b": 1000}, {"a": 0.75, "b": 0.25}, 0.5) == {"a": 750, "b": 250}
    # above 0.99 of its size a layer is made dense and its (negative) excess is a residual
    assert regrow({"a": 100, "b": 100}, {"a": 0.995, "b": 0.005}, 0.5) == {"a": 100, "b": 1}


def _stepped(sparsity):
    m = sw.swatify(net(), sparsity, distribution="momentum")
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    m(torch.randn(2, 3, 4, 4)).sum().backward()
    masks = active_weight_masks(m)
    opt.step()
    return m, opt, masks


def test_momentum_step_by_hand():
    m, opt, masks = _stepped(0.8)
    layers = swat_layers(m)
    sizes = {n: mod.weight.numel() for n, mod in layers.items()}
    assert sizes == {"0": 108, "2": 2304, "4": 36864, "8": 2560}
    level = {"0": 1.0, "2": 1.0, "4": 2.0, "8": 4.0}  # |momentum|: shares 1/8, 1/8, 2/8, 4/8
    for name, mod in layers.items():
        opt.state[mod.weight]["momentum_buffer"].fill_(-level[name])
    new = momentum_step(m, opt, density=0.2, masks=masks)
    # B = 0.2 * 41836 = 8367.2; round 1: "0" ceil(1045.9) -> dense 108, "2" 1046,
    # "4" 2092, "8" ceil(4183.6) -> dense 2560; the residual (938 + 1624) is spread in further
    # rounds until "2" is dense too and "4" holds the rest: 108 + 2304 + 3396 + 2560 = 8368.
    assert {n: round(d * sizes[n]) for n, d in new.items()} == {
        "0": 108, "2": 2304, "4": 3396, "8": 2560}
    for name, mod in layers.items():  # applied: the next forward keeps exactly these counts
        assert kept_count(sizes[name], mod.density) == round(new[name] * sizes[name])


def test_momentum_uses_the_forward_mask_and_adam():
    m, opt, masks = _stepped(0.5)
    for name, mod in swat_layers(m).items():
        buf = opt.state[mod.weight]["momentum_buffer"]
        buf[masks[name]] = 1.0 if name == "4" else 0.1  # the active weights: shares 1:1:10:1
        buf[~masks[name]] = 1000.0  # inactive weights do not count
    new = momentum_step(m, opt, masks=masks)
    sizes = {n: mod.weight.numel() for n, mod in swat_layers(m).items()}
    kept = {n: round(d * sizes[n]) for n, d in new.items()}
    assert kept == regrow(sizes, {"0": 1 / 13, "2": 1 / 13, "4": 10 / 13, "8": 1 / 13}, 0.5)
    assert kept == {"0": 108, "2": 2110, "4": 16591, "8": 2110}
    adam = torch.optim.Adam(m.parameters())
    m(torch.randn(2, 3, 4, 4)).sum().backward()
    adam.step()
    new = layer_densities(m, 0.5, "momentum", adam)  # exp_avg / sqrt(exp_avg_sq), no error
    assert set(new) == {"0", "2", "4", "8"}


def test_momentum_all_zero_is_named():
    m, opt, masks = _stepped(0.5)
    for mod in swat_layers(m).values():
        opt.state[mod.weight]["momentum_buffer"].zero_()
    with pytest.raises(ValueError, match="the momentum of every layer's active weights is zero"):
        momentum_step(m, opt, masks=masks)
