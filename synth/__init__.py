"""Yosys synthesis flows that turn each block into area reports (``python -m synth``)."""
