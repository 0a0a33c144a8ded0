"""FPGA builds of the SWAT core (``python -m bitstreams.build``) and their committed reports."""
