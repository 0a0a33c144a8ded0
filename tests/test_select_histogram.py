"""RTL tests of ``hw.select_histogram.MagnitudeHistogram``: the scan result equals
``sw.int_topk.threshold_int`` for random tensors and targets, with random valid gaps on
``count`` and ready gaps on ``result``; the scan leaves the bins clear; an aborted pass is
forgotten."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.select_histogram import MagnitudeHistogram
from hw.select_layouts import BINS
from sim.tb.select_beats import framed_beats
from sw import int_topk


@pytest.mark.parametrize("lanes", [1, 4, 8])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_threshold_like_reference(lanes, stall):
    dut = MagnitudeHistogram(lanes)
    rng = random.Random(lanes + int(stall * 10))
    nrng = np.random.default_rng(lanes)
    checked = []

    async def count(ctx, beats, stop_after=None):
        pos, pending = 0, False
        while pos < len(beats) and pos != stop_after:
            valid = pending or rng.random() >= stall
            ctx.set(dut.count.valid, valid)
            ctx.set(dut.count.payload.as_value(), beats[pos])
            pending = valid
            if valid and ctx.get(dut.count.ready):
                pos += 1
                pending = False
            await ctx.tick()
        ctx.set(dut.count.valid, 0)

    async def scan(ctx, keep):
        ctx.set(dut.scan.payload, keep)
        ctx.set(dut.scan.valid, 1)
        cycles = 0
        while True:
            ready = rng.random() >= stall
            ctx.set(dut.result.ready, ready)
            taken = ctx.get(dut.scan.ready)
            if ready and ctx.get(dut.result.valid):
                res = (ctx.get(dut.result.payload.threshold), ctx.get(dut.result.payload.ties))
                await ctx.tick()
                ctx.set(dut.result.ready, 0)
                return res, cycles
            await ctx.tick()
            if taken:
                ctx.set(dut.scan.valid, 0)
            cycles += 1
            assert cycles < 4 * BINS

    async def bench(ctx):
        for kind in ["uniform", "narrow", "extreme", "zeros", "uniform", "narrow"]:
            n = int(nrng.integers(1, 60))
            if kind == "uniform":
                q = nrng.integers(-128, 128, n)
            elif kind == "narrow":
                q = nrng.integers(-3, 4, n)
            elif kind == "extreme":
                q = nrng.choice([-128, 127, 0, 1], n)
            else:
                q = np.zeros(n, dtype=np.int64)
            # an aborted partial pass first: its counts must not leak into the next one
            junk = framed_beats(nrng.integers(-128, 128, 3 * lanes), lanes)
            await count(ctx, junk, stop_after=2)
            ctx.set(dut.abort, 1)
            await ctx.tick()
            ctx.set(dut.abort, 0)
            beats = framed_beats(q, lanes)
            await count(ctx, beats)
            for keep in (int(nrng.integers(0, n + 1)),):
                (t, ties), cycles = await scan(ctx, keep)
                assert (t, ties) == int_topk.threshold_int(q, keep), (kind, q, keep)
                if stall == 0.0:
                    assert cycles == BINS + 5  # 2 drain, 129 bins, read + sum latency, result
            checked.append(kind)
        # the scan cleared every bin: a fresh single-element pass
        await count(ctx, framed_beats([5], lanes))
        assert (await scan(ctx, 1))[0] == (5, 1)
        checked.append("clear")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == 7
