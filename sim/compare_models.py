"""The compare job's two Verilator models, built in the background while the step is captured.

The job simulates on two builds of the same core:

* ``gemm``: the core without the threshold-select unit (``sel_lanes=0``) for everything
  ``run_gemms`` runs (the baselines, the sampled GEMMs, the sweep). The unit changes no GEMM
  cycle (``ctrl.s_bank`` stays 0; ``tests/test_harness.py`` checks cycles, counters and ``C``
  of both cores on the same GEMMs) and the model without it evaluates a cycle faster.
* ``select``: the core with the unit (:data:`sim.verilate.HARNESS_SEL_LANES` lanes) for the
  select loop, which overlaps the unit with the sparse GEMMs (``sel.exposed_cycles``).

On a cold cache both builds start as soon as the job does, each in a thread of its own, and run
beside the training of the step to capture (2 cores: the compilers fill what the training leaves
idle). GCC profile-guided optimisation (:func:`sim.verilate.harness_model`'s ``pgo``) is for
the long jobs only: the default digits job simulates about a second, less than the profile's
second compile would save.
"""

from __future__ import annotations

import threading

from . import verilate

__all__ = ["JobModels", "job_pgo"]

#: models whose job is short enough that a profile-guided build would not pay off
SHORT_JOBS = ("digits_cnn",)


def job_pgo(name: str) -> bool:
    """Whether the job of model ``name`` builds its models with profile-guided optimisation."""
    return name not in SHORT_JOBS


class JobModels:
    """Both models of a job (module docstring), built or reused in background threads.

    Parameters
    ----------
    rows, cols : int
        PE array.
    name : str
        Canonical model name of the job (decides :func:`job_pgo`).
    quiet : bool
        No "building …" lines on stderr.
    """

    PARAMS = {"gemm": {"sel_lanes": 0}, "select": {}}

    def __init__(self, rows: int, cols: int, name: str, *, quiet: bool = False):
        self._out: dict = {}
        self._sizes: dict = {}
        self._ready = {key: threading.Event() for key in self.PARAMS}
        self._threads = {}
        for key, params in self.PARAMS.items():
            t = threading.Thread(target=self._build, name=f"build the {key} model",
                                 args=(key, rows, cols, job_pgo(name), params, quiet),
                                 daemon=True)
            t.start()
            self._threads[key] = t

    def _build(self, key, rows, cols, pgo, params, quiet) -> None:
        def elaborated(ports, attrs):
            self._sizes[key] = verilate.Model("", "", None, {}, ports, [], attrs)
            self._ready[key].set()

        try:
            self._out[key] = verilate.harness_model(rows, cols, quiet=quiet, pgo=pgo,
                                                    on_elaborated=elaborated, **params)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            self._out[key] = exc
        finally:
            self._ready[key].set()

    def sizes(self, key: str) -> verilate.Model:
        """The ``"gemm"`` or ``"select"`` model's ports and attributes (buffer depths, array:
        what ``sim.gemm._limits`` reads) as soon as the design is elaborated (seconds), not
        once it is compiled (minutes, with profile-guided optimisation): the job tiles its
        GEMMs while the compile runs. The built model when it already exists."""
        self._ready[key].wait()
        return self._sizes.get(key) or self.get(key)

    def get(self, key: str) -> verilate.Model:
        """The ``"gemm"`` or ``"select"`` model, once built (a failed build raises here)."""
        self._threads[key].join()
        out = self._out[key]
        if isinstance(out, BaseException):
            raise out
        return out
