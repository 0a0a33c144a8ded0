"""GEMM backends: exact integer results, start-up failures as one line naming the backend."""

import numpy as np
import pytest
from operands import rand_int8

from sw import backend as B
from sw import intref


def test_exact_matmul_equals_the_integer_reference():
    rng = np.random.default_rng(0)
    for m, k, n in ((1, 1, 1), (17, 9, 16), (32, 4096, 144), (64, 300, 10)):
        d, s = rand_int8(rng, (m, k), lo=-127), rand_int8(rng, (k, n), 0.1, lo=-127)
        c = B.exact_matmul(d, s)
        assert c.dtype == np.int64
        np.testing.assert_array_equal(c, intref.gemm(d, s))


def test_exact_matmul_extremes_large_k():
    k = 8192  # |C| = 127 * 127 * 8192 > 2**24: float32 would round, float64 must not
    d = np.full((2, k), -127, np.int8)
    s = np.full((k, 3), 127, np.int8)
    s[0, 0] = -127
    c = B.exact_matmul(d, s)
    np.testing.assert_array_equal(c, d.astype(np.int64) @ s.astype(np.int64))


def test_intref_backend_run_reports_macs():
    rng = np.random.default_rng(1)
    d, s = rand_int8(rng, (10, 20), lo=-127), rand_int8(rng, (20, 5), 0.3, lo=-127)
    with B.IntrefBackend() as be:
        (out,) = be.run([B.GemmJob(d, s, "l:forward")])
    assert out.macs == 10 * int(np.count_nonzero(s))
    assert out.cycles is None
    np.testing.assert_array_equal(out.c, intref.gemm(d, s))


def test_run_rejects_non_int8():
    be = B.IntrefBackend()
    with pytest.raises(TypeError, match=r"^x:forward: operands must be int8, got int16, int8$"):
        be.run([B.GemmJob(np.zeros((2, 2), np.int16), np.zeros((2, 2), np.int8),
                          "x:forward")])


def test_make_backend():
    assert B.make_backend("torch") is None
    assert isinstance(B.make_backend("intref"), B.IntrefBackend)
    assert isinstance(B.make_backend("rtl"), B.RtlBackend)
    assert B.make_backend("fpga", port="/dev/x").port == "/dev/x"
    with pytest.raises(ValueError) as e:
        B.make_backend("gpu")
    assert str(e.value) == "unknown backend 'gpu'; expected one of torch, intref, rtl, fpga"


def test_fpga_without_port_fails_to_start():
    with pytest.raises(B.BackendError) as e:
        B.FpgaBackend().start()
    assert str(e.value) == "backend fpga: no serial port given (--port /dev/ttyUSB0)"


def test_fpga_missing_port_fails_to_start(tmp_path):
    pytest.importorskip("serial")
    port = str(tmp_path / "ttyNONE")
    with pytest.raises(B.BackendError) as e:
        B.FpgaBackend(port).start()
    msg = str(e.value)
    assert msg.startswith(f"backend fpga: no core on serial port {port}: ")
    assert "\n" not in msg


def test_fpga_starts_the_host_driver_on_the_port(monkeypatch):
    """``start`` opens the port with pyserial and drives it with ``hw.host_driver.SwatFpga``
    (resync, then INFO: the board's array sizes the utilization)."""
    serial = pytest.importorskip("serial")
    from hw import host_driver

    calls = []

    class Port:
        def __init__(self, path, baud, timeout):
            calls.append(("open", path, baud, timeout))

        def close(self):
            calls.append(("close",))

    class Driver:
        def __init__(self, port):
            assert isinstance(port, Port)

        def resync(self):
            calls.append(("resync",))

        def info(self):
            return host_driver.CoreInfo(version=2, rows=4, cols=2, d_depth=256, s_depth=256,
                                        c_depth=128, clk_hz=0)

    monkeypatch.setattr(serial, "Serial", Port)
    monkeypatch.setattr(host_driver, "SwatFpga", Driver)
    be = B.FpgaBackend("/dev/ttyX")
    be.start()
    assert isinstance(be.dev, Driver) and be.pes == 8
    be.close()
    assert calls == [("open", "/dev/ttyX", be.baud, be.reply_timeout_s), ("resync",),
                     ("close",)]


def test_rtl_model_that_cannot_be_built(monkeypatch):
    from sim import verilate

    def boom(*a, **k):
        raise RuntimeError("verilator: command not found\nmore lines")

    monkeypatch.setattr(verilate, "harness_model", boom)
    with pytest.raises(B.BackendError) as e:
        B.RtlBackend().start()
    assert str(e.value) == ("backend rtl: the Verilator model of the 8x8 core is not built and "
                            "cannot be built: verilator: command not found")


def test_fpga_backend_hands_jobs_to_the_host_driver():
    from hw.host_driver import FpgaGemmResult

    class Board:  # stands in for hw.host_driver.SwatFpga on an open port
        def gemm(self, d, s):
            c = intref.gemm(d, s)
            return FpgaGemmResult(c=c, cycles=123, macs=d.shape[0] * int(np.count_nonzero(s)),
                                  tiles=2)

    rng = np.random.default_rng(2)
    d, s = rand_int8(rng, (9, 12), lo=-127), rand_int8(rng, (12, 4), 0.5, lo=-127)
    be = B.FpgaBackend("/dev/null")
    be.dev = Board()
    (out,) = be.run([B.GemmJob(d, s, "fc:forward")])
    np.testing.assert_array_equal(out.c, intref.gemm(d, s))
    assert (out.cycles, out.runs, out.macs) == (123, 2, 9 * int(np.count_nonzero(s)))
