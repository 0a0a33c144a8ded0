"""cocotb testbench modules (run inside the simulator by cocotb's runner).

``cocotb_gemm``: batch server behind :func:`sim.gemm.run_gemms`; ``cocotb_core``: regressions of
the core; ``cocotb_select``: regressions of the threshold-select unit. ``driver`` holds the
coroutines that drive the core's ports.
"""
