"""Testbenches: Amaranth-simulator unit tests and cocotb+Verilator regressions."""
