"""Batch GEMM server: runs every job of an ``.npz`` file on the core in one simulator process.

Driven by :func:`sim.gemm.run_gemms` through environment variables:

``SWAT_TB_JOBS``  input ``.npz``: ``runs`` int64 ``[R, 7]`` = (m, k, n, d_id, s_id, s_len,
                  read_c); ``d_<id>`` D buffer words ``[words, rows]`` int8; ``s_<id>`` S buffer
                  words uint32. Consecutive runs that reuse a ``d_id`` / ``s_id`` do not rewrite
                  that buffer.
``SWAT_TB_OUT``   output ``.npz``: ``stats`` int64 ``[R, 6]`` = (cycles, busy, stall, idle,
                  error, error_code); ``c_<r>`` C buffer words ``[ceil(m/rows)*n, rows]`` int32
                  of each run with read_c; ``wall`` seconds spent in the bench.
``SWAT_TB_META``  the model's ``model.json`` (buffer geometry, memory names).
``SWAT_TB_MODE``  ``auto`` (preload memories when possible), ``preload`` or ``ports``.
``SWAT_TB_PROGRESS`` optional file the bench rewrites with "<runs done> <runs>" (progress bars).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np

from sim.tb.driver import CoreDriver


@cocotb.test()
async def run_jobs(dut):
    t0 = time.perf_counter()
    c0 = time.process_time()
    meta = json.loads(open(os.environ["SWAT_TB_META"]).read())
    drv = CoreDriver(dut, meta, os.environ.get("SWAT_TB_MODE", "auto"))
    await drv.start()
    jobs = np.load(os.environ["SWAT_TB_JOBS"])
    runs = jobs["runs"]
    stats = np.zeros((len(runs), 6), dtype=np.int64)
    out = {}
    cur_d = cur_s = None
    t_io = 0.0
    c_io = 0.0
    progress = os.environ.get("SWAT_TB_PROGRESS")
    t_prog = 0.0
    for r, (m, k, n, d_id, s_id, s_len, read_c) in enumerate(runs.tolist()):
        t1 = time.perf_counter()
        c1 = time.process_time()
        if d_id != cur_d:
            await drv.write_d(jobs[f"d_{d_id}"])
            cur_d = d_id
        if s_id != cur_s:
            s_words = jobs[f"s_{s_id}"]
            await drv.write_s(s_words)
            cur_s = s_id
        t_io += time.perf_counter() - t1
        c_io += time.process_time() - c1
        st = await drv.run(m, k, n, s_len)
        stats[r] = (st["cycles"], st["busy"], st["stall"], st["idle"], st["error"], st["code"])
        if read_c and not st["error"]:
            t1 = time.perf_counter()
            c1 = time.process_time()
            out[f"c_{r}"] = await drv.read_c(-(-m // drv.rows) * n)
            t_io += time.perf_counter() - t1
            c_io += time.process_time() - c1
        if progress and time.perf_counter() - t_prog > 0.25:
            t_prog = time.perf_counter()
            with open(progress + ".tmp", "w") as fh:
                fh.write(f"{r + 1} {len(runs)}\n")
            os.replace(progress + ".tmp", progress)
    np.savez(os.environ["SWAT_TB_OUT"], stats=stats, wall=time.perf_counter() - t0, io=t_io,
             cpu=time.process_time() - c0, cpu_io=c_io,
             preload=np.array([bool(drv.dmem), bool(drv.smem), bool(drv.cmem)]), **out)
