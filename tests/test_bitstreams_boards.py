"""bitstreams.boards: every configured board elaborates at its clock; overrides; cell summary."""

import pytest

from bitstreams.boards import BOARDS, ECP5, ICE40, configure


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_configured_board_elaborates(name):
    """The committed configuration (array size, depths, clock) builds a plan for its board."""
    board = BOARDS[name]
    top = board.top(baud=115200)
    assert abs(top.f_sync - board.f_mhz * 1e6) < 1e3
    plan = board.platform().build(top, name="top", do_build=False, synth_opts=board.synth_opts)
    il = plan.files["top.il"]
    assert ("SB_PLL40_PAD" if board.family is ICE40 else "EHXPLLL") in il
    assert (top.core_kwargs["rows"], top.core_kwargs["cols"]) == (board.rows, board.cols)


def test_configure_overrides():
    board = configure("ulx3s", freq=80.0, rows=4, cols=None, hold_depth=1)
    assert (board.f_mhz, board.rows, board.cols) == (80.0, 4, BOARDS["ulx3s"].cols)
    assert board.core_extra == {"hold_depth": 1}
    assert BOARDS["ulx3s"].core_extra == {}  # the shared configuration is untouched
    assert configure("icebreaker") == BOARDS["icebreaker"]


def test_summarize_cells():
    cells = {"SB_LUT4": 4, "SB_DFFER": 3, "SB_DFF": 2, "SB_MAC16": 1, "SB_RAM40_4K": 5}
    assert ICE40.summarize_cells(cells) == {"LUT4": 4, "FF": 5, "CARRY": 0, "DSP": 1,
                                            "BRAM": 5, "SPRAM": 0}
    assert ECP5.summarize_cells({"LUT4": 7, "TRELLIS_FF": 9, "DP16KD": 2})["BRAM"] == 2
