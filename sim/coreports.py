"""The core's top-level port and buffer-memory names, in one place for every harness.

The C++ harness (``sim/cpp/core_main.cpp`` through the generated ``harness_config.h``), the
cocotb driver (``sim/tb/driver.py``) and the model builder (``sim/verilate.py``: which memories
are made public) all take the Verilog names from here, so a renamed port of ``hw.core.SwatCore``
(for instance a flattened ``wiring.Signature`` member ``host__d_we``) is followed by changing
:data:`PORTS` alone.

Each logical name maps to a tuple of candidate Verilog names, tried in order against the ports
the elaborated Verilog actually has (:func:`resolve`): the flat names of the first core and the
flattened ``wiring.Signature`` names (``d_write__en``, ``ctrl__start``, ... see
``hw.core_port_names``) both work while the rename lands.
"""

from __future__ import annotations

#: logical name -> candidate Verilog port names (first one present wins)
PORTS: dict[str, tuple[str, ...]] = {
    "clk": ("clk",),
    "rst": ("rst",),
    "d_we": ("d_we", "d_write__en"),
    "d_addr": ("d_addr", "d_write__addr"),
    "d_data": ("d_data", "d_write__data"),
    "s_we": ("s_we", "s_write__en"),
    "s_addr": ("s_addr", "s_write__addr"),
    "s_data": ("s_data", "s_write__data"),
    "c_addr": ("c_addr", "c_read__addr"),
    "c_data": ("c_data", "c_read__data"),
    "m": ("m", "ctrl__m"),
    "k": ("k", "ctrl__k"),
    "n": ("n", "ctrl__n"),
    "s_len": ("s_len", "ctrl__s_len"),
    "start": ("start", "ctrl__start"),
    "busy": ("busy", "ctrl__busy"),
    "done": ("done", "ctrl__done"),
    "error": ("error", "ctrl__error"),
    "error_code": ("error_code", "ctrl__error_code"),
    "cycles": ("cycles", "ctrl__cycles"),
    "busy_cycles": ("busy_cycles", "ctrl__busy_cycles"),
    "stall_cycles": ("stall_cycles", "ctrl__stall_cycles"),
    "idle_cycles": ("idle_cycles", "ctrl__idle_cycles"),
}

#: ports the harness drives to a constant 1 when the core has them (a read port's enable)
ENABLES: dict[str, tuple[str, ...]] = {
    "c_en": ("c_read__en",),
}

#: ports of a core built with the threshold-select unit (``sel_lanes > 0``; names from
#: ``hw.core_port_names.SELECT_FLAT_NAMES``): all present, or the core has no select unit
SELECT: dict[str, tuple[str, ...]] = {
    "s_bank": ("ctrl__s_bank",),
    "sel_i_valid": ("sel__i__valid",),
    "sel_i_ready": ("sel__i__ready",),
    "sel_i_payload": ("sel__i__payload",),
    "sel_cmd_valid": ("sel__cmd__valid",),
    "sel_cmd_ready": ("sel__cmd__ready",),
    "sel_cmd_payload": ("sel__cmd__payload",),
    **{f"sel_{name}": (f"sel__status__{name}",) for name in (
        "busy", "done", "error", "error_code", "held", "held_valid", "nnz", "s_len", "bank",
        "cycles")},
    "sel_exposed_cycles": ("sel__exposed_cycles",),
}

#: ports of a core whose select unit has a clock of its own (``sel_clock_gate``): its clock
#: input and its ``quiet`` (the harness stops that clock while the unit is quiet); both or none
SELECT_GATE: dict[str, tuple[str, ...]] = {
    "sel_clk": ("sel_clk",),
    "sel_quiet": ("sel_quiet",),
}

#: buffer -> candidate names of the top module's memory array holding it
MEMORIES: dict[str, tuple[str, ...]] = {
    "d": ("d_mem",),
    "s": ("s_mem",),
    "c": ("c_mem",),
}


#: a core whose S buffer is split into sub-banks: memories ``s_mem_<b>``
S_BANK_MEMORY = "s_mem_{b}"

#: a core with one copy of D per PE column (``hw.core.SwatCore.split_buffers``): memories
#: ``d_mem_<j>``, each holding all of D (a preload writes every copy)
D_COPY_MEMORY = "d_mem_{j}"

#: likewise one copy of S per PE column and the dispatcher's (a core without the select unit):
#: memories ``s_copy_<j>``, each holding all of S
S_COPY_MEMORY = "s_copy_{j}"

#: a core with result logs (one per PE column): memory ``c_log_<j>`` and port
#: ``ctrl__results__<j>`` (entries the last operation wrote to log ``j``)
LOG_MEMORY = "c_log_{j}"
RESULTS_PORT = "ctrl__results__{j}"


class PortError(RuntimeError):
    """The elaborated core lacks a port or buffer memory the harness needs."""


def _bare(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def resolve(ports: dict, memories: list | None = None) -> dict:
    """Map every logical name of :data:`PORTS` (and ``mem_d``/``mem_s``/``mem_c``) to the
    Verilog name present in ``ports`` (``{name: width}``) / ``memories``.

    Memories that are missing map to ``None`` (the harness then uses the ports); a missing
    port raises :class:`PortError` naming it. ``logs`` lists ``(memory, count port)`` of the
    result logs of a core that has them (empty otherwise); ``select`` maps the names of
    :data:`SELECT` to Verilog names on a core with the select unit (empty otherwise);
    ``select_gate`` those of :data:`SELECT_GATE` on a core whose unit has a clock of its own.
    ``d_copies`` / ``s_copies`` list the copies of D / S (:data:`D_COPY_MEMORY`,
    :data:`S_COPY_MEMORY`) of a core that has one per consumer and no single memory (empty
    otherwise).
    """
    have = {_bare(p) for p in ports}
    out = {}
    for logical, cands in PORTS.items():
        hit = next((c for c in cands if c in have), None)
        if hit is None:
            raise PortError(f"the core has no port for {logical!r} (tried {', '.join(cands)})")
        out[logical] = hit
    for logical, cands in ENABLES.items():
        out[logical] = next((c for c in cands if c in have), None)
    sel = {logical: next((c for c in cands if c in have), None)
           for logical, cands in SELECT.items()}
    missing = [logical for logical, hit in sel.items() if hit is None]
    if len(missing) < len(sel) and missing:
        raise PortError(f"the core has part of the select unit's ports; missing "
                        f"{', '.join(missing)}")
    out["select"] = {} if missing else sel
    gate = {logical: next((c for c in cands if c in have), None)
            for logical, cands in SELECT_GATE.items()}
    if None in gate.values() and any(gate.values()):
        raise PortError("the core has one of the select unit's clock-gate ports ("
                        + ", ".join(h for h in gate.values() if h) + ") but not both")
    out["select_gate"] = gate if all(gate.values()) and out["select"] else {}
    mem_names = {_bare(m["name"]) for m in (memories or [])}
    for buf, cands in MEMORIES.items():
        out[f"mem_{buf}"] = next((c for c in cands if c in mem_names), None)
    logs = []
    while LOG_MEMORY.format(j=len(logs)) in mem_names:
        j = len(logs)
        if RESULTS_PORT.format(j=j) not in have:
            raise PortError(f"the core has result log {LOG_MEMORY.format(j=j)} but no port "
                            f"{RESULTS_PORT.format(j=j)}")
        logs.append((LOG_MEMORY.format(j=j), RESULTS_PORT.format(j=j)))
    out["logs"] = logs
    # an S buffer split into sub-banks (word x in s_mem_<x % B> at row x // B), when there is
    # no single S memory
    banks = []
    while out["mem_s"] is None and S_BANK_MEMORY.format(b=len(banks)) in mem_names:
        banks.append(S_BANK_MEMORY.format(b=len(banks)))
    out["s_banks"] = banks
    for buf, pattern in (("d", D_COPY_MEMORY), ("s", S_COPY_MEMORY)):
        copies = []
        while out[f"mem_{buf}"] is None and pattern.format(j=len(copies)) in mem_names:
            copies.append(pattern.format(j=len(copies)))
        out[f"{buf}_copies"] = copies
    return out
