"""Regressions of the threshold-select unit on its Verilator model (``tests/test_sim_select.py``).

The blob the unit writes (every address exactly once), the held threshold pair, ``nnz`` and
``s_len`` are checked bit for bit against ``sw.int_topk`` (``compress_selected`` /
``compress_threshold`` / ``threshold_int`` / ``compress_transposed`` with the held cut), with
and without random valid/ready stalls on both streams, into either S buffer (the command's
``bank``); the exact weight-gradient blob ``im2col(int_topk(A))`` of a convolution from the
im2col stream with the source-index side band (``by_index``); every error code with ``done``.
``SWAT_TB_CASES`` sets the number of random cases (default 12).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from hw.contract.codes import SelectError
from sim.tb.select_driver import MODES, SelectDriver, blob_from_writes
from sw import int_topk

META = json.loads(open(os.environ["SWAT_TB_META"]).read()) if "SWAT_TB_META" in os.environ \
    else None
CASES = int(os.environ.get("SWAT_TB_CASES", "12"))

ERR = SelectError.__members__


def _rng():
    return np.random.default_rng(cocotb.RANDOM_SEED)


async def _setup(dut):
    drv = SelectDriver(dut, META)
    await drv.start()
    return drv


def _random_q(rng, k, n, kind):
    if kind == "uniform":
        return rng.integers(-128, 128, (k, n)).astype(np.int8)
    if kind == "narrow":  # many ties
        return rng.integers(-3, 4, (k, n)).astype(np.int8)
    if kind == "gauss":  # quantized-weights-like
        return np.clip(np.round(rng.normal(0, 20, (k, n))), -127, 127).astype(np.int8)
    if kind == "sparse":
        q = rng.integers(-128, 128, (k, n)).astype(np.int8)
        q[rng.random((k, n)) < 0.7] = 0
        return q
    raise ValueError(kind)


def _check(res, q, expect_blob: bytes, what: str, t=None, ties=None):
    assert not res["timed_out"], f"{what}: no done (timeout)"
    assert res["code"] == 0, f"{what}: error code {res['code']}"
    assert not res["dup"], f"{what}: addresses written twice: {res['dup'][:5]}"
    exp = np.frombuffer(expect_blob, dtype="<u4").astype(np.int64)
    got = blob_from_writes(res["words"])
    assert got.size == exp.size, f"{what}: blob of {got.size} words, expected {exp.size}"
    bad = np.flatnonzero(got != exp)
    assert bad.size == 0, (f"{what}: {bad.size} words differ, first at {bad[0]}: "
                           f"{got[bad[0]]:#x} != {exp[bad[0]]:#x}")
    nnz = int(exp[2])
    assert res["nnz"] == nnz, f"{what}: nnz {res['nnz']} != {nnz}"
    assert res["s_len"] == exp.size, f"{what}: s_len {res['s_len']} != {exp.size}"
    if t is not None:
        assert (res["threshold"], res["ties"]) == (t, ties), \
            f"{what}: (t, ties) = {(res['threshold'], res['ties'])} != {(t, ties)}"


@cocotb.test()
async def random_full_selections(dut):
    """Mode FULL on random tensors and densities, no stalls; cycles equal to ``select_cycles``
    given the kept matrix."""
    from hw.contract.cycles import select_cycles as estimate_cycles

    drv = await _setup(dut)
    rng = _rng()
    kinds = ["uniform", "narrow", "gauss", "sparse"]
    for i in range(CASES):
        k = int(rng.integers(1, 80))
        n = int(rng.integers(1, 24))
        q = _random_q(rng, k, n, kinds[i % len(kinds)])
        density = float(rng.choice([0.0, 0.05, 0.1, 0.2, 0.5, 1.0, rng.random()]))
        keep = int_topk.k_from_density(density, k * n)
        t, ties = int_topk.threshold_int(q, keep)
        res = await drv.op(q, mode="FULL", keep=keep)
        what = f"case {i} ({k}x{n} {kinds[i % len(kinds)]}, keep {keep})"
        _check(res, q, int_topk.compress_selected(q, keep), what, t, ties)
        kept = np.where(int_topk.select_mask(q.T, keep).T, q, 0)
        est = estimate_cycles(k, n, drv.lanes, mode=0, banks=drv.banks, kept=kept)
        assert res["cycles"] == est, f"{what}: {res['cycles']} cycles, model {est}"


@cocotb.test()
async def stalls_on_both_streams(dut):
    """Random valid gaps on the input and back-pressure on the output: same blob."""
    drv = await _setup(dut)
    rng = _rng()
    for i in range(CASES):
        k = int(rng.integers(1, 50))
        n = int(rng.integers(1, 12))
        q = _random_q(rng, k, n, ["narrow", "uniform", "gauss"][i % 3])
        keep = int_topk.k_from_density(float(rng.random()), k * n)
        p_in, p_out = [(0.5, 0.0), (0.0, 0.6), (0.3, 0.3), (0.8, 0.8)][i % 4]
        res = await drv.op(q, mode="FULL", keep=keep, rng=rng, p_in_idle=p_in,
                           p_out_stall=p_out)
        t, ties = int_topk.threshold_int(q, keep)
        _check(res, q, int_topk.compress_selected(q, keep),
               f"stall case {i} ({k}x{n}, keep {keep}, p_in {p_in}, p_out {p_out})", t, ties)


@cocotb.test()
async def held_and_given_thresholds(dut):
    """THRESHOLD then HELD on a changed tensor; GIVEN with a host pair (Top-K period)."""
    drv = await _setup(dut)
    rng = _rng()
    for i in range(max(2, CASES // 3)):
        k, n = int(rng.integers(4, 60)), int(rng.integers(1, 10))
        q = _random_q(rng, k, n, "gauss")
        keep = int_topk.k_from_density(0.1 + 0.2 * (i % 3), k * n)
        t, ties = int_topk.threshold_int(q, keep)
        res = await drv.op(q, mode="THRESHOLD", keep=keep, rng=rng, p_in_idle=0.2)
        assert res["code"] == 0 and res["held_valid"] == 1
        assert (res["threshold"], res["ties"]) == (t, ties)
        assert not res["words"], "mode THRESHOLD wrote words"
        q2 = np.clip(q.astype(np.int16) + rng.integers(-2, 3, q.shape), -128, 127).astype(
            np.int8)
        res = await drv.op(q2, mode="HELD", rng=rng, p_out_stall=0.3)
        _check(res, q2, int_topk.compress_threshold(q2, t, ties), f"HELD {i}", t, ties)
        t3, ties3 = int(rng.integers(0, 129)), int(rng.integers(0, 5))
        res = await drv.op(q2, mode="GIVEN", t_in=t3, ties_in=ties3)
        _check(res, q2, int_topk.compress_threshold(q2, t3, ties3), f"GIVEN {i}", t3, ties3)


@cocotb.test()
async def transposed_blob_into_either_buffer(dut):
    """FULL on ``S' = Wsᵀ`` into S buffer 1 holds the cut; HELD with ``transpose`` on the
    stream of ``S'.T`` into buffer 0 writes exactly the same kept set, transposed
    (``compress_transposed``); GIVEN with the pair and cut passed back does the same."""
    drv = await _setup(dut)
    rng = _rng()
    for i in range(max(2, CASES // 3)):
        k, n = int(rng.integers(2, 40)), int(rng.integers(2, 12))
        q = _random_q(rng, k, n, "narrow")  # many ties: the cut matters
        keep = int_topk.k_from_density(float(rng.random()), k * n)
        t, ties = int_topk.threshold_int(q, keep)
        res = await drv.op(q, mode="FULL", keep=keep, bank=1, rng=rng, p_out_stall=0.3)
        _check(res, q, int_topk.compress_selected(q, keep), f"forward {i}", t, ties)
        assert res["bank"] == 1 and res["banks_written"] == {1}
        assert res["cut"] == int_topk.last_kept_tie(q, t, ties)
        qt = np.ascontiguousarray(q.T)
        expect = int_topk.compress_transposed(q, t, ties)
        res = await drv.op(qt, mode="HELD", transpose=1, bank=0, rng=rng, p_in_idle=0.3)
        _check(res, qt, expect, f"transposed {i}")
        assert res["bank"] == 0 and res["banks_written"] == {0}
        cut = int_topk.last_kept_tie(q, t, ties)
        res = await drv.op(qt, mode="GIVEN", transpose=1, t_in=t, ties_in=ties, cut=cut)
        _check(res, qt, expect, f"given transposed {i}")


@cocotb.test()
async def im2col_blob_by_index(dut):
    """FULL (or THRESHOLD ``by_index``: the cut pass writes nothing) on a tensor ``A``
    (streamed in its row-major order) holds ``(t, ties)`` and the cut position; GIVEN and HELD
    ``by_index`` on ``im2col(A)`` with the source indices write
    ``im2col(int_topk(A))`` word for word (``sw.lowering.im2col_topk_blob``), with stalls."""
    import torch

    from sw import lowering

    drv = await _setup(dut)
    rng = _rng()
    for i in range(max(2, CASES // 3)):
        a = rng.integers(-3, 4, (int(rng.integers(1, 3)), int(rng.integers(1, 4)), 6, 5)
                         ).astype(np.int8)
        conv = torch.nn.Conv2d(a.shape[1], 2, 3, padding=i % 2, stride=1 + (i % 3 == 2))
        density = float(rng.choice([0.1, 0.2, 0.3, 0.5]))
        keep = int_topk.k_from_density(density, a.size)
        t, ties = int_topk.threshold_int(a, keep)
        sm = int_topk.stream_matrix(a)
        if i % 2:  # THRESHOLD's cut pass: the stream twice, nothing written
            res = await drv.op(sm, mode="THRESHOLD", keep=keep, by_index=1, rng=rng,
                               p_in_idle=0.2)
            assert res["code"] == 0 and not res["words"], f"tensor {i}: cut pass wrote"
            assert (res["threshold"], res["ties"]) == (t, ties)
        else:
            res = await drv.op(sm, mode="FULL", keep=keep, rng=rng, p_out_stall=0.2)
            _check(res, sm, int_topk.compress_selected(sm, keep), f"tensor {i}", t, ties)
        cut_index = int_topk.last_kept_tie_index(a, t, ties)
        assert res["cut_index"] == cut_index, f"tensor {i}: cut {res['cut_index']}"
        s = lowering.im2col(a, conv).astype(np.int8)
        index = lowering.im2col_source_index(a.shape, conv)
        expect = lowering.im2col_topk_blob(a, conv, density).astype("<u4").tobytes()
        for mode, p_in, p_out in (("GIVEN", 0.3, 0.3), ("HELD", 0.0, 0.0)):
            res = await drv.op(s, mode=mode, t_in=t, by_index=1, cut_index=cut_index,
                               index=index, bank=i % 2, rng=rng, p_in_idle=p_in,
                               p_out_stall=p_out)
            _check(res, s, expect, f"im2col {mode} {i}")
            assert res["cut_index"] == cut_index, f"{mode} {i}: the indexed pass moved the cut"


@cocotb.test()
async def cycles_exact_at_scale(dut):
    """``status.cycles`` equals ``select_cycles`` given the kept matrix: FULL and HELD of a
    576 x 64 ``S`` at density 0.1 (HELD skips pass 1, each pass takes ``lanes`` elements a
    cycle), and the im2col blob of a 2 x 8 x 14 x 14 tensor (3 x 3 convolution, padding 1,
    density 0.1): FULL on the tensor, then GIVEN ``by_index`` on the im2col stream. The
    figures are logged (``select cycles ...``)."""
    import torch

    from hw.contract.cycles import select_cycles
    from sw import lowering

    drv = await _setup(dut)
    rng = _rng()
    q = np.clip(np.round(rng.normal(0, 30, (576, 64))), -127, 127).astype(np.int8)
    keep = int_topk.k_from_density(0.1, q.size)
    kept = np.where(int_topk.select_mask(q.T, keep).T, q, 0)
    for mode in ("FULL", "HELD"):
        res = await drv.op(q, mode=mode, keep=keep)
        model = select_cycles(576, 64, drv.lanes, mode=MODES[mode], banks=drv.banks, kept=kept)
        estimate = select_cycles(576, 64, drv.lanes, mode=MODES[mode], banks=drv.banks,
                                 nnz=res["nnz"])
        dut._log.info(f"select cycles 576x64 d0.1 {mode}: rtl {res['cycles']} model {model} "
                      f"estimate {estimate}")
        assert res["cycles"] == model, f"{mode}: rtl {res['cycles']}, model {model}"
    a = np.clip(np.round(rng.normal(0, 2, (2, 8, 14, 14))), -127, 127).astype(np.int8)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    keep = int_topk.k_from_density(0.1, a.size)
    sm = int_topk.stream_matrix(a)
    res = await drv.op(sm, mode="FULL", keep=keep)
    kept = np.where(int_topk.select_mask(sm.T, keep).T, sm, 0)
    model = select_cycles(*sm.shape, drv.lanes, banks=drv.banks, kept=kept)
    dut._log.info(f"select cycles tensor {sm.shape} FULL: rtl {res['cycles']} model {model}")
    assert res["cycles"] == model
    s = lowering.im2col(a, conv).astype(np.int8)
    index = lowering.im2col_source_index(a.shape, conv)
    res = await drv.op(s, mode="GIVEN", t_in=res["threshold"], by_index=1,
                       cut_index=res["cut_index"], index=index)
    expect = lowering.im2col_topk_blob(a, conv, 0.1)
    _check(res, s, expect.astype("<u4").tobytes(), "im2col at scale")
    kept = lowering.im2col(np.where(int_topk.select_mask(a, keep), a, 0), conv)
    model = select_cycles(*s.shape, drv.lanes, mode=MODES["GIVEN"], banks=drv.banks, kept=kept)
    dut._log.info(f"select cycles im2col {s.shape} GIVEN by_index: rtl {res['cycles']} "
                  f"model {model}")
    assert res["cycles"] == model


@cocotb.test()
async def error_codes(dut):
    """Every error code: ``error`` with that code, ``done`` comes, the input never hangs."""
    drv = await _setup(dut)
    rng = _rng()
    failures = []
    # NO_THRESHOLD must come first: nothing held since reset
    q = _random_q(rng, 10, 3, "uniform")
    cases = [
        ("HELD before any threshold", "NO_THRESHOLD", dict(s=q, mode="HELD")),
        ("rows = 0", "SHAPE", dict(s=q, mode="FULL", keep=1, shape=(0, 3), beats=[], passes=1)),
        ("cols = 0", "SHAPE", dict(s=q, mode="FULL", keep=1, shape=(10, 0), beats=[],
                                   passes=1)),
        ("keep > K*N", "KEEP", dict(s=q, mode="FULL", keep=31)),
        ("stream too short", "SHORT", dict(s=q, mode="FULL", keep=3,
                                            beats=drv.beats(q, last_at=0)[:1], passes=1)),
        ("stream too long", "LONG", dict(s=q, mode="FULL", keep=3,
                                         beats=drv.beats(np.zeros((10, 6), np.int8),
                                                         last_at=-1), passes=1)),
        ("t_in > 128", "BAD_THRESHOLD", dict(s=q, mode="GIVEN", t_in=129, ties_in=0)),
    ]
    k_over = max(8, int(np.sqrt(drv.depth)) + 8)
    if k_over * k_over <= 1 << 16:
        big = rng.integers(1, 128, (k_over, k_over)).astype(np.int8)
        cases.append(("blob beyond depth", "OVERFLOW", dict(s=big, mode="FULL",
                                                              keep=k_over * k_over)))
    for name, code, kw in cases:
        kw = dict(kw)
        s = kw.pop("s")
        res = await drv.op(s, rng=rng, max_cycles=200_000, **kw)
        if res["timed_out"]:
            failures.append(f"{name}: done never came")
        elif res["code"] != int(ERR[code]) or not res["error"]:
            failures.append(f"{name}: error={res['error']} code={res['code']}, "
                            f"expected {int(ERR[code])} ({code})")
        # the next good operation works
        q = _random_q(rng, 12, 4, "uniform")
        good = await drv.op(q, mode="FULL", keep=7)
        try:
            _check(good, q, int_topk.compress_selected(q, 7), f"good op after '{name}'")
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "; ".join(failures)
