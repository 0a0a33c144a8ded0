"""Driver of the threshold-select unit (``hw.threshold_select.ThresholdSelect``) from cocotb.

The unit has two valid/ready streams: ``i`` (dense int8 ``S[K, N]``, column by column, ``lanes``
elements a beat, ``last`` on the final beat) and ``o`` (``(addr, data)`` writes of the
compressed blob). :meth:`SelectDriver.op` drives both in one per-cycle loop; each cycle the
input may be withheld (``valid = 0``) and the output back-pressured (``ready = 0``) at random,
so every stall pattern of the handshakes is exercised. The handshake is sampled in the
``ReadOnly`` phase before the clock edge, so a transfer is counted exactly when
``valid & ready`` is high at the edge.
"""

from __future__ import annotations

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.contract.codes import SelectMode
from sim.tb.driver import PERIOD_NS, _Setter

MODES = SelectMode.__members__


class SelectDriver:
    def __init__(self, dut, meta: dict):
        self.dut = dut
        attrs = meta["attrs"]
        self.lanes = attrs.get("lanes", 8)
        self.depth = attrs.get("depth", 1 << 16)
        ports = meta["ports"]
        self.addr_width = ports["o__payload"] - 32
        self.p = {name: _Setter(getattr(dut, name)) for name in ports if name not in ("clk",)}

    async def start(self):
        Clock(self.dut.clk, PERIOD_NS, unit="ns", impl="gpi").start(start_high=False)
        for name in ("i__valid", "i__payload", "o__ready", "start", "mode", "keep", "rows",
                     "cols", "t_in", "ties_in"):
            self.p[name].set(0)
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def beats(self, s: np.ndarray, *, last_at: int | None = None) -> list[int]:
        """Payload integers of the stream of ``S[K, N]`` (column by column)."""
        flat = np.ascontiguousarray(np.asarray(s, dtype=np.int8).T).ravel()
        L = self.lanes
        nb = max(1, -(-flat.size // L))
        pad = np.zeros(nb * L, dtype=np.int8)
        pad[:flat.size] = flat
        words = pad.view(np.uint8).reshape(nb, L)
        out = [int.from_bytes(w.tobytes(), "little") for w in words]
        last = nb - 1 if last_at is None else last_at
        if 0 <= last < nb:
            out[last] |= 1 << (8 * L)
        return out

    async def op(self, s: np.ndarray, *, mode="FULL", keep=0, t_in=0, ties_in=0, rng=None,
                 p_in_idle=0.0, p_out_stall=0.0, beats=None, passes=None, shape=None,
                 max_cycles=None) -> dict:
        """One operation. Returns ``{"words": {addr: data}, "cycles", "error", "code",
        "threshold", "ties", "nnz", "s_len", "held_valid", "sim_cycles", "beats_sent"}``."""
        p = self.p
        k, n = s.shape if shape is None else shape
        mode_v = int(MODES[mode]) if isinstance(mode, str) else int(mode)
        stream = self.beats(s) if beats is None else beats
        if passes is None:
            passes = 2 if mode_v == 0 else 1
        todo = stream * passes
        rng = rng or np.random.default_rng(0)
        p["rows"].set(k)
        p["cols"].set(n)
        p["mode"].set(mode_v)
        p["keep"].set(keep)
        p["t_in"].set(t_in)
        p["ties_in"].set(ties_in)
        p["start"].set(1)
        clk = RisingEdge(self.dut.clk)
        await clk
        p["start"].set(0)
        aw = self.addr_width
        amask = (1 << aw) - 1
        words: dict[int, int] = {}
        dup = []
        sent = 0
        quiet = 0
        cycles = 0
        limit = max_cycles or (20 * len(todo) + 4 * (k * n + n) + 2000)
        ro = ReadOnly()
        while cycles < limit:
            in_valid = sent < len(todo) and not (p_in_idle and rng.random() < p_in_idle)
            out_ready = not (p_out_stall and rng.random() < p_out_stall)
            p["i__valid"].set(int(in_valid))
            if in_valid:
                p["i__payload"].set(todo[sent])
            p["o__ready"].set(int(out_ready))
            await ro
            in_fire = in_valid and p["i__ready"].get()
            out_valid = p["o__valid"].get()
            if out_valid and out_ready:
                pay = p["o__payload"].get()
                addr, data = pay & amask, pay >> aw
                if addr in words:
                    dup.append(addr)
                words[addr] = data
            done = p["done"].get() and not p["busy"].get()
            await clk
            cycles += 1
            if in_fire:
                sent += 1
            quiet = quiet + 1 if (done and not out_valid) else 0
            # finished: done, nothing offered for a few cycles; an erroring unit may leave
            # input unsent (it discards what it gets), so do not wait for the stream then
            if quiet >= 3 and (sent >= len(todo) or p["error"].get()):
                break
        p["i__valid"].set(0)
        return {
            "words": words, "dup": dup, "cycles": p["cycles"].get(), "error": p["error"].get(),
            "code": p["error_code"].get(), "threshold": p["threshold"].get(),
            "ties": p["ties"].get(), "nnz": p["nnz"].get(), "s_len": p["s_len"].get(),
            "held_valid": p["held_valid"].get(), "sim_cycles": cycles, "beats_sent": sent,
            "timed_out": cycles >= limit,
        }


def blob_from_writes(words: dict) -> np.ndarray:
    """The written words as a dense array (address 0 .. max); missing words are -1 markers."""
    if not words:
        return np.zeros(0, dtype=np.int64)
    out = np.full(max(words) + 1, -1, dtype=np.int64)
    for a, v in words.items():
        out[a] = v
    return out
