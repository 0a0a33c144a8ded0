"""Hardware in the loop: the digits CNN trained with its GEMMs on a backend, beside float SWAT.

Runs ``sw.train.train`` once per (configuration, seed): float SWAT-U (``--backend torch``), the
same on each integer backend and ``--grad-quant`` asked for, and the dense model on the integer
backends (``method=dense`` at density 1, int8). Prints test accuracy as mean ± sd over the seeds,
the difference to float SWAT, wall time per run and, for ``rtl``, simulated cycles per step and
simulator throughput; writes ``hil.json`` and the plots ``hil_accuracy.png`` and
``hil_cycles.png`` to ``--out``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

NAME = "hil"
HELP = ("digits CNN, SWAT-U 90%: float vs intref vs rtl test accuracy over seeds, "
        "cycles per step, wall time")


def add_arguments(p) -> None:
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--backends", default="intref",
                   help="comma-separated integer backends (intref, rtl)")
    p.add_argument("--grad-quant", default="tensor",
                   help="comma-separated dY quantizations (tensor, row, stochastic, split, "
                        "row-split)")
    p.add_argument("--dense", action=argparse_bool(), default=True,
                   help="also the dense int8 run on each backend")
    p.add_argument("--dense-backends", default=None,
                   help="backends of the dense int8 runs (default: --backends)")
    p.add_argument("--float", action=argparse_bool(), default=True,
                   help="the float SWAT reference runs (needed for the differences)")
    p.add_argument("--epochs", type=int, default=None, help="default: the digits default (10)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--out", default="results/hil")


def argparse_bool():
    import argparse

    return argparse.BooleanOptionalAction


def _ms(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):6.2f} ± {100 * sd:4.2f} %"


def run(args) -> int:
    from sw.hil_plots import plot_accuracy, plot_cycles
    from sw.train import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    configs = [("float SWAT", dict(backend="torch"))] if args.float else []
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for be in backends:
        for gq in [g.strip() for g in args.grad_quant.split(",") if g.strip()]:
            configs.append((f"{be} SWAT ({gq})", dict(backend=be, grad_quant=gq)))
    dense = backends if args.dense_backends is None else [
        b.strip() for b in args.dense_backends.split(",") if b.strip()]
    for be in dense if args.dense else ():
        configs.append((f"{be} dense int8", dict(backend=be, method="dense")))
    results: dict[str, dict] = {}
    for label, kw in configs:
        r = results.setdefault(label, {"acc": [], "wall_s": [], "histories": [], **kw})
        for seed in seeds:
            t0 = time.perf_counter()
            res = train(dataset="digits", sparsity=args.sparsity, seed=seed, epochs=args.epochs,
                        max_steps=args.max_steps, plots=False, force=True,
                        out=str(out / f"{label.replace(' ', '_').replace('(', '').replace(')', '')}"
                                      f"_s{seed}"), **kw)
            wall = time.perf_counter() - t0
            r["acc"].append(res.final["test_acc"])
            r["wall_s"].append(wall)
            r["histories"].append(res.history)
            steps = [s for h in res.history for s in h.get("steps", ())]
            cyc = [s["cycles"] for s in steps if s.get("cycles") is not None]
            extra = ""
            if cyc:
                last = res.history[-1]
                r.setdefault("cycles_per_step", []).append(statistics.mean(cyc))
                r.setdefault("sim_cycles_per_s", []).append(sum(cyc) / wall)
                extra = (f", {statistics.mean(cyc):,.0f} cycles/step, "
                         f"{sum(cyc) / wall / 1e6:.2f} M simulated cycles per wall s of the run")
                if last.get("sim_cpu_s"):
                    cps = last["sim_cycles"] / last["sim_cpu_s"]
                    r.setdefault("sim_cycles_per_cpu_s", []).append(cps)
                    extra += (f", {cps / 1e6:.2f} M per simulator CPU s, simulator wall "
                              f"{last['sim_wall_s']:.0f} s")
            print(f"seed {seed} {label:28s} test acc {100 * res.final['test_acc']:6.2f} % "
                  f"in {wall:6.1f} s{extra}", flush=True)
    ref = results["float SWAT"]["acc"] if "float SWAT" in results else None
    print("\nconfiguration                 test accuracy        vs float SWAT   wall/run")
    summary = {}
    for label, r in results.items():
        diff = [a - b for a, b in zip(r["acc"], ref, strict=True)] if ref else [float("nan")]
        summary[label] = {
            "test_acc": r["acc"], "mean": statistics.mean(r["acc"]),
            "std": statistics.stdev(r["acc"]) if len(r["acc"]) > 1 else 0.0,
            "diff_vs_float_swat": statistics.mean(diff), "wall_s": r["wall_s"],
            **{k: r[k] for k in ("cycles_per_step", "sim_cycles_per_s", "sim_cycles_per_cpu_s")
               if k in r},
        }
        print(f"{label:28s} {_ms(r['acc'])}   {100 * statistics.mean(diff):+5.2f} points   "
              f"{statistics.mean(r['wall_s']):6.1f} s")
    (out / "hil.json").write_text(json.dumps({"seeds": seeds, "results": summary}, indent=1)
                                  + "\n")
    plot_accuracy({k: r["histories"] for k, r in results.items()}, out / "hil_accuracy.png")
    cyc_runs = {k: [s for h in r["histories"][0] for s in h.get("steps", ())]
                for k, r in results.items() if "cycles_per_step" in r}
    if cyc_runs:
        plot_cycles(cyc_runs, out / "hil_cycles.png")
    return 0
