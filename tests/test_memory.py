"""Saved-tensor memory: SWAT layers really save compact sparse operands (measured with hooks)."""

from __future__ import annotations

import torch
from torch import nn

import sw
from sw.layers import SwatConv2d, SwatLinear
from sw.memory import activation_saving, measure
from sw.topk import kept_count


def wrap(layer):
    return nn.Sequential(layer)


def test_dense_conv_saves_input_and_weight():
    torch.manual_seed(0)
    m = wrap(nn.Conv2d(8, 8, 3, padding=1))
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    rep = measure(m, x)
    assert rep.activation_bytes == x.numel() * 4
    assert rep.parameter_bytes == m[0].weight.numel() * 4


def test_swat_conv_saves_compact_activations():
    torch.manual_seed(0)
    m = wrap(SwatConv2d(8, 8, 3, padding=1, sparsity=0.9))
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    rep = measure(m, x)
    n = x.numel()
    k = kept_count(n, 0.1)
    # non-zero values (float32) + a 1-bit mask: exactly this, ~13 % of the dense 4 bytes/elem
    assert rep.activation_bytes == 4 * k + (n + 7) // 8
    assert rep.activation_bytes < 0.15 * 4 * n
    nw = m[0].weight.numel()
    assert rep.weight_bytes == 4 * kept_count(nw, 0.1) + (nw + 7) // 8
    assert rep.parameter_bytes == 0  # the dense weight is not kept for backward
    assert x.grad is not None  # the backward ran on the compact tensors


def test_very_sparse_uses_indices():
    torch.manual_seed(0)
    m = wrap(SwatLinear(4096, 4, sparsity=0.99))
    x = torch.randn(8, 4096, requires_grad=True)
    rep = measure(m, x)
    k = kept_count(x.numel(), 0.01)
    assert rep.activation_bytes == 4 * k + 4 * k  # values + int32 indices beat the bit mask


def test_model_activation_memory_shrinks():
    torch.manual_seed(0)

    def net():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * 8 * 8, 10),
        )  # fmt: skip

    x = torch.randn(4, 3, 8, 8)
    dense = measure(net(), x)
    swat = measure(sw.swatify(net(), 0.9), x)
    # with bit-mask ReLUs the saved activations shrink substantially
    saving = activation_saving(dense, swat)
    assert saving > 0.25, saving
    assert swat.activation_bytes_relu_mask < dense.activation_bytes_relu_mask
    # the SWAT layers' own saved inputs are a fraction of the dense inputs
    layer_bytes = swat.per_module["3"]
    assert layer_bytes < 0.15 * 4 * 16 * 64 * 4
    assert swat.weight_bytes < 0.2 * dense.weight_bytes


def test_mask_relu_equals_relu_and_saves_bits():
    from sw.layers import MaskReLU

    x = torch.tensor([[-1.0, 0.0, 2.0, 3.0, -0.5, 0.0, 1.0, 4.0, -2.0]], requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y2 = MaskReLU()(x), nn.ReLU()(x2)
    assert torch.equal(y, y2)
    g = torch.arange(9.0).reshape(1, 9)
    y.backward(g)
    y2.backward(g)
    assert torch.equal(x.grad, x2.grad)  # including gradient 0 at x == 0
    rep = measure(nn.Sequential(MaskReLU()), torch.randn(4, 1000, requires_grad=True))
    assert rep.activation_bytes == 4000 // 8


def test_mask_relu_makes_raw_saving_real():
    def net():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(16 * 8 * 8, 10),
        )  # fmt: skip

    x = torch.randn(4, 3, 8, 8)
    dense = measure(net(), x)
    stock = measure(sw.swatify(net(), 0.9), x)
    lean = measure(sw.swatify(net(), 0.9, mask_relu=True), x)
    # stock ReLUs keep their dense outputs: no real saving; bit-mask ReLUs: the saving is real
    assert activation_saving(dense, stock, relu_mask=False) < 0.05
    assert activation_saving(dense, lean, relu_mask=False) > 0.25
    assert lean.activation_bytes == lean.activation_bytes_relu_mask
    # and training results are unchanged by the ReLU swap
    a, b = sw.swatify(net(), 0.9), sw.swatify(net(), 0.9, mask_relu=True)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    a(xa).sum().backward()
    b(xb).sum().backward()
    assert torch.equal(xa.grad, xb.grad)
