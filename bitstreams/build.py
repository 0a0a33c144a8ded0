"""FPGA bitstreams of the SWAT core behind the UART bridge, with utilization / Fmax reports.

``python -m bitstreams.build [--board icebreaker|ulx3s|all] [--rows R --cols C] [--freq MHz]
[--seeds 1,2,3] [--jobs 2]``

Each board (``bitstreams/boards.py``) is elaborated with Amaranth's build system
(amaranth-boards platform, ``hw.board_top`` top); the build plan is extracted to
``bitstreams/<board>/build/`` (git-ignored) and its commands run one by one
(``bitstreams/runner.py``): yosys once, nextpnr once per seed in ``build/seed<N>/``, and the
pack step for the fastest seed. For a board with ``fold_bram_outreg`` the yosys netlist is
rewritten between yosys and nextpnr (``bitstreams/bram_outreg.py``).
``bitstreams/<board>/report.json`` records the figures parsed from the tools' reports
(``bitstreams/reports.py``) with the commit that was elaborated and the toolchain
(``bitstreams/provenance.py``); ``report.md`` and ``bitstreams/README.md`` are rendered from
it (``bitstreams/render.py``).

Tools come from the environment variables Amaranth reads (``YOSYS``, ``NEXTPNR_ICE40``,
``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK``, as ``nox -s bitstream`` sets them); unset ones
default to the YoWASP wrappers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import gc
import json
import os
import shutil
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

from . import bram_outreg, check, provenance, render, reports, runner
from .boards import BOARDS, Board, configure

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEP_NAMES = ("yosys", "nextpnr", "pack")


def nextpnr_opts(board: Board, seed: int) -> str:
    """The nextpnr options added to Amaranth's: a JSON report, a bitstream even when timing
    fails (the report states the miss), the seed, and the board's own."""
    return f"--report report.json --timing-allow-fail --seed {seed} {board.nextpnr_opts}".strip()


def _elaborate(board: Board, baud: int, seed: int, build_dir: Path):
    """The board top and its extracted build plan; returns ``(top, plan commands)``."""
    top = board.top(baud=baud)
    plan = board.platform().build(top, name="top", do_build=False, **board.yosys_overrides(),
                                  nextpnr_opts=nextpnr_opts(board, seed))
    plan.extract(str(build_dir))
    cmds = runner.plan_commands((build_dir / "build_top.sh").read_text())
    if len(cmds) != len(STEP_NAMES):
        raise RuntimeError(f"expected {len(STEP_NAMES)} commands in build_top.sh "
                           f"({', '.join(STEP_NAMES)}), found {len(cmds)}")
    return top, cmds


def _place_and_route(board: Board, cmd: str, seed: int, inputs: list[Path], env: dict,
                     jobs: int = 1) -> dict:
    """One nextpnr run in ``build/seed<N>/`` (``inputs``, the synthesis results, hard-linked
    from ``build/``: the WebAssembly tools may open nothing outside their working directory,
    symlinks included). A seed added to a finished build may list ``build/``'s packed
    bitstream among ``inputs``; it is left out."""
    build_dir = inputs[0].parent
    seed_dir = build_dir / f"seed{seed}"
    shutil.rmtree(seed_dir, ignore_errors=True)
    seed_dir.mkdir()
    for f in inputs:
        if f.name == board.family.bitstream:  # an earlier seed's packed output, not an input:
            continue  # linked, this seed's pack would write into it (and fail: "same file")
        try:
            os.link(f, seed_dir / f.name)
        except OSError:  # another file system
            shutil.copyfile(f, seed_dir / f.name)
    label = f"[{board.name}] nextpnr seed {seed}"
    with runner.nextpnr_lock(label, slots=jobs):
        seconds = runner.run_step(label, runner.with_seed(cmd, seed), seed_dir, env,
                                  seed_dir / "nextpnr.log")
    pnr = reports.parse_nextpnr(seed_dir / "report.json", seed_dir / "top.tim")
    name, clk = reports.main_clock(pnr["fmax"], board.f_mhz)
    cp = pnr["critical_paths"][0] if pnr["critical_paths"] else {}
    return {"seed": seed, "dir": seed_dir, "pnr": pnr, "clock_name": name,
            "achieved_fmax_mhz": float(clk["achieved"]) if clk else None,
            "startpoint": cp.get("startpoint", "?"), "endpoint": cp.get("endpoint", "?"),
            "delay_ns": cp.get("delay_ns"), "nextpnr_seconds": round(seconds, 1)}


def build_board(board: Board, *, baud: int, seeds: list[int], synth_only: bool,
                env: dict, jobs: int = 1) -> dict:
    """Elaborate, synthesize, place and route ``board``; returns its report (also written to
    ``<board>/report.json`` and ``report.md`` unless ``synth_only``). ``jobs``: seeds placed
    and routed at the same time (each nextpnr run is one process on one core)."""
    outdir = HERE / board.name
    build_dir = outdir / "build"
    staging = outdir / "build.new"  # the last build stays until this one has elaborated
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    source = provenance.source_state(REPO)  # before elaboration: the tree may move meanwhile
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    runner.log(f"[{board.name}] elaborating {board.rows}x{board.cols} array, D/S/C depth "
               f"{board.d_depth}/{board.s_depth}/{board.c_depth}, {board.f_mhz:g} MHz requested,"
               f" commit {source['commit_short']}{' (dirty)' if source['dirty'] else ''}")
    t_start = time.monotonic()
    try:
        top, cmds = _elaborate(board, baud, seeds[0], staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(build_dir, ignore_errors=True)
    staging.rename(build_dir)
    digest = provenance.rtlil_digest((build_dir / "top.il").read_text())
    steps = {"elaborate": time.monotonic() - t_start}

    steps["yosys"] = runner.run_step(f"[{board.name}] yosys", cmds[0], build_dir, env,
                                     build_dir / "yosys.log")
    cells = reports.parse_yosys_stat((build_dir / "top.rpt").read_text(errors="replace"))
    outreg = _fold_bram_outreg(board, build_dir, steps)
    if synth_only:
        summary = board.family.summarize_cells(cells)
        (build_dir / "synth_report.json").write_text(json.dumps(
            {"board": board.name, "git_commit": source["commit_short"], "rtlil_sha256": digest,
             "yosys_cells": summary, "yosys_cells_raw": cells, "bram_outreg": outreg},
            indent=2) + "\n")
        runner.log(f"[{board.name}] synth-only: {summary}")
        return {}

    # one place-and-route per seed; after each, the fastest so far is packed and the report
    # rewritten, so a build stopped between seeds still leaves a report of the seeds done
    context = {"board": board, "source": source, "date": date, "digest": digest, "top": top,
               "baud": baud, "cells": cells, "outreg": outreg, "seeds": seeds, "bit": build_dir
               / board.family.bitstream, "toolchain": provenance.toolchain_versions(
                   env, board.family.nextpnr_env)}
    inputs = sorted(f for f in build_dir.iterdir() if f.is_file() and f.name.startswith("top."))
    runs, best = [], None
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_place_and_route, board, cmds[1], seed, inputs, env, jobs)
                   for seed in seeds]
        try:
            for future in concurrent.futures.as_completed(futures):
                run = future.result()
                best = _add_run(context, runs, run, best, steps, cmds, env, t_start)
        except BaseException:  # a failed seed: the report of the seeds done stays
            for future in futures:
                future.cancel()
            raise
    return _report(context, runs, best, steps)


def _fold_bram_outreg(board: Board, build_dir: Path, steps: dict) -> dict | None:
    """For a board with ``fold_bram_outreg``: rewrites ``build/top.json`` (yosys's netlist,
    nextpnr's input) with the register after each block-RAM read folded into the block RAM,
    logs the counts and returns the summary (``None`` for other boards)."""
    if not board.fold_bram_outreg:
        return None
    t0 = time.monotonic()
    netlist = build_dir / "top.json"
    summary = bram_outreg.rewrite(netlist, netlist)
    steps["bram_outreg"] = time.monotonic() - t0
    runner.log(f"[{board.name}] bram_outreg: {bram_outreg.describe(summary)}")
    return summary


def _add_run(ctx: dict, runs: list[dict], run: dict, best: dict | None, steps: dict,
             cmds: list[str], env: dict, t_start: float) -> dict:
    """Adds one finished place-and-route ``run`` (kept in seed order): packs it if it is the
    fastest so far and rewrites the report, so a build stopped between seeds still leaves a
    report of the seeds done. Returns the fastest run."""
    board = ctx["board"]
    outdir = HERE / board.name
    runs.append(run)
    runs.sort(key=lambda r: ctx["seeds"].index(r["seed"]))
    steps[f"nextpnr seed {run['seed']}"] = run["nextpnr_seconds"]
    if best is None or (run["achieved_fmax_mhz"] or 0.0) > (best["achieved_fmax_mhz"] or 0.0):
        best = run
        steps["pack"] = runner.run_step(f"[{board.name}] pack (seed {run['seed']})", cmds[2],
                                        run["dir"], env, run["dir"] / "pack.log")
        shutil.copyfile(run["dir"] / board.family.bitstream, ctx["bit"])
    steps["total"] = time.monotonic() - t_start
    report = _report(ctx, runs, best, steps)
    (outdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    analysis = render.analysis_text(HERE, board.name)
    (outdir / "report.md").write_text(render.render_report(report, analysis))
    runner.log(f"[{board.name}] wrote {outdir / 'report.json'} and report.md "
               f"({len(runs)} of {len(ctx['seeds'])} seeds)")
    return best


def _report(ctx: dict, runs: list[dict], best: dict, steps: dict) -> dict:
    """``report.json`` of the place-and-route ``runs`` so far (``best``: the one packed)."""
    board, top, bit = ctx["board"], ctx["top"], ctx["bit"]
    f_pll = top.f_sync / 1e6
    achieved = best["achieved_fmax_mhz"]
    fmaxes = [r["achieved_fmax_mhz"] for r in runs if r["achieved_fmax_mhz"] is not None]
    return {
        "board": board.name,
        "title": board.title,
        "device": board.device,
        "date_utc": ctx["date"],
        "git_commit": ctx["source"]["commit_short"],
        "git_commit_full": ctx["source"]["commit"],
        "git_uncommitted": ctx["source"]["dirty"],
        "rtlil_sha256": ctx["digest"],
        "config": {
            "rows": board.rows, "cols": board.cols, "pes": board.rows * board.cols,
            "d_depth": board.d_depth, "s_depth": board.s_depth, "c_depth": board.c_depth,
            "core_extra": board.core_extra, "baud": ctx["baud"], "uart_divisor": top.divisor,
            "synth_opts": board.synth_opts, "lut_wire_ps": board.lut_wire_ps,
            "fold_bram_outreg": board.fold_bram_outreg,
            "nextpnr_opts": nextpnr_opts(board, best["seed"]),
        },
        "clock": {
            "board_oscillator_mhz": top.clk_in_hz / 1e6,
            "requested_mhz": board.f_mhz,
            "pll_mhz": round(f_pll, 4),
            "pll": {k: v for k, v in top.pll.items() if not k.startswith("f_")},
            "nextpnr_clock": best["clock_name"],
            "achieved_fmax_mhz": achieved,
            "met": achieved is not None and achieved >= f_pll,
            "slack_mhz": None if achieved is None else round(achieved - f_pll, 2),
            "seed": best["seed"],
        },
        "seeds_requested": ctx["seeds"],
        "seeds": [{k: v for k, v in r.items() if k not in ("dir", "pnr", "clock_name")}
                  for r in runs],
        "fmax_spread_mhz": {"min": min(fmaxes), "median": statistics.median(fmaxes),
                            "max": max(fmaxes)} if fmaxes else None,
        "fmax_all_clocks": best["pnr"]["fmax"],
        "utilization": best["pnr"]["utilization"],
        "yosys_cells": board.family.summarize_cells(ctx["cells"]),
        "yosys_cells_raw": ctx["cells"],
        "bram_outreg": ctx["outreg"],
        "critical_paths": best["pnr"]["critical_paths"],
        "build_seconds": {k: round(v, 1) for k, v in steps.items()},
        "bitstream": str(bit.relative_to(REPO)),
        "bitstream_bytes": bit.stat().st_size,
        "toolchain": ctx["toolchain"],
    }


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        msg = f"not a comma-separated list of integers: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"repeated seed in {text!r}")
    return seeds


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bitstreams.build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", default="all", choices=[*BOARDS, "all"])
    ap.add_argument("--rows", type=int)
    ap.add_argument("--cols", type=int)
    ap.add_argument("--freq", type=float, help="requested sync clock in MHz")
    ap.add_argument("--d-depth", type=int)
    ap.add_argument("--s-depth", type=int)
    ap.add_argument("--c-depth", type=int)
    ap.add_argument("--hold-depth", type=int, help="SwatCore hold_depth (result queue)")
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--seeds", type=_seeds, default=[1],
                    help="nextpnr seeds, comma-separated: one place-and-route each, the "
                         "fastest one's bitstream is kept, the report lists all (default 1)")
    ap.add_argument("--jobs", type=int, choices=(1, 2), default=1,
                    help="seeds placed and routed at the same time (default 1; each is one "
                         "nextpnr process on one core)")
    ap.add_argument("--synth-only", action="store_true",
                    help="stop after yosys (cell counts in build/synth_report.json)")
    ap.add_argument("--render-only", action="store_true",
                    help="only re-render report.md and README.md from the reports")
    ap.add_argument("--check", action="store_true",
                    help="only check that each committed report is of the design the tree "
                         "elaborates to now (same RTLIL hash); exit 1 if not")
    return ap.parse_args(argv)


def _drop_refused(exc: BaseException) -> None:
    """Frees what the failed build of one board left behind (the frames of ``exc``'s
    traceback) without Amaranth's "created but never used" warning for it: an elaboration that
    raised leaves the submodules it had made (``--d-depth 70000``: the bridge refuses it in
    ``SwatSystem.elaborate``, after the core and the UARTs were made). A constructor that
    refused a parameter leaves nothing to warn: ``SwatCore`` refusing ``rows=0`` and the
    ``SwatSystem`` it leaves half-made are both marked (``hw.params.rejected_unused``). Only
    these objects: the warning filter holds while they are freed here, and warnings of
    anything else stand."""
    from amaranth.hdl import UnusedElaboratable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        traceback.clear_frames(exc.__traceback__)
        gc.collect()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render_only:
        render.render_files(HERE)
        return 0
    if args.check:
        return 1 if check.stale_reports(HERE) else 0
    env = runner.tool_env()
    os.environ.update({k: env[k] for k in (*runner.TOOL_DEFAULTS, "AMARANTH_USE_YOSYS")})
    failed = []
    for name in (list(BOARDS) if args.board == "all" else [args.board]):
        try:
            board = configure(name, freq=args.freq, hold_depth=args.hold_depth, rows=args.rows,
                              cols=args.cols, d_depth=args.d_depth, s_depth=args.s_depth,
                              c_depth=args.c_depth)
            rep = build_board(board, baud=args.baud, seeds=args.seeds,
                              synth_only=args.synth_only, env=env, jobs=args.jobs)
        except Exception as exc:  # one line per failed board, then the next board
            runner.log(f"[{name}] FAILED: {type(exc).__name__}: {exc}")
            failed.append(name)
            _drop_refused(exc)
            continue
        clk = rep.get("clock")
        if clk and clk["achieved_fmax_mhz"] is not None:
            runner.log(f"[{name}] Fmax {clk['achieved_fmax_mhz']:.2f} MHz vs {clk['pll_mhz']:g} "
                       f"MHz requested ({'met' if clk['met'] else 'MISSED'}); "
                       f"build {rep['build_seconds']['total']:.0f} s")
    if not args.synth_only:
        render.render_files(HERE)
        runner.log(f"wrote {HERE / 'README.md'}")
    if failed:
        runner.log(f"failed boards: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
