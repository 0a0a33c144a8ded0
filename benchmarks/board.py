"""The simulated board (``python -m sim.board``) measured through its pseudo-terminal.

Starts the board (the Verilator model of ``HostBridge`` + ``SwatCore``) and, with the unchanged
host driver on a pyserial port: the GEMMs of one digits training step (the 11 shapes of the
digits CNN at batch 64, 90 % sparse S) run ``--rounds`` times, checked bit-exact against
``sw.intref.gemm``, with the bytes that crossed the terminal each way; then ``--steps`` steps of
``swat-train --backend fpga`` (digits, SWAT-U 90 %, the whole 360-sample test split evaluated
at the end) against the same steps on ``intref``, with a check that both computed the same
weights. Wall times on a shared machine: figures, not limits.
"""

from __future__ import annotations

import time

NAME = "board"
HELP = "GEMMs and fpga-backend training through the simulated board's pseudo-terminal"

# (M, K, N) of the digits CNN's GEMMs at batch 64 (sw.hil lowering; forward, input and weight
# gradients of the four layers)
DIGITS_SHAPES = [(4096, 9, 16), (4096, 144, 32), (1024, 288, 64), (64, 256, 10),
                 (64, 10, 256), (10, 64, 256), (1024, 64, 288), (64, 1024, 288),
                 (4096, 32, 144), (32, 4096, 144), (16, 4096, 9)]


def add_arguments(p) -> None:
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--divisor", type=int, default=0, help="0: byte streams, N: UART N clk/bit")
    p.add_argument("--rounds", type=int, default=3, help="passes over the digits GEMMs")
    p.add_argument("--steps", type=int, default=5, help="fpga-backend training steps (0: none)")
    p.add_argument("--seed", type=int, default=0)


class _Counting:
    """A serial port that counts the bytes each way."""

    def __init__(self, port):
        self.port, self.sent, self.received = port, 0, 0

    @property
    def timeout(self):
        return self.port.timeout

    def write(self, data):
        self.sent += len(data)
        return self.port.write(data)

    def read(self, n):
        data = self.port.read(n)
        self.received += len(data)
        return data


def _gemms(board, args) -> None:
    import numpy as np

    from hw.host_driver import SwatFpga, open_serial
    from sw import intref

    rng = np.random.default_rng(args.seed)
    ops = []
    for m, k, n in DIGITS_SHAPES:
        d = rng.integers(-128, 128, (m, k)).astype(np.int8)
        s = (rng.integers(-128, 128, (k, n)) * (rng.random((k, n)) < 0.1)).astype(np.int8)
        ops.append((d, s, intref.gemm(d, s)))
    ser = open_serial(board.path, timeout=10.0)
    try:
        port = _Counting(ser)
        fpga = SwatFpga(port)
        fpga.resync()
        fpga.info()
        port.sent = port.received = 0
        cycles = tiles = 0
        exact = True
        t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(args.rounds):
            for d, s, ref in ops:
                r = fpga.gemm(d, s)
                exact &= bool(np.array_equal(r.c, ref))
                cycles += r.cycles
                tiles += r.tiles
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        ser.close()
    count = args.rounds * len(ops)
    moved = port.sent + port.received
    print(f"GEMMs: {count} ({args.rounds} x the {len(ops)} of a digits step, batch 64) in "
          f"{wall:.2f} s = {count / wall:.1f} GEMMs/s, {tiles} core operations, all bit-exact: "
          f"{exact}")
    print(f"  bytes through the terminal: {port.sent:,} to the board + {port.received:,} back "
          f"= {moved / wall / 1e3:.0f} kB/s; {cycles:,} core cycles "
          f"({moved / count / 1e3:.0f} kB per GEMM); host process {cpu:.1f} CPU s")


def _train(board, args) -> None:
    import torch

    from sw.train import train

    kw = dict(dataset="digits", sparsity=0.9, max_steps=args.steps, seed=args.seed, plots=False)
    times = {}
    models = {}
    for backend in ("intref", "fpga"):
        t0 = time.perf_counter()
        res = train(backend=backend, port=board.path, **kw)
        times[backend] = time.perf_counter() - t0
        models[backend] = res.model.state_dict()
        acc = res.final["test_acc"] if res.final else float("nan")
        print(f"training {backend}: {args.steps} steps (batch 64) + evaluation in "
              f"{times[backend]:.1f} s, test acc {acc:.4f}")
    same = all(torch.equal(x, y) for x, y in
               zip(models["intref"].values(), models["fpga"].values(), strict=True))
    print(f"  fpga-backend weights equal intref's: {same}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``)."""
    import os

    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args) -> int:
    from sim.board import SimulatedBoard

    t0 = time.perf_counter()
    with SimulatedBoard(args.rows, args.cols, divisor=args.divisor) as board:
        print(f"{board.line} (model ready in {time.perf_counter() - t0:.1f} s)", flush=True)
        t1 = time.perf_counter()
        _gemms(board, args)
        if args.steps:
            _train(board, args)
        cpu, wall = _cpu_seconds(board.pid), time.perf_counter() - t1
    print(board.stderr[-1] if board.stderr else "board: no summary")
    cycles = int(board.stderr[-1].split(", ")[-1].split()[0]) if board.stderr else 0
    print(f"board process: {cpu:.1f} CPU s over {wall:.1f} s wall; {cycles / cpu / 1e6:.2f} M "
          f"cycles per CPU second")
    return 0
