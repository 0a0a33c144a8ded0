"""UART 8N1 receiver and transmitter with ``lib.stream`` byte interfaces (Amaranth 0.5).

``divisor`` is the number of ``sync`` clock cycles per bit (``clk_hz // baud``); it is a
construction-time constant. The receiver synchronises ``rx`` with two flip-flops, waits for a
start bit that is still low half a bit later, then samples every bit in its middle. A byte whose
stop bit reads low is dropped and counted as a framing error; a byte that arrives while the
previous one has not been taken is dropped and counted as an overrun. Both flags are sticky until
``clear`` is pulsed.

Every enable, clear and handshake here comes from a register through at most one LUT, because a
board top spreads the UART and the bridge apart and their control was a ULX3S critical path
(``bitstreams/ulx3s/analysis.md``): the bit timers count down to -1 and their sign bit is the
tick (no ``timer == 0`` compare), and the transmitter's ``i.ready`` is an ``idle`` register.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from .params import rejected_unused

__all__ = ["UARTRx", "UARTTx", "divisor_for"]


def _bit_timer(divisor: int) -> Signal:
    """A down-counter for up to ``divisor`` cycles: loaded with ``n - 2``, its sign bit (``[-1]``)
    rises ``n`` cycles after the load, one cycle after it read 0."""
    return Signal(range(-1, divisor))


def divisor_for(clk_hz: float, baud: int) -> int:
    """Clocks per bit for ``baud`` at ``clk_hz``, rounded; raises if the rate error exceeds 2 %."""
    div = round(clk_hz / baud)
    if div < 4:
        raise ValueError(f"{clk_hz} Hz is too slow for {baud} baud (divisor {div} < 4)")
    err = abs(clk_hz / div - baud) / baud
    if err > 0.02:
        raise ValueError(f"{baud} baud at {clk_hz} Hz is off by {err:.1%}")
    return div


class UARTTx(wiring.Component):
    """8N1 transmitter. ``i`` is a byte stream; ``tx`` idles high."""

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, divisor: int):
        if divisor < 2:
            raise ValueError("divisor must be at least 2")
        self.divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        reload = self.divisor - 2
        timer = _bit_timer(self.divisor)
        bits = Signal(10, init=0x3FF)  # stop, data[7:0], start; LSB goes out first
        left = Signal(range(11))  # bits still to finish, this one included
        idle = Signal(init=1)  # left == 0, as a register

        m.d.comb += [
            self.tx.eq(bits[0]),
            self.busy.eq(~idle),
            self.i.ready.eq(idle),
        ]
        with m.If(idle):
            with m.If(self.i.valid):
                m.d.sync += [
                    bits.eq((self.i.payload << 1) | (1 << 9)),
                    left.eq(10),
                    timer.eq(reload),
                    idle.eq(0),
                ]
        with m.Else():
            with m.If(timer[-1]):
                m.d.sync += [
                    bits.eq((bits >> 1) | (1 << 9)),
                    left.eq(left - 1),
                    timer.eq(reload),
                    idle.eq(left == 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """8N1 receiver. ``o`` is a byte stream (one-byte buffer, no back-pressure on the line)."""

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError("divisor must be at least 4")
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "overrun": Out(1),
            "frame_error": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        reload = self.divisor - 2
        timer = _bit_timer(self.divisor)
        tick = timer[-1]
        shreg = Signal(8)
        nbit = Signal(range(9))
        data = Signal(8)
        full = Signal()
        m.d.comb += [self.o.payload.eq(data), self.o.valid.eq(full)]
        with m.If(self.o.ready):
            m.d.sync += full.eq(0)
        with m.If(self.clear):
            m.d.sync += [self.overrun.eq(0), self.frame_error.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self.divisor // 2 - 2)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    with m.If(rx):  # glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(reload), nbit.eq(0)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [
                        shreg.eq(Cat(shreg[1:], rx)),
                        timer.eq(reload),
                        nbit.eq(nbit + 1),
                    ]
                    with m.If(nbit == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(rx):
                        with m.If(full & ~self.o.ready):
                            m.d.sync += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [data.eq(shreg), full.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("BREAK"):  # wait for the line to return high
                with m.If(rx):
                    m.next = "IDLE"
        return m
