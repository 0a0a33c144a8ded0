"""One training step's tensors per layer: what the hardware comparison streams through the core
(``sim.compare``) and what the tests check the three GEMM passes against."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..topk import topk_mask
from .swat_state import swat_layers

__all__ = ["capture_step"]


def capture_step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                 optimizer: torch.optim.Optimizer | None = None,
                 loss_fn: Callable | None = None,
                 on_layer: Callable[[str, dict], None] | None = None
                 ) -> dict[str, dict[str, torch.Tensor]]:
    """Run one training step (forward, backward and, if ``optimizer`` is given, the update) and
    return per Conv2d/Linear layer (qualified name) the tensors of its three passes:

    ``input`` (A, dense), ``output`` (Y), ``grad_output`` (dY), ``weight`` (W, before the
    update), ``grad_weight`` (dW), ``grad_input`` (dA, ``None`` for the first layer) and, for
    SWAT layers, ``weight_mask`` / ``sparse_weight`` (Ws, the mask the forward used) and
    ``activation_mask`` / ``sparse_input`` (As, exact Top-K of A at the layer's density).

    ``on_layer(name, record)``: stream instead of keeping. Each layer's record (``weight``,
    ``input``, ``grad_output``, ``grad_input``; no ``output``, ``grad_weight`` or golden masks)
    is handed over as soon as the backward pass has computed the layer's gradients, and then
    dropped: ``input`` is the tensor autograd keeps anyway, not a copy. The step then holds one
    layer's tensors beside autograd's own, not every layer's (ResNet-50 at batch 32: ~25 GB
    of copies otherwise); the returned dict has only ``"__loss__"``.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    records: dict[str, dict[str, Any]] = {}
    handles = []
    swat = swat_layers(model)
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d | nn.Linear):
            continue
        rec: dict[str, Any] = {"weight": m.weight.detach().clone()}
        if name in swat and swat[name].method != "dense":
            layer = swat[name]
            wm = layer.weight_mask().clone()
            rec["weight_mask"] = wm
            rec["sparse_weight"] = torch.where(wm, rec["weight"], torch.zeros(()))
        records[name] = rec

        def fwd_hook(mod, args, output, rec=rec, name=name):
            a = args[0].detach()
            if on_layer is not None:
                rec["input"], rec["_version"] = a, args[0]._version
                return
            rec["input"] = a.clone()
            rec["output"] = output.detach().clone()
            if name in swat and swat[name].method != "dense":
                layer = swat[name]
                am = topk_mask(a, layer.density, layer._eff_dims)
                rec["activation_mask"] = am
                rec["sparse_input"] = torch.where(am, a, torch.zeros((), dtype=a.dtype))

        def bwd_hook(mod, grad_input, grad_output, rec=rec, name=name):
            gi = grad_input[0] if grad_input else None
            if on_layer is not None:  # used right away: no copies
                rec["grad_output"], rec["grad_input"] = grad_output[0].detach(), gi
                _emit(name, rec)
                return
            rec["grad_output"] = grad_output[0].detach().clone()
            rec["grad_input"] = None if gi is None else gi.detach().clone()

        handles.append(m.register_forward_hook(fwd_hook))
        handles.append(m.register_full_backward_hook(bwd_hook))

    def _emit(name, rec):
        if "input" not in rec:  # the module did not run in this step
            return
        if rec.pop("_version") != rec["input"]._version:
            raise RuntimeError(f"{name}: its input was modified in place after the forward "
                               "pass; capture_step cannot stream it")
        if rec["grad_input"] is not None:
            rec["grad_input"] = rec["grad_input"].detach()
        on_layer(name, rec)
        rec.clear()  # the hooks' closures hold this dict: empty it to free the tensors

    was = model.training
    model.train()
    try:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        else:
            for p in model.parameters():
                p.grad = None
        inputs = inputs.detach().requires_grad_(False)
        loss = loss_fn(model(inputs), targets)
        with warnings.catch_warnings():  # the first layer's input needs no gradient
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        for name, m in model.named_modules():
            if name in records and on_layer is None:
                records[name]["grad_weight"] = m.weight.grad.detach().clone()
        if optimizer is not None:
            optimizer.step()
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    if on_layer is not None:
        return {"__loss__": {"loss": loss.detach()}}
    for rec in records.values():
        rec.setdefault("grad_input", None)
    records["__loss__"] = {"loss": loss.detach()}
    return records
