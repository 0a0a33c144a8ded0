"""RTL tests of ``hw.select_keep.KeepFilter``: the records of a pass hold exactly the kept
non-zeros of ``sw.int_topk.select_mask_threshold`` (tie budget in stream order) or of the
transposed rule, every column end once, the last kept tie of ``last_kept_tie``, and the beat
that would overflow the S buffer is flagged; random valid gaps on ``beat`` and ready gaps on
``record``; an indexed pass (source-index side band) keeps exactly ``im2col`` of the tensor's
selection, with the cut position the tensor's pass reported."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.select_keep import KeepFilter
from sim.tb.select_beats import framed_beats
from sw import int_topk


def _record_entries(rec, lanes, rows):
    """(row, col, value) of the kept lanes of a record and the columns it ends."""
    value, emit, ends, row, col = rec
    kept, ended = [], []
    for j in range(lanes):
        v = (value >> (8 * j)) & 0xFF
        if emit >> j & 1:
            kept.append((row, col, v - 256 if v > 127 else v))
        if ends >> j & 1:
            ended.append(col)
        row, col = (0, col + 1) if row == rows - 1 else (row + 1, col)
    return kept, ended


async def _feed(ctx, dut, beats, rng, stall):
    """Offer ``beats`` with random valid gaps and record-ready gaps (probability ``stall``);
    returns the records taken, the last kept tie ``(row, col, index)`` and the beat that
    overflowed (None)."""
    records, last_tie, overflow_at = [], None, None
    for pos, word in enumerate(beats):
        while rng.random() < stall:  # a gap in the beats: nothing leaves, nothing counts
            ctx.set(dut.beat.valid, 0)
            assert not ctx.get(dut.record.valid) and not ctx.get(dut.overflow)
            await ctx.tick()
        ctx.set(dut.beat.payload.as_value(), word)
        ctx.set(dut.beat.valid, 1)
        while True:
            ready = rng.random() >= stall
            ctx.set(dut.record.ready, ready)
            if ctx.get(dut.overflow):
                overflow_at = pos
                break
            if ready:
                if ctx.get(dut.record.valid):
                    p = dut.record.payload
                    records.append((ctx.get(p.value.as_value()), ctx.get(p.emit),
                                    ctx.get(p.ends), ctx.get(p.row), ctx.get(p.col)))
                if ctx.get(dut.last_tie.any):
                    last_tie = (ctx.get(dut.last_tie.row), ctx.get(dut.last_tie.col),
                                ctx.get(dut.last_tie.index))
                await ctx.tick()
                break
            await ctx.tick()
        if overflow_at is not None:
            break
    ctx.set(dut.beat.valid, 0)
    return records, last_tie, overflow_at


@pytest.mark.parametrize("lanes", [1, 3, 8])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_kept_set_like_reference(lanes, stall):
    depth = 256
    dut = KeepFilter(lanes, depth)
    rng = random.Random(lanes * 3 + int(stall * 10))
    nrng = np.random.default_rng(lanes)
    done = []

    async def run_pass(ctx, s, t, ties, *, transpose=0, cut=None):
        rows, cols = s.shape
        for sig, v in ((dut.held.threshold, t), (dut.held.ties, ties),
                       (dut.held.cut_any, cut is not None),
                       (dut.held.cut_row, cut[0] if cut else 0),
                       (dut.held.cut_col, cut[1] if cut else 0),
                       (dut.transpose, transpose), (dut.rows, rows), (dut.cols, cols)):
            ctx.set(sig, v)
        ctx.set(dut.init, 1)
        await ctx.tick()
        ctx.set(dut.init, 0)
        beats = framed_beats(int_topk.stream_order(s), lanes)
        records, last_tie, overflow_at = await _feed(ctx, dut, beats, rng, stall)
        last_tie = last_tie and last_tie[:2]
        return records, last_tie, overflow_at, ctx.get(dut.nnz)

    async def bench(ctx):
        for case in range(6):
            rows, cols = int(nrng.integers(1, 12)), int(nrng.integers(1, 8))
            s = nrng.choice([0, 3, -3, 7, -7, 100, -128], size=(rows, cols))
            k = int(nrng.integers(0, rows * cols + 1))
            t, ties = int_topk.threshold_int(s, k)
            records, last_tie, overflow_at, nnz = await run_pass(ctx, s, t, ties)
            assert overflow_at is None
            kept, ended = [], []
            for rec in records:
                e, c = _record_entries(rec, lanes, rows)
                kept += e
                ended += c
            mask = int_topk.select_mask_threshold(s.T, t, ties).T
            expect = [(r, c, int(s[r, c])) for c in range(cols) for r in range(rows)
                      if mask[r, c] and s[r, c] != 0]
            assert kept == expect  # stream order
            assert ended == list(range(cols)) and nnz == len(expect)
            assert last_tie == int_topk.last_kept_tie(s, t, ties)
            # the transpose with the cut keeps the same set
            records, _, _, _ = await run_pass(ctx, np.ascontiguousarray(s.T), t, ties,
                                              transpose=1, cut=last_tie)
            kept_t = [e for rec in records for e in _record_entries(rec, lanes, cols)[0]]
            assert sorted((c, r, v) for r, c, v in kept_t) == sorted(expect)
            done.append(case)
        # overflow: the beat whose entries pass depth - cols - 4 is flagged, not passed on
        s = np.full((depth, 2), 5)
        records, _, overflow_at, nnz = await run_pass(ctx, s, 0, 0)
        fit = depth - 2 - 4
        assert overflow_at == fit // lanes and nnz == overflow_at * lanes
        done.append("overflow")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(done) == 7


@pytest.mark.parametrize("lanes", [3, 8])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_indexed_pass_keeps_im2col_of_the_selection(lanes, stall):
    import torch

    from sw import lowering

    dut = KeepFilter(lanes, 4096, index_width=32)
    rng = random.Random(lanes + int(stall * 10))
    nrng = np.random.default_rng(lanes + 7)
    done = []

    async def run_pass(ctx, s, index, t, ties, cut_index, by_index):
        rows, cols = s.shape
        for sig, v in ((dut.held.threshold, t), (dut.held.ties, ties),
                       (dut.held.cut_any, cut_index is not None),
                       (dut.held.cut_index, cut_index or 0), (dut.transpose, 0),
                       (dut.by_index, by_index), (dut.rows, rows), (dut.cols, cols)):
            ctx.set(sig, v)
        ctx.set(dut.init, 1)
        await ctx.tick()
        ctx.set(dut.init, 0)
        beats = framed_beats(int_topk.stream_order(s), lanes, index=int_topk.stream_order(index))
        records, last_tie, _ = await _feed(ctx, dut, beats, rng, stall)
        return ([e for rec in records for e in _record_entries(rec, lanes, rows)[0]],
                last_tie and last_tie[2])

    async def bench(ctx):
        for case in range(4):
            a = nrng.choice([0, 2, -2, 5, -5, 9], size=(2, 2, 5, 4)).astype(np.int8)
            conv = torch.nn.Conv2d(2, 1, 3, padding=case % 2, stride=1 + case // 2)
            k = int(nrng.integers(1, a.size))
            t, ties = int_topk.threshold_int(a, k)
            # the tensor pass (stream order = row-major of a) reports the cut position
            sm = int_topk.stream_matrix(a)
            _, cut_index = await run_pass(ctx, sm, np.zeros(sm.shape, np.int64), t, ties, None,
                                          0)
            assert cut_index == int_topk.last_kept_tie_index(a, t, ties)
            s = lowering.im2col(a, conv).astype(np.int8)
            index = lowering.im2col_source_index(a.shape, conv)
            kept, _ = await run_pass(ctx, s, index, t, 0, cut_index, 1)
            sel = lowering.im2col(np.where(int_topk.select_mask(a, k), a, 0), conv)
            expect = [(r, c, int(sel[r, c])) for c in range(s.shape[1])
                      for r in range(s.shape[0]) if sel[r, c] != 0]
            assert kept == expect
            done.append(case)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(done) == 4
