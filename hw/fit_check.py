"""``FitCheck``: does a GEMM shape fit the core's D and C buffers? (loader error 8)

The D buffer needs ``ceil(M/rows) · K`` words and the C buffer ``ceil(M/rows) · N`` (one word
per work item). Instead of multipliers the check counts M-tiles: eight at a time while all
eight of the next tiles are needed, then one at a time, adding ``8K``/``8N`` (or ``K``/``N``)
to registered sums that are compared with the (constant) depths; it stops as soon as a sum
exceeds its depth. ``rows`` need not be a power of two; ``mtiles = ceil(M/rows)`` falls out
of the same loop. It runs beside the loader's header reads.

Latency: ``busy`` falls at most ``mtiles//8 + mtiles%8 + 2`` cycles after ``start`` (earlier
when a buffer overflows or a dimension is zero). Throughput: one check per ``start``.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import check_int

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
        rows_left = Signal(signed(18))  # rows of M not yet covered by counted tiles
        d_words = Signal(range(self.d_depth + STRIDE * 65536))  # tiles * K, stops above depth
        c_words = Signal(range(self.c_depth + STRIDE * 65536))  # tiles * N
        with m.If(self.start):
            m.d.sync += [
                k.eq(self.k), n.eq(self.n), rows_left.eq(self.m), d_words.eq(0),
                c_words.eq(0), self.mtiles.eq(0), self.busy.eq(1),
                self.bad.eq((self.m == 0) | (self.k == 0) | (self.n == 0)),
            ]
        with m.Elif(self.busy):
            # registered sums compared with constants; additions steered by constant compares
            with m.If(self.bad | (d_words > self.d_depth) | (c_words > self.c_depth)):
                m.d.sync += [self.bad.eq(1), self.busy.eq(0)]
            with m.Elif(rows_left <= 0):
                m.d.sync += self.busy.eq(0)
            with m.Elif(rows_left > (STRIDE - 1) * rows):  # the next STRIDE tiles are needed
                m.d.sync += [rows_left.eq(rows_left - STRIDE * rows),
                             d_words.eq(d_words + k * STRIDE), c_words.eq(c_words + n * STRIDE),
                             self.mtiles.eq(self.mtiles + STRIDE)]
            with m.Else():
                m.d.sync += [rows_left.eq(rows_left - rows), d_words.eq(d_words + k),
                             c_words.eq(c_words + n), self.mtiles.eq(self.mtiles + 1)]
        return m
