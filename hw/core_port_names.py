"""Top-level (Verilog) port names of :class:`hw.core.SwatCore`, importable without Amaranth.

The core's host side is a set of ``wiring.Signature`` members (``hw.core_ports``); converted to
Verilog, a member path becomes a port named by joining the path with ``__`` (``ctrl.start`` is
``ctrl__start``). Harnesses that drive the Verilated core (``sim/tb/driver.py``, the C++ harness)
take every name from :data:`FLAT_NAMES`, keyed by the names of the original flat port list
(``docs/core-interface.md``), so a renamed member changes one line here.
"""

__all__ = ["verilog_name", "core_member", "FLAT_NAMES", "SELECT_FLAT_NAMES"]


def verilog_name(*path) -> str:
    """Top-level port name of a member path, e.g. ``("ctrl", "start")`` -> ``"ctrl__start"``."""
    return "__".join(str(p) for p in path)


#: original flat port name -> flattened Verilog name of the signature member
FLAT_NAMES = {
    "d_we": "d_write__en", "d_addr": "d_write__addr", "d_data": "d_write__data",
    "s_we": "s_write__en", "s_addr": "s_write__addr", "s_data": "s_write__data",
    "c_en": "c_read__en", "c_addr": "c_read__addr", "c_data": "c_read__data",
    **{name: verilog_name("ctrl", name) for name in (
        "start", "m", "k", "n", "s_len", "busy", "done", "error", "error_code", "cycles",
        "busy_cycles", "stall_cycles", "idle_cycles")},
}

#: select-unit port names of cores built with ``sel_lanes > 0`` -> flattened Verilog names
SELECT_FLAT_NAMES = {
    "s_bank": "ctrl__s_bank",
    **{f"sel_{a}_{b}": verilog_name("sel", a, b) for a in ("i", "cmd")
       for b in ("valid", "ready", "payload")},
    **{f"sel_{name}": verilog_name("sel", "status", name) for name in (
        "busy", "done", "error", "error_code", "held", "held_valid", "nnz", "s_len", "bank",
        "cycles")},
    "sel_exposed_cycles": "sel__exposed_cycles",
}


def core_member(core, name: str):
    """The member of ``core`` that the flat port ``name`` became (``"start"`` ->
    ``core.ctrl.start``); a core that still has the flat port (a stand-in) gives that."""
    flat = getattr(core, name, None)
    if flat is not None:
        return flat
    obj = core
    for part in FLAT_NAMES[name].split("__"):
        obj = getattr(obj, part)
    return obj
