"""RTL tests of ``hw.select_command_check.CommandCheck``: ``rows * cols`` by shift-and-add and
the first failing argument check, in the documented order and latency, for edge and random
commands, with and without the source-index side band (``by_index``)."""

import random

import pytest
from amaranth.sim import Simulator

from hw.select_command_check import CommandCheck
from hw.select_layouts import BINS, ErrorCode, Mode

DEPTH = 40


def expected_error(mode, rows, cols, keep, threshold, held_valid, by_index=0, indexed=False):
    n = rows * cols
    if rows == 0 or cols == 0:
        return ErrorCode.SHAPE
    if mode in (Mode.FULL, Mode.THRESHOLD) and keep > n:
        return ErrorCode.KEEP
    if mode != Mode.THRESHOLD and cols + 4 > DEPTH:
        return ErrorCode.OVERFLOW
    if mode == Mode.HELD and not held_valid:
        return ErrorCode.NO_THRESHOLD
    if mode == Mode.GIVEN and threshold > BINS - 1:
        return ErrorCode.BAD_THRESHOLD
    if by_index and mode in (Mode.HELD, Mode.GIVEN) and not indexed:
        return ErrorCode.NO_INDEX
    return ErrorCode.NONE


@pytest.mark.parametrize("indexed", [False, True])
def test_elements_and_checks(indexed):
    dut = CommandCheck(DEPTH, indexed=indexed)
    rng = random.Random(3)
    cases = [(Mode.FULL, 0xFFFF, 0xFFFF, 0, 0, 0), (Mode.FULL, 0, 5, 0, 0, 0),
             (Mode.GIVEN, 3, 0, 0, 0, 1), (Mode.FULL, 3, 5, 16, 0, 0),
             (Mode.THRESHOLD, 3, 5, 15, 0, 0), (Mode.HELD, 3, 37, 0, 0, 1),
             (Mode.THRESHOLD, 3, 37, 1, 0, 0), (Mode.HELD, 2, 2, 0, 0, 0),
             (Mode.GIVEN, 2, 2, 0, 129, 0), (Mode.GIVEN, 2, 2, 0, 128, 0),
             (Mode.HELD, 1, 36, 0, 0, 1)]
    cases = [c + (0,) for c in cases] + [(Mode.GIVEN, 2, 2, 0, 3, 0, 1),
                                         (Mode.HELD, 2, 2, 0, 0, 1, 1),
                                         (Mode.FULL, 2, 2, 1, 0, 0, 1)]
    for _ in range(30):
        rows, cols = rng.choice([0, 1, 7, 300, 0xFFFF]), rng.choice([0, 1, 9, 36, 37, 1000])
        cases.append((Mode(rng.randrange(4)), rows, cols, rng.randrange(rows * cols + 3),
                      rng.randrange(256), rng.randrange(2), rng.randrange(2)))
    checked = []

    async def bench(ctx):
        for mode, rows, cols, keep, threshold, held_valid, by_index in cases:
            cmd = dut.command
            for field, value in ((cmd.mode, mode), (cmd.rows, rows), (cmd.cols, cols),
                                 (cmd.keep, keep), (cmd.given.threshold, threshold),
                                 (cmd.by_index, by_index)):
                ctx.set(field, value)
            ctx.set(dut.held_valid, held_valid)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.command.as_value(), 0)  # sampled at start: later changes do not count
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            assert cycles == rows.bit_length() + 2
            assert ctx.get(dut.elements) == rows * cols
            expect = expected_error(mode, rows, cols, keep, threshold, held_valid, by_index,
                                    indexed)
            assert ctx.get(dut.error) == expect, (mode, rows, cols, keep, threshold)
            checked.append(expect)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    never = {ErrorCode.SHORT, ErrorCode.LONG} | ({ErrorCode.NO_INDEX} if indexed else set())
    assert set(checked) == set(ErrorCode) - never
