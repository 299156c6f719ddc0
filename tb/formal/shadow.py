"""Reference state kept by a formal harness: a small in-order queue of expected items."""

from amaranth import Mux, Shape, Signal, Value
from amaranth.hdl import Assert
from amaranth.lib import data

__all__ = ["ShadowQueue"]


class ShadowQueue:
    """An in-order queue of ``depth`` items of ``shape`` inside harness module ``m``.

    Items are pushed (up to one per push port per cycle, in port order) with :meth:`push`
    and popped (at most one per cycle) with :meth:`pop`; the harness asserts that it never
    overflows (more items pending than ``depth``: itself a property of the design, which
    bounds the items in flight; ``check_overflow=False`` drops the excess instead) and never
    pops when empty. ``head`` is the oldest item,
    ``count`` the number held. Call :meth:`build` once after the pushes and the pop.
    """

    def __init__(self, m, shape, depth, name, *, check_overflow=True):
        self.m, self.shape, self.depth, self.name = m, shape, depth, name
        self.check_overflow = check_overflow
        width = Shape.cast(shape).width
        self.items = [Signal(width, name=f"{name}_{k}") for k in range(depth)]
        self.count = Signal(range(depth + 1), name=f"{name}_count")
        self.head = (data.Layout.cast(shape)(self.items[0]) if isinstance(shape, data.Layout)
                     else self.items[0])
        self.nonempty = self.count != 0
        self._pushes = []
        self._pop = None

    def push(self, cond, value):
        self._pushes.append((Value.cast(cond), Value.cast(value)))

    def pop(self, cond):
        self._pop = Value.cast(cond)

    def build(self):
        m, n = self.m, self.depth
        pop = self._pop if self._pop is not None else Value.cast(0)
        m.d.comb += Assert(~pop | self.nonempty)
        after_pop = Signal(range(n + 1), name=f"{self.name}_after_pop")
        m.d.comb += after_pop.eq(self.count - pop)
        shifted = [Mux(pop, self.items[k + 1], self.items[k]) if k + 1 < n else
                   Mux(pop, 0, self.items[k]) for k in range(n)]
        index = after_pop
        nxt = list(shifted)
        total = Value.cast(after_pop)
        for i, (cond, value) in enumerate(self._pushes):
            at = Signal(range(n + len(self._pushes) + 1), name=f"{self.name}_push{i}_at")
            m.d.comb += at.eq(index)
            nxt = [Mux(cond & (at == k), value, nxt[k]) for k in range(n)]
            index = at + cond
            total = total + cond
        if self.check_overflow:
            m.d.comb += Assert(total <= n)  # the design never has more than `depth` pending
        for k in range(n):
            m.d.sync += self.items[k].eq(nxt[k])
        m.d.sync += self.count.eq(Mux(total > n, n, total))
