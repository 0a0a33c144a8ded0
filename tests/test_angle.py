"""Sparsification angle (ICLR submission §4): Top-K preserves direction in high dimension."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sw
from sw.angle import angle, layer_angles, model_angles, sparsification_angle
from sw.topk import topk


def test_angle_basics():
    assert angle(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(90.0)
    assert angle(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])) == pytest.approx(45.0)
    assert angle(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, -2.0])) == pytest.approx(180.0)
    with pytest.raises(ValueError, match="zero vector"):
        angle(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        angle(torch.tensor([float("nan"), 1.0]), torch.ones(2))


def test_cosine_is_norm_ratio():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(500, generator=g)
    s = topk(v, 0.2)
    assert math.cos(math.radians(sparsification_angle(v, 0.2))) == pytest.approx(
        float(s.double().norm() / v.double().norm()), rel=1e-9)


def test_topk_angle_near_paper_values():
    g = torch.Generator().manual_seed(1)
    angles = [sparsification_angle(torch.randn(1000, generator=g), 0.1) for _ in range(50)]
    mean = sum(angles) / len(angles)
    assert 44 < mean < 52  # paper Fig. 9a: concentrated around 48 degrees at 90 % sparsity


def test_topk_beats_random_subset():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(1000, generator=g)
    for d in (0.1, 0.3, 0.5):
        rnd = sparsification_angle(v, d, "random", generator=torch.Generator().manual_seed(3))
        assert sparsification_angle(v, d) < rnd  # Lemma B.1


def test_layer_and_model_angles():
    torch.manual_seed(0)
    m = sw.swatify(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)), 0.7)
    x = torch.randn(2, 3, 10, 10)
    res = model_angles(m, x)
    assert set(res) == {"2"}  # the dense first layer has no angle to report
    assert 0 < res["2"]["weight"] < 90 and 0 < res["2"]["activation"] < 90
    la = layer_angles(m[2], torch.relu(m[0](x)))
    assert la["weight"] == pytest.approx(res["2"]["weight"])
    assert layer_angles(m[2], torch.randn(2, 8, 8, 8), density=1.0)["weight"] == pytest.approx(
        0.0, abs=1e-4)


@pytest.mark.parametrize("structured, select", [("filter", "topk_filters"),
                                                (True, "topk_channels")])
def test_structured_layers_use_their_own_weight_selection(structured, select):
    import sw.topk
    from sw.layers import SwatConv2d

    torch.manual_seed(1)
    conv = SwatConv2d(8, 16, 3, sparsity=0.75, structured=structured)
    w = conv.weight.detach()
    expected = angle(w, getattr(sw.topk, select)(w, 0.25))
    other = angle(w, sw.topk.topk_channels(w, 0.25) if structured == "filter"
                  else sw.topk.topk_filters(w, 0.25))
    assert expected != pytest.approx(other)  # the two selections differ on this weight
    assert layer_angles(conv, torch.randn(2, 8, 6, 6))["weight"] == pytest.approx(expected)
