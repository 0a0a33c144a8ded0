"""Digits CNN: SWAT-U at 90 % sparsity vs dense, several seeds, default digits recipe
(``sw.train`` defaults: 10 epochs, batch 64, SGD 0.05 momentum 0.9, lr /10 at 1/3 and 2/3)."""

from __future__ import annotations

import statistics
import time

NAME = "digits"
HELP = "digits CNN test accuracy: SWAT-U 90% vs dense over seeds (mean +- sd, difference)"


def add_arguments(p) -> None:
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--method", default="swat")
    p.add_argument("--distribution", default="uniform")
    p.add_argument("--epochs", type=int, default=None, help="default: the CLI's digits default")
    p.add_argument("--period", type=int, default=1)


def _fmt(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):6.2f} +- {100 * sd:4.2f} %"


def run(args) -> int:
    from sw.train import train

    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    acc: dict[str, list[float]] = {"dense": [], "swat": []}
    label = f"{args.method}-{args.distribution} {args.sparsity:g}"
    t0 = time.perf_counter()
    for seed in seeds:
        for key, kw in (("dense", dict(method="dense")),
                        ("swat", dict(method=args.method, sparsity=args.sparsity,
                                      distribution=args.distribution, period=args.period))):
            res = train(dataset="digits", seed=seed, epochs=args.epochs, plots=False, **kw)
            acc[key].append(res.final["test_acc"])
            print(f"seed {seed} {key if key == 'dense' else label:18s} "
                  f"test acc {100 * res.final['test_acc']:6.2f} %", flush=True)
    diff = [s - d for s, d in zip(acc["swat"], acc["dense"], strict=True)]
    print(f"dense              {_fmt(acc['dense'])}")
    print(f"{label:18s} {_fmt(acc['swat'])}")
    print(f"difference (SWAT - dense): {100 * statistics.mean(diff):+.2f} points "
          f"(per seed: {', '.join(f'{100 * x:+.2f}' for x in diff)}); "
          f"{len(seeds)} seeds, {time.perf_counter() - t0:.0f} s")
    return 0
