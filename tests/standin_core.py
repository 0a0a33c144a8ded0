"""A behavioural stand-in for ``hw.core.SwatCore`` behind the same host signature, for the
board-side tests (``tests/test_host_bridge.py``, ``tests/test_board_top.py``)."""

import numpy as np
from amaranth.hdl import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from hw.contract.blob import MAGIC
from hw.contract.words import c_ints, pack_c, unpack_d
from hw.core_ports import ControlSignature

__all__ = ["StandInCore"]


class StandInCore(wiring.Component):
    """The host members of ``hw.core.SwatCore`` (``d_write``, ``s_write``, ``c_read``, ``ctrl``);
    the buffers are real memories, the GEMM itself is done by :meth:`behaviour`, a simulator
    process (slow, exact, with a few of the loader's checks). C reads take
    ``c_read_latency`` cycles (``C_READ_LATENCY``), as a core may register its read path.

    With ``result_logs`` the results go, as in the core with result logs, to one log per PE
    column instead of one C buffer: each log word is the C word's lanes with its C address
    above them, ``ctrl.results[j]`` counts log ``j``'s entries, and ``c_read`` reads log
    ``addr >> ceil_log2(c_depth)`` at ``addr & (c_depth - 1)``. Items are spread over the logs
    in a scrambled order, so a reader that ignores the addresses fails."""

    def __init__(self, *, rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32, latency=30,
                 c_read_latency=1, result_logs=False):
        self.rows, self.cols = rows, cols
        self.d_depth, self.s_depth, self.c_depth = d_depth, s_depth, c_depth
        self.latency = latency
        self.C_READ_LATENCY = c_read_latency
        self.result_logs = result_logs
        c_aw, s_aw = ceil_log2(c_depth), ceil_log2(s_depth)
        if result_logs:
            c_read = ReadPort.Signature(addr_width=c_aw + ceil_log2(cols), shape=rows * 32 + c_aw)
            ctrl = ControlSignature(s_aw + 1, logs=cols, count_width=c_aw + 1)
        else:
            c_read = ReadPort.Signature(addr_width=c_aw, shape=rows * 32)
            ctrl = ControlSignature(s_aw + 1)
        super().__init__({
            "d_write": Out(WritePort.Signature(addr_width=ceil_log2(d_depth), shape=rows * 8)),
            "s_write": Out(WritePort.Signature(addr_width=s_aw, shape=32)),
            "c_read": Out(c_read),
            "ctrl": Out(ctrl),
        })
        self.d_mem = Memory(shape=rows * 8, depth=d_depth, init=[])
        self.s_mem = Memory(shape=32, depth=s_depth, init=[])
        n_c = cols if result_logs else 1
        self.c_mems = [Memory(shape=len(self.c_read.data), depth=c_depth, init=[])
                       for _ in range(n_c)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.d_mem = self.d_mem
        m.submodules.s_mem = self.s_mem
        wiring.connect(m, wiring.flipped(self.d_write), self.d_mem.write_port())
        wiring.connect(m, wiring.flipped(self.s_write), self.s_mem.write_port())
        c_aw = ceil_log2(self.c_depth)
        ports = []
        for j, mem in enumerate(self.c_mems):
            m.submodules[f"c_mem{j}"] = mem
            ports.append(mem.read_port())
            m.d.comb += [ports[-1].addr.eq(self.c_read.addr[:c_aw]),
                         ports[-1].en.eq(self.c_read.en)]
        bank = Signal(max(1, len(self.c_read.addr) - c_aw))
        m.d.sync += bank.eq(self.c_read.addr[c_aw:])
        data = Array(p.data for p in ports)[bank]
        for _ in range(self.C_READ_LATENCY - 1):  # extra register stages after the memory
            reg = Signal.like(data)
            m.d.sync += reg.eq(data)
            data = reg
        m.d.comb += self.c_read.data.eq(data)
        if platform is not None:  # synthesis: tie the outputs the simulator process would drive
            ctrl = self.ctrl
            for sig in (ctrl.busy, ctrl.done, ctrl.error, ctrl.error_code, ctrl.cycles,
                        ctrl.busy_cycles, ctrl.stall_cycles, ctrl.idle_cycles,
                        *(ctrl.results if self.result_logs else ())):
                m.d.comb += sig.eq(0)
        return m

    def _compute(self, ctx):
        rows, ctrl = self.rows, self.ctrl
        M, K, N, s_len = (ctx.get(x) for x in (ctrl.m, ctrl.k, ctrl.n, ctrl.s_len))
        if not (0 < M and 0 < K and 0 < N and -(-M // rows) * K <= self.d_depth
                and -(-M // rows) * N <= self.c_depth):
            return 8, 0
        words = [ctx.get(self.s_mem.data[i]) for i in range(min(s_len, self.s_depth))]
        if len(words) < 3:
            return 4, 0
        if words[0] != MAGIC:
            return 1, 0
        if words[1] != (K | N << 16):
            return 2, 0
        nnz = words[2]
        if len(words) < 4 + N + nnz:
            return 4, 0
        ptr = words[3:4 + N]
        s = np.zeros((K, N), dtype=np.int64)
        for n in range(N):
            for e in words[4 + N + ptr[n]:4 + N + ptr[n + 1]]:
                k, v = e & 0xFFFF, (e >> 16) & 0xFF
                if k >= K:
                    return 5, 0
                s[k, n] = v - 256 if v >= 128 else v
        groups = -(-M // rows)
        d = unpack_d([ctx.get(self.d_mem.data[a]) for a in range(groups * K)], M, K, rows)
        c_words = c_ints(pack_c(d.astype(np.int64) @ s, rows))  # C word mt*N + n
        items = range(groups * N)  # C word addresses mt*N + n
        if self.result_logs:  # scrambled over the logs; the word carries its C address
            items = sorted(items, key=lambda a: (a * 2654435761) % 2**32)
        counts = [0] * len(self.c_mems)
        for pos, addr in enumerate(items):
            word = c_words[addr]
            if self.result_logs:
                word |= addr << (32 * rows)
            log = pos % len(self.c_mems)
            ctx.set(self.c_mems[log].data[counts[log] if self.result_logs else addr], word)
            counts[log] += 1
        self._counts = counts
        return 0, groups * nnz

    async def behaviour(self, ctx):
        while True:
            await ctx.posedge(self.ctrl.start)  # testbenches run after settling: start is high
            await ctx.tick()  # the edge at which the core samples start
            ctx.set(self.ctrl.busy, 1)
            ctx.set(self.ctrl.done, 0)
            ctx.set(self.ctrl.error, 0)
            self._counts = [0] * len(self.c_mems)
            for j in range(self.cols if self.result_logs else 0):
                ctx.set(self.ctrl.results[j], 0)
            code, work = self._compute(ctx)
            cycles = self.latency + work
            for _ in range(cycles):
                await ctx.tick()
            ctx.set(self.ctrl.busy, 0)
            ctx.set(self.ctrl.done, 1)
            ctx.set(self.ctrl.error, int(code != 0))
            ctx.set(self.ctrl.error_code, code)
            ctx.set(self.ctrl.cycles, cycles)
            ctx.set(self.ctrl.busy_cycles, work)
            if self.result_logs:
                for j, count in enumerate(self._counts):
                    ctx.set(self.ctrl.results[j], count)
