"""RTL tests of ``hw.select_framer.BeatFramer``: lane masks, end of pass, SHORT/LONG, discard,
the source-index side band passed through, with random valid gaps on the input and ready gaps
on the output."""

import random

import pytest
from amaranth.sim import Simulator

from hw.select_framer import BeatFramer
from hw.select_layouts import ErrorCode


def _beat(values, last):
    word = 0
    for j, v in enumerate(values):
        word |= (v & 0xFF) << (8 * j)
    return word | int(last) << (8 * len(values))


@pytest.mark.parametrize("lanes", [1, 3, 8])
@pytest.mark.parametrize("stall", [0.0, 0.4])
@pytest.mark.parametrize("index_width", [0, 5])
def test_passes_and_errors(lanes, stall, index_width):
    dut = BeatFramer(lanes, index_width)
    rng = random.Random(lanes * 7 + int(stall * 10))
    seen = []

    async def run_pass(ctx, elements, *, beats=None):
        """Feed one pass; returns (framed beats, error code, beats consumed)."""
        nbeats = -(-elements // lanes)
        if beats is None:
            beats = [_beat([rng.randint(-128, 127) for _ in range(lanes)], b == nbeats - 1)
                     | rng.getrandbits(lanes * index_width) << (8 * lanes + 1)
                     for b in range(nbeats)]
        ctx.set(dut.elements, elements)
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        ctx.set(dut.enable, 1)
        out, pos, pending, code = [], 0, False, ErrorCode.NONE
        while pos < len(beats):
            valid = pending or rng.random() >= stall
            ready = rng.random() >= stall
            ctx.set(dut.i.valid, valid)
            ctx.set(dut.i.payload.as_value(), beats[pos])
            ctx.set(dut.o.ready, ready)
            if valid and ctx.get(dut.length_error) != ErrorCode.NONE:
                code = ctx.get(dut.length_error)
                assert not ctx.get(dut.o.valid)
                break
            assert ctx.get(dut.o.valid) == valid
            pending = valid
            if valid and ctx.get(dut.i.ready):
                assert ready
                if index_width:
                    assert ctx.get(dut.o.payload.index.as_value()) == beats[pos] >> (8 * lanes + 1)
                out.append((ctx.get(dut.o.payload.lane_valid), ctx.get(dut.o.payload.final),
                            ctx.get(dut.o.payload.data.as_value())))
                pos += 1
                pending = False
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.enable, 0)
        return out, code, pos

    async def bench(ctx):
        for elements in [1, lanes, lanes + 1, 5 * lanes - 1, 17]:
            out, code, _ = await run_pass(ctx, elements)
            assert code == ErrorCode.NONE
            nbeats = -(-elements // lanes)
            assert len(out) == nbeats
            for b, (mask, final, _) in enumerate(out):
                in_pass = min(lanes, elements - b * lanes)
                assert mask == (1 << in_pass) - 1
                assert final == (b == nbeats - 1)
            seen.append(elements)
        # last too early, missing last, last on a beat of a longer pass
        short = [_beat([1] * lanes, b == 1) for b in range(2)]
        out, code, used = await run_pass(ctx, 3 * lanes, beats=short)
        assert (code, used) == (ErrorCode.SHORT, 1)
        long = [_beat([1] * lanes, False) for _ in range(3)]
        out, code, used = await run_pass(ctx, 2 * lanes, beats=long)
        assert (code, used) == (ErrorCode.LONG, 1)
        # discard: every beat accepted, nothing passed on, no error
        ctx.set(dut.discard, 1)
        ctx.set(dut.i.valid, 1)
        for _ in range(4):
            assert ctx.get(dut.i.ready) and not ctx.get(dut.o.valid)
            assert ctx.get(dut.length_error) == ErrorCode.NONE
            await ctx.tick()
        seen.append("discard")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen[-1] == "discard" and len(seen) == 6
