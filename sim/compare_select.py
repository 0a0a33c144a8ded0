"""The compare job's threshold-select figures, from the RTL unit in the loop.

:func:`run` runs the step's whole sparse GEMMs (:func:`in_loop`) through
:func:`sim.select_loop.run_step`: every ``S`` blob written by the core's threshold-select unit
into one S buffer while the previous GEMM reads the other, the GEMM reading what the unit wrote,
each blob checked word for word against the host's (``sw.int_topk`` through ``sw.lowering``).
That is the only RTL run of those GEMMs: the job's table takes their cycles, counters and ``C``
from it (:func:`gemm_results`; the same core operations :func:`sim.gemm.run_gemms` would run,
so the same counts), and only the baselines and sampled GEMMs go through ``run_gemms``.
:func:`apply` fills the rows' select columns and the summary: ``select_cycles`` of each GEMM's
blobs and ``select_w_cycles`` / ``select_a_cycles`` of each layer are the unit's own
``status.cycles`` (pass 1 on the tensor + pass 2 of each block),
``summary.totals.select_exposed_cycles`` is the core's ``sel.exposed_cycles`` counter over the
step. GEMMs the job samples (``--sample-ops``, ResNet-50) are not simulated whole, so their
blobs are not made in the loop: :func:`run_sampled` makes them on the RTL unit where it fits
(:mod:`sim.select_sampled`: every ``W`` blob and pass 1, the ``A`` blobs of the sampled core
operations and the ``A`` pass 1 of a random sample of layers, each blob checked word for word;
the rest extrapolated from the formula calibrated on those) and their exposure comes from the
double buffer modelled by S block (:func:`sim.select_sampled.exposed_model`), added and named in
``summary.select.source``; an ``S`` above :data:`STREAM_CAP` elements that is not sampled keeps
the formula (``hw.contract.cycles.select_cycles``, ``exposed_select_cycles``)."""

from __future__ import annotations

import math

import numpy as np

from hw.contract.cycles import exposed_select_cycles

from . import select_loop
from .select_ops import SelectFailed

__all__ = ["in_loop", "run", "run_sampled", "gemm_results", "apply", "describe", "STREAM_CAP"]

#: GEMMs whose dense ``S`` has more elements than this are left to the formula like sampled
#: ones (streaming it costs ``size / 8`` simulated cycles; keeps large models' jobs sane)
STREAM_CAP = 20_000_000


def in_loop(jobs) -> list:
    """Indices of the jobs whose sparse GEMM runs whole in the select loop (the others are
    sampled or above :data:`STREAM_CAP`: their select figures stay the formula's)."""
    return [i for i, j in enumerate(jobs)
            if j.kinds["sparse"].sample is None and j.s_dense.size <= STREAM_CAP]


def run(jobs, whole, model_rtl, *, check_c: bool = False):
    """The select loop (:func:`sim.select_loop.run_step`) on the sparse GEMMs ``whole`` of
    ``jobs`` (:func:`in_loop`): their only RTL run, whose cycles and ``C`` the job's table
    takes (:func:`gemm_results`). A unit's error code exits with one line."""
    try:
        return select_loop.run_step([jobs[i] for i in whole], model=model_rtl, check_c=check_c)
    except SelectFailed as e:  # an error code of the unit: one line, no traceback
        raise SystemExit(f"compare: {e}") from None


def run_sampled(jobs, whole, model_rtl, loop, log):
    """The select of the sampled GEMMs (:mod:`sim.select_sampled`: ``W`` whole and the ``A``
    blobs of the sampled core operations on the RTL unit, the rest extrapolated), ``None``
    when every GEMM ran in the loop. A unit's error code exits with one line."""
    from . import select_sampled

    plans = {i: j.select for i, j in enumerate(jobs)
             if i not in set(whole) and getattr(j, "select", None) is not None}
    if not plans:
        return None
    try:
        return select_sampled.run(plans, model_rtl, done_pairs=loop.thresholds, log=log)
    except SelectFailed as e:
        raise SystemExit(f"compare: {e}") from None


def gemm_results(jobs, whole, res, model_rtl) -> dict:
    """``{job index: sim.gemm.GemmResult}`` of the GEMMs the select loop ran (``res``), as
    :func:`sim.gemm.run_gemms` would report them (the same core operations, so the same
    counters; ``model_cycles`` from the cycle model)."""
    from .gemm import GemmResult, model_cycles

    lim_rows, lim_cols = model_rtl.attrs["rows"], model_rtl.attrs.get("cols", 1)
    est = model_cycles([(jobs[i].d, jobs[i].s) for i in whole], model_rtl)
    out = {}
    for i, rec, mc in zip(whole, res.jobs, est, strict=True):
        m, k, n = jobs[i].shape
        nnz = jobs[i].nnz
        out[i] = GemmResult(c=rec["c"].astype(np.int32), cycles=rec["cycles"], macs=m * nnz,
                            busy_cycles=rec["busy"], stall_cycles=rec["stall"],
                            idle_cycles=rec["idle"], runs=rec["runs"], rows=lim_rows,
                            cols=lim_cols, shape=(m, k, n), nnz=nnz, model_cycles=mc)
    return out


def apply(jobs, whole, res, rows_out, order, log, sampled=None) -> dict:
    """Fill ``rows_out``'s select columns from the loop's run ``res`` on the jobs ``whole``
    (:func:`run`) and, for the others, from ``sampled`` (:func:`run_sampled`; ``None``: the
    formula), return the ``summary["select"]`` record (``mismatches`` non-empty = a
    failure)."""
    sampled_idx = [i for i in range(len(jobs)) if i not in set(whole)]
    per = dict(zip(whole, res.jobs, strict=True))
    srec = sampled.jobs if sampled is not None else {}
    layer_w, layer_a = {}, {}
    for i, rec in [*per.items(), *srec.items()]:
        j = jobs[i]
        if j.pass_name == "forward":
            layer_w[j.layer] = layer_w.get(j.layer, 0) + rec["select_cycles"]
        elif j.pass_name == "backward_weight":
            layer_a[j.layer] = layer_a.get(j.layer, 0) + rec["select_cycles"]
    for i, row in enumerate(rows_out):
        rec = per.get(i)
        if rec is None and i in srec:
            s = srec[i]
            row.update(select_cycles=s["select_cycles"],
                       select_source="rtl" if s["rtl_cycles"] == s["select_cycles"]
                       else "rtl + extrapolated",
                       select_simulated=s["simulated"], select_cycles_bound95=s["bound95"],
                       select_blobs=s["blobs"], select_blobs_rtl=s["blobs_rtl"])
            continue
        if rec is None:
            row.update(select_cycles=jobs[i].select_cycles, select_source="formula")
            continue
        row.update(select_cycles=rec["select_cycles"], select_source="rtl",
                   select_exposed_cycles=rec["exposed_cycles"], select_blobs=rec["blobs"],
                   select_blobs_host=rec["blobs_host"])
    for row in rows_out:
        if row["layer"] in layer_w:
            row["select_w_cycles"] = layer_w[row["layer"]]
        if row["layer"] in layer_a:
            row["select_a_cycles"] = layer_a[row["layer"]]
    exposed = res.exposed_cycles
    seq = [i for i in order if i in set(sampled_idx)]
    extra, model = 0, None
    if seq and sampled is not None:  # the whole step replayed (the loop's GEMMs included)
        extra, model = _sampled_exposure(jobs, whole, res, order, rows_out, sampled)
        exposed = 0
    elif seq:
        extra = exposed_select_cycles([rows_out[i]["rtl_cycles"] for i in seq],
                                      [jobs[i].select_cycles for i in seq])
        prev = None  # each formula GEMM's share of `extra`: its blob minus the GEMM before it
        for i in seq:
            own = jobs[i].select_cycles
            rows_out[i]["select_exposed_cycles"] = own if prev is None else max(0, own - prev)
            prev = rows_out[i]["rtl_cycles"]
    if not sampled_idx:
        source = "rtl"
    elif sampled is not None:
        chk = model["loop_check"]
        loop = ("" if chk is None else
                f"; the select loop's run of the {chk['gemms']} whole GEMMs alone as the "
                f"check: core counter {chk['core_counter']:,}, replay {chk['replay']:,}")
        source = (f"model (the loop's schedule replayed by S block over the step's "
                  f"{model['gemms']} GEMMs: {len(whole)} whole, their per-block RTL cycles "
                  f"from the select loop, {len(seq)} sampled, their extrapolated GEMM cycles, "
                  + ("select cycles all from the RTL unit"
                     if model["select_cycles_rtl"] == model["select_cycles"] else
                     f"select cycles {model['select_rtl_pct']} % from the RTL unit, the rest "
                     "extrapolated") + f"{loop})")
    else:
        source = (f"rtl ({len(whole)} whole GEMMs) + formula "
                  f"({len(sampled_idx)} sampled or larger GEMMs)")
    rec = {
        "source": source,
        "exposed_cycles": exposed + extra,
        # the core's counter over the loop's GEMMs (0 when the step is replayed: it is then
        # only the check, in ``sampled.loop_check``)
        "exposed_cycles_rtl": exposed,
        "exposed_cycles_formula": extra if sampled is None else 0,
        "exposed_cycles_model": extra if sampled is not None else 0,
        "select_cycles_rtl": res.select_cycles,
        "blobs": res.blobs, "blobs_rtl_equal": res.blobs_rtl, "blobs_host": res.blobs_host,
        "host_reasons": res.host_reasons,
        "thresholds": res.thresholds,
        "order": [jobs[whole[k]].label for k in res.order],
        "gemm_cycles_in_loop": res.gemm_cycles,
        # the table's GEMMs of these jobs are the loop's runs (one RTL run each)
        "gemm_cycles_source": "select loop" if whole else None,
        "mismatches": res.mismatches + (sampled.mismatches if sampled is not None else []),
        "simulated_cycles": res.ticks, "wall_s": round(res.wall, 3), "cpu_s": round(res.cpu, 3),
        "cycles_per_s": round(res.ticks / res.wall) if res.wall > 0 else None,
        "cycles_per_cpu_s": round(res.ticks / res.cpu) if res.cpu > 0 else None,
    }
    if model is not None:
        rec["sampled"] = model
    log(describe(rec))
    return rec


def _sampled_exposure(jobs, whole, res, order, rows_out, sampled):
    """Exposure of the whole step (:func:`sim.select_sampled.replay`): the GEMMs the loop ran
    (``whole``, its run ``res``: measured per-block GEMM and blob cycles, pass-1 cycles) and the
    sampled ones (each GEMM's RTL cycles, extrapolated, shared over its S blocks by the cycle
    model; each blob's cycles the RTL unit's or extrapolated) in one step, in the loop's order
    (:func:`sim.select_loop.step_order` on these cycles), so that no GEMM's select is left
    without the earlier GEMMs it hides behind (the loop runs its few GEMMs alone: ResNet-50's
    fc). The loop's own run is the check: the same replay over its GEMMs alone against the
    core's counter. Fills every row's ``select_exposed_cycles``; returns ``(exposed,
    summary["select"]["sampled"])``."""
    from .select_sampled import replay

    pos = {i: n for n, i in enumerate(whole)}
    loop_pass1 = {k: v["cycles"] for k, v in res.thresholds.items()}  # measured on the RTL
    pass1 = dict(loop_pass1)  # + the sampled GEMMs' below
    blocks, keys = [], []
    for i in order:
        if i in pos:
            blocks.append(res.blocks[pos[i]])
            keys.append(res.keys[pos[i]])
            continue
        p, rec = jobs[i].select, sampled.jobs[i]
        tot = sum(p.gemm_est) or 1.0
        blocks.append([(rows_out[i]["rtl_cycles"] * e / tot, c, e, x) for e, c, x in
                       zip(p.gemm_est, rec["blob_cycles"], rec["blob_est"], strict=True)])
        keys.append(p.sel.key)
        if rec["pass1"] is not None:
            pass1.setdefault(p.sel.key, rec["pass1"][0])
    sub = [jobs[i] for i in order]
    total, share, run_order = replay(sub, blocks, keys, pass1)
    for n, own in share.items():
        rows_out[order[n]]["select_exposed_cycles"] = own
    check = None
    if whole:
        loop_jobs = [jobs[i] for i in whole]
        replayed, own, _o = replay(loop_jobs, [res.blocks[n] for n in range(len(whole))],
                                   [res.keys[n] for n in range(len(whole))], loop_pass1,
                                   order=res.order)
        check = {"gemms": len(whole), "core_counter": res.exposed_cycles,
                 "replay": replayed,
                 "per_gemm": [(loop_jobs[n].label, res.jobs[n]["exposed_cycles"], own[n])
                              for n in res.order]}
    seq = [i for i in order if i not in pos]
    recs = [sampled.jobs[i] for i in seq]
    sel_total = sum(r["select_cycles"] for r in recs)
    sel_rtl = sum(r["rtl_cycles"] for r in recs)
    model = {
        "gemms": len(order), "sampled_gemms": len(seq), "whole_gemms": len(whole),
        "exposed_cycles": total, "loop_check": check,
        "select_cycles": sel_total, "select_cycles_rtl": sel_rtl,
        "select_rtl_pct": round(100 * sel_rtl / sel_total, 1) if sel_total else 100.0,
        "select_cycles_bound95": round(math.sqrt(sum(r["bound95"] ** 2 for r in recs)), 1),
        "blobs": sampled.blobs, "blobs_rtl_equal": sampled.blobs_rtl,
        "checks": sampled.checks, "mismatches": sampled.mismatches,
        "order": [sub[n].label for n in run_order],
        "simulated_cycles": sampled.ticks, "wall_s": round(sampled.wall, 3),
        "cpu_s": round(sampled.cpu, 3),
    }
    return total, model


def describe(rec) -> str:
    """One paragraph for the logs and the markdown."""
    host = ""
    if rec["blobs_host"]:
        why = "; ".join(f"{n}: {r}" for r, n in rec["host_reasons"].items())
        host = f", {rec['blobs_host']} written by the host ({why})"
    how = "core counter sel.exposed_cycles" + (
        " + formula for sampled GEMMs" if rec["exposed_cycles_formula"] else "")
    sampled = ""
    smp = rec.get("sampled")
    if smp:
        c = smp["checks"]
        how = "the loop's schedule replayed over the whole step, sampled GEMMs included"
        sampled = (f"; sampled GEMMs: {smp['blobs_rtl_equal']} of {smp['blobs']} blobs made "
                   f"by the unit and equal to the host's word for word, {c['pass1_rtl']} "
                   f"pass 1 on the RTL, {smp['select_cycles_rtl']:,} of "
                   f"{smp['select_cycles']:,} select cycles from the RTL ("
                   + ("nothing extrapolated" if smp["select_cycles_rtl"] == smp["select_cycles"]
                      else f"the rest extrapolated, ±{smp['select_cycles_bound95']:,.0f} at "
                      "95 %") + f"; formula vs "
                   f"RTL worst error: pass 1 {c['pass1_worst_error']:.2%}, blob "
                   f"{c['blob_exact_worst_error']:.2%} given the kept matrix (on "
                   f"{c['blobs_exact_checked']} A blobs), "
                   f"{c['blob_estimate_worst_error']:.2%} from its non-zero count)")
    return (f"threshold select in RTL ({rec['source']}): {rec['blobs']} blobs, "
            f"{rec['blobs_rtl_equal']} written by the unit and equal to the host's word for "
            f"word{host}; {rec['select_cycles_rtl']:,} select cycles{sampled}; "
            f"{rec['exposed_cycles']:,} not hidden behind GEMMs ({how}); "
            f"{len(rec['mismatches'])} mismatches")
