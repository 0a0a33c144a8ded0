"""Fold the register after each ECP5 block-RAM read into the block RAM's output register.

Why: the RTL puts a fabric register right after every block-RAM read (``hw.bram``: yosys folds
the read-data register into the DP16KD as its read latch, in ``REGMODE`` ``NOREG``, and each
consumer registers the word again with nothing in between). The DP16KD's clock-to-output in
``NOREG`` mode is long, and the routed net to that fabric register came on top of it: with
nextpnr's ``--tmg-ripup`` every critical path of the ULX3S build was DOB → one net → that
register. The DP16KD has an optional output register (``REGMODE_A`` / ``REGMODE_B`` =
``"OUTREG"``, clock enable ``OCEA`` / ``OCEB``) behind the read latch, but yosys's ECP5 memory
mapping (``share/lattice/brams_map_16kd.v``) always sets ``NOREG``. This pass, run on yosys's
JSON netlist before nextpnr, moves the fabric register into the block RAM.

Clock-to-output, prjtrellis-db ``ECP5/timing/speed_6/cells.json`` (what nextpnr's ECP5 chip
database is built from; min–max over the corners, nextpnr takes the max): CLKB → DOB 5.795–5.830
ns and CLKA → DOA 5.535–5.609 ns in ``NOREG``, 0.882–0.956 ns and 0.903–0.973 ns in
``OUTREG``; ``OCEB`` / ``OCEA`` setup 0.253 / 0.226 ns. (A fabric FF: CLK → Q 0.430–0.525 ns.)

The fold rule, per read port of a DP16KD: side A or B of a true-dual-port cell (``DATA_WIDTH``
up to 18: ``DOX`` clocked by ``CLKX``), or the one read port of a pseudo-dual-port cell
(yosys's ``$__PDPW16KD_`` mapping: ``DATA_WIDTH_A`` 36, the 36-bit write, which is what puts
the cell in that mode for nextpnr; a 36-bit read has its data on ``DOA`` and ``DOB``, a
narrower one on ``DOB``, all on the read clock ``CLKB``; nextpnr times them so, and yosys ties
``OCEA`` to 0). Lattice's ``PDPW16KD`` has one ``REGMODE`` for its read, which nextpnr writes
to both ``REGMODE_A`` and ``REGMODE_B``: a pseudo-dual-port cell is folded as one port (side
``AB``) on both sides' settings. The port is folded when

- its ``REGMODE`` is ``NOREG`` (both, for a pseudo-dual-port cell), its clock is not inverted
  (``CLKXMUX``) and its ``RSTX`` is constant 0 (both ``RSTA`` and ``RSTB`` for a
  pseudo-dual-port cell);
- every used ``DO`` bit drives exactly one load (module ports count), the ``DI`` of a
  ``TRELLIS_FF``;
- each such FF is clocked by the port's clock net (``CLKMUX`` ``CLK``; a pseudo-dual-port cell
  needs ``CLKA`` and ``CLKB`` to be that net), has no set/reset (``LSRMUX`` ``LSR`` with
  ``LSR`` constant 0) and ``REGSET`` ``RESET`` (initial value 0; no ``init`` attribute of 1 on
  its output), and all of them share one clock enable: ``CEMUX`` ``1`` for all (``OCE`` = 1)
  or ``CEMUX`` ``CE`` with the same ``CE`` net for all (``OCE`` = that net).

Then ``REGMODE_X`` becomes ``OUTREG``, ``OCEX`` the common enable (for a pseudo-dual-port cell
both ``REGMODE``s and both ``OCE``s), each ``DO`` pin is connected to its FF's output net, and
the FFs are deleted. The nets the ``DO`` pins drove before keep their names (``netnames``),
now without driver or load.

Why it is exact (no cycle changes): the output register is the read latch's word registered
once more on the same clock edge, loaded when ``OCE`` is high and cleared only by ``RST`` and
by the power-up reset, to 0. So reads Lattice's simulation model of the same EBR generation
(MachXO2 ``DP8KC``, public copies: ``if (OCEB) DOB_reg <= DOB_node``, and in pseudo-dual-port
mode the low half ``DOA`` also from a register on ``CLKB`` / ``OCEB``), and so reads the
ECP3's ``DP16KC``, the ``DP16KD``'s predecessor with the same pins (``OCEB`` loads ``DOB_reg``
and, for a 36-bit read, ``DOAB_reg``, which ``DOA`` shows under ``REGMODE_A``; ``RSTB`` and
GSR/PUR clear them; ``CEB`` does not gate them); the ECP5 ``DP16KD`` model itself was not at
hand, and yosys's is a blackbox. That register is the removed FF: same D (the latch's output),
same clock, same enable, never reset, starting at 0 (an ECP5 FF starts at its ``REGSET``
value). The read latch itself (``CE``, ``WRITEMODE``, address) is untouched,
and every consumer sees the same net with the same value in every cycle; only where the
register sits changes. ``tests/test_bitstreams_bram_outreg.py`` runs a folded and an unfolded
netlist side by side (Verilator, such a model).

Skipped (left as they are), by reason in the summary: ``regmode`` (already ``OUTREG``),
``clock`` (inverted or different clock), ``bram_reset`` (``RST`` not constant 0: it would clear
the output register too), ``load`` (a ``DO`` bit with no FF or more than one load, e.g. a LUT
between block RAM and register, or a second consumer), ``reset`` (the FF has a set/reset, e.g.
the dispatcher's S copy, whose following register has a synchronous reset: folding it would
need the reset into ``RST``, which also clears the read latch, so it is not the same
behaviour without more proof), ``init`` (the FF starts at 1), ``enable`` (``CEMUX`` inverted
or constant 0, or different enables across the port's bits: one ``OCE`` per port).

``python -m bitstreams.bram_outreg in.json out.json`` rewrites a netlist (``out.json`` may be
``in.json``; written through a temporary file, with ``out.json``'s permissions, or
``in.json``'s for a new file); an input that is not a yosys JSON netlist, or a file that
cannot be read or written, is one line on stderr and exit status 1. ``bitstreams.build`` runs
:func:`rewrite` on ``build/top.json`` for boards with ``fold_bram_outreg``.
"""

from __future__ import annotations

import argparse
import collections
import json
import stat
import sys
from pathlib import Path

from sw.atomic import atomic_write_text

__all__ = ["NetlistError", "fold_outreg", "describe", "rewrite", "main"]

#: how many skipped ports the summary names (the rest are only counted)
MAX_NAMED = 20


class NetlistError(ValueError):
    """The input is not a yosys JSON netlist with a top module."""


def _param(cell: dict, name: str, default: str) -> str:
    """A cell parameter as a string without the trailing space yosys's JSON adds to strings
    that look like bit vectors (``CEMUX`` ``"1 "``)."""
    return str(cell.get("parameters", {}).get(name, default)).strip()


def _int_param(cell: dict, name: str, default: int) -> int | None:
    """An integer parameter: yosys's JSON writes it as a 32-character bit string (or, with
    ``-compat-int``, a number); ``None`` if it is neither."""
    value = cell.get("parameters", {}).get(name, default)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if len(text) == 32 and set(text) <= {"0", "1"}:
        return int(text, 2)
    return int(text) if text.isdigit() else None


def _top(netlist) -> dict:
    """The module of ``netlist`` that carries yosys's ``top`` attribute, checked to have the
    shape this pass reads (:func:`_check_shape`)."""
    if not isinstance(netlist, dict) or not isinstance(netlist.get("modules"), dict):
        raise NetlistError("not a yosys JSON netlist (no 'modules' object)")
    tops = [m for m in netlist["modules"].values()
            if isinstance(m, dict) and isinstance(m.get("attributes", {}), dict)
            and str(m.get("attributes", {}).get("top", "0")).strip("0 ")]
    if len(tops) != 1:
        raise NetlistError("no top module (no module has the 'top' attribute)" if not tops
                           else f"{len(tops)} modules have the 'top' attribute")
    _check_shape(tops[0])
    return tops[0]


def _check_shape(top: dict) -> None:
    """:class:`NetlistError` unless ``top``'s cells, ports and net names are objects of the
    shape yosys writes (the objects and lists this pass reads), so that a damaged netlist is an
    error message, not a traceback."""
    def need(ok, what):
        if not ok:
            raise NetlistError(f"not a yosys JSON netlist ({what})")

    for key in ("cells", "ports", "netnames"):
        items = top.get(key, {})
        need(isinstance(items, dict) and all(isinstance(v, dict) for v in items.values()),
             f"the top module's '{key}' is not an object of objects")
    for name, cell in top.get("cells", {}).items():
        for key in ("parameters", "port_directions", "connections"):
            need(isinstance(cell.get(key, {}), dict), f"cell {name!r}: '{key}' is not an object")
        need(all(isinstance(bits, list) for bits in cell.get("connections", {}).values()),
             f"cell {name!r}: a connection is not a list of bits")
    for key in ("ports", "netnames"):
        for name, item in top.get(key, {}).items():
            need(isinstance(item.get("bits", []), list)
                 and isinstance(item.get("attributes", {}), dict),
                 f"{key[:-1]} {name!r}: 'bits' is not a list or 'attributes' not an object")


def _loads(top: dict) -> dict[int, list[tuple[str, str]]]:
    """Net bit → its loads: ``(cell, port)`` for every cell input, ``("", port)`` for a
    module port (a net that leaves the module is used outside it)."""
    loads = collections.defaultdict(list)
    for name, cell in top.get("cells", {}).items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell.get("connections", {}).items():
            if dirs.get(port, "input") != "output":
                for b in bits:
                    if isinstance(b, int):
                        loads[b].append((name, port))
    for pname, port in top.get("ports", {}).items():
        for b in port.get("bits", []):
            if isinstance(b, int):
                loads[b].append(("", pname))
    return loads


def _init_ones(top: dict) -> set[int]:
    """Net bits whose ``init`` attribute is 1."""
    ones = set()
    for net in top.get("netnames", {}).values():
        init = str(net.get("attributes", {}).get("init", "")).strip()
        bits = net.get("bits", [])
        if init and len(init) == len(bits):
            ones.update(b for b, v in zip(bits, reversed(init), strict=True)
                        if v == "1" and isinstance(b, int))
    return ones


def _read_ports(cell: dict) -> list[tuple[str, tuple[str, ...], list[str]]]:
    """``(label, sides, DO pins)`` of a DP16KD's read ports: one per side, or one port on both
    sides' pins (clocked by ``CLKB``) when the cell is in pseudo-dual-port mode (a 36-bit
    write, ``DATA_WIDTH_A`` 36, as nextpnr tells the mode)."""
    conns = cell.get("connections", {})

    def pins(side):
        return sorted((p for p in conns if p.startswith("DO" + side) and p[3:].isdigit()),
                      key=lambda p: int(p[3:]))

    if _int_param(cell, "DATA_WIDTH_A", 18) == 36:
        return [("AB", ("A", "B"), pins("A") + pins("B"))]
    return [(side, (side,), pins(side)) for side in "AB"]


def _check_port(top, cell, sides, used, loads, init_ones):
    """``(reason, None)`` if the port cannot be folded, else ``(None, (ffs, enable))``: the FF
    of each used ``DO`` pin and the common enable connection."""
    conns, cells = cell["connections"], top["cells"]
    clock_pin = "CLK" + sides[-1]  # B for a pseudo-dual-port read
    clk = conns.get(clock_pin)
    for s in sides:
        if _param(cell, f"REGMODE_{s}", "NOREG") != "NOREG":
            return "regmode", None
        if _param(cell, f"CLK{s}MUX", f"CLK{s}") != f"CLK{s}" or conns.get(f"CLK{s}") != clk:
            return "clock", None
        if conns.get(f"RST{s}", ["0"]) != ["0"]:
            return "bram_reset", None
    ffs, enable = [], None
    for pin, bit in used:
        ls = loads.get(bit, [])
        if len(ls) != 1 or ls[0][1] != "DI" or cells.get(ls[0][0], {}).get("type") != "TRELLIS_FF":
            return "load", None
        ff = cells[ls[0][0]]
        fc = ff["connections"]
        if fc.get("CLK") != clk or _param(ff, "CLKMUX", "CLK") != "CLK":
            return "clock", None
        if _param(ff, "LSRMUX", "LSR") != "LSR" or fc.get("LSR", ["0"]) != ["0"]:
            return "reset", None
        q = fc.get("Q", [])
        if len(q) != 1:  # not a register's output: nothing to connect the DO pin to
            return "load", None
        if _param(ff, "REGSET", "RESET") != "RESET" or q[0] in init_ones:
            return "init", None
        cemux = _param(ff, "CEMUX", "1")
        if cemux == "1":
            this = ["1"]
        elif cemux == "CE" and "CE" in fc:
            this = fc["CE"]
        else:
            return "enable", None
        if enable is None:
            enable = this
        elif this != enable:
            return "enable", None
        ffs.append((pin, ls[0][0]))
    return None, (ffs, enable)


def fold_outreg(netlist: dict) -> dict:
    """Fold, in ``netlist`` (yosys's JSON, parsed; changed in place), the FF after each
    DP16KD read port into the block RAM's output register where that is exact (module
    docstring). Returns ``{"read_ports", "folded", "ffs_removed", "skipped": {reason: n},
    "skipped_ports": ["cell:side", ...]}`` (``read_ports``: ports with a used ``DO`` bit;
    a pseudo-dual-port read counts once, as side ``AB``)."""
    top = _top(netlist)
    cells = top.get("cells", {})
    loads = _loads(top)
    init_ones = _init_ones(top)
    summary = {"read_ports": 0, "folded": 0, "ffs_removed": 0, "skipped": {},
               "skipped_ports": []}
    skipped = collections.Counter()
    for name in sorted(n for n, c in cells.items() if c.get("type") == "DP16KD"):
        cell = cells[name]
        for label, sides, pins in _read_ports(cell):
            conns = cell.get("connections", {})
            used = [(p, conns[p][0]) for p in pins if len(conns[p]) == 1
                    and isinstance(conns[p][0], int) and loads.get(conns[p][0])]
            if not used:
                continue
            summary["read_ports"] += 1
            reason, found = _check_port(top, cell, sides, used, loads, init_ones)
            if reason:
                skipped[reason] += 1
                if len(summary["skipped_ports"]) < MAX_NAMED:
                    summary["skipped_ports"].append(f"{name}:{label}")
                continue
            ffs, enable = found
            for pin, ff in ffs:
                cell["connections"][pin] = list(cells[ff]["connections"]["Q"])
                del cells[ff]
            for s in sides:
                cell.setdefault("parameters", {})[f"REGMODE_{s}"] = "OUTREG"
                cell["connections"][f"OCE{s}"] = list(enable)
                cell.setdefault("port_directions", {})[f"OCE{s}"] = "input"
            summary["folded"] += 1
            summary["ffs_removed"] += len(ffs)
    summary["skipped"] = dict(sorted(skipped.items()))
    return summary


def describe(summary: dict) -> str:
    """One line of a summary, for logs."""
    skipped = ", ".join(f"{n} {r}" for r, n in summary["skipped"].items()) or "none"
    return (f"{summary['folded']} of {summary['read_ports']} block-RAM read ports folded into "
            f"OUTREG ({summary['ffs_removed']} FFs removed); skipped: {skipped}")


def rewrite(src: Path, dst: Path) -> dict:
    """Read the netlist ``src``, fold it, write it to ``dst`` (atomically, ``sw.atomic``, so
    ``dst`` may be ``src`` and is never left half written; the file keeps ``dst``'s
    permissions, or takes ``src``'s if ``dst`` is new; ``dst``'s folder must exist).
    Returns the summary; :class:`NetlistError` (the input), or ``OSError`` naming ``src`` or
    ``dst`` (never the temporary file) if it cannot."""
    src, dst = Path(src), Path(dst)
    try:
        text = src.read_text()
    except FileNotFoundError:
        raise NetlistError(f"{src}: no such file") from None
    except UnicodeDecodeError:
        raise NetlistError(f"{src}: not a yosys JSON netlist (not UTF-8 text)") from None
    try:
        netlist = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NetlistError(f"{src}: not a yosys JSON netlist (not JSON: {exc})") from None
    try:
        summary = fold_outreg(netlist)
    except NetlistError as exc:
        raise NetlistError(f"{src}: {exc}") from None
    try:
        mode = stat.S_IMODE(src.stat().st_mode)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(src)) from None
    atomic_write_text(json.dumps(netlist), dst, new_mode=mode)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitstreams.bram_outreg",
                                 description="Fold the register after each ECP5 DP16KD read "
                                             "into its output register (REGMODE OUTREG).")
    ap.add_argument("input", type=Path, help="yosys JSON netlist (synth_ecp5 -json)")
    ap.add_argument("output", type=Path, help="where to write the folded netlist")
    args = ap.parse_args(argv)
    try:
        summary = rewrite(args.input, args.output)
    except NetlistError as exc:
        print(f"bram_outreg: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bram_outreg: error: {exc.filename or args.output}: {exc.strerror}",
              file=sys.stderr)
        return 1
    print(describe(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
