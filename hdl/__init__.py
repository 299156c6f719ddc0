"""Amaranth RTL of the PIM datapath: one block per module, registered in :mod:`hdl.registry`."""
