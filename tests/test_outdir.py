"""The run folder is checked before training; stale temporaries, --force, finished runs
(sw.train.outdir and how swat-train reports them)."""

import os

import pytest

from sw import train as T
from sw.train.config import ConfigError
from sw.train.outdir import prepare_out

FAST = ["--method", "dense", "--max-steps", "2", "--no-plots", "--no-progress", "--quiet"]


def _cli(args, capsys):
    rc = T.main([*FAST, *args])
    err = capsys.readouterr().err
    return rc, err.strip().splitlines()


def test_out_that_is_a_file_fails_before_training(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert _cli(["--out", str(f)], capsys) == (2, [f"swat-train: error: --out {f} is a file, "
                                                   "not a folder"])
    under = f / "run"
    assert _cli(["--out", str(under)], capsys) == (
        2, [f"swat-train: error: --out {under} lies under the file {f}, not a folder"])


def test_out_whose_name_the_system_refuses(tmp_path, capsys):
    out = tmp_path / ("x" * 300)  # longer than NAME_MAX: mkdir fails even for root
    assert _cli(["--out", str(out)], capsys) == (
        2, [f"swat-train: error: --out {out} cannot be written: File name too long"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_that_cannot_be_written(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc, err = _cli(["--out", str(ro / "run")], capsys)
    finally:
        ro.chmod(0o700)
    assert rc == 2 and err == [f"swat-train: error: --out {ro / 'run'} cannot be written: "
                               "Permission denied"]


def test_existing_run_needs_resume_or_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(["--out", str(out)], capsys)[0] == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert _cli(["--out", str(out)], capsys) == (
        2, [f"swat-train: error: --out {out} already holds a run (checkpoint.pt); pass --resume "
            "to continue it or --force to start it again"])
    assert (out / "checkpoint.pt").read_bytes() == before  # untouched
    (out / "steps.csv").write_text("step\n1\n")  # as an integer-backend run leaves it
    assert _cli(["--out", str(out), "--force", "--seed", "1"], capsys)[0] == 0
    assert (out / "checkpoint.pt").read_bytes() != before
    assert not (out / "steps.csv").exists()  # no step records of the run --force replaced


def test_resuming_a_finished_run_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(["--out", str(out)], capsys)[0] == 0
    ck = out / "checkpoint.pt"
    assert _cli(["--out", str(out), "--resume"], capsys) == (
        2, [f"swat-train: error: --resume {ck}: the run is already finished (--max-steps 2 "
            "reached at step 2); raise --max-steps to train further"])
    rc, _ = _cli(["--out", str(out), "--resume", "--max-steps", "3"], capsys)
    assert rc == 0


def test_stale_temporaries_are_removed_at_start(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".checkpoint.pt.k1ll3d.tmp", out / ".metrics.json.x.tmp",
             out / ".steps.csv.y.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    (out / "notes.tmp").write_text("not ours")
    assert sorted(prepare_out(out, resume=False, force=False)) == sorted(stale)
    assert not any(p.exists() for p in stale) and (out / "notes.tmp").exists()


def test_damaged_checkpoint_on_resume_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(["--out", str(out)], capsys)[0] == 0
    ck = out / "checkpoint.pt"
    data = bytearray(ck.read_bytes())
    data[-100] ^= 4
    ck.write_bytes(data)
    assert _cli(["--out", str(out), "--resume", "--max-steps", "4"], capsys) == (
        1, [f"swat-train: error: {ck} is corrupt: its SHA-256 checksum does not match the "
            "contents (damaged on disk or in a copy)"])
    ck.write_bytes(b"")
    assert _cli(["--out", str(out), "--resume", "--max-steps", "4"], capsys) == (
        1, [f"swat-train: error: {ck} is empty (0 bytes), not a SWAT checkpoint"])


def test_prepare_out_none_and_non_main_rank(tmp_path):
    assert prepare_out(None, resume=False, force=False) == []
    (tmp_path / ".checkpoint.pt.a.tmp").write_bytes(b"")
    assert prepare_out(tmp_path, resume=False, force=False, main=False) == []
    assert (tmp_path / ".checkpoint.pt.a.tmp").exists()  # only rank 0 changes the folder
    with pytest.raises(ConfigError):
        prepare_out(tmp_path / ".checkpoint.pt.a.tmp", resume=False, force=False)
