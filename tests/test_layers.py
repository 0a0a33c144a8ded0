"""SWAT layers: forward/backward against independent formulas, methods, period, ablations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

from sw.layers import SwatConv2d, SwatLinear, pack, unpack
from sw.topk import kept_count, topk_channels, topk_filters, topk_mask


def ref_topk(x, d):
    """Reference Top-K by a stable full sort (independent of sw.topk's selection code)."""
    flat = x.detach().reshape(-1).tolist()
    k = kept_count(len(flat), d)
    order = sorted(range(len(flat)), key=lambda i: (-abs(flat[i]), i))
    m = torch.zeros(len(flat), dtype=torch.bool)
    m[order[:k]] = True
    return torch.where(m.reshape(x.shape), x.detach(), torch.zeros(()))


def make_conv(seed=0, **kw):
    torch.manual_seed(seed)
    conv_kw = {k: kw.pop(k) for k in list(kw) if k in ("stride", "padding", "dilation", "groups",
                                                           "bias")}
    return SwatConv2d(4, 6, 3, **conv_kw, **kw)


CONV_CASES = [
    dict(stride=1, padding=1),
    dict(stride=2, padding=1),
    dict(stride=1, padding=0, dilation=2),
    dict(stride=1, padding=1, groups=2),
    dict(stride=2, padding=1, bias=False),
]


@pytest.mark.parametrize("geom", CONV_CASES)
def test_swat_conv_matches_formulas(geom):
    d = 0.3
    layer = make_conv(sparsity=1 - d, method="swat", **geom)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 9, 9, generator=g, requires_grad=True)
    y = layer(x)
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    st, pad, dil, grp = layer.stride, layer.padding, layer.dilation, layer.groups
    ws = ref_topk(layer.weight, d)
    as_ = ref_topk(x, d)
    y_ref = torch.nn.functional.conv2d(x.detach(), ws, layer.bias, st, pad, dil, grp)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(x.grad, conv2d_input(x.shape, ws, gy, st, pad, dil, grp))
    torch.testing.assert_close(layer.weight.grad,
                               conv2d_weight(as_, layer.weight.shape, gy, st, pad, dil, grp))
    if layer.bias is not None:
        torch.testing.assert_close(layer.bias.grad, gy.sum((0, 2, 3)))
    # every weight gets a gradient, not only the active ones
    inactive = ws == 0
    assert (layer.weight.grad[inactive] != 0).float().mean() > 0.5
    assert layer.stats["weight_density"] == pytest.approx(
        kept_count(layer.weight.numel(), d) / layer.weight.numel())


def test_swat_differs_from_dense_weight_grad():
    layer = make_conv(sparsity=0.8, padding=1)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    layer(x).sum().backward()
    dense_gw = conv2d_weight(x.detach(), layer.weight.shape, torch.ones(2, 6, 6, 6), 1, 1)
    assert not torch.allclose(layer.weight.grad, dense_gw)


def test_swat_linear_matches_matmul():
    d = 0.25
    torch.manual_seed(0)
    layer = SwatLinear(12, 5, sparsity=1 - d)
    x = torch.randn(7, 12, requires_grad=True)
    y = layer(x)
    gy = torch.randn_like(y)
    y.backward(gy)
    ws, as_ = ref_topk(layer.weight, d), ref_topk(x, d)
    torch.testing.assert_close(y, x.detach() @ ws.t() + layer.bias.detach())
    torch.testing.assert_close(x.grad, gy @ ws)
    torch.testing.assert_close(layer.weight.grad, gy.t() @ as_)
    torch.testing.assert_close(layer.bias.grad, gy.sum(0))


def test_linear_3d_input():
    torch.manual_seed(0)
    layer = SwatLinear(6, 3, sparsity=0.5)
    x = torch.randn(2, 4, 6, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 4, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_saw_dense_forward_sparse_backward():
    d = 0.2
    layer = make_conv(sparsity=1 - d, method="saw", padding=1)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(
        y, torch.nn.functional.conv2d(x.detach(), layer.weight.detach(), layer.bias, 1, 1))
    gy = torch.randn_like(y)
    y.backward(gy)
    ws, as_ = ref_topk(layer.weight, d), ref_topk(x, d)
    torch.testing.assert_close(x.grad, conv2d_input(x.shape, ws, gy, 1, 1))
    torch.testing.assert_close(layer.weight.grad, conv2d_weight(as_, layer.weight.shape, gy, 1, 1))


def test_meprop_sparse_output_gradient():
    d = 0.3
    layer = make_conv(sparsity=1 - d, method="meprop", padding=1)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(
        y, torch.nn.functional.conv2d(x.detach(), layer.weight.detach(), layer.bias, 1, 1))
    gy = torch.randn_like(y)
    y.backward(gy)
    gs = ref_topk(gy, d)
    w = layer.weight.detach()
    torch.testing.assert_close(x.grad, conv2d_input(x.shape, w, gs, 1, 1))
    torch.testing.assert_close(layer.weight.grad, conv2d_weight(x.detach(), w.shape, gs, 1, 1))
    torch.testing.assert_close(layer.bias.grad, gs.sum((0, 2, 3)))


def test_dense_method_equals_nn_conv2d_exactly():
    torch.manual_seed(3)
    ref = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    layer = SwatConv2d(4, 6, 3, stride=2, padding=1, method="dense", sparsity=0.9)
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 8, 8)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ref(x1), layer(x2)
    assert torch.equal(y1, y2)
    gy = torch.randn_like(y1)
    y1.backward(gy)
    y2.backward(gy)
    assert torch.equal(x1.grad, x2.grad)
    assert torch.equal(ref.weight.grad, layer.weight.grad)
    assert torch.equal(ref.bias.grad, layer.bias.grad)


def test_density_one_equals_dense():
    torch.manual_seed(3)
    ref = nn.Linear(5, 4)
    layer = SwatLinear.from_dense(ref, sparsity=0.0)
    x = torch.randn(3, 5)
    assert torch.equal(ref(x), layer(x))


def test_gradcheck_input_float64():
    # y = conv(x, Ws) is linear in x and Ws does not depend on x: the input gradient is exact.
    torch.manual_seed(0)
    layer = SwatConv2d(2, 3, 3, padding=1, sparsity=0.6, dtype=torch.float64)
    layer.weight.requires_grad_(False)
    layer.bias.requires_grad_(False)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), fast_mode=True)


def test_gradcheck_full_at_density_one_float64():
    torch.manual_seed(0)
    layer = SwatLinear(4, 3, sparsity=0.0, dtype=torch.float64)
    layer._sparsity = 0.0
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w, b: torch.nn.functional.linear(a, w, b),
                                    (x, layer.weight, layer.bias))
    # and the SWAT function itself at density 1 through a tiny sparsity (every element kept)
    layer2 = SwatLinear(4, 3, sparsity=1e-9, dtype=torch.float64)
    assert torch.autograd.gradcheck(layer2, (x,))


def test_structured_weights():
    d = 0.5
    layer = make_conv(sparsity=1 - d, structured=True, padding=1)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    y = layer(x)
    gy = torch.randn_like(y)
    y.backward(gy)
    ws = topk_channels(layer.weight.detach(), d)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x.detach(), ws, layer.bias, 1, 1))
    torch.testing.assert_close(x.grad, conv2d_input(x.shape, ws, gy, 1, 1))
    # slices are all-zero or all-kept; 12 of the 24 (f, c) slices kept
    nz = (ws.abs().sum((2, 3)) > 0)
    assert int(nz.sum()) == 12
    # activations stay fine-grained
    torch.testing.assert_close(layer.weight.grad,
                               conv2d_weight(ref_topk(x, d), layer.weight.shape, gy, 1, 1))


def test_period_holds_threshold():
    layer = make_conv(sparsity=0.9, period=3, padding=1)
    x = torch.randn(2, 4, 5, 5)
    layer(x.requires_grad_())
    t0 = layer.stats["weight_threshold"]
    a0 = layer.stats["activation_threshold"]
    assert layer.stats["recomputed"]
    with torch.no_grad():
        layer.weight.mul_(3.0)  # much larger weights: a held threshold keeps many more
    layer(x)
    assert not layer.stats["recomputed"]
    assert layer.stats["weight_threshold"] == t0
    assert layer.stats["weight_density"] > 0.3
    layer(2 * x)
    assert layer.stats["activation_threshold"] == a0
    assert layer.stats["activation_density"] > 0.3
    layer(x)  # iteration 3 -> recompute
    assert layer.stats["recomputed"]
    assert layer.stats["weight_threshold"] == pytest.approx(3 * t0, rel=1e-5)
    assert layer.stats["weight_density"] == pytest.approx(
        kept_count(layer.weight.numel(), 0.1) / layer.weight.numel())


def test_mask_update_masks_inactive_gradients():
    layer = make_conv(sparsity=0.7, mask_update=True, padding=1)
    x = torch.randn(2, 4, 5, 5)
    layer(x).sum().backward()
    active = topk_mask(layer.weight.detach(), 0.3)
    assert torch.all(layer.weight.grad[~active] == 0)
    assert (layer.weight.grad[active] != 0).all()


def test_freeze_topology():
    layer = make_conv(sparsity=0.8, freeze_after_epoch=2, padding=1)
    layer.set_epoch(1)
    assert not layer.topology_frozen
    layer.set_epoch(2)
    assert layer.topology_frozen
    m0 = layer.weight_mask().clone()
    with torch.no_grad():
        layer.weight.copy_(torch.randn_like(layer.weight))
    assert torch.equal(layer.weight_mask(), m0)
    x = torch.randn(2, 4, 5, 5)
    y = layer(x)
    ws = torch.where(m0, layer.weight.detach(), torch.zeros(()))
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, ws, layer.bias, 1, 1))
    layer.unfreeze_topology()
    assert not torch.equal(layer.weight_mask(), m0)


def test_eval_mode_sparse_weights_no_state_change():
    layer = make_conv(sparsity=0.9, padding=1, period=5)
    layer.eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        y = layer(x)
    ws = ref_topk(layer.weight, 0.1)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, ws, layer.bias, 1, 1))
    assert layer.iteration == 0 and layer._w_holder.threshold is None


def test_pack_roundtrip_both_formats():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 50, generator=g)
    for d in (0.01, 0.5):
        m = topk_mask(x, d)
        v, code, fmt = pack(x, m)
        assert fmt == ("idx" if d == 0.01 else "bits")
        torch.testing.assert_close(unpack(v, code, fmt, x.shape), torch.where(m, x, 0.0))


def test_random_dims_layer_is_seeded():
    a = make_conv(sparsity=0.5, dims="random", seed=1, padding=1)
    b = make_conv(sparsity=0.5, dims="random", seed=1, padding=1)
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(a(x), b(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="sparsity"):
        SwatConv2d(2, 2, 3, sparsity=1.0)
    with pytest.raises(ValueError, match="sparsity"):
        SwatLinear(2, 2, sparsity=-0.1)
    with pytest.raises(ValueError, match="unknown method"):
        SwatLinear(2, 2, method="rigl")
    with pytest.raises(ValueError, match="unknown dims"):
        SwatLinear(2, 2, dims="xyz")
    with pytest.raises(ValueError, match="period"):
        SwatLinear(2, 2, period=0)
    layer = SwatLinear(3, 2, sparsity=0.5)
    x = torch.randn(2, 3)
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        layer(x)


def test_is_drop_in_subclass():
    layer = SwatConv2d(3, 4, 3, sparsity=0.5)
    assert isinstance(layer, nn.Conv2d)
    assert isinstance(SwatLinear(3, 4), nn.Linear)
    layer.double()  # nn.Module._apply still works
    assert layer.weight.dtype == torch.float64


@pytest.mark.parametrize("dims", ["chw", "hw"])
def test_dims_variants_in_layer(dims):
    d = 0.25
    layer = make_conv(sparsity=1 - d, dims=dims, padding=1)
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    y = layer(x)
    gy = torch.randn_like(y)
    y.backward(gy)
    ws = torch.where(topk_mask(layer.weight.detach(), d, dims), layer.weight.detach(), 0.0)
    as_ = torch.where(topk_mask(x.detach(), d, dims), x.detach(), 0.0)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x.detach(), ws, layer.bias, 1, 1))
    torch.testing.assert_close(x.grad, conv2d_input(x.shape, ws, gy, 1, 1))
    torch.testing.assert_close(layer.weight.grad, conv2d_weight(as_, layer.weight.shape, gy, 1, 1))
    # every group (sample, or sample-and-channel) keeps its own quota of activations
    groups = 3 if dims == "chw" else 12
    per_group = (as_ != 0).reshape(groups, -1).sum(1)
    assert (per_group == kept_count(as_.numel() // groups, d)).all()


def test_linear_hw_means_per_row():
    torch.manual_seed(0)
    layer = SwatLinear(10, 3, sparsity=0.7, dims="hw")
    x = torch.randn(4, 10, requires_grad=True)
    layer(x).sum().backward()
    as_ = torch.where(topk_mask(x.detach(), 0.3, "chw"), x.detach(), 0.0)
    torch.testing.assert_close(layer.weight.grad, torch.ones(4, 3).t() @ as_)


def test_structured_period_holds_norm_threshold():
    layer = make_conv(sparsity=0.5, structured=True, period=2, padding=1)
    x = torch.randn(1, 4, 5, 5)
    layer(x.requires_grad_())
    t0 = layer.stats["weight_threshold"]
    norms = layer.weight.detach().abs().sum((2, 3))
    assert t0 == pytest.approx(float(norms.reshape(-1).sort(descending=True).values[11]))
    with torch.no_grad():
        layer.weight.mul_(0.5)  # all norms halve: the held threshold keeps fewer slices
    layer(x)
    assert not layer.stats["recomputed"]
    assert layer.stats["weight_density"] < 0.5


def test_reflect_padding_matches_formula():
    torch.manual_seed(0)
    layer = SwatConv2d(2, 3, 3, padding=1, padding_mode="reflect", sparsity=0.5)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    y = layer(x)
    ws = ref_topk(layer.weight, 0.5)
    xp = torch.nn.functional.pad(x.detach(), (1, 1, 1, 1), mode="reflect")
    torch.testing.assert_close(y, torch.nn.functional.conv2d(xp, ws, layer.bias))
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_smaller_last_batch_with_held_per_sample_thresholds():
    layer = make_conv(sparsity=0.5, dims="chw", period=10, padding=1)
    layer(torch.randn(4, 4, 5, 5, requires_grad=True))
    y = layer(torch.randn(3, 4, 5, 5, requires_grad=True))  # group layout changed: recompute
    assert layer._a_holder.recomputed and not layer._w_holder.recomputed
    assert y.shape[0] == 3 and layer._a_holder.threshold.numel() == 3


def test_swat_training_reduces_loss():
    torch.manual_seed(0)
    net = nn.Sequential(SwatConv2d(1, 4, 3, padding=1, sparsity=0.0), nn.ReLU(),
                        SwatConv2d(4, 4, 3, padding=1, sparsity=0.8), nn.ReLU(),
                        nn.Flatten(), SwatLinear(4 * 36, 2, sparsity=0.8))
    x = torch.randn(32, 1, 6, 6)
    t = (x[:, 0, :3].sum((1, 2)) > x[:, 0, 3:].sum((1, 2))).long()
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), t)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.3 * losses[0]


def sorted_ref_topk(x, d):
    """Reference Top-K for large tensors: stable descending sort of |x| (ties in stream order)."""
    flat = x.detach().reshape(-1)
    k = kept_count(flat.numel(), d)
    m = torch.zeros(flat.numel(), dtype=torch.bool)
    m[torch.sort(-flat.abs(), stable=True).indices[:k]] = True
    return torch.where(m.reshape(x.shape), x.detach(), torch.zeros(()))


@pytest.mark.parametrize("period", [1, 3])
def test_large_conv_fast_path_matches_formulas(period):
    # input and weight above sw.topk._FAST_MIN: the sampled-bracket selection, the compact
    # packing and the reused backward buffers are all exercised; half the input is zeros.
    torch.manual_seed(3)
    layer = SwatConv2d(64, 64, 3, padding=1, stride=2, sparsity=0.9, period=period)
    d = 0.1
    g = torch.Generator().manual_seed(5)
    for step in range(3):
        x = torch.relu(torch.randn(2, 64, 16, 16, generator=g)).requires_grad_()
        y = layer(x)
        gy = torch.randn(y.shape, generator=g)
        y.backward(gy)
        if step % period == 0:  # recompute step: exact Top-K of weights and activations
            ws, as_ = sorted_ref_topk(layer.weight, d), sorted_ref_topk(x, d)
        else:  # held thresholds
            tw, ta = layer.stats["weight_threshold"], layer.stats["activation_threshold"]
            w = layer.weight.detach()
            ws = torch.where(w.abs() >= tw, w, 0.0)
            as_ = torch.where(x.detach().abs() >= ta, x.detach(), 0.0)
        y_ref = torch.nn.functional.conv2d(x.detach(), ws, layer.bias, 2, 1)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(x.grad, conv2d_input(x.shape, ws, gy, 2, 1))
        torch.testing.assert_close(layer.weight.grad,
                                   conv2d_weight(as_, layer.weight.shape, gy, 2, 1))
        assert layer.stats["activation_density"] == (as_ != 0).sum().item() / x.numel()
        layer.weight.grad = None


def test_packbits_layout_and_roundtrip():
    from sw.layers import _packbits, _unpackbits

    g = torch.Generator().manual_seed(6)
    for n in (1, 7, 8, 9, 64, 1001):
        m = torch.rand(n, generator=g) < 0.3
        p = _packbits(m)
        ref = [sum(int(b) << (7 - j) for j, b in enumerate(m[i:i + 8].tolist()))
               for i in range(0, n, 8)]
        assert p.dtype == torch.uint8 and p.tolist() == ref  # MSB first
        assert torch.equal(_unpackbits(p, n), m)


def test_backward_with_create_graph_matches():
    torch.manual_seed(0)
    layer = SwatConv2d(8, 8, 3, padding=1, sparsity=0.5)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    y = layer(x)
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    x2 = x.detach().clone().requires_grad_()
    layer.reset_thresholds()
    (gx2,) = torch.autograd.grad(layer(x2).sum(), x2)
    torch.testing.assert_close(gx, gx2)


# ------------------------------------------------------------------ the authors' variants


def test_filter_structured_weights():
    layer = make_conv(sparsity=0.5, structured="filter", padding=1)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    y = layer(x)
    ws = topk_filters(layer.weight.detach(), 0.5)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x.detach(), ws, layer.bias, 1, 1))
    assert int((ws.abs().sum((1, 2, 3)) > 0).sum()) == 3  # ceil(0.5 * 6) whole filters
    assert torch.equal(layer.weight_mask(), ws != 0)
    assert "structured=filter" in repr(layer)
    lin = SwatLinear(6, 4, sparsity=0.5, structured="filter")  # linear: element-wise
    assert int(lin.weight_mask().sum()) == 12


def test_ties_keep_layer():
    layer = make_conv(sparsity=0.5, padding=1, ties="keep")
    with torch.no_grad():
        layer.weight.copy_(torch.ones_like(layer.weight))  # every weight ties
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    layer(x)
    assert layer.stats["weight_density"] == 1.0  # theirs: all >= the k-th magnitude kept
    exact = make_conv(sparsity=0.5, padding=1)
    with torch.no_grad():
        exact.weight.copy_(torch.ones_like(exact.weight))
    exact(x)
    assert exact.stats["weight_density"] == 0.5
    assert "ties=keep" in repr(layer)


def test_batch_index_and_separate_periods():
    layer = make_conv(sparsity=0.5, period=3, padding=1)
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    seen = []
    for i in range(5):
        if i == 2:
            layer.set_batch_index(0)  # a new epoch: batch_idx 0 recomputes
        layer(x)
        seen.append(layer._w_holder.recomputed)
    assert seen == [True, False, True, False, False]
    layer(x)  # batch 3: recomputes both
    layer.set_periods(weight=1)
    layer(x)  # batch 4: the weights recompute every call now, the activations hold
    assert layer._w_holder.recomputed and not layer._a_holder.recomputed
    with pytest.raises(ValueError, match="period must be an int >= 1, got 0"):
        layer.set_periods(activation=0)
