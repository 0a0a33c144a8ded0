"""A one-entry register slice for a ``lib.stream`` (Amaranth 0.5 has no stream buffer of its own).

``o.valid``, ``o.payload`` and ``i.ready`` are all registers, so neither side's handshake logic
reaches the other's: a slice between two blocks that the placer puts far apart (the board's
UART by its pins, the host bridge by the core) cuts every path between them into two registered
hops. It holds one beat and takes the next only once that one has left, so it passes at most
one beat every two cycles: the UART moves one byte every ``10 * divisor`` cycles.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """``i`` -> one register -> ``o``, for a payload of ``shape``."""

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        data = Signal.like(self.o.payload, reset_less=True)
        m.d.comb += [self.i.ready.eq(~full), self.o.valid.eq(full), self.o.payload.eq(data)]
        with m.If(full):
            with m.If(self.o.ready):
                m.d.sync += full.eq(0)
        with m.Elif(self.i.valid):
            m.d.sync += [full.eq(1), data.eq(self.i.payload)]
        return m
