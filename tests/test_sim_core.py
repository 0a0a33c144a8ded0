"""Regressions of the core on its Verilator model: the pytest runner of the cocotb bench
``tests/cocotb_core.py`` beside it (the bench holds the tests' logic, this file only runs it).

One simulator process per array size runs every cocotb test of the bench; the model comes from
the build cache (``sim.verilate``), so it is compiled once for the whole suite. The default 8×8
core is the one ``sim.run_gemm`` and the compare job use; ``SWAT_SIM_ARRAYS=4x4,8x8`` adds other
arrays (each costs a Verilator build of a few minutes on a 2-core machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim import bench, compare_args, verilate

BENCH_DIR = Path(__file__).resolve().parent  # where cocotb_core.py lives

pytestmark = pytest.mark.slow

ARRAYS = {a.strip(): compare_args.array(a) for a in
          os.environ.get("SWAT_SIM_ARRAYS", "8x8").split(",") if a.strip()}


@pytest.fixture(scope="session", params=list(ARRAYS))
def core_model(request):
    rows, cols = ARRAYS[request.param]
    return verilate.core_model(rows, cols)


def _run(model, testcase=None, **env):
    res = bench.run_bench(model, "cocotb_core", {k: str(v) for k, v in env.items()},
                          testcase=testcase, seed=1234, bench_dir=BENCH_DIR)
    assert res.tests, "the bench ran no tests:\n" + res.log[-3000:]
    assert not res.failed, res.summary()
    return res


@pytest.mark.xdist_group("sim-core")
def test_core_regressions(core_model):
    """Random GEMMs, edge cases, every error code, ports vs preload, start while busy, the
    driver's start handshake."""
    res = _run(core_model, SWAT_TB_CASES=24)
    names = {t[0] for t in res.tests}
    assert {"random_gemms", "edge_cases", "malformed_streams", "ports_match_preload",
            "start_while_busy_is_ignored", "run_returns_its_own_counters",
            "many_back_to_back"} <= names
