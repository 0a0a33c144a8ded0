"""``PortSlice``: register stages on every member of an interface, each in its own direction.

Between the host bridge and the core the control nets (``start`` into the core; ``busy``,
``done``, the counters and the result-log counts out of it) and the C read port ran from a
register on one side through the other side's logic into a register there, across the die: the
ULX3S critical path of ``431efd4`` was the core's ``ctrl.busy`` → the ``start`` gate → the reset
of the core's ``ctrl.results`` registers (10.8 ns of its 12.25 ns routing,
``bitstreams/ulx3s/analysis.md``). A slice puts ``stages`` registers on every port member in
between, so that each side's logic starts and ends at its own registers and the placer can cut
the distance into registered hops.

Unlike ``hw.register_slice`` (a stream: a handshake) this is plain delay: every member, ``In``
or ``Out``, arrives ``stages`` cycles late. Whoever drives one side must account for it: a
read answers ``2 * stages`` cycles later (address in, data out), and a status that follows a
command (``busy`` after ``start``) is stale for ``2 * stages`` more cycles than without the
slice (``hw.host_bridge.HostBridge``'s ``ctrl_delay``). Latency: ``stages`` cycles each way.
Throughput: a new value every cycle.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import check_int, rejected_unused

__all__ = ["PortSlice"]


def _member(interface, path):
    for name in path:
        interface = interface[name] if isinstance(name, int) else getattr(interface, name)
    return interface


class PortSlice(wiring.Component):
    """``stages`` registers on each port member of ``signature``, in the member's direction.

    Parameters
    ----------
    signature : wiring.Signature
        The interface as its driver sees it (for the core's ``ctrl``: the core's side, so that
        ``Out`` members are the core's outputs).
    stages : int
        Registers per member, >= 1.

    Members
    -------
    inner : In(signature)
        Faces the interface's driver (for ``ctrl``: the core; ``wiring.connect(m, slice.inner,
        core.ctrl)``).
    outer : Out(signature)
        Faces its user (the bridge: ``wiring.connect(m, bridge.ctrl, slice.outer)``).

    One-bit members (strobes, flags) keep the domain reset; wider members (shapes, counters,
    addresses, data) are reset-less copies, qualified by the flags and correct one cycle after
    the reset, so that the slice adds no load to the reset net.
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, signature: wiring.Signature, *, stages: int = 1):
        self.stages = check_int("PortSlice", "stages", stages, minimum=1)
        super().__init__({"inner": In(signature), "outer": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        for path, member, outer in self.outer.signature.flatten(self.outer):
            src, dst = _member(self.inner, path), outer
            if member.flow == In:  # the user's output: towards the driver
                src, dst = dst, src
            tag = "__".join(str(p) for p in path)
            reset_less = len(dst) > 1
            value = src
            for i in range(self.stages):
                reg = Signal(len(dst), name=f"{tag}_q{i}", init=outer.init,
                             reset_less=reset_less)
                m.d.sync += reg.eq(value)
                value = reg
            m.d.comb += dst.eq(value)
        return m
