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

from hw.contract.protocol import (  # noqa: F401  (re-exported: the bridge's public names)
    ARG_BYTES,
    ERR_BUSY,
    ERR_OPCODE,
    ERR_RANGE,
    ERR_TIMEOUT,
    INFO_BYTES,
    OP_INFO,
    OP_NOP,
    OP_READ_C,
    OP_RESULTS,
    OP_SET_SHAPE,
    OP_START,
    OP_STATUS,
    OP_WRITE_D,
    OP_WRITE_S,
    PROTOCOL_VERSION,
    PROTOCOL_VERSION_LOGS,
    ST_OK,
    STATUS_BYTES,
)

__all__ = [
    "HostBridge", "CORE_MEMBERS",
    "OP_NOP", "OP_INFO", "OP_WRITE_D", "OP_WRITE_S", "OP_READ_C", "OP_SET_SHAPE", "OP_START",
    "OP_STATUS", "OP_RESULTS", "ARG_BYTES", "ST_OK", "ERR_OPCODE", "ERR_BUSY", "ERR_RANGE",
    "ERR_TIMEOUT", "INFO_BYTES", "STATUS_BYTES", "PROTOCOL_VERSION", "PROTOCOL_VERSION_LOGS",
]

#: the core's host members the bridge connects to (``hw.core_ports``)
CORE_MEMBERS = ("d_write", "s_write", "c_read", "ctrl")


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
        Cycles from a C read address to its data (the core's ``C_READ_LATENCY``, default 1).
    """

    def __init__(self, core_signature: wiring.Signature, *, rows: int, cols: int, d_depth: int,
                 s_depth: int, c_depth: int, timeout: int = 1 << 20, clk_hz: int = 0,
                 c_read_latency: int = 1):
        for name, depth in (("d_depth", d_depth), ("s_depth", s_depth), ("c_depth", c_depth)):
            if not 1 <= depth <= 0xFFFF:
                raise ValueError(f"{name} must be in 1..65535, not {depth}")
        self.rows, self.cols = rows, cols
        self.d_depth, self.s_depth, self.c_depth = d_depth, s_depth, c_depth
        self.timeout = timeout
        self.clk_hz = int(clk_hz)
        self.c_read_latency = c_read_latency
        ctrl = core_signature.members["ctrl"].signature
        #: a core with result logs (``ctrl.results``: entries per PE column's log) is read
        #: through ``bank << ceil_log2(c_depth) | index`` addresses (protocol version 2)
        self.result_logs = "results" in ctrl.members
        self.version = PROTOCOL_VERSION_LOGS if self.result_logs else PROTOCOL_VERSION
        self.c_space = (cols << ceil_log2(c_depth)) if self.result_logs else c_depth
        if self.c_space > 0x10000:
            raise ValueError(f"{self.c_space} C read addresses do not fit READ_C's 16 bits")
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
            (ST_OK, 1), (int.from_bytes(b"SWAT", "little"), 4), (self.version, 1),
            (self.rows, 1), (self.cols, 1), (self.d_depth, 2), (self.s_depth, 2),
            (self.c_depth, 2), (self.clk_hz & 0xFFFFFFFF, 4),
        ]
        value, shift = 0, 0
        for v, n in fields:
            value |= v << shift
            shift += 8 * n
        assert shift == 8 * INFO_BYTES
        return value

    def elaborate(self, platform):
        m = Module()
        rows = self.rows
        dw, sw, cr, ctrl = self.d_write, self.s_write, self.c_read, self.ctrl
        c_bytes = -(-len(cr.data) // 8)  # bytes of one C word on the wire
        results_bytes = 1 + 2 * self.cols  # RESULTS reply: status, a 16-bit count per log
        tx_bytes = max(c_bytes, STATUS_BYTES, INFO_BYTES, results_bytes)
        word_bits = max(rows * 8, 32)

        # The opcode is decoded as it arrives: one flag register per known opcode (``is_op``)
        # and its argument count, so that no state decision below starts from an 8-bit compare
        # (the bridge's control was one cone from the opcode register to the timeout and
        # reply registers, the critical path of a ULX3S build).
        codes = [c for c in ARG_BYTES if c != OP_RESULTS or self.result_logs]
        op_flags = Signal(len(codes))
        args = Signal(64)
        argidx = Signal(range(9))
        nargs = Signal(range(9))

        def is_op(code):
            return op_flags[codes.index(code)]

        addr = Signal(17)
        count = Signal(16)
        status = Signal(8)
        word = Signal(word_bits)
        wbyte = Signal(range(max(rows, 4)))
        txbuf = Signal(8 * tx_bytes, reset_less=True)  # sent only while txleft > 0
        # A reply is chosen in one state and loaded into ``txbuf`` in the next (``LOAD``), from
        # these registers: the load enable and clear of the 272 ``txbuf`` FFs then come from the
        # state register and three flags, not from the whole decision (argument count, range
        # compares, timeout), which was the critical path of a ULX3S build (``argidx`` →
        # ``txbuf`` clear). A reply starts one cycle later; a UART byte takes hundreds.
        tx_code = Signal(8)
        tx_info = Signal()
        tx_results = Signal()
        tx_status = Signal()
        txleft = Signal(range(tx_bytes + 1))
        then_c = Signal()
        timer = Signal(range(self.timeout + 1))
        timed_out = Signal()  # sticky, cleared by STATUS
        c_wait = Signal(range(max(2, self.c_read_latency)))

        arg_addr = args[0:16]
        arg_count = args[16:32]
        end = Signal(17)
        m.d.comb += end.eq(arg_addr + arg_count)

        # registered, default-low pulses
        m.d.sync += [dw.en.eq(0), sw.en.eq(0), ctrl.start.eq(0), self.rx_clear.eq(0)]
        m.d.comb += [
            self.tx.payload.eq(txbuf[0:8]),
            cr.addr.eq(addr), cr.en.eq(1),
            dw.addr.eq(addr), sw.addr.eq(addr),
            dw.data.eq(word[word_bits - rows * 8:]),
            sw.data.eq(word[word_bits - 32:]),
        ]
        with m.If(dw.en | sw.en):
            m.d.sync += addr.eq(addr + 1)
        rx_nargs = Signal(range(9))  # argument bytes of the opcode on ``rx`` (0: unknown)
        with m.Switch(self.rx.payload):
            for code in codes:  # OP_RESULTS only with result logs (else unknown: protocol 1)
                with m.Case(code):
                    m.d.comb += rx_nargs.eq(ARG_BYTES[code])

        def load(code=0, *, info=0, results=0, status_=0, nbytes=1, c=0):
            """Reply next: ``nbytes`` bytes from ``code`` or the INFO / RESULTS / STATUS
            reply (loaded in ``LOAD``), then C words if ``c``."""
            m.d.sync += [tx_code.eq(code), tx_info.eq(info), tx_results.eq(results),
                         tx_status.eq(status_), txleft.eq(nbytes), then_c.eq(c)]
            m.next = "LOAD"

        def reply(code):
            load(code)

        def receiving():
            """Common to every state that waits for a frame byte: ready, and the timeout."""
            m.d.comb += self.rx.ready.eq(1)
            with m.If(self.rx.valid):
                m.d.sync += timer.eq(self.timeout)
            with m.Elif(timer == 0):
                m.d.sync += timed_out.eq(1)
                reply(ERR_TIMEOUT)
            with m.Else():
                m.d.sync += timer.eq(timer - 1)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                m.d.sync += timer.eq(self.timeout)
                with m.If(self.rx.valid):
                    m.d.sync += [op_flags.eq(Cat(self.rx.payload == c for c in codes)),
                                 nargs.eq(rx_nargs), argidx.eq(0), args.eq(0)]
                    m.next = "ARGS"

            with m.State("ARGS"):
                with m.If(argidx == nargs):
                    m.next = "DISPATCH"
                with m.Else():
                    receiving()
                    with m.If(self.rx.valid):
                        with m.Switch(argidx):
                            for i in range(8):
                                with m.Case(i):
                                    m.d.sync += args[8 * i:8 * i + 8].eq(self.rx.payload)
                        m.d.sync += argidx.eq(argidx + 1)

            with m.State("DISPATCH"):
                m.d.sync += [addr.eq(arg_addr), count.eq(arg_count), wbyte.eq(0)]
                with m.If(is_op(OP_NOP)):
                    reply(ST_OK)
                with m.Elif(is_op(OP_INFO)):
                    load(info=1, nbytes=INFO_BYTES)
                with m.Elif(is_op(OP_WRITE_D) | is_op(OP_WRITE_S)):
                    depth = Signal(17)
                    m.d.comb += depth.eq(Mux(is_op(OP_WRITE_D), self.d_depth, self.s_depth))
                    with m.If(ctrl.busy):
                        m.d.sync += status.eq(ERR_BUSY)
                    with m.Elif(end > depth):
                        m.d.sync += status.eq(ERR_RANGE)
                    with m.Else():
                        m.d.sync += status.eq(ST_OK)
                    with m.If(arg_count == 0):
                        m.next = "REPLY_STATUS"
                    with m.Else():
                        m.next = "DATA"
                with m.Elif(is_op(OP_READ_C)):
                    with m.If(end > self.c_space):
                        reply(ERR_RANGE)
                    with m.Else():
                        load(ST_OK, c=arg_count != 0)
                with m.Elif(is_op(OP_SET_SHAPE)):
                    s_len = args[48:64]
                    with m.If(s_len > self.s_depth):
                        reply(ERR_RANGE)
                    with m.Else():
                        m.d.sync += [
                            ctrl.m.eq(args[0:16]), ctrl.k.eq(args[16:32]),
                            ctrl.n.eq(args[32:48]), ctrl.s_len.eq(s_len),
                        ]
                        reply(ST_OK)
                with m.Elif(is_op(OP_START)):
                    with m.If(ctrl.busy):
                        reply(ERR_BUSY)
                    with m.Else():
                        m.d.sync += ctrl.start.eq(1)
                        reply(ST_OK)
                if self.result_logs:
                    with m.Elif(is_op(OP_RESULTS)):
                        load(results=1, nbytes=results_bytes)
                with m.Elif(is_op(OP_STATUS)):
                    load(status_=1, nbytes=STATUS_BYTES)
                with m.Else():
                    reply(ERR_OPCODE)

            with m.State("DATA"):
                receiving()
                last = Signal()
                m.d.comb += last.eq(Mux(is_op(OP_WRITE_D), wbyte == rows - 1, wbyte == 3))
                with m.If(self.rx.valid):
                    shifted = Cat(word[8:], self.rx.payload)
                    m.d.sync += [word.eq(shifted), wbyte.eq(wbyte + 1)]
                    with m.If(last):
                        ok = status == ST_OK
                        # the write happens next cycle from ``word``/``addr`` (comb outputs),
                        # then ``addr`` advances (below); the next byte is >= 40 cycles away
                        m.d.sync += [
                            wbyte.eq(0), count.eq(count - 1),
                            dw.en.eq(ok & is_op(OP_WRITE_D)),
                            sw.en.eq(ok & is_op(OP_WRITE_S)),
                        ]
                        with m.If(count == 1):
                            m.next = "REPLY_STATUS"

            with m.State("REPLY_STATUS"):
                reply(status)

            with m.State("LOAD"):
                with m.If(tx_info):
                    m.d.sync += txbuf.eq(Const(self.info_value(), 8 * tx_bytes))
                with m.Elif(tx_status):
                    flags = Cat(ctrl.busy, ctrl.done, ctrl.error, self.rx_overrun,
                                self.rx_frame_error, timed_out)
                    m.d.sync += [
                        txbuf.eq(Cat(Const(ST_OK, 8), flags,
                                     Const(0, 2), ctrl.error_code, Const(0, 4),
                                     ctrl.cycles, ctrl.busy_cycles, ctrl.stall_cycles,
                                     ctrl.idle_cycles)),
                        self.rx_clear.eq(1), timed_out.eq(0),
                    ]
                if self.result_logs:
                    with m.Elif(tx_results):
                        counts = [Cat(ctrl.results[j], Const(0, 16 - len(ctrl.results[j])))
                                  for j in range(self.cols)]
                        m.d.sync += txbuf.eq(Cat(Const(ST_OK, 8), *counts))
                with m.Else():
                    m.d.sync += txbuf.eq(tx_code)
                m.next = "SEND"

            with m.State("SEND"):
                m.d.comb += self.tx.valid.eq(1)
                with m.If(self.tx.ready):
                    m.d.sync += [txbuf.eq(txbuf >> 8), txleft.eq(txleft - 1)]
                    with m.If(txleft == 1):
                        with m.If(then_c):
                            m.next = "C_WAIT"
                        with m.Else():
                            m.next = "IDLE"

            # the C read address follows ``addr`` combinationally; its data is valid
            # ``c_read_latency`` cycles later
            with m.State("C_WAIT"):
                m.d.sync += c_wait.eq(c_wait + 1)
                with m.If(c_wait == self.c_read_latency - 1):
                    m.d.sync += c_wait.eq(0)
                    m.next = "C_LATCH"
            with m.State("C_LATCH"):
                m.d.sync += [
                    txbuf.eq(cr.data), txleft.eq(c_bytes),
                    addr.eq(addr + 1), count.eq(count - 1), then_c.eq(count != 1),
                ]
                m.next = "SEND"
        return m

