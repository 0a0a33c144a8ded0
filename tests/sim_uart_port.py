"""A byte stream into an Amaranth simulation of a design with UART pins: the tests' stand-in
for the serial port of ``hw.host_driver`` (the driver runs against the gateware bit by bit)."""

from __future__ import annotations

from collections import deque

from amaranth.sim import Simulator


class SimUartPort:
    """A byte stream into an Amaranth simulation of a design with UART pins.

    ``dut`` is simulated with a ``sync`` clock; ``rx``/``tx`` are the design's UART input and
    output signals (host → design on ``rx``). ``read(n)`` runs the simulation until ``n`` bytes
    have come out of ``tx`` or ``timeout_cycles`` passed without a new byte; ``write`` queues
    bytes that a host-side UART model shifts into ``rx`` at ``divisor`` clocks per bit.
    """

    PERIOD = 1e-6

    def __init__(self, dut, rx, tx, *, divisor: int, timeout_cycles: int = 20_000,
                 vcd: str | None = None):
        self.divisor = divisor
        self.timeout_cycles = timeout_cycles
        self._rx, self._tx = rx, tx
        self._to_dut: deque[int] = deque()
        self._from_dut = bytearray()
        self.sim = Simulator(dut)
        self.sim.add_clock(self.PERIOD)
        self.sim.add_testbench(self._host_tx, background=True)
        self.sim.add_testbench(self._host_rx, background=True)
        self._vcd = None
        if vcd:
            self._vcd = self.sim.write_vcd(vcd)
            self._vcd.__enter__()
        self.cycles = 0

    def close(self):
        if self._vcd is not None:
            self._vcd.__exit__(None, None, None)
            self._vcd = None

    # Both host-side models wake once per bit (``ctx.delay``), a quarter clock period off the
    # clock edges, instead of once per clock cycle: the design itself dominates the run time.
    async def _host_tx(self, ctx):
        bit_time = self.divisor * self.PERIOD
        ctx.set(self._rx, 1)
        await ctx.delay(self.PERIOD / 4)
        while True:
            if not self._to_dut:
                await ctx.delay(bit_time)
                continue
            byte = self._to_dut.popleft()
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                ctx.set(self._rx, bit)
                await ctx.delay(bit_time)

    async def _host_rx(self, ctx):
        bit_time = self.divisor * self.PERIOD
        while True:
            await ctx.negedge(self._tx)
            await ctx.delay(bit_time / 2 + self.PERIOD / 4)
            if ctx.get(self._tx):
                continue  # glitch
            value = 0
            for i in range(8):
                await ctx.delay(bit_time)
                value |= ctx.get(self._tx) << i
            await ctx.delay(bit_time)
            if ctx.get(self._tx):  # stop bit
                self._from_dut.append(value)

    def write(self, data: bytes) -> int:
        self._to_dut.extend(bytes(data))
        return len(data)

    def _run(self, cycles: int) -> None:
        now = self.sim._engine.now / 1e15
        self.sim.run_until(now + cycles * self.PERIOD)
        self.cycles += cycles

    def read(self, n: int) -> bytes:
        step = 10 * self.divisor
        idle = 0
        have = len(self._from_dut)
        while len(self._from_dut) < n and idle < self.timeout_cycles:
            self._run(step)
            if len(self._from_dut) > have or self._to_dut:
                have, idle = len(self._from_dut), 0
            else:
                idle += step
        out = bytes(self._from_dut[:n])
        del self._from_dut[:n]
        return out
