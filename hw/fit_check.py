"""``FitCheck``: does a GEMM shape fit the core's D and C buffers? (loader error 8)

The D buffer needs ``ceil(M/rows) · K`` words and the C buffer ``ceil(M/rows) · N`` (one word
per work item). Instead of multipliers the check counts M-tiles: eight at a time while all
eight of the next tiles are needed, then one at a time, taking ``8K``/``8N`` (or ``K``/``N``)
from registered counts of the words left in each buffer; it stops as soon as one goes
negative. Every decision of the loop is a register's sign bit (no comparator in front of the
registers' enables: the iCE40 critical path). ``rows`` need not be a power of two;
``mtiles = ceil(M/rows)`` falls out of the same loop. It runs beside the loader's header reads.

Latency: ``busy`` falls at most ``mtiles//8 + mtiles%8 + 2`` cycles after ``start`` (earlier
when a buffer overflows or a dimension is zero). Throughput: one check per ``start``.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import check_int, rejected_unused

__all__ = ["FitCheck"]

#: M-tiles counted per cycle while all of them are needed
STRIDE = 8


class FitCheck(wiring.Component):
    """Multiplier-free buffer fit check of a GEMM shape.

    Parameters
    ----------
    rows : int
        M-tile height, >= 1.
    d_depth, c_depth : int
        Words of the D and C buffers, >= 2.

    Members
    -------
    start : In(1) — samples ``m``, ``k``, ``n`` and begins.
    m, k, n : In(16)
    busy : Out(1) — the check is running.
    bad : Out(1) — valid once ``busy`` is low: a dimension is zero or a buffer is too small.
    mtiles : Out(17) — ``ceil(m / rows)`` once ``busy`` is low and ``bad`` is not set.
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, rows: int, d_depth: int, c_depth: int):
        self.rows = check_int("FitCheck", "rows", rows, minimum=1)
        self.d_depth = check_int("FitCheck", "d_depth", d_depth, minimum=2)
        self.c_depth = check_int("FitCheck", "c_depth", c_depth, minimum=2)
        super().__init__({
            "start": In(1), "m": In(16), "k": In(16), "n": In(16),
            "busy": Out(1), "bad": Out(1), "mtiles": Out(17),
        })

    def elaborate(self, platform):
        m = Module()
        rows = self.rows
        k = Signal(16)
        n = Signal(16)
        # Every test of the loop is the sign bit of a register (no compare in front of the
        # enables): rows of M left minus 1 (<= 0 rows left), minus STRIDE*rows - rows + 1 (the
        # next STRIDE tiles are all needed), and the words left in the D and C buffers
        # (depth - tiles*K, depth - tiles*N; negative: the shape does not fit).
        big = (STRIDE - 1) * rows + 1
        rows_w = 19 + (big + STRIDE * rows).bit_length()
        left_m1 = Signal(signed(rows_w))   # rows_left - 1
        left_big = Signal(signed(rows_w))  # rows_left - big
        d_left = Signal(signed((self.d_depth + STRIDE * 65536).bit_length() + 1))
        c_left = Signal(signed((self.c_depth + STRIDE * 65536).bit_length() + 1))
        with m.If(self.start):
            m.d.sync += [
                k.eq(self.k), n.eq(self.n), left_m1.eq(self.m - 1), left_big.eq(self.m - big),
                d_left.eq(self.d_depth), c_left.eq(self.c_depth), self.mtiles.eq(0),
                self.busy.eq(1), self.bad.eq((self.m == 0) | (self.k == 0) | (self.n == 0)),
            ]
        with m.Elif(self.busy):
            with m.If(self.bad | d_left[-1] | c_left[-1]):
                m.d.sync += [self.bad.eq(1), self.busy.eq(0)]
            with m.Elif(left_m1[-1]):  # no rows left
                m.d.sync += self.busy.eq(0)
            with m.Elif(~left_big[-1]):  # the next STRIDE tiles are needed
                m.d.sync += [left_m1.eq(left_m1 - STRIDE * rows),
                             left_big.eq(left_big - STRIDE * rows),
                             d_left.eq(d_left - k * STRIDE), c_left.eq(c_left - n * STRIDE),
                             self.mtiles.eq(self.mtiles + STRIDE)]
            with m.Else():
                m.d.sync += [left_m1.eq(left_m1 - rows), left_big.eq(left_big - rows),
                             d_left.eq(d_left - k), c_left.eq(c_left - n),
                             self.mtiles.eq(self.mtiles + 1)]
        return m
