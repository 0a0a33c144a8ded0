"""One training run with its GEMMs on a backend: start, attach, per-step cost, close.

:class:`HilRun` is what :func:`sw.train.train` holds for ``backend != "torch"``:

* :meth:`HilRun.start` starts the backend *before* training (a backend that cannot start raises
  :class:`sw.backend.BackendError` with one line naming it);
* :meth:`HilRun.attach` routes the model's SWAT layers through an :class:`sw.hil.IntegerPath`;
* :meth:`HilRun.step` after every optimisation step collects the step's GEMM costs (RTL cycles
  of each pass, utilization, threshold-select cycles) into one per-step record;
* :meth:`HilRun.epoch_fields` gives the epoch record its sums (flat, so they reach
  ``metrics.csv``) and the per-step records (``steps``, in ``metrics.json``; also written to
  ``steps.csv`` by :meth:`HilRun.write_steps`);
* :meth:`HilRun.close` stops the backend (the simulator process, the serial port). The training
  loop calls it in a ``finally``, so an exception or Ctrl-C leaves no simulator behind.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .backend import make_backend
from .hil import PASSES, IntegerPath, attach

__all__ = ["HilRun", "STEP_FIELDS"]

#: Per-step fields (``None`` where the backend has no clock, e.g. ``intref``).
STEP_FIELDS = ("step", "cycles", *(f"cycles_{p}" for p in PASSES), "utilization",
               "select_cycles", "select_w_cycles", "select_a_cycles", "select_exposed_cycles",
               "select_source", "macs", "mac_bound_cycles", "gemms", "core_runs")


class HilRun:
    """The backend of one run and the per-step records of its GEMMs."""

    def __init__(self, backend: str, *, grad_quant: str = "tensor", port: str | None = None):
        self.name = backend
        self.backend = make_backend(backend, port=port)
        self.path = IntegerPath(self.backend, grad_quant=grad_quant)
        self.epoch_steps: list[dict] = []

    def start(self) -> None:
        self.backend.start()

    def close(self) -> None:
        self.backend.close()

    def attach(self, model):
        return attach(model, self.path)

    def step(self, step: int) -> dict:
        rec = {"step": step, **self.path.take_step()}
        self.epoch_steps.append(rec)
        return rec

    def epoch_fields(self) -> dict:
        """Epoch sums for the epoch record (and clears the epoch's step list)."""
        steps, self.epoch_steps = self.epoch_steps, []
        out: dict = {"backend": self.name, "grad_quant": self.path.grad_quant}
        if not steps:
            return out
        n = len(steps)
        for key in ("macs", "select_cycles", "select_exposed_cycles", "cycles",
                    *(f"cycles_{p}" for p in PASSES)):
            if all(s.get(key) is not None for s in steps):
                out[f"{key}_per_step" if key == "cycles" else key] = (
                    sum(s[key] for s in steps) / n if key == "cycles" else
                    sum(s[key] for s in steps))
        if "cycles_per_step" in out and out["cycles_per_step"]:
            tot = out["cycles_per_step"] * n
            out["utilization"] = round(sum(s["macs"] for s in steps)
                                       / (self.backend.pes * tot), 4)
        out.update(self.backend.timing())  # cumulative over the run (this process)
        if self.path.eval_cycles:
            out["eval_cycles"] = self.path.eval_cycles
            self.path.eval_cycles = 0
        out["steps"] = steps
        return out

    def write_steps(self, out_dir, history: list[dict], *, plots: bool = True) -> Path:
        """``steps.csv`` (one row per optimisation step, from the epoch records of ``history``,
        so a resumed run keeps the steps before the resume) and ``cycles.png``."""
        from .atomic import atomic_write_text

        steps = [s for rec in history for s in rec.get("steps", ())]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(STEP_FIELDS), extrasaction="ignore",
                           restval="", lineterminator="\n")
        w.writeheader()
        w.writerows(steps)
        path = atomic_write_text(buf.getvalue(), Path(out_dir) / "steps.csv", parents=True)
        if plots and any(s.get("cycles") is not None for s in steps):
            from .hil_plots import plot_cycles

            plot_cycles({self.name: steps}, Path(out_dir) / "cycles.png")
        return path
