"""GEMM backends: who computes the int8 GEMMs of a training step (hardware in the loop).

A backend takes a batch of integer GEMMs ``C = D @ S`` (``D [M, K]`` and ``S [K, N]`` int8, the
operand roles of ``docs/core-interface.md``) and returns ``C`` exactly, with the cost the
hardware reports for it. The SWAT layers do not call a backend directly: :mod:`sw.hil` lowers a
layer's three passes to such GEMMs and hands them here.

``torch``
    no integer path at all: the layers keep today's float autograd (the default).
``intref``
    the bit-exact integer reference on the host (``float64`` matrix products, exact because
    ``|C| <= 127 * 127 * K < 2**53`` for every ``K < 5.5e8``; ``sw.intref.gemm`` is the same
    arithmetic in int64). No cycles: only the effectual MACs and the ideal cycle bound.
``rtl``
    the Verilator model of the core in a persistent simulator process (``sim.harness``: started
    once per run by :meth:`GemmBackend.start`, fed batch after batch, stopped by
    :meth:`GemmBackend.close`).
``fpga``
    the UART host driver on a board (``--port``).

Every backend is started before training begins: one that cannot start raises
:class:`BackendError` with one line naming the backend and the reason. A backend that fails
mid-run raises :class:`BackendError` naming the GEMMs of the batch it was computing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BACKENDS", "BackendError", "GemmJob", "GemmOut", "GemmBackend", "IntrefBackend",
           "RtlBackend", "FpgaBackend", "make_backend"]

BACKENDS = ("torch", "intref", "rtl", "fpga")


class BackendError(RuntimeError):
    """A backend cannot start, or failed while computing a batch (one-line message)."""


@dataclass
class GemmJob:
    """One integer GEMM of a layer pass: ``label`` is ``"<layer>:<pass>"`` for messages.

    ``select`` (optional) is the ``sw.lowering.GemmJob`` of the same GEMM: where ``S`` comes
    from (the Top-K of which tensor, dense ``S``), so that a backend with a threshold-select
    unit (``rtl``) makes ``S`` itself and checks it against ``s``."""

    d: np.ndarray  # int8 [M, K]
    s: np.ndarray  # int8 [K, N]
    label: str = ""
    select: object = None


@dataclass
class GemmOut:
    """Exact result and hardware cost of one :class:`GemmJob`."""

    c: np.ndarray  # int64 [M, N]
    macs: int  # effectual MACs: M * nnz(S)
    cycles: int | None = None  # core cycles (None: the backend has no clock)
    runs: int = 0  # core operations it took (tiling)
    select_cycles: int | None = None  # the select unit's cycles for S (None: not in RTL)
    select_exposed: int | None = None  # of the batch's select cycles, those no GEMM hid


class GemmBackend:
    """Base class: the interface :mod:`sw.hil` uses. Subclasses override :meth:`_run`."""

    name = "?"
    pes = 64  # PE count of the 8x8 core, for the ideal-cycle bound
    selects = False  # makes S with its own threshold-select unit (GemmOut.select_cycles)

    def start(self) -> None:
        """Acquire what the backend needs (model, process, port); raise BackendError if not."""

    def close(self) -> None:
        """Release it (idempotent): stop the simulator process, close the port."""

    def timing(self) -> dict:
        """Cumulative simulator figures (cycles, wall and CPU seconds); empty without a clock."""
        return {}

    def run(self, jobs: list[GemmJob]) -> list[GemmOut]:
        for j in jobs:
            if j.d.dtype != np.int8 or j.s.dtype != np.int8:
                raise TypeError(f"{j.label}: operands must be int8, got {j.d.dtype}, {j.s.dtype}")
        return self._run(jobs)

    def _run(self, jobs):  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _macs(d, s) -> int:
    return int(d.shape[0]) * int(np.count_nonzero(s))


def exact_matmul(d: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``D @ S`` of int8 operands as int64, exactly (float64 products and sums of integers
    below ``2**53``; BLAS speed instead of numpy's integer loop)."""
    import torch

    if d.shape[1] >= (1 << 53) // (127 * 127):  # pragma: no cover - far beyond any layer
        raise ValueError("K too large for an exact float64 GEMM")
    c = torch.from_numpy(d).to(torch.float64) @ torch.from_numpy(s).to(torch.float64)
    return c.to(torch.int64).numpy()


class IntrefBackend(GemmBackend):
    """The integer reference on the host (see the module docstring)."""

    name = "intref"

    def _run(self, jobs):
        return [GemmOut(exact_matmul(j.d, j.s), _macs(j.d, j.s)) for j in jobs]


class RtlBackend(GemmBackend):
    """The Verilator model of the core in one persistent simulator process (``sim.harness``).

    ``start`` builds (or reuses) the harness model and starts its process: a model that is not
    built and cannot be built is a :class:`BackendError`. Every batch then runs in that process
    (``sim.gemm.run_gemms(..., sim=core)``); ``close`` asks it to quit (and kills it if it does
    not). The process is a child in the caller's process group, so Ctrl-C reaches it too, and it
    exits on end-of-file of its pipe if the caller dies.
    """

    name = "rtl"

    def __init__(self, rows: int = 8, cols: int = 8):
        self.rows, self.cols = rows, cols
        self.pes = rows * cols
        self.core = None
        self.cycles = 0  # simulated core cycles of all batches (throughput figures)
        self.sim_seconds = 0.0  # wall seconds inside run_gemms
        self.held = {}  # the host's copy of the select unit's held pairs (sim.select_loop)

    @property
    def selects(self) -> bool:
        """Jobs with ``select`` get their ``S`` from the core's threshold-select unit."""
        return self.core is not None and bool(self.core.sel_lanes)

    def start(self) -> None:
        from sim import verilate
        from sim.harness import CoreSim

        try:
            model = verilate.harness_model(self.rows, self.cols)
        except Exception as e:  # noqa: BLE001 - any build failure is reported as one line
            raise BackendError(f"backend rtl: the Verilator model of the {self.rows}x"
                               f"{self.cols} core is not built and cannot be built: "
                               f"{_first_line(e)}") from None
        try:
            self.core = CoreSim(model)
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"backend rtl: the simulator process does not start: "
                               f"{_first_line(e)}") from None

    @property
    def pid(self) -> int | None:
        """Process id of the simulator (``None`` when not running)."""
        return self.core.pid if self.core is not None else None

    def timing(self) -> dict:
        out = {"sim_cycles": self.cycles, "sim_wall_s": round(self.sim_seconds, 3)}
        if self.core is not None:
            out["sim_cpu_s"] = round(self.core.cpu_seconds(), 3)
        return out

    def close(self) -> None:
        core, self.core = self.core, None
        if core is not None:
            core.close()

    def _run(self, jobs):
        import time

        from sim.bench import SimulationError
        from sim.gemm import run_gemms

        if self.core is None:
            raise BackendError("backend rtl: not started")
        t0 = time.perf_counter()
        try:
            if self.selects and all(j.select is not None for j in jobs):
                outs = self._run_selected(jobs)
            else:
                res = run_gemms([(j.d, j.s) for j in jobs], sim=self.core,
                                labels=[j.label for j in jobs])
                outs = [GemmOut(r.c.astype(np.int64), int(r.macs), int(r.cycles), int(r.runs))
                        for r in res]
        except (SimulationError, OSError) as e:
            labels = ", ".join(j.label for j in jobs)
            raise BackendError(f"backend rtl: the simulator failed on {labels}: "
                               f"{_first_line(e)}") from None
        self.sim_seconds += time.perf_counter() - t0
        self.cycles += sum(int(o.cycles) for o in outs)
        return outs

    def _run_selected(self, jobs):
        """The batch with every ``S`` written by the core's select unit (``sim.select_loop``):
        blobs checked word for word against ``s``; a difference is a SimulationError."""
        import dataclasses

        from sim.bench import SimulationError
        from sim.select_loop import run_step

        lj = [dataclasses.replace(j.select, d=j.d, s=j.s) for j in jobs]
        res = run_step(lj, sim=self.core, order=list(range(len(lj))), held=self.held,
                       check_c=False)
        if res.mismatches:
            raise SimulationError(f"the select unit's blob differs from the host's Top-K: "
                                  f"{res.mismatches[0]}")
        return [GemmOut(r["c"], _macs(j.d, j.s), int(r["cycles"]), int(r["runs"]),
                        int(r["select_cycles"]), int(r["exposed_cycles"]))
                for j, r in zip(jobs, res.jobs, strict=True)]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class FpgaBackend(GemmBackend):
    """The core on a board, over UART (the host driver ``SwatFpga`` on a pyserial port)."""

    name = "fpga"
    #: Seconds the driver waits for a reply before it reports the board as not answering. A
    #: board answers within milliseconds; a simulated board on a loaded machine may not.
    reply_timeout_s = 2.0

    def __init__(self, port: str | None = None, baud: int = 115200):
        self.port, self.baud = port, baud
        self.ser = self.dev = None

    def start(self) -> None:
        if not self.port:
            raise BackendError("backend fpga: no serial port given (--port /dev/ttyUSB0)")
        from hw import host_driver as drv

        try:
            import serial
        except ImportError:
            raise BackendError("backend fpga: pyserial is not installed "
                               "(pip install 'swat[fpga]')") from None
        try:
            self.ser = serial.Serial(self.port, self.baud, timeout=self.reply_timeout_s)
            self.dev = drv.SwatFpga(self.ser)
            self.dev.resync()
            info = self.dev.info()
            self.pes = info.rows * info.cols  # the board's array (utilization, MAC bound)
        except Exception as e:  # noqa: BLE001 - serial and bridge errors come in many types
            self.close()
            raise BackendError(f"backend fpga: no core on serial port {self.port}: "
                               f"{_first_line(e)}") from None

    def close(self) -> None:
        ser, self.ser, self.dev = self.ser, None, None
        if ser is not None:
            ser.close()

    def _run(self, jobs):
        out = []
        for j in jobs:
            try:
                r = self.dev.gemm(j.d, j.s)
            except Exception as e:  # noqa: BLE001
                raise BackendError(f"backend fpga: the board failed on {j.label}: {e}") from None
            out.append(GemmOut(np.asarray(r.c, dtype=np.int64), int(r.macs), int(r.cycles),
                               int(r.tiles)))
        return out


def make_backend(name: str, **kw) -> GemmBackend | None:
    """The backend called ``name`` (not started); ``None`` for ``"torch"`` (the float path)."""
    if name == "torch":
        return None
    if name == "intref":
        return IntrefBackend()
    if name == "rtl":
        return RtlBackend(**{k: v for k, v in kw.items() if k in ("rows", "cols")})
    if name == "fpga":
        return FpgaBackend(**{k: v for k, v in kw.items() if k in ("port", "baud")})
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
