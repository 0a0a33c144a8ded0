"""RTL tests of ``hw.s_buffer.SBuffer``: host and select-unit writes land in the addressed
buffer and sub-bank, reads return them with latency 1 from the GEMM's buffer, the select unit's
writes wait (bank ready low) while the running GEMM reads their buffer or the host writes, and
the other buffer is written meanwhile; random valid gaps on the select stream."""

import random

import pytest
from amaranth.sim import Simulator

from hw.s_buffer import SBuffer

DEPTH = 32


@pytest.mark.parametrize("buffers,sub_banks", [(1, 1), (2, 1), (2, 4)])
def test_writes_reads_and_bank_ready(buffers, sub_banks):
    dut = SBuffer(depth=DEPTH, read_ports=2, buffers=buffers, sub_banks=sub_banks)
    rng = random.Random(buffers * 10 + sub_banks)
    layout = dut.select_write.payload.shape()
    row_w = layout["addr"].shape.elem_shape.width
    done = []

    def select_beat(buffer, words):
        """Payload int writing ``{addr: data}`` (at most one address per sub-bank)."""
        v = buffer << layout["bank"].offset
        for a, d in words.items():
            b = a % sub_banks
            v |= 1 << (layout["en"].offset + b)
            v |= (a // sub_banks) << (layout["addr"].offset + b * row_w)
            v |= d << (layout["data"].offset + 32 * b)
        return v

    async def read_all(ctx, buffer):
        ctx.set(dut.gemm_buffer, buffer)
        out = []
        for a in range(DEPTH):
            port = dut.read[a % 2]
            ctx.set(port.addr, a)
            await ctx.tick()
            out.append(ctx.get(port.data))
        return out

    async def bench(ctx):
        expect = {b: [None] * DEPTH for b in range(buffers)}
        # the host fills buffer 0
        for a in range(DEPTH):
            d = rng.getrandbits(32)
            ctx.set(dut.host_write.en, 1)
            ctx.set(dut.host_write.addr, a)
            ctx.set(dut.host_write.data, d)
            expect[0][a] = d
            await ctx.tick()
        ctx.set(dut.host_write.en, 0)
        # a GEMM runs on buffer 0: select writes to buffer 0 wait, to buffer 1 go through
        ctx.set(dut.gemm_buffer, 0)
        ctx.set(dut.gemm_busy, 1)
        ctx.set(dut.select_write.valid, 1)
        ctx.set(dut.select_write.payload.as_value(), select_beat(0, {0: 1}))
        for _ in range(3):
            assert not ctx.get(dut.select_write.ready)
            await ctx.tick()
        target = buffers - 1
        a = 0
        while a < DEPTH:
            run = {x: rng.getrandbits(32) for x in range(a, min(DEPTH, a + sub_banks))}
            ctx.set(dut.select_write.valid, 0)
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.select_write.valid, 1)
            ctx.set(dut.select_write.payload.as_value(), select_beat(target, run))
            host_now = rng.random() < 0.2  # the host has priority: the select waits
            ctx.set(dut.host_write.en, host_now)
            ctx.set(dut.host_write.addr, (1 - target) * (1 << (DEPTH - 1).bit_length()))
            if host_now:
                assert not ctx.get(dut.select_write.ready)
                expect[1 - target if buffers > 1 else 0][0] = ctx.get(dut.host_write.data)
                await ctx.tick()
                ctx.set(dut.host_write.en, 0)
            ready = ctx.get(dut.select_write.ready)
            assert ready == (buffers > 1)
            if not ready:
                break
            await ctx.tick()
            for x, d in run.items():
                expect[target][x] = d
            a += sub_banks
        ctx.set(dut.select_write.valid, 0)
        ctx.set(dut.gemm_busy, 0)
        if buffers == 1:  # one buffer: the select could write only now
            ctx.set(dut.select_write.valid, 1)
            ctx.set(dut.select_write.payload.as_value(), select_beat(0, {3: 77}))
            assert ctx.get(dut.select_write.ready)
            await ctx.tick()
            ctx.set(dut.select_write.valid, 0)
            expect[0][3] = 77
        for b in range(buffers):
            assert await read_all(ctx, b) == expect[b], b
        done.append(True)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert done == [True]


@pytest.mark.parametrize("kwargs,message", [
    ({"buffers": 3}, "SBuffer: buffers must be <= 2, not 3"),
    ({"sub_banks": 3}, "SBuffer: sub_banks must be a power of two dividing depth (32), not 3"),
    ({"sub_banks": 64}, "SBuffer: sub_banks must be a power of two dividing depth (32), not 64"),
])
def test_constructor_arguments(kwargs, message, assert_refused):
    assert_refused(lambda: SBuffer(**dict({"depth": DEPTH, "read_ports": 1}, **kwargs)),
                   ValueError, message)


def test_preloaded_memories_are_read():
    """``memories`` are the storage: a word set there is what a read port returns."""
    dut = SBuffer(depth=DEPTH, read_ports=1, buffers=2, sub_banks=2)
    row_bits = (DEPTH // 2 - 1).bit_length()

    async def bench(ctx):
        ctx.set(dut.memories[1].data[5 | 1 << row_bits], 0xABCD)  # word 11 of buffer 1
        assert dut.locate(11, 1) == (dut.memories[1], 5 | 1 << row_bits)
        mem, row = dut.locate(DEPTH - 2, 0)
        ctx.set(mem.data[row], 0x1234)
        ctx.set(dut.gemm_buffer, 1)
        ctx.set(dut.read[0].addr, 11)
        await ctx.tick()
        assert ctx.get(dut.read[0].data) == 0xABCD
        ctx.set(dut.gemm_buffer, 0)
        ctx.set(dut.read[0].addr, DEPTH - 2)
        await ctx.tick()
        assert ctx.get(dut.read[0].data) == 0x1234

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    with pytest.raises(ValueError, match=f"SBuffer: word {DEPTH} of buffer 0 is outside 2 x"):
        dut.locate(DEPTH)
