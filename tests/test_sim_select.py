"""Regressions of the threshold-select unit on its Verilator model: ``sim/tb/cocotb_select.py``
(bit-exact vs ``sw.int_topk``, random valid/ready stalls, the im2col blob of a selected tensor
through the source-index side band, every error code)."""

from __future__ import annotations

import pytest

from sim import bench, verilate

pytestmark = pytest.mark.slow

LANES, DEPTH, BANKS, INDEX_WIDTH = 8, 8192, 8, 32


@pytest.fixture(scope="session")
def select_model():
    return verilate.build("select", lanes=LANES, depth=DEPTH, banks=BANKS,
                          index_width=INDEX_WIDTH)


@pytest.mark.xdist_group("sim-select")
def test_select_regressions(select_model):
    res = bench.run_bench(select_model, "sim.tb.cocotb_select", {"SWAT_TB_CASES": "12"},
                          seed=4321)
    assert res.tests, "the bench ran no tests:\n" + res.log[-3000:]
    assert not res.failed, res.summary()
    assert {"random_full_selections", "stalls_on_both_streams", "held_and_given_thresholds",
            "transposed_blob_into_either_buffer", "im2col_blob_by_index",
            "cycles_exact_at_scale", "error_codes"} <= {t[0] for t in res.tests}
