"""Cuts the threshold-select input stream into passes and checks each pass's length.

A pass is ``rows * cols`` elements, ``lanes`` a beat; the beat holding the last element must
carry ``last`` and no other beat may. :class:`BeatFramer` marks which lanes of a beat hold
elements (the last beat may be partial), which beat ends the pass, and reports a beat whose
``last`` flag disagrees as a SHORT or LONG stream instead of passing it on.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .select_layouts import ErrorCode, beat_layout, framed_layout

__all__ = ["BeatFramer"]


class BeatFramer(wiring.Component):
    """Length framing and ``last`` check of the input stream.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    index_width : int
        Bits of the per-lane source index carried along (0: none).

    Members
    -------
    i : ``In(stream.Signature(beat_layout(lanes, index_width)))``
        The producer's beats.
    o : ``Out(stream.Signature(framed_layout(lanes, index_width)))``
        Checked beats of the current pass (combinational pass-through, no added latency).
    load : ``In(1)``, elements : ``In(32)``
        A pulse on ``load`` starts a pass of ``elements`` elements (``>= 1``).
    enable : ``In(1)``
        Pass beats from ``i`` to ``o``; otherwise ``i.ready = 0``.
    discard : ``In(1)``
        Accept and drop every beat (after an error, so that the producer never hangs).
    length_error : ``Out(ErrorCode)``
        While ``enable`` and ``i.valid``: ``SHORT`` when the beat has ``last`` but the pass
        needs more elements, ``LONG`` when it holds the pass's last element without ``last``,
        ``NONE`` otherwise. Such a beat is not passed on.
    """

    def __init__(self, lanes, index_width=0):
        self.lanes, self.index_width = lanes, index_width
        super().__init__({
            "i": In(stream.Signature(beat_layout(lanes, index_width))),
            "o": Out(stream.Signature(framed_layout(lanes, index_width))),
            "load": In(1),
            "elements": In(32),
            "enable": In(1),
            "discard": In(1),
            "length_error": Out(ErrorCode),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        elements_left = Signal(33)  # elements of the pass not yet passed on
        final_beat = Signal()
        m.d.comb += final_beat.eq(elements_left <= lanes)
        last_matches = Signal()
        m.d.comb += last_matches.eq(self.i.payload.last == final_beat)

        m.d.comb += [
            self.o.payload.data.eq(self.i.payload.data),
            self.o.payload.lane_valid.eq(Cat(*[elements_left > j for j in range(lanes)])),
            self.o.payload.final.eq(final_beat),
            self.o.valid.eq(self.enable & self.i.valid & last_matches),
            self.i.ready.eq(self.discard | (self.enable & self.o.ready)),
        ]
        if self.index_width:
            m.d.comb += self.o.payload.index.eq(self.i.payload.index)
        with m.If(self.enable & self.i.valid & ~last_matches):
            with m.If(final_beat):
                m.d.comb += self.length_error.eq(ErrorCode.LONG)
            with m.Else():
                m.d.comb += self.length_error.eq(ErrorCode.SHORT)

        with m.If(self.load):
            m.d.sync += elements_left.eq(self.elements)
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += elements_left.eq(elements_left - lanes)
        return m
