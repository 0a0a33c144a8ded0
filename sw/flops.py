"""Analytical FLOP model of SWAT training (paper Appendix A.3), in multiply-accumulates (MACs).

What counts: only ``nn.Conv2d`` and ``nn.Linear`` layers (SWAT twins included). BatchNorm,
activations, pooling, additions and the Top-K selection itself are **not** counted (the paper
omits them too: BN is < 0.8 % of the computation, Appendix A.8; Top-K overhead, A.3/A.4).
Shapes are taken with forward hooks while running the model once on zeros of ``input_shape``
(in eval mode under ``torch.no_grad``; the training flag is restored afterwards).

Per conv layer (input ``[N, C, X, Y]``, weight ``[F, C/g, R, S]``, output ``[N, F, H, W]``,
``g`` groups), ``convention="paper"`` (default) uses the paper's equations literally:

* forward (eq. 4): ``F * (C/g * R * S) * N * H * W``
* backward_input (eq. 5): ``C * (F/g * R * S) * N * X * Y``
* backward_weight (eq. 6): ``(N * X * Y) * F * (C/g) * R * S``

Equations 5 and 6 use the *input* spatial size ``X * Y``; for a strided convolution this
overcounts the MACs actually needed (stride 2 -> 4x). ``convention="gemm"`` counts the MACs of
the three im2col GEMMs of docs/core-interface.md instead (all three equal the forward count,
``N*H*W * F * C/g*R*S``), which is what the hardware executes. For stride 1 "same" convolutions
the two conventions agree.

Linear (input ``[N, X]``, weight ``[Y, X]``): forward = backward_input = backward_weight =
``N * X * Y`` (A.3.2: "the backward pass is twice the forward"); leading dims are folded into N.

Sparse counts (A.3): ``forward_sparse = d_w * forward``, ``backward_input_sparse = d_w *
backward_input``, ``backward_weight_sparse = d_a * backward_weight`` with the layer's weight and
activation densities (equal in SWAT). ``densities`` may be ``None`` (read them from the model:
SWAT layers use their ``density`` and ``method``, plain layers are dense), a float (every layer)
or a ``{name: density}`` dict (missing layers dense). With a SWAT layer's method: ``"saw"``
-> forward dense; ``"meprop"`` -> both backward passes scaled by the output-gradient density,
forward dense; ``"dense"`` -> all dense. Default activation sparsity of ReLU networks is ignored
(the paper does so for the forward; it assumes 50 % for *other* sparse-learning methods only).

Activation memory (``totals``): ``act_saved_elements`` counts the input elements of every
parametrized leaf module (Conv2d, Linear, BatchNorm, ...): the tensors a backward pass must keep.
Activation functions and pooling are not counted (a ReLU's saved output is the next layer's
input, or a 1-bit mask). ``act_memory_saving`` is the fraction of those elements SWAT drops,
``sum (1 - d_l) * numel(input_l)`` over the sparse layers, the paper's "Act↓" column.
:mod:`sw.memory` measures the real saved bytes instead.

The shapes are taken from a batch-1 forward and scaled by ``input_shape[0]`` (every counted
quantity is linear in the batch), so counting a large batch costs no more than batch 1.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .layers import SwatLayer, dense_forward

__all__ = ["LayerFlops", "FlopReport", "count", "totals"]


@dataclass
class LayerFlops:
    name: str
    kind: str
    input_shape: tuple
    output_shape: tuple
    weight_shape: tuple
    density: float  # weight density
    act_density: float  # activation density (backward weight pass)
    forward: int
    backward_input: int
    backward_weight: int
    forward_sparse: float
    backward_input_sparse: float
    backward_weight_sparse: float
    input_elements: int
    params: int

    @property
    def training(self) -> int:
        return self.forward + self.backward_input + self.backward_weight

    @property
    def training_sparse(self) -> float:
        return self.forward_sparse + self.backward_input_sparse + self.backward_weight_sparse

    def __getitem__(self, key):  # records usable as dicts, too
        return getattr(self, key)

    def keys(self):
        return asdict(self).keys()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["training"] = self.training
        d["training_sparse"] = self.training_sparse
        return d


class FlopReport(list):
    """A list of :class:`LayerFlops` with ``.totals`` (see :func:`totals`)."""

    totals: dict


def _is_saver(m: nn.Module) -> bool:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        return True
    # BN and other parametrized leaves
    return len(list(m.children())) == 0 and any(True for _ in m.parameters(recurse=False))


def _densities_for(name, m, densities):
    """(weight density, activation density, method) of one layer."""
    if densities is None:
        if isinstance(m, SwatLayer):
            return m.density, m.density, m.method
        return 1.0, 1.0, "dense"
    if isinstance(densities, (int, float)):
        d = float(densities)
    else:
        d = float(densities.get(name, 1.0))
    if not 0.0 <= d <= 1.0:
        raise ValueError(f"density of layer {name!r} must lie in [0, 1], got {d}")
    return d, d, "swat"


def _probe_shapes(model: nn.Module, shape: tuple, hook) -> None:
    """Run ``model`` once at batch 1 with ``hook`` on every module: on a meta-device copy when
    possible (no arithmetic at all), else on the real model; SWAT layers run dense."""
    p = next(model.parameters(), None)
    dt = p.dtype if p is not None and p.is_floating_point() else torch.float32
    x_shape = (1, *shape[1:])
    try:
        memo = {}
        for t in model.parameters():
            memo[id(t)] = nn.Parameter(
                torch.empty(t.shape, dtype=t.dtype, device="meta"), t.requires_grad
            )
        for t in model.buffers():
            memo[id(t)] = torch.empty(t.shape, dtype=t.dtype, device="meta")
        for m in model.modules():
            fm = getattr(m, "_frozen_mask", None)
            if isinstance(fm, torch.Tensor):
                memo[id(fm)] = None
        probe = copy.deepcopy(model, memo)
        dev = "meta"
    except Exception:  # pragma: no cover - models that cannot be copied
        probe, dev = model, (p.device if p is not None else "cpu")
    names = {m: n for n, m in probe.named_modules()}

    def named_hook(mod, inp, out):
        hook(names[mod], mod, inp, out)

    handles = [m.register_forward_hook(named_hook) for m in probe.modules()]
    was_training = probe.training
    try:
        probe.eval()
        with torch.no_grad(), dense_forward():
            try:
                probe(torch.zeros(x_shape, device=dev, dtype=dt))
            except (NotImplementedError, RuntimeError):
                if dev != "meta":
                    raise
                for h in handles:
                    h.remove()
                probe = model
                names.clear()
                names.update({m: n for n, m in probe.named_modules()})
                handles[:] = [m.register_forward_hook(named_hook) for m in probe.modules()]
                dev = p.device if p is not None else "cpu"
                probe.eval()
                probe(torch.zeros(x_shape, device=dev, dtype=dt))
    finally:
        probe.train(was_training)
        model.train(was_training)
        for h in handles:
            h.remove()


def count(
    model: nn.Module,
    input_shape,
    densities=None,
    *,
    convention: str = "paper",
) -> FlopReport:
    """Per-layer MAC records (dense and sparse) of one training iteration; see module docs.

    ``input_shape`` is the full input shape including the batch, e.g. ``(128, 3, 32, 32)``.
    Returns a :class:`FlopReport` (a list of :class:`LayerFlops`) with ``.totals``.
    """
    if convention not in ("paper", "gemm"):
        raise ValueError(f"unknown convention {convention!r}; expected 'paper' or 'gemm'")
    shape = tuple(int(s) for s in input_shape)
    if any(s <= 0 for s in shape):
        raise ValueError(f"input_shape must be positive, got {input_shape!r}")
    if densities is not None and not isinstance(densities, (int, float, dict)):
        raise ValueError("densities must be None, a number or a {name: density} dict")
    seen: dict[str, tuple] = {}
    saved_elems = [0]

    def hook(n, mod, inp, out):
        x = inp[0]
        if _is_saver(mod):
            saved_elems[0] += x.numel()
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            if n in seen:
                raise ValueError(f"layer {n!r} is called more than once; not supported")
            seen[n] = (tuple(x.shape), tuple(out.shape))

    _probe_shapes(model, shape, hook)
    if isinstance(densities, dict):
        unknown = sorted(set(densities) - set(seen))
        if unknown:
            raise ValueError(f"densities name layers that are not Conv2d/Linear: {unknown}")

    report = FlopReport()
    batch = shape[0]
    for n, m in model.named_modules():
        if n not in seen or not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        ishape, oshape = ((batch, *s[1:]) for s in seen[n])
        w = tuple(m.weight.shape)
        if isinstance(m, nn.Conv2d):
            nb, c, x, y = ishape
            _, f, h, wd = oshape
            g = m.groups
            r, s = m.kernel_size
            fwd = f * (c // g) * r * s * nb * h * wd
            if convention == "paper":
                bi = c * (f // g) * r * s * nb * x * y
                bw = nb * x * y * f * (c // g) * r * s
            else:
                bi = bw = fwd
            kind = "conv"
        else:
            rows = math.prod(ishape[:-1])
            fwd = bi = bw = rows * m.in_features * m.out_features
            kind = "linear"
        dw, da, method = _densities_for(n, m, densities)
        if method == "dense":
            fs, bis, bws = fwd, bi, bw
        elif method == "saw":
            fs, bis, bws = fwd, dw * bi, da * bw
        elif method == "meprop":
            fs, bis, bws = fwd, dw * bi, dw * bw
        else:
            fs, bis, bws = dw * fwd, dw * bi, da * bw
        act_d = 1.0 if method in ("dense", "meprop") else da
        report.append(
            LayerFlops(
                name=n, kind=kind, input_shape=ishape, output_shape=oshape, weight_shape=w,
                density=dw if method != "dense" else 1.0, act_density=act_d,
                forward=int(fwd), backward_input=int(bi), backward_weight=int(bw),
                forward_sparse=float(fs), backward_input_sparse=float(bis),
                backward_weight_sparse=float(bws), input_elements=math.prod(ishape),
                params=math.prod(w),
            )  # fmt: skip
        )
    report.totals = totals(report, act_saved_elements=saved_elems[0] * batch)
    return report


def totals(records, *, act_saved_elements: int | None = None) -> dict:
    """Totals of a list of records: training and inference MACs, reductions, densities."""
    f = sum(r.forward for r in records)
    bi = sum(r.backward_input for r in records)
    bw = sum(r.backward_weight for r in records)
    fs = sum(r.forward_sparse for r in records)
    bis = sum(r.backward_input_sparse for r in records)
    bws = sum(r.backward_weight_sparse for r in records)
    params = sum(r.params for r in records)
    acts = sum(r.input_elements for r in records)
    kept_w = sum(r.density * r.params for r in records)
    dropped_a = sum((1 - r.act_density) * r.input_elements for r in records)
    train, train_s = f + bi + bw, fs + bis + bws
    out = {
        "forward": f,
        "backward_input": bi,
        "backward_weight": bw,
        "forward_sparse": fs,
        "backward_input_sparse": bis,
        "backward_weight_sparse": bws,
        "training": train,
        "training_sparse": train_s,
        "training_reduction": 1 - train_s / train if train else 0.0,
        "inference": f,
        "inference_sparse": fs,
        "inference_reduction": 1 - fs / f if f else 0.0,
        "params": params,
        "weight_sparsity": 1 - kept_w / params if params else 0.0,
        "activation_sparsity": dropped_a / acts if acts else 0.0,
        "flop_weighted_activation_sparsity": (
            sum((1 - r.act_density) * r.backward_weight for r in records) / bw if bw else 0.0
        ),
        "layer_input_elements": acts,
    }
    if act_saved_elements is not None:
        out["act_saved_elements"] = act_saved_elements
        out["act_memory_saving"] = dropped_a / act_saved_elements if act_saved_elements else 0.0
    return out
