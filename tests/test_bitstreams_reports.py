"""bitstreams.reports: nextpnr JSON report and log, yosys stat, the sync clock's entry."""

import json

from bitstreams.reports import critical_paths, main_clock, parse_nextpnr, parse_yosys_stat

NEXTPNR_REPORT = {
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


def test_nextpnr_json(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(NEXTPNR_REPORT))
    res = parse_nextpnr(tmp_path / "report.json", tmp_path / "none.tim")
    assert res["utilization"] == NEXTPNR_REPORT["utilization"]
    assert main_clock(res["fmax"], 30.0) == ("pll_clk_$glb_clk",
                                              {"achieved": 41.5, "constraint": 30.0})
    assert res["critical_paths"] == [{
        "from_clock": "posedge pll_clk", "to_clock": "posedge pll_clk",
        "startpoint": "a.CLK", "endpoint": "b.O", "delay_ns": 2.5, "logic_levels": 1,
        "routing_ns": 1.25, "nets": ["n1"]}]


def test_nextpnr_log_fallback(tmp_path):
    (tmp_path / "top.tim").write_text(
        "Info: Max frequency for clock 'clk': 55.10 MHz (FAIL at 100.00 MHz)\n")
    res = parse_nextpnr(tmp_path / "missing.json", tmp_path / "top.tim")
    assert res == {"utilization": {}, "critical_paths": [],
                   "fmax": {"clk": {"achieved": 55.1, "constraint": 100.0}}}
    assert parse_nextpnr(tmp_path / "a", tmp_path / "b")["fmax"] == {}
    assert main_clock({}, 30.0) == (None, None)


def test_critical_path_nets_capped():
    path = [{"type": "routing", "net": f"n{i}", "delay": 0.1} for i in range(50)]
    cp, = critical_paths({"critical_paths": [{"path": path}]}, max_nets=3)
    assert cp["nets"] == ["n0", "n1", "n2"] and cp["logic_levels"] == 0
    assert cp["startpoint"] == "?.?" and cp["delay_ns"] == cp["routing_ns"] == 5.0


def test_yosys_stat_both_layouts():
    old = ("=== top ===\n\n   Number of cells:   7\n     SB_LUT4   5\n     SB_DFFE   2\n")
    new = ("\n=== design hierarchy ===\n\n        9 cells\n        4   SB_LUT4\n"
           "        3   SB_DFFER\n        1   SB_MAC16\n        1   SB_RAM40_4K\n")
    assert parse_yosys_stat(old) == {"SB_LUT4": 5, "SB_DFFE": 2}
    # the last stat block (the design hierarchy's totals) wins
    assert parse_yosys_stat(old + new) == {"SB_LUT4": 4, "SB_DFFER": 3, "SB_MAC16": 1,
                                           "SB_RAM40_4K": 1}
    assert parse_yosys_stat("no statistics here") == {}
