"""sw.lowering: a layer's training step as three integer GEMMs (shapes of docs/contract.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sw import int_topk, intref, lowering, models, swatify
from sw.train import capture_step


def _digits_step(sparsity=0.9, batch=8):
    torch.manual_seed(0)
    model = swatify(models.build("digits_cnn"), sparsity)
    x = torch.randn(batch, 1, 8, 8)
    y = torch.randint(0, 10, (batch,))
    return model, capture_step(model, x, y)


def _float_pass(job: lowering.GemmJob, ops: lowering.LayerOperands, module):
    """The same pass computed by torch on the dequantized operands (no im2col, no fold)."""
    t = torch.from_numpy
    a = t(ops.qas if job.pass_name == "backward_weight" else ops.qa).double() * ops.sa
    w = t(ops.qws).double().reshape(module.weight.shape) * ops.sw
    dy = t(ops.qdy).double() * ops.sdy if ops.qdy is not None else None
    conv = isinstance(module, torch.nn.Conv2d)
    kw = dict(stride=module.stride, padding=module.padding, dilation=module.dilation) if conv \
        else {}
    if job.pass_name == "forward":
        y = F.conv2d(a, w, **kw) if conv else a.reshape(a.shape[0], -1) @ w.T
        return (y.permute(0, 2, 3, 1).reshape(-1, w.shape[0]) if conv else y).numpy()
    if job.pass_name == "backward_input":
        if conv:
            return torch.nn.grad.conv2d_input(ops.a_shape, w, dy, **kw).numpy()
        return (dy @ w).numpy()
    if conv:
        return torch.nn.grad.conv2d_weight(a, w.shape, dy, **kw).reshape(w.shape[0], -1).numpy()
    return (dy.T @ a.reshape(a.shape[0], -1)).numpy()


def test_gemms_are_the_layer_passes_exactly():
    """Dequantized integer GEMMs equal torch's convolution / matmul passes on the same
    quantized, Top-K'd operands to float64 rounding: im2col, transposes and fold are right."""
    model, recs = _digits_step()
    sel = lowering.layer_selection(model)
    mods = dict(model.named_modules())
    seen = set()
    for name, rec in recs.items():
        if name not in mods:
            continue
        density, dims = sel.get(name, (1.0, "nchw"))
        ops = lowering.quantize_layer(name, mods[name], rec["input"], rec["weight"],
                                      rec["grad_output"], density=density, dims=dims)
        jobs = [lowering.forward_job(ops), lowering.backward_weight_job(ops)]
        if rec.get("grad_input") is not None:
            jobs.insert(1, lowering.backward_input_job(ops))
        for job in jobs:
            seen.add(job.pass_name)
            m, k, n = job.shape
            assert job.d.shape == (m, k) and job.s.shape == (k, n) == job.s_dense.shape
            assert job.d.dtype == job.s.dtype == np.int8
            got = job.dequantize(intref.gemm(job.d, job.s))
            want = _float_pass(job, ops, mods[name])
            np.testing.assert_allclose(got, want.reshape(got.shape), rtol=1e-9,
                                       atol=1e-12 * float(np.abs(want).max()))
    assert seen == set(lowering.PASSES)


def test_layer_jobs_match_the_golden_model_to_quantization_error():
    """With the golden model's own (float Top-K) masks only quantization error remains, and
    the integer Top-K keeps at most k elements with the hardware's tie rule."""
    model, recs = _digits_step()
    sel = lowering.layer_selection(model)
    mods = dict(model.named_modules())
    errs = []
    for name, rec in recs.items():
        if name not in mods:
            continue
        density, dims = sel.get(name, (1.0, "nchw"))
        jobs = lowering.layer_jobs(name, mods[name], rec, density, dims)
        assert [j.pass_name for j in jobs][::len(jobs) - 1] == ["forward", "backward_weight"]
        for j in jobs:
            err_q = j.rel_err(intref.gemm(j.d, j.s_golden))
            errs.append(err_q)
            assert err_q < 0.1, (j.label, err_q)
            if density < 1 and j.pass_name == "forward":
                w = j.s.T
                assert int((w != 0).sum()) <= int_topk.k_from_density(density, w.size)
    assert float(np.median(errs)) < 0.05, errs


def test_forward_only_lowering_and_missing_gradient():
    lin = torch.nn.Linear(6, 4, bias=False)
    a = torch.randn(3, 6)
    ops = lowering.quantize_layer("fc", lin, a, lin.weight, density=0.5)
    job = lowering.forward_job(ops)
    assert job.shape == (3, 6, 4) and int((job.s != 0).sum()) == 12
    with pytest.raises(ValueError) as ei:
        lowering.backward_weight_job(ops)
    assert str(ei.value) == "fc: backward_weight needs the output gradient dY"


@pytest.mark.parametrize("padding,stride", [(0, 1), (1, 1), (1, 2)])
def test_im2col_source_index_gives_the_exact_weight_gradient_blob(padding, stride):
    """The select unit's indexed pass (``compress_indexed`` on the im2col stream with
    ``im2col_source_index``) writes ``im2col(int_topk(A))`` word for word; the tie budget on
    the same stream does not when the tie class is split."""
    rng = np.random.default_rng(padding * 3 + stride)
    conv = torch.nn.Conv2d(3, 4, 3, padding=padding, stride=stride)
    qa = rng.integers(-2, 3, (2, 3, 7, 6)).astype(np.int8)
    index = lowering.im2col_source_index(qa.shape, conv)
    a_col = lowering.im2col(qa, conv).astype(np.int8)
    np.testing.assert_array_equal(np.where(index == lowering.PAD_INDEX, 0,
                                           qa.ravel()[np.minimum(index, qa.size - 1)]), a_col)
    for density in (0.1, 0.3):
        k = int_topk.k_from_density(density, qa.size)
        t, ties = int_topk.threshold_int(qa, k)
        cut = int_topk.last_kept_tie_index(qa, t, ties)
        expect = lowering.im2col_topk_blob(qa, conv, density)
        got = np.frombuffer(int_topk.compress_indexed(a_col, index, t, cut), "<u4")
        np.testing.assert_array_equal(got, expect)
        naive = np.frombuffer(int_topk.compress_threshold(a_col, t, ties), "<u4")
        assert not np.array_equal(naive, expect)


@pytest.mark.parametrize("kernel,stride,padding,dilation", [
    (7, 2, 3, 1), (3, 1, 1, 1), (1, 1, 0, 1), (1, 2, 0, 1), (3, 2, 1, 2),
    ((3, 1), (2, 1), (1, 0), 1)])
def test_integer_im2col_is_unfold(kernel, stride, padding, dilation):
    """The int8 im2col (strided numpy, no float copy) has unfold's values, order and dtype."""
    rng = np.random.default_rng(0)
    conv = torch.nn.Conv2d(3, 4, kernel, stride=stride, padding=padding, dilation=dilation)
    x = rng.integers(-128, 128, (2, 3, 11, 12), dtype=np.int8)
    got = lowering.im2col(x, conv)
    assert got.dtype == np.int8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, lowering.im2col(x.astype(np.float64), conv))
