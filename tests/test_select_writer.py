"""RTL tests of ``hw.select_writer.BlobWriter``: records of a random sparse matrix written
with ``banks`` words a cycle give, word for word, ``sw.int_topk.encode_csc_words``; every word
exactly once, each slot only in its own sub-bank; random valid gaps on ``record`` and ready
gaps on ``o``; ``flush`` drops queued records; the entries of a record leave in
``ceil(entries / banks)`` cycles."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.select_layouts import record_layout
from hw.select_writer import BlobWriter
from sw import int_topk


def _records(s, lanes):
    """Record payload ints of ``s`` (every non-zero kept) in stream order."""
    rows, cols = s.shape
    layout = record_layout(lanes)
    flat = int_topk.stream_order(s)
    out = []
    for b in range(-(-flat.size // lanes)):
        value = emit = ends = 0
        row, col = divmod(b * lanes, rows)[::-1]
        for j in range(lanes):
            e = b * lanes + j
            if e >= flat.size:
                break
            value |= (int(flat[e]) & 0xFF) << (8 * j)
            emit |= int(flat[e] != 0) << j
            ends |= int(e % rows == rows - 1) << j
        if emit | ends:
            out.append(layout.const({"value": [(value >> (8 * j)) & 0xFF for j in range(lanes)],
                                     "emit": emit, "ends": ends, "row": row,
                                     "col": col}).as_value().value)
    return out


@pytest.mark.parametrize("lanes,banks", [(1, 1), (4, 1), (4, 4), (8, 2), (8, 8)])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_blob_like_reference(lanes, banks, stall):
    addr_width = 9
    dut = BlobWriter(lanes, banks, addr_width, fifo_depth=2 if stall else 8)
    layout = dut.o.payload.shape()
    rng = random.Random(lanes * 10 + banks + int(stall * 10))
    nrng = np.random.default_rng(lanes + banks)
    row_w = layout["addr"].shape.elem_shape.width
    done = []

    def writes_of(v):
        out = []
        for b in range(banks):
            if v >> (layout["en"].offset + b) & 1:
                row = v >> (layout["addr"].offset + row_w * b) & ((1 << row_w) - 1)
                out.append((row * banks + b, v >> (layout["data"].offset + 32 * b) & 0xFFFFFFFF))
        return out

    async def write_blob(ctx, s, bank, *, flush_after=None):
        rows, cols = s.shape
        ctx.set(dut.rows, rows)
        ctx.set(dut.cols, cols)
        ctx.set(dut.bank, bank)
        records = _records(s, lanes)
        mem, pos, pending, cycles, header_sent = {}, 0, False, 0, False
        nnz = int(np.count_nonzero(s))
        ctx.set(dut.header.payload.rows, rows)
        ctx.set(dut.header.payload.cols, cols)
        ctx.set(dut.header.payload.nnz, nnz)
        while not header_sent:
            valid = pos < len(records) and (pending or rng.random() >= stall)
            ctx.set(dut.record.valid, valid)
            if valid:
                ctx.set(dut.record.payload.as_value(), records[pos])
            ctx.set(dut.header.valid, pos == len(records))
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            pending = valid
            if valid and ctx.get(dut.record.ready):
                pos += 1
                pending = False
            if ready and ctx.get(dut.o.valid):
                v = ctx.get(dut.o.payload.as_value())
                assert v >> layout["bank"].offset & 1 == bank
                for a, d in writes_of(v):
                    assert a not in mem, f"word {a} written twice"
                    mem[a] = d
            header_sent = ctx.get(dut.header.ready) and pos == len(records)
            if flush_after is not None and pos == flush_after:
                ctx.set(dut.flush, 1)
                await ctx.tick()
                ctx.set(dut.flush, 0)
                ctx.set(dut.record.valid, 0)
                ctx.set(dut.header.valid, 0)
                assert ctx.get(dut.idle)
                return None, cycles
            await ctx.tick()
            cycles += 1
        ctx.set(dut.header.valid, 0)
        assert ctx.get(dut.idle)
        return mem, cycles

    async def bench(ctx):
        for case in range(5):
            rows, cols = int(nrng.integers(1, 13)), int(nrng.integers(1, 9))
            density = [0.1, 0.5, 1.0, 0.0, 0.3][case]
            s = np.where(nrng.random((rows, cols)) < density,
                         nrng.integers(-128, 128, (rows, cols)), 0)
            if case == 1:  # a partial blob flushed away must not disturb the next
                await write_blob(ctx, s, 1, flush_after=1)
            mem, cycles = await write_blob(ctx, s, case & 1)
            expect = int_topk.encode_csc_words(s)
            assert sorted(mem) == list(range(len(expect)))
            assert [mem[a] for a in range(len(expect))] == [int(w) for w in expect]
            done.append(case)
        # throughput: one dense column of `lanes` rows is one record: entries, then pointer
        if stall == 0.0:
            s = np.ones((lanes, 1), dtype=np.int64)
            _, cycles = await write_blob(ctx, s, 0)
            assert cycles == -(-lanes // banks) + 1 + -(-4 // banks) + 3  # + FIFO latency

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(done) == 5
