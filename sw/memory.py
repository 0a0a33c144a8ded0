"""Measured memory of the tensors a training forward saves for the backward pass.

:func:`measure` runs one forward under ``torch.autograd.graph.saved_tensors_hooks`` and records
every tensor autograd saves: its bytes, which module saved it (the innermost module whose
forward was running) and its role:

``"weight"``
    a model parameter saved as-is (a dense layer keeps its weight for the input gradient), or
    the compact sparse weights a SWAT layer saves (values + bit mask / indices).
``"activation"``
    everything else: layer inputs (dense, or the compact Top-K activations of a SWAT layer),
    BatchNorm inputs, ReLU outputs, pooling indices, ...

Tensors sharing one storage are counted once (an in-place ReLU's output and the next
convolution's input are the same memory); the storage's full size is counted. This is the
memory the backward pass needs beyond the parameters themselves, i.e. what SWAT's "Act↓"
shrinks (paper §4.2, Appendix A.7).

Two activation totals are reported:

``activation_bytes``
    what PyTorch really keeps. A ReLU saves its dense output for its own backward; in a dense
    network that tensor is also the next layer's input (one storage), but once a SWAT layer
    saves a compact Top-K copy of its input, the ReLU's dense output is still held. With stock
    ``nn.ReLU`` / ``F.relu`` this cancels SWAT's saving almost entirely.
``activation_bytes_relu_mask``
    the same, except that a ReLU output saved *only* by the ReLU itself is charged one bit per
    element (its backward needs only the sign mask ``y > 0``; a memory-lean ReLU stores exactly
    that). This is the accounting behind the paper's "only Top-K% activations are saved" and is
    what a SWAT implementation with a bit-mask ReLU keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["MemoryReport", "measure", "activation_saving", "tensor_bytes"]


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


@dataclass
class MemoryReport:
    activation_bytes: int = 0
    weight_bytes: int = 0  # compact SWAT weights + parameters saved as-is
    parameter_bytes: int = 0  # the part of weight_bytes that is parameter storage itself
    activation_bytes_relu_mask: int = 0
    tensors: int = 0
    per_module: dict = field(default_factory=dict)  # name -> activation bytes

    @property
    def total_bytes(self) -> int:
        return self.activation_bytes + self.weight_bytes

    def as_dict(self) -> dict:
        return {
            "activation_bytes": self.activation_bytes,
            "weight_bytes": self.weight_bytes,
            "parameter_bytes": self.parameter_bytes,
            "activation_bytes_relu_mask": self.activation_bytes_relu_mask,
            "total_bytes": self.total_bytes,
            "tensors": self.tensors,
            "per_module": dict(self.per_module),
        }


def _storage_key(t: torch.Tensor):
    try:
        st = t.untyped_storage()
        return (st.data_ptr(), st.nbytes()), st.nbytes()
    except Exception:  # sparse / wrapper tensors: no single storage
        return ("id", id(t)), tensor_bytes(t)


def measure(model: nn.Module, *inputs, backward: bool = True, loss_fn=None) -> MemoryReport:
    """Bytes saved for backward by one training forward of ``model(*inputs)``.

    The model is run in its current mode (call ``model.train()`` first for training). With
    ``backward=True`` the graph is then consumed by ``loss.backward()`` (``loss_fn(output)``,
    default ``output.float().sum()``) so that SWAT layers see a complete step; gradients
    accumulate into ``.grad`` as in training.
    """
    params = {}
    for p in model.parameters():
        try:
            params[p.untyped_storage().data_ptr()] = p
        except Exception:  # pragma: no cover
            pass
    stack: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    rep = MemoryReport()
    seen: dict = {}  # storage key -> [nbytes, numel, saves, relu_output]

    def pre(mod, args):
        stack.append(names.get(mod, "?"))

    def post(mod, args, out):
        if stack:
            stack.pop()

    def pack(t):
        key, nbytes = _storage_key(t)
        if key in seen:
            seen[key][2] += 1
            return t
        gf = type(t.grad_fn).__name__ if t.grad_fn is not None else ""
        relu = gf.startswith(("ReluBackward", "ThresholdBackward"))
        seen[key] = [nbytes, t.numel(), 1, relu, False]
        rep.tensors += 1
        owner = stack[-1] if stack else ""
        role = getattr(t, "_swat_role", None)
        is_param = key[0] in params if isinstance(key[0], int) else False
        if is_param:
            rep.weight_bytes += nbytes
            rep.parameter_bytes += nbytes
        elif role == "weight":
            rep.weight_bytes += nbytes
        else:
            seen[key][4] = True
            rep.activation_bytes += nbytes
            rep.per_module[owner] = rep.per_module.get(owner, 0) + nbytes
        return t

    def unpack(t):
        return t

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            out = model(*inputs)
    finally:
        for h in handles:
            h.remove()
    for nbytes, numel, saves, relu, is_act in seen.values():
        if is_act:
            rep.activation_bytes_relu_mask += (numel + 7) // 8 if relu and saves == 1 else nbytes
    if backward:
        loss = loss_fn(out) if loss_fn is not None else out.float().sum()
        loss.backward()
    return rep


def activation_saving(
    dense: MemoryReport, sparse: MemoryReport, *, relu_mask: bool = True
) -> float:
    """Fraction of saved-activation bytes SWAT removes: ``1 - sparse / dense``.

    ``relu_mask=True`` compares ``activation_bytes_relu_mask`` (see the module docstring),
    ``False`` the raw ``activation_bytes``.
    """
    key = "activation_bytes_relu_mask" if relu_mask else "activation_bytes"
    d, s = getattr(dense, key), getattr(sparse, key)
    return 0.0 if d == 0 else 1.0 - s / d
