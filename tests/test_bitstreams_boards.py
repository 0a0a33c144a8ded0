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


def test_lut_wire_ps_splits_synthesis_around_the_lut_mapping():
    """With ``lut_wire_ps`` the yosys script stops ``synth_ecp5`` before its LUT mapping, maps
    with that wire delay and resumes at ``map_cells``; without it, one plain ``synth_ecp5``."""
    import dataclasses

    from amaranth.hdl import Elaboratable, Module, Signal

    class Tiny(Elaboratable):  # the script does not depend on the design: a counter is fast
        def elaborate(self, platform):
            m = Module()
            count = Signal(4)
            m.d.sync += count.eq(count + 1)
            return m

    def script(board):
        plan = board.platform().build(Tiny(), name="top", do_build=False,
                                      **board.yosys_overrides())
        return [ln.strip() for ln in plan.files["top.ys"].splitlines()
                if ln.strip() and not ln.startswith("#")]

    plain = dataclasses.replace(BOARDS["ulx3s"], lut_wire_ps=0)
    assert [ln for ln in script(plain) if ln.startswith(("synth", "abc9"))] == [
        "synth_ecp5  -top top"]  # (Amaranth's template: the empty options leave 2 spaces)
    split = dataclasses.replace(BOARDS["ulx3s"], lut_wire_ps=900)
    assert script(split) == [
        "read_rtlil top.il", "synth_ecp5 -run begin:map_luts -top top",
        "check -latchonly -assert", "techmap -map +/lattice/latches_map.v", "abc9 -W 900",
        "clean", "synth_ecp5 -run map_cells:", "write_json top.json"]
    with pytest.raises(ValueError, match=r"^icebreaker: lut_wire_ps is for ECP5 boards only$"):
        dataclasses.replace(BOARDS["icebreaker"], lut_wire_ps=900).yosys_overrides()
