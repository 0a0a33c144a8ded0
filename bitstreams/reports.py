"""Reading the tools' reports: yosys cell counts, nextpnr utilization, Fmax and critical paths.

nextpnr's ``--report`` JSON is the primary source; its log (``top.tim``) is the fallback for
the Fmax when the JSON is missing (a run killed after routing). Nothing here knows a board:
the family-specific grouping of cells is :meth:`bitstreams.boards.Family.summarize_cells`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["parse_yosys_stat", "parse_nextpnr", "critical_paths", "main_clock"]

_NOT_CELLS = {"cells", "wires", "ports", "wire", "port", "bits", "memories", "processes"}


def parse_yosys_stat(text: str) -> dict[str, int]:
    """Cell counts of the last ``stat`` block in a yosys log (the synthesized top)."""
    last = None
    for block in re.split(r"\n\s*=== ", text):
        if "Number of cells" in block or re.search(r"^\s+\d+\s+cells\s*$", block, re.M):
            last = block
    if last is None:
        return {}
    cells = {}
    # two layouts exist (old: "     SB_LUT4     123", new: "      123   SB_LUT4")
    for line in last.splitlines():
        s = line.strip()
        old = re.fullmatch(r"([A-Za-z_$][\w$]*)\s+(\d+)", s)
        new = re.fullmatch(r"(\d+)\s+(?:[\d.]+\s+)?([A-Za-z_$][\w$]*)", s)
        if old and old.group(1) not in _NOT_CELLS:
            cells[old.group(1)] = int(old.group(2))
        elif new and new.group(2) not in _NOT_CELLS:
            cells[new.group(2)] = int(new.group(1))
    return cells


def critical_paths(report: dict, max_nets: int = 40) -> list[dict]:
    """The ``critical_paths`` of a nextpnr JSON report, one record per clock pair: clocks,
    start and end point (``cell.port``), total, logic-level count, routing delay and the
    routed nets in order (at most ``max_nets``)."""
    out = []
    for cp in report.get("critical_paths", []):
        path = cp.get("path", [])
        routing = [seg for seg in path if seg.get("type") == "routing"]

        def point(seg, key):
            e = seg.get(key, {}) if seg else {}
            return f"{e.get('cell', '?')}.{e.get('port', '?')}"

        out.append({
            "from_clock": cp.get("from"), "to_clock": cp.get("to"),
            "startpoint": point(path[0] if path else None, "from"),
            "endpoint": point(path[-1] if path else None, "to"),
            "delay_ns": round(sum(float(seg.get("delay", 0.0)) for seg in path), 3),
            "logic_levels": sum(seg.get("type") == "logic" for seg in path),
            "routing_ns": round(sum(float(seg.get("delay", 0.0)) for seg in routing), 3),
            "nets": [seg.get("net") for seg in routing][:max_nets],
        })
    return out


def parse_nextpnr(report_json: Path, log: Path) -> dict:
    """``utilization``, ``fmax`` (per clock: ``achieved`` and ``constraint`` in MHz) and
    ``critical_paths`` of one nextpnr run, from its JSON report or else from its log."""
    res: dict = {"utilization": {}, "fmax": {}, "critical_paths": []}
    if report_json.exists():
        rep = json.loads(report_json.read_text())
        res["utilization"] = rep.get("utilization", {})
        res["fmax"] = rep.get("fmax", {})
        res["critical_paths"] = critical_paths(rep)
    elif log.exists():
        for m in re.finditer(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) "
                             r"at ([\d.]+) MHz\)", log.read_text(errors="replace")):
            res["fmax"][m.group(1)] = {"achieved": float(m.group(2)),
                                       "constraint": float(m.group(4))}
    return res


def main_clock(fmax: dict, f_req: float) -> tuple[str | None, dict | None]:
    """The entry of nextpnr's Fmax table constrained nearest ``f_req`` MHz (the ``sync``
    clock; nextpnr names the PLL output net itself)."""
    if not fmax:
        return None, None
    name = min(fmax, key=lambda k: abs(float(fmax[k].get("constraint", 0)) - f_req))
    return name, fmax[name]
