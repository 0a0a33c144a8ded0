"""Building the simulated board's executable (``sim/cpp/board_main.cpp`` + the Verilator model of
:class:`sim.board_logic.BoardLogic`), called by :func:`sim.verilate.build` for ``kind="board"``.

The C++ main touches only the top-level ports of the board logic (``clk``, ``rst``, ``busy`` and
either the bridge's byte streams or the UART pins), so no signal is made public; their C++
names and the logic's constants go into a generated ``board_config.h``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["board_config", "build_board"]

#: C++ macro -> the top-level port it reads or drives, per form of the logic
STREAM_PORTS = {"RX_VALID": "rx__valid", "RX_PAYLOAD": "rx__payload", "RX_READY": "rx__ready",
                "TX_VALID": "tx__valid", "TX_PAYLOAD": "tx__payload", "TX_READY": "tx__ready"}
UART_PORTS = {"RX_PIN": "rx", "TX_PIN": "tx"}
COMMON_PORTS = {"CLK": "clk", "RST": "rst", "BUSY": "busy"}


def board_config(toplevel: str, ports: dict, attrs: dict) -> str:
    """``board_config.h``: the model's class and its generated root eval, the form of the logic
    (``BOARD_UART``, ``DIVISOR``), the bridge's timeout, the core's C read latency and the C++
    names of the ports ``board_main.cpp`` uses."""
    from .verilate import _cxx_name, config_preamble

    divisor = int(attrs.get("divisor", 0))
    lines = [
        *config_preamble(toplevel, "sim/board_build.py", "board_main.cpp"),
        f"#define BOARD_UART {int(divisor > 0)}",
        f"#define DIVISOR {divisor}",
        f"#define BRIDGE_TIMEOUT {int(attrs['timeout'])}",
        f"#define C_READ_LATENCY {int(attrs.get('c_read_latency', 1))}",
    ]
    have = {p.lstrip("\\") for p in ports}
    for macro, port in {**COMMON_PORTS, **(UART_PORTS if divisor else STREAM_PORTS)}.items():
        if port not in have:
            raise RuntimeError(f"the board logic has no port {port!r} (ports: {sorted(have)})")
        lines.append(f"#define PORT_{macro}(t) (t)->{_cxx_name(port)}")
    return "\n".join(lines) + "\n"


def build_board(bdir: Path, toplevel: str, text: str, ports: dict, attrs: dict) -> None:
    """Write the Verilog and ``board_config.h`` into a fresh ``bdir`` and build the board's
    executable there (:data:`sim.verilate.BOARD_EXE`)."""
    from .verilate import BOARD_EXE, BOARD_MAKEFLAGS, BOARD_SOURCES, _verilate_executable

    if bdir.exists():
        shutil.rmtree(bdir)
    bdir.mkdir(parents=True)
    vfile = bdir / f"{toplevel}.v"
    vfile.write_text(text)
    (bdir / "board_config.h").write_text(board_config(toplevel, ports, attrs))
    _verilate_executable(bdir, toplevel, [vfile], BOARD_SOURCES, BOARD_EXE, [], f"-I{bdir}", [],
                         makeflags=BOARD_MAKEFLAGS)
