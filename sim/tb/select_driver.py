"""Driver of the threshold-select unit (``hw.threshold_select.ThresholdSelect``) from cocotb.

The unit has three valid/ready streams: ``cmd`` (one operation, ``hw.select_layouts.
CommandLayout``), ``i`` (dense int8 ``S[K, N]``, column by column, ``lanes`` elements a beat,
``last`` on the final beat) and ``o`` (banked writes of the compressed blob, ``banks`` words a
beat), and the ``status`` members. :meth:`SelectDriver.op` drives the command, then ``i`` and
``o`` in one per-cycle loop; each cycle the input may be withheld (``valid = 0``) and the output
back-pressured (``ready = 0``) at random, so every stall pattern of the handshakes is exercised.
The handshake is sampled in the ``ReadOnly`` phase before the clock edge, so a transfer is
counted exactly when ``valid & ready`` is high at the edge.
"""

from __future__ import annotations

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.select_layouts import CommandLayout, HeldLayout, Mode, write_layout
from sim.tb.driver import PERIOD_NS, _Setter

MODES = {m.name: m.value for m in Mode}


def _banks_of(payload_width: int, addr_width: int) -> int:
    """Write slots of an ``o`` payload of ``payload_width`` bits (``write_layout``)."""
    for bits in range(addr_width + 1):
        banks = 1 << bits
        if write_layout(banks, max(1, addr_width - bits)).size == payload_width:
            return banks
    raise ValueError(f"o__payload of {payload_width} bits matches no write layout")


class SelectDriver:
    def __init__(self, dut, meta: dict):
        self.dut = dut
        attrs = meta["attrs"]
        self.lanes = attrs.get("lanes", 8)
        self.depth = attrs.get("depth", 1 << 16)
        ports = meta["ports"]
        addr_width = attrs["addr_width"]
        self.banks = _banks_of(ports["o__payload"], addr_width)
        # beat_layout(lanes, index_width): data, last, then the per-lane source index
        self.index_width = (ports["i__payload"] - 8 * self.lanes - 1) // self.lanes
        out = write_layout(self.banks, max(1, addr_width - (self.banks.bit_length() - 1)))
        self.out_fields = (out["en"].offset, out["addr"].offset,
                           out["addr"].shape.elem_shape.width, out["data"].offset)
        self.p = {name: _Setter(getattr(dut, name)) for name in ports if name not in ("clk",)}

    def writes(self, payload: int):
        """``[(addr, data)]`` of one ``o`` payload."""
        en_off, addr_off, row_w, data_off = self.out_fields
        out = []
        for b in range(self.banks):
            if payload >> (en_off + b) & 1:
                row = payload >> (addr_off + b * row_w) & ((1 << row_w) - 1)
                out.append((row * self.banks + b, payload >> (data_off + 32 * b) & 0xFFFFFFFF))
        return out

    def held(self) -> dict:
        """The ``status.held`` fields."""
        v = self.p["status__held"].get()
        return {name: v >> HeldLayout[name].offset & ((1 << HeldLayout[name].width) - 1)
                for name in ("threshold", "ties", "cut_row", "cut_col", "cut_any", "cut_index")}

    async def start(self):
        Clock(self.dut.clk, PERIOD_NS, unit="ns", impl="gpi").start(start_high=False)
        for name in ("i__valid", "i__payload", "o__ready", "cmd__valid", "cmd__payload"):
            self.p[name].set(0)
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def beats(self, s: np.ndarray, *, last_at: int | None = None,
              index: np.ndarray | None = None) -> list[int]:
        """Payload integers of the stream of ``S[K, N]`` (column by column), with the source
        indices ``index[K, N]`` in the side band (the unit must have one)."""
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
        if index is not None:
            if not self.index_width:
                raise ValueError("the unit has no source-index side band")
            w = self.index_width
            flat_idx = np.ascontiguousarray(np.asarray(index, dtype=np.int64).T).ravel()
            flat_idx &= (1 << w) - 1
            for e, x in enumerate(flat_idx.tolist()):
                out[e // L] |= x << (8 * L + 1 + w * (e % L))
        return out

    async def op(self, s: np.ndarray, *, mode="FULL", keep=0, t_in=0, ties_in=0, rng=None,
                 p_in_idle=0.0, p_out_stall=0.0, beats=None, passes=None, shape=None,
                 max_cycles=None, bank=0, transpose=0, cut=None, by_index=0, cut_index=None,
                 index=None) -> dict:
        """One operation (``cut`` = ``(row, col)`` or None for GIVEN with ``transpose``;
        ``by_index`` with ``cut_index`` (None: no tie) and the source indices ``index[K, N]``).
        Returns ``{"words": {addr: data}, "cycles", "error", "code", "threshold", "ties",
        "cut", "cut_index", "nnz", "s_len", "held_valid", "bank", "banks_written",
        "sim_cycles", "beats_sent"}``."""
        p = self.p
        k, n = s.shape if shape is None else shape
        mode_v = MODES[mode] if isinstance(mode, str) else int(mode)
        stream = self.beats(s, index=index) if beats is None else beats
        if passes is None:
            passes = 2 if mode_v == 0 or (mode_v == 2 and by_index) else 1
        todo = stream * passes
        rng = rng or np.random.default_rng(0)
        given = {"threshold": t_in, "ties": ties_in, "cut_any": cut is not None}
        if cut is not None:
            given.update(cut_row=cut[0], cut_col=cut[1])
        if cut_index is not None:
            given.update(cut_any=1, cut_index=cut_index)
        command = CommandLayout.const({
            "mode": Mode(mode_v), "keep": keep, "rows": k, "cols": n, "bank": bank,
            "transpose": transpose, "given": given, "by_index": by_index}).as_value().value
        p["cmd__payload"].set(command)
        p["cmd__valid"].set(1)
        clk = RisingEdge(self.dut.clk)
        await ReadOnly()
        assert p["cmd__ready"].get(), "command refused by an idle unit"
        await clk
        p["cmd__valid"].set(0)
        words: dict[int, int] = {}
        banks_written = set()
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
                payload = p["o__payload"].get()
                banks_written.add(payload & 1)  # write_layout: the buffer number is bit 0
                for addr, data in self.writes(payload):
                    if addr in words:
                        dup.append(addr)
                    words[addr] = data
            done = p["status__done"].get() and not p["status__busy"].get()
            await clk
            cycles += 1
            if in_fire:
                sent += 1
            quiet = quiet + 1 if (done and not out_valid) else 0
            # finished: done, nothing offered for a few cycles; an erroring unit may leave
            # input unsent (it discards what it gets), so do not wait for the stream then
            if quiet >= 3 and (sent >= len(todo) or p["status__error"].get()):
                break
        p["i__valid"].set(0)
        held = self.held()
        return {
            "words": words, "dup": dup, "cycles": p["status__cycles"].get(),
            "error": p["status__error"].get(), "code": p["status__error_code"].get(),
            "threshold": held["threshold"], "ties": held["ties"],
            "cut": (held["cut_row"], held["cut_col"]) if held["cut_any"] else None,
            "cut_index": held["cut_index"] if held["cut_any"] else None,
            "nnz": p["status__nnz"].get(), "s_len": p["status__s_len"].get(),
            "held_valid": p["status__held_valid"].get(), "bank": p["status__bank"].get(),
            "banks_written": banks_written, "sim_cycles": cycles,
            "beats_sent": sent, "timed_out": cycles >= limit,
        }


def blob_from_writes(words: dict) -> np.ndarray:
    """The written words as a dense array (address 0 .. max); missing words are -1 markers."""
    if not words:
        return np.zeros(0, dtype=np.int64)
    out = np.full(max(words) + 1, -1, dtype=np.int64)
    for a, v in words.items():
        out[a] = v
    return out
