"""The main job: RTL cycles of the three SWAT training passes against the FLOP model.

``python -m sim.compare`` (``nox -s compare``, console script ``swat-compare``):

1. take one training step of ``--model`` (any model of ``sw.models``; default the digits CNN),
   SWAT-ified with ``--method`` / ``--distribution`` / ``--period`` / ``--structured`` at each
   ``--sparsity`` (one value or a list): the digits CNN trained 300 steps on the bundled
   digits, the CIFAR-shaped models 150 steps (CIFAR-10 from ``--data-dir`` when present, else
   the digits resized to 32×32), ResNet-50 with initial weights on a synthetic 224×224 batch
   (:mod:`sim.compare_step` says what that means for the figures); the step's tensors of every
   Conv2d/Linear layer come from ``sw.train.capture_step``;
2. lower each layer to its GEMMs (``sw.lowering``): quantize (``sw.quant``, symmetric per
   tensor), Top-K *on the integers* with the hardware's tie rule (``sw.int_topk``: the kept set
   the threshold-select unit produces) at each layer's density, im2col for convolutions;
3. run the GEMMs on the Verilator model of the core (``sim.gemm.run_gemms`` on the core
   without the select unit, :mod:`sim.compare_models`; one simulator process per core, or a
   Dask cluster with ``--scheduler``; a short job, the digits step, runs them in one simulator
   process instead of starting a cluster, beside the select loop's on 3 cores or more), check
   each bit for bit against ``sw.intref.gemm`` and also run them on the operands without Top-K (the
   speedup baseline: natural zeros still skipped) and, except for the digits job, on operands
   with no zero at all ("truly dense"); baselines count cycles only (of the M blocks over one S
   block only one runs, see ``run_gemms(cycles_only=...)``). A GEMM with more core operations
   than ``--whole-ops`` runs a random sample of ``--sample-ops`` of them (default: all for
   every model but ResNet-50, :data:`SAMPLE_OPS`: 16 of GEMMs with more than 48; the baselines
   ``--baseline-sample-ops``, default 8) and the rest is extrapolated with the calibrated
   cycle model (:mod:`sim.sampling`); the tables say per GEMM what was simulated and give the
   95 % bound.
   With sampling the step is streamed: each layer is lowered and planned as the backward pass
   reaches it, and only the sampled blocks are kept (:mod:`sim.compare_jobs`); the truly dense
   baseline is exact from one run per block size, and baselines with the same operands (the
   dense forward and input-gradient ``W``, the truly dense shapes) are simulated once for all
   sparsities;
4. write ``results/compare{tag}.{csv,json,md}``, ``speedup_passes{tag}.png`` (speedup per pass
   against both baselines, 1/density and the paper) and ``cycles_breakdown{tag}.png`` (per
   layer: busy, stalled, idle, exposed select; :mod:`sim.compare_plots`)
   per sparsity
   (``tag`` empty for the default digits job, else ``_<model>`` and ``_s<pct>`` for lists),
   for lists ``compare_<model>_table.{md,json}`` and ``speedup_<model>.png`` (per pass, beside
   the paper's Table 6 for ResNet-50 and 1/density), and ``speedup_sweep.png`` from the
   64×576 @ 576×64 sweep (:mod:`sim.sweep`).

Passes (``docs/contract.md``): forward ``D = A [M, K]``, ``S = Wsᵀ [K, F]``; input gradient
``D = dY [M, F]``, ``S = Ws [F, K]`` (skipped for the first layer, whose input needs no
gradient); weight gradient ``D = dYᵀ [F, M]``, ``S = As [M, K]``.

Threshold select: the step's sparse GEMMs that run whole run with the core's threshold-select
unit in the loop (:mod:`sim.compare_select`, :mod:`sim.select_loop`): every ``S`` blob is written
by the unit into one S buffer while the previous GEMM reads the other and is checked word for
word against the host's Top-K (a difference fails the job). That run is their only RTL run: the
table's cycles, counters and ``C`` of those GEMMs come from it (the same core operations
``run_gemms`` would run); ``run_gemms`` runs the baselines and the sampled GEMMs.
``summary.simulation`` counts every simulator process of the job (the ``run_gemms`` workers and
the select loop): ``cycles_per_s`` is simulated cycles per wall second of one process (buffer
preload and the host's work between requests included), ``cycles_per_cpu_s`` per CPU second of
the simulator processes; ``gemm_batch`` and ``select_loop`` give each part. The select cycles
of the tables are the unit's, ``summary.totals.select_exposed_cycles`` the core's
``sel.exposed_cycles`` counter over the step (cycles the unit works while no GEMM runs); the
select of GEMMs simulated only in samples runs on the unit where it fits (every ``W`` blob and
pass 1, every ``A`` pass 1, a sample of the ``A`` blobs; :mod:`sim.select_sampled`), beside the
GEMM batch in a simulator process of its own, the rest extrapolated and their exposure
modelled, as ``summary.select.source`` says. They are not added to the GEMM cycles.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from hw.contract.cycles import exposed_select_cycles
from sw import lowering

from .compare_models import JobModels

PASSES = lowering.PASSES


#: Default sampling per model: ``(--sample-ops, --whole-ops)``: core operations simulated of a
#: GEMM that has more than ``--whole-ops`` (the others run whole); every other model: all.
#: ResNet-50 at batch 32: 16 of its 100s-1000s per GEMM (95 % bound of each pass under
#: 0.03 % of its cycles; 48 gave under 0.02 % and the same speedups to the third digit),
#: those with at most 48 (the fc layer's) whole, in the select loop.
SAMPLE_OPS = {"resnet50": (16, 48)}


#: The paper's Table 6 (ResNet-50, ImageNet, SWAT-U unstructured): speedup of the forward and
#: the backward pass in simulated cycles, by sparsity.
PAPER_TABLE6 = {0.8: {"forward": 3.3, "backward": 3.4}, 0.9: {"forward": 5.6, "backward": 6.3}}


# --------------------------------------------------------------------------------------------
# the job


def _step_order(jobs):
    """Indices of ``jobs`` (per layer: forward, input gradient, weight gradient) in the order a
    training step runs them: every forward in layer order, then the backward passes from the
    last layer to the first."""
    layers = list(dict.fromkeys(j.layer for j in jobs))
    fwd = [i for name in layers for i, j in enumerate(jobs)
           if j.layer == name and j.pass_name == "forward"]
    bwd = [i for name in reversed(layers) for i, j in enumerate(jobs)
           if j.layer == name and j.pass_name != "forward"]
    return fwd + bwd


def gemm_model_params(name: str) -> dict:
    """``sim.verilate.harness_model`` parameters of the core ``run_gemms`` runs the job's GEMMs
    on (baselines, sampled GEMMs, the sweep): every job's, the core without the threshold-select
    unit (:mod:`sim.compare_models`)."""
    return dict(JobModels.PARAMS["gemm"])


#: ``first`` of a plan entry (:func:`_rtl_plan`) whose GEMM runs in the select loop
IN_LOOP = -1


def _rtl_plan(jobs, shared, in_loop=()):
    """The GEMMs to simulate: per planned job (:mod:`sim.compare_jobs`) and operand kind its
    runs, unless a kind's ``share`` key is in ``shared`` (results of an earlier sparsity) or
    an earlier job of this run has the same key, or it is the sparse GEMM of a job in
    ``in_loop`` (simulated by the select loop: ``first`` is :data:`IN_LOOP`)."""
    gemms, only, plan, first_of = [], [], [], {}
    in_loop = set(in_loop)
    for i, j in enumerate(jobs):
        for kind, kp in j.kinds.items():
            if kind == "sparse" and i in in_loop:
                plan.append((i, kind, kp, IN_LOOP, 0))
                continue
            if kp.share is not None and (kp.share in shared or kp.share in first_of):
                plan.append((i, kind, kp, None, 0))
                continue
            if kp.share is not None:
                first_of[kp.share] = i
            plan.append((i, kind, kp, len(gemms), len(kp.subs)))
            gemms += kp.subs
            only += [kp.cycles_only] * len(kp.subs)
    return gemms, only, plan


def _combine(jobs, results, plan, shared, looped=None):
    """Per job and kind: cycles (whole, extrapolated or exact from groups), 95 % bound,
    counters, bit-exactness; kinds with a ``share`` key are stored in / taken from
    ``shared``; ``looped``: the results of the GEMMs the select loop ran, by job index."""
    from sw import intref

    from .sampling import Groups, extrapolate

    out = [{} for _ in jobs]
    for i, kind, kp, first, count in plan:
        if first is None:
            continue
        rs = [looped[i]] if first == IN_LOOP else results[first:first + count]
        smp = kp.sample
        rec = {"busy": sum(r.busy_cycles for r in rs), "stall": sum(r.stall_cycles for r in rs),
               "idle": sum(r.idle_cycles for r in rs), "runs": sum(r.runs for r in rs)}
        if smp is None:
            r = rs[0]
            rec.update(cycles=r.cycles, bound=0.0, simulated="whole", result=r,
                       macs=r.macs, density=r.density)
        else:
            total, bound = extrapolate(smp, [r.cycles for r in rs])
            if isinstance(smp, Groups):
                for key in ("busy", "stall", "idle"):
                    rec[key] = int(np.dot([getattr(r, key + "_cycles") for r in rs],
                                          smp.mults))
                what = (f"{count} block sizes of {smp.operations} core operations "
                        "(no zero in S: exact)")
            else:
                scale = total / max(1, sum(r.cycles for r in rs))
                for key in ("busy", "stall", "idle"):
                    rec[key] = int(round(rec[key] * scale))
                what = f"{count} of {smp.operations} core operations"
            rec.update(cycles=int(round(total)), bound=round(bound, 1), result=None,
                       simulated=what, runs=smp.operations)
        if kind == "sparse":
            rec["bit_exact"] = all(
                np.array_equal(r.c.astype(np.int64), intref.gemm(d, s))
                for r, (d, s) in zip(rs, kp.subs, strict=True))
        if kp.share is not None:
            shared[kp.share] = {k: v for k, v in rec.items() if k != "result"} | {"result": None}
        out[i][kind] = rec
    for i, kind, kp, first, _count in plan:
        if first is None:
            out[i][kind] = shared[kp.share]
    return out


def _pass_totals(rows_out):
    """Cycles and speedups per pass and for the backward pass as the paper groups it."""
    groups = {p: [p] for p in PASSES}
    groups["backward"] = ["backward_input", "backward_weight"]
    out = {}
    for name, members in groups.items():
        sel = [r for r in rows_out if r["pass"] in members]
        rtl = sum(r["rtl_cycles"] for r in sel)
        dense = sum(r["dense_rtl_cycles"] for r in sel)
        rec = {"rtl_cycles": rtl, "dense_rtl_cycles": dense,
               "speedup": round(dense / rtl, 3) if rtl else None}
        if sel and all(r.get("truly_dense_rtl_cycles") is not None for r in sel):
            td = sum(r["truly_dense_rtl_cycles"] for r in sel)
            rec.update(truly_dense_rtl_cycles=td,
                       speedup_vs_truly_dense=round(td / rtl, 3) if rtl else None)
        out[name] = rec
    return out


def _rate(cycles, seconds):
    return round(cycles / seconds) if seconds > 0 else None


def _simulation(batch, loop, t_sim, sampled=None) -> dict:
    """``summary.simulation``'s speed figures over every simulator process of the job: the
    ``run_gemms`` batch (baselines, sampled GEMMs; ``batch``) and the select loop (the whole
    sparse GEMMs with the unit; ``loop``). ``cycles_per_s``: simulated cycles per wall second
    of one process (cycles / wall, summed over the processes; the wall of each runs from its
    first request to its last answer, buffer preload and the host's work between requests
    included); ``cycles_per_cpu_s`` the same per CPU second of the simulator processes (what a
    loaded machine does not change); ``sampled``: the select unit's run for the sampled GEMMs
    (:func:`sim.compare_select.run_sampled`), counted with the select loop."""
    procs = [p for p in batch.processes if p["wall"] > 0]
    if not procs and batch.cycles:  # an engine without per-process figures
        procs = [{"cycles": batch.cycles, "wall": batch.bench - batch.io,
                  "cpu": batch.cpu - batch.cpu_io}]
    if loop.ticks:
        procs = [*procs, {"cycles": loop.ticks, "wall": loop.wall, "cpu": loop.cpu}]
    if sampled is not None and sampled.ticks:
        procs = [*procs, *(getattr(sampled, "processes", None) or [
            {"cycles": sampled.ticks, "wall": sampled.wall, "cpu": sampled.cpu}])]
    s_ticks, s_wall = (sampled.ticks, sampled.wall) if sampled is not None else (0, 0.0)
    cycles = sum(p["cycles"] for p in procs)
    out = {
        "core_operations": batch.runs + sum(r["runs"] for r in loop.jobs),
        "simulated_cycles": batch.cycles + loop.ticks + s_ticks,
        "sim_wall_s": round(t_sim, 2), "bench_s": round(batch.bench + loop.wall + s_wall, 2),
        "cycles_per_s": _rate(cycles, sum(p["wall"] for p in procs)),
        "cycles_per_cpu_s": _rate(cycles, sum(p["cpu"] for p in procs)),
        "processes": len(batch.processes) + (1 if loop.ticks else 0)
        + (len(getattr(sampled, "processes", None) or [1]) if s_ticks else 0),
        "aggregate_cycles_per_s": _rate(batch.cycles + loop.ticks + s_ticks,
                                        batch.bench + loop.wall + s_wall),
        "gemm_batch": {"simulated_cycles": batch.cycles, "wall_s": round(batch.bench, 3),
                       "cpu_s": round(batch.cpu, 3),
                       "cycles_per_s": _rate(batch.cycles, sum(p["wall"] for p in
                                                               batch.processes)),
                       "cycles_per_cpu_s": _rate(batch.cycles, batch.cpu - batch.cpu_io),
                       "processes": len(batch.processes)},
        "select_loop": {"simulated_cycles": loop.ticks, "wall_s": round(loop.wall, 3),
                        "cpu_s": round(loop.cpu, 3), "cycles_per_s": _rate(loop.ticks, loop.wall),
                        "cycles_per_cpu_s": _rate(loop.ticks, loop.cpu)},
    }
    if sampled is not None:
        out["select_sampled"] = {"simulated_cycles": s_ticks, "wall_s": round(s_wall, 3),
                                 "cpu_s": round(sampled.cpu, 3),
                                 "cycles_per_cpu_s": _rate(s_ticks, sampled.cpu),
                                 "processes": len(getattr(sampled, "processes", None) or [1])}
    return out


def _lower(args, sparsity, lim, n_max, log, n_whole=0):
    """Capture the step and lower it to planned GEMMs (:mod:`sim.compare_jobs`), in layer
    order. With sampling (``n_max``) the step is streamed: each layer is lowered and planned as
    soon as the backward pass reaches it and its tensors are dropped (``capture_step``'s
    ``on_layer``), so the job never holds the whole step's tensors."""
    from tqdm import tqdm

    from .compare_jobs import plan_gemm
    from .compare_step import capture

    structured = args.structured != "none"
    n_base = getattr(args, "baseline_sample_ops", None)
    n_base = min(8, n_max) if n_base is None else n_base
    waves = getattr(args, "waves", None)
    waves = None if waves is None else waves.removesuffix(" dense")
    planned, ctx = [], {"t": 0.0}
    bar = tqdm(desc="lower layers x passes", unit="gemm", disable=args.quiet)

    def lower_layer(model, name, rec):
        if "lim" not in ctx:  # the core's buffer limits (a callable: the model may be building)
            t0 = time.monotonic()
            ctx["lim"] = lim() if callable(lim) else lim
            ctx["wait"] = time.monotonic() - t0
        t0 = time.monotonic()
        if "modules" not in ctx:
            import torch

            ctx["modules"] = dict(model.named_modules())
            ctx["dens"] = lowering.layer_selection(model)
            ctx["order"] = {n: i for i, n in enumerate(ctx["modules"])}
            ctx["first"] = next(n for n, m in ctx["modules"].items()
                                if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
        density, dims = ctx["dens"].get(name, (1.0, "nchw"))
        for j in lowering.layer_jobs(name, ctx["modules"][name], rec, density, dims,
                                     method=args.method, structured=structured):
            keep = j.label == waves or (waves == "" and j.layer == ctx["first"]
                                        and j.pass_name == "forward")
            planned.append(plan_gemm(j, ctx["lim"], n_max, args.seed, truly_dense=True,
                                     keep=keep, n_base=n_base, n_whole=n_whole))
            bar.update(1)
        ctx["t"] += time.monotonic() - t0

    t0 = time.monotonic()
    stream = bool(n_max)
    model, recs, in_shape, info = capture(args, sparsity, log,
                                          on_layer=lower_layer if stream else None)
    t_capture = time.monotonic() - t0
    if not stream:
        for name in [n for n in recs if n != "__loss__"]:
            lower_layer(model, name, recs.pop(name))
    bar.close()
    del recs
    if waves == "":  # bare --waves: the first GEMM of the step
        args.waves = f"{ctx['first']}:forward"
    planned.sort(key=lambda j: (ctx["order"][j.layer], PASSES.index(j.pass_name)))
    # streamed: the lowering ran inside the capture's backward pass
    info["capture_s"] = round(t_capture - (ctx["t"] + ctx.get("wait", 0.0) if stream else 0.0),
                              2)
    info["lowering_s"] = round(ctx["t"], 2)
    info["model_wait_s"] = round(ctx.get("wait", 0.0), 2)  # for the build (cold cache)
    info["baseline_sample_ops"] = n_base
    return model, planned, in_shape, info


def run_one(args, sparsity: float, out_dir: Path, log, *, job_models=None,
            shared=None) -> dict:
    """The job at one sparsity: capture, lower, simulate, report (``results/compare*.json``).
    ``job_models``: the job's :class:`~sim.compare_models.JobModels` (started here when
    ``None``);
    ``shared``: baseline results kept across sparsities (:func:`_rtl_plan`)."""
    from tqdm import tqdm

    from sw import flops

    from . import gemm as gemm_mod

    t_start = time.monotonic()
    shared = {} if shared is None else shared
    rows, cols = args.array
    pes = rows * cols
    from sw import models

    name = models._canonical(args.model)
    if job_models is None:  # both builds run while the step trains (a cold cache)
        job_models = JobModels(rows, cols, name)
    default_ops, default_whole = SAMPLE_OPS.get(name, (0, 0))
    n_max = default_ops if args.sample_ops is None else args.sample_ops
    n_whole = getattr(args, "whole_ops", None)
    if n_whole is None:  # with --sample-ops given, GEMMs of at most that many ops run whole
        n_whole = default_whole if args.sample_ops is None else n_max
    t0 = time.monotonic()
    model, jobs, in_shape, info = _lower(args, sparsity,
                                         lambda: gemm_mod._limits(job_models.sizes("gemm")),
                                         n_max, log, n_whole)
    t_lower = time.monotonic() - t0
    t0 = time.monotonic()
    model_rtl = job_models.get("gemm")  # the compile ran beside the capture and the lowering
    info["model_wait_s"] = round(info["model_wait_s"] + time.monotonic() - t0, 2)
    flop = {r.name: r for r in flops.count(model, in_shape, convention="gemm")}
    log(f"{len(jobs)} GEMMs: step captured in {info['capture_s']} s, lowered and planned in "
        f"{info['lowering_s']} s" + (" (streamed layer by layer)" if n_max else "")
        + (f"; waited {info['model_wait_s']} s for the Verilator build"
           if info["model_wait_s"] >= 0.5 else ""))
    from . import compare_select  # every blob by the RTL select unit, exposure counted in RTL

    whole = compare_select.in_loop(jobs)  # their sparse GEMMs run only in the select loop
    gemms, only, plan = _rtl_plan(jobs, shared, whole)
    labels = []
    for i, kind, _kp, _first, count in plan:
        labels += [f"{jobs[i].label}" + ("" if kind == "sparse" else f" {kind}")] * count
    def select_loop(sampled=False):
        """The select loop on the select core: ``(model, loop, model wait, loop wall)``, and
        with ``sampled`` the select of the sampled GEMMs after it (its result and wall)."""
        t0 = time.monotonic()
        select_model = job_models.get("select")
        wait = time.monotonic() - t0
        t0 = time.monotonic()
        out = (select_model, compare_select.run(jobs, whole, select_model), wait,
               time.monotonic() - t0)
        if not sampled:
            return out
        t0 = time.monotonic()
        return (*out, compare_select.run_sampled(jobs, whole, select_model, out[1], log),
                time.monotonic() - t0)

    # a short job (main()) runs the batch in this process and the select loop beside it in a
    # simulator process of its own: one simulator per core of a 2-core machine, no cluster;
    # a sampled job (ResNet-50) runs all its select work (the loop's few whole GEMMs, then
    # the select of the sampled GEMMs: ~20-30 M cycles of the select core and the host's
    # blocks, indices and checks) beside the batch: it needs no result of the batch
    beside = None
    sampled_beside = bool(n_max)
    if getattr(args, "select_beside", False) or sampled_beside:
        beside = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="select-loop")
        beside_loop = beside.submit(select_loop, sampled_beside)
    t_batch = t0 = time.monotonic()
    with tqdm(total=len(gemms), desc="RTL layers x passes", unit="gemm",
              disable=args.quiet) as bar:
        def prog(done, total):
            if done == bar.n:
                return
            if done < len(gemms):
                bar.set_postfix_str(labels[done], refresh=False)
            bar.update(done - bar.n)

        try:
            results = gemm_mod.run_gemms(gemms, model=model_rtl, progress=prog,
                                         cycles_only=only,
                                         parallel=getattr(args, "client", None), labels=labels)
        except BaseException:
            if beside is not None:
                beside.shutdown(wait=False, cancel_futures=True)
            raise
    phases = {"gemms": round(time.monotonic() - t0, 1)}
    batch = results.stats
    if beside is not None:
        t1 = time.monotonic()
        select_model, loop, wait, phases["select_loop"], *rest = beside_loop.result()
        beside.shutdown()
        phases["select_after_gemms"] = round(time.monotonic() - t1, 1)  # not hidden
        t_sim = time.monotonic() - t_batch - wait
    else:
        select_model, loop, wait, phases["select_loop"] = select_loop()
        t_sim = phases["gemms"] + phases["select_loop"]
        rest = []
    phases["select_model_wait"] = round(wait, 1)
    phases["select_loop"] = round(phases["select_loop"], 1)
    if rest:  # ran beside the batch
        sel_sampled, phases["select_sampled"] = rest[0], round(rest[1], 1)
    else:
        t1 = time.monotonic()
        sel_sampled = compare_select.run_sampled(jobs, whole, select_model, loop, log)
        phases["select_sampled"] = round(time.monotonic() - t1, 1)
        t_sim += time.monotonic() - t1
    t_report = time.monotonic()
    looped = compare_select.gemm_results(jobs, whole, loop, select_model)
    if getattr(args, "waves", None) is not None:
        j = next((j for j in jobs if j.label == args.waves.removesuffix(" dense")), None)
        if j is None:
            raise SystemExit(f"--waves: no GEMM {args.waves!r}; one of: "
                             + ", ".join(j.label for j in jobs))
        wave = out_dir / "waves" / (args.waves.replace(":", "-").replace(" ", "-") + ".fst")
        log(f"waves of {args.waves}: building or reusing the tracing model")
        gemm_mod.dump_waves(j.d, j.s_dense if args.waves.endswith(" dense") else j.s, wave,
                            rows=rows, cols=cols)
        log(f"waves of {args.waves} -> {wave}")
    t0 = time.monotonic()
    per_job = _combine(jobs, results, plan, shared, looped)
    phases["combine_and_check"] = round(time.monotonic() - t0, 1)

    rows_out = []
    for j, rec in zip(jobs, per_job, strict=True):
        sp, dn = rec["sparse"], rec["dense"]
        fl = flop.get(j.layer)
        m, k, n = j.shape
        nnz = j.nnz
        macs = m * nnz
        r = sp["result"]
        has_ref = r is not None and j.ref is not None  # a streamed step has no references
        row = {
            "layer": j.layer, "pass": j.pass_name, "M": m, "K": k, "N": n,
            "density": round(j.density, 4), "s_density": round(nnz / (k * n), 4) if k * n else 0,
            "dense_macs": m * k * n,
            "flop_dense": int(getattr(fl, j.pass_name)) if fl else None,
            "flop_sparse": float(getattr(fl, j.pass_name + "_sparse")) if fl else None,
            "effectual_macs": macs,
            "rtl_cycles": sp["cycles"],
            "ideal_cycles": round(-(-m // rows) * nnz / cols, 1),
            "mac_bound_cycles": round(macs / pes, 1),
            "flop_cycles": (round(float(getattr(fl, j.pass_name + "_sparse")) / pes, 1)
                            if fl else None),
            "utilization": round(macs / (pes * sp["cycles"]), 4) if sp["cycles"] else 0.0,
            # hw.contract.cycles.schedule_cycles summed over the core operations (whole runs)
            "model_cycles": r.model_cycles if r is not None and sp["simulated"] == "whole"
            else None,
            "dense_rtl_cycles": dn["cycles"],
            "speedup": round(dn["cycles"] / sp["cycles"], 3) if sp["cycles"] else None,
            "max_speedup": round(m * j.nnz_dense / macs, 3) if macs else None,
            "core_runs": sp["runs"], "busy_cycles": sp["busy"],
            "stall_cycles": sp["stall"], "idle_cycles": sp["idle"],
            "select_w_cycles": j.select_w_cycles, "select_a_cycles": j.select_a_cycles,
            "bit_exact": sp["bit_exact"],
            "rel_err_vs_float": round(j.rel_err(r.c), 6) if has_ref else None,
            "rel_err_quant_only": (round(j.rel_err(j.d.astype(np.float64)
                                                   @ j.s_golden.astype(np.float64)), 6)
                                   if has_ref else None),
        }
        if row["model_cycles"] is not None and sp["cycles"]:
            row["model_error"] = round(row["model_cycles"] / sp["cycles"] - 1, 4)
        # the truly dense baseline of every model: one RTL run per block shape (exact)
        row.update(simulated=sp["simulated"], rtl_cycles_bound95=sp["bound"],
                   dense_simulated=dn["simulated"], dense_rtl_cycles_bound95=dn["bound"],
                   truly_dense_rtl_cycles=rec["truly_dense"]["cycles"],
                   truly_dense_simulated=rec["truly_dense"]["simulated"])
        rows_out.append(row)

    order = _step_order(jobs)
    tot = {
        "rtl_cycles": sum(r["rtl_cycles"] for r in rows_out),
        "dense_rtl_cycles": sum(r["dense_rtl_cycles"] for r in rows_out),
        "effectual_macs": sum(r["effectual_macs"] for r in rows_out),
        "dense_macs": sum(r["dense_macs"] for r in rows_out),
        "flop_sparse": sum(r["flop_sparse"] or 0 for r in rows_out),
        "flop_dense": sum(r["flop_dense"] or 0 for r in rows_out),
        # the former model (formula cycles, layer order, both passes behind the previous GEMM)
        "select_exposed_cycles_formula": exposed_select_cycles(
            [rows_out[i]["rtl_cycles"] for i in order], [jobs[i].select_cycles for i in order]),
    }
    t0 = time.monotonic()
    select = compare_select.apply(jobs, whole, loop, rows_out, order, log, sel_sampled)
    phases["select_exposure"] = round(time.monotonic() - t0, 1)
    tot["select_exposed_cycles"] = select["exposed_cycles"]
    tot["select_exposed_pct_of_gemm"] = round(100 * select["exposed_cycles"] /
                                              tot["rtl_cycles"], 2) if tot["rtl_cycles"] else 0
    tot["select_exposed_source"] = select["source"]
    tot["utilization"] = round(tot["effectual_macs"] / (pes * tot["rtl_cycles"]), 4) \
        if tot["rtl_cycles"] else 0
    tot["speedup"] = round(tot["dense_rtl_cycles"] / tot["rtl_cycles"], 3) \
        if tot["rtl_cycles"] else 0
    if rows_out and all(r.get("truly_dense_rtl_cycles") is not None for r in rows_out):
        tot["truly_dense_rtl_cycles"] = sum(r["truly_dense_rtl_cycles"] for r in rows_out)
        tot["speedup_vs_truly_dense"] = round(tot["truly_dense_rtl_cycles"] /
                                              tot["rtl_cycles"], 3) if tot["rtl_cycles"] else 0
    tot["all_bit_exact"] = all(r["bit_exact"] for r in rows_out)
    sampled = [r for r in rows_out if r.get("simulated", "whole") != "whole"]
    tot["model_worst_error"] = max((abs(r["model_error"]) for r in rows_out
                                    if "model_error" in r), default=None)
    summary = {
        "model": info["model"], "sparsity": sparsity, "array": f"{rows}x{cols}",
        "method": args.method, "distribution": args.distribution, "period": args.period,
        "structured": args.structured, "data": info.get("data"),
        "train_steps": info["steps"], "batch": info["batch"],
        "train_batch": info.get("train_batch"), "gemms": len(jobs),
        "totals": tot,
        "passes": _pass_totals(rows_out),
        "simulation": {
            **_simulation(batch, loop, t_sim, sel_sampled),
            "preload_io_s": round(batch.io, 2),
            "lost_workers": batch.lost_workers,
            "lowering_s": info["lowering_s"], "capture_s": info["capture_s"],
            "model_wait_s": info["model_wait_s"],
            "capture_and_lowering_s": round(t_lower, 2), "total_wall_s": None,
            "sampled_gemms": len(sampled),
            "sample_ops": n_max, "whole_ops": max(n_max, n_whole) if n_max else 0,
            "baseline_sample_ops": info["baseline_sample_ops"],
            "rtl_cycles_bound95": round(math.sqrt(sum(r["rtl_cycles_bound95"] ** 2
                                                      for r in sampled)), 1),
        },
        "threshold_select": compare_select.describe(select),
        "select": select,
        "train": info.get("final", {}),
    }
    if info["model"] == "resnet50" and round(sparsity, 2) in PAPER_TABLE6:
        summary["paper_table6"] = PAPER_TABLE6[round(sparsity, 2)]
    phases["report"] = round(time.monotonic() - t_report, 1)
    summary["simulation"]["phases_s"] = {"capture": info["capture_s"],
                                         "lowering": info["lowering_s"],
                                         "model_wait": info["model_wait_s"], **phases}
    summary["simulation"]["total_wall_s"] = round(time.monotonic() - t_start, 1)
    return {"rows": rows_out, "summary": summary, "model_rtl": model_rtl}


def run(args) -> dict:
    """The job at every ``--sparsity``; outputs under ``--out`` (see the module docstring)."""
    import torch
    from tqdm import tqdm

    t_start = time.monotonic()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(msg):
        tqdm.write(f"[compare] {msg}")

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from sw import models

    # both models build (cold cache) while the first step trains
    job_models = JobModels(*args.array, models._canonical(args.model))
    runs, sweep, shared = [], None, {}
    for sp in args.sparsity:
        res = run_one(args, sp, out_dir, log, job_models=job_models, shared=shared)
        model_rtl = res.pop("model_rtl")
        if sweep is None and not args.no_sweep:
            from . import sweep as sweep_mod

            log("sweep: 64x576 @ 576x64 at sparsity 0..95 %")
            t0 = time.monotonic()
            sweep = sweep_mod.run_sweep(array=args.array, out=out_dir, quiet=True,
                                        model=model_rtl, parallel=getattr(args, "client", None))
            res["summary"]["simulation"]["phases_s"]["sweep"] = round(time.monotonic() - t0, 1)
        res["summary"]["simulation"]["total_wall_s"] = round(time.monotonic() - t_start, 1)
        t0 = time.monotonic()
        write_outputs(out_dir, res["rows"], res["summary"], sweep, args,
                      tag=_tag(args, sp))
        log(f"outputs written in {time.monotonic() - t0:.1f} s; phases (s): "
            + ", ".join(f"{k} {v}" for k, v in res["summary"]["simulation"]["phases_s"].items()))
        runs.append(res)
        if not res["summary"]["totals"]["all_bit_exact"]:
            bad = [f"{r['layer']}:{r['pass']}" for r in res["rows"] if not r["bit_exact"]]
            argv = list(getattr(args, "argv", []))
            if "--waves" in argv:
                i = argv.index("--waves")
                bare = i + 1 == len(argv) or argv[i + 1].startswith("--")
                del argv[i:i + (1 if bare else 2)]
            again = " ".join(shlex.quote(a) for a in argv)
            raise SystemExit(f"RTL results differ from the integer reference: {bad}; waveform "
                             f"of one: python -m sim.compare {again} --waves "
                             f"{shlex.quote(bad[0])}")
        bad = res["summary"]["select"]["mismatches"]
        if bad:
            again = " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
            raise SystemExit(f"the RTL select unit's blobs differ from the host's Top-K: "
                             f"{bad[0]} ({len(bad)} in all); rerun: python -m sim.compare "
                             f"{again}")
    if len(runs) > 1:
        write_table(out_dir, runs, args)
    out = dict(runs[0])
    out["sweep"] = sweep
    out["runs"] = runs
    return out


def _tag(args, sparsity) -> str:
    """File-name tag: ``""`` for the default digits job, else ``_<model>`` (``_s<pct>`` too
    when several sparsities run)."""
    tag = "" if args.model in ("digits", "digits_cnn") else f"_{args.model}"
    if len(args.sparsity) > 1:
        tag += f"_s{round(sparsity * 100)}"
    return tag


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def _write_csv(fh, rows) -> None:
    """Rows may differ in keys (``model_error`` only where a GEMM ran whole): every key is a
    column, empty where a row lacks it."""
    w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)),
                       restval="")
    w.writeheader()
    w.writerows(rows)


def write_outputs(out: Path, rows, summary, sweep, args, tag: str = "") -> None:
    stem = out / f"compare{tag}"
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        _write_csv(fh, rows)
    stem.with_suffix(".json").write_text(json.dumps({"summary": summary, "layers": rows},
                                                    indent=1))
    cols = ["layer", "pass", "M", "K", "N", "s_density", "dense_macs", "flop_sparse",
            "effectual_macs", "rtl_cycles", "ideal_cycles", "utilization", "dense_rtl_cycles",
            "speedup", "select_w_cycles", "select_a_cycles", "bit_exact", "rel_err_vs_float",
            "rel_err_quant_only"]
    for extra in ("truly_dense_rtl_cycles", "simulated", "rtl_cycles_bound95",
                  "dense_simulated", "truly_dense_simulated", "select_cycles",
                  "select_simulated", "select_cycles_bound95"):
        if any(extra in r for r in rows) and (extra != "select_cycles" or any(
                "select_simulated" in r for r in rows)):
            cols.insert(cols.index("bit_exact"), extra)
    t = summary["totals"]
    s = summary["simulation"]
    lines = [
        f"# RTL vs FLOP model: {summary['model']}, SWAT-U at {summary['sparsity']:.0%} sparsity,"
        f" {summary['array']} core",
        "",
        f"{summary['gemms']} GEMMs (3 passes per layer), one training step "
        f"(batch {summary['batch']}, after {summary['train_steps']} training steps"
        + (f" at batch {summary['train_batch']}" if summary.get("train_batch")
           and summary["train_batch"] != summary["batch"] else "") + "). "
        f"All bit-exact vs `sw.intref.gemm`: **{t['all_bit_exact']}**.",
        "",
        f"Totals: RTL cycles {t['rtl_cycles']:,}; same core on the dense operands "
        f"{t['dense_rtl_cycles']:,} (speedup **{t['speedup']}×**)"
        + (f", on truly dense operands {t['truly_dense_rtl_cycles']:,} "
           f"(**{t['speedup_vs_truly_dense']}×**)" if "truly_dense_rtl_cycles" in t else "")
        + f"; effectual MACs "
        f"{t['effectual_macs']:,} of {t['dense_macs']:,} dense; FLOP model (sparse) "
        f"{t['flop_sparse']:,.0f}; utilization **{t['utilization']:.1%}**.",
        "",
        f"Simulation: {s['core_operations']} core operations, {s['simulated_cycles']:,} cycles "
        f"in {s['sim_wall_s']} s in {s['processes']} simulator processes (select loop "
        f"included; {s['cycles_per_s']:,} simulated cycles per wall second of one process, "
        f"buffer preload included; {s['cycles_per_cpu_s']:,} per CPU second of the "
        f"simulator); whole job {s['total_wall_s']} s.",
        "",
        "Threshold-select cycles: " + summary["threshold_select"] + ".",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
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
              "integers (quantization error alone); `simulated`: what of the GEMM ran on the "
              "RTL (whole, or n of N core operations with the rest extrapolated by the "
              "calibrated cycle model; `rtl_cycles_bound95` its 95 % bound; truly dense: one "
              "run per block size, exact); `select_cycles`: the threshold-select unit's cycles "
              "of the GEMM's blobs (with its tensor's pass 1 on the first GEMM that needs it), "
              "`select_simulated` what of them ran on the RTL unit and what was extrapolated "
              "(`select_cycles_bound95` its 95 % bound); empty `rel_err_*`: the step was "
              "streamed (no float references) or the GEMM sampled."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    _plots(out, rows, sweep, summary, tag)


def write_table(out: Path, runs, args) -> None:
    """``compare_<model>_table.{md,json}`` and ``speedup_<model>.png``: the speedup of each pass
    at each sparsity beside the paper's Table 6 (ResNet-50) and 1/density."""
    lines = [f"# {args.model}: speedup per pass on the RTL core ({runs[0]['summary']['array']}, "
             f"{args.method}, {args.distribution})", "",
             "Speedup = RTL cycles of the same core on the operands without Top-K (natural "
             "zeros such as ReLU's still skipped, as on the paper's sparse accelerator) / RTL "
             "cycles with Top-K; `vs truly dense` uses the same core on operands with no zero "
             "at all. Backward = input gradient + weight gradient, as the paper groups it.", "",
             "| sparsity | pass | RTL cycles | ± 95 % | dense-operand cycles | speedup | "
             "vs truly dense | 1/density | paper Table 6 |", "|" + "---|" * 9]
    table = []
    for res in runs:
        s = res["summary"]
        sp = s["sparsity"]
        paper = s.get("paper_table6", {})
        bound = {p: math.sqrt(sum((r.get("rtl_cycles_bound95") or 0) ** 2 for r in res["rows"]
                                  if r["pass"] in ((p,) if p != "backward" else
                                                   ("backward_input", "backward_weight"))))
                 for p in s["passes"]}
        for p, rec in s["passes"].items():
            row = {"sparsity": sp, "pass": p, **rec, "bound95": round(bound[p], 1),
                   "inverse_density": round(1 / (1 - sp), 3), "paper": paper.get(p)}
            table.append(row)
            lines.append(f"| {sp:.0%} | {p} | {rec['rtl_cycles']:,} | {bound[p]:,.0f} | "
                         f"{rec['dense_rtl_cycles']:,} | {rec['speedup']}× | "
                         f"{rec.get('speedup_vs_truly_dense', '—')}× | {1 / (1 - sp):.1f}× | "
                         f"{paper.get(p, '—')} |")
    stem = out / f"compare_{args.model}_table"
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps(table, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sps = [res["summary"]["sparsity"] for res in runs]
    for p, mark in (("forward", "o"), ("backward", "s"), ("backward_input", "^"),
                    ("backward_weight", "v")):
        ax.plot(sps, [res["summary"]["passes"][p]["speedup"] for res in runs], mark + "-",
                label=f"RTL {p}")
    ax.plot(sps, [1 / (1 - sp) for sp in sps], "k--", label="1 / density")
    for p, mark in (("forward", "o"), ("backward", "s")):
        pts = [(sp, PAPER_TABLE6[round(sp, 2)][p]) for sp in sps if round(sp, 2) in PAPER_TABLE6]
        if pts and args.model in ("resnet50", "resnet-50"):
            ax.plot(*zip(*pts, strict=True), mark, mfc="none", ms=11, label=f"paper {p}")
    ax.set_xlabel("sparsity")
    ax.set_ylabel("speedup vs the same core on dense operands")
    ax.set_title(f"{args.model}: speedup per pass")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"speedup_{args.model}.png", dpi=120)
    plt.close(fig)


def _plots(out: Path, rows, sweep, summary, suffix: str) -> None:
    from .compare_plots import plot_breakdown, plot_pass_speedups

    plot_pass_speedups(summary, out / f"speedup_passes{suffix}.png")
    plot_breakdown(rows, summary, out / f"cycles_breakdown{suffix}.png")
    if sweep:
        from .sweep import plot_sweep

        plot_sweep(sweep, out / "speedup_sweep.png")


def main(argv=None) -> int:
    from sw import models

    from .compare_args import parse

    args = parse(argv, ["digits", *models.names()], __doc__.split("\n")[0])
    args.argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("COCOTB_REWRITE_ASSERTION_FILES", "test_*.py cocotb_*.py")
    if args.sweep:
        from .sweep import main as sweep_main

        return sweep_main(["--array", f"{args.array[0]}x{args.array[1]}", "--out",
                           str(args.out)])
    t0 = time.monotonic()
    from .cluster import for_args
    from .compare_models import SHORT_JOBS

    # a short job (the digits step: ~1 s of simulation) does not start a cluster (~2.3 s of CPU
    # and 3 s of wall for a LocalCluster of 2 workers here): its batch runs in a simulator
    # process driven from this one, and the select loop in a second one, beside it when there
    # is a core for each simulator and one for this process, else after it (--workers N or
    # --scheduler still spread the batch)
    workers, args.select_beside = args.workers, False
    if not workers and not args.scheduler and models._canonical(args.model) in SHORT_JOBS:
        workers, args.select_beside = 1, (os.cpu_count() or 1) >= 3
    with for_args(workers, args.scheduler) as args.client:
        res = run(args)
    for r in res["runs"]:
        s = r["summary"]
        t = s["totals"]
        print(f"{s['model']} at {s['sparsity']:.0%}: {s['gemms']} GEMMs "
              f"bit-exact={t['all_bit_exact']}; RTL cycles {t['rtl_cycles']:,} vs dense "
              f"{t['dense_rtl_cycles']:,} (speedup {t['speedup']}x"
              + (f"; {t['speedup_vs_truly_dense']}x vs truly dense"
                 if "speedup_vs_truly_dense" in t else "") + "), utilization "
              f"{t['utilization']:.1%}; {s['simulation']['cycles_per_s']:,} simulated cycles/s "
              f"per simulator process ({s['simulation']['processes']} processes)")
    print(f"wall {time.monotonic() - t0:.1f} s -> {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
