"""``SwatCore``: one sparse GEMM ``C[M, N] = D[M, K] @ S[K, N]`` (int8 × int8 → int32).

Ports and buffer layouts are those of ``docs/core-interface.md``. Dataflow (see
``docs/architecture.md``): output-stationary, ``S`` streamed. The work items are the pairs
(M-tile ``mt``, output column ``n``) of the whole GEMM; the :class:`~hw.loader.Loader` hands
them to PE columns from a shared queue as columns become free (dynamic assignment), with the
column pointers of the next items prefetched. Each PE column streams its item's non-zeros
``(k, v)`` from its own S read port, reads ``D[mt*rows : mt*rows+rows, k]`` (one D word) from its
own D read port and feeds the :class:`~hw.pe_array.PEArray`. Finished items leave the array
through one holding register per PE column and are written to C through one write port,
lowest column first.

Pipeline of one entry (cycle of the S read = 0)::

    0 S read  1 S data→reg  2 check→reg  3 D read  4 D data→reg  5 operand reg  6 product
    7 acc/hold  8 C arbitration (if granted)  9 C write

Every block-RAM output goes straight into a register (ECP5 block RAM has a long clock-to-output
and the read-port copies spread over the die), so no logic follows a BRAM in the same cycle.

Latency: ``start`` → first entry read 13 cycles (M <= 64*rows; ~M/(8*rows) more for taller M);
last entry read → ``done`` about 11 cycles.
Throughput: one effectual entry per PE column per cycle (``rows*cols`` MACs per cycle), so an
operation takes about ``ceil(M/rows) * nnz(S) / cols`` cycles plus the start latency and the
tail of the last items.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .loader import Loader
from .pe_array import PEArray

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
        Words of the D buffer (``ceil(M/rows) * K`` must fit).
    s_depth : int
        Words of the S buffer (the compressed blob must fit), >= 8.
    c_depth : int
        Words of the C buffer (``ceil(M/rows) * N`` must fit).
    hold_depth : int
        Finished results each PE column can hold while waiting for the C write port (default 2).
    sel_lanes : int
        0 (default): no threshold-select unit. ``> 0``: include a
        :class:`~hw.threshold_select.ThresholdSelect` with that many int8 lanes per beat and its
        ``sel_*`` ports: the host streams a dense ``S[K, N]`` in (column by column) and the
        survivors of Top-K land compressed in the S buffer (see ``docs/core-interface.md``).

    Members
    -------
    See ``docs/core-interface.md`` (port table). All ports are synchronous to ``sync``.

    Latency / throughput: see the module docstring.
    """

    def __init__(self, *, rows: int = 8, cols: int = 8, d_depth: int = 4608,
                 s_depth: int = 8192, c_depth: int = 512, hold_depth: int = 2,
                 sel_lanes: int = 0):
        # validation (clear errors); Loader re-checks the same
        try:
            if not isinstance(rows, int) or rows < 1:
                raise ValueError(f"SwatCore: rows must be a positive integer, not {rows!r}")
            if not isinstance(cols, int) or cols < 1:
                raise ValueError(f"SwatCore: cols must be a positive integer, not {cols!r}")
            for name, val, lo in (("d_depth", d_depth, 2), ("s_depth", s_depth, 8),
                                  ("c_depth", c_depth, 2), ("hold_depth", hold_depth, 1),
                                  ("sel_lanes", sel_lanes, 0)):
                if not isinstance(val, int) or val < lo:
                    raise ValueError(f"SwatCore: {name} must be an integer >= {lo}, not {val!r}")
        except ValueError:
            self._MustUse__silence = True  # no "never used" warning for a rejected object
            raise
        self.rows, self.cols, self.hold_depth = rows, cols, hold_depth
        self.sel_lanes = sel_lanes
        self.d_depth, self.s_depth, self.c_depth = d_depth, s_depth, c_depth
        self.d_aw, self.s_aw, self.c_aw = ceil_log2(d_depth), ceil_log2(s_depth), ceil_log2(c_depth)
        members = {
            "d_we": In(1), "d_addr": In(self.d_aw), "d_data": In(rows * 8),
            "s_we": In(1), "s_addr": In(self.s_aw), "s_data": In(32),
            "c_addr": In(self.c_aw), "c_data": Out(rows * 32),
            "m": In(16), "k": In(16), "n": In(16),
            "s_len": In(self.s_aw + 1),
            "start": In(1),
            "busy": Out(1), "done": Out(1), "error": Out(1), "error_code": Out(4),
            "cycles": Out(32), "busy_cycles": Out(32), "stall_cycles": Out(32),
            "idle_cycles": Out(32),
        }
        self.sel = None
        if sel_lanes:
            from .threshold_select import ErrorCode, Mode, ThresholdSelect
            self.sel = ThresholdSelect(lanes=sel_lanes, depth=s_depth)
            members.update({
                "sel_i": In(stream.Signature(self.sel.in_layout)),
                "sel_start": In(1), "sel_mode": In(Mode), "sel_keep": In(32),
                "sel_t_in": In(8), "sel_ties_in": In(32),
                "sel_busy": Out(1), "sel_done": Out(1), "sel_error": Out(1),
                "sel_error_code": Out(ErrorCode),
                "sel_threshold": Out(8), "sel_ties": Out(32), "sel_held_valid": Out(1),
                "sel_nnz": Out(32), "sel_s_len": Out(32), "sel_cycles": Out(32),
            })
        super().__init__(members)
        # memories are created here so that testbenches can preload them (ctx.set(mem.data[a], v))
        self.d_mem = Memory(shape=rows * 8, depth=d_depth, init=[])
        self.s_mem = Memory(shape=32, depth=s_depth, init=[])
        self.c_mem = Memory(shape=rows * 32, depth=c_depth, init=[])

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        m.submodules.d_mem = d_mem = self.d_mem
        m.submodules.s_mem = s_mem = self.s_mem
        m.submodules.c_mem = c_mem = self.c_mem
        m.submodules.loader = ld = Loader(rows=rows, cols=cols, d_depth=self.d_depth,
                                          s_depth=self.s_depth, c_depth=self.c_depth)
        m.submodules.pe = pe = PEArray(rows=rows, cols=cols, tag_width=self.c_aw,
                                          hold_depth=self.hold_depth)

        # ---- host write ports, C read port
        dw = d_mem.write_port()
        sw_ = s_mem.write_port()
        m.d.comb += [
            dw.en.eq(self.d_we), dw.addr.eq(self.d_addr), dw.data.eq(self.d_data),
            sw_.en.eq(self.s_we), sw_.addr.eq(self.s_addr), sw_.data.eq(self.s_data),
        ]
        sel_busy = Signal()
        if self.sel is not None:
            # threshold-select unit: writes its blob into the S buffer (host writes first)
            m.submodules.sel = ts = self.sel
            wiring.connect(m, wiring.flipped(self.sel_i), ts.i)
            m.d.comb += [
                ts.start.eq(self.sel_start & ~self.busy),
                ts.mode.eq(self.sel_mode), ts.keep.eq(self.sel_keep),
                ts.rows.eq(self.k), ts.cols.eq(self.n),
                ts.t_in.eq(self.sel_t_in), ts.ties_in.eq(self.sel_ties_in),
                ts.o.ready.eq(~self.s_we),
                sel_busy.eq(ts.busy | ts.o.valid),
                self.sel_busy.eq(sel_busy),
                self.sel_done.eq(ts.done & ~ts.o.valid),
                self.sel_error.eq(ts.error), self.sel_error_code.eq(ts.error_code),
                self.sel_threshold.eq(ts.threshold), self.sel_ties.eq(ts.ties),
                self.sel_held_valid.eq(ts.held_valid),
                self.sel_nnz.eq(ts.nnz), self.sel_s_len.eq(ts.s_len),
                self.sel_cycles.eq(ts.cycles),
            ]
            with m.If(~self.s_we & ts.o.valid):
                m.d.comb += [sw_.en.eq(1), sw_.addr.eq(ts.o.payload.addr),
                             sw_.data.eq(ts.o.payload.data)]
        cr = c_mem.read_port()
        m.d.comb += [cr.addr.eq(self.c_addr), self.c_data.eq(cr.data)]

        # ---- loader on S
        for j in range(cols + 1):
            wiring.connect(m, ld.s_rd[j], s_mem.read_port())

        start = Signal()
        m.d.comb += start.eq(self.start & ~self.busy & ~sel_busy)
        m.d.comb += [
            ld.start.eq(start), ld.m.eq(self.m), ld.k.eq(self.k), ld.n.eq(self.n),
            ld.s_len.eq(self.s_len), pe.clear.eq(start),
        ]

        # ---- D read stage, operand to the PE array; credits
        tok_any = []
        for j in range(cols):
            tok = ld.out[j]
            drd = d_mem.read_port()
            t_valid = Signal(name=f"t_valid_{j}")
            t_v = Signal(8, name=f"t_v_{j}")
            t_first = Signal(name=f"t_first_{j}")
            t_last = Signal(name=f"t_last_{j}")
            t_caddr = Signal(self.c_aw, name=f"t_caddr_{j}")
            m.d.comb += drd.addr.eq(tok.payload.daddr)
            m.d.sync += [
                t_valid.eq(tok.valid & ~start), t_v.eq(tok.payload.v),
                t_first.eq(tok.payload.first), t_last.eq(tok.payload.last),
                t_caddr.eq(tok.payload.caddr),
            ]
            # D data straight into a register (no logic after the block RAM output)
            u_valid = Signal(name=f"u_valid_{j}")
            u_d = Signal(rows * 8, name=f"u_d_{j}")
            u_v = Signal(8, name=f"u_v_{j}")
            u_first = Signal(name=f"u_first_{j}")
            u_last = Signal(name=f"u_last_{j}")
            u_caddr = Signal(self.c_aw, name=f"u_caddr_{j}")
            m.d.sync += [
                u_valid.eq(t_valid & ~start), u_d.eq(drd.data), u_v.eq(t_v),
                u_first.eq(t_first), u_last.eq(t_last), u_caddr.eq(t_caddr),
            ]
            inp = pe.inp[j]
            m.d.comb += [
                inp.valid.eq(u_valid),
                inp.payload.d.eq(u_d),
                inp.payload.v.eq(u_v),
                inp.payload.first.eq(u_first),
                inp.payload.last.eq(u_last),
                inp.payload.tag.eq(u_caddr),
            ]
            tok_any += [t_valid, u_valid]
            # credit: at most hold_depth unfinished results per column (holding queue)
            owed = Signal(range(self.hold_depth + 1), name=f"owed_{j}")
            inc = ld.col_fin[j]
            dec = pe.out[j].valid & pe.out[j].ready
            with m.If(start):
                m.d.sync += owed.eq(0)
            with m.Elif(inc & ~dec):
                m.d.sync += owed.eq(owed + 1)
            with m.Elif(dec & ~inc):
                m.d.sync += owed.eq(owed - 1)
            m.d.comb += ld.hold_free[j].eq(owed < self.hold_depth)

        # ---- C write arbitration (lowest column first), one-hot AND-OR select, registered
        cw = c_mem.write_port()
        cw_en = Signal()
        cw_addr = Signal(self.c_aw)
        cw_data = Signal(rows * 32)
        taken = Const(0)
        sel_addr, sel_data = Const(0, self.c_aw), Const(0, rows * 32)
        for j in range(cols):
            o = pe.out[j]
            g = Signal(name=f"cgrant_{j}")
            m.d.comb += g.eq(o.valid & ~taken)
            taken = taken | o.valid
            m.d.comb += o.ready.eq(g)
            sel_addr = sel_addr | Mux(g, o.payload.tag, 0)
            sel_data = sel_data | Mux(g, o.payload.c, 0)
        m.d.sync += [cw_en.eq(taken), cw_addr.eq(sel_addr), cw_data.eq(sel_data)]
        m.d.comb += [cw.en.eq(cw_en), cw.addr.eq(cw_addr), cw.data.eq(cw_data)]

        # ---- control, status, counters
        busy = Signal()
        done = Signal()
        m.d.comb += [
            self.busy.eq(busy), self.done.eq(done),
            self.error.eq(ld.error), self.error_code.eq(ld.error_code),
        ]
        cyc = Signal(32)
        bc = Signal(32)
        sc = Signal(32)
        ic = Signal(32)
        m.d.comb += [self.cycles.eq(cyc), self.busy_cycles.eq(bc), self.stall_cycles.eq(sc),
                     self.idle_cycles.eq(ic)]
        with m.If(start):
            m.d.sync += [busy.eq(1), done.eq(0), cyc.eq(0), bc.eq(0), sc.eq(0), ic.eq(0)]
        with m.Elif(busy):
            m.d.sync += [
                cyc.eq(cyc + 1),
                bc.eq(bc + _popcount(ld.col_busy)),
                sc.eq(sc + _popcount(ld.col_stall)),
                ic.eq(ic + _popcount(ld.col_idle)),
            ]
            settling = Signal()
            m.d.comb += settling.eq(ld.busy | pe.busy | Cat(*tok_any).any() | cw_en)
            with m.If(~settling):
                m.d.sync += [busy.eq(0), done.eq(1)]
        return m


def _popcount(v):
    return sum(v[i] for i in range(len(v)))
