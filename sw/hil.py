"""Hardware in the loop: the three GEMMs of every SWAT layer as int8 jobs on a GEMM backend.

:func:`attach` gives every ``SwatConv2d`` / ``SwatLinear`` of a model an :class:`IntegerPath`;
the layer's forward then calls :meth:`IntegerPath.layer_forward` instead of its float autograd
function. Per layer and training step (``docs/hardware-in-the-loop.md``):

forward
    ``qA, sA = quantize(A)``, ``qW, sW = quantize(W[F, K])`` (``sw.quant``: symmetric, per
    tensor); ``qWs`` = the integer Top-K of ``qW`` at the layer's density and ``qAs`` that of
    ``qA`` (``sw.int_topk``: the threshold-select unit's tie rule, stream order row-major of
    ``W[F, K]`` and of ``A[B, C, H, W]``). GEMM ``D = im2col(qA) [M, K]``, ``S = qWsᵀ [K, F]``;
    ``Y = C · sA · sW`` (+ bias on the host).
input gradient
    ``D = dY [M, F]`` (quantized per :data:`GRAD_QUANT`), ``S = qWs [F, K]``; ``col2im`` on the
    host. Skipped when the layer's input needs no gradient (the first layer).
weight gradient
    ``D = dYᵀ [F, M]``, ``S = im2col(qAs) [M, K]``.

The dense first layer of SWAT-U takes the same path at density 1 (no Top-K). BatchNorm,
activations, the loss, the bias gradient (``Σ dY``) and the optimizer stay in float on the host.
In eval mode the forward uses the exact integer Top-K of the weights and the dense activations.

``grad_quant`` says how ``dY`` becomes the int8 ``D`` operand of the two gradient GEMMs (the
datapath stays int8 in every case; scales are applied to the int32 results on the host):

``"tensor"``
    the project's per-tensor round-to-nearest quantization (what the compare job measures).
``"row"``
    one scale per row of each ``D``: per output pixel for the input gradient (``dY [M, F]``),
    per output channel for the weight gradient (``dYᵀ [F, M]``). ``C``'s row ``i`` is
    ``Σ_k D[i, k] S[k, :]``, so a row scale factors out of the int32 result exactly.
``"stochastic"``
    per-tensor scale, stochastic rounding (``floor(x / s + u)``, ``u`` uniform from the run's
    torch's global generator, which the run seeds and its checkpoints save, so ``intref`` and
    ``rtl`` see the same integers and a resumed run rounds as an uninterrupted one).
``"split"``
    ``dY ≈ s·hi + (s/254)·lo`` with two int8 halves (``lo`` quantizes the rounding residual of
    ``hi``), each run as its own GEMM on the same ``S``: about 15 bits of ``dY`` for twice the
    gradient-pass cycles.
``"row-split"``
    per-row scales and the two halves.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .backend import GemmBackend, GemmJob

__all__ = ["GRAD_QUANT", "IntegerPath", "attach", "detach", "check_supported"]

GRAD_QUANT = ("tensor", "row", "stochastic", "split", "row-split")
PASSES = ("forward", "backward_input", "backward_weight")
_QMAX = 127


# --------------------------------------------------------------------------- quantization


def _quant_tensor(x: torch.Tensor):
    """``(q int8, scale)``: :func:`sw.quant.quantize` (per tensor, round half to even)."""
    from .quant import quantize

    q, s = quantize(x)
    return q, float(s)


def _quant_rows(x: torch.Tensor):
    """``(q int8 [R, C], scales float64 [R])``: the same rule with one scale per row."""
    xd = x.detach().to(torch.float64)
    amax = xd.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / _QMAX, torch.ones_like(amax))
    q = torch.round(xd / scale[:, None]).clamp_(-_QMAX, _QMAX).to(torch.int8)
    return q, scale


def _quant_stochastic(x: torch.Tensor, gen: torch.Generator):
    xd = x.detach().to(torch.float64)
    amax = float(xd.abs().max()) if xd.numel() else 0.0
    scale = amax / _QMAX if amax > 0 else 1.0
    u = torch.rand(xd.shape, generator=gen, dtype=torch.float64)
    q = torch.floor(xd / scale + u).clamp_(-_QMAX, _QMAX).to(torch.int8)
    return q, scale


def _split(x: torch.Tensor, scale):
    """Two int8 halves of ``x`` given the scale(s) of the high half (scalar or per row)."""
    xd = x.detach().to(torch.float64)
    s = scale if isinstance(scale, float) else scale[:, None]
    hi = torch.round(xd / s).clamp_(-_QMAX, _QMAX)
    lo = torch.round((xd - hi * s) / (s / (2 * _QMAX))).clamp_(-_QMAX, _QMAX)
    return hi.to(torch.int8), lo.to(torch.int8)


def quantize_d(g2d: torch.Tensor, mode: str, gen: torch.Generator | None = None):
    """The D operand(s) of a gradient GEMM: ``[(q int8 [R, C], row scales float64 [R]), ...]``.

    More than one pair (``split`` modes) means as many GEMMs on the same ``S`` whose dequantized
    results are summed.
    """
    rows = g2d.shape[0]
    if mode in ("tensor", "split"):
        q, s = _quant_tensor(g2d)
        if mode == "tensor":
            return [(q, torch.full((rows,), s, dtype=torch.float64))]
        hi, lo = _split(g2d, s)
        full = torch.full((rows,), s, dtype=torch.float64)
        return [(hi, full), (lo, full / (2 * _QMAX))]
    if mode == "stochastic":
        q, s = _quant_stochastic(g2d, gen)
        return [(q, torch.full((rows,), s, dtype=torch.float64))]
    q, sr = _quant_rows(g2d)
    if mode == "row":
        return [(q, sr)]
    hi, lo = _split(g2d, sr)
    return [(hi, sr), (lo, sr / (2 * _QMAX))]


# --------------------------------------------------------------------------- lowering helpers


def _out_hw(layer, h, w):
    def one(size, i):
        k, s, p, d = (layer.kernel_size[i], layer.stride[i], layer.padding[i], layer.dilation[i])
        return (size + 2 * p - d * (k - 1) - 1) // s + 1

    return one(h, 0), one(w, 1)


def _dequant(cs, parts, s_scale: float) -> torch.Tensor:
    """``Σ C_i · rowscale_i · s_scale`` in float64: the int results of the ``parts`` of a D."""
    acc = None
    for c, (_, rs) in zip(cs, parts, strict=True):
        t = c.to(torch.float64) * (rs[:, None] * s_scale)
        acc = t if acc is None else acc + t
    return acc


def check_supported(layer, name: str = "") -> None:
    """Raise ``ValueError`` (one line) for a layer the integer path does not lower."""
    what = name or type(layer).__name__
    if layer.method not in ("swat", "dense"):
        raise ValueError(f"{what}: the integer backends run method swat or dense, "
                         f"not {layer.method}")
    if (layer.structured or layer.dims != "nchw" or layer.period != 1 or layer.mask_update
            or getattr(layer, "ties", "exact") != "exact"):
        raise ValueError(f"{what}: the integer backends run unstructured per-tensor Top-K "
                         "every iteration keeping exactly k (--topk-dims nchw, --period 1, "
                         "no --structured)")
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError(f"{what}: the integer backends lower plain convolutions only "
                             "(groups 1, numeric zero padding)")


# --------------------------------------------------------------------------- the path


class IntegerPath:
    """The integer passes of a model's SWAT layers on ``backend``, and their per-step cost.

    ``records`` collects one dict per GEMM of the current training step (``layer``, ``pass``,
    ``macs``, ``cycles``, ``runs``) and one per selection (``select_w`` / ``select_a`` cycles);
    :meth:`take_step` sums and clears them. Every GEMM is labelled ``"<layer>:<pass>"``, so a
    backend failure names the layer and pass it was on.

    ``grad_quant`` (:data:`GRAD_QUANT`) chooses the int8 ``dY`` operand; stochastic rounding
    draws from ``generator`` (default: torch's global generator, seeded by the run and saved
    in its checkpoints).
    """

    def __init__(self, backend: GemmBackend, grad_quant: str = "tensor",
                 generator: torch.Generator | None = None):
        if grad_quant not in GRAD_QUANT:
            raise ValueError(f"unknown grad_quant {grad_quant!r}; expected one of "
                             f"{', '.join(GRAD_QUANT)}")
        self.backend = backend
        self.grad_quant = grad_quant
        self.gen = generator
        self.records: list[dict] = []
        self.eval_cycles = 0

    # ---- GEMMs
    def _gemm(self, layer, jobs, training: bool):
        """Run ``[(pass, d, s, select), ...]`` of one layer as one backend batch (``select``:
        the ``sw.lowering.GemmJob`` saying where ``S`` comes from, for a backend whose select
        unit makes it); int64 results."""
        name = getattr(layer, "_hil_name", type(layer).__name__)
        gj = [GemmJob(np.ascontiguousarray(d), np.ascontiguousarray(s), f"{name}:{p}", sel)
              for p, d, s, sel in jobs]
        outs = self.backend.run(gj)
        for (p, *_), j, o in zip(jobs, gj, outs, strict=True):
            if training:
                self.records.append({"layer": name, "pass": p, "macs": o.macs,
                                     "shape": j.d.shape + j.s.shape[1:], "cycles": o.cycles,
                                     "runs": o.runs})
                if o.select_cycles is not None:  # the RTL select unit's own cycles
                    key = "select_a" if p == "backward_weight" else "select_w"
                    self.records.append({"layer": name, key: o.select_cycles,
                                         "select_exposed": o.select_exposed or 0})
            elif o.cycles:
                self.eval_cycles += o.cycles
        return [torch.from_numpy(o.c) for o in outs]

    # ---- forward
    def layer_forward(self, layer, x: torch.Tensor) -> torch.Tensor:
        """``layer(x)`` with its GEMMs on the backend (called from ``SwatLayer.forward``)."""
        if x.ndim > 2 and not isinstance(layer, nn.Conv2d):  # SwatLinear on [..., in]
            lead = x.shape[:-1]
            y = self.layer_forward(layer, x.reshape(-1, x.shape[-1]))
            return y.reshape(*lead, y.shape[-1])
        grad = torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad)
        step = layer.training and grad  # a training step: recorded, Top-K of A, stats
        return _HilFunction.apply(x, layer.weight, layer.bias,
                                  (self, layer, step, step and layer.weight.requires_grad))

    def take_step(self) -> dict:
        """Sums over the GEMMs of the step just finished (and clears them)."""
        from hw.contract.cycles import mac_bound_cycles

        recs, self.records = self.records, []
        out: dict = {}
        pes = self.backend.pes
        macs = sum(r.get("macs", 0) for r in recs)
        out["gemms"] = sum(1 for r in recs if "pass" in r)
        out["macs"] = macs
        out["mac_bound_cycles"] = round(mac_bound_cycles(macs, pes))
        have_cycles = any(r.get("cycles") is not None for r in recs if "pass" in r)
        for p in PASSES:
            sel = [r for r in recs if r.get("pass") == p]
            out[f"macs_{p}"] = sum(r["macs"] for r in sel)
            if have_cycles:
                out[f"cycles_{p}"] = sum(r["cycles"] or 0 for r in sel)
        if have_cycles:
            out["cycles"] = sum(out[f"cycles_{p}"] for p in PASSES)
            out["core_runs"] = sum(r.get("runs") or 0 for r in recs if "pass" in r)
            out["utilization"] = round(macs / (pes * out["cycles"]), 4) if out["cycles"] else 0.0
        out["select_w_cycles"] = sum(r.get("select_w", 0) for r in recs)
        out["select_a_cycles"] = sum(r.get("select_a", 0) for r in recs)
        out["select_cycles"] = out["select_w_cycles"] + out["select_a_cycles"]
        rtl = any("select_exposed" in r for r in recs)
        out["select_source"] = "rtl" if rtl else "formula"
        if rtl:
            out["select_exposed_cycles"] = sum(r.get("select_exposed", 0) for r in recs)
        return out


class _HilFunction(torch.autograd.Function):
    """``y = layer(x)`` with the forward and both gradient GEMMs in int8 on the backend.

    The operands come from :mod:`sw.lowering` (quantize, integer Top-K, im2col, col2im): the
    same lowering the compare job reports; only the ``dY`` operand is made here
    (:func:`quantize_d`), as ``grad_quant`` asks.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, state):
        from . import lowering

        path, layer, training, want_w = state
        conv = isinstance(layer, nn.Conv2d)
        d = layer.density if layer.method != "dense" else 1.0
        f = weight.shape[0]
        name = getattr(layer, "_hil_name", type(layer).__name__)
        ops = lowering.quantize_layer(name, layer, x.detach(), weight.detach(), density=d)
        job = lowering.forward_job(ops)
        (c,) = path._gemm(layer, [("forward", job.d, job.s, job)], training)
        y = c.to(torch.float64) * job.scale
        if conv:
            b = x.shape[0]
            y = y.reshape(b, -1, f).transpose(1, 2).reshape(b, f, *_out_hw(layer, *x.shape[2:]))
        y = y.to(x.dtype).contiguous()
        if bias is not None:
            y = y + (bias.detach().reshape(1, -1, 1, 1) if conv else bias.detach())
        if training:
            layer.iteration += 1
            nz_w = int(np.count_nonzero(ops.qws))
            st = {"iteration": layer.iteration, "density": d,
                  "weight_density": nz_w / max(1, ops.qw.size)}
            if want_w:
                st["activation_density"] = int(np.count_nonzero(ops.qas)) / max(1, ops.qa.size)
            if d < 1.0 and not path.backend.selects:  # formula: W (S = Wᵀ), Ws held, A
                path.records.append({
                    "layer": name,
                    "select_w": ops.select_w_cycles
                    + (ops.select_w_held_cycles if x.requires_grad else 0),
                    "select_a": ops.select_a_cycles if want_w else 0})
            layer.stats = st
        ctx.state = state
        ctx.ops = ops
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_out):
        from . import lowering

        path, layer = ctx.state[:2]
        ops = ctx.ops
        ctx.ops = None  # the operands live until this backward only
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        g = grad_out.detach()
        f = ops.qw.shape[0]
        g2 = g.permute(0, 2, 3, 1).reshape(-1, f) if ops.conv else g.reshape(-1, f)
        gx = gw = gb = None
        # both gradient GEMMs of the layer go to the backend as one batch
        jobs, px, pw = [], [], []
        if need_x:
            px = quantize_d(g2, path.grad_quant, path.gen)
            jobs += [("backward_input", q.numpy(), ops.qws,
                      _select_job(ops, "backward_input", q)) for q, _ in px]
        if need_w:
            pw = quantize_d(g2.t(), path.grad_quant, path.gen)
            jobs += [("backward_weight", q.numpy(), ops.as_col,
                      _select_job(ops, "backward_weight", q)) for q, _ in pw]
        cs = path._gemm(layer, jobs, True) if jobs else []
        if need_x:
            acc = _dequant(cs[:len(px)], px, ops.sw)
            if ops.conv:
                acc = torch.from_numpy(lowering.fold(acc.numpy(), layer, ops.a_shape))
            gx = acc.reshape(ops.a_shape).to(grad_out.dtype)
        if need_w:
            gw = _dequant(cs[len(px):], pw, ops.sa).reshape(layer.weight.shape)
            gw = gw.to(grad_out.dtype)
        if need_b and ctx.has_bias:
            gb = g.sum(dim=(0, 2, 3)) if ops.conv else g.sum(dim=0)
        return gx, gw, gb, None


def _select_job(ops, pass_name: str, q):
    """The ``sw.lowering.GemmJob`` of a gradient GEMM with ``D = q`` (where its ``S`` comes
    from, for a backend whose select unit makes ``S``)."""
    from . import lowering

    if pass_name == "backward_input":
        return lowering.GemmJob(ops.name, pass_name, "conv" if ops.conv else "linear",
                                ops.density, q.numpy(), ops.qws, ops.qw, ops.sw)
    return lowering.GemmJob(ops.name, pass_name, "conv" if ops.conv else "linear", ops.density,
                            q.numpy(), ops.as_col, ops.a_col, ops.sa, select_src=ops.qa,
                            select_module=ops.module if ops.conv else None)


# --------------------------------------------------------------------------- attaching


def attach(model: nn.Module, path: IntegerPath) -> nn.Module:
    """Route every SWAT layer of ``model`` through ``path``; plain ``nn.Conv2d`` / ``nn.Linear``
    layers are first replaced by SWAT twins at density 1 (sharing their parameters), so a dense
    model runs in int8 as well. Raises ``ValueError`` for a layer the path cannot lower."""
    from .layers import SwatConv2d, SwatLayer, SwatLinear
    from .swatify import _set_submodule

    for name, m in list(model.named_modules()):
        if not name or isinstance(m, SwatLayer):
            continue
        if isinstance(m, nn.Conv2d):
            _set_submodule(model, name, SwatConv2d.from_dense(m, sparsity=0.0))
        elif isinstance(m, nn.Linear):
            _set_submodule(model, name, SwatLinear.from_dense(m, sparsity=0.0))
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, SwatLayer)]
    for name, m in layers:
        check_supported(m, name)
    for name, m in layers:
        m._hil_name = name
        m.gemm_path = path
    return model


def detach(model: nn.Module) -> nn.Module:
    """Back to the float path (the layers stay SWAT layers)."""
    from .layers import SwatLayer

    for m in model.modules():
        if isinstance(m, SwatLayer):
            m.gemm_path = None
    return model
