"""Lowering a SWAT layer's training step to the integer GEMMs the core computes.

The core computes ``C = D @ S`` on int8 operands (``docs/contract.md``). One training step of a
Conv2d/Linear layer is three such GEMMs (after im2col for a convolution):

=====================  ==========================  ==========================  ============
pass                   D                           S                           C
=====================  ==========================  ==========================  ============
``forward``            activations ``A [M, K]``    ``Wsᵀ [K, F]``              ``Y [M, F]``
``backward_input``     ``dY [M, F]``               ``Ws [F, K]``               ``dA [M, K]``
``backward_weight``    ``dYᵀ [F, M]``              ``As [M, K]``               ``dW [F, K]``
=====================  ==========================  ==========================  ============

Each operand is quantized on its own (:func:`quantize`: symmetric per tensor, ``sw.quant``);
``Ws`` and ``As`` are the Top-K of the *integers* with the hardware's tie rule
(:func:`int_topk`, ``sw.int_topk``: the kept set the threshold-select unit produces) at the
layer's density. :func:`quantize_layer` does this once per layer (:class:`LayerOperands`);
:func:`forward_job`, :func:`backward_input_job` and :func:`backward_weight_job` make one typed
:class:`GemmJob` each, so a training backend can lower one pass at a time and a report
(``sim.compare``) all three with :func:`layer_jobs`. A job carries what is needed to check and
use its result: the dequantization scale, the col2im (``fold``) of a convolution's input
gradient and, when the golden model's step was captured, the float reference.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hw.contract.codes import SelectMode
from hw.contract.cycles import SELECT_BANKS, SELECT_LANES, select_cycles

__all__ = ["PASSES", "SELECT_LANES", "GemmJob", "LayerOperands", "quantize", "int_topk",
           "topk_groups", "im2col", "im2col_source_index",
           "im2col_topk_blob", "PAD_INDEX", "fold", "quantize_layer", "forward_job",
           "backward_input_job", "backward_weight_job", "layer_jobs", "layer_selection"]

#: The three GEMMs of a layer, in the order a step runs them.
PASSES = ("forward", "backward_input", "backward_weight")


@dataclasses.dataclass(eq=False)
class GemmJob:
    """One GEMM ``C = D @ S`` of one layer and pass, with everything needed to use ``C``.

    ``d`` and ``s`` are the int8 operands the core gets; ``s_dense`` is ``S`` without Top-K
    (the same core on it gives the speedup baseline; natural zeros such as ReLU's remain);
    ``scale`` dequantizes ``C`` (``C * scale`` approximates the float result); ``fold`` is
    ``(module, input shape)`` when ``C`` is an im2col matrix to fold back (a convolution's input
    gradient). ``ref`` is the float result of the golden model's step and ``s_golden`` ``S``
    with the golden model's own (float Top-K) masks, when known. ``select_w_cycles`` /
    ``select_a_cycles``: threshold-select cycles to select and compress ``W`` and ``A`` of the
    layer (``hw.contract.cycles.select_cycles``, mode FULL); ``select_cycles``: those of the
    blob this GEMM reads (forward: FULL on ``W``; input gradient: HELD, pass 2 only, on ``W``
    transposed; weight gradient: FULL on ``A``, and for a convolution the ``by_index`` pass on
    the im2col stream that writes ``im2col(As)`` exactly, ``R·S`` times the tensor).
    """

    layer: str
    pass_name: str
    kind: str
    density: float
    d: np.ndarray
    s: np.ndarray
    s_dense: np.ndarray
    scale: float
    fold: tuple | None = None
    ref: np.ndarray | None = None
    s_golden: np.ndarray | None = None
    select_w_cycles: int = 0
    select_a_cycles: int = 0
    select_cycles: int = 0
    #: the quantized activation tensor whose Top-K ``As`` is and the convolution that im2col's
    #: it (weight gradient only): what the RTL threshold-select unit streams (``sim.select_plan``)
    select_src: np.ndarray | None = None
    select_module: object = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, K, N)``."""
        return self.d.shape[0], self.d.shape[1], self.s.shape[1]

    @property
    def label(self) -> str:
        return f"{self.layer}:{self.pass_name}"

    def dequantize(self, c) -> np.ndarray:
        """``C * scale`` as float64, folded back to the input's layout for ``fold`` jobs."""
        out = np.asarray(c, dtype=np.float64) * self.scale
        if self.fold is not None:
            module, in_shape = self.fold
            out = fold(out, module, in_shape)
        return out

    def rel_err(self, c) -> float:
        """``‖dequantize(c) − ref‖ / ‖ref‖`` (needs ``ref``)."""
        out = self.dequantize(c)
        ref = np.asarray(self.ref, dtype=np.float64).reshape(out.shape)
        den = float(np.linalg.norm(ref))
        return float(np.linalg.norm(out - ref) / den) if den else float(np.linalg.norm(out))


@dataclasses.dataclass(eq=False)
class LayerOperands:
    """The quantized operands of one layer's step (:func:`quantize_layer`).

    ``qa`` (activations as given), ``qw`` (``[F, C·R·S]``), ``qdy`` (``None`` when no output
    gradient was given), their scales, the Top-K'd ``qws`` and ``qas``, and the GEMM layouts
    ``a_col`` / ``as_col`` (im2col for a convolution) and ``qdy_col`` (``[M, F]``).
    """

    name: str
    module: object
    density: float
    conv: bool
    a_shape: tuple
    qa: np.ndarray
    sa: float
    qw: np.ndarray
    sw: float
    qws: np.ndarray
    qas: np.ndarray
    a_col: np.ndarray
    as_col: np.ndarray
    qdy: np.ndarray | None = None
    sdy: float = 1.0
    qdy_col: np.ndarray | None = None
    select_w_cycles: int = 0
    select_w_held_cycles: int = 0
    select_a_cycles: int = 0


def quantize(x) -> tuple[np.ndarray, float]:
    """``(q int8, scale)`` of ``x`` by ``sw.quant.quantize`` (symmetric, per tensor)."""
    from sw.quant import quantize as _quantize

    q, scale = _quantize(np.asarray(x, dtype=np.float64))
    return q.astype(np.int8), float(scale)


def int_topk(q: np.ndarray, density: float, groups: int = 1) -> np.ndarray:
    """Top-K of int8 ``q`` per group (row-major stream order) with the hardware's tie rule."""
    from sw import int_topk as _it

    if density >= 1.0:
        return q
    flat = q.reshape(groups, -1)
    out = np.zeros_like(flat)
    for g in range(groups):
        keep = _it.select_mask(flat[g], _it.k_from_density(density, flat.shape[1]))
        out[g] = np.where(keep, flat[g], 0)
    return out.reshape(q.shape)


def topk_groups(dims: str, shape) -> int:
    """Number of selection groups of ``sw.topk``'s ``dims`` for a tensor of ``shape``."""
    if dims == "chw":
        return shape[0]
    if dims == "hw":
        return shape[0] * shape[1] if len(shape) > 2 else shape[0]
    return 1  # "nchw", "random" (the random null hypothesis is lowered as magnitude Top-K)


def im2col(x, module) -> np.ndarray:
    """``[B, C, H, W]`` -> ``[B*L, C*R*S]`` (rows: output pixels, columns: patch elements).

    Integer input stays integer (a strided view copied once, no float round trip: at ResNet-50
    batch 32 a float64 im2col of one layer is half a gigabyte); float input goes through
    ``torch.nn.functional.unfold``. Both give the same layout."""
    if np.asarray(x).dtype.kind in "iu":
        return _im2col_int(np.asarray(x), module)
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    cols = F.unfold(t, module.kernel_size, dilation=module.dilation, padding=module.padding,
                    stride=module.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy()


#: source index of an im2col padding element (never at or before a cut: it is a zero anyway)
PAD_INDEX = 0xFFFFFFFF


def im2col_source_index(a_shape, module) -> np.ndarray:
    """Source index of every element of ``im2col(A)`` (same shape): its position in the
    row-major order of ``A`` (``a_shape``), :data:`PAD_INDEX` for padding. This is the side band
    the threshold-select unit needs to write ``im2col(int_topk(A))`` exactly from the im2col
    stream (``by_index``, ``sw.int_topk.compress_indexed``)."""
    n = int(np.prod(a_shape))
    # integer positions take im2col's strided path (exact, no float unfold through torch)
    positions = np.arange(1, n + 1, dtype=np.int64).reshape(a_shape)
    idx = im2col(positions, module) - 1  # padding: 0 - 1
    idx[idx < 0] = PAD_INDEX
    return idx


def im2col_topk_blob(qa: np.ndarray, module, density: float) -> np.ndarray:
    """Compressed-S words of ``im2col(int_topk(qa, density))`` -- the weight-gradient GEMM's
    ``S`` of a convolution, the blob an indexed select pass must write."""
    from sw import int_topk as _it

    return _it.encode_csc_words(im2col(int_topk(qa, density), module).astype(np.int8))


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _im2col_int(x: np.ndarray, module) -> np.ndarray:
    """:func:`im2col` of an integer array with numpy strides (same row and column order as
    ``unfold``: rows ``(b, oh, ow)``, columns ``(c, r, s)``)."""
    (kh, kw), (dh, dw) = _pair(module.kernel_size), _pair(module.dilation)
    (ph, pw), (sh, sw_) = _pair(module.padding), _pair(module.stride)
    b, c = x.shape[:2]
    if (kh, kw) == (1, 1) and (ph, pw) == (0, 0):
        v = x[:, :, ::sh, ::sw_]
        return np.ascontiguousarray(v.transpose(0, 2, 3, 1)).reshape(-1, c)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(
        xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw_, ::dh, ::dw]  # [B, C, OH, OW, R, S]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(
        b * win.shape[2] * win.shape[3], -1)


def fold(cols, module, in_shape) -> np.ndarray:
    """Inverse layout of :func:`im2col` with overlapping patches summed (col2im)."""
    import torch
    import torch.nn.functional as F

    b = in_shape[0]
    t = torch.as_tensor(cols).reshape(b, -1, cols.shape[1]).transpose(1, 2)
    return F.fold(t, in_shape[2:], module.kernel_size, dilation=module.dilation,
                  padding=module.padding, stride=module.stride).numpy()


def _np64(x):
    if x is None:
        return None
    if hasattr(x, "detach"):
        return x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _is_conv(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Conv2d)


def quantize_layer(name: str, module, a, w, dy=None, *, density: float = 1.0,
                   dims: str = "nchw", weight_mask=None) -> LayerOperands:
    """Quantize one layer's ``A``, ``W`` (and ``dY``) and apply the integer Top-K.

    ``a``, ``w``, ``dy`` are float tensors or arrays (``dy`` may be ``None`` to lower the
    forward pass only); ``density`` and ``dims`` are the layer's (:func:`layer_selection`).
    ``weight_mask`` (shape of ``w``) replaces the integer Top-K of the weights, for selections
    the threshold-select unit does not make (structured, channel or filter, sparsity).
    """
    conv = _is_conv(module)
    if conv and module.groups != 1:
        raise NotImplementedError(f"{name}: grouped convolutions are not lowered")
    a, w, dy = _np64(a), _np64(w), _np64(dy)
    f = w.shape[0]
    qa, sa = quantize(a)
    qw, sw_ = quantize(w.reshape(f, -1))
    if weight_mask is None:
        qws = int_topk(qw, density, topk_groups(dims, w.shape) if dims != "nchw" else 1)
    else:
        qws = np.where(_np64(weight_mask).reshape(f, -1) != 0, qw, 0).astype(np.int8)
    qas = int_topk(qa, density, topk_groups(dims, a.shape))
    if conv:
        a_col = im2col(qa, module).astype(np.int8)
        as_col = im2col(qas, module).astype(np.int8)
    else:
        a_col, as_col = qa.reshape(qa.shape[0], -1), qas.reshape(qas.shape[0], -1)
    ops = LayerOperands(
        name=name, module=module, density=density, conv=conv, a_shape=tuple(a.shape),
        qa=qa, sa=sa, qw=qw, sw=sw_, qws=qws, qas=qas,
        a_col=np.ascontiguousarray(a_col), as_col=np.ascontiguousarray(as_col),
        select_w_cycles=int(select_cycles(qw.shape[1], qw.shape[0], SELECT_LANES,
                                          nnz=int((qws != 0).sum()), banks=SELECT_BANKS)),
        select_w_held_cycles=int(select_cycles(qw.shape[0], qw.shape[1], SELECT_LANES,
                                               mode=SelectMode.HELD,
                                               nnz=int((qws != 0).sum()), banks=SELECT_BANKS)),
        select_a_cycles=_select_a_cycles(a, qas, as_col if conv else None),
    )
    if dy is not None:
        ops.qdy, ops.sdy = quantize(dy)
        q = ops.qdy
        ops.qdy_col = np.ascontiguousarray(q.transpose(0, 2, 3, 1).reshape(-1, f) if conv
                                           else q.reshape(-1, f))
    return ops


def _select_a_cycles(a, qas, as_col=None) -> int:
    """Select cycles of the weight-gradient blob: FULL on ``A`` (as a ``[size / B, B]``
    matrix) and, for a convolution (``as_col``), GIVEN ``by_index`` on the im2col stream
    (``docs/threshold-select.md``: the exact ``im2col(As)``)."""
    cycles = select_cycles(a[0].size, a.shape[0], SELECT_LANES, nnz=int((qas != 0).sum()),
                           banks=SELECT_BANKS)
    if as_col is not None:
        cycles += select_cycles(*as_col.shape, SELECT_LANES, mode=SelectMode.GIVEN,
                                nnz=int((as_col != 0).sum()), banks=SELECT_BANKS)
    return int(cycles)


def _job(ops: LayerOperands, pass_name, d, s, s_dense, scale, **kw) -> GemmJob:
    own = {"forward": ops.select_w_cycles, "backward_input": ops.select_w_held_cycles,
           "backward_weight": ops.select_a_cycles}[pass_name]
    return GemmJob(layer=ops.name, pass_name=pass_name, kind="conv" if ops.conv else "linear",
                   density=ops.density, d=np.ascontiguousarray(d), s=np.ascontiguousarray(s),
                   s_dense=np.ascontiguousarray(s_dense), scale=scale,
                   select_w_cycles=ops.select_w_cycles, select_a_cycles=ops.select_a_cycles,
                   select_cycles=own, **kw)


def _need_dy(ops: LayerOperands, pass_name: str) -> None:
    if ops.qdy_col is None:
        raise ValueError(f"{ops.name}: {pass_name} needs the output gradient dY")


def forward_job(ops: LayerOperands, *, dense_weights: bool = False, **kw) -> GemmJob:
    """``Y = A @ Wsᵀ`` (``kw``: ``ref``, ``s_golden``); ``dense_weights``: ``Y = A @ Wᵀ`` (the
    forward pass of SAW, whose sparsity is in the backward passes only)."""
    ws = ops.qw if dense_weights else ops.qws
    return _job(ops, "forward", ops.a_col, ws.T, ops.qw.T, ops.sa * ops.sw, **kw)


def backward_input_job(ops: LayerOperands, **kw) -> GemmJob:
    """``dA = dY @ Ws`` (folded back to the input's layout for a convolution)."""
    _need_dy(ops, "backward_input")
    fold_ = (ops.module, ops.a_shape) if ops.conv else None
    return _job(ops, "backward_input", ops.qdy_col, ops.qws, ops.qw, ops.sdy * ops.sw,
                fold=fold_, **kw)


def backward_weight_job(ops: LayerOperands, **kw) -> GemmJob:
    """``dW = dYᵀ @ As``."""
    _need_dy(ops, "backward_weight")
    return _job(ops, "backward_weight", ops.qdy_col.T, ops.as_col, ops.a_col, ops.sdy * ops.sa,
                select_src=ops.qa, select_module=ops.module if ops.conv else None, **kw)


def layer_jobs(name: str, module, rec: dict, density: float, dims: str, *,
               method: str = "swat", structured: bool = False) -> list[GemmJob]:
    """The GEMMs of one layer from a captured step (``sw.train.capture_step`` record):
    forward, input gradient (not for a layer whose input needs no gradient) and weight
    gradient, with the float references and the golden model's masks (when the record has
    them: a streamed record has neither, and ``ref`` stays ``None``).

    ``method="saw"`` keeps the forward weights dense; ``structured`` takes the weight mask of
    the golden model (``rec["weight_mask"]``) instead of the integer Top-K."""
    wmask = rec.get("weight_mask") if structured and density < 1 else None
    ops = quantize_layer(name, module, rec["input"], rec["weight"], rec["grad_output"],
                         density=density, dims=dims, weight_mask=wmask)
    f = ops.qw.shape[0]
    # the golden model's own (float Top-K) masks on the same integers: isolates quantization
    wm, am = rec.get("weight_mask"), rec.get("activation_mask")
    qws_g = ops.qws if wm is None else np.where(_np64(wm).reshape(f, -1) != 0, ops.qw, 0)
    qas_g = ops.qas if am is None else np.where(_np64(am) != 0, ops.qa, 0)
    qws_g = qws_g.astype(np.int8)
    if am is None:  # no golden mask: the integer Top-K's own
        as_col_g = ops.as_col
    elif ops.conv:
        as_col_g = im2col(qas_g.astype(np.int8), module).astype(np.int8)
    else:
        as_col_g = qas_g.reshape(qas_g.shape[0], -1).astype(np.int8)
    y_ref = _np64(rec.get("output"))  # no references when the step was streamed
    if y_ref is not None and module.bias is not None:
        bshape = (1, -1, 1, 1) if ops.conv else (1, -1)
        y_ref = y_ref - _np64(module.bias).reshape(bshape)
    if y_ref is not None:
        y_ref = y_ref.transpose(0, 2, 3, 1).reshape(-1, f) if ops.conv else y_ref.reshape(-1, f)
    fwd_golden = ops.qw if method == "saw" else qws_g
    jobs = [forward_job(ops, ref=y_ref, s_golden=np.ascontiguousarray(fwd_golden.T),
                        dense_weights=method == "saw")]
    gi = rec.get("grad_input")
    if gi is not None:
        ref = None if "output" not in rec else _np64(gi)  # streamed: no references
        jobs.append(backward_input_job(ops, ref=ref, s_golden=qws_g))
    gw = rec.get("grad_weight")
    jobs.append(backward_weight_job(ops, ref=None if gw is None else _np64(gw).reshape(f, -1),
                                    s_golden=as_col_g))
    return jobs


def layer_selection(model) -> dict[str, tuple[float, str]]:
    """``{qualified name: (density, dims)}`` of the SWAT layers of ``model`` (density 1 for a
    dense one); layers not listed are lowered dense."""
    from sw.layers import SwatLayer

    out = {}
    for name, m in model.named_modules():
        if isinstance(m, SwatLayer):
            dense = getattr(m, "method", "swat") == "dense"
            out[name] = (1.0 if dense else float(m.density), getattr(m, "_eff_dims", "nchw"))
    return out
