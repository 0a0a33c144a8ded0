"""A module and its reference run side by side in one Amaranth simulation, compared every cycle
(``test_dispatcher``, ``test_loader``: a faster form against the logic it replaced)."""

from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

__all__ = ["lockstep", "port"]


def port(dut, name: str):
    """``dut.desc.valid`` for ``"desc.valid"``, ``dut.out[2].payload`` for ``"out.2.payload"``."""
    for part in name.split("."):
        dut = dut[int(part)] if part.isdigit() else getattr(dut, part)
    return dut


class _Pair(Elaboratable):
    """``new`` and ``ref`` reading one S buffer that holds ``words``, each through its own read
    ports (``s_rd``: one port or a list of them)."""

    def __init__(self, new, ref, words, depth):
        self.new, self.ref = new, ref
        self.mem = Memory(shape=32, depth=depth, init=[int(w) for w in words])
        self.sync = ClockDomain("sync")  # its reset: ``lockstep``'s ``reset``

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.sync
        m.submodules.new, m.submodules.ref, m.submodules.mem = self.new, self.ref, self.mem
        for x in (self.new, self.ref):
            for p in x.s_rd if isinstance(x.s_rd, (list, tuple)) else [x.s_rd]:
                wiring.connect(m, p, self.mem.read_port())
        return m


def lockstep(new, ref, words, depth, *, cycles, drive, outputs, payloads=(), constants=None,
             after=None, reset=None) -> int:
    """Simulate ``new`` beside its reference ``ref`` on an S buffer of ``depth`` words holding
    ``words`` for ``cycles`` cycles; ports are named as :func:`port` reads them.

    ``constants`` (``{port: value}``) are set on both once; every cycle ``drive(cycle)`` gives
    the inputs (``{port: value}``) set on both, then each port of ``outputs`` must be equal on
    both (an ``AssertionError`` names it and the cycle), and for each ``(valid, payload)`` of
    ``payloads`` whose ``valid`` is high (a port of ``new``, or a function of the cycle) the
    payloads must be equal; then ``after(cycle, get)`` may read ``new``'s ports
    (``get(name)``) for the next cycle's stimulus. ``reset(cycle)``: the ``sync`` domain's
    reset in that cycle (default: low). Returns the count of payloads compared."""
    checked = 0
    pair = _Pair(new, ref, words, depth)

    async def tb(ctx):
        nonlocal checked
        for x in (new, ref):
            for name, v in (constants or {}).items():
                ctx.set(port(x, name), v)
        for cyc in range(cycles):
            ctx.set(pair.sync.rst, bool(reset is not None and reset(cyc)))
            ins = drive(cyc)
            for x in (new, ref):
                for name, v in ins.items():
                    ctx.set(port(x, name), int(v))
            for name in outputs:
                assert ctx.get(port(new, name)) == ctx.get(port(ref, name)), (name, cyc)
            for valid, payload in payloads:
                if valid(cyc) if callable(valid) else ctx.get(port(new, valid)):
                    assert ctx.get(port(new, payload)) == ctx.get(port(ref, payload)), \
                        (payload, cyc)
                    checked += 1
            if after is not None:
                after(cyc, lambda name: ctx.get(port(new, name)))
            await ctx.tick()

    sim = Simulator(pair)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return checked
