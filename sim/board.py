"""A simulated board behind a real pseudo-terminal: the fpga backend without a board.

``python -m sim.board`` builds (or reuses) the Verilator model of a board's logic —
:class:`sim.board_logic.BoardLogic`: ``hw.host_bridge.HostBridge`` wired to ``hw.core.SwatCore``
as ``hw.board_top.SwatSystem`` wires them — opens a pseudo-terminal and prints its path::

    $ python -m sim.board
    board: /dev/pts/5 (8x8 core, protocol 2, byte streams)

Anything that talks to a board over a serial port then talks to the model instead, unchanged:
``hw.host_driver.SwatFpga(hw.host_driver.open_serial("/dev/pts/5"))``, or
``swat-train --backend fpga --port /dev/pts/5``. It serves until SIGINT, SIGTERM or SIGHUP
(Ctrl-C), or until its stdin reaches end-of-file when stdin is a pipe, and then prints one
summary line (bytes in and out, cycles).

``--board icebreaker|ulx3s`` takes the core of that board's bitstream (``bitstreams/boards.py``),
``--rows``/``--cols``/``--param`` any other. By default the bridge's byte streams are the
model's ports (``--divisor 0``: a byte per clock cycle, the link as fast as the model clocks);
``--divisor N`` puts the board's UART in too (``SwatSystem`` with ``N`` clocks per bit, bit by
bit, ``10 N`` cycles per byte). The serving loop is ``sim/cpp/board_main.cpp`` (this process
execs it once the model is built).
:class:`SimulatedBoard` runs it as a child process (tests, scripts).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .compare_args import OneLineParser, integer, positive_int

__all__ = ["SimulatedBoard", "board_label", "board_model", "board_params", "main"]

PROG = "python -m sim.board"
_LINE = re.compile(r"^board: (\S+) \((.*)\)$")


def board_model(rows: int = 8, cols: int = 8, *, divisor: int = 0, quiet: bool = True,
                **params):
    """The simulated board's executable for a ``rows x cols`` core (``sim.verilate.Model``),
    built or reused; ``params`` are further ``SwatCore`` parameters (buffer depths, ...)."""
    from . import verilate

    return verilate.build("board", kind="board", quiet=quiet, rows=rows, cols=cols,
                          divisor=divisor, **params)


def board_params(name: str) -> dict:
    """The core a board's bitstream is built with (``bitstreams/boards.py``): ``rows``, ``cols``,
    the buffer depths and its further ``SwatCore`` keywords, e.g. ``"icebreaker"`` (4x2, one C
    buffer: protocol 1) or ``"ulx3s"`` (8x8, result logs: protocol 2)."""
    try:
        from bitstreams.boards import BOARDS
    except ImportError:
        raise ValueError("--board needs the source tree's bitstreams/ folder (run from the "
                         "repository root)") from None
    if name not in BOARDS:
        raise ValueError(f"unknown board {name!r}; one of {', '.join(sorted(BOARDS))}")
    b = BOARDS[name]
    return dict(rows=b.rows, cols=b.cols, d_depth=b.d_depth, s_depth=b.s_depth,
                c_depth=b.c_depth, **b.core_extra)


def board_label(model) -> str:
    """What the board prints after its path: core size, protocol and the form of the link."""
    a = model.attrs
    link = (f"UART {a['divisor']} clocks/bit" if a.get("divisor") else "byte streams")
    return f"{a['rows']}x{a['cols']} core, protocol {a['version']}, {link}"


def _command(model, *, link: str | None = None, hang_after: int | None = None) -> list[str]:
    cmd = [str(model.executable), "--label", board_label(model)]
    if link:
        cmd += ["--link", str(link)]
    if hang_after is not None:
        cmd += ["--hang-after", str(int(hang_after))]
    return cmd


class SimulatedBoard:
    """The simulated board as a child process; :attr:`path` is its terminal.

    The model is built (or reused) in this process first, so a build failure raises here. The
    child's stdin is a pipe of this process: if this process dies, the board sees end-of-file
    and exits (no orphan). :meth:`close` stops it with SIGTERM and returns its summary line.

    >>> with SimulatedBoard(rows=8, cols=8) as board:
    ...     fpga = SwatFpga(open_serial(board.path))
    """

    def __init__(self, rows: int = 8, cols: int = 8, *, divisor: int = 0,
                 hang_after: int | None = None, link: str | None = None, **params):
        self.model = board_model(rows, cols, divisor=divisor, **params)
        self._stderr = collections.deque(maxlen=32)
        self.proc = subprocess.Popen(_command(self.model, link=link, hang_after=hang_after),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._err = threading.Thread(target=self._drain, daemon=True)
        self._err.start()
        line = self.proc.stdout.readline().rstrip("\n")
        m = _LINE.match(line)
        if m is None:
            self.close()
            raise RuntimeError(f"the simulated board did not start: {line or 'no output'}; "
                               f"{'; '.join(self._stderr)}")
        self.line = line
        self.path, self.label = m.group(1), m.group(2)

    def _drain(self):
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> list[str]:
        """The board's last stderr lines (its summary line once it stopped)."""
        return list(self._stderr)

    def close(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait; kill if it does not stop. Returns the exit status."""
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._err.join(timeout=5)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
        return proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _positive(text: str) -> int:
    return positive_int(text, base=0)


def _divisor(text: str) -> int:
    value = integer(text, base=0)
    if value != 0 and value < 4:
        raise argparse.ArgumentTypeError(f"must be 0 (byte streams) or >= 4, got {value}")
    return value


def _param(text: str) -> tuple[str, int]:
    name, eq, value = text.partition("=")
    if not (eq and name.isidentifier()):
        raise argparse.ArgumentTypeError(f"must be NAME=INT, got {text!r}")
    return name, integer(value, base=0)


def main(argv=None) -> int:
    ap = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--board", metavar="NAME",
                    help="the core of a board's bitstream (bitstreams/boards.py: icebreaker, "
                         "ulx3s); --rows, --cols and --param change it")
    ap.add_argument("--rows", type=_positive, help="PE array rows (default 8)")
    ap.add_argument("--cols", type=_positive, help="PE array columns (default 8)")
    ap.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=INT",
                    help="further SwatCore parameter, e.g. d_depth=1024 (repeatable)")
    ap.add_argument("--divisor", type=_divisor, default=0,
                    help="0: the bridge's byte streams (default); N >= 4: the board's UART, "
                         "N clocks per bit")
    ap.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the terminal")
    ap.add_argument("--hang-after", type=_positive, metavar="BYTES",
                    help="tests: the board's clock stops after BYTES bytes came in")
    ap.add_argument("--build-only", action="store_true",
                    help="build (or reuse) the model, print where it is and exit")
    args = ap.parse_args(argv)
    for reserved in ("rows", "cols", "divisor"):
        if reserved in dict(args.param):
            ap.error(f"--param {reserved}: use --{reserved}")
    try:
        params = board_params(args.board) if args.board else {"rows": 8, "cols": 8}
    except ValueError as e:
        ap.error(f"argument --board: {e}")
    params.update({k: v for k, v in (("rows", args.rows), ("cols", args.cols)) if v})
    params.update(args.param)
    # a refused parameter leaves no half-built elaboratable to warn at exit (BoardLogic
    # checks the bridge's sizes before it exists; SwatCore and BoardLogic objects whose
    # __init__ refused a parameter are marked, hw.params.rejected_unused)
    try:
        model = board_model(divisor=args.divisor, quiet=False, **params)
    except (ValueError, TypeError) as e:  # the core's or the bridge's parameter checks
        print(f"{PROG}: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a failed build is one line, with the log's path
        print(f"{PROG}: error: cannot build the board model: {str(e).splitlines()[0]}",
              file=sys.stderr)
        return 1
    if args.build_only:
        print(f"board: {model.executable} ({board_label(model)})")
        return 0
    cmd = _command(model, link=args.link, hang_after=args.hang_after)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(cmd[0], cmd)  # the serving loop replaces this process: signals reach it
    except OSError as e:
        print(f"{PROG}: error: cannot run {Path(cmd[0])}: {e.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
