"""sw.quant: symmetric per-tensor quantization as fixed in docs/core-interface.md."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sw.quant import dequantize, qmax, quantize


def test_round_half_to_even_and_range():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 127.0, -127.0])
    q, scale = quantize(x)
    assert scale == 1.0
    assert q.dtype == np.int8
    assert q.tolist() == [0, 2, 2, 0, -2, -2, 127, -127]


def test_never_most_negative():
    q, scale = quantize(np.array([-3.0, 1.0, 2.9999]))
    assert q.min() == -127
    q, _ = quantize(np.array([-1e30, 1.0]))
    assert q.min() == -127
    q16, _ = quantize(np.array([-5.0, 5.0]), bits=16)
    assert q16.dtype == np.int16 and q16.min() == -32767


def test_all_zero():
    q, scale = quantize(np.zeros((3, 4)))
    assert scale == 1.0 and not q.any()
    q, scale = quantize(torch.zeros(2))
    assert scale == 1.0 and q.dtype == torch.int8


def test_torch_in_torch_out():
    x = torch.tensor([[0.1, -0.2], [0.4, -0.8]])
    q, scale = quantize(x)
    assert isinstance(q, torch.Tensor) and q.dtype == torch.int8
    assert scale == pytest.approx(0.8 / 127)
    qn, sn = quantize(x.numpy())
    assert sn == scale and np.array_equal(qn, q.numpy())
    y = dequantize(q, scale)
    assert isinstance(y, torch.Tensor)
    assert torch.allclose(y, x, atol=scale / 2 + 1e-7)
    q16, s16 = quantize(x, bits=16)
    assert q16.dtype == torch.int16 and s16 == pytest.approx(0.8 / 32767)


def test_errors():
    with pytest.raises(ValueError, match="bits"):
        quantize(np.ones(2), bits=4)
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="NaN"):
        quantize(torch.tensor([float("inf")]))
    assert qmax(8) == 127 and qmax(16) == 32767


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 40),
              elements=st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False)),
       st.sampled_from([8, 16]))
def test_error_bound_and_max(x, bits):
    q, scale = quantize(x, bits)
    qm = qmax(bits)
    assert np.abs(q.astype(np.int64)).max() <= qm
    err = np.abs(dequantize(q, scale).astype(np.float64) - x)
    assert np.all(err <= scale / 2 * (1 + 1e-6) + 1e-30 + np.abs(x) * 1e-6)
    if np.abs(x).max() > 0:
        assert np.abs(q.astype(np.int64)).max() == qm  # the largest magnitude maps to qmax
