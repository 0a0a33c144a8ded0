"""The boards the bitstreams are built for: device family, clock, array size and buffer depths.

A :class:`Family` holds what the iCE40 and ECP5 flows differ in (which nextpnr, the bitstream
file, how yosys cells and nextpnr resources are named); a :class:`Board` adds one board's part,
clock and the core configuration that fits it. Everything board-specific lives here, so the
runner, the report parsers and the renderers stay generic.
"""

from __future__ import annotations

import dataclasses
import fnmatch

__all__ = ["Family", "Board", "ICE40", "ECP5", "BOARDS", "configure"]


@dataclasses.dataclass(frozen=True)
class Family:
    """What a device family's flow and reports are called.

    ``cell_summary`` maps a summary name to the yosys cell names (``fnmatch`` patterns) it
    counts; ``util_order`` lists the nextpnr resources a report shows first; ``logic``,
    ``bram`` and ``dsp`` are the nextpnr resources of the README's overview table.
    """

    name: str
    nextpnr_env: str  # environment variable of the nextpnr binary (as Amaranth reads it)
    bitstream: str  # file the pack step writes
    cell_summary: dict[str, tuple[str, ...]]
    util_order: tuple[str, ...]
    logic: tuple[str, ...]
    bram: str
    dsp: str

    def summarize_cells(self, cells: dict[str, int]) -> dict[str, int]:
        """Yosys cell counts grouped by ``cell_summary`` (LUTs, FFs, DSPs, BRAMs, ...)."""
        return {label: sum(n for cell, n in cells.items()
                           if any(fnmatch.fnmatchcase(cell, p) for p in patterns))
                for label, patterns in self.cell_summary.items()}


ICE40 = Family(
    name="ice40", nextpnr_env="NEXTPNR_ICE40", bitstream="top.bin",
    cell_summary={"LUT4": ("SB_LUT4",), "FF": ("SB_DFF*",), "CARRY": ("SB_CARRY",),
                  "DSP": ("SB_MAC16",), "BRAM": ("SB_RAM40*",), "SPRAM": ("SB_SPRAM256KA",)},
    util_order=("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP", "ICESTORM_SPRAM", "SB_IO",
                "ICESTORM_PLL", "SB_GB"),
    logic=("ICESTORM_LC",), bram="ICESTORM_RAM", dsp="ICESTORM_DSP",
)

ECP5 = Family(
    name="ecp5", nextpnr_env="NEXTPNR_ECP5", bitstream="top.bit",
    cell_summary={"LUT4": ("LUT4",), "FF": ("TRELLIS_FF",), "CCU2C": ("CCU2C",),
                  "LUTRAM": ("TRELLIS_DPR16X4",), "DSP": ("MULT18X18D",), "BRAM": ("DP16KD",)},
    util_order=("TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD", "MULT18X18D",
                "TRELLIS_IO", "EHXPLLL", "DCCA"),
    logic=("TRELLIS_COMB", "TRELLIS_FF"), bram="DP16KD", dsp="MULT18X18D",
)


@dataclasses.dataclass(frozen=True)
class Board:
    """One board: its part and clock, and the core that is built for it.

    ``core_extra`` holds further ``SwatCore`` keywords; ``synth_opts`` and ``nextpnr_opts``
    go to Amaranth's build templates (the runner adds the report, seed and timing options).
    ``lut_wire_ps`` (ECP5 only; 0: yosys's own) is the wire delay yosys's LUT mapper (``abc9
    -W``) assumes per net: ``synth_ecp5`` passes 300 ps, which makes a chain of LUTs through
    their fast input look cheaper than a shallower tree, while a routed net on this part costs
    0.5–1 ns. See ``yosys_overrides``. ``fold_bram_outreg`` (ECP5 only): after yosys, fold
    the register that follows each block-RAM read into the DP16KD's output register
    (``bitstreams/bram_outreg.py``; same behaviour, a much shorter clock-to-output).
    """

    name: str
    title: str
    device: str
    family: Family
    f_mhz: float  # requested ``sync`` clock
    rows: int
    cols: int
    d_depth: int
    s_depth: int
    c_depth: int
    synth_opts: str = ""
    nextpnr_opts: str = ""
    lut_wire_ps: int = 0
    fold_bram_outreg: bool = False
    core_extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.fold_bram_outreg and self.family is not ECP5:
            raise ValueError(f"{self.name}: fold_bram_outreg is for ECP5 boards only")

    def platform(self):
        """The amaranth-boards platform of this board."""
        if self.name == "icebreaker":
            from amaranth_boards.icebreaker import ICEBreakerPlatform

            return ICEBreakerPlatform()
        from amaranth_boards.ulx3s import ULX3S_85F_Platform

        return ULX3S_85F_Platform()

    def yosys_overrides(self) -> dict:
        """Amaranth's yosys template overrides: ``synth_opts``, and with ``lut_wire_ps`` the
        ``synth_ecp5`` script split around its LUT mapping step (``-run begin:map_luts``, then
        ``map_luts`` with our ``abc9 -W``, then ``-run map_cells:``)."""
        if not self.lut_wire_ps:
            return {"synth_opts": self.synth_opts}
        if self.family is not ECP5:
            raise ValueError(f"{self.name}: lut_wire_ps is for ECP5 boards only")
        return {
            "synth_opts": f"{self.synth_opts} -run begin:map_luts".strip(),
            "script_after_synth": "\n".join([
                "check -latchonly -assert",
                "techmap -map +/lattice/latches_map.v",
                f"abc9 -W {self.lut_wire_ps}",
                "clean",
                " ".join(filter(None, ("synth_ecp5", self.synth_opts, "-run map_cells:"))),
            ]),
        }

    def top(self, *, baud: int):
        """The board top (UART pins, PLL, bridge and core) at the requested clock."""
        from hw.board_top import ICEBreakerTop, ULX3STop

        cls = ICEBreakerTop if self.name == "icebreaker" else ULX3STop
        return cls(f_sync=self.f_mhz * 1e6, baud=baud, rows=self.rows, cols=self.cols,
                   d_depth=self.d_depth, s_depth=self.s_depth, c_depth=self.c_depth,
                   **self.core_extra)


BOARDS = {
    # iCE40UP5K: 5280 LCs, 30 x 4 kbit EBR, 8 SB_MAC16. The D and S buffers have one read port
    # per PE column, so yosys builds one copy of each per column. 4x2 (8 PEs: all 8 DSPs): it
    # places again since the loader's checks were narrowed (~5,000 of 5,280 LCs).
    "icebreaker": Board(
        name="icebreaker", title="iCEBreaker (iCE40UP5K-SG48)", device="iCE40UP5K-SG48",
        family=ICE40, f_mhz=30.0, rows=4, cols=2, d_depth=256, s_depth=256, c_depth=128,
        synth_opts="-dsp",
        # one C buffer instead of a result log per PE column (the logs need ~5.6 k LCs at 4x2;
        # with two columns the C write select is 2:1), and a one-deep PE result queue
        # (default 2): 256 fewer FFs, without which 4x2 needs more LCs than the part has
        core_extra={"hold_depth": 1, "result_logs": False},
    ),
    # ECP5 LFE5U-85F on the ULX3S: package CABGA381, speed grade 6 (the slowest ECP5 grade).
    # router2: router1 spent > 15 min of rip-ups on this design on a 2-core build machine.
    # --tmg-ripup (router2 rips up and reroutes failing arcs by timing, not only by overuse):
    # on the netlist of 2cea8d4, seeds 1 / 2 routed at 90.24 / 89.90 MHz against 83.62 / 83.25
    # without, at about twice the router time (bitstreams/ulx3s/analysis.md)
    "ulx3s": Board(
        name="ulx3s", title="ULX3S 85F (LFE5U-85F-6BG381C, speed grade 6)",
        device="LFE5U-85F-6BG381C", family=ECP5, f_mhz=100.0, rows=8, cols=8, d_depth=1024,
        s_depth=2048, c_depth=512, nextpnr_opts="--router router2 --tmg-ripup",
        # the register after each block-RAM read moved into the DP16KD (REGMODE OUTREG):
        # clock-to-output 0.96 instead of 5.83 ns at speed grade 6 (bitstreams/bram_outreg.py)
        fold_bram_outreg=True,
        # LUT mapping: synth_ecp5's own (abc9 -W 300). abc9 -W 1000 (lut_wire_ps=1000) made the
        # deepest cones shallower and routed worse on the same RTLIL (205a5c44, seeds 1 / 2 / 3):
        # 81.95 / 81.41 / 85.72 MHz against 83.62 / 83.25 / 84.97 (bitstreams/ulx3s/analysis.md)
    ),
}


def configure(name: str, *, freq: float | None = None, hold_depth: int | None = None,
              **sizes: int | None) -> Board:
    """``BOARDS[name]`` with the command line's overrides (``None`` keeps the default).

    ``sizes`` are ``rows``, ``cols``, ``d_depth``, ``s_depth`` and ``c_depth``.
    """
    board = BOARDS[name]
    changes: dict = {k: v for k, v in sizes.items() if v is not None}
    if freq is not None:
        changes["f_mhz"] = freq
    if hold_depth is not None:
        changes["core_extra"] = {**board.core_extra, "hold_depth": hold_depth}
    return dataclasses.replace(board, **changes)
