"""SWAT vs dense training-step time on the CPU (ResNet-18, CIFAR shape, batch 128).

One training step = forward + backward + SGD update on random CIFAR-shaped data. Configurations
are measured round-robin (one step of each per round) so that load drift on a shared machine
hits all of them alike; the median over rounds is reported, both as wall-clock time and as the
process CPU time (with ``--threads 1`` the CPU time is the work done, much less sensitive to
other jobs on a shared machine than the wall clock). With a Top-K period P > 1 the timed
steps are steps with a held threshold; the amortised figure adds one recompute (a period-1 step)
every P steps: ``((P - 1) * held + recompute) / P``.

The SWAT layers pack their saved tensors with the fused kernels of :mod:`sw.fused` when those
are available; ``--aten`` also times every SWAT configuration on the stock-ATen route, in the
same rounds, so the two can be compared under the same load.
"""

from __future__ import annotations

import statistics
import time

import torch

NAME = "step-time"
HELP = "SWAT vs dense training-step time on CPU (ResNet-18, CIFAR shape, batch 128)"


def add_arguments(p) -> None:
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--periods", default="1,100", help="comma-separated Top-K periods")
    p.add_argument("--method", default="swat")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration")
    p.add_argument("--iters", type=int, default=3, help="timed rounds")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: CPU time = work done, robust on a shared machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aten", action="store_true",
                   help="also time the SWAT configurations without the fused kernels")


def _setup(model_name, batch, method, sparsity, period, seed):
    from sw import models

    torch.manual_seed(seed)
    model = models.build(model_name, 10)
    if method != "dense":
        from sw.swatify import swatify

        swatify(model, sparsity, method=method, period=period)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    c, h, w = models.input_shape(model_name)
    x = torch.randn(batch, c, h, w)
    y = torch.randint(0, 10, (batch,))
    return model, opt, x, y


def _step(model, opt, x, y, aten=False) -> tuple[float, float]:
    if aten:
        from sw import fused

        with fused.disabled():
            return _step(model, opt, x, y)
    t, c = time.perf_counter(), time.process_time()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t, time.process_time() - c


def measure(model_name="resnet18", batch=128, sparsity=0.9, periods=(1, 100), method="swat",
            warmup=1, iters=4, seed=0, aten=False) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per training step of ``dense`` and of SWAT at every period
    (with ``aten``: also on the stock-ATen packing route, keys ``"<method> P=<p> aten"``)."""
    configs = {"dense": _setup(model_name, batch, "dense", 0.0, 1, seed)}
    for p in periods:
        configs[f"{method} P={p}"] = _setup(model_name, batch, method, sparsity, p, seed)
        if aten:
            configs[f"{method} P={p} aten"] = (*_setup(model_name, batch, method, sparsity, p,
                                                       seed), True)
    for cfg in configs.values():
        for _ in range(warmup):
            _step(*cfg)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
    for _ in range(iters):
        for k, cfg in configs.items():
            times[k].append(_step(*cfg))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for k, v in times.items()}


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    periods = [int(p) for p in str(args.periods).split(",") if p.strip()]
    print(f"model {args.model}, batch {args.batch_size}, sparsity {args.sparsity}, "
          f"{args.iters} timed rounds after {args.warmup} warm-up step(s), "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    from sw import fused

    print(f"fused packing kernels: {fused.status()}", flush=True)
    med = measure(args.model, args.batch_size, args.sparsity, periods, args.method,
                  args.warmup, args.iters, args.seed, args.aten)
    print(f"{'config':18s} {'wall ms':>9s} {'x dense':>8s} {'amort.':>7s}   "
          f"{'CPU ms':>9s} {'x dense':>8s} {'amort.':>7s}")
    rec1 = med.get(f"{args.method} P=1")
    for k, v in med.items():
        line = f"{k:18s}"
        for i in (0, 1):
            ratio = v[i] / med["dense"][i]
            line += f" {v[i] * 1e3:9.1f} {ratio:8.3f}"
            if k.startswith(args.method) and rec1 is not None:
                p = int(k.split("P=")[1].split()[0])
                r1 = med.get(f"{args.method} P=1 aten", rec1) if k.endswith("aten") else rec1
                line += f" {((p - 1) * v[i] + r1[i]) / p / med['dense'][i]:7.3f}"
            else:
                line += " " * 8
            line += "  "
        print(line.rstrip(), flush=True)
    return 0
