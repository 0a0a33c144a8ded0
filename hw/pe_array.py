"""Sparse PE array: ``rows × cols`` int8 MACs with int32 accumulators.

Each PE column ``j`` receives one effectual operand pair per cycle on ``inp[j]`` — a D column
slice (``rows`` int8 lanes), one non-zero S value ``v`` and the ``first``/``last`` flags of the
output column (work item) it belongs to — and every PE ``(i, j)`` does ``acc[i] += d[i] * v``.
Only effectual work is presented, so only effectual work takes cycles. When the ``last``
operand of an item has been accumulated, the column's sums move to a holding queue (the
second buffer of the double-buffered accumulators) and leave on ``out[j]`` while the
accumulators already serve the next item.

Pipeline per column (all stages registered, no stall)::

    ECP5:   inp ─► S0 operand regs ─► S1 product regs ─► S2 product copy ─► S3 acc / hold ─► out
    others: inp ─► S0 operand regs ─► S1 operand copy ─► S2 product regs ─► S3 acc / hold ─► out

(products ``d·v`` 16 bit, accumulators 32 bit). On the ECP5 S0 and S1 are the MULT18X18D's own
input and output registers, whose sites are fixed rows of the die, and the product copy S2 lets
the placer put the accumulator and holding registers near the column's result-log block RAMs
with one routed hop on each side instead of one long one (the ULX3S critical path before it:
DSP output → 12 ns of routing → accumulator carry chain). Elsewhere (simulation, iCE40) the
extra register is on the operand side, where yosys folds S1 and S2 into an SB_MAC16 as before;
both pipelines are four stages of pure registers, so the results and the cycles are the same.

Latency: an operand accepted in cycle ``t`` is in the accumulator at the end of cycle ``t+3``;
for a ``last`` operand ``out.valid`` rises in cycle ``t+4``. Throughput: one operand per cycle per
column, i.e. ``rows*cols`` MACs per cycle.

The input streams are ``always_ready`` (the pipeline never stalls). The holding queue keeps
``hold_depth`` results per column; the producer must keep at most ``hold_depth`` unfinished
results per column (items whose ``last`` operand was sent but whose result has not left on
``out``): the core does so with a credit counter, see ``hw.core``. Should a result arrive at a
queue that is full after this cycle's pop anyway, it is dropped and the sticky ``overflow``
flag rises (never in correct operation; the tests check it stays low).

The queue is a circular buffer of ``hold_depth`` slots: a result is written once, into the
slot of the write pointer, and never moved; a pop (``out.valid & out.ready``) only advances the
read pointer, and ``out.payload`` is the read pointer's slot (no select for ``hold_depth`` 1;
both consumers, ``hw.result_logs`` and ``hw.result_port``, register it). Each slot's write
enable is a register computed at S1 (``s1_push`` and the write pointer as it will be), in
copies of different forms, one per group of about two lanes, so the ``32*rows`` data FFs of a
slot have nothing but a nearby register on their clock enable: the consumer's ``ready`` only
reaches the pointers, the valid bit and the enables' inputs. (Before, the slots were a shift
register whose enables were a function of ``s2_push``, the pop and the valid bits; with
``hold_depth`` 1 and the logs' constant ``ready`` yosys reduced that to ``s2_push`` itself, one
register driving the 265 enables of a column: the ULX3S seed-1 critical path.) The one
difference to a queue that drops an overflowing result untouched: its write, decided a cycle
before the pop is known, has gone into the slot of the write pointer, which for a full queue is
the head, so after an ``overflow`` the head holds the dropped result (``valid``, ``busy`` and
``overflow`` are unaffected; the core does not use ``overflow``).
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import check_int, rejected_unused
from .register_copy import RegisterCopy

__all__ = ["PEArray", "operand_layout", "result_layout"]


def operand_layout(rows: int, tag_width: int) -> data.StructLayout:
    """Payload of ``inp[j]``: ``d`` (``rows`` int8 lanes, lane ``i`` in bits ``8i+7:8i``),
    ``v`` (int8), ``first``, ``last``, ``tag`` (passed through to the result, e.g. C address)."""
    return data.StructLayout({
        "d": rows * 8,
        "v": signed(8),
        "first": 1,
        "last": 1,
        "tag": max(tag_width, 1),
    })


def result_layout(rows: int, tag_width: int) -> data.StructLayout:
    """Payload of ``out[j]``: ``c`` (``rows`` int32 lanes, lane ``i`` in bits ``32i+31:32i``) and
    the ``tag`` of the item's last operand."""
    return data.StructLayout({"c": rows * 32, "tag": max(tag_width, 1)})


class PEArray(wiring.Component):
    """``rows × cols`` output-stationary int8 MAC array with double-buffered int32 accumulators.

    Parameters
    ----------
    rows : int
        PEs per column (lanes of D per operand), >= 1.
    cols : int
        PE columns (independent work items), >= 1.
    tag_width : int
        Width of the tag carried from ``last`` operand to result.
    hold_depth : int
        Results a column can hold while waiting for ``out.ready`` (>= 1; default 2, so that
        items shorter than the ~8-cycle credit round trip of the core do not stall).

    Members
    -------
    inp : ``In(stream.Signature(operand_layout, always_ready=True)).array(cols)``
    out : ``Out(stream.Signature(result_layout)).array(cols)``
    busy : ``Out(1)`` — some operand or result is in flight (pipeline or holding queue).
    overflow : ``Out(1)`` — sticky: a result arrived while the holding queue was full (after
        the pop of the same cycle).
    clear : ``In(1)`` — drop everything in flight and clear ``overflow`` (start of an operation).

    Notes
    -----
    Latency 4 cycles from a ``last`` operand to ``out.valid``; throughput one operand per cycle
    per column. Accumulation wraps modulo 2**32 (no overflow possible for K <= 65535).
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, rows: int, cols: int, tag_width: int = 16, hold_depth: int = 2):
        for name, val in (("rows", rows), ("cols", cols), ("tag_width", tag_width),
                          ("hold_depth", hold_depth)):
            check_int("PEArray", name, val, minimum=1)
        self.rows, self.cols, self.tag_width = rows, cols, tag_width
        self.hold_depth = hold_depth
        super().__init__({
            "inp": In(stream.Signature(operand_layout(rows, tag_width),
                                       always_ready=True)).array(cols),
            "out": Out(stream.Signature(result_layout(rows, tag_width))).array(cols),
            "busy": Out(1),
            "overflow": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        ecp5 = getattr(platform, "family", None) == "ecp5"
        busy_terms = []
        ovf_terms = []
        for j in range(cols):
            inp, out = self.inp[j], self.out[j]
            # S0: operand registers. Data registers (operands, products, accumulators, results,
            # tags) have no reset: the valid bits qualify them, and a reset on them would put
            # thousands of FFs on the reset net (reset_less: one net less to route to each).
            s0_valid = Signal(name=f"s0_valid_{j}")
            s0_d = Signal(rows * 8, name=f"s0_d_{j}", reset_less=True)
            s0_v = Signal(signed(8), name=f"s0_v_{j}", reset_less=True)
            s0_first = Signal(name=f"s0_first_{j}", reset_less=True)
            s0_last = Signal(name=f"s0_last_{j}", reset_less=True)
            s0_tag = Signal(self.tag_width, name=f"s0_tag_{j}", reset_less=True)
            m.d.sync += [
                s0_valid.eq(inp.valid & ~self.clear),
                s0_d.eq(inp.payload.d),
                s0_v.eq(inp.payload.v),
                s0_first.eq(inp.payload.first),
                s0_last.eq(inp.payload.last),
                s0_tag.eq(inp.payload.tag),
            ]
            # S1 and S2: the products, registered twice (see the module docstring), and their
            # control
            s1_valid = Signal(name=f"s1_valid_{j}")
            s1_first = Signal(name=f"s1_first_{j}", reset_less=True)
            s1_last = Signal(name=f"s1_last_{j}", reset_less=True)  # unused (``push`` carries it)
            s1_tag = Signal(self.tag_width, name=f"s1_tag_{j}", reset_less=True)
            s1_push = Signal(name=f"s1_push_{j}")  # = s1_valid & s1_last, its own register:
            # the holding slots' write enables are computed from it (registers, S2)
            s2_valid = Signal(name=f"s2_valid_{j}")
            s2_first = Signal(name=f"s2_first_{j}", reset_less=True)
            s2_tag = Signal(self.tag_width, name=f"s2_tag_{j}", reset_less=True)
            s2_push = Signal(name=f"s2_push_{j}")
            m.d.sync += [
                s1_valid.eq(s0_valid & ~self.clear),
                s1_first.eq(s0_first),
                s1_last.eq(s0_last),
                s1_tag.eq(s0_tag),
                s1_push.eq(s0_valid & s0_last & ~self.clear),
                s2_valid.eq(s1_valid & ~self.clear),
                s2_first.eq(s1_first),
                s2_tag.eq(s1_tag),
                s2_push.eq(s1_push & ~self.clear),
            ]
            s2_p = [Signal(signed(16), name=f"s2_p_{i}_{j}", reset_less=True)
                    for i in range(rows)]
            if ecp5:  # S0 and S1 inside the DSP block (its input and output registers), S2 a
                # register in the fabric behind it
                for i in range(rows):
                    s1_p = Signal(signed(16), name=f"s1_p_{i}_{j}", reset_less=True)
                    m.submodules[f"mult_{i}_{j}"] = _ecp5_mult(
                        inp.payload.d[8 * i:8 * i + 8].as_signed(), inp.payload.v, s1_p)
                    m.d.sync += s2_p[i].eq(s1_p)
            else:  # the extra stage in front of the multiplier: operands registered twice,
                # the product once. (A second register behind the product, as on the ECP5, is
                # folded by yosys's ice40_dsp into the SB_MAC16 as its output register behind
                # the pipeline register, and the product is lost: yosys 0.70, ``synth_ice40
                # -dsp``, no SB_MAC16 left, the accumulators add 0.)
                s1_d = Signal(rows * 8, name=f"s1_d_{j}", reset_less=True)
                s1_v = Signal(signed(8), name=f"s1_v_{j}", reset_less=True)
                m.d.sync += [s1_d.eq(s0_d), s1_v.eq(s0_v)]
                for i in range(rows):
                    m.d.sync += s2_p[i].eq(s1_d[8 * i:8 * i + 8].as_signed() * s1_v)
            # S3: accumulators and the holding queue (the double buffer)
            acc = [Signal(signed(32), name=f"acc_{i}_{j}", reset_less=True) for i in range(rows)]
            nxt = [Signal(signed(32), name=f"nxt_{i}_{j}") for i in range(rows)]
            for i in range(rows):
                m.d.comb += nxt[i].eq(Mux(s2_first, s2_p[i], (acc[i] + s2_p[i])[:32]))
                with m.If(s2_valid):
                    m.d.sync += acc[i].eq(nxt[i])
            # holding queue of hold_depth results: a circular buffer. A result is written once,
            # into slot ``wp``, and never moved; a pop only advances the read pointer ``rp``.
            # The write enable of each slot (``we[h]``, = S2 push into slot h) is a register
            # computed at S1, so the 32*rows data FFs of a slot have a register on their clock
            # enable and nothing else: ``out.ready`` (the consumer's) only reaches the pointers,
            # the count and the enables' D inputs.
            hd = self.hold_depth
            hold = [[Signal(signed(32), name=f"hold{h}_{i}_{j}", reset_less=True)
                     for i in range(rows)]
                    for h in range(hd)]
            hold_tag = [Signal(self.tag_width, name=f"hold{h}_tag_{j}", reset_less=True)
                        for h in range(hd)]
            # the enable of each slot in copies, one per group of lanes (the tag with the last
            # group): one register drives at most ~2*32 FFs, placed by its lanes
            groups = _lane_groups(rows)
            we = [[_copy_register(m, f"hold{h}_we{g}_{j}", g) for g in range(len(groups))]
                  for h in range(hd)]  # we[h][g]: (next value, current value)
            head_valid = Signal(name=f"hold_valid_{j}")  # = count != 0, its own register
            count = head_valid if hd == 1 else Signal(range(hd + 1), name=f"hold_count_{j}")
            rp = Signal(range(hd), name=f"hold_rp_{j}")
            wp = Signal(range(hd), name=f"hold_wp_{j}")
            for h in range(hd):
                for g, lanes in enumerate(groups):
                    with m.If(we[h][g][1]):
                        m.d.sync += [hold[h][i].eq(nxt[i]) for i in lanes]
                        if g == len(groups) - 1:
                            m.d.sync += hold_tag[h].eq(s2_tag)
            m.d.comb += out.valid.eq(head_valid)
            if hd == 1:
                m.d.comb += [out.payload.c.eq(Cat(*hold[0])), out.payload.tag.eq(hold_tag[0])]
            else:
                with m.Switch(rp):
                    for h in range(hd):
                        with m.Case(h):
                            m.d.comb += [out.payload.c.eq(Cat(*hold[h])),
                                         out.payload.tag.eq(hold_tag[h])]
            pop = Signal(name=f"pop_{j}")
            after_pop = Signal(range(hd + 1), name=f"hold_after_pop_{j}")
            full = Signal(name=f"hold_full_{j}")  # full after the pop
            accept = Signal(name=f"push_{j}")  # the S2 result joins the queue
            m.d.comb += [
                pop.eq(head_valid & out.ready),
                after_pop.eq(count - pop),
                full.eq(after_pop == hd),
                accept.eq(s2_push & ~full),
            ]
            # (a result arriving at a full queue is dropped and raises ``overflow``; its write,
            # decided a cycle before the pop is known, has then gone into slot ``wp`` = ``rp``:
            # after an overflow the head holds the dropped result, see the module docstring)
            wp_next = Signal(range(hd), name=f"hold_wp_next_{j}")
            rp_next = Signal(range(hd), name=f"hold_rp_next_{j}")
            if hd == 1:
                m.d.comb += [wp_next.eq(0), rp_next.eq(0)]
            else:
                m.d.comb += [
                    wp_next.eq(Mux(accept, Mux(wp == hd - 1, 0, wp + 1), wp)),
                    rp_next.eq(Mux(pop, Mux(rp == hd - 1, 0, rp + 1), rp)),
                ]
            m.d.sync += [head_valid.eq(accept | (after_pop != 0)), wp.eq(wp_next), rp.eq(rp_next)]
            if hd > 1:
                m.d.sync += count.eq(after_pop + accept)
            for h in range(hd):
                for d_in, _ in we[h]:
                    m.d.comb += d_in.eq(s1_push & ~self.clear & (wp_next == h))
            with m.If(self.clear):  # empty; s2_push and the enables are 0 next cycle
                m.d.sync += [head_valid.eq(0), wp.eq(0), rp.eq(0)]
                if hd > 1:
                    m.d.sync += count.eq(0)
            ovf_terms.append(s2_push & full)
            busy_terms += [s0_valid, s1_valid, s2_valid, head_valid]
        m.d.comb += self.busy.eq(Cat(*busy_terms).any())
        with m.If(Cat(*ovf_terms).any()):
            m.d.sync += self.overflow.eq(1)
        with m.If(self.clear):
            m.d.sync += self.overflow.eq(0)
        return m


def _lane_groups(rows):
    """The lanes ``0 … rows-1`` in groups of about two, at most ``len(_COPY_FORMS)`` groups:
    one copy of a holding slot's write enable per group."""
    n = min(-(-rows // 2), len(_COPY_FORMS))
    return [[i for i in range(rows) if i * n // rows == g] for g in range(n)]


# Forms (``hw.register_copy.Form``: inverted, reset_less, init) of a copied enable register:
# every copy of one enable takes another form (``hw.register_copy``); none is the plain
# register with reset of ``s2_push``, which has the same input when ``hold_depth`` is 1.
# (The value is the same every cycle; the init of a reset-less copy differs only before the
# first clock edge, when no slot is valid.)
_COPY_FORMS = ((False, True, 0), (True, False, 1), (False, True, 1), (True, True, 0),
               (True, True, 1))


def _copy_register(m, name, form):
    """A 1-bit register in form ``form`` of ``_COPY_FORMS``: returns ``(d, q)``, ``q`` is ``d``
    one cycle later (through an inverted register for the inverted forms)."""
    d = Signal(name=f"{name}_d")
    copy = RegisterCopy(name, _COPY_FORMS[form])
    m.d.sync += copy.eq(d)
    return d, copy.q


def _ecp5_mult(a, b, p):
    """``p <= a * b`` (int8 × int8 → int16) as one ECP5 MULT18X18D with its input and output
    registers in use: two cycles from ``a``/``b`` to ``p``, like the S0 operand and S1 product
    registers of the generic pipeline. nextpnr times an inferred (unregistered) MULT18X18D as
    combinational from the fabric registers around it; with the DSP's own registers the
    multiplier is a register-to-register path inside the block."""
    ext_a = Cat(a, a[-1].replicate(10))  # sign-extended to the DSP's 18 bits
    ext_b = Cat(b, b[-1].replicate(10))
    prod = Signal(36)
    ports = {f"i_A{i}": ext_a[i] for i in range(18)}
    ports |= {f"i_B{i}": ext_b[i] for i in range(18)}
    ports |= {f"i_C{i}": Const(0) for i in range(18)}
    ports |= {f"o_P{i}": prod[i] for i in range(36)}
    m = Module()
    m.submodules.dsp = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
        p_REG_INPUTA_CE="CE0", p_REG_INPUTB_CE="CE0", p_REG_OUTPUT_CE="CE0",
        p_REG_INPUTA_RST="RST0", p_REG_INPUTB_RST="RST0", p_REG_OUTPUT_RST="RST0",
        p_GSR="DISABLED", p_RESETMODE="SYNC",
        i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
        i_CLK0=ClockSignal(), i_CE0=Const(1), i_RST0=Const(0),
        **ports,
    )
    m.d.comb += p.eq(prod[:16].as_signed())
    return m
