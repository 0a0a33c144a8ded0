"""The simulated board (``sim.board``): the Verilator model of a board's logic behind a real
pseudo-terminal, driven by the unchanged host driver (pyserial) and ``--backend fpga``.

A 2x2 core keeps the model quick to build (~20 s); the integers do not depend on the array.
"""

import dataclasses
import gc
import os
import re
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from recorded import recorded_warnings
from test_hil_run import assert_identical_integers, train_recorded

from hw.contract.codes import LoaderError
from hw.contract.protocol import ERR_OPCODE, ERR_TIMEOUT, OP_NOP, OP_WRITE_S, ST_OK
from hw.host_driver import SwatFpga, open_serial
from sim.board import SimulatedBoard, board_model, board_params, main
from sim.board_logic import BoardLogic
from sw import intref
from sw.backend import FpgaBackend
from sw.data import load_digits

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("board")]

ROWS, COLS = 2, 2
KW = dict(dataset="digits", sparsity=0.9, batch_size=16, plots=False)
#: Seconds a read of the terminal waits for a reply. The simulated board shares the CPU with the
#: rest of the suite (and its compilers, on a cold cache): a generous bound costs nothing when
#: the board answers, and only bounds how long a broken board makes a test wait.
REPLY_S = 60.0
#: Seconds a board process gets to stop once told to (SIGINT, end of stdin).
STOP_S = 120.0


@pytest.fixture(scope="module")
def board():
    with SimulatedBoard(ROWS, COLS) as b:
        yield b


@pytest.fixture
def fpga(board):
    ser = open_serial(board.path, timeout=REPLY_S)  # resync() drains with 0.1 s of quiet
    try:
        dev = SwatFpga(ser)
        yield dev
    finally:
        ser.close()


def _operands(rng, m, k, n, density):
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s = (rng.integers(-128, 128, (k, n)) * (rng.random((k, n)) < density)).astype(np.int8)
    return d, s


@pytest.mark.parametrize("argv, message", [
    (["--rows", "0"], "argument --rows: must be an integer >= 1, got 0"),
    (["--divisor", "2"], "argument --divisor: must be 0 (byte streams) or >= 4, got 2"),
    (["--param", "d_depth"], "argument --param: must be NAME=INT, got 'd_depth'"),
    (["--param", "rows=4"], "--param rows: use --rows"),
    (["--board", "de10"], "argument --board: unknown board 'de10'; one of icebreaker, ulx3s"),
    (["--param", "d_depth=70000", "--build-only"], "d_depth must be in 1..65535, not 70000"),
    # integers in any base Python reads (sim.compare_args.integer with base 0)
    (["--rows", "0x0"], "argument --rows: must be an integer >= 1, got 0"),
    (["--rows", "1.5"], "argument --rows: must be an integer, got '1.5'"),
    (["--param", "d_depth=0x11170", "--build-only"], "d_depth must be in 1..65535, not 70000"),
])
def test_bad_arguments_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(argv))
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"python -m sim.board: error: {message}"]


def test_rejected_sizes_leave_no_elaboratable_behind():
    """Sizes the bridge cannot address are refused before anything is built: nothing is left
    to warn "created but never used" when collected."""
    with recorded_warnings() as caught:  # not counting what earlier tests left
        with pytest.raises(ValueError, match="^d_depth must be in 1..65535, not 70000$"):
            BoardLogic(rows=ROWS, cols=COLS, d_depth=70000)
        with pytest.raises(ValueError, match="^divisor must be 0 .byte streams. or at least 4"):
            BoardLogic(rows=ROWS, cols=COLS, divisor=2)
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_a_parameter_the_core_refuses_is_one_line_and_hides_no_warning(capsys, monkeypatch):
    """``--param hold_depth=0``: SwatCore refuses it inside the board logic; the command prints
    one line, and neither leaves a half-built object to warn "created but never used" nor
    changes the warning filters (nothing else's warnings are hidden)."""
    from amaranth.hdl import UnusedElaboratable

    # amaranth enables the warning once anything was elaborated in the process (as here, by
    # earlier tests; in sim.board, by a model build before a refused one)
    monkeypatch.setattr(UnusedElaboratable, "_MustUse__silence", False)
    filters = list(warnings.filters)
    with recorded_warnings() as caught:  # not counting what earlier tests left
        assert main(["--param", "hold_depth=0"]) == 2
        gc.collect()
        assert warnings.filters[1:] == filters
    assert [str(w.message) for w in caught] == []
    assert capsys.readouterr().err.splitlines() == [
        "python -m sim.board: error: SwatCore: hold_depth must be >= 1, not 0"]


def test_gemms_through_the_pty_are_bit_exact(board, fpga):
    assert board.label == f"{ROWS}x{COLS} core, protocol 2, byte streams"
    fpga.resync()
    info = fpga.info()
    assert (info.version, info.rows, info.cols, info.clk_hz) == (2, ROWS, COLS, 0)
    rng = np.random.default_rng(7)
    shapes = [(1, 1, 1, 1.0), (5, 9, 4, 0.5), (64, 144, 32, 0.1), (33, 300, 70, 0.9),
              (2, 20, 9000, 0.05)]  # the last one: N tiles (c_depth) and a 36 kB burst
    for m, k, n, density in shapes:
        d, s = _operands(rng, m, k, n, density)
        res = fpga.gemm(d, s)
        np.testing.assert_array_equal(res.c, intref.gemm(d, s), err_msg=f"{m}x{k}x{n}")
        assert res.cycles > 0 and res.macs == m * np.count_nonzero(s)


def test_errors_through_the_pty_leave_the_link_in_frame(board, fpga):
    fpga.resync()
    port = fpga.port
    port.write(bytes([0x5E, OP_NOP]))
    assert port.read(2) == bytes([ERR_OPCODE, ST_OK])
    port.write(bytes([OP_WRITE_S, 0, 0]))  # half a frame: the board answers once it times out
    assert port.read(1) == bytes([ERR_TIMEOUT])
    assert fpga.status().timed_out
    fpga.write_s(0, np.array([0xDEADBEEF, 0, 0, 0], dtype=np.uint32))  # not a blob
    fpga.set_shape(2, 2, 2, 4)
    fpga.start()
    st = fpga.wait_done()
    assert st.error and st.error_code == LoaderError.MAGIC
    d, s = _operands(np.random.default_rng(1), 3, 5, 4, 0.5)
    np.testing.assert_array_equal(fpga.gemm(d, s).c, intref.gemm(d, s))


def test_icebreaker_logic_with_its_uart():
    """The iCEBreaker build's core (4x2, small buffers, one C buffer: protocol 1) inside
    ``hw.board_top.SwatSystem`` with the UART bit by bit (4 clocks per bit)."""
    with SimulatedBoard(**board_params("icebreaker"), divisor=4) as b:
        assert b.label == "4x2 core, protocol 1, UART 4 clocks/bit"
        ser = open_serial(b.path, timeout=REPLY_S)
        try:
            fpga = SwatFpga(ser)
            fpga.resync()
            assert (fpga.info().d_depth, fpga.core.s_depth, fpga.core.c_depth) == (256, 256, 128)
            d, s = _operands(np.random.default_rng(3), 40, 300, 30, 0.3)
            res = fpga.gemm(d, s)  # tiled over M, N and K by the small buffers
            np.testing.assert_array_equal(res.c, intref.gemm(d, s))
            assert res.tiles > 3 and not fpga.status().rx_overrun
        finally:
            ser.close()
        assert b.close() == 0
    assert b.stderr[-1].startswith("board: stopped (SIGTERM): ")


def test_fpga_training_through_the_pty_equals_intref(board, monkeypatch):
    """Two steps of digits with every GEMM through the terminal: the same integers as the
    ``intref`` backend for the same seed (a 32-sample test split keeps the evaluation short).
    The simulated board shares the CPU with the rest of the suite: it gets REPLY_S to answer."""
    monkeypatch.setattr(FpgaBackend, "reply_timeout_s", REPLY_S)
    ds = load_digits()
    small = dataclasses.replace(ds, test_x=ds.test_x[:32], test_y=ds.test_y[:32])
    kw = dict(max_steps=2, seed=5, data=small, **KW)
    ref = train_recorded(monkeypatch, "intref", **kw)
    run = train_recorded(monkeypatch, "fpga", port=board.path, **kw)
    assert_identical_integers(ref, run)
    # the board's counters, against the board's array (2x2: 4 PEs)
    assert all(0 < s["utilization"] <= 1 and s["cycles"] >= s["mac_bound_cycles"] > 0
               for s in run[2])
    assert run[2][0]["mac_bound_cycles"] == round(run[2][0]["macs"] / (ROWS * COLS))


def _env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def test_board_that_stops_answering_is_one_line(tmp_path):
    """The clock stops after 30 kB (first training step): swat-train reports the driver's
    timeout in one line and exits 1; the board is still there and stops on SIGTERM."""
    with SimulatedBoard(ROWS, COLS, hang_after=30_000) as b:
        proc = subprocess.run(
            [sys.executable, "-m", "sw.train", "--backend", "fpga", "--port", b.path,
             "--max-steps", "2", "--batch-size", "16", "--out", str(tmp_path / "run"),
             "--no-progress", "--no-plots", "--quiet"],
            capture_output=True, text=True, timeout=600, env=_env())
        assert proc.returncode == 1, proc.stderr
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1, proc.stderr
        # which GEMM it is depends on how many STATUS polls the steps before took
        assert re.fullmatch(r"swat-train: error: backend fpga: the board failed on [\w.]+:\w+: "
                            r"no answer from the board within 2 s \(0 of \d+ reply bytes\)",
                            err[0]), err
        assert b.proc.poll() is None  # hung, not dead
        assert b.close() == 0
    assert b.stderr == ["board: the clock stops after 30000 bytes received (--hang-after)",
                        b.stderr[-1]]
    assert b.stderr[-1].startswith("board: stopped (SIGTERM): ")


def test_cli_serves_until_signalled(tmp_path):
    """``python -m sim.board`` prints the terminal and its symlink works; SIGINT stops it
    cleanly (exit 0, one summary line) and removes the link."""
    board_model(ROWS, COLS)  # built by the fixture's board or here
    link = tmp_path / "board"
    with subprocess.Popen(  # the context closes the three pipes
            [sys.executable, "-m", "sim.board", "--rows", str(ROWS), "--cols", str(COLS),
             "--link", str(link)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env()) as proc:
        try:
            line = proc.stdout.readline().strip()
            path = line.split()[1]
            assert line == f"board: {path} ({ROWS}x{COLS} core, protocol 2, byte streams)"
            assert os.path.realpath(link) == os.path.realpath(path)
            ser = open_serial(str(link), timeout=REPLY_S)
            try:
                fpga = SwatFpga(ser)
                fpga.nop()
                assert fpga.info().rows == ROWS
            finally:
                ser.close()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=STOP_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("board: stopped (SIGINT): "), err
    assert not link.exists() and not link.is_symlink()


def test_board_exits_when_its_parent_goes_away(board):
    """End of stdin (the parent that started it died) stops the board: no orphan."""
    b = SimulatedBoard(ROWS, COLS)
    try:
        b.proc.stdin.close()
        assert b.proc.wait(timeout=STOP_S) == 0
    finally:
        b.close()  # stops it (SIGTERM, then SIGKILL) if it is still there, and closes the pipes
    assert b.stderr[-1].startswith("board: stopped (end of stdin): ")

