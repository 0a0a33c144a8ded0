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
blobs are not made in RTL (nor those of an ``S`` above :data:`STREAM_CAP` elements): their
select cycles stay the formula's
(``hw.contract.cycles.select_cycles``) and their exposure the double-buffer model's
(``exposed_select_cycles`` in step order), added and named in ``summary.select.source``."""

from __future__ import annotations

import numpy as np

from hw.contract.cycles import exposed_select_cycles

from . import select_loop
from .select_ops import SelectFailed

__all__ = ["in_loop", "run", "gemm_results", "apply", "describe", "STREAM_CAP"]

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


def apply(jobs, whole, res, rows_out, order, log) -> dict:
    """Fill ``rows_out``'s select columns from the loop's run ``res`` on the jobs ``whole``
    (:func:`run`), return the ``summary["select"]`` record (``mismatches`` non-empty = a
    failure)."""
    sampled = [i for i in range(len(jobs)) if i not in set(whole)]
    per = dict(zip(whole, res.jobs, strict=True))
    layer_w, layer_a = {}, {}
    for i, rec in per.items():
        j = jobs[i]
        if j.pass_name == "forward":
            layer_w[j.layer] = layer_w.get(j.layer, 0) + rec["select_cycles"]
        elif j.pass_name == "backward_weight":
            layer_a[j.layer] = layer_a.get(j.layer, 0) + rec["select_cycles"]
    for i, row in enumerate(rows_out):
        rec = per.get(i)
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
    seq = [i for i in order if i in set(sampled)]
    extra = exposed_select_cycles([rows_out[i]["rtl_cycles"] for i in seq],
                                  [jobs[i].select_cycles for i in seq]) if seq else 0
    prev = None  # each formula GEMM's share of `extra`: its blob minus the GEMM before it
    for i in seq:
        own = jobs[i].select_cycles
        rows_out[i]["select_exposed_cycles"] = own if prev is None else max(0, own - prev)
        prev = rows_out[i]["rtl_cycles"]
    source = "rtl" if not sampled else (f"rtl ({len(whole)} whole GEMMs) + formula "
                                        f"({len(sampled)} sampled or larger GEMMs)")
    rec = {
        "source": source,
        "exposed_cycles": exposed + extra,
        "exposed_cycles_rtl": exposed,
        "exposed_cycles_formula": extra,
        "select_cycles_rtl": res.select_cycles,
        "blobs": res.blobs, "blobs_rtl_equal": res.blobs_rtl, "blobs_host": res.blobs_host,
        "host_reasons": res.host_reasons,
        "thresholds": res.thresholds,
        "order": [jobs[whole[k]].label for k in res.order],
        "gemm_cycles_in_loop": res.gemm_cycles,
        # the table's GEMMs of these jobs are the loop's runs (one RTL run each)
        "gemm_cycles_source": "select loop" if whole else None,
        "mismatches": res.mismatches,
        "simulated_cycles": res.ticks, "wall_s": round(res.wall, 3), "cpu_s": round(res.cpu, 3),
        "cycles_per_s": round(res.ticks / res.wall) if res.wall > 0 else None,
        "cycles_per_cpu_s": round(res.ticks / res.cpu) if res.cpu > 0 else None,
    }
    log(describe(rec))
    return rec


def describe(rec) -> str:
    """One paragraph for the logs and the markdown."""
    host = ""
    if rec["blobs_host"]:
        why = "; ".join(f"{n}: {r}" for r, n in rec["host_reasons"].items())
        host = f", {rec['blobs_host']} written by the host ({why})"
    formula = " + formula for sampled GEMMs" if rec["exposed_cycles_formula"] else ""
    return (f"threshold select in RTL ({rec['source']}): {rec['blobs']} blobs, "
            f"{rec['blobs_rtl_equal']} written by the unit and equal to the host's word for "
            f"word{host}; {rec['select_cycles_rtl']:,} select cycles, "
            f"{rec['exposed_cycles']:,} not hidden behind GEMMs (core counter "
            f"sel.exposed_cycles{formula}); "
            f"{len(rec['mismatches'])} mismatches")
