"""The integer path of a SWAT layer: each pass equals the int8 GEMM of the integer reference
(``sw.quant`` + ``sw.int_topk`` + ``sw.intref.gemm``) dequantized, bit for bit."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sw import int_topk, intref
from sw.backend import IntrefBackend
from sw.hil import GRAD_QUANT, IntegerPath, attach, detach, quantize_d
from sw.layers import SwatConv2d, SwatLinear
from sw.quant import quantize


def _q(x):
    q, s = quantize(x.detach())
    return q.numpy(), s


def _topk(q, density):
    if density >= 1:
        return q
    return np.where(int_topk.select_mask(q, int_topk.k_from_density(density, q.size)), q, 0)


def _net(sparsity=0.9):
    torch.manual_seed(0)
    conv = SwatConv2d(3, 8, 3, padding=1, stride=1, bias=False, sparsity=sparsity)
    fc = SwatLinear(8 * 6 * 6, 5, sparsity=sparsity)
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), fc)


def test_conv_passes_are_the_integer_gemms():
    net = _net()
    path = IntegerPath(IntrefBackend())
    attach(net, path)
    conv = net[0]
    x = torch.randn(4, 3, 6, 6, requires_grad=True)
    y = conv(x)
    g = torch.randn_like(y)
    y.backward(g)
    # reference
    qa, sa = _q(x)
    qw, sw_ = _q(conv.weight.reshape(8, -1))
    qws, qas = _topk(qw, 0.1), _topk(qa, 0.1)

    def im2col(q):
        t = F.unfold(torch.from_numpy(q).double(), 3, padding=1)
        return t.transpose(1, 2).reshape(-1, t.shape[1]).numpy().astype(np.int8)

    c = intref.gemm(im2col(qa), np.ascontiguousarray(qws.T)).astype(np.float64) * (sa * sw_)
    y_ref = torch.from_numpy(c).reshape(4, 6, 6, 8).permute(0, 3, 1, 2).float()
    assert torch.equal(y.detach(), y_ref)
    qg, sg = _q(g.permute(0, 2, 3, 1).reshape(-1, 8))
    dw = intref.gemm(np.ascontiguousarray(qg.T), im2col(qas)).astype(np.float64) * (sg * sa)
    assert torch.equal(conv.weight.grad, torch.from_numpy(dw).reshape(8, 3, 3, 3).float())
    dcol = intref.gemm(qg, qws).astype(np.float64) * (sg * sw_)
    dx = F.fold(torch.from_numpy(dcol).reshape(4, 36, 27).transpose(1, 2), (6, 6), 3, padding=1)
    assert torch.equal(x.grad, dx.float())
    assert conv.stats["weight_density"] == pytest.approx(0.1, abs=0.01)
    recs = path.take_step()
    assert recs["gemms"] == 3
    assert recs["select_w_cycles"] > 0 and recs["select_a_cycles"] > 0


def test_linear_dense_layer_at_density_one_and_bias():
    torch.manual_seed(1)
    fc = SwatLinear(6, 4, sparsity=0.0)
    net = nn.Sequential(fc)
    attach(net, IntegerPath(IntrefBackend()))
    x = torch.randn(5, 6)
    y = net(x)
    qa, sa = _q(x)
    qw, sw_ = _q(fc.weight)
    c = intref.gemm(qa, np.ascontiguousarray(qw.T)).astype(np.float64) * (sa * sw_)
    assert torch.equal(y.detach(), torch.from_numpy(c).float() + fc.bias.detach())
    y.sum().backward()  # the input needs no gradient: only the weight-gradient GEMM runs
    assert torch.equal(fc.bias.grad, torch.full((4,), 5.0))
    assert fc.stats["weight_density"] == pytest.approx((qw != 0).mean())


def test_attach_converts_plain_layers_sharing_parameters():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 3))
    w = net[0].weight
    attach(net, IntegerPath(IntrefBackend()))
    assert isinstance(net[0], SwatConv2d) and isinstance(net[2], SwatLinear)
    assert net[0].weight is w and net[0].density == 1.0
    detach(net)
    assert net[0].gemm_path is None


def test_attach_rejects_what_it_cannot_lower():
    net = nn.Sequential(SwatConv2d(4, 4, 3, groups=2, sparsity=0.5))
    with pytest.raises(ValueError) as e:
        attach(net, IntegerPath(IntrefBackend()))
    assert str(e.value) == ("0: the integer backends lower plain convolutions only "
                            "(groups 1, numeric zero padding)")
    net = nn.Sequential(SwatLinear(4, 4, sparsity=0.5, method="meprop"))
    with pytest.raises(ValueError, match=r"^0: the integer backends run method swat or dense, "
                                         r"not meprop$"):
        attach(net, IntegerPath(IntrefBackend()))


def test_eval_forward_is_not_a_training_step():
    net = _net()
    path = IntegerPath(IntrefBackend())
    attach(net.eval(), path)
    with torch.no_grad():
        net(torch.randn(2, 3, 6, 6))
    assert path.take_step()["gemms"] == 0
    assert net[0].iteration == 0


@pytest.mark.parametrize("mode", GRAD_QUANT)
def test_quantize_d_modes(mode):
    g = torch.randn(6, 50, dtype=torch.float64) * torch.logspace(-3, 0, 6)[:, None]
    parts = quantize_d(g, mode, torch.Generator().manual_seed(0))
    assert all(q.dtype == torch.int8 and int(q.abs().max()) <= 127 for q, _ in parts)
    rec = sum(q.double() * s[:, None] for q, s in parts)
    err = (rec - g).abs()
    amax = g.abs().max()
    if mode == "tensor":
        q, s = quantize(g)
        assert torch.equal(parts[0][0], q) and float(parts[0][1][0]) == s
    bound = {"tensor": 0.5, "row": 0.5, "stochastic": 1.0, "split": 0.5 / 254,
             "row-split": 0.5 / 254}[mode]
    if mode.startswith("row"):
        rmax = g.abs().amax(dim=1, keepdim=True)
        assert bool((err <= bound * rmax / 127 + 1e-15).all())
    else:
        assert float(err.max()) <= bound * float(amax) / 127 + 1e-15
    assert len(parts) == (2 if "split" in mode else 1)


def test_stochastic_rounding_is_seeded():
    g = torch.randn(4, 30)
    a = quantize_d(g, "stochastic", torch.Generator().manual_seed(3))[0][0]
    b = quantize_d(g, "stochastic", torch.Generator().manual_seed(3))[0][0]
    assert torch.equal(a, b)


def test_unknown_grad_quant():
    with pytest.raises(ValueError, match=r"^unknown grad_quant 'fp8'; expected one of tensor, "
                                         r"row, stochastic, split, row-split$"):
        IntegerPath(IntrefBackend(), grad_quant="fp8")
