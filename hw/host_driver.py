"""Host-side driver for the SWAT core behind the UART bridge (``docs/host-protocol.md``).

The driver talks to any byte-stream object with ``write(bytes)`` and ``read(n) -> bytes`` (a
``serial.Serial`` from pyserial works as is, :func:`open_serial` opens one; a short read means
timeout). ``run_gemm_fpga(port, d, s)`` runs ``C = D @ S`` and returns a result with the same
fields as ``sim.run_gemm``: ``c`` (int32, bit-exact with ``d.astype(int64) @ s.astype(int64)``),
``cycles`` and ``macs``. GEMMs larger than the core's buffers are cut by the same planner as in
the simulator (:func:`hw.contract.tiling.plan`), so a GEMM takes the same core operations on
the board as in ``sim.run_gemm``; partial sums over ``K`` blocks are added on the host, and
``cycles`` and the counters are summed over the operations. The blob and the D/C word layouts
come from :mod:`hw.contract`.

The tests drive this module through a byte stream backed by an Amaranth simulation of the
bridge and the core (``tests/sim_uart_port.py``).
"""

from __future__ import annotations

import dataclasses
import struct
import time

import numpy as np

from hw.contract import protocol
from hw.contract.blob import encode_words
from hw.contract.codes import LoaderError
from hw.contract.tiling import limits, plan_for
from hw.contract.words import m_tiles, pack_d, unpack_c

__all__ = [
    "BridgeError", "CoreError", "CoreInfo", "CoreStatus", "FpgaGemmResult", "SwatFpga",
    "encode_s", "open_serial", "run_gemm_fpga",
]

_ERR_NAMES = {protocol.ERR_OPCODE: "unknown opcode", protocol.ERR_BUSY: "core busy",
              protocol.ERR_RANGE: "out of range", protocol.ERR_TIMEOUT: "frame timeout"}
CORE_ERRORS = {int(e): e.text for e in LoaderError if e}


class BridgeError(RuntimeError):
    """The bridge answered with an error status (``.status``)."""

    def __init__(self, op: int, status: int):
        self.op, self.status = op, status
        super().__init__(f"opcode 0x{op:02x}: bridge status 0x{status:02x} "
                         f"({_ERR_NAMES.get(status, 'unexpected reply')})")


class CoreError(RuntimeError):
    """The core finished with its sticky error flag set (``.code``, docs/core-interface.md)."""

    def __init__(self, code: int):
        self.code = code
        super().__init__(f"core error {code}: {CORE_ERRORS.get(code, 'unknown')}")


@dataclasses.dataclass(frozen=True)
class CoreInfo:
    version: int
    rows: int
    cols: int
    d_depth: int
    s_depth: int
    c_depth: int
    clk_hz: int

    @property
    def result_logs(self) -> bool:
        """Protocol 2: C leaves the core through one result log per PE column."""
        return self.version >= protocol.PROTOCOL_VERSION_LOGS

    @property
    def c_addr_bits(self) -> int:
        """Bits of a C word address (``ceil_log2(c_depth)``): the index within a log, and the
        C address a log word carries above its lanes."""
        return (self.c_depth - 1).bit_length()

    @property
    def c_word_bytes(self) -> int:
        """Bytes of one C word on the wire (READ_C)."""
        bits = 32 * self.rows + (self.c_addr_bits if self.result_logs else 0)
        return -(-bits // 8)


@dataclasses.dataclass(frozen=True)
class CoreStatus:
    busy: bool
    done: bool
    error: bool
    rx_overrun: bool
    rx_frame_error: bool
    timed_out: bool
    error_code: int
    cycles: int
    busy_cycles: int
    stall_cycles: int
    idle_cycles: int


@dataclasses.dataclass
class FpgaGemmResult:
    """Same fields as ``sim.run_gemm``'s result, plus the PE counters and the tiling used."""

    c: np.ndarray
    cycles: int
    macs: int
    busy_cycles: int = 0
    stall_cycles: int = 0
    idle_cycles: int = 0
    tiles: int = 0
    seconds: float = 0.0


#: Compressed (CSC) words of int8 ``s [K, N]`` (``hw.contract.blob``), as uint32.
encode_s = encode_words


class SwatFpga:
    """One command per method; every method reads the full reply before returning."""

    def __init__(self, port, *, poll_limit: int = 1_000_000):
        self.port = port
        self.poll_limit = poll_limit
        self._info: CoreInfo | None = None

    # -- framing -------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        data = self.port.read(n)
        if len(data) != n:
            # a pyserial port says how long it waited (``timeout`` in seconds)
            wait = getattr(self.port, "timeout", None)
            within = f" within {wait:g} s" if isinstance(wait, int | float) else ""
            got = f": {bytes(data).hex(' ')}" if data else ""
            raise TimeoutError(f"no answer from the board{within} ({len(data)} of {n} reply "
                               f"bytes{got})")
        return bytes(data)

    def _command(self, op: int, args: bytes = b"", payload: bytes = b"") -> int:
        """Send a frame and return its status byte (the reply's first byte)."""
        assert len(args) == protocol.ARG_BYTES[op]
        self.port.write(bytes([op]) + args + payload)
        return self._read(1)[0]

    def _check(self, op: int, status: int) -> None:
        if status != protocol.ST_OK:
            raise BridgeError(op, status)

    # -- commands ------------------------------------------------------------------------
    def nop(self) -> None:
        self._check(protocol.OP_NOP, self._command(protocol.OP_NOP))

    def resync(self, attempts: int = 4) -> None:
        """Recover from a desynchronised link: drain, then NOP until a clean ``ST_OK``."""
        for _ in range(attempts):
            self._drain()
            self.port.write(bytes([protocol.OP_NOP]))
            reply = self.port.read(1)
            if reply == bytes([protocol.ST_OK]):
                return
        raise TimeoutError("bridge does not answer NOP")

    def _drain(self, quiet_s: float = 0.1) -> None:
        """Read whatever is pending until the link has been quiet for ``quiet_s`` (a pyserial
        port's ``timeout`` is lowered meanwhile; a port without one is read once), at most
        1 MiB: a link that never goes quiet is left to the NOP check."""
        wait = getattr(self.port, "timeout", None)
        if not isinstance(wait, int | float):
            self.port.read(4096)
            return
        self.port.timeout = min(wait, quiet_s)
        try:
            for _ in range(256):
                if not self.port.read(4096):
                    break
        finally:
            self.port.timeout = wait

    def info(self) -> CoreInfo:
        status = self._command(protocol.OP_INFO)
        self._check(protocol.OP_INFO, status)
        body = self._read(protocol.INFO_BYTES - 1)
        magic, ver, rows, cols, dd, sd, cd, clk = struct.unpack("<4sBBBHHHI", body)
        if magic != b"SWAT":
            raise BridgeError(protocol.OP_INFO, magic[0])
        self._info = CoreInfo(ver, rows, cols, dd, sd, cd, clk)
        return self._info

    @property
    def core(self) -> CoreInfo:
        return self._info if self._info is not None else self.info()

    def write_d(self, addr: int, words: np.ndarray) -> None:
        """``words``: uint8/int8 array ``[count, rows]`` (byte lane ``i`` = row ``i``)."""
        words = np.ascontiguousarray(words).astype(np.uint8, copy=False)
        count = words.shape[0]
        args = struct.pack("<HH", addr, count)
        self._check(protocol.OP_WRITE_D, self._command(protocol.OP_WRITE_D, args, words.tobytes()))

    def write_s(self, addr: int, words: np.ndarray) -> None:
        words = np.asarray(words, dtype="<u4")
        args = struct.pack("<HH", addr, len(words))
        self._check(protocol.OP_WRITE_S, self._command(protocol.OP_WRITE_S, args, words.tobytes()))

    def _read_c_raw(self, addr: int, count: int) -> np.ndarray:
        """READ_C of ``count`` words at ``addr``: ``[count, c_word_bytes]`` uint8."""
        info = self.core
        status = self._command(protocol.OP_READ_C, struct.pack("<HH", addr, count))
        self._check(protocol.OP_READ_C, status)
        body = self._read(count * info.c_word_bytes)
        return np.frombuffer(body, dtype=np.uint8).reshape(count, info.c_word_bytes)

    def read_c(self, addr: int, count: int) -> np.ndarray:
        """C words ``[addr, addr+count)`` as int32 ``[count, rows]`` (protocol 1)."""
        rows = self.core.rows
        raw = self._read_c_raw(addr, count)
        return raw[:, :4 * rows].copy().view("<i4").reshape(count, rows).astype(np.int32)

    def read_log(self, log: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``count`` entries of PE column ``log``'s result log (protocol 2): their
        lanes as int32 ``[count, rows]`` and their C word addresses ``[count]``."""
        info = self.core
        raw = self._read_c_raw(log << info.c_addr_bits, count)
        lanes = raw[:, :4 * info.rows].copy().view("<i4").reshape(count, info.rows)
        high = np.zeros((count, 8), dtype=np.uint8)
        high[:, :raw.shape[1] - 4 * info.rows] = raw[:, 4 * info.rows:]
        addrs = high.view("<u8").reshape(count) & ((1 << info.c_addr_bits) - 1)
        return lanes.astype(np.int32), addrs.astype(np.int64)

    def results(self) -> list[int]:
        """Entries in each PE column's result log after the last operation (protocol 2)."""
        info = self.core
        self._check(protocol.OP_RESULTS, self._command(protocol.OP_RESULTS))
        return list(struct.unpack(f"<{info.cols}H", self._read(2 * info.cols)))

    def gather_c(self, items: int) -> np.ndarray:
        """The ``items`` C words of the last operation, in C address order, from the result
        logs: int32 ``[items, rows]``. Raises if the logs do not hold each address once."""
        info = self.core
        out = np.zeros((items, info.rows), dtype=np.int32)
        seen = np.zeros(items, dtype=bool)
        counts = self.results()
        if sum(counts) != items:
            raise RuntimeError(f"result logs hold {sum(counts)} entries, expected {items}")
        for log, count in enumerate(counts):
            if count:
                lanes, addrs = self.read_log(log, count)
                if addrs.max() >= items or seen[addrs].any() or len(set(addrs)) != count:
                    raise RuntimeError(f"result log {log} holds an address twice or past {items}")
                seen[addrs] = True
                out[addrs] = lanes
        return out

    def set_shape(self, m: int, k: int, n: int, s_len: int) -> None:
        args = struct.pack("<HHHH", m, k, n, s_len)
        self._check(protocol.OP_SET_SHAPE, self._command(protocol.OP_SET_SHAPE, args))

    def start(self) -> None:
        self._check(protocol.OP_START, self._command(protocol.OP_START))

    def status(self) -> CoreStatus:
        status = self._command(protocol.OP_STATUS)
        self._check(protocol.OP_STATUS, status)
        flags, code, cyc, busy, stall, idle = struct.unpack(
            "<BBIIII", self._read(protocol.STATUS_BYTES - 1))
        return CoreStatus(
            bool(flags & 1), bool(flags & 2), bool(flags & 4), bool(flags & 8),
            bool(flags & 16), bool(flags & 32), code & 0xF, cyc, busy, stall, idle)

    def wait_done(self) -> CoreStatus:
        for _ in range(self.poll_limit):
            st = self.status()
            if not st.busy and (st.done or st.error):
                return st
        raise TimeoutError(f"core still busy after {self.poll_limit} polls")

    # -- one GEMM ------------------------------------------------------------------------
    def gemm(self, d: np.ndarray, s: np.ndarray) -> FpgaGemmResult:
        d = np.asarray(d)
        s = np.asarray(s)
        if d.ndim != 2 or s.ndim != 2 or d.shape[1] != s.shape[0]:
            raise ValueError(f"shapes {d.shape} @ {s.shape} do not chain")
        for name, x in (("D", d), ("S", s)):
            if x.size and (x.min() < -128 or x.max() > 127):
                raise ValueError(f"{name} must hold int8 values")
        M, K = d.shape
        N = s.shape[1]
        info = self.core
        rows = info.rows
        t0 = time.perf_counter()
        acc = np.zeros((M, N), dtype=np.int64)
        res = FpgaGemmResult(c=acc, cycles=0, macs=int(M * np.count_nonzero(s)))
        if M == 0 or N == 0 or K == 0:
            res.c = acc.astype(np.int32)
            return res
        lim = limits(rows=rows, cols=info.cols, d_depth=info.d_depth, s_depth=info.s_depth,
                     c_depth=info.c_depth)
        loaded = None
        for mb, kb, nb in plan_for(M, s, lim):
            if loaded != (kb, nb):  # blocks over one S block are consecutive: write S once
                words = encode_s(s[kb, nb])
                self.write_s(0, words)
                loaded = (kb, nb)
            out = self._run_tile(d[mb, kb], nb.stop - nb.start, len(words))
            acc[mb, nb] += out.c
            res.cycles += out.cycles
            res.busy_cycles += out.busy_cycles
            res.stall_cycles += out.stall_cycles
            res.idle_cycles += out.idle_cycles
            res.tiles += 1
        res.c = acc.astype(np.int32)
        res.seconds = time.perf_counter() - t0
        return res

    def _run_tile(self, d: np.ndarray, n: int, s_len: int) -> FpgaGemmResult:
        rows = self.core.rows
        M, K = d.shape
        groups = m_tiles(M, rows)
        self.write_d(0, pack_d(d.astype(np.int8), rows).view(np.uint8))
        self.set_shape(M, K, n, s_len)
        self.start()
        st = self.wait_done()
        if st.error:
            raise CoreError(st.error_code)
        if self.core.result_logs:
            words = self.gather_c(groups * n)
        else:
            words = self.read_c(0, groups * n)
        c = unpack_c(words, M, n, rows)
        return FpgaGemmResult(c=c.astype(np.int64), cycles=st.cycles, macs=0,
                              busy_cycles=st.busy_cycles, stall_cycles=st.stall_cycles,
                              idle_cycles=st.idle_cycles)


def run_gemm_fpga(port, d: np.ndarray, s: np.ndarray) -> FpgaGemmResult:
    """``C = D @ S`` on the FPGA (or a simulation of it) behind the byte stream ``port``."""
    return SwatFpga(port).gemm(d, s)


def open_serial(device: str, baud: int = 115_200, *, timeout: float = 1.0):
    """A ``serial.Serial`` on ``device`` for :class:`SwatFpga` (pyserial, the ``fpga`` extra,
    is imported only here, so the driver itself needs no serial library)."""
    try:
        import serial
    except ImportError:
        raise RuntimeError("opening a serial port needs pyserial: pip install -e .[fpga]") \
            from None
    return serial.Serial(device, baud, timeout=timeout)
