"""Formal harnesses of the round-robin arbiter and stream merge (:mod:`hdl.lib.arbiter`),
which the PIM tile uses to merge its ADC, group and accumulator streams.

:class:`RoundRobinHarness`, every cycle:

- the grant is one-hot or zero, only to a requester, and zero only when nobody requests
  (``valid`` is "someone requests"); ``index`` names the granted requester;
- no starvation: while requester ``k`` keeps requesting without being granted, at most
  ``count - 1`` grants are used (``advance``) by others; with ``hold``, at most
  ``count - 1`` packets end (``advance`` with ``last``) before ``k`` is granted, and a
  requester whose grant was used without ``last`` is granted again while it requests.

:class:`StreamMergeHarness`: the stream rules on ``o`` (assumed on every input), ``o``
carries exactly the granted input's payload, only that input sees ``ready``, and an input
holding an item is served after at most ``count - 1`` transfers of other inputs.
"""

from amaranth import Const, Mux, Signal
from amaranth.hdl import Assert

from hdl.lib.arbiter import RoundRobin, StreamMerge

from .harness import FormalHarness, Mutant

__all__ = ["RoundRobinHarness", "StreamMergeHarness", "ARBITER_BUGS"]


def _grant_idle(count, **kw):
    """Seeded bug: requester 0 is granted when nobody requests."""
    return Mutant(RoundRobin(count, **kw),
                  {("grant",): lambda m, v: Mux(v == 0, 1, v)})


def _starve_zero(count, **kw):
    """Seeded bug: requester 0 is ignored while anyone else requests (fixed low priority)."""
    def mask(m, v):
        return Mux((v & ~Const(1, count)) != 0, v & ~Const(1, count), v)
    return Mutant(RoundRobin(count, **kw), {("requests",): mask})


ARBITER_BUGS = {"grant_idle": _grant_idle, "starve_zero": _starve_zero}


class RoundRobinHarness(FormalHarness):
    """:class:`hdl.lib.arbiter.RoundRobin` with free requests, ``advance`` and ``last``."""

    def __init__(self, count=3, *, hold=False, bug=None):
        cls = ARBITER_BUGS[bug] if bug else RoundRobin
        super().__init__(cls(count, hold=hold))
        self.count, self.hold = count, hold

    def properties(self, m):
        dut, n = self.dut, self.count
        req, grant = dut.requests, dut.grant
        m.d.comb += [
            Assert((grant & ~req) == 0),
            Assert((grant & (grant - 1)) == 0),
            Assert(dut.valid == (req != 0)),
            Assert((grant != 0) == (req != 0)),
        ]
        for k in range(n):
            m.d.comb += Assert(~grant[k] | (dut.index == k))
        used = dut.advance & dut.valid
        for k in range(n):
            waits = Signal(range(n + 1), name=f"waits{k}")
            with m.If(~req[k] | grant[k]):
                m.d.sync += waits.eq(0)
            with m.Elif(used & (dut.last if self.hold else 1) & (waits < n)):
                m.d.sync += waits.eq(waits + 1)
            m.d.comb += Assert(waits <= n - 1)
            if self.hold:
                kept = Signal(name=f"kept{k}")
                m.d.sync += kept.eq(dut.advance & grant[k] & ~dut.last)
                m.d.comb += Assert(~(kept & req[k]) | grant[k])


class StreamMergeHarness(FormalHarness):
    """:class:`hdl.lib.arbiter.StreamMerge` of ``count`` streams of ``width``-bit items
    (``check_streams=False``: the grant properties without the stream rule on ``o``)."""

    def __init__(self, count=3, *, width=2, bug=None, check_streams=True):
        dut = StreamMerge(width, count)
        if bug == "valid_drop":
            from .harness import dropping_valid
            dut = Mutant(dut, dropping_valid(("o",)))
        elif bug is not None:
            raise ValueError(f"bug must be valid_drop or None, not {bug!r}")
        super().__init__(dut, check_streams=check_streams)
        self.count = count

    def properties(self, m):
        dut, n = self.dut, self.count
        o = dut.o
        any_valid = Const(0)
        for k in range(n):
            any_valid = any_valid | dut.i[k].valid
        m.d.comb += Assert(o.valid == any_valid)
        for k in range(n):
            s = dut.i[k]
            chosen = dut.grant == k
            m.d.comb += [
                Assert(~(o.valid & chosen) | (s.valid & (o.payload == s.payload))),
                Assert(s.ready == (o.ready & chosen)),
            ]
            waits = Signal(range(n + 1), name=f"waits{k}")
            with m.If(~s.valid | s.ready):
                m.d.sync += waits.eq(0)
            with m.Elif(o.valid & o.ready & (waits < n)):
                m.d.sync += waits.eq(waits + 1)
            m.d.comb += Assert(waits <= n - 1)
