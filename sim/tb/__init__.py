"""cocotb testbench modules used by the library (run inside the simulator by cocotb's runner).

``cocotb_gemm``: batch server behind :func:`sim.gemm.run_gemms` with ``engine="cocotb"``;
``cocotb_select``: regressions of the threshold-select unit; ``driver`` / ``select_driver``: the
coroutines that drive the units' ports. The core's regression bench lives beside its pytest
runner (``tests/cocotb_core.py``, ``tests/test_sim_core.py``).
"""
