"""bitstreams.check: a report is current exactly when the tree elaborates its configuration to
the RTLIL it recorded."""

import json

from bitstreams.boards import configure
from bitstreams.check import elaborated_digest, stale_reports

CONFIG = {"rows": 2, "cols": 2, "d_depth": 64, "s_depth": 64, "c_depth": 32, "core_extra": {},
          "baud": 115200}


def _report(here, board, digest, **config):
    (here / board).mkdir(parents=True)
    rep = {"board": board, "git_commit": "abc1234", "rtlil_sha256": digest,
           "clock": {"requested_mhz": 100.0}, "config": CONFIG | config}
    (here / board / "report.json").write_text(json.dumps(rep))


def test_stale_reports(tmp_path):
    board = configure("ulx3s", rows=2, cols=2, d_depth=64, s_depth=64, c_depth=32)
    digest = elaborated_digest(board, 115200)
    assert digest != elaborated_digest(board, 57600)  # the UART divisor is part of the design
    _report(tmp_path, "ulx3s", digest)
    assert stale_reports(tmp_path) == []
    _report(tmp_path, "icebreaker", digest)  # another board's RTLIL
    assert stale_reports(tmp_path) == ["icebreaker"]
