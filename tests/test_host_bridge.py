"""Host bridge protocol over simulated UART bytes, against a behavioural stand-in core and the
real ``SwatCore``; the host driver ``hw.host_driver`` does the talking."""

import struct
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator
from sim_uart_port import SimUartPort
from standin_core import StandInCore

from hw.board_top import SwatSystem
from hw.core_ports import ControlSignature
from hw.host_bridge import (
    ERR_BUSY,
    ERR_OPCODE,
    ERR_RANGE,
    ERR_TIMEOUT,
    INFO_BYTES,
    OP_INFO,
    OP_NOP,
    OP_READ_C,
    OP_RESULTS,
    OP_SET_SHAPE,
    OP_START,
    OP_STATUS,
    OP_WRITE_D,
    OP_WRITE_S,
    ST_OK,
    STATUS_BYTES,
    HostBridge,
)
from hw.host_driver import BridgeError, CoreError, SwatFpga, encode_s, run_gemm_fpga
from hw.port_slice import PortSlice

DIVISOR = 4


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


@pytest.mark.parametrize("c_read_latency, result_logs", [(1, False), (3, False), (3, True)])
def test_gemm_roundtrip_standin(c_read_latency, result_logs):
    """C words read back right whatever the core's read latency (the bridge waits for it),
    from one C buffer (protocol 1) or gathered from scrambled result logs (protocol 2)."""
    standin_port = make_port(StandInCore(c_read_latency=c_read_latency, result_logs=result_logs))
    rng = np.random.default_rng(1)
    d = rng.integers(-128, 128, (3, 5))
    s = rng.integers(-128, 128, (5, 4)) * (rng.random((5, 4)) < 0.5)
    res = run_gemm_fpga(standin_port, d, s)
    assert res.c.dtype == np.int32
    np.testing.assert_array_equal(res.c, d.astype(np.int64) @ s.astype(np.int64))
    assert res.macs == 3 * np.count_nonzero(s)
    assert res.cycles > 0 and res.tiles == 1


@pytest.mark.parametrize("result_logs", [False, True])
def test_gemm_tiled_standin(result_logs):
    """Buffers too small for the GEMM: the driver splits it over M, N and K."""
    port = make_port(StandInCore(d_depth=8, s_depth=16, c_depth=4, result_logs=result_logs))
    rng = np.random.default_rng(2)
    d = rng.integers(-128, 128, (3, 9))  # 2 M tiles (c_depth 4 / d_depth 8 per 2-row group)
    s = rng.integers(-128, 128, (9, 2)) * (rng.random((9, 2)) < 0.6)  # 2 K tiles
    s[0, 0] = -128
    res = run_gemm_fpga(port, d, s)
    np.testing.assert_array_equal(res.c, d.astype(np.int64) @ s.astype(np.int64))
    assert res.tiles >= 3


def test_result_logs_protocol():
    """Protocol 2: INFO says version 2, RESULTS counts each log's entries, READ_C reaches every
    log (bank above the index), and its range is the whole bank space."""
    port = make_port(StandInCore(result_logs=True, c_read_latency=3))
    fpga = SwatFpga(port)
    assert fpga.info().version == 2 and fpga.core.c_word_bytes == 8 + 1  # 2 lanes + 5-bit addr
    assert fpga.results() == [0, 0]
    d = np.arange(-3, 3).reshape(2, 3)
    s = np.array([[1, 0, 2], [0, -1, 3], [4, 5, 0]])
    np.testing.assert_array_equal(run_gemm_fpga(port, d, s).c, d @ s)
    counts = fpga.results()
    assert sorted(counts) == [1, 2]  # 3 items (one M tile x 3 columns) over 2 logs
    lanes, addrs = fpga.read_log(counts.index(2), 2)
    assert len(set(addrs)) == 2 and set(addrs) < {0, 1, 2}
    np.testing.assert_array_equal(lanes, (d @ s)[:, addrs].T)  # C word n = column n
    port.write(bytes([OP_READ_C]) + struct.pack("<HH", 63, 2))  # 2 logs x 32: 63 + 2 > 64
    assert port.read(1) == bytes([ERR_RANGE])
    fpga.nop()


def test_results_is_unknown_without_logs(standin_port):
    standin_port.write(bytes([OP_RESULTS]))
    assert standin_port.read(1) == bytes([ERR_OPCODE])


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
    from hw.core import SwatCore

    return SwatCore(**kw)


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


# -- the bridge behind a register slice on ctrl (hw.port_slice) ---------------------------

class _SlicedBridge(Elaboratable):
    """The bridge with its ``ctrl`` behind a ``stages``-deep PortSlice, bytes straight on its
    streams (no UART: a command can follow the last one's reply within a cycle)."""

    def __init__(self, stages, ctrl_delay):
        self.core = StandInCore(latency=30)
        self.bridge = HostBridge(self.core.signature, rows=2, cols=2, d_depth=64, s_depth=64,
                                 c_depth=32, timeout=1000, ctrl_delay=ctrl_delay)
        self.slice = PortSlice(self.core.signature.members["ctrl"].signature, stages=stages)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core, m.submodules.bridge = self.core, self.bridge
        m.submodules.slice = self.slice
        for name in ("d_write", "s_write", "c_read"):
            wiring.connect(m, getattr(self.bridge, name), getattr(self.core, name))
        wiring.connect(m, self.slice.inner, self.core.ctrl)
        wiring.connect(m, self.bridge.ctrl, self.slice.outer)
        return m


@pytest.mark.parametrize("ctrl_delay", [4, 0])
def test_status_right_after_start_behind_a_slice(ctrl_delay):
    """START, then STATUS the cycle its reply has left, with the core's ``ctrl`` four registers
    away each way: told the delay (``ctrl_delay``), the bridge reports the new operation busy
    and not done; not told, it reports the last operation's ``done`` (the host would take the
    new operation as finished: what ``ctrl_delay`` is for)."""
    top = _SlicedBridge(stages=4, ctrl_delay=ctrl_delay)
    bridge = top.bridge
    replies = []

    async def command(ctx, opcode, nbytes):
        ctx.set(bridge.rx.payload, opcode)
        ctx.set(bridge.rx.valid, 1)
        while not ctx.get(bridge.rx.ready):
            await ctx.tick()
        await ctx.tick()
        ctx.set(bridge.rx.valid, 0)
        reply = []
        while len(reply) < nbytes:
            if ctx.get(bridge.tx.valid):
                reply.append(ctx.get(bridge.tx.payload))
            await ctx.tick()
        return reply

    async def tb(ctx):
        ctx.set(bridge.tx.ready, 1)
        assert await command(ctx, OP_START, 1) == [ST_OK]  # s_len 0: an error, soon done
        for _ in range(100):
            await ctx.tick()
        first = await command(ctx, OP_STATUS, STATUS_BYTES)
        assert first[1] & 3 == 2  # done, not busy
        assert await command(ctx, OP_START, 1) == [ST_OK]
        replies.append(await command(ctx, OP_STATUS, STATUS_BYTES))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(top.core.behaviour, background=True)
    sim.add_testbench(tb)
    sim.run()
    busy, done = replies[0][1] & 1, replies[0][1] >> 1 & 1
    assert (busy, done) == ((1, 0) if ctrl_delay else (0, 1))


@pytest.mark.parametrize("kwargs,message", [
    (dict(d_depth=70000), "d_depth must be in 1..65535, not 70000"),
    (dict(ctrl_delay=-1), "HostBridge: ctrl_delay must be >= 0, not -1"),
])
def test_bridge_parameters(kwargs, message, assert_refused):
    """(The sizes and ``ctrl_delay`` are checked before the core's other members are looked
    at: ``ctrl`` is all the signature needs here.)"""
    core = wiring.Signature({"ctrl": Out(ControlSignature(7))})
    sizes = {**dict(rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32), **kwargs}
    assert_refused(lambda: HostBridge(core, **sizes), ValueError, message)


def test_system_with_a_refused_core_size(assert_refused):
    """SwatCore refusing a size inside ``SwatSystem.__init__`` leaves neither half-made object
    to warn "created but never used"."""
    assert_refused(lambda: SwatSystem(divisor=DIVISOR, rows=0), ValueError,
                   "SwatCore: rows must be >= 1, not 0")


class _RefBridge(HostBridge):
    """The bridge as the iCE40 builds it (its platform's ``family``, all the bridge reads of a
    platform): ``txbuf``'s enable ``tload | shift`` through a LUT, its select ``tload``, the
    shape registers' enable ``DISPATCH & shape_ok``."""

    def elaborate(self, platform):
        assert platform is None  # the simulator's
        return super().elaborate(SimpleNamespace(family="ice40"))


class _BridgePair(Elaboratable):
    """Two bridges on the same inputs (the test drives both)."""

    def __init__(self, new, ref):
        self.new, self.ref = new, ref

    def elaborate(self, platform):
        m = Module()
        m.submodules.new, m.submodules.ref = self.new, self.ref
        return m


def _command_bytes(rng, *, rows, result_logs, d_depth, c_space):
    """One random command frame (now and then an unknown opcode, out-of-range arguments, or a
    frame cut short for the timeout: ``None`` marks a pause longer than the timeout)."""
    ops = [OP_NOP, OP_INFO, OP_WRITE_D, OP_WRITE_S, OP_READ_C, OP_SET_SHAPE, OP_START, OP_STATUS,
           OP_STATUS, OP_READ_C, OP_INFO, 0x55]
    if result_logs:
        ops += [OP_RESULTS, OP_RESULTS]
    op = int(rng.choice(ops))
    frame = [op]
    if op in (OP_WRITE_D, OP_WRITE_S, OP_READ_C):
        space = c_space if op == OP_READ_C else d_depth
        count = int(rng.integers(0, 4))
        addr = int(rng.integers(0, space - count + 1)) if rng.random() < 0.9 else space
        frame += list(struct.pack("<HH", addr, count))
        if op != OP_READ_C:
            frame += [int(b) for b in rng.integers(0, 256, count * (rows if op == OP_WRITE_D
                                                                    else 4))]
    elif op == OP_SET_SHAPE:  # m, k, n, s_len
        frame += [int(b) for b in rng.integers(0, 256, 6)] + list(struct.pack(
            "<H", int(rng.integers(0, 80))))
    if len(frame) > 1 and rng.random() < 0.05:  # cut short
        frame = frame[:int(rng.integers(1, len(frame)))] + [None]
    return frame


def _core(result_logs):
    """A core signature of StandInCore's sizes, and the bridge's size arguments for it."""
    rows, cols, d_depth, s_depth, c_depth = 2, 2, 64, 64, 32  # StandInCore's
    if result_logs:
        c_read = ReadPort.Signature(addr_width=6, shape=rows * 32 + 5)
        ctrl = ControlSignature(7, logs=cols, count_width=6)
    else:
        c_read, ctrl = ReadPort.Signature(addr_width=5, shape=rows * 32), ControlSignature(7)
    core = wiring.Signature({
        "d_write": Out(WritePort.Signature(addr_width=6, shape=rows * 8)),
        "s_write": Out(WritePort.Signature(addr_width=6, shape=32)),
        "c_read": Out(c_read), "ctrl": Out(ctrl)})
    return core, dict(rows=rows, cols=cols, d_depth=d_depth, s_depth=s_depth, c_depth=c_depth)


def _bridges_every_cycle(seed, *, result_logs, c_read_latency, ctrl_delay, cycles=6000,
                         new_cls=HostBridge):
    """Random command frames, rx gaps, tx stalls and core inputs: every output port of
    ``new_cls`` equals the reference's (``_RefBridge``) in every cycle. Returns the reply bytes
    sent."""
    rng = np.random.default_rng(seed)
    core, kw = _core(result_logs)
    rows = kw["rows"]
    kw.update(timeout=60, c_read_latency=c_read_latency, ctrl_delay=ctrl_delay)
    new, ref = new_cls(core, **kw), _RefBridge(core, **kw)
    members = list(new.signature.flatten(new))
    outs = [path for path, mem, _ in members if mem.flow == wiring.Out]
    ins = [(path, len(v)) for path, mem, v in members
           if mem.flow == wiring.In and path not in (("rx", "valid"), ("rx", "payload"))]
    sent = []

    def at(obj, path):
        for part in path:
            obj = obj[part] if isinstance(part, int) else getattr(obj, part)
        return obj

    async def tb(ctx):
        queue, byte, pause = [], None, 0
        for cyc in range(cycles):
            if byte is None and pause:
                pause -= 1
            elif byte is None and not queue:  # the next frame, after a gap
                queue = _command_bytes(rng, rows=rows, result_logs=result_logs,
                                       d_depth=kw["d_depth"], c_space=new.c_space)
                pause = int(rng.integers(0, 30))
            elif byte is None and rng.random() < 0.5:
                byte = queue.pop(0)
                if byte is None:  # longer than the timeout
                    pause = 100
            values = {("rx", "valid"): byte is not None, ("rx", "payload"): byte or 0}
            for path, width in ins:
                if path == ("tx", "ready"):
                    values[path] = rng.random() < 0.7
                elif width == 1:
                    values[path] = rng.random() < (0.02 if path[0].startswith("rx_") else 0.5)
                else:
                    values[path] = int(rng.integers(0, 1 << min(width, 62)))
            for x in (new, ref):
                for path, v in values.items():
                    ctx.set(at(x, path), int(v))
            for path in outs:
                assert ctx.get(at(new, path)) == ctx.get(at(ref, path)), (path, cyc)
            if ctx.get(new.tx.valid) and values[("tx", "ready")]:
                sent.append(ctx.get(new.tx.payload))
            if byte is not None and ctx.get(new.rx.ready):
                byte = None
            await ctx.tick()

    sim = Simulator(_BridgePair(new, ref))
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return sent


@pytest.mark.parametrize("seed,result_logs,c_read_latency,ctrl_delay", [
    (0, False, 1, 0), (1, True, 3, 0), (2, True, 1, 2), (3, False, 3, 1)])
def test_registered_tx_every_cycle(seed, result_logs, c_read_latency, ctrl_delay):
    """``txbuf``'s enable and load select from registers computed a cycle ahead (per part of
    ``txbuf``), and the shape registers' enable a register, against ``tload | shift``,
    ``tload`` and ``DISPATCH & shape_ok``: every output port every cycle under random commands
    (every reply kind, C reads of several words, SET_SHAPE), gaps, timeouts and stalls."""
    sent = _bridges_every_cycle(seed, result_logs=result_logs, c_read_latency=c_read_latency,
                                ctrl_delay=ctrl_delay)
    assert len(sent) > 1000


def test_reference_is_the_other_form():
    """The reference has no ``txbuf`` enable or select registers, the bridge under test has
    them: the every-cycle comparison compares the two forms."""
    core, kw = _core(result_logs=False)
    names = [{w.split()[-1] for w in rtlil.convert(cls(core, **kw)).splitlines()
              if w.strip().startswith("wire ")} for cls in (HostBridge, _RefBridge)]
    copies = {"\\tx_ce0", "\\tx_ce1", "\\tx_sel0_n"}
    assert copies <= names[0]
    assert not copies & names[1]


def test_bridges_every_cycle_can_fail():
    """The comparison sees a difference in one byte deep in ``txbuf`` (INFO's last)."""

    class LastInfoByte(HostBridge):
        def info_value(self):
            return super().info_value() ^ (1 << 8 * (INFO_BYTES - 1))

    with pytest.raises(AssertionError, match="payload"):
        _bridges_every_cycle(0, result_logs=False, c_read_latency=1, ctrl_delay=0,
                             new_cls=LastInfoByte)
