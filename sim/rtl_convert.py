"""Amaranth → Verilog for the simulation models, without the zero initialisers of memories.

Amaranth 0.5's RTLIL backend writes a ``$meminit_v2`` cell for every memory, also for
``init=[]``: its data is one constant bit per memory bit, built net by net in Python (about
19 million for the 8×8 core's buffers and result logs), which Yosys then turns into
``initial begin mem[i] = 0; … end`` blocks that :func:`sim.verilate.strip_zero_memory_inits`
removes again (Verilator starts every variable at zero with ``--x-initial 0``). That
round trip was 95 % of an elaboration: about 45 s of Python and 20 s of Yosys for the core on
this machine. :func:`convert` leaves the cell out for memories whose initial contents are all
zero, so Yosys writes no initialiser for them; the Verilog after stripping is the same text
(the models' cache keys do not change). Memories with a non-zero ``init`` keep their cell.

The change applies only inside :func:`convert` (a thread-local switch), so other Amaranth
conversions in the same process (FPGA builds, where a memory's power-up contents matter) are
untouched.
"""

from __future__ import annotations

import threading

__all__ = ["convert"]

_STATE = threading.local()
_INSTALLED = []


def _install() -> None:
    """Wrap ``ModuleEmitter.emit_memory`` once: skip the zero ``$meminit_v2`` cell while the
    calling thread is inside :func:`convert`."""
    if _INSTALLED:
        return
    from amaranth.back import rtlil

    orig = rtlil.ModuleEmitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if getattr(_STATE, "skip_zero_init", False) and not any(cell.init):
            return
        orig(self, cell_idx, cell)

    rtlil.ModuleEmitter.emit_memory = emit_memory
    _INSTALLED.append(orig)


def convert(component, *, name: str) -> str:
    """``amaranth.back.verilog.convert(component, name=name, emit_src=False)`` with no
    initialiser for the memories whose contents start at zero (module docstring)."""
    from amaranth.back import verilog

    _install()
    _STATE.skip_zero_init = True
    try:
        return verilog.convert(component, name=name, emit_src=False)
    finally:
        _STATE.skip_zero_init = False
