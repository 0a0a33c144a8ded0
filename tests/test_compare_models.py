"""sim.compare_models: the compare job's two models, built in background threads."""

import threading

import pytest

from sim import compare_models, verilate


def test_which_models_and_which_get_pgo():
    """run_gemms on the core without the unit, the select loop on the harness default (with the
    unit); profile-guided builds only for the long jobs."""
    assert compare_models.JobModels.PARAMS == {"gemm": {"sel_lanes": 0}, "select": {}}
    assert not compare_models.job_pgo("digits_cnn")
    assert compare_models.job_pgo("resnet50") and compare_models.job_pgo("resnet18")


def test_both_builds_run_at_once_and_a_failure_reaches_the_caller(monkeypatch):
    """No clock: each fake build waits (unbounded but for a generous safety net) until the
    test has seen both inside their builds, so neither can finish first however the threads
    are scheduled."""
    started, both, release = [], threading.Event(), threading.Event()
    lock = threading.Lock()

    def fake(rows, cols, *, quiet, pgo, on_elaborated=None, **params):
        on_elaborated({"s_len": 14}, {"rows": rows, "cols": cols, "d_depth": 64})
        with lock:
            started.append((rows, cols, pgo, params))
            if len(started) == 2:
                both.set()
        assert release.wait(600), "the test never released the builds"
        if params == {"sel_lanes": 0}:
            return "plain model"
        raise RuntimeError("Verilator core_harness build failed (exit 2)")

    monkeypatch.setattr(verilate, "harness_model", fake)
    try:
        models = compare_models.JobModels(4, 2, "digits_cnn", quiet=True)
        # both threads are in their build before either finishes (neither can: release)
        assert both.wait(120), f"only {started} started"  # a serial build never starts both
        assert sorted(map(str, started)) == sorted(map(str, [(4, 2, False, {"sel_lanes": 0}),
                                                             (4, 2, False, {})]))
        # the sizes the job tiles with, while the compiles still run
        assert models.sizes("gemm").attrs == {"rows": 4, "cols": 2, "d_depth": 64}
        assert models.sizes("gemm").ports == {"s_len": 14}
    finally:
        release.set()  # a failed assertion above leaves no thread waiting
    assert models.get("gemm") == "plain model"
    with pytest.raises(RuntimeError, match=r"^Verilator core_harness build failed \(exit 2\)$"):
        models.get("select")
