"""Round-robin arbitration: a bare request/grant arbiter and a stream merge built on it."""

from amaranth import Array, C, Cat, Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RoundRobin", "StreamMerge"]


def _check_count(count):
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise TypeError(f"Count must be a positive integer, not {count!r}")


class RoundRobin(wiring.Component):
    """Round-robin arbiter over ``count`` requesters, combinational grant.

    The grant goes to the first requester at or after the priority pointer (cyclically), in
    the same cycle as the requests; requesters that do not request are skipped, so no cycle
    is lost while anyone requests. The pointer moves only at a clock edge where ``advance``
    is high (the grant was used): past the granted requester, or, with ``hold``, onto the
    granted requester until an ``advance`` with ``last`` high (the end of its packet) moves
    it past. A held requester thus keeps the highest priority, not an exclusive grant: when
    it stops requesting, the next one is granted without losing a cycle. With one requester
    the grant is the request and there is no state.

    Parameters
    ----------
    count : int
        Number of requesters, at least 1.
    hold : bool
        Keep priority on the granted requester until ``last`` (packet-level round robin)
        instead of moving past it after every ``advance`` (item-level).

    Members
    -------
    requests : In(count)
        Bit ``k``: requester ``k`` requests this cycle.
    grant : Out(count)
        One-hot grant (all zero when nobody requests).
    index : Out(range(count))
        The granted requester's number (0 when nobody requests).
    valid : Out(1)
        Someone requests (and so someone is granted).
    advance : In(1)
        The grant is used this cycle; the pointer moves at the next edge (ignored while
        nobody requests).
    last : In(1)
        With ``hold`` only: the use ends the granted requester's packet.
    """

    def __init__(self, count, *, hold=False):
        _check_count(count)
        if not isinstance(hold, bool):
            raise TypeError(f"Hold must be a bool, not {hold!r}")
        self._count, self._hold = count, hold
        members = {
            "requests": In(count),
            "grant": Out(count),
            "index": Out(range(count)),
            "valid": Out(1),
            "advance": In(1),
        }
        if hold:
            members["last"] = In(1)
        super().__init__(members)

    count = property(lambda self: self._count)
    hold = property(lambda self: self._hold)

    def elaborate(self, platform):
        m = Module()
        n = self._count
        req = self.requests
        m.d.comb += self.valid.eq(req.any())
        if n == 1:
            m.d.comb += self.grant.eq(req)
            return m
        ptr = Signal(range(n))
        with m.Switch(ptr):
            for k in range(n):
                with m.Case(k):
                    # One-hot: requester i wins when nobody before it (from k) requests.
                    taken = C(0)
                    for j in range(n):
                        i = (k + j) % n
                        m.d.comb += self.grant[i].eq(req[i] & ~taken)
                        taken = taken | req[i]
                    # Index: the last assignment wins, so walk the order backwards.
                    for j in reversed(range(n)):
                        i = (k + j) % n
                        with m.If(req[i]):
                            m.d.comb += self.index.eq(i)
        if self._hold:
            for i in range(n):
                with m.If(self.advance & self.grant[i]):
                    m.d.sync += ptr.eq(Mux(self.last, (i + 1) % n, i))
        else:
            with m.If(self.advance & self.valid):
                m.d.sync += ptr.eq(Mux(self.index == n - 1, 0, self.index + 1))
        return m


class StreamMerge(wiring.Component):
    """``count`` input streams merged into one, round-robin (:class:`RoundRobin`).

    Combinational: ``o`` is valid in the cycle any input is valid and carries the granted
    input's payload; that input's ``ready`` is ``o.ready``, every other input's is low
    (while no input is valid, input 0 counts as granted). One
    item per cycle; backpressure on ``o`` stalls all inputs. The grant is held while ``o`` is
    stalled (valid and not ready), so ``o`` keeps the stream rule: once valid, it stays valid
    with the same payload until taken, even when an input ahead in the round-robin order
    raises ``valid`` meanwhile. With ``last`` set, an input
    that transfers the first item of a packet keeps the priority until the item whose
    ``last`` field is set, so packets leave contiguously while their input keeps them
    coming (an idle input loses the grant for that cycle only).

    Parameters
    ----------
    shape : shape-like
        Payload shape of every stream.
    count : int
        Number of input streams, at least 1.
    last : str or None
        Name of a 1-bit field of the payload (a ``data.StructLayout``) that marks the last
        item of a packet; None: the grant rotates after every item.

    Members
    -------
    i : In(stream.Signature(shape)).array(count)
        The input streams.
    o : Out(stream.Signature(shape))
        The merged stream.
    grant : Out(range(count))
        The input that ``o`` carries this cycle (meaningful while ``o.valid``).
    """

    def __init__(self, shape, count, *, last=None):
        _check_count(count)
        try:
            Shape.cast(shape)
        except TypeError:
            raise TypeError(f"Shape must be a shape-like object, not {shape!r}") from None
        if last is not None:
            if not isinstance(last, str):
                raise TypeError(f"Last must be a payload field name or None, not {last!r}")
            if not isinstance(shape, data.StructLayout) or last not in shape.members or \
                    Shape.cast(shape.members[last]).width != 1:
                raise ValueError(f"Last must name a 1-bit field of the payload layout, "
                                 f"not {last!r} of {shape!r}")
        self._shape, self._count, self._last = shape, count, last
        super().__init__({
            "i": In(stream.Signature(shape)).array(count),
            "o": Out(stream.Signature(shape)),
            "grant": Out(range(count)),
        })

    shape = property(lambda self: self._shape)
    count = property(lambda self: self._count)
    last = property(lambda self: self._last)

    def elaborate(self, platform):
        m = Module()
        n = self._count
        m.submodules.arbiter = arb = RoundRobin(n, hold=self._last is not None)
        valids = Cat(s.valid for s in self.i)
        if n == 1:
            m.d.comb += arb.requests.eq(valids)
        else:
            # A stalled output keeps its grant: only the held input may request.
            stalled = Signal()
            held = Signal(range(n))
            m.d.sync += stalled.eq(self.o.valid & ~self.o.ready)
            with m.If(self.o.valid & ~self.o.ready):
                m.d.sync += held.eq(arb.index)
            m.d.comb += arb.requests.eq(Mux(stalled, valids & (C(1, n) << held)[:n], valids))
        m.d.comb += [self.grant.eq(arb.index),
                     self.o.valid.eq(arb.valid),
                     arb.advance.eq(self.o.valid & self.o.ready)]
        if n == 1:
            m.d.comb += self.o.payload.eq(self.i[0].payload)
        else:
            m.d.comb += self.o.payload.eq(Array(s.payload for s in self.i)[arb.index])
        if self._last is not None:
            m.d.comb += arb.last.eq(self.o.payload[self._last])
        for k, s in enumerate(self.i):
            m.d.comb += s.ready.eq(self.o.ready & (arb.index == k))
        return m
