"""UART 8N1 in simulation: loopback, framing error, overrun, divisor helper."""

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.uart import UARTRx, UARTTx, divisor_for


def _loopback(divisor, data):
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def producer(ctx):
        for byte in data:
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def consumer(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                got.append(payload)
        assert not ctx.get(rx.overrun) and not ctx.get(rx.frame_error)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(len(data) * 12 * divisor * 1e-6 + 1e-4)
    return got


@pytest.mark.parametrize("divisor", [4, 5, 13])
def test_loopback(divisor):
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0x3C]
    assert _loopback(divisor, data) == data


def _drive_bits(divisor, bits, *, read=True):
    """Drive line levels (whole bits, or ``(level, cycles)``) into a receiver."""
    rx = UARTRx(divisor)
    got = []
    flags = {}

    async def bench(ctx):
        ctx.set(rx.o.ready, int(read))
        for bit in bits:
            level, cycles = bit if isinstance(bit, tuple) else (bit, divisor)
            ctx.set(rx.rx, level)
            for _ in range(cycles):
                _, _, valid, payload = await ctx.tick().sample(rx.o.valid, rx.o.payload)
                if valid and read:
                    got.append(payload)
        for _ in range(4 * divisor):
            await ctx.tick()
        flags["overrun"] = ctx.get(rx.overrun)
        flags["frame_error"] = ctx.get(rx.frame_error)
        flags["valid"] = ctx.get(rx.o.valid)

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, flags


def _frame(byte, stop=1):
    return [0, *((byte >> i) & 1 for i in range(8)), stop]


def test_frame_error_drops_byte_and_recovers():
    bits = [1, 1, *_frame(0x5A, stop=0), 0, 0, 1, 1, *_frame(0xC3), 1, 1]
    got, flags = _drive_bits(4, bits)
    assert got == [0xC3]
    assert flags["frame_error"] == 1


def test_overrun_sets_flag():
    bits = [1, *_frame(0x11), 1, *_frame(0x22), 1, 1]
    got, flags = _drive_bits(4, bits, read=False)
    assert flags["overrun"] == 1
    assert flags["valid"] == 1


def test_short_glitch_is_not_a_start_bit():
    got, flags = _drive_bits(8, [1, (0, 2), 1, 1, *_frame(0x42), 1])
    assert got == [0x42]
    assert not flags["frame_error"]


def test_divisor_for():
    assert divisor_for(36e6, 115200) == 312
    assert divisor_for(100e6, 115200) == 868
    with pytest.raises(ValueError):
        divisor_for(1e6, 1_000_000)


@pytest.mark.parametrize("cls,divisor,message", [
    (UARTTx, 1, "divisor must be at least 2"),
    (UARTRx, 3, "divisor must be at least 4"),
])
def test_divisor_refused(cls, divisor, message, assert_refused):
    assert_refused(lambda: cls(divisor), ValueError, message)
