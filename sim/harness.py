"""A persistent simulator process of the core: the Verilator model in a C++ loop, no cocotb.

:class:`CoreSim` starts ``sim/cpp/core_main.cpp`` (built with the model by
:func:`sim.verilate.harness_model`) once and feeds it core operations over a pipe for as long as
it lives: buffer preload (written straight into the model's memories), ``start``, run to
``done``, counters and C words back. Nothing in Python runs per clock cycle, so the model runs at
its own speed (about 1.3 M cycles per CPU second for the 8×8 core on this machine).

>>> from sim.harness import CoreSim
>>> with CoreSim(rows=8, cols=8) as core:           # builds or reuses the model
...     core.write_d(pack_d(d, 8)); core.write_s(encode_words(s))
...     stats, c_words = core.run(m, k, n, s_len)    # stats: cycles, busy, ..., error, code

:func:`sim.gemm.run_gemms` takes a ``sim=`` CoreSim to run batch after batch in the same
process (hardware-in-the-loop training starts one per run). A process that dies raises
:class:`SimulatorDied` with its exit status, the operation it was on and its stderr.
"""

from __future__ import annotations

import collections
import contextlib
import os
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from .bench import SimulationError
from .select_ops import SelectFailed, SelectStatus

__all__ = ["CoreSim", "SimulatorDied", "SelectStatus", "SelectFailed", "TIMEOUT_CODE",
           "default_timeout"]

OP_QUIT, OP_INFO, OP_WRITE_D, OP_WRITE_S, OP_FILL_C, OP_READ_C, OP_RUN, OP_RESET, OP_TRACE, \
    OP_TICKS, OP_SEL_BEGIN, OP_SEL_WAIT = range(12)
PROTOCOL_VERSION = 3
TIMEOUT_CODE = 15  # reported in place of error_code when done never came (as the cocotb driver)
STAT_KEYS = ("cycles", "busy", "stall", "idle", "error", "code")
RUN_WORDS = 10  # words before the C words in a run's answer (see sim/cpp/core_main.cpp)


class SimulatorDied(SimulationError):
    """The simulator process exited or broke its pipe while work was pending."""




def default_timeout(m: int, k: int, n: int, rows: int) -> int:
    """Cycles to wait for ``done`` before calling an operation hung (generous: ~64× work)."""
    return min(64 * (m + 8) * (k + 8) * (n + 8) // max(1, rows) + 10_000, 0xFFFF_FFFF)


class CoreSim:
    """One simulator process of the core, started once and fed operation after operation.

    Parameters
    ----------
    model : sim.verilate.Model, optional
        A harness model (``kind="harness"`` or ``"harness-trace"``); by default the
        ``rows × cols`` core is built or reused with :func:`sim.verilate.harness_model`.
    rows, cols : int
        PE array when ``model`` is not given.
    trace : bool
        Use the FST-tracing build (needed for :meth:`trace`; slower).
    label : str
        Named in error messages (e.g. the worker it belongs to).
    """

    def __init__(self, model=None, *, rows: int = 8, cols: int = 8, trace: bool = False,
                 label: str = ""):
        from . import verilate

        if model is None:
            model = verilate.harness_model(rows, cols, trace=trace)
        if model.kind == "cocotb":
            raise ValueError("CoreSim needs a harness model (sim.verilate.harness_model), "
                             "not a cocotb one")
        self.model = model
        self.label = label
        self._stderr = collections.deque(maxlen=64)
        self._doing = "starting"
        # False while a request is half written or a reply half read: an exception there (a
        # Ctrl-C) leaves the stream out of step, and close() must not talk the protocol
        self._in_step = True
        self.proc = subprocess.Popen(
            [str(model.executable)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=str(model.build_dir))
        self._out = self.proc.stdout
        self._err_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_thread.start()
        try:
            info = np.frombuffer(self._call(struct.pack("<I", OP_INFO),
                                            "asking for its geometry"), dtype="<u4")
        except BaseException:  # a Ctrl-C or a dead simulator here: no process left behind
            self.close()
            raise
        if info[0] != PROTOCOL_VERSION:
            self.close()
            raise SimulationError(f"harness protocol {info[0]}, expected {PROTOCOL_VERSION}: "
                                  f"rebuild {model.build_dir}")
        (_, self.rows, self.cols, self.d_depth, self.s_depth, self.c_depth, self.dbytes,
         self.cbytes, self.can_trace, self.sel_lanes, self.s_mem_depth, self.s_bank_base,
         self.sel_index_width) = (int(x) for x in info[:13])
        # S words the unit writes a cycle: its sub-banks s_mem_<b> (fewer than sel_lanes on a
        # unit wider than them; 1 on a core whose S is one memory)
        self.sel_banks = sum(1 for mem in model.memories
                             if mem["name"].startswith("s_mem_")) or 1
        self._sel_queue = collections.deque()  # beats of each select begun, not yet waited for
        self.s_len_max = (1 << model.ports.get("s_len", 32)) - 1

    # -- process plumbing --------------------------------------------------------------------
    def _drain_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _died(self, doing: str) -> SimulatorDied:
        rc = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            rc = self.proc.wait(timeout=2)
        self._err_thread.join(timeout=1)
        how = ("still running but its pipe broke" if rc is None else
               f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}")
        tail = "\n".join(self._stderr)
        who = f" [{self.label}]" if self.label else ""
        return SimulatorDied(
            f"simulator process {self.proc.pid}{who} ({self.model.executable}) died while "
            f"{doing}: {how}" + (f"; stderr:\n{tail}" if tail else ""))

    def _send(self, data: bytes, doing: str) -> None:
        self._in_step = False  # until the whole request is written (see close)
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._died(doing) from None
        self._in_step = True

    def _recv(self, doing: str) -> bytes:
        self._in_step = False  # until the whole reply is read (see close)
        hdr = self._read_exact(8, doing)
        status, n = struct.unpack("<2I", hdr)
        payload = self._read_exact(n, doing)
        self._in_step = True
        if status:
            raise SimulationError(f"simulator refused {doing}: status {status}")
        return payload

    def _read_exact(self, n: int, doing: str) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._out.read(n - len(buf))
            if not chunk:
                raise self._died(doing)
            buf += chunk
        return bytes(buf)

    def _call(self, data: bytes, doing: str) -> bytes:
        self._send(data, doing)
        return self._recv(doing)

    # -- single operations -------------------------------------------------------------------
    def _d_request(self, words, base: int, ports: bool) -> bytes:
        w = np.ascontiguousarray(np.asarray(words).astype(np.int8, copy=False))
        if w.ndim != 2 or w.shape[1] != self.rows:
            raise ValueError(f"D words must be [n, {self.rows}] int8, got {w.shape}")
        return struct.pack("<4I", OP_WRITE_D, base, len(w), int(ports)) + w.tobytes()

    def _s_request(self, words, base: int, ports: bool) -> bytes:
        w = np.ascontiguousarray(np.asarray(words, dtype=np.uint32).astype("<u4", copy=False))
        return struct.pack("<4I", OP_WRITE_S, base, len(w), int(ports)) + w.tobytes()

    def _run_request(self, m, k, n, s_len, read_c, timeout, s_bank=0) -> bytes:
        if timeout is None:
            timeout = default_timeout(m, k, n, self.rows)
        return struct.pack("<8I", OP_RUN, m, k, n, s_len, int(bool(read_c)), timeout, s_bank)

    def write_d(self, words, base: int = 0, *, ports: bool = False) -> None:
        """D buffer words ``[n, rows]`` int8 at ``base`` (preloaded, or through the port)."""
        self._call(self._d_request(words, base, ports), "writing D")

    def write_s(self, words, base: int = 0, *, ports: bool = False) -> None:
        """S buffer words (uint32) at ``base``."""
        self._call(self._s_request(words, base, ports), "writing S")

    def fill_c(self, word) -> None:
        """Every C buffer word := ``word`` (``rows`` int32 lanes), e.g. a sentinel."""
        w = np.asarray(word, dtype="<i4").reshape(self.rows)
        self._call(struct.pack("<I", OP_FILL_C) + w.tobytes(), "filling C")

    def read_c(self, count: int | None = None, base: int = 0, *, ports: bool = False):
        """C words ``base .. base+count-1`` (default: the whole buffer) as ``[count, rows]``."""
        count = self.c_depth - base if count is None else count
        raw = self._call(struct.pack("<4I", OP_READ_C, base, count, int(ports)), "reading C")
        return np.frombuffer(raw, dtype="<i4").reshape(count, self.rows)

    def _parse_run(self, raw: bytes, m: int, n: int):
        head = 4 * RUN_WORDS
        st = np.frombuffer(raw[:head], dtype="<u4").astype(np.int64)
        stats = dict(zip(STAT_KEYS, (int(x) for x in st[:6]), strict=True))
        if st[6]:  # timed out (or start ignored): the harness reset the core
            stats["error"], stats["code"] = 1, TIMEOUT_CODE
            self._sel_queue.clear()  # the reset dropped the queued selects too
        stats["log_oob"] = int(st[8])  # result-log entries written outside the result region
        c = None
        if len(raw) > head:
            c = np.frombuffer(raw[head:], dtype="<i4").reshape(-1, self.rows)
        return stats, c

    def run(self, m: int, k: int, n: int, s_len: int, *, read_c: bool = True,
            timeout: int | None = None, s_bank: int = 0):
        """Pulse ``start`` with the shape, run to ``done``; ``(stats, C words or None)``.

        ``stats`` has ``cycles, busy, stall, idle, error, code`` (code 15: no ``done`` within
        ``timeout`` cycles, the core was reset). ``s_bank``: the S buffer the GEMM reads (a
        core with the select unit; a select operation begun with :meth:`select_begin` goes on
        during the GEMM, into the other buffer).
        """
        raw = self._call(self._run_request(m, k, n, s_len, read_c, timeout, s_bank),
                         f"running M={m} K={k} N={n}")
        return self._parse_run(raw, m, n)

    # -- the threshold-select unit (cores with sel_lanes > 0) ---------------------------------
    def select_begin(self, s, mode, *, keep: int = 0, transpose: bool = False, bank: int = 1,
                     given=None, by_index: bool = False, index=None, read_blob: bool = True,
                     label: str = "") -> None:
        """Queue a command of the select unit on the dense int8 matrix ``s [K, N]`` (streamed
        column by column, twice for FULL and for THRESHOLD ``by_index``) into S buffer
        ``bank``; returns at once.

        Every clock cycle the process simulates from now on (GEMMs run with :meth:`run`,
        :meth:`select_wait`) also feeds the unit: the queued commands run one after the other
        while GEMMs read the other S buffer. ``mode``: a :class:`hw.contract.codes.SelectMode`;
        ``keep``: ``k`` (FULL, THRESHOLD); ``given``: ``(threshold, ties, cut_row, cut_col,
        cut_any, cut_index)`` or a dict of them (GIVEN); ``index`` (``[K, N]``, like ``s``):
        the source index of every element on the unit's side band, for ``by_index`` passes.
        ``read_blob``: copy the blob out of the S buffer when the unit is done
        (:attr:`SelectStatus.blob`).
        """
        from . import select_ops

        if not self.sel_lanes:
            raise SimulationError(f"{self.model.build_dir.name} has no threshold-select unit "
                                  f"(build it with sel_lanes > 0)")
        s = np.asarray(s)
        if s.ndim != 2:
            raise ValueError(f"select: expected a [K, N] matrix, got shape {s.shape}")
        stream = np.ascontiguousarray(s.T, dtype=np.int8).ravel()
        cmd = select_ops.pack_command(mode, keep=keep, rows=s.shape[0], cols=s.shape[1],
                                      transpose=transpose, bank=bank, given=given,
                                      by_index=by_index)
        passes = select_ops.passes(mode, by_index)
        extra = b""
        if index is not None:
            if not self.sel_index_width:
                raise SimulationError("this core's select unit has no index side band")
            index = np.asarray(index)
            if index.shape != s.shape:
                raise ValueError(f"select: index shape {index.shape} != S shape {s.shape}")
            extra = np.ascontiguousarray(index.T).astype("<u4").ravel().tobytes()
        self._call(struct.pack("<5I", OP_SEL_BEGIN, passes, stream.size, int(bool(read_blob)),
                               int(index is not None)) + cmd + stream.tobytes() + extra,
                   f"starting a select{' (' + label + ')' if label else ''}")
        self._sel_queue.append(passes * max(1, -(-stream.size // self.sel_lanes)))

    def select_wait(self, *, timeout: int | None = None, check: bool = True,
                    label: str = "") -> SelectStatus:
        """Run the clock until the oldest queued select is done; its :class:`SelectStatus`.
        ``check`` raises :class:`SelectFailed` (one line) with the unit's error code;
        ``timeout`` (cycles, default generous) resets the core and reports ``timed_out``."""
        if not self._sel_queue:
            raise SimulationError("select_wait: no select operation was begun")
        beats = self._sel_queue.popleft()
        if timeout is None:
            timeout = min(64 * beats + 10_000, 0xFFFF_FFFF)
        raw = self._call(struct.pack("<2I", OP_SEL_WAIT, timeout),
                         f"waiting for a select{' (' + label + ')' if label else ''}")
        from . import select_ops

        st = select_ops.parse_status(np.frombuffer(raw, dtype="<u4"))
        if st.timed_out:
            self._sel_queue.clear()  # the harness reset the core, dropping the queue
        if check:
            st.check(label)
        return st

    @property
    def selects_pending(self) -> int:
        """Select operations begun and not yet waited for."""
        return len(self._sel_queue)

    def select(self, s, mode, *, check: bool = True, timeout: int | None = None,
               label: str = "", **kw) -> SelectStatus:
        """:meth:`select_begin` then :meth:`select_wait` (nothing overlaps: all exposed)."""
        self.select_begin(s, mode, label=label, **kw)
        return self.select_wait(timeout=timeout, check=check, label=label)

    def reset(self) -> None:
        self._call(struct.pack("<I", OP_RESET), "resetting")
        self._sel_queue.clear()  # a reset drops the queued selects

    def trace(self, path: str | os.PathLike | None) -> None:
        """Start dumping FST to ``path`` (``None`` stops); needs ``trace=True``."""
        if not self.can_trace:
            raise SimulationError("this simulator was built without tracing (trace=True)")
        p = str(Path(path).resolve()).encode() if path is not None else b""
        self._call(struct.pack("<3I", OP_TRACE, int(path is not None), len(p)) + p,
                   "opening the trace")

    @property
    def ticks(self) -> int:
        """Clock cycles this process has simulated (operations, port accesses, resets)."""
        return self._ticks("counting cycles")

    def _ticks(self, doing: str) -> int:
        return struct.unpack("<Q", self._call(struct.pack("<I", OP_TICKS), doing)[:8])[0]

    @property
    def exposed_cycles(self) -> int:
        """The core's free-running ``sel.exposed_cycles`` (cycles with the select unit busy and
        no GEMM running; 0 without the unit): take differences."""
        raw = self._call(struct.pack("<I", OP_TICKS), "reading the exposed-select counter")
        return struct.unpack("<I", raw[8:12])[0]

    @property
    def gemm_edges(self) -> int:
        """Clock edges that reached the core's GEMM side: all of :attr:`ticks` but on a core
        built with ``gemm_clock_gate``, whose clock the process stops while that side is idle
        (``sim/cpp/core_main.cpp``)."""
        raw = self._call(struct.pack("<I", OP_TICKS), "counting the GEMM side's edges")
        return struct.unpack("<Q", raw[12:20])[0] if len(raw) >= 20 else self.ticks

    def cpu_seconds(self) -> float:
        """CPU seconds the simulator process has used so far (Linux: scheduler nanoseconds,
        else user + system ticks; NaN where neither can be read)."""
        with contextlib.suppress(OSError, IndexError, ValueError):
            return int(Path(f"/proc/{self.proc.pid}/schedstat").read_text().split()[0]) / 1e9
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    # -- batches -----------------------------------------------------------------------------
    def run_ops(self, runs, d_blobs: dict, s_blobs: dict, *, ports: bool = False,
                progress=None, describe=None):
        """Run ``runs`` (``[R, 7]``: m, k, n, d_id, s_id, s_len, read_c) back to back.

        D/S buffers are written only when ``d_id``/``s_id`` change. Requests stream from a
        writer thread while responses are read, so the pipe never idles. Returns
        ``(stats [R, 6] int64, {run: C words}, info)``; ``info`` has ``wall`` (seconds from
        the first request to the last answer, preload included), ``ticks`` (clock cycles
        simulated) and ``cpu`` (CPU seconds of the simulator process).
        ``describe(r)`` names operation ``r`` in an error message.
        """
        runs = np.asarray(runs, dtype=np.int64).reshape(-1, 7).tolist()
        kinds = []  # what each answer will be: ("w", None) or ("r", run index)
        cur_d = cur_s = None
        for r, (_m, _k, _n, d_id, s_id, _sl, _rc) in enumerate(runs):
            if d_id != cur_d:
                kinds.append(("w", r))
                cur_d = d_id
            if s_id != cur_s:
                kinds.append(("w", r))
                cur_s = s_id
            kinds.append(("r", r))

        def requests():
            cd = cs_ = None
            for m, k, n, d_id, s_id, s_len, read_c in runs:
                parts = []
                if d_id != cd:
                    parts.append(self._d_request(d_blobs[d_id], 0, ports))
                    cd = d_id
                if s_id != cs_:
                    parts.append(self._s_request(s_blobs[s_id], 0, ports))
                    cs_ = s_id
                parts.append(self._run_request(m, k, n, s_len, read_c, None))
                yield b"".join(parts)

        failure = []

        def writer():
            try:
                for chunk in requests():
                    self.proc.stdin.write(chunk)
                    self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                failure.append(exc)
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)

        t0 = time.perf_counter()
        first = describe(0) if describe else f"core operation 1 of {len(runs)}"
        ticks0 = self._ticks(f"starting a batch at {first}")
        cpu0 = self.cpu_seconds()
        stats = np.zeros((len(runs), 6), dtype=np.int64)
        cs = {}
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        last = time.perf_counter()
        answered = False
        try:
            for kind, r in kinds:
                what = describe(r) if describe else f"core operation {r + 1} of {len(runs)}"
                if failure and not isinstance(failure[0], OSError):
                    raise failure[0]
                raw = self._recv(("loading buffers for " if kind == "w" else "running ") + what)
                if kind == "r":
                    m, _k, n = runs[r][:3]
                    st, c = self._parse_run(raw, m, n)
                    stats[r] = [st[key] for key in STAT_KEYS]
                    if c is not None:
                        cs[r] = c
                    if progress is not None and time.perf_counter() - last > 0.25:
                        last = time.perf_counter()
                        progress(r + 1)
            answered = True
        finally:
            if not answered:
                # interrupted (Ctrl-C) or failed with answers unread: the writer may be blocked
                # on a full pipe while the simulator waits to write its answers, so joining it
                # would wait forever. The stream is out of step anyway: stop the simulator.
                self._kill()
            th.join()
        if failure and not isinstance(failure[0], OSError):
            raise failure[0]
        wall = time.perf_counter() - t0
        ticks = self._ticks("finishing a batch") - ticks0
        info = {"wall": wall, "ticks": ticks, "cpu": self.cpu_seconds() - cpu0}
        if progress is not None:
            progress(len(runs))
        return stats, cs, info

    # -- lifetime ----------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Ask the process to quit (flushing a trace); kill it if it does not, or at once when
        the stream is out of step: after a half-written request (a Ctrl-C inside a large write)
        the simulator would read the quit as payload and wait for the rest, while this waited
        for its reply, forever."""
        proc = self.proc
        if proc is None:
            return
        if not self._in_step:
            self._kill()
        if proc.poll() is None:
            with contextlib.suppress(OSError, ValueError, SimulationError):
                self._call(struct.pack("<I", OP_QUIT), "quitting")
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        for f in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                f.close()
        self._err_thread.join(timeout=1)
        with contextlib.suppress(OSError, ValueError):
            proc.stderr.close()
        self.proc = None

    def _kill(self) -> None:
        """Stop the simulator at once (its request stream is out of step with the replies);
        a later call reports it as killed."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
