"""The host-side interfaces of :class:`hw.core.SwatCore` as ``wiring.Signature`` s.

Each signature is written from the core's side (like Amaranth's memory port signatures, whose
``addr`` is ``In``): the core holds ``Out(sig)``, a host such as the UART bridge or a testbench
stand-in holds ``In(sig)``, and ``wiring.connect(m, host.ctrl, core.ctrl)`` wires them.

The top-level Verilog ports are the flattened member paths joined by ``__`` (Amaranth's
convention): ``ctrl.start`` is the port ``ctrl__start``. ``hw.core_port_names.FLAT_NAMES`` maps
the names of the original flat port list to these, so that harnesses driving the Verilated core
take every name from that one table.
"""

from __future__ import annotations

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .core_port_names import FLAT_NAMES, SELECT_FLAT_NAMES, verilog_name

__all__ = ["ControlSignature", "SelectSignature", "FLAT_NAMES", "SELECT_FLAT_NAMES",
           "verilog_name"]


class ControlSignature(wiring.Signature):
    """Operation control and status of the core (``ctrl``).

    Members (as the core sees them)
    -------------------------------
    start : In(1)
        One-cycle pulse; samples ``m``, ``k``, ``n``, ``s_len``; ignored while busy.
    m, k, n : In(16)
        GEMM shape.
    s_len : In(s_len_width)
        Number of valid compressed-S words.
    s_bank : In(1), only with ``s_bank=True`` (a core with the threshold-select unit)
        The S buffer the GEMM reads, sampled at ``start`` (the unit may fill the other).
    busy, done, error : Out(1)
        Running; finished (until the next ``start``); sticky error of the last operation.
    error_code : Out(4)
        ``hw.contract`` loader error code (0: none).
    cycles, busy_cycles, stall_cycles, idle_cycles : Out(32)
        Counters of the last operation (``docs/core-interface.md``).
    results : Out(count_width).array(logs), only with ``logs > 0``
        Entries in each C result log after the last operation (``hw.result_logs``).
    """

    def __init__(self, s_len_width: int, logs: int = 0, count_width: int = 1, *,
                 s_bank: bool = False):
        self.s_len_width, self.logs, self.count_width = s_len_width, logs, count_width
        self.s_bank = s_bank
        members = {
            "start": In(1), "m": In(16), "k": In(16), "n": In(16), "s_len": In(s_len_width),
            **({"s_bank": In(1)} if s_bank else {}),
            "busy": Out(1), "done": Out(1), "error": Out(1), "error_code": Out(4),
            "cycles": Out(32), "busy_cycles": Out(32), "stall_cycles": Out(32),
            "idle_cycles": Out(32),
        }
        if logs:
            members["results"] = Out(count_width).array(logs)
        super().__init__(members)

    def __eq__(self, other):
        return (type(other) is type(self) and
                (other.s_len_width, other.logs, other.count_width, other.s_bank) ==
                (self.s_len_width, self.logs, self.count_width, self.s_bank))

    def __repr__(self):
        return (f"ControlSignature({self.s_len_width}, {self.logs}, {self.count_width}, "
                f"s_bank={self.s_bank})")


class SelectSignature(wiring.Signature):
    """Host ports of the threshold-select unit inside the core (``sel``, ``sel_lanes > 0``).

    Members (as the core sees them)
    -------------------------------
    i : In(stream.Signature(beat_layout(lanes, index_width)))
        Dense ``S`` beats into the unit (``hw.select_layouts``), with the per-lane source index
        when ``index_width > 0`` (``by_index`` commands: the im2col blob of a selected tensor).
    cmd : In(stream.Signature(CommandLayout))
        The unit's command stream: taken while the unit is idle, also while a GEMM runs; the
        command's ``bank`` names the S buffer the blob goes to.
    status : Out(StatusSignature())
        The unit's status; ``done`` comes after its last S write.
    exposed_cycles : Out(32)
        Free-running count of the cycles in which the unit is busy and no GEMM runs: the
        select cycles not hidden behind GEMMs.
    """

    def __init__(self, lanes, index_width=0):
        from .select_layouts import CommandLayout, StatusSignature, beat_layout

        self.lanes, self.index_width = lanes, index_width
        super().__init__({
            "i": In(stream.Signature(beat_layout(lanes, index_width))),
            "cmd": In(stream.Signature(CommandLayout)),
            "status": Out(StatusSignature()),
            "exposed_cycles": Out(32),
        })

    def __eq__(self, other):
        return type(other) is type(self) and (other.lanes, other.index_width) == (
            self.lanes, self.index_width)

    def __repr__(self):
        return f"SelectSignature({self.lanes}, {self.index_width})"
