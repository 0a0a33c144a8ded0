"""``sim.board_build.board_config``: the header that tells ``sim/cpp/board_main.cpp`` the model's
class, its generated root eval and the C++ names of the ports of each form of the logic."""

import pytest

from sim.board_build import board_config

STREAM = {"clk": 1, "rst": 1, "busy": 1, "rx__valid": 1, "rx__payload": 8, "rx__ready": 1,
          "tx__valid": 1, "tx__payload": 8, "tx__ready": 1}


def test_stream_form():
    text = board_config("swat_board", STREAM, {"timeout": 4096, "c_read_latency": 10})
    assert '#include "Vswat_board___024root.h"' in text
    assert "#define ROOT_CLASS Vswat_board___024root" in text
    assert "#define ROOT_EVAL_FN Vswat_board___024root___eval" in text  # called directly
    assert "#define BOARD_UART 0" in text and "#define DIVISOR 0" in text
    assert "#define BRIDGE_TIMEOUT 4096" in text and "#define C_READ_LATENCY 10" in text
    assert "#define PORT_RX_PAYLOAD(t) (t)->rx___05Fpayload" in text  # Verilator escapes __


def test_uart_form():
    ports = {"clk": 1, "rst": 1, "busy": 1, "rx": 1, "tx": 1}
    text = board_config("swat_board", ports, {"timeout": 80000, "divisor": 8})
    assert "#define BOARD_UART 1" in text and "#define DIVISOR 8" in text
    assert "#define PORT_TX_PIN(t) (t)->tx" in text and "RX_PAYLOAD" not in text


def test_missing_port_is_named():
    ports = {k: v for k, v in STREAM.items() if k != "tx__ready"}
    with pytest.raises(RuntimeError, match="^the board logic has no port 'tx__ready'"):
        board_config("swat_board", ports, {"timeout": 1})
