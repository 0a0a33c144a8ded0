"""Board tops elaborate for their platforms (no place-and-route); PLL parameter search."""

import pytest
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from hw.board_top import ICEBreakerTop, ULX3STop, ecp5_pll_params, ice40_pll_params

SMALL = dict(rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32)


def _prepare(platform, top, **kw):
    plan = platform.build(top, name="top", do_build=False, **kw)
    return plan.files


def _stand_in():
    from standin_core import StandInCore

    return StandInCore()


@pytest.mark.parametrize("with_core", ["real", "stand-in"])
def test_icebreaker_top_prepares(with_core):
    kw = {"core": _stand_in()} if with_core == "stand-in" else SMALL
    top = ICEBreakerTop(f_sync=30e6, **kw)
    files = _prepare(ICEBreakerPlatform(), top, synth_opts="-dsp")
    pcf = files["top.pcf"]
    assert "set_io uart_0__rx__io 6" in pcf and "set_io uart_0__tx__io 9" in pcf
    assert "set_frequency clk12_0__io 12.0" in pcf  # PLL output: derived by nextpnr
    il = files["top.il"]
    assert "SB_PLL40_PAD" in il and "\\DIVF 7'1001111" in il
    assert "ctrl_slice" not in il  # bridge and core wired directly (SwatSystem.port_slices)


@pytest.mark.parametrize("with_core", ["real", "stand-in"])
def test_ulx3s_top_prepares(with_core):
    kw = {"core": _stand_in()} if with_core == "stand-in" else SMALL
    top = ULX3STop(f_sync=100e6, **kw)
    files = _prepare(ULX3S_85F_Platform(), top)
    lpf = files["top.lpf"]
    assert 'LOCATE COMP "uart_0__rx__io" SITE "M1"' in lpf
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ' in lpf
    assert "EHXPLLL" in files["top.il"]
    # register slices between bridge and core (SwatSystem.port_slices)
    assert "top.system.ctrl_slice" in files["top.il"]
    assert "top.system.c_read_slice" in files["top.il"]
    assert "--85k" in files["build_top.sh"] and "--speed 6" in files["build_top.sh"]


def test_pll_params():
    p = ice40_pll_params(12e6, 30e6)
    assert (p["DIVR"], p["DIVF"], p["DIVQ"], p["FILTER_RANGE"]) == (0, 79, 5, 1)  # icepll
    p = ice40_pll_params(12e6, 36e6)
    assert (p["DIVR"], p["DIVF"], p["DIVQ"]) == (0, 47, 4)
    e = ecp5_pll_params(25e6, 100e6)
    assert e["f_out"] == 100e6
    assert e["f_vco"] == 600e6  # as ecppll: CLKI_DIV 1, CLKFB_DIV 4, CLKOP_DIV 6
    assert (e["CLKI_DIV"], e["CLKFB_DIV"], e["CLKOP_DIV"]) == (1, 4, 6)
    assert e["CLKOP_CPHASE"] == e["CLKOP_DIV"] // 2 - 1
