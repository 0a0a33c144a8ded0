"""Symmetric per-tensor quantization (see ``docs/core-interface.md``).

``scale = max|x| / (2**(bits-1) - 1)`` (``scale = 1`` for an all-zero tensor) and
``q = clamp(round_half_to_even(x / scale), -(2**(bits-1) - 1), 2**(bits-1) - 1)``.
The most negative code (-128 for int8) is never produced, so the code range is symmetric.
Torch tensors in give torch tensors out, anything else gives numpy arrays.
"""

import numpy as np

__all__ = ["quantize", "dequantize", "qmax"]

_DTYPES = {8: np.int8, 16: np.int16}


def qmax(bits: int) -> int:
    """Largest code of a ``bits``-bit symmetric quantizer (127 for 8 bits)."""
    if bits not in _DTYPES:
        raise ValueError(f"bits must be 8 or 16, not {bits!r}")
    return (1 << (bits - 1)) - 1


def _is_torch(x) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, torch.Tensor)


def quantize(x, bits: int = 8):
    """Quantize ``x`` symmetrically per tensor.

    Parameters
    ----------
    x : torch.Tensor or array_like
        Real-valued tensor. Must be finite.
    bits : {8, 16}
        Code width.

    Returns
    -------
    q : same kind as ``x`` (torch.Tensor or numpy.ndarray)
        int8 (``bits=8``) or int16 (``bits=16``) codes in ``[-qmax, qmax]``.
    scale : float
        ``x ≈ q * scale``; 1.0 for an all-zero tensor.
    """
    qm = qmax(bits)
    if _is_torch(x):
        import torch

        xd = x.detach().to(torch.float64).cpu()
        if not bool(torch.isfinite(xd).all()):
            raise ValueError("quantize: input contains NaN or Inf")
        amax = float(xd.abs().max()) if xd.numel() else 0.0
        scale = amax / qm if amax > 0 else 1.0
        q = torch.round(xd / scale).clamp_(-qm, qm)  # torch.round is half-to-even
        tdt = torch.int8 if bits == 8 else torch.int16
        return q.to(tdt).to(x.device), scale
    xa = np.asarray(x, dtype=np.float64)
    # max and min propagate NaN and reach an infinity: finite both iff every element is
    amax = max(float(xa.max()), -float(xa.min())) if xa.size else 0.0
    if not np.isfinite(amax):
        raise ValueError("quantize: input contains NaN or Inf")
    scale = amax / qm if amax > 0 else 1.0
    q = xa / scale
    np.rint(q, out=q)  # half-to-even
    np.clip(q, -qm, qm, out=q)
    return q.astype(_DTYPES[bits]), scale


def dequantize(q, scale: float):
    """Inverse of :func:`quantize`: ``q * scale`` as float32 (torch or numpy like ``q``)."""
    if _is_torch(q):
        import torch

        return q.to(torch.float32) * float(scale)
    return np.asarray(q).astype(np.float32) * np.float32(scale)
