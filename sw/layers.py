"""SWAT convolution and linear layers (paper §3.3, Appendix A.1 Algorithm 1, A.6, A.7, §4.5).

``SwatConv2d`` / ``SwatLinear`` are drop-in subclasses of ``nn.Conv2d`` / ``nn.Linear``. Extra
keyword-only constructor arguments:

``sparsity`` (float in ``[0, 1)``)
    fraction of weights *and* input activations zeroed (the layer's weight and activation
    densities are equal, ``density = 1 - sparsity``).
``method``
    ``"swat"``: forward ``Y = conv(A, Ws)`` with Top-K sparse weights ``Ws`` and dense input
    ``A``; saves ``Ws`` and Top-K sparse activations ``As`` (compact, see below); backward
    ``dA = conv_input(Ws, dY)`` and ``dW = conv_weight(As, dY)`` with the dense output gradient
    ``dY``; every weight receives its (dense) gradient ``dW``.
    ``"saw"`` (Appendix A.7): dense forward ``Y = conv(A, W)``, backward as for ``"swat"``.
    ``"meprop"`` (baseline, Sun et al.): dense forward; backward with the Top-K sparsified output
    gradient ``dYs`` (selection group per ``dims``) and dense ``W``, ``A``; bias gradient from
    ``dYs``.
    ``"dense"``: exactly ``nn.Conv2d`` / ``nn.Linear``.
``period``
    Top-K period P (Appendix A.6): thresholds of weights and activations are recomputed on every
    P-th training forward and held in between (see :class:`sw.topk.ThresholdHolder`).
``structured``
    ``True`` / ``"channel"``: channel Top-K of the weights over the L1 norms of their ``[R, S]``
    slices (:func:`sw.topk.topk_channels`); ``"filter"``: whole filters by their L1 norms
    (:func:`sw.topk.topk_filters`, the authors' ``drop_structured_filter``). Activations stay
    fine-grained (Appendix A.1); a linear layer's weights are selected element-wise.
``ties``
    ``"exact"`` (default): exactly ``k`` kept per group, ties in stream order (the hardware's
    rule); ``"keep"``: every element ``>=`` the k-th magnitude, as the authors' code (float
    model only, see :mod:`sw.topk`).
``dims``
    Top-K selection group for weights and activations (Appendix A.5): ``"nchw"`` (paper default),
    ``"chw"``, ``"hw"``, ``"random"``. Linear layers have no spatial dims: ``"hw"`` means
    ``"chw"`` (per row) there.
``mask_update`` (Fig. 7 ablation)
    multiply the weight gradient by the active-weight mask, so non-active weights are not updated.
``freeze_after_epoch`` (Fig. 8 ablation)
    when :meth:`set_epoch` is called with ``epoch >= freeze_after_epoch`` the weight mask is frozen
    (the topology stops changing; weights still receive their gradients unless ``mask_update``).
    :meth:`freeze_topology` freezes immediately.
``seed``
    seed of the generator used by ``dims="random"``.

Compact saved tensors: the sparse operands saved for backward are stored as their non-zero
values plus either a packed bit mask (1 bit per element) or int32 flat indices, whichever is
smaller, so the saved-activation memory really shrinks (measured in :mod:`sw.memory`).

Per-layer statistics of the last training forward are in ``layer.stats`` (iteration, thresholds,
achieved weight and activation densities, whether the threshold was recomputed).

In eval mode the forward uses the exact Top-K weights (no held threshold, no state change) and no
activation is sparsified (nothing is saved for a backward).
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from . import fused
from .fused import Held
from .topk import (
    ThresholdHolder,
    check_dims,
    check_finite,
    check_structure,
    check_ties,
    topk,
    topk_channels_mask,
    topk_filters_mask,
    topk_mask,
)

__all__ = [
    "METHODS",
    "SwatConv2d",
    "SwatLinear",
    "SwatLayer",
    "MaskReLU",
    "pack",
    "unpack",
    "check_sparsity",
]

METHODS = ("swat", "saw", "meprop", "dense")

_DENSE_OVERRIDE = [False]


class dense_forward:
    """Context manager: every SWAT layer runs its plain dense forward (used for shape probing)."""

    def __enter__(self):
        self._prev = _DENSE_OVERRIDE[0]
        _DENSE_OVERRIDE[0] = True
        return self

    def __exit__(self, *exc):
        _DENSE_OVERRIDE[0] = self._prev
        return False


def check_sparsity(sparsity) -> float:
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}") from None
    if math.isnan(s) or not (0.0 <= s < 1.0):
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity!r}")
    return s


def check_method(method) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return method


# --------------------------------------------------------------------------- compact storage

_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)

# Bit packing 8 bools at a time in int64 arithmetic (little-endian byte order, MSB-first bits,
# the same layout as ``numpy.packbits``): multiplying the 8 bytes (0/1) of a word by _GATHER
# collects byte i into bit 63 - i (no carries), so the top byte is the packed byte; _SPREAD
# replicates a byte into all 8 bytes and _SELECT keeps bit 7 - i in byte i.
_GATHER = 0x8040201008040201 - (1 << 64)
_SPREAD = 0x0101010101010101
_SELECT = 0x0102040810204080
_ROUND = 0x7F7F7F7F7F7F7F7F
_LITTLE = __import__("sys").byteorder == "little"


def _packbits(m: torch.Tensor) -> torch.Tensor:
    m = m.reshape(-1)
    pad = (-m.numel()) % 8
    if pad:
        m = torch.cat([m, m.new_zeros(pad)])
    if not _LITTLE or m.dtype != torch.bool:
        return (m.view(-1, 8).to(torch.uint8) * _BITS.to(m.device)).sum(dim=1, dtype=torch.uint8)
    words = m.contiguous().view(torch.uint8).view(torch.int64)
    return torch.bitwise_right_shift(words * _GATHER, 56).to(torch.uint8)


def _unpackbits(p: torch.Tensor, n: int) -> torch.Tensor:
    if not _LITTLE:
        bits = (p.unsqueeze(1) & _BITS.to(p.device)) != 0
        return bits.reshape(-1)[:n]
    w = p.to(torch.int64)
    w *= _SPREAD
    w &= _SELECT  # byte i holds 0 or a single bit
    w += _ROUND  # ... so adding 0x7F sets bit 7 of the byte iff the bit was set (no carry out)
    w >>= 7
    w &= _SPREAD
    return w.view(torch.bool).reshape(-1)[:n]


_TLS = threading.local()


def _scratch(like: torch.Tensor, n: int, slot: str = "a") -> torch.Tensor:
    """A per-thread reusable buffer of at least ``n`` elements (dtype/device of ``like``).

    For dense operands that live only inside one forward or backward call (large fresh
    allocations page-fault on every step); ``slot`` separates operands alive at the same time.
    """
    bufs = getattr(_TLS, "bufs", None)
    if bufs is None:
        bufs = _TLS.bufs = {}
    key = (slot, like.dtype, like.device)
    buf = bufs.get(key)
    if buf is None or buf.numel() < n:
        buf = bufs[key] = torch.empty(n, dtype=like.dtype, device=like.device)
    return buf


def _flatnonzero(m: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(m.reshape(-1)).reshape(-1)


def _compact(x: torch.Tensor, mask, idx, drop_zeros: bool):
    """``(values, code, fmt, mask)`` of the kept set given as a bool ``mask`` and/or ascending
    flat indices ``idx`` (see :func:`pack`). With ``drop_zeros`` kept zeros are not stored. The
    returned ``mask`` is the (possibly rebuilt) bool mask of the stored set, or ``None`` if the
    index format was chosen and no mask existed."""
    n = x.numel()
    if idx is None:
        idx = _flatnonzero(mask)
    values = x.take(idx)
    if drop_zeros and values.numel() and not bool(values.all()):
        nz = values != 0
        idx, values, mask = idx[nz], values[nz], None
    k = values.numel()
    if 4 * k < (n + 7) // 8 and n < 2**31:
        return values, idx.to(torch.int32), "idx", mask
    if mask is None:
        mask = torch.zeros(n, dtype=torch.bool, device=x.device)
        mask[idx] = True
    return values, _packbits(mask), "bits", mask


def _pack(x: torch.Tensor, mask, idx, drop_zeros: bool, dense: torch.Tensor | None = None):
    """:func:`_compact` through the fused kernels where they apply (:mod:`sw.fused`):
    ``(values, code, fmt, mask, dense_written)``. ``mask`` may be a :class:`sw.fused.Held`
    threshold; ``dense`` (fused route only) receives ``where(kept, x, 0)``."""
    kept = mask if isinstance(mask, Held) else (idx if mask is None else None)
    if kept is not None and fused.available():
        r = fused.pack(x, kept, drop_zeros, dense)
        if r is not None:
            return (*r, None, dense is not None)
    if isinstance(mask, Held):
        a = x.abs()
        mask = (a >= mask.threshold) if mask.threshold > 0 else (a > 0)
    return (*_compact(x, mask, idx, drop_zeros), False)


def pack(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Compact form of ``where(mask, x, 0)``: ``(values, code, fmt)``.

    ``fmt == "bits"``: ``code`` is the mask packed 8 elements per byte (MSB first);
    ``fmt == "idx"``: ``code`` holds the int32 flat indices of the kept elements. The cheaper of
    the two is chosen (indices win below ~1/32 density).
    """
    values, code, fmt, _ = _compact(x, mask.reshape(-1), None, False)
    return values, code, fmt


def unpack(values: torch.Tensor, code: torch.Tensor, fmt: str, shape, out=None) -> torch.Tensor:
    """Inverse of :func:`pack`: the dense tensor of ``shape`` (written into ``out`` if given)."""
    n = math.prod(shape)
    if fmt == "bits" and fused.available():
        r = fused.unpack_bits(values, code, n, values.new_empty(n) if out is None else out)
        if r is not None:
            return r.reshape(shape)
    if out is None:
        out = values.new_zeros(n)
    else:
        out = out.reshape(-1)[:n].zero_()
    if fmt == "idx":
        out[code.long()] = values
    else:
        out.masked_scatter_(_unpackbits(code, n), values)
    return out.reshape(shape)


def unpack_mask(code: torch.Tensor, fmt: str, shape) -> torch.Tensor:
    n = math.prod(shape)
    if fmt == "idx":
        m = torch.zeros(n, dtype=torch.bool, device=code.device)
        m[code.long()] = True
        return m.reshape(shape)
    return _unpackbits(code, n).reshape(shape)


# --------------------------------------------------------------------------- autograd function


class _Cfg:
    """Per-call configuration handed to the autograd function (not a tensor, not saved)."""

    __slots__ = ("layer", "kind", "method", "w_mask", "act_mask_fn", "grad_density", "stats")

    def __init__(self, layer, kind, method, w_mask, act_mask_fn, grad_density):
        self.layer = layer
        self.kind = kind
        self.method = method
        self.w_mask = w_mask
        self.act_mask_fn = act_mask_fn
        self.grad_density = grad_density
        self.stats = {}


def _fwd(layer, kind, x, w, b):
    if kind == "conv":
        return F.conv2d(x, w, b, layer.stride, layer._fn_padding, layer.dilation, layer.groups)
    return F.linear(x, w, b)


def _bwd_input(layer, kind, x_shape, w, g):
    if kind == "conv":
        return torch.nn.grad.conv2d_input(
            x_shape, w, g, layer.stride, layer._fn_padding, layer.dilation, layer.groups
        )
    return g @ w


def _bwd_weight(layer, kind, a, w_shape, g):
    if kind == "conv":
        return torch.nn.grad.conv2d_weight(
            a, w_shape, g, layer.stride, layer._fn_padding, layer.dilation, layer.groups
        )
    return g.t() @ a


def _bwd_both(layer, kind, x_shape, a, w, g, need_x, need_w):
    """``(dA, dW)`` (``None`` where not wanted) in one backward call.

    For a convolution this is one ``aten.convolution_backward`` with the real sparse operands,
    the routine the dense layer's autograd uses (the separate ``torch.nn.grad`` helpers pass
    expanded placeholder tensors and take a slower path).
    """
    if kind != "conv" or isinstance(layer._fn_padding, str):
        gx = _bwd_input(layer, kind, x_shape, w, g) if need_x else None
        gw = _bwd_weight(layer, kind, a, w.shape, g) if need_w else None
        return gx, gw
    if a is None:
        a = g.new_empty(1).expand(x_shape)
    gx, gw, _ = torch.ops.aten.convolution_backward(
        g, a, w, None, _pair(layer.stride), _pair(layer._fn_padding), _pair(layer.dilation),
        False, [0, 0], layer.groups, (need_x, need_w, False),
    )  # fmt: skip
    return gx, gw


def _bias_grad(kind, g):
    if kind == "conv":
        return g.sum(dim=(0, 2, 3))
    return g.sum(dim=0)


class SwatFunction(torch.autograd.Function):
    """``y = layer(x)`` with SWAT / SAW / meProp sparsity; see the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, bias, cfg: _Cfg):
        layer, kind, method = cfg.layer, cfg.kind, cfg.method
        ctx.cfg = cfg
        ctx.x_shape = tuple(x.shape)
        ctx.w_shape = tuple(weight.shape)
        ctx.has_bias = bias is not None
        if method == "meprop":
            y = _fwd(layer, kind, x, weight, bias)
            ctx.save_for_backward(x, weight)
            return y
        w_mask, w_idx = cfg.w_mask
        ws = None
        if method == "swat":  # Ws only feeds this forward (no grad recorded here): scratch
            ws = _scratch(weight, weight.numel(), "w")[: weight.numel()].view(weight.shape)
        w_vals, w_code, ctx.w_fmt, w_mask, ws_done = _pack(weight, w_mask, w_idx, False, ws)
        if method == "swat" and not ws_done:
            if w_mask is not None:
                torch.where(w_mask.reshape(weight.shape), weight, weight.new_zeros(()), out=ws)
            else:
                ws.zero_().view(-1)[w_code.long()] = w_vals
        y = _fwd(layer, kind, x, ws if method == "swat" else weight, bias)
        w_vals._swat_role = w_code._swat_role = "weight"  # for sw.memory's accounting
        # Activations: Top-K, then keep only the non-zeros (a kept zero needs no storage).
        if weight.requires_grad:
            a_mask, a_idx = cfg.act_mask_fn(x)
            a_vals, a_code, ctx.a_fmt, _, _ = _pack(x, a_mask, a_idx, True)
            cfg.stats["activation_density"] = a_vals.numel() / max(1, x.numel())
        else:  # no weight gradient wanted: the activations need not be kept at all
            a_vals = a_code = x.new_zeros(0)
            ctx.a_fmt = None
        cfg.stats["weight_density"] = w_vals.numel() / max(1, weight.numel())
        ctx.save_for_backward(w_vals, w_code, a_vals, a_code)
        # Nothing but the compact tensors may outlive the forward (the bool weight mask would
        # be hidden from saved-tensor accounting): the backward rebuilds the mask from w_code.
        cfg.w_mask = cfg.act_mask_fn = None
        return y

    @staticmethod
    def backward(ctx, grad_out):
        cfg = ctx.cfg
        layer, kind, method = cfg.layer, cfg.kind, cfg.method
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        g = grad_out.contiguous()
        gx = gw = gb = None
        if method == "meprop":
            x, w = ctx.saved_tensors
            dims = layer._eff_dims
            gs = topk(g, cfg.grad_density, dims, generator=layer._generator)
            if need_x:
                gx = _bwd_input(layer, kind, ctx.x_shape, w, gs)
            if need_w:
                gw = _bwd_weight(layer, kind, x, ctx.w_shape, gs)
            if need_b and ctx.has_bias:
                gb = _bias_grad(kind, gs)
            return gx, gw, gb, None
        w_vals, w_code, a_vals, a_code = ctx.saved_tensors
        rec = torch.is_grad_enabled()  # backward recorded (create_graph): no shared buffers
        ws = unpack(w_vals, w_code, ctx.w_fmt, ctx.w_shape,
                    out=None if rec else _scratch(w_vals, math.prod(ctx.w_shape), "w"))
        a_s = None
        if need_w:
            # The dense As lives only for this call: unpack it into a reused buffer (a fresh
            # large allocation page-faults on every step). Not when the backward is itself
            # recorded (create_graph), where it could be saved for a double backward.
            out = None if rec else _scratch(a_vals, math.prod(ctx.x_shape), "a")
            a_s = unpack(a_vals, a_code, ctx.a_fmt, ctx.x_shape, out=out)
        if need_x or need_w:
            gx, gw = _bwd_both(layer, kind, ctx.x_shape, a_s, ws, g, need_x, need_w)
        if need_w:
            if layer.mask_update:
                gw = gw * unpack_mask(w_code, ctx.w_fmt, ctx.w_shape).to(gw.dtype)
        if need_b and ctx.has_bias:
            gb = _bias_grad(kind, g)
        return gx, gw, gb, None


# --------------------------------------------------------------------------- layers


class SwatLayer:
    """Mixin holding the SWAT state shared by :class:`SwatConv2d` and :class:`SwatLinear`."""

    _kind = "?"
    #: an ``sw.hil.IntegerPath`` when the run's GEMMs go to an integer backend (``sw.hil.attach``)
    gemm_path = None

    def _swat_init(
        self,
        sparsity=0.0,
        method="swat",
        period=1,
        structured=False,
        dims="nchw",
        mask_update=False,
        freeze_after_epoch=None,
        seed=0,
        ties="exact",
    ):
        self.method = check_method(method)
        self._sparsity = check_sparsity(sparsity)
        check_dims(dims)
        if not isinstance(period, int) or isinstance(period, bool) or period < 1:
            raise ValueError(f"period must be an int >= 1, got {period!r}")
        self.period = period
        self.structure = check_structure(structured)  # None, "channel" or "filter"
        self.structured = self.structure is not None
        self.ties = check_ties(ties)
        self.dims = dims
        self._eff_dims = "chw" if (self._kind == "linear" and dims == "hw") else dims
        self.mask_update = bool(mask_update)
        self.freeze_after_epoch = freeze_after_epoch
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if dims == "random" else None
        structure = self.structure if self._kind == "conv" else None
        self._w_holder = ThresholdHolder(period, self._eff_dims, structured=structure or False,
                                         ties=self.ties)
        self._a_holder = ThresholdHolder(period, self._eff_dims, ties=self.ties)
        self._frozen_mask: torch.Tensor | None = None
        self.iteration = 0
        self.stats: dict = {}

    # ---- sparsity / density
    @property
    def sparsity(self) -> float:
        return self._sparsity

    @sparsity.setter
    def sparsity(self, value) -> None:
        self._sparsity = check_sparsity(value)

    @property
    def density(self) -> float:
        """Density of weights and activations (1.0 for ``method="dense"``)."""
        return 1.0 if self.method == "dense" else 1.0 - self._sparsity

    @density.setter
    def density(self, value) -> None:
        self.sparsity = 1.0 - float(value)

    @property
    def effective_dims(self) -> str:
        """The Top-K selection group actually used (``"hw"`` means ``"chw"`` for linear)."""
        return self._eff_dims

    # ---- topology freezing (Fig. 8)
    def freeze_topology(self) -> None:
        """Fix the current Top-K weight mask for all later iterations."""
        with torch.no_grad():
            self._frozen_mask = self._exact_weight_mask().clone()

    def unfreeze_topology(self) -> None:
        self._frozen_mask = None

    @property
    def topology_frozen(self) -> bool:
        return self._frozen_mask is not None

    def set_epoch(self, epoch: int) -> None:
        if (
            self.freeze_after_epoch is not None
            and epoch >= self.freeze_after_epoch
            and not self.topology_frozen
        ):
            self.freeze_topology()

    # ---- masks
    def _exact_weight_mask(self) -> torch.Tensor:
        w = self.weight.detach()
        if self.structure == "filter" and w.ndim > 2:
            return topk_filters_mask(w, self.density, ties=self.ties)
        if self.structured:
            return topk_channels_mask(w, self.density, ties=self.ties)
        return topk_mask(w, self.density, self._eff_dims, generator=self._generator,
                         ties=self.ties)

    def weight_mask(self) -> torch.Tensor:
        """The active-weight mask the next forward would use (exact Top-K, or the frozen one)."""
        if self._frozen_mask is not None:
            return self._frozen_mask
        with torch.no_grad():
            return self._exact_weight_mask()

    def sparse_weight(self) -> torch.Tensor:
        m = self.weight_mask()
        return torch.where(m, self.weight.detach(), torch.zeros((), dtype=self.weight.dtype))

    def reset_thresholds(self) -> None:
        self._w_holder.reset()
        self._a_holder.reset()

    # ---- Top-K period
    def set_periods(self, weight: int | None = None, activation: int | None = None) -> None:
        """Separate Top-K periods for the weights and the activations (the authors recompute
        linear layers and structured weight masks on every call: period 1 there)."""
        for holder, p in ((self._w_holder, weight), (self._a_holder, activation)):
            if p is not None:
                if not isinstance(p, int) or isinstance(p, bool) or p < 1:
                    raise ValueError(f"period must be an int >= 1, got {p!r}")
                holder.period = p

    def set_batch_index(self, index: int) -> None:
        """Count the Top-K period from ``index``: the next training call recomputes the
        thresholds iff ``index % period == 0`` (the authors' ``batch_idx % P``, restarting at 0
        every epoch; the training loop calls this at the start of an epoch)."""
        self._w_holder.calls = self._a_holder.calls = int(index)

    # ---- forward
    def _swat_forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.density
        if _DENSE_OVERRIDE[0]:
            return self._dense_forward(x)
        if self.gemm_path is not None:  # hardware in the loop: int8 GEMMs on a backend
            return self.gemm_path.layer_forward(self, x)
        if self.method == "dense" or (d >= 1.0 and self._frozen_mask is None):
            if self.training and torch.is_grad_enabled():
                self.iteration += 1
                self.stats = {
                    "iteration": self.iteration,
                    "density": 1.0,
                    "weight_density": 1.0,
                    "activation_density": 1.0,
                }
            return self._dense_forward(x)
        check_finite(x)
        if not torch.is_grad_enabled() or not (self.weight.requires_grad or x.requires_grad):
            # Nothing to differentiate: exact Top-K weights, no activation Top-K, no state change
            # (SAW / meProp are dense in the forward).
            if self.method in ("saw", "meprop"):
                return self._dense_forward(x)
            w = self.weight
            ws = torch.where(self.weight_mask(), w, torch.zeros((), dtype=w.dtype))
            return self._call(x, ws, self.bias)
        train = self.training  # eval mode with autograd: exact Top-K, thresholds untouched
        gen = self._generator
        with torch.no_grad():
            if self.method == "meprop":
                w_mask = None
            elif self._frozen_mask is not None:
                w_mask = (self._frozen_mask, None)
                self._w_holder.recomputed = False
            elif train:
                w_mask = self._w_holder.select(self.weight.detach(), d, generator=gen,
                                               lazy=fused.available())
            else:
                w_mask = (self._exact_weight_mask(), None)
        a_holder, dims, ties = self._a_holder, self._eff_dims, self.ties

        def act_mask_fn(a):  # -> (mask, idx), see ThresholdHolder.select
            if train:
                return a_holder.select(a.detach(), d, generator=gen, check=False,
                                       lazy=fused.available())
            return topk_mask(a.detach(), d, dims, generator=gen, ties=ties, _check=False), None

        cfg = _Cfg(self, self._kind, self.method, w_mask, act_mask_fn, d)
        y = self._swat_apply(x, cfg)
        if not train:
            return y
        self.iteration += 1
        st = {"iteration": self.iteration, "density": d}
        if self.method != "meprop":
            st["weight_threshold"] = _scalar(self._w_holder.threshold)
            st["activation_threshold"] = _scalar(self._a_holder.threshold)
            st["recomputed"] = bool(self._w_holder.recomputed)
        st.update(cfg.stats)
        self.stats = st
        return y

    def extra_swat_repr(self) -> str:
        s = f"sparsity={self._sparsity:g}, method={self.method}"
        if self.period != 1:
            s += f", period={self.period}"
        if self.structured:
            s += ", structured=True" if self.structure == "channel" else ", structured=filter"
        if self.ties != "exact":
            s += f", ties={self.ties}"
        if self.dims != "nchw":
            s += f", dims={self.dims}"
        if self.mask_update:
            s += ", mask_update=True"
        return s


def _scalar(t):
    if t is None:
        return None
    if t.numel() == 1:
        return float(t.reshape(()))
    return t.detach().clone()


class SwatConv2d(SwatLayer, nn.Conv2d):
    """``nn.Conv2d`` with SWAT sparsity (see the module docstring for the keywords)."""

    _kind = "conv"

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        device=None,
        dtype=None,
        *,
        sparsity=0.0,
        method="swat",
        period=1,
        structured=False,
        dims="nchw",
        mask_update=False,
        freeze_after_epoch=None,
        seed=0,
        ties="exact",
    ):
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )  # fmt: skip
        self._swat_init(
            sparsity, method, period, structured, dims, mask_update, freeze_after_epoch, seed,
            ties,
        )

    @property
    def _fn_padding(self):
        return self.padding if self.padding_mode == "zeros" else (0, 0)

    def _pad(self, x):
        if self.padding_mode == "zeros":
            return x
        return F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)

    def _dense_forward(self, x):
        return nn.Conv2d.forward(self, x)

    def _call(self, x, w, b):
        x = self._pad(x)
        return F.conv2d(x, w, b, self.stride, self._fn_padding, self.dilation, self.groups)

    def _swat_apply(self, x, cfg):
        return SwatFunction.apply(self._pad(x), self.weight, self.bias, cfg)

    def forward(self, x):
        return self._swat_forward(x)

    def extra_repr(self):
        return nn.Conv2d.extra_repr(self) + ", " + self.extra_swat_repr()

    @classmethod
    def from_dense(cls, m: nn.Conv2d, **kw) -> SwatConv2d:
        """A SWAT twin of ``m`` sharing its parameters (no copy, so optimizers stay valid)."""
        new = cls(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
            m.groups, m.bias is not None, m.padding_mode, device="meta", **kw,
        )  # fmt: skip
        new.weight = m.weight
        new.bias = m.bias
        new.train(m.training)
        return new


class SwatLinear(SwatLayer, nn.Linear):
    """``nn.Linear`` with SWAT sparsity (see the module docstring for the keywords).

    Inputs with more than two dimensions are flattened to ``[-1, in_features]`` first; the
    activation selection group ``"chw"`` / ``"hw"`` is then one row.
    """

    _kind = "linear"

    def __init__(
        self,
        in_features,
        out_features,
        bias=True,
        device=None,
        dtype=None,
        *,
        sparsity=0.0,
        method="swat",
        period=1,
        structured=False,
        dims="nchw",
        mask_update=False,
        freeze_after_epoch=None,
        seed=0,
        ties="exact",
    ):
        nn.Linear.__init__(self, in_features, out_features, bias, device, dtype)
        self._swat_init(
            sparsity, method, period, structured, dims, mask_update, freeze_after_epoch, seed,
            ties,
        )

    def _dense_forward(self, x):
        return nn.Linear.forward(self, x)

    def _call(self, x, w, b):
        return F.linear(x, w, b)

    def _swat_apply(self, x, cfg):
        if x.ndim == 2:
            return SwatFunction.apply(x, self.weight, self.bias, cfg)
        lead = x.shape[:-1]
        y = SwatFunction.apply(x.reshape(-1, x.shape[-1]), self.weight, self.bias, cfg)
        return y.reshape(*lead, y.shape[-1])

    def forward(self, x):
        return self._swat_forward(x)

    def extra_repr(self):
        return nn.Linear.extra_repr(self) + ", " + self.extra_swat_repr()

    @classmethod
    def from_dense(cls, m: nn.Linear, **kw) -> SwatLinear:
        """A SWAT twin of ``m`` sharing its parameters (no copy, so optimizers stay valid)."""
        new = cls(m.in_features, m.out_features, m.bias is not None, device="meta", **kw)
        new.weight = m.weight
        new.bias = m.bias
        new.train(m.training)
        return new


# --------------------------------------------------------------------------- bit-mask ReLU


class _MaskReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.clamp_min(0)
        ctx.n = x.numel()
        ctx.shape = tuple(x.shape)
        ctx.save_for_backward(_packbits(y > 0))
        return y

    @staticmethod
    def backward(ctx, g):
        (bits,) = ctx.saved_tensors
        m = _unpackbits(bits, ctx.n).reshape(ctx.shape)
        return torch.where(m, g, torch.zeros((), dtype=g.dtype))


class MaskReLU(nn.ReLU):
    """``nn.ReLU`` that saves only a 1-bit mask ``y > 0`` for its backward (not its output).

    A stock ReLU keeps its dense output alive for the backward; once a SWAT layer stores its
    own compact Top-K copy of that output, the ReLU's copy is the only dense one left and
    cancels SWAT's activation-memory saving (see :mod:`sw.memory`). Forward values and
    gradients equal ``nn.ReLU``'s exactly (gradient 0 at ``x == 0``, like PyTorch). Always
    out-of-place (``inplace`` is accepted and ignored).
    """

    def forward(self, x):
        if not torch.is_grad_enabled() or not x.requires_grad:
            return torch.relu(x)
        return _MaskReLUFunction.apply(x)
