"""Is a committed report still of the design the tree elaborates to?

A place-and-route run takes up to half an hour, so reports are not rebuilt for every change of
``hw/``. Elaborating a board takes seconds: :func:`stale_reports` elaborates each report's
configuration from the current tree and compares the RTLIL hash with the one the report
recorded (``python -m bitstreams.build --check``). Equal hashes mean the report, whatever
commit it names, describes the current design.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from . import provenance, runner
from .boards import Board, configure

__all__ = ["elaborated_digest", "stale_reports"]


def elaborated_digest(board: Board, baud: int) -> str:
    """SHA-256 of the RTLIL that ``board`` elaborates to from the current tree (no synthesis;
    the RTLIL does not depend on the place-and-route options)."""
    plan = board.platform().build(board.top(baud=baud), name="top", do_build=False,
                                  **board.yosys_overrides())
    return provenance.rtlil_digest(plan.files["top.il"])


def stale_reports(here: Path) -> list[str]:
    """Boards under ``here`` whose ``report.json`` was built from other RTLIL than the tree
    elaborates its configuration to now (one log line per board)."""
    stale = []
    for path in sorted(here.glob("*/report.json")):
        rep = json.loads(path.read_text())
        c = rep["config"]
        board = configure(rep["board"], freq=rep["clock"]["requested_mhz"], rows=c["rows"],
                          cols=c["cols"], d_depth=c["d_depth"], s_depth=c["s_depth"],
                          c_depth=c["c_depth"])
        board = dataclasses.replace(board, core_extra=c["core_extra"])
        digest = elaborated_digest(board, c["baud"])
        if digest == rep.get("rtlil_sha256"):
            runner.log(f"[{board.name}] report of {rep['git_commit']} matches the tree "
                       f"(RTLIL {digest[:16]})")
        else:
            runner.log(f"[{board.name}] STALE: the report of {rep['git_commit']} was built from "
                       f"other RTLIL than the tree elaborates to now ({digest[:16]})")
            stale.append(board.name)
    return stale
