"""The select unit driven by the C++ harness (CoreSim.select_begin / select_wait, sim.select_ops).

Blobs read back from the S buffer equal the integer reference (sw.int_topk) word for word;
a GEMM reads the unit's blob from one S buffer while the unit writes the other; the core's
exposed-select counter equals a count from the harness's tick stamps; an error code of the
unit surfaces as one SelectFailed line; the unit's cycles equal hw.contract.cycles.select_cycles.
One model: the harness's default core (sel_lanes=32, 8 S sub-banks).
"""

import numpy as np
import pytest

from hw.contract.blob import encode_words
from hw.contract.codes import SelectMode
from hw.contract.words import pack_d, unpack_c
from sim import select_ops, verilate
from sim.harness import CoreSim, SelectFailed
from sw import int_topk


@pytest.fixture(scope="module")
def model():
    return verilate.harness_model(8, 8)


@pytest.fixture
def core(model):
    with CoreSim(model) as c:
        yield c


def _words(blob_bytes):
    return np.frombuffer(blob_bytes, dtype="<u4")


def _tensor(rng, shape, levels=6):
    return rng.integers(-levels, levels + 1, shape).astype(np.int8)  # many ties


def test_pack_command_matches_the_layout():
    from hw.select_layouts import CommandLayout, HeldLayout

    raw = select_ops.pack_command(SelectMode.GIVEN, keep=5, rows=7, cols=9, transpose=True,
                                  bank=1, given=(3, 4, 5, 6, 1, 77), by_index=True)
    v = int.from_bytes(raw, "little")
    assert v & 3 == SelectMode.GIVEN
    assert (v >> CommandLayout["rows"].offset) & 0xFFFF == 7
    assert (v >> CommandLayout["bank"].offset) & 1 == 1
    assert v >> CommandLayout["by_index"].offset == 1  # the top bit
    given = v >> CommandLayout["given"].offset
    assert (given >> HeldLayout["cut_index"].offset) & 0xFFFF_FFFF == 77
    with pytest.raises(ValueError, match="rows=70000 does not fit 16 bits"):
        select_ops.pack_command(SelectMode.FULL, rows=70000, cols=1)


def test_weight_blobs_full_and_held_transposed(core):
    rng = np.random.default_rng(1)
    qw = _tensor(rng, (12, 40))  # [F, K]
    k = int_topk.k_from_density(0.3, qw.size)
    fwd = core.select(qw.T, SelectMode.FULL, keep=k, bank=1, label="W FULL")
    t, ties = int_topk.threshold_int(qw.T, k)
    assert (fwd.held["threshold"], fwd.held["ties"]) == (t, ties)
    assert 0 < ties < int((np.abs(qw.astype(int)) == t).sum())  # a split tie class
    assert np.array_equal(fwd.blob, _words(int_topk.compress_selected(qw.T, k)))
    assert fwd.bank == 1 and fwd.s_len == len(fwd.blob)
    row, col = int_topk.last_kept_tie(qw.T, t, ties)
    assert (fwd.held["cut_row"], fwd.held["cut_col"], fwd.held["cut_any"]) == (row, col, 1)
    bwd = core.select(qw, SelectMode.HELD, transpose=True, bank=0, label="W^T HELD")
    assert np.array_equal(bwd.blob, _words(int_topk.compress_transposed(qw.T, t, ties)))
    assert bwd.cycles < fwd.cycles  # pass 2 only


def test_threshold_by_index_holds_the_cut_of_the_tensor(core):
    rng = np.random.default_rng(4)
    qa = _tensor(rng, (2, 4, 6, 6))
    k = int_topk.k_from_density(0.2, qa.size)
    t, ties = int_topk.threshold_int(qa, k)
    assert 0 < ties < int((np.abs(qa.astype(int)) == t).sum())  # a split tie class
    view = int_topk.stream_matrix(qa)
    plain = core.select(view, SelectMode.THRESHOLD, keep=k, bank=1, label="THRESHOLD")
    st = core.select(view, SelectMode.THRESHOLD, keep=k, bank=1, by_index=True,
                     label="THRESHOLD by_index")
    assert (st.held["threshold"], st.held["ties"]) == (t, ties)
    assert st.held["cut_any"] == 1
    assert st.held["cut_index"] == int_topk.last_kept_tie_index(qa, t, ties)
    assert st.cycles > plain.cycles  # the stream went through twice


def test_cycles_exact_on_the_wide_unit(core):
    """The harness core's unit (more lanes than S sub-banks) takes exactly ``select_cycles(...,
    banks=sel_banks, kept=...)``: a dense FULL whose beats keep more entries than it writes a
    cycle (backpressure through the record FIFO), and the im2col blob of a convolution's
    activations (GIVEN ``by_index``, input-bound)."""
    from hw.contract.cycles import select_cycles
    from sw import lowering

    assert core.sel_lanes > core.sel_banks > 1
    lanes, banks = core.sel_lanes, core.sel_banks
    rng = np.random.default_rng(7)
    dense = rng.integers(1, 128, (40, 24)).astype(np.int8)
    k = int_topk.k_from_density(0.9, dense.size)
    st = core.select(dense, SelectMode.FULL, keep=k, bank=0, label="dense FULL")
    kept = np.where(int_topk.select_mask(dense.T, k).T, dense, 0)
    assert np.array_equal(st.blob, encode_words(kept))
    assert st.cycles == select_cycles(40, 24, lanes, banks=banks, kept=kept)
    assert st.cycles > select_cycles(40, 24, lanes, banks=lanes, kept=kept)  # write-bound

    import torch

    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    qa = _tensor(rng, (2, 4, 10, 10))
    k = int_topk.k_from_density(0.1, qa.size)
    thr = core.select(int_topk.stream_matrix(qa), SelectMode.THRESHOLD, keep=k, bank=1,
                      by_index=True, label="A THRESHOLD")
    h = thr.held
    given = (h["threshold"], h["ties"], h["cut_row"], h["cut_col"], h["cut_any"],
             h["cut_index"])
    s = lowering.im2col(qa, conv).astype(np.int8)
    st = core.select(s, SelectMode.GIVEN, given=given, by_index=True, bank=1,
                     index=lowering.im2col_source_index(qa.shape, conv), label="im2col GIVEN")
    assert np.array_equal(st.blob, lowering.im2col_topk_blob(qa, conv, 0.1))
    kept = lowering.im2col(np.where(int_topk.select_mask(qa, k), qa, 0), conv)
    assert st.cycles == select_cycles(*s.shape, lanes, mode=SelectMode.GIVEN, banks=banks,
                                      kept=kept)


def test_gemm_reads_the_units_blob_while_the_next_is_written(core):
    rng = np.random.default_rng(2)
    s1, s2 = _tensor(rng, (64, 24), 40), _tensor(rng, (64, 24), 40)
    d = rng.integers(-128, 128, (40, 64), dtype=np.int8)
    k = int_topk.k_from_density(0.2, s1.size)
    st1 = core.select(s1, SelectMode.FULL, keep=k, bank=1)
    core.write_d(pack_d(d, 8))
    core.select_begin(s2, SelectMode.FULL, keep=k, bank=0)  # runs during the GEMM
    stats, c = core.run(40, 64, 24, st1.s_len, s_bank=1)
    st2 = core.select_wait()
    keep1 = np.where(int_topk.select_mask(s1.T, k).T, s1, 0)
    assert stats["error"] == 0
    assert np.array_equal(unpack_c(c, 40, 24, 8), d.astype(np.int64) @ keep1.astype(np.int64))
    assert np.array_equal(st2.blob, _words(int_topk.compress_selected(s2, k)))
    assert st2.ticks["taken"] < st2.ticks["gemm_done"]  # the two overlapped


def test_exposed_cycles_equal_an_independent_count(core):
    rng = np.random.default_rng(3)
    s = _tensor(rng, (96, 64), 40)
    d = rng.integers(-128, 128, (8, 96), dtype=np.int8)
    k = int_topk.k_from_density(0.1, s.size)
    # alone: every busy cycle of the unit is exposed
    e0 = core.exposed_cycles
    alone = core.select(s, SelectMode.FULL, keep=k, bank=1)
    assert core.exposed_cycles - e0 == alone.cycles
    # behind a short GEMM on the other buffer: exposed = the unit's busy cycles outside it
    blob = encode_words(np.where(int_topk.select_mask(s.T, k).T, s, 0).astype(np.int8))
    core.write_s(blob)
    core.write_d(pack_d(d, 8))
    e0 = core.exposed_cycles
    core.select_begin(s, SelectMode.FULL, keep=k, bank=1)
    stats, _ = core.run(8, 96, 64, len(blob), s_bank=0, read_c=False)
    st = core.select_wait()
    busy = set(range(st.ticks["taken"], st.ticks["taken"] + st.cycles))
    gemm = set(range(st.ticks["gemm_start"] + 1, st.ticks["gemm_start"] + 1 + stats["cycles"]))
    assert 0 < len(busy & gemm) < st.cycles
    assert core.exposed_cycles - e0 == len(busy - gemm)


def test_select_error_is_one_clear_line(core):
    s = np.ones((4, 4), dtype=np.int8)
    with pytest.raises(SelectFailed, match=r"^threshold-select unit \(bad k\): error 2 KEEP "):
        core.select(s, SelectMode.FULL, keep=17, label="bad k")
    st = core.select(s, SelectMode.FULL, keep=16)  # the next command works
    assert st.nnz == 16 and not st.error


def test_held_before_any_pair_is_refused(model):
    with CoreSim(model) as fresh:
        st = fresh.select(np.ones((4, 4), np.int8), SelectMode.HELD, check=False)
        assert st.error and st.code_name == "NO_THRESHOLD" and st.blob is None
