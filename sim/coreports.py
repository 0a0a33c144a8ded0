"""The core's top-level port and buffer-memory names, in one place for every harness.

The C++ harness (``sim/cpp/core_main.cpp`` through the generated ``harness_config.h``), the
cocotb driver (``sim/tb/driver.py``) and the model builder (``sim/verilate.py``: which memories
are made public) all take the Verilog names from here, so a renamed port of ``hw.core.SwatCore``
(for instance a flattened ``wiring.Signature`` member ``host__d_we``) is followed by changing
:data:`PORTS` alone.

Each logical name maps to a tuple of candidate Verilog names, tried in order against the ports
the elaborated Verilog actually has (:func:`resolve`), so both the old and the new spelling
work while the rename lands.
"""

from __future__ import annotations

#: logical name -> candidate Verilog port names (first one present wins)
PORTS: dict[str, tuple[str, ...]] = {
    "clk": ("clk",),
    "rst": ("rst",),
    "d_we": ("d_we",),
    "d_addr": ("d_addr",),
    "d_data": ("d_data",),
    "s_we": ("s_we",),
    "s_addr": ("s_addr",),
    "s_data": ("s_data",),
    "c_addr": ("c_addr",),
    "c_data": ("c_data",),
    "m": ("m",),
    "k": ("k",),
    "n": ("n",),
    "s_len": ("s_len",),
    "start": ("start",),
    "busy": ("busy",),
    "done": ("done",),
    "error": ("error",),
    "error_code": ("error_code",),
    "cycles": ("cycles",),
    "busy_cycles": ("busy_cycles",),
    "stall_cycles": ("stall_cycles",),
    "idle_cycles": ("idle_cycles",),
}

#: buffer -> candidate names of the top module's memory array holding it
MEMORIES: dict[str, tuple[str, ...]] = {
    "d": ("d_mem",),
    "s": ("s_mem",),
    "c": ("c_mem",),
}


class PortError(RuntimeError):
    """The elaborated core lacks a port or buffer memory the harness needs."""


def _bare(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def resolve(ports: dict, memories: list | None = None) -> dict:
    """Map every logical name of :data:`PORTS` (and ``mem_d``/``mem_s``/``mem_c``) to the
    Verilog name present in ``ports`` (``{name: width}``) / ``memories``.

    Memories that are missing map to ``None`` (the harness then uses the ports); a missing
    port raises :class:`PortError` naming it.
    """
    have = {_bare(p) for p in ports}
    out = {}
    for logical, cands in PORTS.items():
        hit = next((c for c in cands if c in have), None)
        if hit is None:
            raise PortError(f"the core has no port for {logical!r} (tried {', '.join(cands)})")
        out[logical] = hit
    mem_names = {_bare(m["name"]) for m in (memories or [])}
    for buf, cands in MEMORIES.items():
        out[f"mem_{buf}"] = next((c for c in cands if c in mem_names), None)
    return out
