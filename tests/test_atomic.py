"""Atomic file writes (``sw.atomic``): an interrupted write (an exception, or the process
killed in the middle) leaves the previous file; permissions are kept; errors name the target,
never the temporary file; no torch on the FPGA build's side."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sw.atomic import atomic_write, atomic_write_text, stale_temporaries

ROOT = Path(__file__).resolve().parents[1]  # the children import this tree's sw, bitstreams


def test_writes_bytes_and_text(tmp_path):
    path = tmp_path / "f.bin"
    assert atomic_write(path, lambda f: f.write(b"\x00\xffab")) == path
    assert path.read_bytes() == b"\x00\xffab"
    assert atomic_write_text("grüße\n", str(path)) == path  # a str path: a Path back
    assert path.read_bytes() == "grüße\n".encode()
    assert os.listdir(tmp_path) == ["f.bin"]


def test_an_exception_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old\n")

    def half(f):
        f.write(b"new, half")
        f.flush()
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="^stopped$"):
        atomic_write(path, half)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["f.txt"]  # the temporary file removed


def test_a_killed_writer_leaves_the_old_file_and_a_stale_temporary(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old\n")
    child = textwrap.dedent(f"""
        import os, signal
        from sw.atomic import atomic_write

        def write(f):
            f.write(b"new, half")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        atomic_write({str(path)!r}, write)
    """)
    res = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert path.read_text() == "old\n"
    stale = stale_temporaries(tmp_path, "f.txt")
    assert len(stale) == 1 and stale[0].read_bytes() == b"new, half"
    assert sorted(os.listdir(tmp_path)) == sorted(["f.txt", stale[0].name])


def test_stale_temporaries_match_only_their_file(tmp_path):
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"x")
    (tmp_path / ".metrics.json.q.tmp").write_bytes(b"x")
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    (tmp_path / ".checkpoint.pt.dir.tmp").mkdir()
    assert stale_temporaries(tmp_path, "checkpoint.pt") == [tmp_path / ".checkpoint.pt.abc123.tmp"]
    assert stale_temporaries(tmp_path / "missing", "checkpoint.pt") == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o755])
def test_a_replaced_file_keeps_its_permissions(tmp_path, mode):
    path = tmp_path / "f.txt"
    path.write_text("old\n")
    path.chmod(mode)
    atomic_write_text("new\n", path, new_mode=0o600)  # new_mode is for new files only
    assert (path.read_text(), path.stat().st_mode & 0o7777) == ("new\n", mode)


def test_a_new_file_takes_new_mode(tmp_path):
    atomic_write_text("a", tmp_path / "default")
    atomic_write_text("b", tmp_path / "given", new_mode=0o644)
    assert (tmp_path / "default").stat().st_mode & 0o7777 == 0o600
    assert (tmp_path / "given").stat().st_mode & 0o7777 == 0o644


def test_parents(tmp_path):
    path = tmp_path / "a" / "b" / "f.txt"
    with pytest.raises(FileNotFoundError) as err:
        atomic_write_text("x", path)
    assert not (tmp_path / "a").exists()
    assert str(err.value) == f"[Errno 2] No such file or directory: '{path}'"
    assert atomic_write_text("x", path, parents=True).read_text() == "x"


def test_errors_name_the_target_and_leave_no_temporary(tmp_path):
    target = tmp_path / "adir"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as err:
        atomic_write_text("x", target)
    assert (err.value.filename, err.value.filename2) == (str(target), None)
    assert str(err.value) == f"[Errno {errno.EISDIR}] Is a directory: '{target}'"
    assert os.listdir(tmp_path) == ["adir"]


def test_an_oserror_from_write_names_the_target(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old\n")

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device", "/some/where/else")

    with pytest.raises(OSError) as err:
        atomic_write(path, full)
    assert str(err.value) == f"[Errno {errno.ENOSPC}] No space left on device: '{path}'"
    assert (path.read_text(), os.listdir(tmp_path)) == ("old\n", ["f.txt"])

    def odd(f):
        raise OSError("no errno: not the system's")

    with pytest.raises(OSError) as err:
        atomic_write(path, odd)
    assert str(err.value) == "no errno: not the system's"


def test_the_fpga_build_imports_no_torch():
    """``bitstreams.bram_outreg`` writes its netlist through ``sw.atomic``: neither imports
    torch (``sw.checkpoint`` does)."""
    res = subprocess.run([sys.executable, "-c", "import sys, sw.atomic, bitstreams.bram_outreg; "
                          "print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert res.stdout == "False\n"
