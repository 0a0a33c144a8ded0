"""sim.bench: the results of a cocotb bench, and the command that reruns a failure with waves."""

from __future__ import annotations

from sim import bench


def test_a_failing_bench_names_the_command_that_reruns_it_with_waves():
    res = bench.BenchResult(tests=[("edge_cases", True, ""), ("random_gemms", False, "C differs")])
    assert res.summary().splitlines() == [
        "PASS edge_cases",
        "FAIL random_gemms: C differs",
        "rerun with waves: SWAT_SIM_WAVES=1 python -m pytest "
        "tests/test_bench.py::test_a_failing_bench_names_the_command_that_reruns_it_with_waves",
    ]


def test_a_passing_bench_has_no_hint_and_a_waves_run_names_its_file(tmp_path):
    assert bench.BenchResult(tests=[("a", True, "")]).summary() == "PASS a"
    res = bench.BenchResult(tests=[("a", False, "x")], waves=tmp_path / "dump.fst")
    assert res.summary().splitlines()[-1] == f"waves: {tmp_path / 'dump.fst'}"


def test_hint_outside_pytest(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    assert bench.rerun_with_waves_hint() == "rerun with SWAT_SIM_WAVES=1 for waves"
