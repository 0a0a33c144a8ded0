"""Amaranth 0.5 gateware of the SWAT core: sparse PE array, compressed-S loader,
streaming threshold-select (Top-K) unit, and the core that joins them."""
