"""``SwatCore``: one sparse GEMM ``C[M, N] = D[M, K] @ S[K, N]`` (int8 × int8 → int32).

Ports and buffer layouts are those of ``docs/core-interface.md``. Dataflow (see
``docs/architecture.md``): output-stationary, ``S`` streamed. A work item is column ``n`` of
``S`` over one or more consecutive M-tiles (a *chunk*, see :mod:`hw.dispatcher`); the
:class:`~hw.loader.Loader` hands chunks to PE columns from a shared queue as columns become
free (dynamic assignment), with the column pointers of the next chunks prefetched. Each PE
column streams its chunk's non-zeros ``(k, v)`` from its own S read port, once per M-tile,
reads ``D[mt*rows : mt*rows+rows, k]`` (one D word) from its own D read port and feeds the
:class:`~hw.pe_array.PEArray`. Finished results (one C word per M-tile and column) go, by
default, into the PE column's own result log (:class:`~hw.result_logs.ResultLogs`: up to
``cols`` results retired per cycle, no write select); with ``result_logs=False`` into one C
buffer through an arbitrated write port (:class:`~hw.result_port.ResultPort`, one per cycle).

Pipeline of one entry (cycle of the S read = 0)::

    0 S read  1 S data→reg  2 S reg→reg  3 check→reg  4 D read  5 D data→reg  6 D reg→reg
    7 operand reg  8 product  9 product copy  10 acc/hold  11 log write register, 12 log
    write (result_logs) | C arbitration 11, C write 12

Every block-RAM output goes straight into a register (ECP5 block RAM has a long clock-to-output
and the read-port copies spread over the die), so no logic follows a BRAM in the same cycle.

Latency: ``start`` → first entry read 16 cycles, 13 without the loader's slots (the iCE40)
(M <= 64*rows; ~M/(8*rows) more for taller M: ``hw.contract.cycles.START_LATENCY``); last
entry read → ``done`` 11 cycles.
Throughput: one effectual entry per PE column per cycle (``rows*cols`` MACs per cycle), so an
operation takes about ``ceil(M/rows) * nnz(S) / cols`` cycles plus the start latency and the
tail of the last chunks (``hw.contract.cycles.schedule_cycles`` models it).
"""

from amaranth.hdl import Cat, ClockDomain, Const, DomainRenamer, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .bram import BUFFER_ATTRS, fan_out_writes, read_port
from .core_ports import ControlSignature, SelectSignature
from .loader import Loader
from .params import check_int, rejected_unused
from .pe_array import PEArray
from .result_logs import ResultLogs, log_width, read_latency
from .result_port import ResultPort
from .s_buffer import SBuffer

__all__ = ["SwatCore"]


class SwatCore(wiring.Component):
    """The SWAT sparse GEMM core.

    Parameters
    ----------
    rows : int
        PE rows (M-tile height, D/C lanes per word), >= 1.
    cols : int
        PE columns (work items processed in parallel), >= 1.
    d_depth : int
        Words of the D buffer (``ceil(M/rows) * K`` must fit), >= 2.
    s_depth : int
        Words of the S buffer (the compressed blob must fit), >= 8.
    c_depth : int
        C words an operation may produce (``ceil(M/rows) * N`` must fit), >= 2: the depth of
        each result log, or of the C buffer with ``result_logs=False``.
    hold_depth : int
        Finished results each PE column can hold while waiting for the C write port (default
        2; only with ``result_logs=False``).
    result_logs : bool
        True (default): one C result log per PE column (``hw.result_logs``). False: one C
        buffer written through an arbitrated port (one result per cycle).
    sel_lanes : int
        0 (default): no threshold-select unit. ``> 0``: include a
        :class:`~hw.threshold_select.ThresholdSelect` with that many int8 lanes per beat and its
        ``sel`` ports: the host streams a dense ``S[K, N]`` in (column by column) and the
        survivors of Top-K land compressed in the S buffer (see ``docs/core-interface.md``).
        The S buffer is then double and split into ``sel_banks`` sub-banks (memories
        ``s_mem_<b>``, word ``a`` of buffer ``f`` at ``s_buffer.locate(a, f)``) so that the unit
        writes up to ``sel_banks`` words a cycle: the largest power of two ``<= sel_lanes`` and
        ``<= sel_max_banks`` that divides ``s_depth``.
    sel_max_banks : int
        Most S sub-banks (default 8): a unit wider than that (16 or 32 lanes, for the long
        im2col streams of convolution activations) keeps 8 sub-banks, so the loader's read mux
        stays 8:1 and the S memories stay ``s_mem_0..7``; its writer queues a beat with more
        kept elements than sub-banks (backpressure through its record FIFO).
    sel_index_width : int
        Bits of the select unit's per-lane source index (default 32; 0: none), for the exact
        im2col blob of a selected tensor (``by_index``, ``docs/threshold-select.md``).
    sel_clock_gate : bool
        False (default): the select unit runs on ``sync``. True (needs ``sel_lanes > 0``): the
        unit runs on a clock domain of its own whose clock is the input ``sel_clk`` (the same
        clock as ``sync``, gated), and ``sel_quiet`` tells when it may stop:
        :attr:`ThresholdSelect.quiet <hw.threshold_select.ThresholdSelect>` (no register of the
        unit changes at an edge with no command and no beat offered). The logic is the same;
        the simulation harness (``sim/cpp/core_main.cpp``) gates the clock like a clock-gating
        cell, so the simulator skips the idle unit's logic (Verilator evaluates a clock
        domain's logic only on its edges).
    gemm_clock_gate : bool
        False (default). True (needs ``sel_clock_gate``): the select side's own registers
        (the S buffer's write ports, ``sel.exposed_cycles``, the "unit writes its bank" flag)
        run on the unit's ``sel`` domain instead of ``sync``, so that ``sync`` holds the GEMM
        side only (loader, PE array, results, D buffer, S read ports, control). The logic is
        the same (each of those registers changes only at an edge where the unit is not quiet
        or the host writes S, and those edges reach ``sel``); the simulation harness then
        stops the core's clock too while the GEMM side is idle (``sim/cpp/core_main.cpp``),
        so that a select-only run evaluates the unit and the S buffer's writes, not the idle
        GEMM datapath.

    Members
    -------
    d_write : Out(WritePort.Signature(addr_width=ceil_log2(d_depth), shape=rows*8))
        Host writes of D words.
    s_write : Out(WritePort.Signature(addr_width=ceil_log2(s_depth), shape=32))
        Host writes of compressed-S words.
    c_read : Out(ReadPort.Signature(addr_width=..., shape=...))
        Host reads of C. With result logs: address ``log << ceil_log2(c_depth) | index``, data
        ``lanes | caddr << rows*32`` after ``C_READ_LATENCY`` = ``cols + 2`` cycles. Without:
        address ``mt*N + n``, data ``rows*32`` bits the cycle after (``C_READ_LATENCY`` = 1).
    ctrl : Out(ControlSignature(ceil_log2(s_depth) + 1, logs, ceil_log2(c_depth) + 1))
        Operation control and status (``hw.core_ports``); ``ctrl.results[j]``: entries of
        log ``j``.
    sel : Out(SelectSignature(...)), only with ``sel_lanes > 0``
        The threshold-select unit's host ports (``hw.core_ports``).
    sel_clk : In(1), sel_quiet : Out(1), only with ``sel_clock_gate``
        The unit's clock and its ``quiet`` (see ``sel_clock_gate``).

    All are synchronous to ``sync``; ``docs/core-interface.md`` has the semantics.
    Latency / throughput: see the module docstring.
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, rows: int = 8, cols: int = 8, d_depth: int = 16384,
                 s_depth: int = 8192, c_depth: int = 8192, hold_depth: int = 2,
                 sel_lanes: int = 0, result_logs: bool = True, sel_index_width: int = 32,
                 sel_max_banks: int = 8, sel_clock_gate: bool = False,
                 gemm_clock_gate: bool = False):
        self.rows = check_int("SwatCore", "rows", rows, minimum=1)
        self.cols = check_int("SwatCore", "cols", cols, minimum=1)
        self.d_depth = check_int("SwatCore", "d_depth", d_depth, minimum=2)
        self.s_depth = check_int("SwatCore", "s_depth", s_depth, minimum=8)
        self.c_depth = check_int("SwatCore", "c_depth", c_depth, minimum=2)
        self.hold_depth = check_int("SwatCore", "hold_depth", hold_depth, minimum=1)
        self.sel_lanes = check_int("SwatCore", "sel_lanes", sel_lanes, minimum=0)
        self.sel_index_width = check_int("SwatCore", "sel_index_width", sel_index_width,
                                         minimum=0, maximum=32)
        self.sel_max_banks = check_int("SwatCore", "sel_max_banks", sel_max_banks, minimum=1)
        if not isinstance(result_logs, bool):
            raise TypeError(f"SwatCore: result_logs must be a bool, not {result_logs!r}")
        self.result_logs = result_logs
        if not isinstance(sel_clock_gate, bool):
            raise TypeError(f"SwatCore: sel_clock_gate must be a bool, not {sel_clock_gate!r}")
        if sel_clock_gate and not sel_lanes:
            raise ValueError("SwatCore: sel_clock_gate needs the select unit (sel_lanes > 0)")
        self.sel_clock_gate = sel_clock_gate
        if not isinstance(gemm_clock_gate, bool):
            raise TypeError(f"SwatCore: gemm_clock_gate must be a bool, not {gemm_clock_gate!r}")
        if gemm_clock_gate and not sel_clock_gate:
            raise ValueError("SwatCore: gemm_clock_gate needs the select unit's own clock "
                             "(sel_clock_gate=True)")
        self.gemm_clock_gate = gemm_clock_gate
        self.d_aw, self.s_aw, self.c_aw = ceil_log2(d_depth), ceil_log2(s_depth), ceil_log2(c_depth)
        if result_logs:
            self.C_READ_LATENCY = read_latency(cols)
            c_read = ReadPort.Signature(addr_width=ceil_log2(cols) + self.c_aw,
                                        shape=log_width(rows, c_depth))
            ctrl = ControlSignature(self.s_aw + 1, cols, self.c_aw + 1, s_bank=bool(sel_lanes))
        else:
            self.C_READ_LATENCY = 1
            c_read = ReadPort.Signature(addr_width=self.c_aw, shape=rows * 32)
            ctrl = ControlSignature(self.s_aw + 1, s_bank=bool(sel_lanes))
        members = {
            "d_write": Out(WritePort.Signature(addr_width=self.d_aw, shape=rows * 8)),
            # with the select unit: two S buffers, the buffer number above the word address
            "s_write": Out(WritePort.Signature(addr_width=self.s_aw + bool(sel_lanes),
                                               shape=32)),
            "c_read": Out(c_read),
            "ctrl": Out(ctrl),
        }
        self.sel_unit = None
        self.sel_banks = 0
        if sel_lanes:
            from .threshold_select import ThresholdSelect
            # S sub-banks = words the unit writes a cycle: the largest power of two <= lanes
            # and <= sel_max_banks that divides s_depth and leaves at least two rows per sub-bank
            self.sel_banks = 1
            while (self.sel_banks * 2 <= min(sel_lanes, self.sel_max_banks)
                   and s_depth % (self.sel_banks * 2) == 0
                   and self.sel_banks * 4 <= 1 << self.s_aw):
                self.sel_banks *= 2
            self.sel_unit = ThresholdSelect(lanes=sel_lanes, depth=s_depth, banks=self.sel_banks,
                                            index_width=sel_index_width)
            members["sel"] = Out(SelectSignature(sel_lanes, sel_index_width))
            if sel_clock_gate:
                members["sel_clk"] = In(1)
                members["sel_quiet"] = Out(1)
        super().__init__(members)
        # memories are created here so that testbenches can preload them (ctx.set(mem.data[a], v)
        # for every copy): one copy of D per PE column (``d_mem_<j>``), one of S per PE column
        # and one for the dispatcher (``s_copy_<j>``, ``j = cols``: the dispatcher's), each
        # with its own write port fed by a register tree (``hw.bram.fan_out_writes``); on the
        # iCE40 (``split_buffers``) one memory of each, read by every consumer (``d_mems[0]``,
        # ``s_mems[0]``; see elaborate)
        self.d_mems = [Memory(shape=rows * 8, depth=d_depth, init=[]) for _ in range(cols)]
        if sel_lanes:  # word a of S buffer f: self.s_buffer.locate(a, f) (s_mem_<a % banks>)
            self.s_buffer = SBuffer(depth=s_depth, read_ports=cols + 1, buffers=2,
                                    sub_banks=self.sel_banks, place_memories=False,
                                    write_domain="sel" if gemm_clock_gate else "sync")
            self.s_mems = []
        else:
            self.s_mems = [Memory(shape=32, depth=s_depth, init=[]) for _ in range(cols + 1)]
        if result_logs:
            # read through hw.bram.read_port (no bypass LUT behind the block RAMs); the write
            # has a register stage of its own in ResultLogs
            self.c_logs = [Memory(shape=log_width(rows, c_depth), depth=c_depth, init=[],
                                  attrs=BUFFER_ATTRS) for _ in range(cols)]
        else:
            self.c_mem = Memory(shape=rows * 32, depth=c_depth, init=[], attrs=BUFFER_ATTRS)

    @staticmethod
    def split_buffers(platform):
        """Whether the D and S buffers are one memory per consumer, written through a register
        tree and read without yosys's bypass (everywhere but the iCE40: its build is of one
        memory per buffer, and the tree's registers would not fit the UP5K).

        Why: a synchronous read port on a memory that is also written makes yosys add a
        read-first bypass (a register on the write and a LUT behind every read bit,
        ``hw.bram``); with one memory and ``cols + 1`` read ports, yosys's copies share one
        write port, so the bypass's write register was one set of FFs for every copy, and each
        bypass LUT was placed by it, far from its block RAM (the ULX3S critical path of
        ``d11ad36``: an S copy → 8.5 ns → the bypass LUT → ``fetched``). One memory per
        consumer, read through ``hw.bram.read_port`` (no bypass), each written by its own
        register at the end of a tree (``hw.bram.fan_out_writes``), leaves a block RAM with a
        register on each side that the placer can put next to it.
        """
        return str(getattr(platform, "family", "")).lower() != "ice40"

    def elaborate(self, platform):
        m = Module()
        rows, cols, ctrl = self.rows, self.cols, self.ctrl
        split = self.split_buffers(platform)
        # with split buffers the host's writes land 1 (dispatcher's S copy) or
        # ceil(log2(cols)) cycles (the PE columns' copies) after the write port; the dispatcher
        # reads the blob header from the cycle after ``start`` on, the columns read S and D at
        # least 12 cycles after it (tests/test_core.py holds a write in the cycle before
        # ``start``)
        d_reads = self._buffer_reads(m, split, self.d_write, self.d_mems, tag="d",
                                     copy_name="d_mem_{j}")
        # the registered hand-out (next-item slots, hw.loader) where the buffers are split too:
        # everywhere but the iCE40, whose UP5K has no room for the slots' registers
        m.submodules.loader = ld = Loader(rows=rows, cols=cols, d_depth=self.d_depth,
                                          s_depth=self.s_depth, c_depth=self.c_depth,
                                          slots=split)
        # a result log takes a result every cycle, so one holding slot per column is enough
        # (a second would be 32*rows FFs per column that never fill)
        m.submodules.pe = pe = PEArray(rows=rows, cols=cols, tag_width=self.c_aw,
                                       hold_depth=1 if self.result_logs else self.hold_depth)

        # ---- the loader on S (the select unit writes S)
        start = Signal()
        start_held = self._s_buffer(m, ld, start, split)
        m.d.comb += start.eq(ctrl.start & ~ctrl.busy & ~start_held)
        m.d.comb += [
            ld.start.eq(start), ld.m.eq(ctrl.m), ld.k.eq(ctrl.k), ld.n.eq(ctrl.n),
            ld.s_len.eq(ctrl.s_len), pe.clear.eq(start),
        ]

        # ---- D read stage, operands to the PE array
        in_flight = []
        for j in range(cols):
            in_flight += self._operand_fetch(m, j, start, ld.out[j], d_reads[j], pe.inp[j])

        # ---- results: per-column logs, or one C buffer behind an arbitrated port
        writing = self._results(m, start, ld, pe)

        # ---- control, status, counters
        m.d.comb += [ctrl.error.eq(ld.error), ctrl.error_code.eq(ld.error_code)]
        # The per-column flags come from all over the die: they are registered first and
        # summed a cycle later. Exact at ``done``: the flags of the last busy cycle, which
        # would be summed after it, are known (no column issues or stalls once the loader has
        # ended, all are idle), so idle_cycles starts at ``cols`` instead.
        flags = [Signal(self.cols, name=f"col_{x}_q") for x in ("busy", "stall", "idle")]
        m.d.sync += [f.eq(Mux(ctrl.busy, v, 0))
                     for f, v in zip(flags, (ld.col_busy, ld.col_stall, ld.col_idle), strict=True)]
        with m.If(start):
            m.d.sync += [ctrl.busy.eq(1), ctrl.done.eq(0), ctrl.cycles.eq(0),
                         ctrl.busy_cycles.eq(0), ctrl.stall_cycles.eq(0),
                         ctrl.idle_cycles.eq(self.cols)]
        with m.Elif(ctrl.busy):
            m.d.sync += [
                ctrl.cycles.eq(ctrl.cycles + 1),
                ctrl.busy_cycles.eq(ctrl.busy_cycles + _popcount(flags[0])),
                ctrl.stall_cycles.eq(ctrl.stall_cycles + _popcount(flags[1])),
                ctrl.idle_cycles.eq(ctrl.idle_cycles + _popcount(flags[2])),
            ]
            settling = Signal()
            m.d.comb += settling.eq(ld.busy | pe.busy | Cat(*in_flight).any() | writing)
            with m.If(~settling):
                m.d.sync += [ctrl.busy.eq(0), ctrl.done.eq(1)]
        return m

    def _results(self, m, start, ld, pe):
        """The output path; returns a signal that is high while a result is still to be
        written."""
        writing = Signal()
        if self.result_logs:
            m.submodules.results = logs = ResultLogs(rows=self.rows, cols=self.cols,
                                                     depth=self.c_depth)
            m.d.comb += logs.start.eq(start)
            for j, mem in enumerate(self.c_logs):
                m.submodules[f"c_log_{j}"] = mem
                wiring.connect(m, logs.log_write[j], mem.write_port())
                wiring.connect(m, logs.log_read[j], read_port(m, mem, f"c_log_rd_{j}"))
                wiring.connect(m, pe.out[j], logs.results[j])
                m.d.comb += self.ctrl.results[j].eq(logs.counts[j])
            wiring.connect(m, wiring.flipped(self.c_read), logs.read)
            m.d.comb += ld.hold_free.eq(-1)  # a log takes a result every cycle
            # the log's write stage needs no wait: a result valid in cycle t is in its log
            # from t + 2, and ``done`` rises no earlier (hw.result_logs)
            return writing
        m.submodules.c_mem = c_mem = self.c_mem
        m.submodules.results = port = ResultPort(rows=self.rows, cols=self.cols,
                                                 depth=self.c_depth, hold_depth=self.hold_depth)
        wiring.connect(m, port.c_write, c_mem.write_port())
        wiring.connect(m, wiring.flipped(self.c_read), read_port(m, c_mem, "c_rd"))
        m.d.comb += [port.start.eq(start), port.finishing.eq(ld.col_fin),
                     ld.hold_free.eq(port.hold_free), writing.eq(port.busy)]
        for j in range(self.cols):
            wiring.connect(m, pe.out[j], port.results[j])
        return writing

    @staticmethod
    def _buffer_reads(m, split, source, mems, *, tag, copy_name, early=0, connect=None):
        """The read ports of a buffer the host writes (D or S), one per consumer in ``mems``.

        ``split`` (:meth:`split_buffers`): ``mems[i]`` is consumer ``i``'s own copy, submodule
        ``copy_name.format(j=i)`` with ``BUFFER_ATTRS``, written from ``source`` through
        ``hw.bram.fan_out_writes`` (the last ``early`` copies from the tree's first register)
        and read through ``hw.bram.read_port`` (signals ``<tag>_rd_<i>``). Otherwise one
        memory, ``mems[0]`` (submodule ``<tag>_mem``), written from ``source`` and read by
        every consumer through a synchronous port; the other memories are left unused.
        ``connect(i, port)``, if given, wires consumer ``i`` as its port is made (the order
        of the statements, and so the RTLIL, stays that of a loop making and wiring each)."""
        if split:
            for j, mem in enumerate(mems):
                mem.attrs.update(BUFFER_ATTRS)
                m.submodules[copy_name.format(j=j)] = mem
            last = len(mems) - early
            fan_out_writes(m, source, mems[:last], tag, early=mems[last:])
            ports = (read_port(m, mem, f"{tag}_rd_{j}") for j, mem in enumerate(mems))
        else:
            m.submodules[f"{tag}_mem"] = mem = mems[0]
            for other in mems[1:]:  # not used on this platform
                other._MustUse__used = True
            wiring.connect(m, wiring.flipped(source), mem.write_port())
            ports = (mem.read_port() for _ in mems)
        out = []
        for j, port in enumerate(ports):  # a generator: each port made, then wired
            if connect is not None:
                connect(j, port)
            out.append(port)
        return out

    def _s_buffer(self, m, ld, start, split):
        """The S buffer and its writers; returns what holds back a GEMM ``start``.

        Without the select unit: one memory, written by the host. With it: two buffers
        (:class:`~hw.s_buffer.SBuffer`) so that the unit writes the blob of the next GEMM into
        one while the running GEMM reads the other (``ctrl.s_bank``). The unit's writes wait
        while the running GEMM reads their buffer (bank ready); a GEMM does not start on the
        buffer the unit is busy with; ``sel.exposed_cycles`` counts the cycles in which the unit
        works and no GEMM runs."""
        ctrl = self.ctrl
        if self.sel_unit is None:
            # split: one copy per PE column and the dispatcher's (the last, written early)
            self._buffer_reads(m, split, self.s_write, self.s_mems, tag="s",
                               copy_name="s_copy_{j}", early=1,
                               connect=lambda j, port: wiring.connect(m, ld.s_rd[j], port))
            return Const(0)
        sel = self.sel
        m.submodules.s_buffer = s_buffer = self.s_buffer
        for b, mem in enumerate(s_buffer.memories):  # top level: simulators find them by name
            m.submodules[f"s_mem_{b}"] = mem
        unit = self.sel_unit
        if self.sel_clock_gate:  # the unit on its own (gated) clock, reset with sync
            m.domains.sel = sel_domain = ClockDomain("sel", local=True)
            m.d.comb += [sel_domain.clk.eq(self.sel_clk), sel_domain.rst.eq(ResetSignal()),
                         self.sel_quiet.eq(unit.quiet)]
            m.submodules.sel = DomainRenamer("sel")(unit)
        else:
            m.submodules.sel = unit
        wiring.connect(m, wiring.flipped(self.s_write), s_buffer.host_write)
        for j in range(self.cols + 1):
            wiring.connect(m, ld.s_rd[j], s_buffer.read[j])
        wiring.connect(m, wiring.flipped(sel.i), unit.i)
        wiring.connect(m, wiring.flipped(sel.cmd), unit.cmd)
        wiring.connect(m, unit.status, wiring.flipped(sel.status))
        wiring.connect(m, unit.o, s_buffer.select_write)
        gemm_buffer = Signal()  # the buffer the running (or last) GEMM reads
        with m.If(start):
            m.d.sync += gemm_buffer.eq(ctrl.s_bank)
        m.d.comb += [s_buffer.gemm_buffer.eq(Mux(start, ctrl.s_bank, gemm_buffer)),
                     s_buffer.gemm_busy.eq(ctrl.busy)]
        # the select side's registers: on the unit's clock with gemm_clock_gate (docstring)
        side = m.d.sel if self.gemm_clock_gate else m.d.sync
        with m.If(unit.status.busy & ~ctrl.busy):
            side += sel.exposed_cycles.eq(sel.exposed_cycles + 1)
        # a THRESHOLD operation (pass 1, the write-free cut pass) writes no buffer: a GEMM may
        # start on its bank, so that a long pass 1 runs on across GEMM boundaries
        from .select_layouts import Mode

        writes = Signal()  # the unit's operation (taken at its command) writes its bank
        with m.If(unit.cmd.valid & unit.cmd.ready):
            side += writes.eq(unit.cmd.payload.mode != Mode.THRESHOLD)
        return unit.status.busy & writes & (unit.status.bank == ctrl.s_bank)

    def _operand_fetch(self, m, j, start, token, d_read, operand):
        """PE column ``j``: D read at the token's address, D data straight into a register
        (no logic after the block-RAM output), operand to the PE array. Returns the valid
        bits in flight."""
        rows, c_aw = self.rows, self.c_aw
        # only the valid bits are reset: the data registers are qualified by them (no reset
        # net to their FFs)
        tok_valid = Signal(name=f"tok_valid_{j}")
        tok_v = Signal(8, name=f"tok_v_{j}", reset_less=True)
        tok_first = Signal(name=f"tok_first_{j}", reset_less=True)
        tok_last = Signal(name=f"tok_last_{j}", reset_less=True)
        tok_caddr = Signal(c_aw, name=f"tok_caddr_{j}", reset_less=True)
        m.d.comb += d_read.addr.eq(token.payload.daddr)
        m.d.sync += [
            tok_valid.eq(token.valid & ~start), tok_v.eq(token.payload.v),
            tok_first.eq(token.payload.first), tok_last.eq(token.payload.last),
            tok_caddr.eq(token.payload.caddr),
        ]
        # the D word into a register the placer can put by the block RAM, then a second one
        # by the PE column (ECP5 block RAM: 5.8 ns clock-to-output, and the column's DSPs sit
        # in other rows)
        dq_valid = Signal(name=f"dq_valid_{j}")
        dq_d = Signal(rows * 8, name=f"dq_d_{j}", reset_less=True)
        dq_v = Signal(8, name=f"dq_v_{j}", reset_less=True)
        dq_first = Signal(name=f"dq_first_{j}", reset_less=True)
        dq_last = Signal(name=f"dq_last_{j}", reset_less=True)
        dq_caddr = Signal(c_aw, name=f"dq_caddr_{j}", reset_less=True)
        m.d.sync += [
            dq_valid.eq(tok_valid & ~start), dq_d.eq(d_read.data), dq_v.eq(tok_v),
            dq_first.eq(tok_first), dq_last.eq(tok_last), dq_caddr.eq(tok_caddr),
        ]
        op_valid = Signal(name=f"op_valid_{j}")
        op_d = Signal(rows * 8, name=f"op_d_{j}", reset_less=True)
        op_v = Signal(8, name=f"op_v_{j}", reset_less=True)
        op_first = Signal(name=f"op_first_{j}", reset_less=True)
        op_last = Signal(name=f"op_last_{j}", reset_less=True)
        op_caddr = Signal(c_aw, name=f"op_caddr_{j}", reset_less=True)
        m.d.sync += [
            op_valid.eq(dq_valid & ~start), op_d.eq(dq_d), op_v.eq(dq_v),
            op_first.eq(dq_first), op_last.eq(dq_last), op_caddr.eq(dq_caddr),
        ]
        m.d.comb += [
            operand.valid.eq(op_valid), operand.payload.d.eq(op_d),
            operand.payload.v.eq(op_v), operand.payload.first.eq(op_first),
            operand.payload.last.eq(op_last), operand.payload.tag.eq(op_caddr),
        ]
        return [tok_valid, dq_valid, op_valid]


def _popcount(v):
    return sum(v[i] for i in range(len(v)))
