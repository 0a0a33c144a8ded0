"""How much error each int8 ``dY`` quantization puts into the gradients of the digits CNN.

For one training batch of a model (initial weights, or after ``--train-epochs`` of float SWAT),
the two gradient GEMMs of every layer are computed by the integer path (``sw.hil``) with each
``--grad-quant`` and, as the reference, with ``dY`` *not* quantized (float64 ``D``, everything
else identical: the same int8 ``W``, ``A`` and integer Top-K masks), so the error is that of the
``dY`` quantization alone. Printed per layer and pass: relative error ``‖g - g_ref‖ / ‖g_ref‖``
and, per layer, the fraction of the non-zero ``dY`` elements that per-tensor int8 rounds to
zero.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

NAME = "hil_grad"
HELP = "relative error of the int8 dY quantizations in the gradient GEMMs (digits CNN)"


def add_arguments(p) -> None:
    p.add_argument("--grad-quant", default="tensor,row,stochastic,split,row-split")
    p.add_argument("--train-epochs", default="0,10",
                   help="comma-separated: measure at initial weights (0) and after N epochs of "
                        "float SWAT-U 90%%")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/hil")


def _grads(model, x, y, mode: str):
    """Weight and input gradients of every SWAT layer with the integer path in ``mode``."""
    import torch
    from torch import nn

    from sw import hil
    from sw.backend import IntrefBackend

    grads: dict[str, dict] = {}
    path = hil.IntegerPath(IntrefBackend(), grad_quant="tensor" if mode == "exact" else mode)
    if mode == "exact":  # dY unquantized: float64 D, the same integer S
        class _Float(IntrefBackend):
            def run(self, jobs):
                from sw.backend import GemmOut

                out = []
                for j in jobs:
                    c = torch.from_numpy(j.d).double() @ torch.from_numpy(j.s).double()
                    out.append(GemmOut(c.numpy(), 0))
                return out

        path.backend = _Float()
        orig = hil.quantize_d
        hil.quantize_d = lambda g, m, gen=None: [(g.double(), torch.ones(g.shape[0],
                                                                          dtype=torch.float64))]
    try:
        hil.attach(model, path)
        outs, zeros = {}, {}

        def hook(mod, gin, gout, name):
            outs[name] = gin[0].detach().clone() if gin[0] is not None else None
            g = gout[0].detach()
            nz = g != 0
            lost = nz & (g.abs() < g.abs().max() / 254)  # |dY| < scale / 2: rounds to 0
            zeros[name] = float(lost.sum() / nz.sum().clamp(min=1))

        hs = [m.register_full_backward_hook(lambda mod, gi, go, n=n: hook(mod, gi, go, n))
              for n, m in model.named_modules() if getattr(m, "gemm_path", None) is not None]
        model.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # the first layer's input needs no gradient, so
            # torch says its full backward hook fires for the outputs only: expected here
            warnings.filterwarnings("ignore", "Full backward hook is firing when gradients are "
                                    "computed with respect to module outputs", UserWarning)
            nn.functional.cross_entropy(model(x), y).backward()
        for h in hs:
            h.remove()
        for n, m in model.named_modules():
            if getattr(m, "gemm_path", None) is not None:
                grads[n] = {"backward_weight": m.weight.grad.detach().clone(),
                            "backward_input": outs.get(n), "dy_zeroed": zeros.get(n)}
    finally:
        if mode == "exact":
            hil.quantize_d = orig
        hil.detach(model)
    return grads


def run(args) -> int:
    import copy

    import torch

    from sw.train import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    modes = [m.strip() for m in args.grad_quant.split(",") if m.strip()]
    report = {}
    for ep in [int(e) for e in str(args.train_epochs).split(",")]:
        res = train(dataset="digits", sparsity=0.9, seed=args.seed, epochs=max(ep, 1),
                    max_steps=None if ep else 1, plots=False)
        model = res.model
        x, y = next(iter(res.dataset.batches("train", 64, seed=args.seed, epoch=0)))
        torch.manual_seed(args.seed)
        ref = _grads(copy.deepcopy(model).train(), x, y, "exact")
        print(f"\n== after {ep} epochs of float SWAT-U 90 % (one batch of 64): relative error "
              f"of the gradient vs dY unquantized")
        print(f"{'layer / pass':32s}" + "".join(f"{m:>11s}" for m in modes))
        rows = {}
        got = {m: _grads(copy.deepcopy(model).train(), x, y, m) for m in modes}
        for name in ref:
            print(f"{name + ' dY rounded to 0':32s}{100 * ref[name]['dy_zeroed']:10.1f}%")
            rows[f"{name}:dy_zeroed"] = ref[name]["dy_zeroed"]
            for p in ("backward_input", "backward_weight"):
                r = ref[name][p]
                if r is None:
                    continue
                errs = [float((got[m][name][p] - r).norm() / r.norm()) for m in modes]
                rows[f"{name}:{p}"] = dict(zip(modes, errs, strict=True))
                print(f"{name + ':' + p:32s}" + "".join(f"{e:11.4f}" for e in errs))
        report[f"epochs_{ep}"] = rows
    (out / "hil_grad.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0
