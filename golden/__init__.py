"""Pure-NumPy golden models of the pimrtl datapath (the spec the RTL must match bit for bit)."""
