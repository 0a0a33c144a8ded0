"""Board tops: UART pins -> :class:`hw.host_bridge.HostBridge` -> ``SwatCore``, plus the clocks.

:class:`SwatSystem` is the platform-independent part (UART receiver and transmitter, bridge, core
and status LEDs) and is what the simulation tests drive. :class:`ICEBreakerTop` and
:class:`ULX3STop` add a PLL from the board oscillator, a power-on reset held until the PLL locks
(and, on iCE40, long enough for the BRAMs to wake up) and the pin buffers.
"""

import functools

from amaranth.hdl import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from .host_bridge import CORE_MEMBERS, HostBridge
from .params import rejected_unused
from .port_slice import PortSlice
from .register_slice import RegisterSlice
from .uart import UARTRx, UARTTx, divisor_for

__all__ = ["SwatSystem", "ICEBreakerTop", "ULX3STop", "ice40_pll_params", "ecp5_pll_params"]


class SwatSystem(wiring.Component):
    """UART + bridge + core. ``core`` is a component with the host members of
    ``hw.core.SwatCore`` (``d_write``, ``s_write``, ``c_read``, ``ctrl``; docs/core-interface.md)
    and attributes ``rows``/``cols``/``d_depth``/``s_depth``/``c_depth``; by default a
    ``SwatCore`` is built from the keyword arguments.

    A register slice (``hw.register_slice``) sits on each byte stream between the UART and the
    bridge: the UART is placed by its pins and the bridge by the core, and the slices let the
    placer cut that distance into registered hops (the bridge's transmit control into the UART
    was a ULX3S critical path, ``bitstreams/ulx3s/analysis.md``).

    Between the bridge and the core, on every platform but the iCE40 (:meth:`port_slices`),
    a :class:`~hw.port_slice.PortSlice` registers the control port (``ctrl``: ``start`` and
    the shape in, status, counters and result-log counts out) and another the C read port, so
    that no bridge logic lies between two core registers (the core's ``busy`` → the bridge's
    ``start`` → the reset of the core's log counts was a ULX3S critical path). The bridge is
    told: it waits ``2 * stages`` more cycles for C read data (``c_read_latency``) and takes
    the core as busy for the cycles in which its ``busy`` is still on the way
    (``ctrl_delay``). The protocol and its replies are the same.

    ``busy``, ``done``, ``error`` and ``error_code`` (the board LEDs) are the bridge's view:
    behind the slice."""

    #: registers per direction of the bridge-to-core slices (:meth:`port_slices`)
    SLICE_STAGES = 1

    @rejected_unused  # SwatCore refusing a parameter leaves no half-made system to warn
    def __init__(self, *, divisor: int, core=None, rows=8, cols=8, d_depth=512, s_depth=512,
                 c_depth=256, timeout=None, clk_hz=0, **core_extra):
        if core is None:
            from .core import SwatCore

            core = SwatCore(rows=rows, cols=cols, d_depth=d_depth, s_depth=s_depth,
                            c_depth=c_depth, **core_extra)
        self.core = core
        self.divisor = divisor
        # default inter-byte timeout: 1000 byte times (~87 ms at 115200 baud), long enough for
        # USB-serial packet gaps inside a burst, short enough for a quick resynchronisation
        self.timeout = timeout if timeout is not None else 1000 * 10 * divisor
        self.clk_hz = clk_hz
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1), "done": Out(1), "error": Out(1), "error_code": Out(4),
        })

    @classmethod
    def port_slices(cls, platform) -> int:
        """Register stages between bridge and core: :attr:`SLICE_STAGES`, none on the iCE40
        (its design is nearly full, ~4,840 of 5,280 LCs, and meets its 30 MHz without)."""
        return 0 if str(getattr(platform, "family", "")).lower() == "ice40" else cls.SLICE_STAGES

    def elaborate(self, platform):
        m = Module()
        core = self.core
        m.submodules.core = core
        stages = self.port_slices(platform)
        m.submodules.uart_rx = rx = UARTRx(self.divisor)
        m.submodules.uart_tx = tx = UARTTx(self.divisor)
        m.submodules.bridge = bridge = HostBridge(
            core.signature, rows=core.rows, cols=core.cols, d_depth=core.d_depth,
            s_depth=core.s_depth, c_depth=core.c_depth, timeout=self.timeout,
            clk_hz=self.clk_hz,
            c_read_latency=getattr(core, "C_READ_LATENCY", 1) + 2 * stages,
            ctrl_delay=stages)
        m.submodules.rx_slice = rx_slice = RegisterSlice(8)
        m.submodules.tx_slice = tx_slice = RegisterSlice(8)
        wiring.connect(m, rx.o, rx_slice.i)
        wiring.connect(m, rx_slice.o, bridge.rx)
        wiring.connect(m, bridge.tx, tx_slice.i)
        wiring.connect(m, tx_slice.o, tx.i)
        for name in CORE_MEMBERS:
            if stages and name in ("ctrl", "c_read"):
                m.submodules[f"{name}_slice"] = piece = PortSlice(
                    core.signature.members[name].signature, stages=stages)
                wiring.connect(m, piece.inner, getattr(core, name))
                wiring.connect(m, getattr(bridge, name), piece.outer)
            else:
                wiring.connect(m, getattr(bridge, name), getattr(core, name))
        ctrl = bridge.ctrl
        m.d.comb += [
            rx.rx.eq(self.rx),
            self.tx.eq(tx.tx),
            bridge.rx_overrun.eq(rx.overrun),
            bridge.rx_frame_error.eq(rx.frame_error),
            rx.clear.eq(bridge.rx_clear),
            self.busy.eq(ctrl.busy), self.done.eq(ctrl.done), self.error.eq(ctrl.error),
            self.error_code.eq(ctrl.error_code),
        ]
        return m


# -- PLL parameter search -----------------------------------------------------------------

def ice40_pll_params(f_in: float, f_out: float) -> dict:
    """SB_PLL40 SIMPLE-feedback parameters closest to ``f_out`` (the icepll rules)."""
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f = f_vco / 2 ** divq
                if best is None or abs(f - f_out) < abs(best["f_out"] - f_out):
                    best = dict(DIVR=divr, DIVF=divf, DIVQ=divq, f_out=f, f_vco=f_vco,
                                f_pfd=f_pfd)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting for {f_in} -> {f_out}")
    pfd = best["f_pfd"]
    best["FILTER_RANGE"] = next(i for i, lim in enumerate(
        [17e6, 26e6, 44e6, 66e6, 101e6, float("inf")], start=1) if pfd < lim)
    return best


def ecp5_pll_params(f_in: float, f_out: float) -> dict:
    """EHXPLLL parameters (feedback from CLKOP) closest to ``f_out`` (the ecppll rules)."""
    best, best_key = None, None
    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            f = f_pfd * clkfb_div
            for clkop_div in range(1, 129):
                f_vco = f * clkop_div
                if not 400e6 <= f_vco <= 800e6:
                    continue
                # closest frequency first, then the VCO nearest the middle of its range
                key = (abs(f - f_out), abs(f_vco - 600e6))
                if best is None or key < best_key:
                    best_key = key
                    best = dict(CLKI_DIV=clki_div, CLKFB_DIV=clkfb_div, CLKOP_DIV=clkop_div,
                                f_out=f, f_vco=f_vco)
    if best is None:
        raise ValueError(f"no ECP5 PLL setting for {f_in} -> {f_out}")
    best["CLKOP_CPHASE"] = best["CLKOP_DIV"] // 2 - 1 if best["CLKOP_DIV"] > 1 else 0
    return best


class _BoardTop(Elaboratable):
    """Common part of the board tops; subclasses provide ``_clocking``."""

    clk_in_hz: float

    def __init__(self, *, f_sync: float, baud: int = 115200, **core_kwargs):
        # PLL and divisor are worked out on first use: a constructor that raised would leave
        # a half-made elaboratable behind (and an "unused" warning at exit)
        self.f_requested = f_sync
        self.baud = baud
        self.core_kwargs = core_kwargs

    @functools.cached_property
    def pll(self) -> dict:
        """PLL parameters for the requested clock (``f_out`` is what the PLL makes)."""
        return self._pll_params(self.f_requested)

    @property
    def f_sync(self) -> float:
        """The ``sync`` clock in Hz: the PLL's output nearest the requested frequency."""
        return self.pll["f_out"]

    @property
    def divisor(self) -> int:
        """UART clocks per bit at ``f_sync``; raises if ``baud`` is unreachable."""
        return divisor_for(self.f_sync, self.baud)

    def system(self):
        """The :class:`SwatSystem` (``core=`` in the constructor's keywords injects a core)."""
        return SwatSystem(divisor=self.divisor, clk_hz=int(self.f_sync), **self.core_kwargs)

    def _reset(self, m, platform, locked, por_cycles):
        """``sync`` reset: held while the PLL is unlocked and ``por_cycles`` after lock."""
        m.domains.por = ClockDomain("por", reset_less=True)
        m.d.comb += ClockSignal("por").eq(ClockSignal("sync"))
        count = Signal(range(por_cycles + 1))
        ready = Signal()
        with m.If(~locked):
            m.d.por += count.eq(0)
        with m.Elif(count != por_cycles):
            m.d.por += count.eq(count + 1)
        m.d.comb += ready.eq(count == por_cycles)
        m.submodules.reset_sync = ResetSynchronizer(~ready, domain="sync")

    def elaborate(self, platform):
        system = self.system()  # first: it raises for an unreachable clock or baud rate
        m = Module()
        m.domains.sync = ClockDomain("sync")
        self._clocking(m, platform)
        m.submodules.system = system
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [system.rx.eq(rx_buf.i), tx_buf.o.eq(system.tx)]
        leds = self._leds(platform)
        status = [system.error, system.done, system.busy, *system.error_code]
        for i, (led, value) in enumerate(zip(leds, status, strict=False)):
            m.submodules[f"led{i}_buf"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(value)
        return m

    def _leds(self, platform):
        out = []
        for i in range(8):
            try:
                out.append(platform.request("led", i, dir="-"))
            except Exception:  # ResourceError: the board has fewer LEDs
                break
        return out


class ICEBreakerTop(_BoardTop):
    """iCEBreaker (iCE40UP5K-SG48): 12 MHz oscillator on pin 35 -> SB_PLL40_PAD -> ``sync``.

    LEDs: red (led 0) = core error, green (led 1) = done."""

    clk_in_hz = 12e6

    def _pll_params(self, f_sync):
        return ice40_pll_params(self.clk_in_hz, f_sync)

    def _clocking(self, m, platform):
        p = self.pll
        clk12 = platform.request("clk12", dir="-")
        locked = Signal(name="pll_locked")
        clk = Signal(name="pll_clk")
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=Const(p["DIVR"], 4), p_DIVF=Const(p["DIVF"], 7), p_DIVQ=Const(p["DIVQ"], 3),
            p_FILTER_RANGE=Const(p["FILTER_RANGE"], 3),
            io_PACKAGEPIN=clk12.io,
            i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clk, o_LOCK=locked,
        )
        m.d.comb += ClockSignal("sync").eq(clk)
        # no explicit constraint on the PLL output: nextpnr derives it from the oscillator's
        # (``set_frequency clk12``) and the PLL parameters, and names the net itself
        # iCE40 BRAMs read as zero for ~3 us after configuration: hold reset >= 20 us
        self._reset(m, platform, locked, max(16, int(20e-6 * self.f_sync)))


class ULX3STop(_BoardTop):
    """ULX3S (LFE5U-85F-6BG381C, speed grade 6): 25 MHz oscillator -> EHXPLLL -> ``sync``.

    LEDs 0..7: error, done, busy, error code bits 0..3."""

    clk_in_hz = 25e6

    def _pll_params(self, f_sync):
        return ecp5_pll_params(self.clk_in_hz, f_sync)

    def _clocking(self, m, platform):
        p = self.pll
        clk25 = platform.request("clk25", dir="-")
        m.submodules.clk25_buf = clk_buf = io.Buffer("i", clk25)
        locked = Signal(name="pll_locked")
        clk = Signal(name="pll_clk")
        m.submodules.pll = Instance(
            "EHXPLLL",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
            p_CLKOP_ENABLE="ENABLED", p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=p["CLKFB_DIV"],
            i_CLKI=clk_buf.i, i_CLKFB=clk, i_RST=Const(0), i_STDBY=Const(0),
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(0),
            i_PHASESTEP=Const(0), i_PHASELOADREG=Const(0), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0),
            o_CLKOP=clk, o_LOCK=locked,
            a_FREQUENCY_PIN_CLKI=f"{self.clk_in_hz / 1e6:.6f}",
            a_FREQUENCY_PIN_CLKOP=f"{self.f_sync / 1e6:.6f}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
        )
        m.d.comb += ClockSignal("sync").eq(clk)
        # constraint derived by nextpnr from FREQUENCY PORT clk25 through the PLL
        self._reset(m, platform, locked, 64)
