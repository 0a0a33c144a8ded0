"""Register copies (``hw.register_copy``): every form registers the value (``q`` is the value
one cycle later), the inverted forms hold its complement under a ``_n`` name, and yosys keeps
copies of different forms apart while it merges two of one form (the reason for the forms)."""

import itertools
import json
import random
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.sim import Simulator

from bitstreams import runner
from hw.register_copy import Form, RegisterCopy

FORMS = [Form(*f) for f in itertools.product((False, True), (False, True), (0, 1))]


class _Copies(Elaboratable):
    """``x`` registered by one copy per form of ``forms``, each copy's value on an output."""

    def __init__(self, forms, width=1):
        self.x = Signal(width)
        self.copies = [RegisterCopy(f"c{i}", form, width) for i, form in enumerate(forms)]
        self.outs = [Signal(width, name=f"o{i}") for i in range(len(forms))]

    def elaborate(self, platform):
        m = Module()
        for copy, out in zip(self.copies, self.outs, strict=True):
            m.d.sync += copy.eq(self.x)
            m.d.comb += out.eq(copy.q)
        return m


@pytest.mark.parametrize("width", [1, 5])
def test_every_form_registers_the_value(width):
    dut = _Copies(FORMS, width)
    rng = random.Random(width)
    ones = (1 << width) - 1

    async def bench(ctx):
        for copy, out in zip(dut.copies, dut.outs, strict=True):
            init = ones if copy.form.init else 0  # as the register holds it
            assert ctx.get(copy.reg) == init
            assert ctx.get(out) == (init ^ ones if copy.form.inverted else init)
        for _ in range(50):
            value = rng.randrange(1 << width)
            ctx.set(dut.x, value)
            await ctx.tick()
            ctx.set(dut.x, rng.randrange(1 << width))  # the copies hold what the edge took
            for copy, out in zip(dut.copies, dut.outs, strict=True):
                assert ctx.get(out) == value
                assert ctx.get(copy.reg) == (value ^ ones if copy.form.inverted else value)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_names_and_register_attributes():
    for form in FORMS:
        copy = RegisterCopy("en", form, 3)
        assert copy.reg.name == ("en_n" if form.inverted else "en")
        assert copy.reg.reset_less == form.reset_less
        assert copy.reg.init == (7 if form.init else 0)
        assert copy.form == form
    assert RegisterCopy("go", (True, False, 1)).form == Form(True, False, 1)


@pytest.mark.parametrize("init", [2, -1, "1"])
def test_init_is_0_or_1(init):
    with pytest.raises(ValueError) as err:
        RegisterCopy("x", (False, False, init))
    assert str(err.value) == f"RegisterCopy 'x': init must be 0 or 1, not {init!r}"


def _ffs_after_synthesis(forms, tmp_path) -> int:
    dut = _Copies(forms)
    ports = [dut.x, *dut.outs]
    (tmp_path / "copies.il").write_text(rtlil.convert(dut, ports=ports, name="top"))
    subprocess.run([runner.tool_env()["YOSYS"], "-q", "-p",
                    "read_rtlil copies.il; synth_ecp5 -top top -json copies.json"],
                   cwd=tmp_path, check=True)
    cells = json.loads((tmp_path / "copies.json").read_text())["modules"]["top"]["cells"]
    return sum(c["type"] == "TRELLIS_FF" for c in cells.values())


def test_yosys_keeps_forms_apart_and_merges_one_form(tmp_path):
    """The ULX3S flow's synthesis (``synth_ecp5``) keeps one FF per form, and merges two
    copies of one form into one FF: the reason every copy takes another form."""
    assert _ffs_after_synthesis(FORMS, tmp_path) == len(FORMS)
    assert _ffs_after_synthesis([FORMS[2], FORMS[2]], tmp_path) == 1
