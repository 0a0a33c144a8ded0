"""Board tops elaborate for their platforms (no place-and-route), PLL parameters, build helpers."""

import json

import pytest
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from bitstreams import build
from hw.board_top import ICEBreakerTop, ULX3STop, ecp5_pll_params, ice40_pll_params

SMALL = dict(rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32)


def _prepare(platform, top, **kw):
    plan = platform.build(top, name="top", do_build=False, **kw)
    return plan.files


def _stand_in():
    from test_host_bridge import StandInCore

    return StandInCore()


@pytest.mark.parametrize("with_core", ["real", "stand-in"])
def test_icebreaker_top_prepares(with_core):
    kw = {"core": _stand_in()} if with_core == "stand-in" else SMALL
    if with_core == "real":
        pytest.importorskip("hw.core")
    top = ICEBreakerTop(f_sync=30e6, **kw)
    files = _prepare(ICEBreakerPlatform(), top, synth_opts="-dsp")
    pcf = files["top.pcf"]
    assert "set_io uart_0__rx__io 6" in pcf and "set_io uart_0__tx__io 9" in pcf
    assert "set_frequency clk12_0__io 12.0" in pcf  # PLL output: derived by nextpnr
    il = files["top.il"]
    assert "SB_PLL40_PAD" in il and "\\DIVF 7'1001111" in il


@pytest.mark.parametrize("with_core", ["real", "stand-in"])
def test_ulx3s_top_prepares(with_core):
    kw = {"core": _stand_in()} if with_core == "stand-in" else SMALL
    if with_core == "real":
        pytest.importorskip("hw.core")
    top = ULX3STop(f_sync=100e6, **kw)
    files = _prepare(ULX3S_85F_Platform(), top)
    lpf = files["top.lpf"]
    assert 'LOCATE COMP "uart_0__rx__io" SITE "M1"' in lpf
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ' in lpf
    assert "EHXPLLL" in files["top.il"]
    assert "--85k" in files["build_top.sh"] and "--speed 6" in files["build_top.sh"]


def test_board_configs_construct():
    for cfg in build.BOARDS.values():
        top = cfg.top(baud=115200)
        assert abs(top.f_sync - cfg.f_mhz * 1e6) < 1e3
        sysm = top.system()
        assert (sysm.core.rows, sysm.core.cols) == (cfg.rows, cfg.cols)
        mems = [getattr(sysm.core, n, None) for n in ("d_mem", "s_mem", "c_mem")]
        for obj in (top, sysm, sysm.core, *mems):  # constructed, never elaborated: no warning
            if obj is not None:
                obj._MustUse__silence = True


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


def test_orangecrab_is_refused(capsys):
    assert build.main(["--board", "orangecrab"]) == 2
    assert "UART" in capsys.readouterr().err


def test_report_parsing(tmp_path):
    rep = {
        "utilization": {"ICESTORM_LC": {"used": 100, "available": 5280}},
        "fmax": {"pll_clk_$glb_clk": {"achieved": 41.5, "constraint": 30.0},
                 "clk12": {"achieved": 300.0, "constraint": 12.0}},
        "critical_paths": [{"from": "posedge pll_clk", "to": "posedge pll_clk", "path": [
            {"type": "clk-to-q", "from": {"cell": "a", "port": "CLK"},
             "to": {"cell": "a", "port": "O"}, "delay": 0.5},
            {"type": "routing", "net": "n1", "from": {"cell": "a", "port": "O"},
             "to": {"cell": "b", "port": "I0"}, "delay": 1.25},
            {"type": "logic", "from": {"cell": "b", "port": "I0"},
             "to": {"cell": "b", "port": "O"}, "delay": 0.75}]}],
    }
    (tmp_path / "report.json").write_text(json.dumps(rep))
    res = build.parse_nextpnr(tmp_path / "report.json", tmp_path / "none.tim")
    name, clk = build.main_clock(res["fmax"], 30.0)
    assert name == "pll_clk_$glb_clk" and clk["achieved"] == 41.5
    cp = res["critical_paths"][0]
    assert cp["delay_ns"] == 2.5 and cp["logic_levels"] == 1 and cp["nets"] == ["n1"]
    assert cp["startpoint"] == "a.CLK" and cp["endpoint"] == "b.O"
    (tmp_path / "top.tim").write_text(
        "Info: Max frequency for clock 'clk': 55.10 MHz (FAIL at 100.00 MHz)\n")
    res = build.parse_nextpnr(tmp_path / "missing.json", tmp_path / "top.tim")
    assert res["fmax"]["clk"] == {"achieved": 55.1, "constraint": 100.0}


def test_yosys_stat_parsing(tmp_path):
    (tmp_path / "top.rpt").write_text(
        "=== top ===\n\n   Number of cells:   7\n     SB_LUT4   5\n     SB_DFFE   2\n"
        "\n=== design hierarchy ===\n\n        9 cells\n        4   SB_LUT4\n"
        "        3   SB_DFFER\n        1   SB_MAC16\n        1   SB_RAM40_4K\n")
    cells = build.parse_yosys_stat(tmp_path / "top.rpt")
    summ = build.summarize_cells("icebreaker", cells)
    assert summ["LUT4"] == 4 and summ["FF"] == 3 and summ["DSP"] == 1 and summ["BRAM"] == 1
