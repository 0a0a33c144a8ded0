"""Magnitude histogram and threshold scan of the threshold-select unit (pass 1).

Each lane owns a 129-bin histogram of ``|x|`` in block RAM and counts one element every cycle:
stage A reads the bin, stage B writes ``count + 1``; the read port is transparent to the write
port, which covers the one hazard (the same bin on consecutive cycles). The scan then reads bin
``b`` of every lane from 128 down to 0, writes 0 back (the scan doubles as the clear), sums the
lanes and stops at the first bin where the running count reaches ``keep``: that bin is the
threshold ``t`` and ``keep - count(|x| > t)`` the tie budget (``sw.int_topk.threshold_int``).
"""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .select_layouts import BINS, framed_layout, magnitude

__all__ = ["MagnitudeHistogram", "ThresholdLayout"]

#: Result of a scan.
ThresholdLayout = data.StructLayout({"threshold": unsigned(8), "ties": unsigned(32)})

COUNT_WIDTH = 32  # a bin counts up to rows * cols < 2**32 elements


class MagnitudeHistogram(wiring.Component):
    """Per-lane magnitude histograms with a threshold scan.

    Parameters
    ----------
    lanes : int
        Elements counted per cycle (one histogram RAM each).

    Members
    -------
    count : ``In(stream.Signature(framed_layout(lanes)))``
        Beats to count (lanes with ``lane_valid`` only). Ready every cycle except while the
        histogram scans or clears.
    scan : ``In(stream.Signature(32))``
        Request a scan for a target count ``keep`` (``<= `` the elements counted). Taken once
        the counting pipeline is empty; the scan takes ``BINS + 3`` cycles and leaves every bin
        at zero.
    result : ``Out(stream.Signature(ThresholdLayout))``
        ``(threshold, ties)`` of the scan, valid until taken.
    abort : ``In(1)``
        While counting (and no beat offered): forget the counts of the unfinished pass; the
        bins are cleared (``BINS`` cycles, during which ``count`` is not ready).
    busy : ``Out(1)``
        Scanning, clearing, holding a result or a count in the pipeline: not at rest (at rest,
        only the free-running pipeline registers change, towards a fixed point).
    """

    def __init__(self, lanes):
        self.lanes = lanes
        super().__init__({
            "count": In(stream.Signature(framed_layout(lanes))),
            "scan": In(stream.Signature(unsigned(32))),
            "result": Out(stream.Signature(ThresholdLayout)),
            "abort": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        read_ports, write_ports = [], []
        for j in range(lanes):
            m.submodules[f"bins{j}"] = bins = memory.Memory(
                shape=unsigned(COUNT_WIDTH), depth=BINS, init=[])
            write_ports.append(bins.write_port())
            read_ports.append(bins.read_port(transparent_for=(write_ports[-1],)))

        # counting pipeline: stage A holds the bin being read, stage B writes its count + 1
        read_lanes = Signal(lanes)
        read_bin = [Signal(8, name=f"read_bin{j}") for j in range(lanes)]
        incr_lanes = Signal(lanes)
        incr_bin = [Signal(8, name=f"incr_bin{j}") for j in range(lanes)]
        m.d.sync += [read_lanes.eq(0), incr_lanes.eq(read_lanes)]
        m.d.sync += [incr_bin[j].eq(read_bin[j]) for j in range(lanes)]
        with m.If(self.count.valid & self.count.ready):
            m.d.sync += read_lanes.eq(self.count.payload.lane_valid)
            m.d.sync += [read_bin[j].eq(magnitude(self.count.payload.data[j]))
                         for j in range(lanes)]
        pipeline_empty = Signal()
        m.d.comb += pipeline_empty.eq((read_lanes == 0) & (incr_lanes == 0))

        # scan: bin scan_bin is read; stage 1 (bin_read) clears it; stage 2 (bin_summed) adds
        keep = Signal(32)
        scan_bin = Signal(8)  # counts down from BINS - 1; wraps to 255 after bin 0
        bin_read_valid = Signal()
        bin_read = Signal(8)
        bin_summed_valid = Signal()
        bin_summed = Signal(8)
        lanes_sum = Signal(COUNT_WIDTH + ceil_log2(lanes + 1))
        count_above = Signal(33)  # elements counted in the bins above bin_summed
        found = Signal()
        m.d.sync += [
            bin_read_valid.eq(0), bin_summed_valid.eq(bin_read_valid), bin_summed.eq(bin_read),
            lanes_sum.eq(sum((rp.data for rp in read_ports), Const(0, lanes_sum.shape()))),
        ]
        clear_bin = Signal(8)
        dirty = Signal()  # bins may hold counts of an aborted pass
        with m.If(self.count.valid & self.count.ready):
            m.d.sync += dirty.eq(1)

        with m.FSM(init="COUNT") as fsm:
            with m.State("COUNT"):
                m.d.comb += [self.count.ready.eq(1), self.scan.ready.eq(pipeline_empty)]
                with m.If(self.abort):
                    with m.If(dirty):
                        m.d.sync += clear_bin.eq(0)
                        m.next = "CLEAR"
                with m.Elif(self.scan.valid & pipeline_empty):
                    m.d.sync += [keep.eq(self.scan.payload), scan_bin.eq(BINS - 1),
                                 count_above.eq(0), found.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.sync += scan_bin.eq(scan_bin - 1)
                with m.If(scan_bin <= BINS - 1):
                    m.d.sync += [bin_read_valid.eq(1), bin_read.eq(scan_bin)]
                with m.If(bin_summed_valid):
                    m.d.sync += count_above.eq(count_above + lanes_sum)
                    with m.If(~found & (count_above + lanes_sum >= keep)):
                        m.d.sync += [found.eq(1), self.result.payload.threshold.eq(bin_summed),
                                     self.result.payload.ties.eq(keep - count_above)]
                    with m.If(bin_summed == 0):
                        m.d.sync += dirty.eq(0)
                        m.next = "RESULT"
            with m.State("RESULT"):
                m.d.comb += self.result.valid.eq(1)
                with m.If(self.result.ready):
                    m.next = "COUNT"
            with m.State("CLEAR"):
                with m.If(pipeline_empty):
                    m.d.sync += clear_bin.eq(clear_bin + 1)
                    with m.If(clear_bin == BINS - 1):
                        m.d.sync += dirty.eq(0)
                        m.next = "COUNT"

        m.d.comb += self.busy.eq(~fsm.ongoing("COUNT") | ~pipeline_empty)
        in_scan = fsm.ongoing("SCAN")
        in_clear = fsm.ongoing("CLEAR")
        for j in range(lanes):
            rp, wp = read_ports[j], write_ports[j]
            m.d.comb += rp.addr.eq(read_bin[j])
            with m.If(in_scan):
                m.d.comb += rp.addr.eq(Mux(scan_bin > BINS - 1, 0, scan_bin))
            with m.If(incr_lanes[j]):
                m.d.comb += [wp.addr.eq(incr_bin[j]), wp.data.eq(rp.data + 1), wp.en.eq(1)]
            with m.Elif(in_scan & bin_read_valid):
                m.d.comb += [wp.addr.eq(bin_read), wp.data.eq(0), wp.en.eq(1)]
            with m.Elif(in_clear & pipeline_empty):
                m.d.comb += [wp.addr.eq(clear_bin), wp.data.eq(0), wp.en.eq(1)]
        return m
