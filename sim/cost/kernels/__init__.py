"""Measured kernel tables: latencies collected inside real vLLM images (aiconfigurator), reduced to small grids that
ship with fleetsim, interpolated within the measured grid and extended by the roofline outside it."""
