"""FitCheck in the Amaranth simulator: ``bad`` and ``mtiles`` equal the multiplying formula on
shapes around every boundary (8-tile strides, single tiles, zero dimensions), and the check
ends within ``mtiles//8 + mtiles%8 + 2`` cycles."""

import pytest
from amaranth.sim import Simulator

from hw.fit_check import FitCheck


def _expected(m, k, n, rows, d_depth, c_depth):
    mt = -(-m // rows)
    bad = m == 0 or k == 0 or n == 0 or mt * k > d_depth or mt * n > c_depth
    return bad, mt


@pytest.mark.parametrize("rows,d_depth,c_depth", [(1, 20, 64), (3, 51, 17), (8, 4608, 512)])
def test_matches_formula(rows, d_depth, c_depth):
    dut = FitCheck(rows=rows, d_depth=d_depth, c_depth=c_depth)
    shapes = [(m, k, n) for m in (0, 1, rows, rows + 1, 7 * rows, 8 * rows, 8 * rows + 1,
                                  17 * rows - 1, 64 * rows, 65535)
              for k in (0, 1, 3, d_depth // 8, d_depth) for n in (0, 1, 4, c_depth // 9)]
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        for m, k, n in shapes:
            ctx.set(dut.m, m), ctx.set(dut.k, k), ctx.set(dut.n, n), ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            bad, mt = _expected(m, k, n, rows, d_depth, c_depth)
            limit = mt // 8 + mt % 8 + 2
            for cyc in range(limit + 1):  # noqa: B007
                if not ctx.get(dut.busy):
                    break
                await ctx.tick()
            assert not ctx.get(dut.busy), (m, k, n)
            assert cyc <= limit
            assert ctx.get(dut.bad) == bad, (m, k, n)
            if not bad:
                assert ctx.get(dut.mtiles) == mt, (m, k, n)

    sim.add_testbench(tb)
    sim.run()


def test_parameters(assert_refused):
    assert_refused(lambda: FitCheck(rows=0, d_depth=4, c_depth=4), ValueError,
                   "FitCheck: rows must be >= 1, not 0")
