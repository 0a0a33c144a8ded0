"""Double-buffered, sub-banked S buffer: the threshold-select unit fills one while a GEMM reads
the other.

The core's S buffer holds the compressed-S blob the loader reads. To overlap the Top-K select
with the GEMMs (``docs/threshold-select.md``, "Scheduling") there are ``buffers`` (2) copies:
the select unit writes the blob of the next GEMM into one while the running GEMM reads the
other. Its writes wait ("bank ready" = ``select_write.ready``) while the running GEMM reads the
buffer they address, so a blob in use is never overwritten. Each buffer is split into
``sub_banks`` memories, word ``a`` in sub-bank ``a % sub_banks`` at row ``a // sub_banks``, so
that the unit's ``banks``-wide writes (``hw.select_writer.BlobWriter``, ``banks =
sub_banks``) land in one cycle; a read port reads its row from every sub-bank and keeps the
addressed one (latency 1, like a plain memory port).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .params import check_int, rejected_unused
from .select_layouts import write_layout

__all__ = ["SBuffer"]


class SBuffer(wiring.Component):
    """``buffers`` S buffers of ``depth`` 32-bit words, each in ``sub_banks`` sub-banks.

    Parameters
    ----------
    depth : int
        Words of one buffer (a multiple of ``sub_banks``).
    read_ports : int
        Read ports (the loader's: ``cols + 1``).
    buffers : int
        1 or 2.
    sub_banks : int
        Power of two; the select unit's ``banks``.
    place_memories : bool
        Add :attr:`memories` as submodules here (default); ``False`` when the owner places
        them itself (e.g. at the top level, where a simulator finds them by name).
    write_domain : str
        Clock domain of the memories' write ports (default ``"sync"``; the core's
        ``gemm_clock_gate`` puts them on the select unit's clock, a simulation-only build).

    Members
    -------
    host_write : ``Out(WritePort.Signature(addr_width=ceil_log2(depth) + buffer bits, shape=32))``
        The host's writes; the buffer number is the address's top bit(s). It has priority over
        the select unit.
    select_write : ``In(stream.Signature(write_layout(sub_banks, row bits)))``
        The threshold-select unit's ``o``: slot ``b`` writes row ``addr[b]`` of sub-bank ``b``
        of buffer ``bank``. ``ready`` (bank ready) is low while the host writes or while the
        running GEMM (``gemm_busy``) reads buffer ``bank``.
    gemm_buffer : ``In(1)``, gemm_busy : ``In(1)``
        The buffer the loader's read ports read, and whether a GEMM is running on it.
    read : ``Out(ReadPort.Signature(addr_width=ceil_log2(depth), shape=32)).array(read_ports)``
        The loader's ports, into buffer ``gemm_buffer``; synchronous, latency 1.

    Attributes
    ----------
    memories : list of Memory
        One per sub-bank (``sub_bank<b>`` in the design): word ``a`` of buffer ``f`` is row
        ``Cat(a // sub_banks, f)`` of ``memories[a % sub_banks]``, for preloading.
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, depth, read_ports, buffers=2, sub_banks=1, place_memories=True,
                 write_domain="sync"):
        check_int("SBuffer", "depth", depth, minimum=1)
        check_int("SBuffer", "read_ports", read_ports, minimum=1)
        check_int("SBuffer", "buffers", buffers, minimum=1, maximum=2)
        check_int("SBuffer", "sub_banks", sub_banks, minimum=1)
        if sub_banks & (sub_banks - 1) or depth % sub_banks:
            raise ValueError(f"SBuffer: sub_banks must be a power of two dividing depth "
                             f"({depth}), not {sub_banks}")
        self.depth, self.buffers, self.sub_banks = depth, buffers, sub_banks
        self.addr_width = max(1, ceil_log2(depth))
        self.sub_bits = exact_log2(sub_banks)
        self.row_width = max(1, self.addr_width - self.sub_bits)
        self.buffer_bits = ceil_log2(buffers)
        super().__init__({
            "host_write": Out(WritePort.Signature(addr_width=self.addr_width + self.buffer_bits,
                                                  shape=32)),
            "select_write": In(stream.Signature(write_layout(sub_banks, self.row_width))),
            "gemm_buffer": In(1),
            "gemm_busy": In(1),
            "read": Out(ReadPort.Signature(addr_width=self.addr_width, shape=32)
                        ).array(read_ports),
        })
        # created here so that testbenches and simulators can preload them: word a of buffer
        # f is row Cat(a // sub_banks, f) of memories[a % sub_banks]
        rows = depth // sub_banks if buffers == 1 else (1 << self.row_width) * buffers
        self.memories = [Memory(shape=32, depth=rows, init=[]) for _ in range(sub_banks)]
        self.place_memories = place_memories
        # ports requested now: the owner may elaborate the memories before this component
        self._write_ports = [mem.write_port(domain=write_domain) for mem in self.memories]
        self._read_ports = [[mem.read_port() for _ in range(read_ports)]
                            for mem in self.memories]

    def locate(self, addr, buffer=0):
        """``(memory, row)`` holding word ``addr`` of buffer ``buffer`` (for preloading and
        reading back in a testbench): ``memories[addr % sub_banks]``, row ``addr // sub_banks``
        with the buffer number above it."""
        if not 0 <= addr < self.depth or not 0 <= buffer < self.buffers:
            raise ValueError(f"SBuffer: word {addr} of buffer {buffer} is outside "
                             f"{self.buffers} x {self.depth} words")
        row = addr >> self.sub_bits | buffer << self.row_width
        return self.memories[addr % self.sub_banks], row

    def elaborate(self, platform):
        m = Module()
        host, select = self.host_write, self.select_write
        sub_bits, row_width = self.sub_bits, self.row_width
        # one memory per sub-bank holds the rows of every buffer: row address = Cat(row, buffer)
        host_row = Cat(host.addr[sub_bits:self.addr_width], host.addr[self.addr_width:])
        select_buffer = select.payload.bank if self.buffers > 1 else Const(0, 0)
        read_buffer = self.gemm_buffer if self.buffers > 1 else Const(0, 0)
        m.d.comb += select.ready.eq(~host.en & ~(self.gemm_busy &
                                                 (select.payload.bank == self.gemm_buffer)))
        sub_bank_read = [Signal(max(1, sub_bits), name=f"read{j}_sub_bank")
                         for j in range(len(self.read))]
        for j, port in enumerate(self.read):  # the sub-bank a read addressed, one cycle later
            with m.If(port.en & (sub_bits > 0)):
                m.d.sync += sub_bank_read[j].eq(port.addr[:sub_bits])
        for sub in range(self.sub_banks):
            mem = self.memories[sub]
            if self.place_memories:
                m.submodules[f"sub_bank{sub}"] = mem
            write = self._write_ports[sub]
            host_here = host.en & ((host.addr[:sub_bits] == sub) if sub_bits else 1)
            with m.If(host_here):
                m.d.comb += [write.en.eq(1), write.addr.eq(host_row), write.data.eq(host.data)]
            with m.Elif(select.valid & select.ready & select.payload.en[sub]):
                m.d.comb += [write.en.eq(1),
                             write.addr.eq(Cat(select.payload.addr[sub][:row_width],
                                               select_buffer)),
                             write.data.eq(select.payload.data[sub])]
            for j, port in enumerate(self.read):
                read = self._read_ports[sub][j]
                m.d.comb += [read.addr.eq(Cat(port.addr[sub_bits:], read_buffer)),
                             read.en.eq(port.en)]
                with m.If((sub_bank_read[j] == sub) if sub_bits else 1):
                    m.d.comb += port.data.eq(read.data)
        return m
