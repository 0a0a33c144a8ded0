"""Byte-stream command protocol -> the ``SwatCore`` host interface (Amaranth 0.5).

The framing, opcodes and replies are specified in ``docs/host-protocol.md``; the constants live in
``hw.contract.protocol``, shared with ``hw.host_driver`` (the host driver). In short: every
command is one opcode byte followed by a fixed number of little-endian argument bytes (and, for
the two burst writes, the data words); every command gets exactly one reply that starts with a
status byte. An unknown opcode is answered with ``ERR_OPCODE`` and the parser returns to idle; a
frame that stalls for ``timeout`` clock cycles is abandoned with ``ERR_TIMEOUT``; nothing waits
forever.

On the core side the bridge holds the core's own host members, flipped (``d_write``,
``s_write``, ``c_read``, ``ctrl``; ``hw.core_ports``), so that ``wiring.connect`` wires the two
and a core of any size, or a stand-in with the same signature, fits. A core whose ``ctrl`` has
``results`` (one result log per PE column) is served with protocol version 2: READ_C reads
``log << ceil_log2(c_depth) | index``, and RESULTS reports each log's entry count.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.contract import protocol
from hw.contract.protocol import *  # noqa: F403  (re-exported: the bridge's public names)
from hw.params import check_int, rejected_unused
from hw.register_copy import RegisterCopy

__all__ = ["HostBridge", "CORE_MEMBERS", "c_read_space", *protocol.__all__]

#: the core's host members the bridge connects to (``hw.core_ports``)
CORE_MEMBERS = ("d_write", "s_write", "c_read", "ctrl")

# Forms (``hw.register_copy.Form``: inverted, reset_less, init) of the copies of ``txbuf``'s
# enable and of its load select, each copy for one part of ``txbuf``, each in another form
# (yosys merges registers of one form and input, see ``hw.register_copy``). The enables
# are not inverted (a clock enable straight from the register); the selects (LUT inputs, where
# an inversion is free) are inverted or reset-less, so none is ``tload`` (plain, with reset).
# The reset-less ones may differ from ``tload | shift`` and ``tload`` before the first clock
# edge and after a domain reset, when ``txbuf`` is not read: every reply loads it whole
# before a byte of it is sent.
_TX_CE_FORMS = ((False, False, 0), (False, True, 0), (False, True, 1))
_TX_SEL_FORMS = ((True, False, 1), (True, True, 0), (True, True, 1), (False, True, 0),
                 (False, True, 1))


def c_read_space(*, cols: int, d_depth: int, s_depth: int, c_depth: int,
                 result_logs: bool) -> int:
    """READ_C's address space for a core of these sizes; raises ``ValueError`` for sizes the
    protocol's 16-bit addresses cannot reach. A plain function, so that a caller can check
    the sizes before it builds a core (an elaboratable left unused warns at exit)."""
    for name, depth in (("d_depth", d_depth), ("s_depth", s_depth), ("c_depth", c_depth)):
        if not 1 <= depth <= 0xFFFF:
            raise ValueError(f"{name} must be in 1..65535, not {depth}")
    space = (cols << ceil_log2(c_depth)) if result_logs else c_depth
    if space > 0x10000:
        raise ValueError(f"{space} C read addresses do not fit READ_C's 16 bits")
    return space


class HostBridge(wiring.Component):
    """Command parser between a byte stream pair (``rx`` in, ``tx`` out) and a core.

    Parameters
    ----------
    core_signature : wiring.Signature
        The core's signature (``core.signature``); the bridge takes its ``CORE_MEMBERS``
        flipped, so ``wiring.connect(m, bridge.ctrl, core.ctrl)`` (and so on) wires them.
    rows, cols, d_depth, s_depth, c_depth : int
        The core's (reported by INFO; buffer depths bound the burst addresses).
    timeout : int
        Inter-byte timeout in clock cycles.
    clk_hz : int
        Reported by INFO.
    c_read_latency : int
        Cycles from a C read address to its data (the core's ``C_READ_LATENCY``, default 1;
        plus ``2 * stages`` behind a ``hw.port_slice.PortSlice``).
    ctrl_delay : int
        Registers between the bridge's ``ctrl`` and the core's in each direction (default 0;
        ``hw.port_slice.PortSlice`` stages). After a ``start`` the core's ``busy`` and ``done``
        reach the bridge ``2 * ctrl_delay + 1`` cycles later than the core sets them; for
        that long the bridge takes the core as busy and not done (CHECK's busy test, the
        STATUS reply), so that a command right after START never sees the previous
        operation's status. (Without a slice the one stale cycle cannot be reached: a reply
        and an opcode lie between a START and the next CHECK.)
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, core_signature: wiring.Signature, *, rows: int, cols: int, d_depth: int,
                 s_depth: int, c_depth: int, timeout: int = 1 << 20, clk_hz: int = 0,
                 c_read_latency: int = 1, ctrl_delay: int = 0):
        ctrl = core_signature.members["ctrl"].signature
        #: a core with result logs (``ctrl.results``: entries per PE column's log) is read
        #: through ``bank << ceil_log2(c_depth) | index`` addresses (protocol version 2)
        self.result_logs = "results" in ctrl.members
        self.c_space = c_read_space(cols=cols, d_depth=d_depth, s_depth=s_depth,
                                    c_depth=c_depth, result_logs=self.result_logs)
        self.rows, self.cols = rows, cols
        self.d_depth, self.s_depth, self.c_depth = d_depth, s_depth, c_depth
        self.timeout = timeout
        self.clk_hz = int(clk_hz)
        self.c_read_latency = c_read_latency
        self.ctrl_delay = check_int("HostBridge", "ctrl_delay", ctrl_delay, minimum=0)
        self.version = (protocol.PROTOCOL_VERSION_LOGS if self.result_logs
                        else protocol.PROTOCOL_VERSION)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            **{name: In(core_signature.members[name].signature) for name in CORE_MEMBERS},
            # UART receiver flags
            "rx_overrun": In(1), "rx_frame_error": In(1), "rx_clear": Out(1),
        })

    def info_value(self) -> int:
        """The INFO reply as a little-endian integer (status byte first)."""
        fields = [
            (protocol.ST_OK, 1), (int.from_bytes(b"SWAT", "little"), 4), (self.version, 1),
            (self.rows, 1), (self.cols, 1), (self.d_depth, 2), (self.s_depth, 2),
            (self.c_depth, 2), (self.clk_hz & 0xFFFFFFFF, 4),
        ]
        value, shift = 0, 0
        for v, n in fields:
            value |= v << shift
            shift += 8 * n
        assert shift == 8 * protocol.INFO_BYTES
        return value

    def elaborate(self, platform):
        m = Module()
        rows = self.rows
        dw, sw, cr, ctrl = self.d_write, self.s_write, self.c_read, self.ctrl
        c_bytes = -(-len(cr.data) // 8)  # bytes of one C word on the wire
        results_bytes = 1 + 2 * self.cols  # RESULTS reply: status, a 16-bit count per log
        tx_bytes = max(c_bytes, protocol.STATUS_BYTES, protocol.INFO_BYTES, results_bytes)
        word_bits = max(rows * 8, 32)

        # Control is one-hot: one register per state (``state``), plus registered copies of
        # every decision an enable, clear or handshake needs (``listen`` is ``rx.ready``, the
        # SEND flag is ``tx.valid``, ``args_last``/``word_last``/``count_last``/``tx_last`` stand
        # for counter compares; ``CHECK`` adds address and count, ``RANGE`` compares, then
        # ``DISPATCH`` reads the registered result). So every such path starts at a register and
        # crosses about one LUT: the bridge's control was a ULX3S critical path in several
        # builds, pulled apart between the UART by the pins and the core
        # (``bitstreams/ulx3s/analysis.md``). The registers cost a few cycles per command; a
        # UART byte takes hundreds.
        names = ("IDLE", "OPCODE", "ARGS", "CHECK", "RANGE", "DISPATCH", "DATA", "REPLY_STATUS",
                 "LOAD", "SEND", "C_WAIT", "C_LATCH")
        listening = ("IDLE", "ARGS", "DATA")
        state = Signal(len(names), init=1)
        listen = Signal(init=1)
        now = {name: state[i] for i, name in enumerate(names)}

        loading = ("LOAD", "C_LATCH")
        tload = Signal()  # in LOAD or C_LATCH: ``txbuf`` and ``out`` take a new reply
        # ``txbuf``'s clock enable (``tload | shift``) and load select (``tload``) as registers
        # of their own, copies of each for parts of ``txbuf`` (``_TX_CE_FORMS``,
        # ``_TX_SEL_FORMS``): the enable of its 272 FFs through a LUT of ``tload`` and
        # ``shift`` was a ULX3S critical path (``tload`` -> 1 LUT -> CE, 11.25 ns of routing).
        # Both are set where ``tload`` and ``shift`` are, a cycle ahead: ``tx_sel`` with
        # ``tload`` in every ``goto`` (it holds otherwise), ``tx_ce`` by default to ``tload``,
        # by every ``goto`` to ``tload``'s value, and to 1 where ``shift`` is set (last, see
        # SEND).
        # (not on the iCE40: its UP5K is 92 % full, and its bridge is not near a critical path;
        # there ``txbuf``'s enable is ``tload | shift``, its select ``tload`` and the shape
        # registers' enable ``DISPATCH & shape_ok``, the same behaviour every cycle: the tests'
        # reference)
        registered = str(getattr(platform, "family", "")).lower() != "ice40"

        ce_regs = [RegisterCopy(f"tx_ce{i}", form)
                   for i, form in enumerate(_TX_CE_FORMS if registered else ())]
        sel_regs = [RegisterCopy(f"tx_sel{i}", form)
                    for i, form in enumerate(_TX_SEL_FORMS if registered else ())]
        tx_ce, tx_sel = [c.q for c in ce_regs], [c.q for c in sel_regs]

        def set_copies(regs, value):
            m.d.sync += [c.eq(value) for c in regs]

        def goto(name):
            m.d.sync += [state.eq(1 << names.index(name)), listen.eq(name in listening),
                         tload.eq(name in loading)]
            set_copies(ce_regs + sel_regs, int(name in loading))

        # the opcode, decoded as it arrives: one flag register per known opcode
        codes = [c for c in protocol.ARG_BYTES if c != protocol.OP_RESULTS or self.result_logs]
        op_flags = Signal(len(codes))
        op_unknown = Signal()

        def is_op(code):
            return op_flags[codes.index(code)]

        args = Signal(64)  # shifted in from the top: 4 argument bytes land in args[32:64]
        arg_left = Signal(range(9))
        args_last = Signal()
        no_args = Signal()

        addr = Signal(17)
        count = Signal(16)
        count_last = Signal()  # count == 1
        status = Signal(8)
        write_d = Signal()  # WRITE_D accepted: its words go to the core
        write_s = Signal()
        word = Signal(word_bits)
        wbyte = Signal(range(max(rows, 4)))
        word_last = Signal()  # the byte on ``rx`` completes a burst word
        end = Signal(17)  # address + count
        range_err = Signal()
        shape_ok = Signal()  # SET_SHAPE in range: DISPATCH sets the shape
        # (registered) DISPATCH & shape_ok as a register (set in RANGE, which always goes to
        # DISPATCH, for DISPATCH's one cycle): the enable of ``ctrl``'s shape FFs, by the core,
        # without a LUT
        shape_set = Signal()
        start_ok = Signal()  # START while idle: DISPATCH starts the core
        count_zero = Signal()
        busy = Signal()  # ``ctrl.busy`` registered in CHECK: only this bridge starts the core
        # The reply goes out of ``out`` (``tx.payload``); ``txbuf`` holds the bytes after it and
        # shifts the cycle *after* a byte leaves (``shift``, a register), so the enable of its
        # 272 FFs is a register, not the handshake: while ``shift`` is pending the next byte is
        # ``txbuf[8:16]``, and a byte can still leave every cycle.
        txbuf = Signal(8 * tx_bytes, reset_less=True)
        out = Signal(8, reset_less=True)
        shift = Signal()
        # A reply is chosen in one state and loaded into ``txbuf`` in the next (``LOAD``) from
        # these registers, so the load of the 272 ``txbuf`` FFs is selected by flags only.
        tx_code = Signal(8)
        tx_info = Signal()
        tx_results = Signal()
        tx_status = Signal()
        txleft = Signal(range(tx_bytes + 1))
        tx_last = Signal()  # txleft == 1
        then_c = Signal()
        # inter-byte timer: counts down to -1, its sign bit is the timeout (no 21-bit compare)
        timer = Signal(range(-1, self.timeout))
        timed_out = Signal()  # sticky, cleared by STATUS
        c_wait = Signal(range(max(2, self.c_read_latency)))

        # registered, default-low pulses
        m.d.sync += [dw.en.eq(0), sw.en.eq(0), ctrl.start.eq(0), self.rx_clear.eq(0),
                     shift.eq(0)]
        set_copies(ce_regs, tload)  # tload | shift, unless set below; the selects hold
        if registered:
            m.d.sync += shape_set.eq(0)  # default low
        if not registered:
            with m.If(shift):
                m.d.sync += txbuf.eq(txbuf >> 8)
        m.d.comb += [
            self.rx.ready.eq(listen),
            self.tx.valid.eq(now["SEND"]),
            self.tx.payload.eq(out),
            cr.addr.eq(addr), cr.en.eq(1),
            dw.addr.eq(addr), sw.addr.eq(addr),
            dw.data.eq(word[word_bits - rows * 8:]),
            sw.data.eq(word[word_bits - 32:]),
        ]
        with m.If(dw.en | sw.en):
            m.d.sync += addr.eq(addr + 1)
        rx_nargs = Signal(range(9))  # argument bytes of the opcode on ``rx`` (0: unknown)
        rx_known = Signal()
        with m.Switch(self.rx.payload):
            for code in codes:  # OP_RESULTS only with result logs (else unknown: protocol 1)
                with m.Case(code):
                    m.d.comb += [rx_nargs.eq(protocol.ARG_BYTES[code]), rx_known.eq(1)]

        def load(code=0, *, info=0, results=0, status_=0, nbytes=1, c=0):
            """Reply next: ``nbytes`` bytes from ``code`` or the INFO / RESULTS / STATUS
            reply (loaded in ``LOAD``), then C words if ``c``."""
            m.d.sync += [tx_code.eq(code), tx_info.eq(info), tx_results.eq(results),
                         tx_status.eq(status_), txleft.eq(nbytes), tx_last.eq(nbytes == 1),
                         then_c.eq(c)]
            goto("LOAD")

        def reply(code):
            load(code)

        def receiving():
            """Common to ARGS and DATA: the timeout (``rx.ready`` is ``listen``)."""
            with m.If(self.rx.valid):
                m.d.sync += timer.eq(self.timeout - 1)
            with m.Elif(timer[-1]):
                m.d.sync += timed_out.eq(1)
                reply(protocol.ERR_TIMEOUT)
            with m.Else():
                m.d.sync += timer.eq(timer - 1)

        with m.If(now["IDLE"]):
            m.d.sync += timer.eq(self.timeout - 1)
            with m.If(self.rx.valid):
                m.d.sync += [op_flags.eq(Cat(self.rx.payload == c for c in codes)),
                             op_unknown.eq(~rx_known),
                             arg_left.eq(rx_nargs), no_args.eq(rx_nargs == 0)]
                goto("OPCODE")

        with m.If(now["OPCODE"]):
            m.d.sync += args_last.eq(arg_left == 1)
            with m.If(no_args):
                goto("CHECK")
            with m.Else():
                goto("ARGS")

        with m.If(now["ARGS"]):
            receiving()
            with m.If(self.rx.valid):
                m.d.sync += [args.eq(Cat(args[8:], self.rx.payload)), arg_left.eq(arg_left - 1),
                             args_last.eq(arg_left == 2)]
                with m.If(args_last):
                    goto("CHECK")

        # the core's busy and done as this bridge may trust them (``ctrl_delay``)
        core_busy, core_done = ctrl.busy, ctrl.done
        if self.ctrl_delay:
            # set with ``ctrl.start``, held 2 * ctrl_delay + 1 cycles: a register and a
            # counter, so that the reply's flag bits take one more register input only
            starting = Signal()
            starting_left = Signal(range(2 * self.ctrl_delay + 1))
            with m.If(now["DISPATCH"] & start_ok):
                m.d.sync += [starting.eq(1), starting_left.eq(2 * self.ctrl_delay)]
            with m.Elif(starting_left != 0):
                m.d.sync += starting_left.eq(starting_left - 1)
            with m.Else():
                m.d.sync += starting.eq(0)
            core_busy, core_done = ctrl.busy | starting, ctrl.done & ~starting

        with m.If(now["CHECK"]):
            # WRITE_D, WRITE_S and READ_C: address and count in args[32:64]; SET_SHAPE: m, k, n,
            # s_len in args[0:64]
            arg_addr, arg_count = args[32:48], args[48:64]
            m.d.sync += [
                end.eq(arg_addr + arg_count), count_zero.eq(arg_count == 0),
                busy.eq(core_busy),
                addr.eq(arg_addr), count.eq(arg_count), wbyte.eq(0),
            ]
            goto("RANGE")

        with m.If(now["RANGE"]):
            s_len = args[48:64]
            err = Signal()
            m.d.comb += err.eq((is_op(protocol.OP_WRITE_D) & (end > self.d_depth)) |
                               (is_op(protocol.OP_WRITE_S) & (end > self.s_depth)) |
                               (is_op(protocol.OP_READ_C) & (end > self.c_space)) |
                               (is_op(protocol.OP_SET_SHAPE) & (s_len > self.s_depth)))
            m.d.sync += [range_err.eq(err), shape_ok.eq(is_op(protocol.OP_SET_SHAPE) & ~err),
                         start_ok.eq(is_op(protocol.OP_START) & ~busy)]
            if registered:
                m.d.sync += shape_set.eq(is_op(protocol.OP_SET_SHAPE) & ~err)
            goto("DISPATCH")

        with m.If(now["DISPATCH"]):
            m.d.sync += [count_last.eq(count == 1),
                         word_last.eq(is_op(protocol.OP_WRITE_D) if rows == 1 else 0)]
            # the op flags are exclusive: one ``If`` each (an ``Elif`` chain would put every
            # earlier flag in front of a branch's enables); ``op_unknown`` is the rest
            with m.If(is_op(protocol.OP_NOP)):
                reply(protocol.ST_OK)
            with m.If(is_op(protocol.OP_INFO)):
                load(info=1, nbytes=protocol.INFO_BYTES)
            with m.If(is_op(protocol.OP_WRITE_D) | is_op(protocol.OP_WRITE_S)):
                with m.If(busy):
                    m.d.sync += status.eq(protocol.ERR_BUSY)
                with m.Elif(range_err):
                    m.d.sync += status.eq(protocol.ERR_RANGE)
                with m.Else():
                    m.d.sync += status.eq(protocol.ST_OK)
                ok = ~busy & ~range_err
                m.d.sync += [write_d.eq(ok & is_op(protocol.OP_WRITE_D)),
                             write_s.eq(ok & is_op(protocol.OP_WRITE_S))]
                with m.If(count_zero):
                    goto("REPLY_STATUS")
                with m.Else():
                    goto("DATA")
            with m.If(is_op(protocol.OP_READ_C)):
                with m.If(range_err):
                    reply(protocol.ERR_RANGE)
                with m.Else():
                    load(protocol.ST_OK, c=~count_zero)
            if not registered:
                with m.If(shape_ok):
                    m.d.sync += [
                        ctrl.m.eq(args[0:16]), ctrl.k.eq(args[16:32]),
                        ctrl.n.eq(args[32:48]), ctrl.s_len.eq(args[48:64]),
                    ]
            with m.If(is_op(protocol.OP_SET_SHAPE)):
                reply(Mux(range_err, protocol.ERR_RANGE, protocol.ST_OK))
            with m.If(start_ok):
                m.d.sync += ctrl.start.eq(1)
            with m.If(is_op(protocol.OP_START)):
                reply(Mux(busy, protocol.ERR_BUSY, protocol.ST_OK))
            if self.result_logs:
                with m.If(is_op(protocol.OP_RESULTS)):
                    load(results=1, nbytes=results_bytes)
            with m.If(is_op(protocol.OP_STATUS)):
                load(status_=1, nbytes=protocol.STATUS_BYTES)
            with m.If(op_unknown):
                reply(protocol.ERR_OPCODE)

        if registered:
            with m.If(shape_set):  # DISPATCH & shape_ok
                m.d.sync += [
                    ctrl.m.eq(args[0:16]), ctrl.k.eq(args[16:32]),
                    ctrl.n.eq(args[32:48]), ctrl.s_len.eq(args[48:64]),
                ]

        with m.If(now["DATA"]):
            receiving()
            with m.If(self.rx.valid):
                shifted = Cat(word[8:], self.rx.payload)
                last_byte = Mux(is_op(protocol.OP_WRITE_D), rows - 1, 3)
                m.d.sync += [word.eq(shifted), wbyte.eq(wbyte + 1),
                             word_last.eq(wbyte + 1 == last_byte)]
                with m.If(word_last):
                    # the write happens next cycle from ``word``/``addr`` (comb outputs),
                    # then ``addr`` advances (above); the next byte is >= 40 cycles away
                    m.d.sync += [
                        wbyte.eq(0), word_last.eq(last_byte == 0),
                        count.eq(count - 1), count_last.eq(count == 2),
                        dw.en.eq(write_d), sw.en.eq(write_s),
                    ]
                    with m.If(count_last):
                        goto("REPLY_STATUS")

        with m.If(now["REPLY_STATUS"]):
            reply(status)

        def send(value):
            """Start sending ``value``: its first byte to ``out``, the rest to ``txbuf``."""
            m.d.sync += out.eq(value[0:8])
            if not registered:
                m.d.sync += txbuf.eq(value >> 8)
            goto("SEND")

        # The reply's value, an OR of terms each gated by one register: the flags are exclusive
        # (``load``), ``tx_code`` is 0 unless it is the reply, and READ_C's C words come in
        # C_LATCH, with every flag 0 (a priority select was the critical path of this bridge
        # out of context).
        with m.If(now["LOAD"] & tx_status):
            m.d.sync += [self.rx_clear.eq(1), timed_out.eq(0)]
        flags = Cat(core_busy, core_done, ctrl.error, self.rx_overrun, self.rx_frame_error,
                    timed_out)
        terms = [
            (tx_info, Const(self.info_value(), 8 * tx_bytes)),
            (tx_status, Cat(Const(protocol.ST_OK, 8), flags, Const(0, 2), ctrl.error_code,
                            Const(0, 4), ctrl.cycles, ctrl.busy_cycles, ctrl.stall_cycles,
                            ctrl.idle_cycles)),
            (now["C_LATCH"], cr.data),
        ]
        if self.result_logs:
            counts = [Cat(ctrl.results[j], Const(0, 16 - len(ctrl.results[j])))
                      for j in range(self.cols)]
            terms.append((tx_results, Cat(Const(protocol.ST_OK, 8), *counts)))
        value = Signal(8 * tx_bytes)
        expr = tx_code
        for flag, term in terms:
            expr = expr | Mux(flag, term, 0)
        m.d.comb += value.eq(expr)
        with m.If(tload):
            send(value)
        # (registered) each bit of ``txbuf`` enabled by the ``tx_ce`` copy of its part, loaded
        # or shifted by the ``tx_sel`` copy of its part (``tload`` and ``shift`` are never high
        # together); the select drives two LUT levels of every bit, so it has more copies
        loaded, shifted = value >> 8, txbuf >> 8

        def part(bit, n):
            return bit * n // len(txbuf)

        if registered:
            bounds = sorted({0, len(txbuf)} | {
                next(b for b in range(len(txbuf)) if part(b, n) == i)
                for n in (len(tx_ce), len(tx_sel)) for i in range(n)})
            for lo, hi in zip(bounds, bounds[1:]):  # noqa: B905 (neighbours: one shorter)
                ce, sel = tx_ce[part(lo, len(tx_ce))], tx_sel[part(lo, len(tx_sel))]
                with m.If(ce):
                    m.d.sync += txbuf[lo:hi].eq(Mux(sel, loaded[lo:hi], shifted[lo:hi]))

        with m.If(now["SEND"] & self.tx.ready):
            m.d.sync += [out.eq(Mux(shift, txbuf[8:16], txbuf[0:8])), shift.eq(1),
                         txleft.eq(txleft - 1), tx_last.eq(txleft == 2)]
            with m.If(tx_last):
                with m.If(then_c):
                    goto("C_WAIT")
                with m.Else():
                    goto("IDLE")
            set_copies(ce_regs, 1)  # shift (after the goto: it wins)

        # the C read address follows ``addr`` combinationally; its data is valid
        # ``c_read_latency`` cycles later
        with m.If(now["C_WAIT"]):
            m.d.sync += c_wait.eq(c_wait + 1)
            with m.If(c_wait == self.c_read_latency - 1):
                m.d.sync += c_wait.eq(0)
                goto("C_LATCH")
        with m.If(now["C_LATCH"]):
            m.d.sync += [
                txleft.eq(c_bytes), tx_last.eq(c_bytes == 1),
                addr.eq(addr + 1), count.eq(count - 1), count_last.eq(count == 2),
                then_c.eq(~count_last),
            ]
        return m
