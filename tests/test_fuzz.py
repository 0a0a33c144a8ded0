"""sim.fuzz: malformed blobs through the Verilator core, and the checker's own verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from sim import fuzz, verilate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def core():
    from sim.harness import CoreSim

    with CoreSim(verilate.harness_model(8, 8)) as c:
        yield c


def test_small_fuzz_run_is_clean(core):
    res = fuzz.fuzz(400, seed=7, core=core)
    assert res.cases == 400
    assert (res.hung, res.oob_writes, res.wrong) == (0, 0, 0), res.failures[:3]
    assert res.error_flagged + res.accepted_exact == 400
    assert res.error_flagged > 200 and res.accepted_exact > 10
    assert set(res.by_edit) == set(fuzz.EDITS)
    assert set(res.by_code) >= {1, 2, 3, 4, 5, 6, 7}


class _Corrupting:
    """A CoreSim stand-in that damages what the core wrote, to check the checker."""

    def __init__(self, core, where):
        self.core, self.where = core, where

    def __getattr__(self, name):
        return getattr(self.core, name)

    def read_c(self, *a, **kw):
        c = self.core.read_c(*a, **kw).copy()
        c[0 if self.where == "inside" else -1, 0] ^= 1
        return c


def test_checker_counts_a_wrong_result_and_an_out_of_bounds_write(core):
    res = fuzz.fuzz(30, seed=7, core=_Corrupting(core, "inside"))
    assert res.accepted_exact == 0 and res.wrong >= 30  # every good job after a case is wrong
    res = fuzz.fuzz(30, seed=7, core=_Corrupting(core, "outside"))
    assert res.oob_writes == 30 and res.wrong == 30


def test_replay_of_one_case_with_waves(tmp_path, capsys):
    wave = tmp_path / "case.fst"
    assert fuzz.main(["--case", "3", "--waves", str(wave)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fuzz: 1 malformed blobs (+ a good job after each) in ")
    assert wave.stat().st_size > 1000 and wave.read_bytes()[:1] == b"\x00"  # FST header block


def test_bad_arguments_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        fuzz.main(["--waves", "x.fst"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().endswith(
        "error: --waves needs --case (a waveform of one replayed case)")


def test_edits_change_the_blob():
    rng = np.random.default_rng(0)
    s = np.zeros((9, 4), np.int8)
    s[::2, 1] = 5
    good = fuzz.encode_words(s)
    for _ in range(50):
        words, s_len, kind = fuzz._edit(rng, good, 9, 4)
        assert kind in fuzz.EDITS
        assert s_len != len(good) or len(words) != len(good) or (words != good).any()
