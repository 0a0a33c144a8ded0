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
    the Verilator model of the core. A persistent simulator process (started once per run by
    :meth:`GemmBackend.start`, fed batch after batch, stopped by :meth:`GemmBackend.close`) when
    the fast harness is available, otherwise one ``sim.run_gemms`` invocation per batch.
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
    """One integer GEMM of a layer pass: ``label`` is ``"<layer>:<pass>"`` for messages."""

    d: np.ndarray  # int8 [M, K]
    s: np.ndarray  # int8 [K, N]
    label: str = ""


@dataclass
class GemmOut:
    """Exact result and hardware cost of one :class:`GemmJob`."""

    c: np.ndarray  # int64 [M, N]
    macs: int  # effectual MACs: M * nnz(S)
    cycles: int | None = None  # core cycles (None: the backend has no clock)
    runs: int = 0  # core operations it took (tiling)


class GemmBackend:
    """Base class: the interface :mod:`sw.hil` uses. Subclasses override :meth:`_run`."""

    name = "?"
    pes = 64  # PE count of the 8x8 core, for the ideal-cycle bound

    def start(self) -> None:
        """Acquire what the backend needs (model, process, port); raise BackendError if not."""

    def close(self) -> None:
        """Release it (idempotent): stop the simulator process, close the port."""

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
    """The Verilator model of the 8×8 core.

    ``start`` builds (or reuses) the model and, when the persistent harness exists, starts its
    process; a model that is not built and cannot be built is a :class:`BackendError`.
    """

    name = "rtl"

    def __init__(self, rows: int = 8, cols: int = 8):
        self.rows, self.cols = rows, cols
        self.pes = rows * cols
        self.model = None
        self.session = None

    def start(self) -> None:
        try:
            from sim import verilate
        except ImportError as e:  # pragma: no cover - sim/ is part of the package
            raise BackendError(f"backend rtl: the simulator package is missing ({e})") from None
        try:
            self.model = verilate.core_model(self.rows, self.cols)
        except Exception as e:  # noqa: BLE001 - any build failure is reported as one line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"backend rtl: the Verilator model of the {self.rows}x"
                               f"{self.cols} core is not built and cannot be built: "
                               f"{first}") from None
        self.session = _open_session(self.model)

    def close(self) -> None:
        s, self.session = self.session, None
        if s is not None:
            s.close()

    def _run(self, jobs):
        from sim.bench import SimulationError

        pairs = [(j.d, j.s) for j in jobs]
        try:
            if self.session is not None:
                res = self.session.run_gemms(pairs)
            else:
                from sim.gemm import run_gemms

                res = run_gemms(pairs, model=self.model)
        except (SimulationError, OSError, EOFError, BrokenPipeError) as e:
            labels = ", ".join(j.label for j in jobs)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"backend rtl: the simulator failed on {labels}: {first}") \
                from None
        return [GemmOut(r.c.astype(np.int64), int(r.macs), int(r.cycles), int(r.runs))
                for r in res]


def _open_session(model):
    """The persistent simulator process of the fast harness, or ``None`` if it does not exist."""
    try:
        from sim import session as sess  # the persistent harness, when it is there
    except ImportError:
        return None
    return sess.open(model)  # pragma: no cover - depends on the harness


class FpgaBackend(GemmBackend):
    """The core on a board, over UART (the host driver ``SwatFpga`` on a pyserial port)."""

    name = "fpga"

    def __init__(self, port: str | None = None, baud: int = 115200):
        self.port, self.baud = port, baud
        self.ser = self.dev = None

    def start(self) -> None:
        if not self.port:
            raise BackendError("backend fpga: no serial port given (--port /dev/ttyUSB0)")
        drv = _fpga_driver()
        if drv is None:
            raise BackendError("backend fpga: the UART host driver is not installed")
        try:
            import serial
        except ImportError:
            raise BackendError("backend fpga: pyserial is not installed "
                               "(pip install 'swat[fpga]')") from None
        try:
            self.ser = serial.Serial(self.port, self.baud, timeout=2.0)
            self.dev = drv.SwatFpga(self.ser)
            self.dev.resync()
        except Exception as e:  # noqa: BLE001 - serial and bridge errors come in many types
            self.close()
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"backend fpga: no core on serial port {self.port}: "
                               f"{first}") from None

    def close(self) -> None:
        ser, self.ser, self.dev = self.ser, None, None
        if ser is not None:
            ser.close()

    def _run(self, jobs):  # pragma: no cover - needs a board
        out = []
        for j in jobs:
            try:
                r = self.dev.gemm(j.d, j.s)
            except Exception as e:  # noqa: BLE001
                raise BackendError(f"backend fpga: the board failed on {j.label}: {e}") from None
            out.append(GemmOut(np.asarray(r.c, dtype=np.int64), int(r.macs), int(r.cycles),
                               int(r.tiles)))
        return out


def _fpga_driver():
    """The module of the UART host driver (moving from ``sim/fpga.py`` into ``hw/``)."""
    import importlib

    for mod in ("hw.host.fpga", "hw.fpga", "hw.host_driver", "sim.fpga"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        if hasattr(m, "SwatFpga"):
            return m
    return None


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
