"""bitstreams.build: one board through a fake toolchain (seeds, provenance, files written) and
the command line."""

import gc
import json
import subprocess
import sys

import pytest
from recorded import recorded_warnings

from bitstreams import build, check, render, runner
from bitstreams.boards import configure
from bitstreams.provenance import rtlil_digest

FAKE_TOOL = """#!{python}
import json, pathlib, subprocess, sys
tool, args = pathlib.Path(sys.argv[0]).name, sys.argv[1:]
if args in (["-V"], ["--version"]):
    print(f"fake {{tool}} 1.0")
elif tool == "yosys":
    pathlib.Path("top.rpt").write_text("=== top ===\\n   Number of cells: 3\\n"
                                       "     LUT4 2\\n     MULT18X18D 1\\n")
    pathlib.Path("top.json").write_text({netlist})
    # a commit lands while the build runs: the report must name the one before
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "later"], cwd={repo!r}, check=True)
elif tool == "nextpnr":
    seed = int(args[args.index("--seed") + 1])
    fmax = {{"$glbnet$clk": {{"achieved": {{1: 41.0, 2: 47.5, 3: 44.0}}[seed],
                               "constraint": 100.0}}}}
    pathlib.Path("report.json").write_text(json.dumps({{
        "fmax": fmax, "utilization": {{"TRELLIS_COMB": {{"used": 9, "available": 99}}}},
        "critical_paths": [{{"from": "posedge clk", "to": "posedge clk", "path": [
            {{"type": "routing", "net": f"net{{seed}}", "delay": 2.0,
              "from": {{"cell": f"start{{seed}}", "port": "Q"}},
              "to": {{"cell": "end", "port": "D"}}}}]}}]}}))
    pathlib.Path(args[args.index("--textcfg") + 1]).write_text(f"config of seed {{seed}}")
elif tool == "pack":
    src = pathlib.Path(args[args.index("--input") + 1]).read_text()
    pathlib.Path(args[args.index("--bit") + 1]).write_text("bitstream from " + src)
"""


#: the fake yosys's netlist: a block RAM whose read bit feeds a register (folded by
#: ``bitstreams.bram_outreg`` for the ULX3S)
NETLIST = {"modules": {"top": {
    "attributes": {"top": "00000000000000000000000000000001"},
    "ports": {"clk": {"direction": "input", "bits": [2]},
              "q": {"direction": "output", "bits": [4]}},
    "cells": {
        "ram": {"type": "DP16KD", "parameters": {"REGMODE_B": "NOREG"},
                "port_directions": {"CLKB": "input", "DOB0": "output", "OCEB": "input"},
                "connections": {"CLKB": [2], "DOB0": [3], "OCEB": ["1"]}},
        "ff": {"type": "TRELLIS_FF", "parameters": {"CEMUX": "1 ", "REGSET": "RESET"},
               "port_directions": {"CLK": "input", "DI": "input", "LSR": "input",
                                   "Q": "output"},
               "connections": {"CLK": [2], "DI": [3], "LSR": ["0"], "Q": [4]}}},
    "netnames": {}}}}


def _git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "bitstreams").mkdir(parents=True)
    (repo / "hw.py").write_text("")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "built")
    monkeypatch.setattr(build, "REPO", repo)
    monkeypatch.setattr(build, "HERE", repo / "bitstreams")
    monkeypatch.setattr(runner.nextpnr_lock, "path", tmp_path / "nextpnr.lock")
    env = {"PATH": "/bin:/usr/bin"}
    for var, name in (("YOSYS", "yosys"), ("NEXTPNR_ECP5", "nextpnr"), ("ECPPACK", "pack")):
        tool = tmp_path / "tools" / name
        tool.parent.mkdir(exist_ok=True)
        tool.write_text(FAKE_TOOL.format(python=sys.executable, repo=str(repo),
                                         netlist=repr(json.dumps(NETLIST))))
        tool.chmod(0o755)
        env[var] = str(tool)
    return repo, env


@pytest.mark.parametrize("jobs", [1, 2])
def test_build_board_with_seeds(fake_repo, jobs):
    """The same report whether the seeds run one after the other or two at a time (seed
    order in the report, the fastest seed packed)."""
    repo, env = fake_repo
    built = _git(repo, "rev-parse", "HEAD")
    (repo / "hw.py").write_text("changed = True\n")
    board = configure("ulx3s", rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32)
    rep = build.build_board(board, baud=115200, seeds=[1, 2, 3], synth_only=False, env=env,
                            jobs=jobs)

    assert _git(repo, "rev-list", "--count", f"{built}..HEAD") == "1"  # landed meanwhile
    assert (rep["git_commit_full"], rep["git_commit"]) == (built, built[:7])
    assert rep["git_uncommitted"] == [" M hw.py"]
    build_dir = repo / "bitstreams" / "ulx3s" / "build"
    assert rep["rtlil_sha256"] == rtlil_digest((build_dir / "top.il").read_text())

    assert [s["achieved_fmax_mhz"] for s in rep["seeds"]] == [41.0, 47.5, 44.0]
    assert [s["startpoint"] for s in rep["seeds"]] == ["start1.Q", "start2.Q", "start3.Q"]
    assert rep["fmax_spread_mhz"] == {"min": 41.0, "median": 44.0, "max": 47.5}
    clk = rep["clock"]
    assert (clk["seed"], clk["achieved_fmax_mhz"], clk["met"]) == (2, 47.5, False)
    assert clk["slack_mhz"] == -52.5 and "--seed 2" in rep["config"]["nextpnr_opts"]
    assert rep["critical_paths"][0]["nets"] == ["net2"]
    assert (build_dir / "top.bit").read_text() == "bitstream from config of seed 2"
    assert rep["bitstream"] == "bitstreams/ulx3s/build/top.bit"
    assert rep["yosys_cells"]["DSP"] == 1 and rep["utilization"]["TRELLIS_COMB"]["used"] == 9
    assert set(rep["build_seconds"]) == {"elaborate", "yosys", "bram_outreg", "nextpnr seed 1",
                                         "nextpnr seed 2", "nextpnr seed 3", "pack", "total"}
    # the ULX3S folds the register after the block-RAM read before nextpnr
    assert rep["config"]["fold_bram_outreg"] is True
    assert rep["bram_outreg"] == {"read_ports": 1, "folded": 1, "ffs_removed": 1,
                                  "skipped": {}, "skipped_ports": []}
    ram = json.loads((build_dir / "top.json").read_text())["modules"]["top"]["cells"]
    assert list(ram) == ["ram"] and ram["ram"]["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["ram"]["connections"]["DOB0"] == [4]
    assert (rep["toolchain"]["yosys"], rep["toolchain"]["nextpnr"]) == ("fake yosys 1.0",
                                                                      "fake nextpnr 1.0")
    assert json.loads((repo / "bitstreams" / "ulx3s" / "report.json").read_text()) == rep
    md = (repo / "bitstreams" / "ulx3s" / "report.md").read_text()
    assert f"from commit `{built[:7]}` with uncommitted changes (`M hw.py`)" in md
    assert "the register after 1 of 1 DP16KD read ports folded into the block RAM" in md


def test_synth_only_folds_and_records(fake_repo):
    """``--synth-only`` runs the block-RAM output-register fold too and records its counts."""
    repo, env = fake_repo
    board = configure("ulx3s", rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32)
    assert build.build_board(board, baud=115200, seeds=[1], synth_only=True, env=env) == {}
    build_dir = repo / "bitstreams" / "ulx3s" / "build"
    rep = json.loads((build_dir / "synth_report.json").read_text())
    assert (rep["bram_outreg"]["folded"], rep["bram_outreg"]["ffs_removed"]) == (1, 1)
    cells = json.loads((build_dir / "top.json").read_text())["modules"]["top"]["cells"]
    assert list(cells) == ["ram"]


def test_report_after_each_seed(fake_repo):
    """A build that stops after some seeds (here nextpnr fails on seed 4) leaves the report and
    the bitstream of the seeds done."""
    repo, env = fake_repo
    board = configure("ulx3s", rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32)
    with pytest.raises(runner.StepFailed):
        build.build_board(board, baud=115200, seeds=[1, 2, 4], synth_only=False, env=env)
    rep = json.loads((repo / "bitstreams" / "ulx3s" / "report.json").read_text())
    assert rep["seeds_requested"] == [1, 2, 4] and [s["seed"] for s in rep["seeds"]] == [1, 2]
    assert rep["clock"]["seed"] == 2
    bit = repo / "bitstreams" / "ulx3s" / "build" / "top.bit"
    assert bit.read_text() == "bitstream from config of seed 2"


def test_seed_added_to_finished_build(fake_repo):
    """A seed placed on a finished build's synthesis (every ``top.*`` of ``build/``, the packed
    bitstream among them) does not link that bitstream in, so packing the seed leaves it as it
    was (a hard link made the pack fail on "same file" and write into it)."""
    repo, env = fake_repo
    board = configure("ulx3s", rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32)
    build.build_board(board, baud=115200, seeds=[1], synth_only=False, env=env)
    build_dir = repo / "bitstreams" / "ulx3s" / "build"
    cmds = runner.plan_commands((build_dir / "build_top.sh").read_text())
    inputs = sorted(f for f in build_dir.iterdir() if f.is_file() and f.name.startswith("top."))
    assert build_dir / "top.bit" in inputs
    run = build._place_and_route(board, cmds[1], 3, inputs, env)
    assert run["achieved_fmax_mhz"] == 44.0 and not (run["dir"] / "top.bit").exists()
    runner.run_step("pack", cmds[2], run["dir"], env, run["dir"] / "pack.log")
    assert (run["dir"] / "top.bit").read_text() == "bitstream from config of seed 3"
    assert (build_dir / "top.bit").read_text() == "bitstream from config of seed 1"


def test_check_reports(fake_repo):
    """A report matches the tree it was built from; a design change (here the UART divisor,
    through the report's baud rate) makes it stale."""
    repo, env = fake_repo
    board = configure("ulx3s", rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32)
    build.build_board(board, baud=115200, seeds=[1], synth_only=False, env=env)
    assert check.stale_reports(build.HERE) == []
    path = repo / "bitstreams" / "ulx3s" / "report.json"
    rep = json.loads(path.read_text())
    rep["config"]["baud"] = 57600
    path.write_text(json.dumps(rep))
    assert check.stale_reports(build.HERE) == ["ulx3s"]
    assert build.main(["--check"]) == 1


def test_render_only(fake_repo, monkeypatch):
    repo, _ = fake_repo
    here = repo / "bitstreams"
    (here / "readme.in.md").write_text("# Boards\n\n{table}\n\n{analysis}\n")
    assert build.main(["--render-only"]) == 0
    assert (here / "README.md").read_text().startswith("# Boards\n\n| board |")


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "1,x"], "argument --seeds: not a comma-separated list of integers: '1,x'"),
    (["--seeds", "2,2"], "argument --seeds: repeated seed in '2,2'"),
    (["--board", "orangecrab"], "argument --board: invalid choice: 'orangecrab'"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        build.parse_args(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        f"python -m bitstreams.build: error: {message}")


@pytest.mark.parametrize("argv, error", [
    (["--baud", "10000000"],
     "ValueError: 30000000.0 Hz is too slow for 10000000 baud (divisor 3 < 4)"),
    # refused inside SwatSystem's constructor, which is left half-made (both are marked,
    # hw.params.rejected_unused)
    (["--rows", "0"], "ValueError: SwatCore: rows must be >= 1, not 0"),
    # refused by the bridge inside SwatSystem's elaboration, after the core and the UARTs
    # were made (what build._drop_refused is for)
    (["--d-depth", "70000"], "ValueError: d_depth must be in 1..65535, not 70000"),
])
def test_failed_board_is_one_line(fake_repo, monkeypatch, capsys, argv, error):
    """A board that cannot be built fails with one line and exit 1, no traceback, and leaves
    the last build's folder as it was; what its
    elaboration left half-made does not warn "created but never used", and no filter is left
    behind: an object forgotten after the run still warns."""
    from amaranth.hdl import Module, UnusedElaboratable

    # amaranth enables the warning once anything was elaborated in the process (in
    # ``python -m bitstreams.build``, by the board's own elaboration; here, maybe not yet)
    monkeypatch.setattr(UnusedElaboratable, "_MustUse__silence", False)
    monkeypatch.setattr(render, "render_files", lambda here: None)
    last = fake_repo[0] / "bitstreams" / "icebreaker" / "build"
    last.mkdir(parents=True)
    (last / "top.bin").write_text("the last build's bitstream")
    with recorded_warnings() as caught:  # not counting what earlier tests left
        assert build.main(["--board", "icebreaker", *argv, "--synth-only"]) == 1
        gc.collect()
        assert [str(w.message) for w in caught] == []
        Module()  # an object forgotten after the run still warns
        gc.collect()
    assert [(w.category, str(w.message).split()[-3:]) for w in caught] == [
        (UnusedElaboratable, ["but", "never", "used"])]
    out = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert out[1:] == [f"[icebreaker] FAILED: {error}", "failed boards: icebreaker"]
    # the last build is not thrown away for a board that cannot be elaborated
    assert (last / "top.bin").read_text() == "the last build's bitstream"
    assert sorted(p.name for p in last.parent.iterdir()) == ["build"]
