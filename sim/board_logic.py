"""The logic of a board for the simulated board (``python -m sim.board``): bridge + core, no pins.

A board top (``hw.board_top``) is a PLL, a reset and pin buffers around
:class:`hw.board_top.SwatSystem` (UART receiver and transmitter, :class:`hw.host_bridge.HostBridge`
and ``hw.core.SwatCore``). Verilator cannot run the PLL and does not need the pins, so
:class:`BoardLogic` is the part below them, in one of two forms:

``divisor = 0`` (byte streams)
    :class:`~hw.host_bridge.HostBridge` wired to the core exactly as ``SwatSystem`` wires them,
    with the bridge's byte streams ``rx``/``tx`` (valid/ready) as the top-level ports instead of
    the UART and its register slices: a byte per clock cycle each way at most, so the simulated
    board moves bytes about as fast as the model clocks. The UART's overrun and framing flags are
    0 (a stream loses nothing).
``divisor > 0`` (bit-level UART)
    ``SwatSystem`` itself with ``divisor`` clocks per bit: the board's logic bit for bit, rx and
    tx pins as the ports; ``10 * divisor`` cycles per byte.

Both have ``busy`` (the core is running): the simulator clocks the model while it is set even
when no byte moves.
"""

from __future__ import annotations

import inspect

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.board_top import SwatSystem
from hw.contract.protocol import PROTOCOL_VERSION, PROTOCOL_VERSION_LOGS
from hw.host_bridge import CORE_MEMBERS, HostBridge, c_read_space
from hw.params import rejected_unused

__all__ = ["BoardLogic", "DEFAULT_TIMEOUT"]

#: the bridge's inter-byte timeout in clock cycles: a partial frame is abandoned after this many
#: cycles without a byte (the simulator clocks it out after a quiet spell of wall time)
DEFAULT_TIMEOUT = 4096


class BoardLogic(wiring.Component):
    """UART-less (``divisor=0``) or bit-level (``divisor>0``) board logic around a core.

    Parameters
    ----------
    divisor : int
        0 for byte streams, else UART clocks per bit (at least 4, as ``hw.uart.UARTRx``).
    timeout : int
        The bridge's inter-byte timeout in cycles (at least 100 byte times on the UART).
    **core_kwargs
        ``hw.core.SwatCore``'s parameters (``rows``, ``cols``, the buffer depths, ...).
    """

    def __new__(cls, *, divisor: int = 0, timeout: int = DEFAULT_TIMEOUT, **core_kwargs):
        # the checks run before the object exists: a board logic (or a core, or half a
        # bridge) left behind by a rejected size warns "created but never used" when collected
        cls.check(divisor=divisor, **core_kwargs)
        return super().__new__(cls, src_loc_at=1)

    @staticmethod
    def check(*, divisor: int = 0, **core_kwargs):
        """Raise ``ValueError`` for a divisor or buffer sizes this board logic cannot take
        (the bridge's rules, ``hw.host_bridge.c_read_space``; the core checks the rest)."""
        from hw.core import SwatCore

        if not isinstance(divisor, int) or divisor < 0 or 0 < divisor < 4:
            raise ValueError(f"divisor must be 0 (byte streams) or at least 4, not {divisor!r}")
        sizes = {name: p.default for name, p in inspect.signature(SwatCore).parameters.items()
                 if p.default is not inspect.Parameter.empty}
        sizes.update(core_kwargs)
        c_read_space(**{k: sizes[k] for k in ("cols", "d_depth", "s_depth", "c_depth",
                                              "result_logs")})

    @rejected_unused  # the core refused its parameters (SwatCore's own checks)
    def __init__(self, *, divisor: int = 0, timeout: int = DEFAULT_TIMEOUT, **core_kwargs):
        from hw.core import SwatCore

        self.divisor = divisor
        self.timeout = max(int(timeout), 1000 * divisor)
        self.core = SwatCore(**core_kwargs)
        c = self.core
        self.rows, self.cols = c.rows, c.cols
        self.d_depth, self.s_depth, self.c_depth = c.d_depth, c.s_depth, c.c_depth
        #: cycles from a C read address to its data: the bridge waits this long between the
        #: words of a READ_C reply (the simulator's idle grace covers it)
        self.c_read_latency = getattr(c, "C_READ_LATENCY", 1)
        logs = "results" in c.signature.members["ctrl"].signature.members
        #: INFO's version byte (the bridge's rule: result logs -> protocol 2)
        self.version = PROTOCOL_VERSION_LOGS if logs else PROTOCOL_VERSION
        if divisor:
            members = {"rx": In(1, init=1), "tx": Out(1, init=1)}
        else:
            members = {"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8))}
        super().__init__({**members, "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        core = self.core
        if self.divisor:
            m.submodules.system = system = SwatSystem(divisor=self.divisor, core=core,
                                                      timeout=self.timeout)
            m.d.comb += [system.rx.eq(self.rx), self.tx.eq(system.tx),
                         self.busy.eq(system.busy)]
            return m
        m.submodules.core = core
        m.submodules.bridge = bridge = HostBridge(
            core.signature, rows=core.rows, cols=core.cols, d_depth=core.d_depth,
            s_depth=core.s_depth, c_depth=core.c_depth, timeout=self.timeout,
            c_read_latency=self.c_read_latency)
        wiring.connect(m, wiring.flipped(self.rx), bridge.rx)
        wiring.connect(m, bridge.tx, wiring.flipped(self.tx))
        for name in CORE_MEMBERS:
            wiring.connect(m, getattr(bridge, name), getattr(core, name))
        m.d.comb += self.busy.eq(core.ctrl.busy)
        return m
