"""Coroutines that drive the core's ports (``docs/core-interface.md``) from cocotb.

Speed matters (whole ResNet-18 training steps go through here), so:

* the clock runs in the simulator (``Clock(..., impl="gpi")``: a C++ timer callback in cocotb's
  GPI layer, no Python per edge);
* the D / S buffers are *preloaded*: the words are written straight into the memory arrays of
  the model through VPI handles (the model makes those arrays public, see ``sim.verilate``),
  without spending clock cycles; C is read back the same way. When a buffer cannot be found as a
  single memory of the documented geometry (``mode="ports"`` or a core that banks its buffers),
  the driver falls back to the write/read *ports*, one clock edge per word;
* while the core computes, Python awaits only ``RisingEdge(done)`` (plus a timeout timer).
"""

from __future__ import annotations

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, ReadOnly, RisingEdge, Timer

from hw.contract.blob import MAGIC, encode_words
from hw.contract.codes import TIMEOUT_CODE
from hw.contract.words import gather_c, pack_d, unpack_c
from sim import coreports

# the buffer layouts and the blob encoder are the contract's; re-exported for the benches
__all__ = ["CoreDriver", "PERIOD_NS", "TIMEOUT_CODE", "MAGIC", "encode_words", "pack_d",
           "unpack_c"]

PERIOD_NS = 10


def _find(dut, name: str):
    bare = name[1:] if name.startswith("\\") else name
    for cand in (bare, name):
        try:
            return dut._id(cand, extended=False)
        except (AttributeError, KeyError, ValueError):
            pass
    try:
        return getattr(dut, bare)
    except AttributeError:
        return None


def _to_int_words(arr: np.ndarray) -> list[int]:
    """``[words, lanes]`` array of bytes (lane 0 least significant) -> Python ints."""
    arr = np.ascontiguousarray(arr)
    nbytes = arr.shape[1] * arr.dtype.itemsize
    raw = arr.view(np.uint8).reshape(arr.shape[0], nbytes)
    if nbytes in (1, 2, 4, 8):
        return raw.view(f"<u{nbytes}").reshape(-1).tolist()
    buf = raw.tobytes()
    return [int.from_bytes(buf[i:i + nbytes], "little") for i in range(0, len(buf), nbytes)]


class _Setter:
    """Fast writer/reader of one signal through cocotb's low-level handle (trusted inertial
    writes: Verilator applies them immediately)."""

    __slots__ = ("h", "width", "fmt", "raw")

    def __init__(self, handle):
        self.h = handle
        self.width = len(handle)
        self.fmt = f"0{self.width}b"
        self.raw = handle._handle

    def set(self, value: int) -> None:
        if self.width <= 32:
            self.raw.set_signal_val_int(0, value)
        else:
            self.raw.set_signal_val_binstr(0, format(value, self.fmt))

    def get(self) -> int:
        if self.width <= 32:
            return self.raw.get_signal_val_long() & ((1 << self.width) - 1)
        s = self.raw.get_signal_val_binstr()
        try:
            return int(s, 2)
        except ValueError:  # X/Z bits: read them as 0
            return int(s.replace("x", "0").replace("z", "0").replace("X", "0")
                       .replace("Z", "0"), 2)


class CoreDriver:
    """Drives ``hw.core.SwatCore`` (or any design with its ports)."""

    def __init__(self, dut, meta: dict, mode: str = "auto"):
        self.dut = dut
        attrs = meta["attrs"]
        self.rows = attrs["rows"]
        self.cols = attrs.get("cols", 1)
        self.d_depth, self.s_depth, self.c_depth = (attrs["d_depth"], attrs["s_depth"],
                                                    attrs["c_depth"])
        self.ports = meta["ports"]
        self.mode = mode
        mems = meta.get("memories", [])

        def pick(width, depth):
            return [m["name"] for m in mems if m["width"] == width and m["depth"] == depth]

        self.dmem_names = pick(self.rows * 8, self.d_depth)
        self.smem_names = pick(32, self.s_depth)
        cm = pick(self.rows * 32, self.c_depth)
        self.cmem_names = cm[:1] if len(cm) == 1 else []
        self.dmem = self.smem = self.cmem = None
        if mode in ("auto", "preload"):
            self.dmem = [h for h in (_find(dut, n) for n in self.dmem_names) if h is not None]
            self.smem = [h for h in (_find(dut, n) for n in self.smem_names) if h is not None]
            self.cmem = [h for h in (_find(dut, n) for n in self.cmem_names) if h is not None]
            # one S buffer expected, or one copy per consumer (s_copy_<j>, all written);
            # otherwise use the port
            copies = [coreports.S_COPY_MEMORY.format(j=j) for j in range(len(self.smem_names))]
            if len(self.smem) != 1 and not (sorted(self.smem_names) == sorted(copies)
                                            and len(self.smem) == len(copies)):
                self.smem = None
            self.dmem = self.dmem or None
            self.cmem = self.cmem or None
            if mode == "preload" and not (self.dmem and self.smem):
                raise RuntimeError(
                    f"cannot preload: D memories {self.dmem_names}, S memories {self.smem_names}"
                )
        # Verilog names from the one table the C++ harness uses too (sim/coreports.py)
        names = coreports.resolve(self.ports, mems)
        p = {name: _Setter(getattr(dut, names[name])) for name in (
            "d_we", "d_addr", "d_data", "s_we", "s_addr", "s_data", "c_addr", "c_data",
            "m", "k", "n", "s_len", "start", "busy", "done", "error", "error_code", "cycles",
            "busy_cycles", "stall_cycles", "idle_cycles")}
        if names["c_en"]:  # a read-port enable: held at 1
            p["c_en"] = _Setter(getattr(dut, names["c_en"]))
        self.p = p
        # result logs (hw.result_logs): one per PE column, entries lanes | caddr << 32*rows,
        # counted by the ctrl__results__<j> ports; gathered into C words by read_c
        self.c_aw = max(1, (self.c_depth - 1).bit_length())
        self.results = [_Setter(getattr(dut, f"ctrl__results__{j}")) for j in range(self.cols)
                        if f"ctrl__results__{j}" in self.ports]
        # hw.result_logs.read_latency: one chain stage per log + the BRAM and its register
        self.c_latency = len(self.results) + 2 if self.results else 1
        self.logs = None
        if self.results and mode in ("auto", "preload"):
            by_bank = {}
            for mm in mems:
                bare = mm["name"].lstrip("\\")
                if bare.startswith("c_log_") and bare[6:].isdigit():
                    by_bank[int(bare[6:])] = _find(dut, mm["name"])
            if sorted(by_bank) == list(range(self.cols)) and None not in by_bank.values():
                self.logs = [by_bank[j] for j in range(self.cols)]
        self._raw: dict = {}
        self.clock = None

    def _elems(self, mem, base: int, count: int) -> list:
        """Raw simulator handles of ``mem[base .. base+count-1]`` (cached; cocotb's Python handle
        objects are skipped: creating one per memory word costs ~0.1 ms)."""
        cache = self._raw.setdefault(id(mem), [])
        if len(cache) < base + count:
            raw = mem._handle
            cache.extend(raw.get_handle_by_index(a) for a in range(len(cache), base + count))
        return cache[base:base + count]

    # -- setup -----------------------------------------------------------------------------
    async def start(self):
        dut = self.dut
        self.clock = Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi")
        self.clock.start(start_high=False)
        for name in ("d_we", "s_we", "start", "c_addr", "d_addr", "s_addr", "d_data", "s_data",
                     "m", "k", "n", "s_len"):
            self.p[name].set(0)
        if "c_en" in self.p:
            self.p["c_en"].set(1)
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    # -- buffers ---------------------------------------------------------------------------
    async def write_d(self, words: np.ndarray, base: int = 0):
        """``words``: ``[n, rows]`` int8/uint8 array (byte lane i = row i)."""
        ints = _to_int_words(words)
        if self.dmem:
            fmt = f"0{self.rows * 8}b"
            for mem in self.dmem:
                hs = self._elems(mem, base, len(ints))
                for h, v in zip(hs, ints, strict=True):
                    h.set_signal_val_binstr(0, format(v, fmt))
        else:
            await self._write_port("d", ints, base)

    async def write_s(self, words: np.ndarray, base: int = 0):
        ints = np.asarray(words, dtype=np.uint32).tolist()
        if self.smem:
            for mem in self.smem:
                hs = self._elems(mem, base, len(ints))
                for h, v in zip(hs, ints, strict=True):
                    h.set_signal_val_int(0, v - (1 << 32) if v >= 1 << 31 else v)
        else:
            await self._write_port("s", ints, base)

    async def _write_port(self, buf: str, ints, base: int):
        we, addr, data = self.p[f"{buf}_we"], self.p[f"{buf}_addr"], self.p[f"{buf}_data"]
        clk = RisingEdge(self.dut.clk)
        we.set(1)
        for a, v in enumerate(ints, base):
            addr.set(a)
            data.set(v)
            await clk
        we.set(0)

    async def read_c(self, count: int, base: int = 0) -> np.ndarray:
        """C words ``base .. base+count-1`` as ``[count, rows]`` int32 (gathered from the
        result logs when the core has them)."""
        out = bytearray()
        nb = self.rows * 4
        if self.results:
            words = gather_c(await self._log_entries(), self.rows, base + count)[base:]
            for w in words:
                out += w.to_bytes(nb, "little")
        elif self.cmem:
            for h in self._elems(self.cmem[0], base, count):
                out += int(h.get_signal_val_binstr(), 2).to_bytes(nb, "little")
        else:
            out += b"".join(v.to_bytes(nb, "little")
                            for v in await self._read_port(list(range(base, base + count))))
        return np.frombuffer(bytes(out), dtype="<i4").reshape(count, self.rows)

    async def _log_entries(self) -> list[int]:
        """Every valid entry of every result log (memory handles, else the read port)."""
        counts = [r.get() for r in self.results]
        if self.logs:
            return [int(h.get_signal_val_binstr().replace("x", "0").replace("z", "0"), 2)
                    for mem, cnt in zip(self.logs, counts, strict=True)
                    for h in self._elems(mem, 0, cnt)]
        return await self._read_port([j << self.c_aw | i for j, cnt in enumerate(counts)
                                      for i in range(cnt)])

    async def _read_port(self, addrs: list[int]) -> list[int]:
        """Reads through the C read port, one address at a time held for ``c_latency + 1``
        clock edges (robust to when the simulator applies a write made at an edge; the port
        path is for tests, the fast path reads the memories)."""
        caddr, cdata = self.p["c_addr"], self.p["c_data"]
        edges = ClockCycles(self.dut.clk, self.c_latency + 1)
        vals = []
        for a in addrs:
            caddr.set(a)
            await edges
            vals.append(cdata.get())
        caddr.set(0)
        return vals

    # -- operation -------------------------------------------------------------------------
    async def run(self, m: int, k: int, n: int, s_len: int, timeout_cycles: int | None = None,
                  ) -> dict:
        """Start one operation with the shape, await its ``done``; return its counters.

        The core takes ``start`` only while it is idle and its threshold-select unit is not
        busy, and ignores it otherwise. So a running operation is first let finish, then
        ``start`` is held until the core shows it took it (``busy`` high), and only then is
        ``done`` awaited: the counters returned are always this operation's. An operation that
        does not start or does not finish within ``timeout_cycles`` is reported with
        ``code = TIMEOUT_CODE`` (and the core reset), never with another operation's counters.
        """
        p = self.p
        clk = self.dut.clk
        if timeout_cycles is None:
            timeout_cycles = 64 * (m + 8) * (k + 8) * (n + 8) // max(1, self.rows) + 10_000
        # values are read in the ReadOnly phase (settled after the edge) and written after a
        # falling edge (taken by the next rising edge)
        waited = 0
        await ReadOnly()
        while p["busy"].get() and waited < timeout_cycles:  # a previous operation
            await RisingEdge(clk)
            await ReadOnly()
            waited += 1
        await FallingEdge(clk)
        p["m"].set(m)
        p["k"].set(k)
        p["n"].set(n)
        p["s_len"].set(s_len)
        p["start"].set(1)
        while True:  # held until taken: the core ignores start while it or the select is busy
            await RisingEdge(clk)
            await ReadOnly()
            if p["busy"].get() or waited >= timeout_cycles:
                break
            waited += 1
        started = bool(p["busy"].get())
        await FallingEdge(clk)
        p["start"].set(0)
        if started:
            await First(RisingEdge(p["done"].h),
                        Timer((timeout_cycles - waited) * PERIOD_NS, unit="ns"))
        stats = {
            "cycles": p["cycles"].get(), "busy": p["busy_cycles"].get(),
            "stall": p["stall_cycles"].get(), "idle": p["idle_cycles"].get(),
            "error": p["error"].get(), "code": p["error_code"].get(),
        }
        if not (started and p["done"].get()):
            stats["code"] = TIMEOUT_CODE
            stats["error"] = 1
            await self.reset()
        return stats

    async def gemm_words(self, d_words, s_words, m, k, n, s_len=None, read_c=True,
                         timeout_cycles=None):
        await self.write_d(d_words)
        await self.write_s(s_words)
        s_len = len(s_words) if s_len is None else s_len
        stats = await self.run(m, k, n, s_len, timeout_cycles)
        c = None
        if read_c and not stats["error"]:
            mt = -(-m // self.rows)
            c = await self.read_c(mt * n)
        return c, stats
