"""Former home of the FPGA host driver: it is :mod:`hw.host_driver` now (next to the bridge it
drives). Kept so that ``from sim.fpga import SwatFpga, run_gemm_fpga`` keeps working."""

from hw.host_driver import *  # noqa: F403
from hw.host_driver import __all__  # noqa: F401
