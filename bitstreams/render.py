"""Markdown from the build reports: ``<board>/report.md`` and the overview ``README.md``.

Both are generated from ``<board>/report.json`` (figures) and ``<board>/analysis.md``
(hand-written: what limits the board and what would fix it); the README's fixed text comes from
``readme.in.md``. Nothing is measured here, so both can be re-rendered at any time
(``python -m bitstreams.build --render-only``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .boards import BOARDS

__all__ = ["render_report", "render_readme", "render_files", "analysis_text", "util_rows"]


def util_rows(rep: dict) -> list[tuple[str, int, int, str]]:
    """``(resource, used, available, percent)`` of a report's nextpnr utilization: the
    family's main resources first, then every other one that is used."""
    util = rep.get("utilization", {})
    board = BOARDS.get(rep["board"])
    order = [n for n in (board.family.util_order if board else ()) if n in util]
    names = order + sorted(n for n in util if n not in order and util[n].get("used"))
    rows = []
    for n in names:
        used, avail = util[n].get("used", 0), util[n].get("available", 0)
        rows.append((n, used, avail, f"{100 * used / avail:.1f} %" if avail else "-"))
    return rows


def _short(name: str, limit: int = 90) -> str:
    """A nextpnr net name shortened: carry-chain names repeat ``_CCU2C_COUT_CIN`` dozens of
    times."""
    name = re.sub(r"((?:_SB_CARRY_CO_CI|_CCU2C_COUT_CIN)+)",
                  lambda m: f"{m.group(0)[:16]}(x{m.group(0).count('_CI')})", name)
    return name if len(name) <= limit else name[:limit // 2] + "…" + name[-limit // 2:]


def _source(rep: dict) -> str:
    commit = rep.get("git_commit") or "(not a git checkout)"
    dirty = rep.get("git_uncommitted") or []
    text = f"commit `{commit}`"
    if dirty:
        text += f" with uncommitted changes ({', '.join(f'`{d.strip()}`' for d in dirty)})"
    if "rtlil_sha256" not in rep:  # reports written before the commit was read up front
        return text + " (read after the build)"
    return text + f" (read before elaboration; RTLIL SHA-256 `{rep['rtlil_sha256'][:16]}`)"


def _timing(rep: dict) -> list[str]:
    clk = rep["clock"]
    if clk["achieved_fmax_mhz"] is None:
        return ["No Fmax in the nextpnr report."]
    verdict = "met" if clk["met"] else "**missed**"
    lines = [f"Achieved Fmax of `{clk['nextpnr_clock']}`: **{clk['achieved_fmax_mhz']:.2f} MHz** "
             f"against {clk['pll_mhz']:g} MHz requested: {verdict} "
             f"(slack {clk['slack_mhz']:+.2f} MHz)."]
    seeds = rep.get("seeds", [])
    requested = rep.get("seeds_requested", [])
    if len(seeds) < len(requested):
        lines += ["", f"The build stopped after {len(seeds)} of the {len(requested)} seeds "
                  f"requested ({', '.join(map(str, requested))})."]
    if len(seeds) > 1:
        spread = rep["fmax_spread_mhz"]
        lines += ["", f"Seed spread over {len(seeds)} nextpnr seeds: min {spread['min']:.2f}, "
                  f"median {spread['median']:.2f}, max {spread['max']:.2f} MHz; the bitstream "
                  f"is of seed {clk['seed']}.", "",
                  "| seed | Fmax (MHz) | critical path | nextpnr s |",
                  "| ---: | ---: | --- | ---: |"]
        for s in seeds:
            fmax = "-" if s["achieved_fmax_mhz"] is None else f"{s['achieved_fmax_mhz']:.2f}"
            lines.append(f"| {s['seed']} | {fmax} | `{_short(s['startpoint'], 60)}` -> "
                         f"`{_short(s['endpoint'], 60)}` | {s['nextpnr_seconds']:.0f} |")
    for cp in rep["critical_paths"][:1]:
        lines += ["", f"Critical path ({cp['from_clock']} -> {cp['to_clock']}): "
                  f"{cp['delay_ns']} ns, {cp['logic_levels']} logic levels, {cp['routing_ns']} "
                  f"ns of it routing; from `{cp['startpoint']}` to `{cp['endpoint']}`."]
        nets = [_short(n) for n in cp["nets"] if n]
        if len(nets) > 12:
            nets = nets[:6] + ["..."] + nets[-6:]
        if nets:
            lines += ["", "Nets on it (yosys/nextpnr names, shortened): "
                      + ", ".join(n if n == "..." else f"`{n}`" for n in nets)]
    return lines


def _outreg_line(rep: dict) -> list[str]:
    """The configuration line on the block-RAM output-register fold (none for a report
    without one: another family, or written before the fold existed)."""
    outreg = rep.get("bram_outreg")
    if not outreg:
        return []
    skipped = ", ".join(f"{n} {r}" for r, n in outreg["skipped"].items())
    return [f"- block-RAM output registers (`bitstreams/bram_outreg.py`): the register after "
            f"{outreg['folded']} of {outreg['read_ports']} DP16KD read ports folded into the "
            f"block RAM (`REGMODE` `OUTREG`)" + (f"; skipped: {skipped}" if skipped else "")]


def render_report(rep: dict, analysis: str = "") -> str:
    """``report.md`` of one board from its ``report.json`` and its hand-written analysis."""
    c, clk = rep["config"], rep["clock"]
    lines = [
        f"# {rep['title']}: SWAT core {c['rows']}x{c['cols']} behind the UART bridge",
        "",
        f"Built {rep['date_utc']} UTC from {_source(rep)} by `python -m bitstreams.build`. "
        "Generated file: the figures come from `report.json`, the analysis from `analysis.md`.",
        "",
        "## Configuration",
        "",
        f"- PE array {c['rows']} rows x {c['cols']} columns ({c['pes']} PEs); buffers "
        f"D {c['d_depth']} x {8 * c['rows']} bit, S {c['s_depth']} x 32 bit, "
        f"C {c['c_depth']} x {32 * c['rows']} bit; further core options {c['core_extra'] or '-'}",
        f"- clock: {clk['board_oscillator_mhz']:g} MHz oscillator -> PLL "
        f"{clk['pll_mhz']:g} MHz (requested {clk['requested_mhz']:g} MHz), PLL {clk['pll']}",
        f"- UART {c['baud']} baud 8N1 (divisor {c['uart_divisor']}), protocol in "
        "`docs/host-protocol.md`",
        f"- yosys synth options `{c['synth_opts'] or '(none)'}`"
        + (f", LUT mapping `abc9 -W {c['lut_wire_ps']}`" if c.get("lut_wire_ps") else "")
        + f", nextpnr `{c['nextpnr_opts']}`",
        *_outreg_line(rep),
        "",
        "## Timing",
        "",
        *_timing(rep),
    ]
    if analysis.strip():
        lines += ["", "## Analysis", "", analysis.strip()]
    lines += ["", "## Utilization (nextpnr)", "", "| resource | used | available | % |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {n} | {used} | {avail} | {pct} |" for n, used, avail, pct in util_rows(rep)]
    outreg = rep.get("bram_outreg")
    lines += ["", "Yosys cell counts: "
              + ", ".join(f"{k} {v}" for k, v in rep["yosys_cells"].items())
              + (f" (before the block-RAM output-register fold, which removed "
                 f"{outreg['ffs_removed']} FFs)" if outreg else ""),
              "", "## Build", "", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in rep["build_seconds"].items()]
    lines += ["", f"Bitstream: `{rep['bitstream']}` ({rep['bitstream_bytes']} bytes, "
              "git-ignored)", "", "Toolchain:", ""]
    lines += [f"- {k}: {v}" for k, v in rep["toolchain"].items()]
    return "\n".join(lines) + "\n"


def _overview_row(rep: dict) -> str:
    c, clk, util = rep["config"], rep["clock"], rep.get("utilization", {})

    def used(name):
        x = util.get(name)
        return f"{x['used']}/{x['available']}" if x else "-"

    board = BOARDS.get(rep["board"])
    fam = board.family if board else None
    logic = " / ".join(f"{used(n)} {n}" for n in fam.logic) if fam else "-"
    bram, dsp = (used(fam.bram), used(fam.dsp)) if fam else ("-", "-")
    fmax = clk["achieved_fmax_mhz"]
    fm = "-" if fmax is None else f"{fmax:.1f} MHz ({'met' if clk['met'] else 'missed'})"
    seeds = rep.get("seeds", [])
    if len(seeds) > 1:
        spread = rep["fmax_spread_mhz"]
        fm += f"; {len(seeds)} seeds {spread['min']:.1f}–{spread['max']:.1f}"
    return (f"| [{rep['board']}]({rep['board']}/report.md) | {rep['device']} | "
            f"{c['rows']}x{c['cols']} | {c['d_depth']}/{c['s_depth']}/{c['c_depth']} | "
            f"{clk['pll_mhz']:g} MHz | {fm} | {logic} | {bram} | {dsp} | "
            f"`{rep.get('git_commit') or '-'}` |")


def render_readme(template: str, reps: list[dict], analyses: dict[str, str]) -> str:
    """``README.md``: ``template`` with ``{table}`` replaced by one row per report and
    ``{analysis}`` by every board's analysis."""
    table = [
        "| board | device | array | buffers D/S/C (words) | requested | achieved Fmax | "
        "logic | BRAM | DSP | commit |",
        "| --- | --- | --- | --- | ---: | --- | --- | --- | --- | --- |",
        *(_overview_row(r) for r in reps),
    ]
    text = "\n\n".join(f"**{r['board']}.** {analyses[r['board']].strip()}"
                       for r in reps if analyses.get(r["board"], "").strip())
    return (template.replace("{table}", "\n".join(table))
            .replace("{analysis}", text or "(none)").rstrip("\n") + "\n")


def analysis_text(here: Path, board: str) -> str:
    """The hand-written ``<board>/analysis.md`` under ``here`` ("" if there is none)."""
    path = here / board / "analysis.md"
    return path.read_text() if path.exists() else ""


def render_files(here: Path) -> None:
    """Rewrite every ``<board>/report.md`` and ``README.md`` under ``here`` from the reports."""
    reps = []
    for path in sorted(here.glob("*/report.json")):
        rep = json.loads(path.read_text())
        path.with_name("report.md").write_text(
            render_report(rep, analysis_text(here, rep["board"])))
        reps.append(rep)
    analyses = {r["board"]: analysis_text(here, r["board"]) for r in reps}
    (here / "README.md").write_text(
        render_readme((here / "readme.in.md").read_text(), reps, analyses))

