"""Regressions of ``hw.core.SwatCore`` on its Verilator model (run by ``test_sim_core.py``).

Every result is checked bit for bit against the int64 numpy product (what ``sw.intref.gemm``
computes). Environment:
``SWAT_TB_META`` (model description, set by ``sim.bench.run_bench``), ``SWAT_TB_CASES``
(number of random GEMMs, default 24), ``SWAT_TB_MODE`` (``auto``/``ports``).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from hw.contract import malformed
from sim.tb.driver import TIMEOUT_CODE, CoreDriver, encode_words, pack_d, unpack_c

META = json.loads(open(os.environ["SWAT_TB_META"]).read()) if "SWAT_TB_META" in os.environ \
    else None
CASES = int(os.environ.get("SWAT_TB_CASES", "24"))


def _ref(d, s):
    return d.astype(np.int64) @ s.astype(np.int64)


def _rng():
    return np.random.default_rng(cocotb.RANDOM_SEED)


def _words(s: np.ndarray) -> np.ndarray:
    return encode_words(s)


def _random_s(rng, k, n, density, lo=-128):
    s = rng.integers(lo, 128, (k, n), dtype=np.int16).astype(np.int8)
    s[rng.random((k, n)) >= density] = 0
    return s


async def _setup(dut, mode=None) -> CoreDriver:
    drv = CoreDriver(dut, META, mode or os.environ.get("SWAT_TB_MODE", "auto"))
    await drv.start()
    return drv


def _fits(drv, m, k, n, nnz):
    mt = -(-m // drv.rows)
    return mt * k <= drv.d_depth and mt * n <= drv.c_depth and 4 + n + nnz <= drv.s_depth


async def _check_gemm(drv, d, s, what=""):
    m, k = d.shape
    n = s.shape[1]
    words = _words(s)
    c_words, st = await drv.gemm_words(pack_d(d, drv.rows), words, m, k, n)
    assert st["code"] == 0, f"{what}: error code {st['code']} on a well-formed job {m}x{k}x{n}"
    assert not st["error"], what
    c = unpack_c(c_words, m, n, drv.rows)
    ref = _ref(d, s)
    bad = np.argwhere(c.astype(np.int64) != ref)
    assert bad.size == 0, (f"{what}: {len(bad)} wrong C elements of {m}x{n}, first at "
                           f"{bad[0].tolist()}: {c[tuple(bad[0])]} != {ref[tuple(bad[0])]}")
    mt = -(-m // drv.rows)
    nnz = int((s != 0).sum())
    # every effectual entry is issued once per M-tile
    assert st["busy"] == mt * nnz, f"{what}: busy_cycles {st['busy']} != {mt * nnz}"
    assert st["cycles"] >= -(-mt * nnz // drv.cols), f"{what}: fewer cycles than the bound"
    assert st["busy"] + st["stall"] + st["idle"] <= drv.cols * (st["cycles"] + 1), what
    return st


@cocotb.test()
async def random_gemms(dut):
    """Random shapes (ragged M and N tiles), densities 0..1, full int8 range."""
    drv = await _setup(dut)
    rng = _rng()
    done = 0
    while done < CASES:
        m = int(rng.integers(1, 4 * drv.rows + 2))
        k = int(rng.integers(1, 96))
        n = int(rng.integers(1, 4 * drv.cols + 4))
        density = float(rng.choice([0.0, 0.02, 0.1, 0.25, 0.5, 0.9, 1.0]))
        d = rng.integers(-128, 128, (m, k), dtype=np.int16).astype(np.int8)
        s = _random_s(rng, k, n, density)
        if not _fits(drv, m, k, n, int((s != 0).sum())):
            continue
        await _check_gemm(drv, d, s, f"case {done} ({m}x{k}x{n}, density {density})")
        done += 1


@cocotb.test()
async def edge_cases(dut):
    """All-zero S, fully dense S, -128/127 extremes, 1x1x1, empty columns, exact tile fits."""
    drv = await _setup(dut)
    rng = _rng()
    r, c = drv.rows, drv.cols
    i8 = np.int8
    cases = {
        "all-zero S": (rng.integers(-128, 128, (2 * r + 1, 40)).astype(i8),
                       np.zeros((40, c + 1), i8)),
        "fully dense": (rng.integers(-128, 128, (2 * r, 33)).astype(i8),
                        rng.integers(1, 128, (33, 2 * c + 1)).astype(i8)),
        "-128 x -128": (np.full((r + 3, 64), -128, i8), np.full((64, c + 2), -128, i8)),
        "127 x -128": (np.full((r, 50), 127, i8), np.full((50, c), -128, i8)),
        "-128 x 127": (np.full((2 * r - 1, 50), -128, i8), np.full((50, 3), 127, i8)),
        "1x1x1": (np.array([[-128]], i8), np.array([[-128]], i8)),
        "1x1x1 zero": (np.array([[5]], i8), np.array([[0]], i8)),
        "all-zero D": (np.zeros((r, 20), i8), rng.integers(-128, 128, (20, c)).astype(i8)),
    }
    s = _random_s(rng, 30, 4 * c, 0.5)
    s[:, ::3] = 0  # empty columns between full ones
    cases["empty columns"] = (rng.integers(-128, 128, (r + 1, 30)).astype(i8), s)
    s = np.zeros((30, 2 * c), i8)
    s[rng.integers(0, 30, 5), rng.integers(0, 2 * c, 5)] = 7  # a handful of entries
    cases["very sparse"] = (rng.integers(-128, 128, (3 * r, 30)).astype(i8), s)
    # the largest shape that fits the buffers exactly (D and C full)
    k = drv.d_depth // 2
    n = min(drv.c_depth // 2, 4 * c)
    if 4 + n + k * n // 20 < drv.s_depth:
        cases["buffers full"] = (rng.integers(-128, 128, (2 * r, k)).astype(i8),
                                 _random_s(rng, k, n, 0.04))
    for name, (d, s) in cases.items():
        await _check_gemm(drv, d, s, name)


def _base_blob(drv, rng):
    m, k, n = drv.rows + 1, 12, 3
    s = np.zeros((k, n), np.int8)
    s[[1, 4, 7], 0] = [3, -5, 9]
    s[[0, 11], 2] = [-128, 127]
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    return d, s, _words(s), m, k, n


@cocotb.test()
async def malformed_streams(dut):
    """Each case of the shared table (``hw.contract.malformed``): ``error`` rises with one of
    its codes, ``done`` still comes, and the next well-formed operation works."""
    drv = await _setup(dut)
    rng = _rng()
    failures = []
    d = rng.integers(-128, 128, (3, malformed.BASE.shape[0])).astype(np.int8)
    for case in malformed.cases(rows=drv.rows, d_depth=drv.d_depth, s_depth=drv.s_depth,
                                c_depth=drv.c_depth):
        await drv.write_d(pack_d(d, drv.rows))
        await drv.write_s(np.array(case.words, dtype=np.uint32))
        st = await drv.run(case.m, case.k, case.n, case.s_len, timeout_cycles=20_000)
        if st["code"] == TIMEOUT_CODE:
            failures.append(f"{case.name}: done never came (hang)")
        elif not st["error"] or st["code"] not in case.codes:
            failures.append(f"{case.name}: error={st['error']} code={st['code']}, expected "
                            f"{sorted(int(c) for c in case.codes)}")
        # a good job right after the error: the error is cleared and the result is right
        d0, s0, *_ = _base_blob(drv, rng)
        await _check_gemm(drv, d0, s0, f"good job after '{case.name}'")
    assert not failures, "; ".join(failures)


@cocotb.test()
async def ports_match_preload(dut):
    """Writing D/S and reading C through the host ports gives the same C and counters as the
    backdoor preload the fast harness uses."""
    rng = _rng()
    fast = await _setup(dut)
    slow = CoreDriver(dut, META, "ports")
    for i in range(3):
        m = int(rng.integers(1, 3 * fast.rows))
        k = int(rng.integers(1, 40))
        n = int(rng.integers(1, 3 * fast.cols))
        d = rng.integers(-128, 128, (m, k)).astype(np.int8)
        s = _random_s(rng, k, n, 0.3)
        w = _words(s)
        c1, st1 = await fast.gemm_words(pack_d(d, fast.rows), w, m, k, n)
        # scramble the buffers so that stale contents cannot pass for results
        await fast.write_d(rng.integers(-128, 128, (fast.d_depth // 4, fast.rows)).astype(np.int8))
        c2, st2 = await slow.gemm_words(pack_d(d, slow.rows), w, m, k, n)
        assert st1 == st2, f"case {i}: counters differ: preload {st1} ports {st2}"
        assert np.array_equal(c1, c2), f"case {i}: C differs between preload and ports"
        ref = _ref(d, s)
        assert np.array_equal(unpack_c(c2, m, n, slow.rows).astype(np.int64), ref)


def _operands(drv, m_tiles):
    """``(m, k, n, D, S, S words)`` of a random GEMM of ``m_tiles`` M-tiles that fits."""
    rng = _rng()
    m, k, n = m_tiles * drv.rows, 48, 2 * drv.cols
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s = _random_s(rng, k, n, 0.5)
    return m, k, n, d, s, _words(s)


@cocotb.test()
async def start_while_busy_is_ignored(dut):
    """A second ``start`` pulse (with another shape) while busy changes nothing."""
    drv = await _setup(dut)
    m, k, n, d, s, w = _operands(drv, 2)
    _, ref_st = await drv.gemm_words(pack_d(d, drv.rows), w, m, k, n)
    await drv.write_d(pack_d(d, drv.rows))
    p = drv.p
    for name, v in (("m", m), ("k", k), ("n", n), ("s_len", len(w))):
        p[name].set(v)
    p["start"].set(1)
    await RisingEdge(dut.clk)
    p["start"].set(0)
    await ClockCycles(dut.clk, 5)
    assert p["busy"].get() == 1, "core not busy 5 cycles after start"
    for name, v in (("m", 1), ("k", 1), ("n", 1), ("s_len", 1)):
        p[name].set(v)
    p["start"].set(1)
    await RisingEdge(dut.clk)
    p["start"].set(0)
    if not p["done"].get():
        await RisingEdge(p["done"].h)
    assert p["error_code"].get() == 0
    assert p["cycles"].get() == ref_st["cycles"], "the ignored start changed the timing"
    c = unpack_c(await drv.read_c(-(-m // drv.rows) * n), m, n, drv.rows)
    assert np.array_equal(c.astype(np.int64), _ref(d, s))


@cocotb.test()
async def run_returns_its_own_counters(dut):
    """Regression (issue 9 item 5): ``CoreDriver.run`` while the core ignores ``start`` (here
    it is still busy with an operation started behind the driver's back; the select unit being
    busy has the same effect) runs its own operation once the core takes ``start`` and returns
    that operation's counters -- not the previous one's, and no UnboundLocalError."""
    drv = await _setup(dut)
    m, k, n, d, s, w = _operands(drv, 3)
    await drv.write_d(pack_d(d, drv.rows))
    await drv.write_s(w)
    first = await drv.run(drv.rows, k, n, len(w))  # one M-tile of the same buffers
    whole = await drv.run(m, k, n, len(w))
    assert first["cycles"] < whole["cycles"]
    p = drv.p
    for name, v in (("m", drv.rows), ("k", k), ("n", n), ("s_len", len(w))):
        p[name].set(v)
    p["start"].set(1)
    await RisingEdge(dut.clk)
    p["start"].set(0)
    st = await drv.run(m, k, n, len(w))
    assert st == whole, f"counters {st}, expected those of the operation itself {whole}"
    c = unpack_c(await drv.read_c(-(-m // drv.rows) * n), m, n, drv.rows)
    assert np.array_equal(c.astype(np.int64), _ref(d, s))


@cocotb.test()
async def many_back_to_back(dut):
    """Many operations without reset, each using a different part of the buffers."""
    drv = await _setup(dut)
    rng = _rng()
    for i in range(CASES):
        m = int(rng.integers(1, 2 * drv.rows + 1))
        k = int(rng.integers(1, 24))
        n = int(rng.integers(1, 2 * drv.cols + 1))
        d = rng.integers(-128, 128, (m, k)).astype(np.int8)
        s = _random_s(rng, k, n, float(rng.random()))
        await _check_gemm(drv, d, s, f"op {i}")
