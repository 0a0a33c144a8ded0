"""The main job: RTL cycles of the three SWAT training passes against the FLOP model.

``python -m sim.compare`` (``nox -s compare``, console script ``swat-compare``):

1. train the digits CNN a few hundred steps with SWAT-U at 90 % sparsity (``sw.train.train``);
   ``--model resnet18`` instead builds the CIFAR ResNet-18 (SWAT-U, initial weights, batch 1,
   one random CIFAR-shaped input: the shapes and sparsities are what matter for cycles);
2. take one training step's tensors of every Conv2d/Linear layer (``sw.train.capture_step``):
   inputs ``A``, weights ``W``, output gradients ``dY``; convolutions are lowered with im2col
   (``torch.nn.functional.unfold``);
3. lower each layer to its GEMMs (``sw.lowering``): quantize (``sw.quant``, symmetric per
   tensor) and apply Top-K *on the integers* with
   the hardware's tie rule (``sw.int_topk``: the kept set the threshold-select unit produces),
   at each layer's density (the dense first layer of SWAT-U keeps everything);
4. run the three GEMMs of every layer on the Verilator model of the core (``sim.run_gemms``, one
   simulator process for everything), check each bit for bit against ``sw.intref.gemm`` and
   also run the same GEMMs with the *dense* operands (no Top-K) for the speedup (cycles only:
   of the M blocks over one S block only one runs, see ``run_gemms(cycles_only=...)``);
5. write ``results/compare.{csv,json,md}`` and the plots ``rtl_vs_flops.png`` and
   ``speedup_sweep.png`` (the latter from the 64×576 @ 576×64 sweep, :mod:`sim.sweep`).

Passes (``CONTRACT.md``): forward ``D = A [M, K]``, ``S = Wsᵀ [K, F]``; input gradient
``D = dY [M, F]``, ``S = Ws [F, K]`` (skipped for the first layer, whose input needs no
gradient); weight gradient ``D = dYᵀ [F, M]``, ``S = As [M, K]``.

Threshold-select cycles: the cycles the threshold-select unit needs to select and compress ``W``
(streamed as ``S = Wᵀ``) and ``A`` (one column per sample) are given by
``hw.contract.cycles.select_cycles`` (mode FULL: histogram pass + compress pass, 8 lanes), the
unit's documented cycle formula, which ``tests/test_sim_select.py`` checks against the unit's
RTL. It is reported next to the GEMM cycles, not added to them.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from sw import lowering

from . import verilate

PASSES = lowering.PASSES


# --------------------------------------------------------------------------------------------
# capturing one training step


def _digits_step(sparsity: float, steps: int, seed: int, log):
    import torch

    from sw import train as swtrain

    captured = {}

    def cb(info):
        captured["inputs"] = info.inputs.detach().clone()
        captured["targets"] = info.targets.detach().clone()

    t0 = time.monotonic()
    res = swtrain.train(dataset="digits", method="swat", distribution="uniform",
                        sparsity=sparsity, max_steps=steps, seed=seed, plots=False,
                        callback=cb)
    acc = res.final.get("test_acc", res.final.get("test_accuracy"))
    log(f"trained digits CNN (SWAT-U, sparsity {sparsity:.2f}) for {res.steps} steps in "
        f"{time.monotonic() - t0:.1f} s" + (f", test accuracy {acc}" if acc is not None else ""))
    model = res.model
    torch.manual_seed(seed)
    recs = swtrain.capture_step(model, captured["inputs"], captured["targets"])
    shape = tuple(captured["inputs"].shape)
    info = {"model": "digits_cnn", "steps": res.steps, "batch": shape[0],
            "final": {k: v for k, v in res.final.items() if isinstance(v, int | float)}}
    return model, recs, shape, info


def _resnet18_step(sparsity: float, seed: int, log):
    import torch

    from sw import models, swatify
    from sw import train as swtrain

    torch.manual_seed(seed)
    model = models.build("resnet18", num_classes=10)
    swatify(model, sparsity, method="swat", distribution="uniform")
    x = torch.randn(1, 3, 32, 32)
    y = torch.tensor([3])
    recs = swtrain.capture_step(model, x, y)
    log("ResNet-18 (CIFAR shapes, SWAT-U, initial weights), one step on a random batch of 1")
    return model, recs, (1, 3, 32, 32), {"model": "resnet18", "steps": 0, "batch": 1}


# --------------------------------------------------------------------------------------------
# the job


def run(args) -> dict:
    import torch
    from tqdm import tqdm

    from sw import flops, intref

    from . import gemm as gemm_mod

    t_start = time.monotonic()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, cols = args.array
    pes = rows * cols

    def log(msg):
        tqdm.write(f"[compare] {msg}")

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if args.model == "resnet18":
        model, recs, in_shape, info = _resnet18_step(1 - args.density, args.seed, log)
    else:
        model, recs, in_shape, info = _digits_step(1 - args.density, args.steps, args.seed, log)
    dens = lowering.layer_selection(model)
    modules = dict(model.named_modules())
    flop = {r.name: r for r in flops.count(model, in_shape, convention="gemm")}

    t0 = time.monotonic()
    jobs = []
    names = [n for n in recs if n in modules and n != "__loss__"]
    with tqdm(total=len(names) * 3, desc="lower layers x passes", unit="gemm",
              disable=args.quiet) as bar:
        for name in names:
            density, dims = dens.get(name, (1.0, "nchw"))
            for j in lowering.layer_jobs(name, modules[name], recs[name], density, dims):
                jobs.append(j)
                bar.update(1)
            bar.update(3 - sum(1 for j in jobs if j.layer == name))
    t_lower = time.monotonic() - t0
    log(f"{len(jobs)} GEMMs from {len(names)} layers lowered in {t_lower:.1f} s; "
        f"model {rows}x{cols}: building or reusing")
    model_rtl = verilate.harness_model(rows, cols, quiet=False)

    gemms = [(j.d, j.s) for j in jobs] + [(j.d, j.s_dense) for j in jobs]
    labels = [j.label for j in jobs]
    t0 = time.monotonic()
    with tqdm(total=len(gemms), desc="RTL layers x passes (sparse, then dense)", unit="gemm",
              disable=args.quiet) as bar:
        def prog(done, total):
            if done == bar.n:
                return
            if done < len(gemms):
                lab = labels[done % len(labels)]
                bar.set_postfix_str(lab + (" dense" if done >= len(labels) else ""),
                                    refresh=False)
            bar.update(done - bar.n)

        results = gemm_mod.run_gemms(gemms, model=model_rtl, progress=prog,
                                     cycles_only=[False] * len(jobs) + [True] * len(jobs),
                                     parallel=getattr(args, "client", None),
                                     labels=labels + [f"{lab} dense" for lab in labels])
    t_sim = time.monotonic() - t0
    batch = results.stats
    if getattr(args, "waves", None):
        j = next((j for j in jobs if j.label == args.waves.removesuffix(" dense")), None)
        if j is None:
            raise SystemExit(f"--waves: no GEMM {args.waves!r}; one of: "
                             + ", ".join(lab for lab in labels))
        wave = out_dir / "waves" / (args.waves.replace(":", "-").replace(" ", "-") + ".fst")
        log(f"waves of {args.waves}: building or reusing the tracing model")
        gemm_mod.dump_waves(j.d, j.s_dense if args.waves.endswith(" dense") else j.s, wave,
                            rows=rows, cols=cols)
        log(f"waves of {args.waves} -> {wave}")
    sparse_res, dense_res = results[:len(jobs)], results[len(jobs):]

    rows_out = []
    for j, r, rd in zip(jobs, sparse_res, dense_res, strict=True):
        ref = intref.gemm(j.d, j.s)
        exact = bool(np.array_equal(r.c.astype(np.int64), ref))
        fl = flop.get(j.layer)
        m, k, n = j.shape
        row = {
            "layer": j.layer, "pass": j.pass_name, "M": m, "K": k, "N": n,
            "density": round(j.density, 4), "s_density": round(r.density, 4),
            "dense_macs": m * k * n,
            "flop_dense": int(getattr(fl, j.pass_name)) if fl else None,
            "flop_sparse": float(getattr(fl, j.pass_name + "_sparse")) if fl else None,
            "effectual_macs": r.macs,
            "rtl_cycles": r.cycles,
            "ideal_cycles": round(r.ideal_cycles, 1),
            "mac_bound_cycles": round(r.mac_bound_cycles, 1),
            "flop_cycles": (round(float(getattr(fl, j.pass_name + "_sparse")) / pes, 1)
                            if fl else None),
            "utilization": round(r.utilization, 4),
            "dense_rtl_cycles": rd.cycles,
            "speedup": round(rd.cycles / r.cycles, 3) if r.cycles else None,
            "max_speedup": round(rd.macs / r.macs, 3) if r.macs else None,
            "core_runs": r.runs,
            "stall_cycles": r.stall_cycles, "idle_cycles": r.idle_cycles,
            "select_w_cycles": j.select_w_cycles, "select_a_cycles": j.select_a_cycles,
            "bit_exact": exact,
            "rel_err_vs_float": round(j.rel_err(r.c), 6),
            "rel_err_quant_only": round(j.rel_err(j.d.astype(np.float64)
                                                  @ j.s_golden.astype(np.float64)), 6),
        }
        rows_out.append(row)

    tot = {
        "rtl_cycles": sum(r["rtl_cycles"] for r in rows_out),
        "dense_rtl_cycles": sum(r["dense_rtl_cycles"] for r in rows_out),
        "effectual_macs": sum(r["effectual_macs"] for r in rows_out),
        "dense_macs": sum(r["dense_macs"] for r in rows_out),
        "flop_sparse": sum(r["flop_sparse"] or 0 for r in rows_out),
        "flop_dense": sum(r["flop_dense"] or 0 for r in rows_out),
    }
    tot["utilization"] = round(tot["effectual_macs"] / (pes * tot["rtl_cycles"]), 4) \
        if tot["rtl_cycles"] else 0
    tot["speedup"] = round(tot["dense_rtl_cycles"] / tot["rtl_cycles"], 3) \
        if tot["rtl_cycles"] else 0
    tot["all_bit_exact"] = all(r["bit_exact"] for r in rows_out)
    summary = {
        "model": info["model"], "sparsity": 1 - args.density, "array": f"{rows}x{cols}",
        "train_steps": info["steps"], "batch": info["batch"], "gemms": len(jobs),
        "totals": tot,
        "simulation": {
            "core_operations": batch.runs, "simulated_cycles": batch.cycles,
            "sim_wall_s": round(t_sim, 2), "bench_s": round(batch.bench, 2),
            "preload_io_s": round(batch.io, 2),
            "cycles_per_s": round(batch.cycles_per_second),
            "cycles_per_cpu_s": round(batch.cycles_per_cpu_second),
            "processes": len(batch.processes),
            "aggregate_cycles_per_s": round(batch.aggregate_cycles_per_second),
            "lost_workers": batch.lost_workers,
            "lowering_s": round(t_lower, 2), "total_wall_s": None,
        },
        "threshold_select": "hw.contract.cycles.select_cycles (mode FULL, 8 lanes), the "
                            "unit's cycle formula checked against its RTL by "
                            "tests/test_sim_select.py; not added to the GEMM cycles",
        "train": info.get("final", {}),
    }
    sweep = None
    if not args.no_sweep:
        from . import sweep as sweep_mod

        log("sweep: 64x576 @ 576x64 at sparsity 0..95 %")
        sweep = sweep_mod.run_sweep(array=args.array, out=out_dir, quiet=True,
                                    model=model_rtl, parallel=getattr(args, "client", None))
    summary["simulation"]["total_wall_s"] = round(time.monotonic() - t_start, 1)
    write_outputs(out_dir, rows_out, summary, sweep, args)
    if not tot["all_bit_exact"]:
        bad = [f"{r['layer']}:{r['pass']}" for r in rows_out if not r["bit_exact"]]
        argv = list(getattr(args, "argv", []))
        if "--waves" in argv:
            i = argv.index("--waves")
            del argv[i:i + 2]
        again = " ".join(shlex.quote(a) for a in argv)
        raise SystemExit(f"RTL results differ from the integer reference: {bad}; waveform of "
                         f"one: python -m sim.compare {again} --waves {shlex.quote(bad[0])}")
    return {"rows": rows_out, "summary": summary, "sweep": sweep}


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def write_outputs(out: Path, rows, summary, sweep, args) -> None:
    stem = out / ("compare" if args.model == "digits" else f"compare_{args.model}")
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    stem.with_suffix(".json").write_text(json.dumps({"summary": summary, "layers": rows},
                                                    indent=1))
    cols = ["layer", "pass", "M", "K", "N", "s_density", "dense_macs", "flop_sparse",
            "effectual_macs", "rtl_cycles", "ideal_cycles", "utilization", "dense_rtl_cycles",
            "speedup", "select_w_cycles", "select_a_cycles", "bit_exact", "rel_err_vs_float",
            "rel_err_quant_only"]
    t = summary["totals"]
    s = summary["simulation"]
    lines = [
        f"# RTL vs FLOP model: {summary['model']}, SWAT-U at {summary['sparsity']:.0%} sparsity,"
        f" {summary['array']} core",
        "",
        f"{summary['gemms']} GEMMs (3 passes per layer), one training step "
        f"(batch {summary['batch']}, after {summary['train_steps']} training steps). "
        f"All bit-exact vs `sw.intref.gemm`: **{t['all_bit_exact']}**.",
        "",
        f"Totals: RTL cycles {t['rtl_cycles']:,}; same core on the dense operands "
        f"{t['dense_rtl_cycles']:,} (speedup **{t['speedup']}×**); effectual MACs "
        f"{t['effectual_macs']:,} of {t['dense_macs']:,} dense; FLOP model (sparse) "
        f"{t['flop_sparse']:,.0f}; utilization **{t['utilization']:.1%}**.",
        "",
        f"Simulation: {s['core_operations']} core operations, {s['simulated_cycles']:,} cycles "
        f"in {s['sim_wall_s']} s ({s['cycles_per_s']:,} simulated cycles per wall second, "
        f"{s['cycles_per_cpu_s']:,} per CPU second of the simulator, excluding buffer "
        f"preload of {s['preload_io_s']} s); whole job {s['total_wall_s']} s.",
        "",
        "Threshold-select cycles: " + summary["threshold_select"] + ".",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    lines += ["", "Columns: `effectual_macs` = M·nnz(S) (the core's work); `flop_sparse` = "
              "`sw.flops.count(..., convention=\"gemm\")` sparse MACs (density × dense); "
              "`ideal_cycles` = ceil(M/rows)·nnz(S)/cols, the dataflow bound; "
              "`mac_bound_cycles` = effectual MACs / PEs (equal when rows divides M); "
              "`utilization` = effectual MACs / (PEs · RTL cycles); `speedup` = RTL cycles on "
              "the dense operands (quantized, no Top-K; "
              "zeros such as ReLU's are still skipped) / RTL cycles; `rel_err_vs_float` = "
              "‖dequantized RTL result − float golden model‖ / ‖golden‖ (includes the few "
              "near-threshold elements where the integer Top-K keeps a different element than "
              "the float Top-K of the golden model: int8 codes tie where floats do not); "
              "`rel_err_quant_only` = the same with the golden model's own masks applied to the "
              "integers (quantization error alone)."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    _plots(out, rows, sweep, summary, args)


def _plots(out: Path, rows, sweep, summary, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = "" if args.model == "digits" else f"_{args.model}"
    # One rotated single-line label per bar; the figure widens with the number of bars.
    fig, ax = plt.subplots(figsize=(max(9.0, 0.16 * len(rows) + 2), 5.5))
    labels = [f"{r['layer']} {r['pass'].replace('backward_', 'bw_')}" for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["rtl_cycles"] for r in rows], 0.4, label="RTL cycles")
    ax.bar(x + 0.2, [r["flop_cycles"] or r["ideal_cycles"] for r in rows], 0.4,
           label="FLOP model (sparse MACs / PEs)")
    ax.set_yscale("log")
    ax.set_xticks(x, labels, rotation=90, fontsize=6 if len(rows) > 30 else 8)
    ax.set_ylabel("cycles")
    ax.set_title(f"{summary['model']}: RTL cycles vs FLOP estimate per layer and pass "
                 f"({summary['array']}, {summary['sparsity']:.0%} sparsity)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"rtl_vs_flops{suffix}.png", dpi=120)
    plt.close(fig)
    if sweep:
        from .sweep import plot_sweep

        plot_sweep(sweep, out / "speedup_sweep.png")


def main(argv=None) -> int:
    from .compare_args import parse

    args = parse(argv, ["digits", "resnet18"], __doc__.split("\n")[0])
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if len(args.sparsity) > 1:
        raise SystemExit("swat-compare: error: argument --sparsity: one value only so far")
    args.density = 1 - args.sparsity[0]
    os.environ.setdefault("COCOTB_REWRITE_ASSERTION_FILES", "test_*.py cocotb_*.py")
    if args.sweep:
        from .sweep import main as sweep_main

        return sweep_main(["--array", f"{args.array[0]}x{args.array[1]}", "--out",
                           str(args.out)])
    t0 = time.monotonic()
    from .cluster import for_args

    with for_args(args.workers, args.scheduler) as args.client:
        res = run(args)
    s = res["summary"]
    t = s["totals"]
    print(f"{s['model']}: {s['gemms']} GEMMs bit-exact={t['all_bit_exact']}; RTL cycles "
          f"{t['rtl_cycles']:,} vs dense {t['dense_rtl_cycles']:,} (speedup {t['speedup']}x), "
          f"utilization {t['utilization']:.1%}; {s['simulation']['cycles_per_s']:,} simulated "
          f"cycles/s per simulator process ({s['simulation']['processes']} processes); "
          f"wall {time.monotonic() - t0:.1f} s -> {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
