"""bitstreams.render: report.md and README.md from report dictionaries."""

from bitstreams.render import render_readme, render_report, util_rows

REPORT = {
    "board": "ulx3s", "title": "ULX3S", "device": "LFE5U-85F", "date_utc": "2026-12-01 14:00",
    "git_commit": "abc1234", "git_uncommitted": [], "rtlil_sha256": "0123456789abcdef" * 4,
    "config": {"rows": 8, "cols": 8, "pes": 64, "d_depth": 1024, "s_depth": 2048,
               "c_depth": 512, "core_extra": {}, "baud": 115200, "uart_divisor": 868,
               "synth_opts": "", "nextpnr_opts": "--seed 2"},
    "clock": {"board_oscillator_mhz": 25.0, "requested_mhz": 100.0, "pll_mhz": 100.0,
              "pll": {}, "nextpnr_clock": "clk", "achieved_fmax_mhz": 101.25, "met": True,
              "slack_mhz": 1.25, "seed": 2},
    "seeds": [{"seed": 1, "achieved_fmax_mhz": 97.0, "startpoint": "a.Q", "endpoint": "b.D",
               "delay_ns": 10.3, "nextpnr_seconds": 600.0},
              {"seed": 2, "achieved_fmax_mhz": 101.25, "startpoint": "c.Q", "endpoint": "d.D",
               "delay_ns": 9.9, "nextpnr_seconds": 610.0}],
    "fmax_spread_mhz": {"min": 97.0, "median": 99.125, "max": 101.25},
    "utilization": {"TRELLIS_FF": {"used": 10, "available": 100},
                    "TRELLIS_COMB": {"used": 50, "available": 200},
                    "DCCA": {"used": 0, "available": 56},
                    "ZZZ": {"used": 1, "available": 0}},
    "yosys_cells": {"LUT4": 40}, "critical_paths": [{
        "from_clock": "clk", "to_clock": "clk", "delay_ns": 9.9, "logic_levels": 3,
        "routing_ns": 6.0, "startpoint": "c.Q", "endpoint": "d.D", "nets": ["n1", None]}],
    "build_seconds": {"yosys": 60.0, "total": 1300.0}, "bitstream": "b/top.bit",
    "bitstream_bytes": 10, "toolchain": {"yosys": "Yosys 0.70"},
}


def test_util_rows_order():
    """The family's resources in its order (present ones only), then other used ones."""
    assert util_rows(REPORT) == [("TRELLIS_COMB", 50, 200, "25.0 %"),
                                 ("TRELLIS_FF", 10, 100, "10.0 %"), ("DCCA", 0, 56, "0.0 %"),
                                 ("ZZZ", 1, 0, "-")]


def test_render_report():
    md = render_report(REPORT, "The analysis.\n")
    assert md.startswith("# ULX3S: SWAT core 8x8 behind the UART bridge\n")
    assert ("from commit `abc1234` (read before elaboration; RTLIL SHA-256 `0123456789abcdef`)"
            in md)
    assert ("Achieved Fmax of `clk`: **101.25 MHz** against 100 MHz requested: met "
            "(slack +1.25 MHz).") in md
    assert ("Seed spread over 2 nextpnr seeds: min 97.00, median 99.12, max 101.25 MHz; "
            "the bitstream is of seed 2.") in md
    assert "| 1 | 97.00 | `a.Q` -> `b.D` | 600 |" in md
    assert "## Analysis\n\nThe analysis.\n\n## Utilization" in md
    assert "Nets on it (yosys/nextpnr names, shortened): `n1`\n" in md


def test_render_report_of_an_old_report():
    old = {k: v for k, v in REPORT.items() if k not in ("rtlil_sha256", "seeds")}
    md = render_report(old | {"git_uncommitted": [" M hw/core.py"]})
    assert "commit `abc1234` with uncommitted changes (`M hw/core.py`) (read after the build)" in md
    assert "Seed spread" not in md and "## Analysis" not in md
    one = render_report(REPORT | {"seeds": REPORT["seeds"][:1], "seeds_requested": [1, 2, 3]})
    assert "The build stopped after 1 of the 3 seeds requested (1, 2, 3)." in one


def test_render_readme():
    text = render_readme("# B\n\n{table}\n\n## A\n\n{analysis}\n", [REPORT],
                         {"ulx3s": "Why.\n"})
    row = ("| [ulx3s](ulx3s/report.md) | LFE5U-85F | 8x8 | 1024/2048/512 | 100 MHz | "
           "101.2 MHz (met); 2 seeds 97.0–101.2 | 50/200 TRELLIS_COMB / 10/100 TRELLIS_FF | "
           "- | - | `abc1234` |")
    assert row in text.splitlines()
    assert text.endswith("## A\n\n**ulx3s.** Why.\n")
    assert render_readme("{analysis}", [REPORT], {}) == "(none)\n"
