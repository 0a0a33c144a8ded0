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
    for f in ("compare.csv", "compare.md", "rtl_vs_flops.png"):
        assert (out / f).stat().st_size > 0
    assert np.isfinite(data["summary"]["simulation"]["cycles_per_s"])
