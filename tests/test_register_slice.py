"""The stream register slice: every beat passes once and in order under random stalls on both
sides, and its handshake outputs are registers (they do not follow the other side's inputs
within a cycle)."""

import random

from amaranth.sim import Simulator

from hw.register_slice import RegisterSlice


def test_beats_pass_in_order_under_stalls():
    dut = RegisterSlice(8)
    data = list(range(1, 200, 3))
    got = []
    rng = random.Random(5)

    async def producer(ctx):
        for byte in data:
            while rng.random() < 0.4:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while len(got) < len(data):
            ready = rng.random() < 0.6
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                got.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(2e-3)
    assert got == data


def test_handshake_outputs_are_registered():
    dut = RegisterSlice(8)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.payload, 0x5A)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()  # the slice takes the beat
        ctx.set(dut.i.valid, 0)
        for o_ready in (0, 1):  # o.ready alone does not move i.ready or o.valid this cycle
            ctx.set(dut.o.ready, o_ready)
            seen.append((ctx.get(dut.i.ready), ctx.get(dut.o.valid), ctx.get(dut.o.payload)))
        await ctx.tick()
        seen.append((ctx.get(dut.i.ready), ctx.get(dut.o.valid)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(0, 1, 0x5A), (0, 1, 0x5A), (1, 0)]
