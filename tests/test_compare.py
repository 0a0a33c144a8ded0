"""sim.compare: the main job end to end (the lowering itself: tests/test_lowering.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.slow
def test_compare_job_writes_results(tmp_path):
    from sim import compare

    out = tmp_path / "res"
    assert compare.main(["--steps", "20", "--out", str(out), "--no-sweep", "--quiet"]) == 0
    data = json.loads((out / "compare.json").read_text())
    tot = data["summary"]["totals"]
    assert tot["all_bit_exact"] is True
    layers = data["layers"]
    assert [(r["layer"], r["pass"]) for r in layers] == [
        ("features.0", "forward"), ("features.0", "backward_weight"),
        ("features.3", "forward"), ("features.3", "backward_input"),
        ("features.3", "backward_weight"), ("features.7", "forward"),
        ("features.7", "backward_input"), ("features.7", "backward_weight"),
        ("classifier", "forward"), ("classifier", "backward_input"),
        ("classifier", "backward_weight")]
    for r in layers:
        assert r["bit_exact"] is True
        assert r["effectual_macs"] == 0 or r["rtl_cycles"] >= r["ideal_cycles"] > 0
        assert r["dense_rtl_cycles"] >= r["rtl_cycles"]
    assert tot["rtl_cycles"] == sum(r["rtl_cycles"] for r in layers)
    assert tot["dense_rtl_cycles"] == sum(r["dense_rtl_cycles"] for r in layers)
    assert tot["speedup"] == round(tot["dense_rtl_cycles"] / tot["rtl_cycles"], 3)
    # truly dense (no zero in S): no fewer cycles than the operands without Top-K, and no
    # fewer than the MAC bound of every dense multiply-accumulate on the 64 PEs
    for r in layers:
        assert r["truly_dense_rtl_cycles"] >= r["dense_rtl_cycles"]
        assert r["truly_dense_rtl_cycles"] >= r["dense_macs"] / 64
    assert tot["truly_dense_rtl_cycles"] == sum(r["truly_dense_rtl_cycles"] for r in layers)
    assert tot["speedup_vs_truly_dense"] == round(tot["truly_dense_rtl_cycles"]
                                                  / tot["rtl_cycles"], 3)
    for f in ("compare.csv", "compare.md", "speedup_passes.png", "cycles_breakdown.png"):
        assert (out / f).stat().st_size > 0
    sim = data["summary"]["simulation"]
    assert np.isfinite(sim["cycles_per_s"]) and np.isfinite(sim["cycles_per_cpu_s"])
    # every S blob written by the RTL select unit, equal to the host's, exposure from RTL
    sel = data["summary"]["select"]
    assert sel["source"] == "rtl" and sel["mismatches"] == []
    # each sparse GEMM simulated once: the table's cycles are the select loop's run, and the
    # speed figures count the loop's process beside the baselines' ones
    assert sel["gemm_cycles_source"] == "select loop"
    assert sel["gemm_cycles_in_loop"] == tot["rtl_cycles"]
    assert sim["simulated_cycles"] == (sim["gemm_batch"]["simulated_cycles"]
                                       + sim["select_loop"]["simulated_cycles"])
    assert sim["processes"] == sim["gemm_batch"]["processes"] + 1
    # a short job starts no cluster: its batch in one simulator process, the select loop in
    # another (after the batch on 2 cores, beside it on 3 or more: the same figures)
    assert sim["gemm_batch"]["processes"] == 1
    assert sel["blobs"] == sel["blobs_rtl_equal"] >= len(layers)
    assert tot["select_exposed_cycles"] == sel["exposed_cycles_rtl"] > 0
    assert all(r["select_source"] == "rtl" and r["select_cycles"] > 0 for r in layers)
    import os
    from unittest import mock

    with mock.patch.object(os, "cpu_count", return_value=4):
        assert compare.main(["--steps", "20", "--out", str(tmp_path / "beside"), "--no-sweep",
                             "--quiet"]) == 0
    beside = json.loads((tmp_path / "beside" / "compare.json").read_text())
    timing = ("wall_s", "cpu_s", "cycles_per_s", "cycles_per_cpu_s")
    assert beside["layers"] == layers
    assert {k: v for k, v in beside["summary"]["select"].items() if k not in timing} == \
        {k: v for k, v in sel.items() if k not in timing}
    assert beside["summary"]["simulation"]["processes"] == 2


@pytest.mark.slow
def test_sampled_job_streams_the_step_and_shares_baselines(tmp_path):
    """The ResNet-50 path on a small model: the step streamed layer by layer, sampled GEMMs,
    the truly dense baseline exact from one run per block size and shared by the two
    sparsities, the outputs of a list."""
    from sim import compare

    out = tmp_path / "res"
    assert compare.main(["--model", "resnet18", "--batch", "2", "--steps", "1",
                         "--sample-ops", "2", "--sparsity", "0.8,0.9", "--out", str(out),
                         "--no-sweep", "--quiet"]) == 0
    runs = [json.loads((out / f"compare_resnet18_s{p}.json").read_text()) for p in (80, 90)]
    for data in runs:
        assert data["summary"]["totals"]["all_bit_exact"] is True
        # the step of batch 2 from a network trained at sim.compare_step.TRAIN_BATCH
        assert data["summary"]["batch"] == 2 and data["summary"]["train_batch"] == 16
        sim = data["summary"]["simulation"]
        assert sim["sampled_gemms"] > 0 and sim["capture_s"] >= 0 and sim["lowering_s"] > 0
        for r in data["layers"]:
            assert r["simulated"] == "whole" or r["simulated"].startswith("2 of ")
            assert r["truly_dense_simulated"] == "whole" or "exact" in r["truly_dense_simulated"]
            assert r["rel_err_vs_float"] is None  # a streamed step keeps no float references
            # the PE-column counters cover every cycle (to the rounding of extrapolation)
            assert abs(r["busy_cycles"] + r["stall_cycles"] + r["idle_cycles"]
                       - 8 * r["rtl_cycles"]) <= 3
        assert sum(r["select_exposed_cycles"] for r in data["layers"]) == \
            data["summary"]["totals"]["select_exposed_cycles"]
        # the sampled GEMMs' select on the RTL unit (sim.select_sampled): every blob it made
        # equals the host's, the formula equals the RTL where checked
        sel = data["summary"]["select"]
        smp = sel["sampled"]
        assert sel["mismatches"] == [] and 0 < smp["blobs_rtl_equal"] <= smp["blobs"]
        assert smp["checks"]["pass1_worst_error"] == smp["checks"]["blob_exact_worst_error"] == 0
        assert "model" in sel["source"] and sim["select_sampled"]["simulated_cycles"] > 0
        # the exposure is the loop's schedule replayed over the whole step (the GEMMs the loop
        # ran included, behind the GEMMs before them); the loop's own run checks the replay
        assert sel["source"].startswith("model") and sel["exposed_cycles_rtl"] == 0
        assert smp["gemms"] == len(data["layers"]) == smp["sampled_gemms"] + smp["whole_gemms"]
        chk = smp["loop_check"]
        if smp["whole_gemms"]:
            assert abs(chk["replay"] - chk["core_counter"]) <= \
                max(0.03 * chk["core_counter"], 10 * chk["gemms"]), chk
        for r in data["layers"]:
            if r["simulated"] != "whole":
                assert r["select_source"] in ("rtl", "rtl + extrapolated")
                assert "blobs RTL" in r["select_simulated"]
    # truly dense: the shape alone, simulated once (the dense W baselines differ here: the
    # model trained a step at each sparsity; ResNet-50's initial W is shared)
    for ra, rb in zip(runs[0]["layers"], runs[1]["layers"], strict=True):
        assert ra["truly_dense_rtl_cycles"] == rb["truly_dense_rtl_cycles"]
    for f in ("compare_resnet18_table.md", "speedup_resnet18.png",
              "cycles_breakdown_resnet18_s90.png", "speedup_passes_resnet18_s80.png"):
        assert (out / f).stat().st_size > 0


def test_gemms_run_on_the_core_without_the_select_unit():
    """Every job's run_gemms GEMMs (baselines, samples, sweep) use the plain core (the select
    loop the core with the unit, tests/test_compare_models.py)."""
    from sim import compare

    assert compare.gemm_model_params("resnet50") == {"sel_lanes": 0}
    assert compare.gemm_model_params("digits_cnn") == {"sel_lanes": 0}


def test_step_order_and_pass_totals():
    """GEMMs in the order a step runs them (forwards, then backward from the last layer), and
    the per-pass sums the Table-6 report groups (backward = input + weight gradient)."""
    from types import SimpleNamespace as NS

    from sim import compare

    jobs = [NS(layer=name, pass_name=p) for name, passes in
            (("a", ("forward", "backward_weight")),
             ("b", ("forward", "backward_input", "backward_weight")))
            for p in passes]
    assert compare._step_order(jobs) == [0, 2, 3, 4, 1]
    rows = [{"pass": j.pass_name, "rtl_cycles": c, "dense_rtl_cycles": 10 * c}
            for j, c in zip(jobs, (1, 2, 3, 4, 5), strict=True)]
    tot = compare._pass_totals(rows)
    assert tot["forward"] == {"rtl_cycles": 4, "dense_rtl_cycles": 40, "speedup": 10.0}
    assert tot["backward"]["rtl_cycles"] == 2 + 4 + 5 and tot["backward"]["speedup"] == 10.0


def test_csv_takes_rows_with_different_keys(tmp_path):
    """A sampled GEMM has no model_error; the CSV still has every column (empty where absent)."""
    import csv

    from sim import compare

    rows = [{"layer": "a", "pass": "forward", "rtl_cycles": 1, "ideal_cycles": 1.0,
             "flop_cycles": None},
            {"layer": "b", "pass": "forward", "rtl_cycles": 2, "ideal_cycles": 2.0,
             "flop_cycles": None, "model_error": 0.0}]
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as fh:
        compare._write_csv(fh, rows)
    with open(path, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [r["model_error"] for r in got] == ["", "0.0"]


@pytest.mark.slow
def test_a_failing_regression_prints_a_rerun_with_waves_that_dumps_the_fst(tmp_path,
                                                                           monkeypatch):
    """A result that differs from the reference names the command that reruns the job with
    the waveform of the first differing GEMM; that command writes an FST with the core's
    hierarchy (reuses the tracing model the suite builds for tests/test_gemm.py)."""
    import shlex

    import fst

    from sim import compare
    from sw import intref

    real = intref.gemm
    monkeypatch.setattr(intref, "gemm", lambda d, s: real(d, s) + 1)  # a wrong reference
    out = tmp_path / "res"
    with pytest.raises(SystemExit) as e:
        compare.main(["--steps", "1", "--out", str(out), "--no-sweep", "--quiet"])
    msg = str(e.value.code)
    assert msg.startswith("RTL results differ from the integer reference: ['features.0:forward'")
    cmd = shlex.split(msg.split("waveform of one: ", 1)[1])
    assert cmd[:3] == ["python", "-m", "sim.compare"]
    assert cmd[-2:] == ["--waves", "features.0:forward"]
    with pytest.raises(SystemExit):  # still differs: the waves are written before the check
        compare.main(cmd[3:])
    wave = out / "waves" / "features.0-forward.fst"
    kinds = [k for k, _ in fst.blocks(wave)]
    assert kinds[0] == fst.HEADER
    assert {fst.HIER_GZ, fst.HIER_LZ4, fst.HIER_LZ4DUO} & set(kinds)
    sig = fst.signals(wave)
    assert sig["TOP.clk"] == 1 and sig["TOP.ctrl__start"] == 1 and sig["TOP.ctrl__cycles"] == 32
