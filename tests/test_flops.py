"""FLOP model (paper Appendix A.3) against hand-computed counts of a small network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sw
from sw.flops import count


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),  # [2,2,5,5] -> [2,4,5,5]
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),  # -> [2,8,3,3]
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(72, 10),
    )


SHAPE = (2, 2, 5, 5)


def test_dense_counts_by_hand():
    r = count(small_net(), SHAPE)
    assert [x.name for x in r] == ["0", "3", "6"]
    c1, c2, fc = r
    # conv1: F*C*R*S*N*H*W = 4*2*9*2*25; eq. 5 and 6 use the input size (equal here)
    assert (c1.forward, c1.backward_input, c1.backward_weight) == (3600, 3600, 3600)
    # conv2 (stride 2): forward 8*4*9*2*9; eq. 5: C*F*R*S*N*X*Y = 4*8*9*2*25; eq. 6 the same
    assert (c2.forward, c2.backward_input, c2.backward_weight) == (5184, 14400, 14400)
    assert (fc.forward, fc.backward_input, fc.backward_weight) == (1440, 1440, 1440)
    assert r.totals["training"] == 3 * 3600 + 5184 + 2 * 14400 + 3 * 1440
    assert r.totals["training_sparse"] == r.totals["training"]
    assert r.totals["training_reduction"] == 0.0


def test_gemm_convention():
    r = count(small_net(), SHAPE, convention="gemm")
    assert (r[1].forward, r[1].backward_input, r[1].backward_weight) == (5184, 5184, 5184)


def test_swatified_uniform_by_hand():
    m = sw.swatify(small_net(), 0.9)
    r = count(m, SHAPE)
    dense = 3 * 3600 + 5184 + 2 * 14400 + 3 * 1440
    sparse = 3 * 3600 + 0.1 * (5184 + 2 * 14400 + 3 * 1440)  # first layer dense
    assert r.totals["training"] == dense
    assert r.totals["training_sparse"] == pytest.approx(sparse)
    assert r.totals["inference_sparse"] == pytest.approx(3600 + 0.1 * (5184 + 1440))
    assert r[0].forward_sparse == 3600
    assert r[1].backward_weight_sparse == pytest.approx(1440)
    # activation sparsity weighted by layer input elements: 0.9*(200 + 144) / (100 + 200 + 144)
    assert r.totals["activation_sparsity"] == pytest.approx(0.9 * 344 / 444)
    # FLOP-weighted: (0.9 * 14400 + 0.9 * 1440) / (3600 + 14400 + 1440)
    assert r.totals["flop_weighted_activation_sparsity"] == pytest.approx(
        0.9 * 15840 / 19440)
    # saved activation elements: inputs of conv1 (100), BN (200), conv2 (200), linear (144)
    assert r.totals["act_saved_elements"] == 644
    assert r.totals["act_memory_saving"] == pytest.approx(0.9 * 344 / 644)


def test_explicit_densities_and_methods():
    m = small_net()
    r = count(m, SHAPE, densities={"3": 0.5})
    assert r[1].forward_sparse == pytest.approx(0.5 * 5184)
    assert r[0].forward_sparse == 3600 and r[2].forward_sparse == 1440
    r = count(m, SHAPE, densities=0.25)
    assert r.totals["training_sparse"] == pytest.approx(0.25 * r.totals["training"])
    saw = sw.swatify(small_net(), 0.9, method="saw")
    r = count(saw, SHAPE)
    assert r[1].forward_sparse == 5184  # SAW: dense forward
    assert r[1].backward_input_sparse == pytest.approx(1440)


def test_batch_scaling_and_record_fields():
    r1 = count(small_net(), (1, 2, 5, 5))
    r8 = count(small_net(), (8, 2, 5, 5))
    assert r8.totals["training"] == 8 * r1.totals["training"]
    rec = r8[1]
    for key in ("name", "forward", "backward_input", "backward_weight", "forward_sparse",
                "backward_input_sparse", "backward_weight_sparse"):
        assert rec[key] is not None
    assert rec.input_shape == (8, 4, 5, 5) and rec.output_shape == (8, 8, 3, 3)


def test_model_state_preserved():
    m = small_net()
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    count(m, SHAPE)
    assert m.training
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])  # BN running stats untouched (meta-device probe)


def test_bad_arguments():
    with pytest.raises(ValueError, match="convention"):
        count(small_net(), SHAPE, convention="exact")
    with pytest.raises(ValueError, match="density"):
        count(small_net(), SHAPE, densities={"3": 1.5})
    with pytest.raises(ValueError, match="not Conv2d/Linear"):
        count(small_net(), SHAPE, densities={"1": 0.5})


def test_resnet18_cifar_90_uniform():
    from sw import models

    m = sw.swatify(models.build("resnet18", num_classes=10), 0.9)
    t = count(m, (128, 3, 32, 32)).totals
    # every layer but the (small) dense first one at 10 % density: just under 90 %
    first = count(m, (128, 3, 32, 32))[0]
    expect = 0.9 * (1 - first.training / t["training"])
    assert t["training_reduction"] == pytest.approx(expect)
    assert 0.89 < t["training_reduction"] < 0.9
    assert 0.40 < t["act_memory_saving"] < 0.5  # paper-style "Act↓"
