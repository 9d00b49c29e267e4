"""l1ad.sim: cocotb testbenches and the Verilator runner for bit-exact co-simulation."""
