"""Host bridge protocol over simulated UART bytes, against a behavioural stand-in core and (when
``hw.core`` exists) the real ``SwatCore``; the host driver ``sim.fpga`` does the talking."""

import struct

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.board_top import SwatSystem
from hw.host_bridge import (
    ERR_BUSY,
    ERR_OPCODE,
    ERR_RANGE,
    ERR_TIMEOUT,
    OP_NOP,
    OP_READ_C,
    OP_WRITE_D,
    OP_WRITE_S,
    ST_OK,
)
from sim.fpga import BridgeError, CoreError, SimUartPort, SwatFpga, encode_s, run_gemm_fpga

DIVISOR = 4


def _abits(depth):
    return max(1, (depth - 1).bit_length())


class StandInCore(wiring.Component):
    """Same ports as ``hw.core.SwatCore``; buffers are real memories, the GEMM itself is done by
    :meth:`behaviour`, a simulator process (slow, exact, with a few of the loader's checks)."""

    def __init__(self, *, rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32, latency=30):
        self.rows, self.cols = rows, cols
        self.d_depth, self.s_depth, self.c_depth = d_depth, s_depth, c_depth
        self.latency = latency
        super().__init__({
            "d_we": In(1), "d_addr": In(_abits(d_depth)), "d_data": In(rows * 8),
            "s_we": In(1), "s_addr": In(_abits(s_depth)), "s_data": In(32),
            "c_addr": In(_abits(c_depth)), "c_data": Out(rows * 32),
            "m": In(16), "k": In(16), "n": In(16), "s_len": In(_abits(s_depth) + 1),
            "start": In(1),
            "busy": Out(1), "done": Out(1), "error": Out(1), "error_code": Out(4),
            "cycles": Out(32), "busy_cycles": Out(32), "stall_cycles": Out(32),
            "idle_cycles": Out(32),
        })
        self.d_mem = Memory(shape=rows * 8, depth=d_depth, init=[])
        self.s_mem = Memory(shape=32, depth=s_depth, init=[])
        self.c_mem = Memory(shape=rows * 32, depth=c_depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.d_mem = self.d_mem
        m.submodules.s_mem = self.s_mem
        m.submodules.c_mem = self.c_mem
        dw = self.d_mem.write_port()
        sw = self.s_mem.write_port()
        cr = self.c_mem.read_port()
        m.d.comb += [
            dw.en.eq(self.d_we), dw.addr.eq(self.d_addr), dw.data.eq(self.d_data),
            sw.en.eq(self.s_we), sw.addr.eq(self.s_addr), sw.data.eq(self.s_data),
            cr.addr.eq(self.c_addr), self.c_data.eq(cr.data),
        ]
        if platform is not None:  # synthesis: tie the outputs the simulator process would drive
            for name in ("busy", "done", "error", "error_code", "cycles", "busy_cycles",
                         "stall_cycles", "idle_cycles"):
                m.d.comb += getattr(self, name).eq(0)
        return m

    def _compute(self, ctx):
        rows = self.rows
        M, K, N, s_len = (ctx.get(x) for x in (self.m, self.k, self.n, self.s_len))
        if not (0 < M and 0 < K and 0 < N and -(-M // rows) * K <= self.d_depth
                and -(-M // rows) * N <= self.c_depth):
            return 8, 0
        words = [ctx.get(self.s_mem.data[i]) for i in range(min(s_len, self.s_depth))]
        if len(words) < 3:
            return 4, 0
        if words[0] != 0x53574154:
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
        d = np.zeros((groups * rows, K), dtype=np.int64)
        for mt in range(groups):
            for k in range(K):
                w = ctx.get(self.d_mem.data[mt * K + k])
                for i in range(rows):
                    b = (w >> (8 * i)) & 0xFF
                    d[mt * rows + i, k] = b - 256 if b >= 128 else b
        c = d @ s
        for mt in range(groups):
            for n in range(N):
                word = 0
                for i in range(rows):
                    word |= (int(c[mt * rows + i, n]) & 0xFFFFFFFF) << (32 * i)
                ctx.set(self.c_mem.data[mt * N + n], word)
        return 0, groups * nnz

    async def behaviour(self, ctx):
        while True:
            await ctx.posedge(self.start)  # testbenches run after settling: start is high
            await ctx.tick()  # the edge at which the core samples start
            ctx.set(self.busy, 1)
            ctx.set(self.done, 0)
            ctx.set(self.error, 0)
            code, work = self._compute(ctx)
            cycles = self.latency + work
            for _ in range(cycles):
                await ctx.tick()
            ctx.set(self.busy, 0)
            ctx.set(self.done, 1)
            ctx.set(self.error, int(code != 0))
            ctx.set(self.error_code, code)
            ctx.set(self.cycles, cycles)
            ctx.set(self.busy_cycles, work)


def make_port(core, *, timeout=400, standin=True):
    system = SwatSystem(divisor=DIVISOR, core=core, timeout=timeout, clk_hz=1_000_000)
    port = SimUartPort(system, system.rx, system.tx, divisor=DIVISOR, timeout_cycles=4000)
    if standin:
        port.sim.add_testbench(core.behaviour, background=True)
    return port


@pytest.fixture
def standin_port():
    return make_port(StandInCore())


def test_info_and_nop(standin_port):
    fpga = SwatFpga(standin_port)
    fpga.nop()
    info = fpga.info()
    assert (info.version, info.rows, info.cols) == (1, 2, 2)
    assert (info.d_depth, info.s_depth, info.c_depth, info.clk_hz) == (64, 64, 32, 1_000_000)


def test_gemm_roundtrip_standin(standin_port):
    rng = np.random.default_rng(1)
    d = rng.integers(-128, 128, (3, 5))
    s = rng.integers(-128, 128, (5, 4)) * (rng.random((5, 4)) < 0.5)
    res = run_gemm_fpga(standin_port, d, s)
    assert res.c.dtype == np.int32
    np.testing.assert_array_equal(res.c, d.astype(np.int64) @ s.astype(np.int64))
    assert res.macs == 3 * np.count_nonzero(s)
    assert res.cycles > 0 and res.tiles == 1


def test_gemm_tiled_standin():
    """Buffers too small for the GEMM: the driver splits it over M, N and K."""
    port = make_port(StandInCore(d_depth=8, s_depth=16, c_depth=4))
    rng = np.random.default_rng(2)
    d = rng.integers(-128, 128, (3, 9))  # 2 M tiles (c_depth 4 / d_depth 8 per 2-row group)
    s = rng.integers(-128, 128, (9, 2)) * (rng.random((9, 2)) < 0.6)  # 2 K tiles
    s[0, 0] = -128
    res = run_gemm_fpga(port, d, s)
    np.testing.assert_array_equal(res.c, d.astype(np.int64) @ s.astype(np.int64))
    assert res.tiles >= 3


def test_unknown_opcode_replies_error(standin_port):
    port = standin_port
    port.write(bytes([0x5E]))
    assert port.read(1) == bytes([ERR_OPCODE])
    port.write(bytes([0xFF, OP_NOP]))
    assert port.read(2) == bytes([ERR_OPCODE, ST_OK])
    SwatFpga(port).nop()


def test_truncated_frame_times_out(standin_port):
    port = standin_port
    port.write(bytes([OP_WRITE_S, 0, 0]))  # two of four argument bytes, then silence
    assert port.read(1) == bytes([ERR_TIMEOUT])
    fpga = SwatFpga(port)
    fpga.nop()
    st = fpga.status()
    assert st.timed_out
    assert not fpga.status().timed_out  # cleared by reading


def test_truncated_burst_times_out(standin_port):
    port = standin_port
    port.write(bytes([OP_WRITE_D]) + struct.pack("<HH", 0, 3) + bytes(3))  # 3 of 6 bytes
    assert port.read(1) == bytes([ERR_TIMEOUT])
    SwatFpga(port).nop()


def test_out_of_range(standin_port):
    fpga = SwatFpga(standin_port)
    with pytest.raises(BridgeError) as e:
        fpga.write_s(60, np.arange(5, dtype=np.uint32))  # 60 + 5 > 64: consumed, not written
    assert e.value.status == ERR_RANGE
    fpga.nop()
    port = standin_port
    port.write(bytes([OP_READ_C]) + struct.pack("<HH", 30, 3))
    assert port.read(1) == bytes([ERR_RANGE])  # no data follows
    with pytest.raises(BridgeError):
        fpga.set_shape(1, 1, 1, 65)
    fpga.nop()


def test_start_while_busy_and_core_error():
    port = make_port(StandInCore(latency=3000))
    fpga = SwatFpga(port)
    fpga.write_s(0, np.array([0xDEADBEEF, 1 | 1 << 16, 0, 0, 0], dtype=np.uint32))
    fpga.set_shape(1, 1, 1, 5)
    fpga.start()
    with pytest.raises(BridgeError) as e:
        fpga.start()
    assert e.value.status == ERR_BUSY
    with pytest.raises(BridgeError) as e:
        fpga.write_d(0, np.zeros((1, 2), dtype=np.uint8))
    assert e.value.status == ERR_BUSY
    st = fpga.wait_done()
    assert st.error and st.error_code == 1
    with pytest.raises(ValueError):  # the driver checks shapes before talking to the core
        run_gemm_fpga(port, np.ones((1, 1), dtype=np.int8), np.zeros((2, 1), dtype=np.int8))
    fpga.write_s(0, encode_s(np.ones((2, 1), dtype=np.int8)))
    fpga.set_shape(1, 3, 1, 5)  # header says K=2
    fpga.start()
    with pytest.raises(CoreError) as e:
        st = fpga.wait_done()
        if st.error:
            raise CoreError(st.error_code)
    assert e.value.code == 2


def test_burst_write_then_readback_raw(standin_port):
    """D/S writes land at the right addresses: run a 1x1 identity through raw frames."""
    port = standin_port
    words = encode_s(np.array([[3]]))
    port.write(bytes([OP_WRITE_S]) + struct.pack("<HH", 0, len(words)) + words.tobytes())
    assert port.read(1) == bytes([ST_OK])
    port.write(bytes([OP_WRITE_D]) + struct.pack("<HH", 0, 1) + bytes([0xFE, 7]))
    assert port.read(1) == bytes([ST_OK])
    fpga = SwatFpga(port)
    fpga.set_shape(2, 1, 1, len(words))
    fpga.start()
    assert not fpga.wait_done().error
    port.write(bytes([OP_READ_C]) + struct.pack("<HH", 0, 1))
    assert port.read(1 + 8) == bytes([ST_OK]) + struct.pack("<ii", -6, 21)


# -- the real core ------------------------------------------------------------------------

def _real_core(**kw):
    core_mod = pytest.importorskip("hw.core")
    return core_mod.SwatCore(**kw)


def test_gemm_real_core():
    core = _real_core(rows=2, cols=2, d_depth=32, s_depth=32, c_depth=16)
    port = make_port(core, standin=False, timeout=2000)
    rng = np.random.default_rng(3)
    d = rng.integers(-128, 128, (3, 4))
    s = rng.integers(-128, 128, (4, 3)) * (rng.random((4, 3)) < 0.5)
    s[1, 1] = -128
    res = run_gemm_fpga(port, d, s)
    np.testing.assert_array_equal(res.c, d.astype(np.int64) @ s.astype(np.int64))
    assert res.cycles > 0
    assert res.macs == 3 * np.count_nonzero(s)


def test_real_core_error_code():
    core = _real_core(rows=2, cols=2, d_depth=32, s_depth=32, c_depth=16)
    port = make_port(core, standin=False, timeout=2000)
    fpga = SwatFpga(port)
    fpga.write_s(0, np.array([0x12345678, 1 | 1 << 16, 0, 0, 0], dtype=np.uint32))
    fpga.set_shape(1, 1, 1, 5)
    fpga.start()
    st = fpga.wait_done()
    assert st.error and st.error_code == 1
