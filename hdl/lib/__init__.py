"""The project's stream library: mechanisms that several blocks share.

:mod:`hdl.lib.arbiter` (round-robin arbitration and stream merge), :mod:`hdl.lib.queue`
(a stream queue on :mod:`amaranth.lib.fifo`); port bundles used by several blocks live in
:mod:`hdl.lib.signatures`.
"""

from .arbiter import RoundRobin, StreamMerge
from .queue import Queue

__all__ = ["RoundRobin", "StreamMerge", "Queue"]
