"""A stream queue on :mod:`amaranth.lib.fifo`."""

from amaranth import Module, Shape
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Queue"]


class Queue(wiring.Component):
    """A first-in first-out queue of ``depth`` items between two streams.

    Unbuffered (:class:`amaranth.lib.fifo.SyncFIFO`): an item accepted on ``i`` at a clock
    edge is on ``o`` from the next cycle (one cycle of latency), read combinationally from
    the storage; one item in and one out per cycle. Buffered
    (:class:`amaranth.lib.fifo.SyncFIFOBuffered`): the output is registered, at most two
    cycles of latency. ``i.ready`` is low while the queue is full; ``o.valid`` while it
    holds an item.

    A block that holds many queues of one configuration can emit them as one Verilog module
    through :func:`hdl.cells.shared_cell`.

    Parameters
    ----------
    shape : shape-like
        Item shape (a ``data.Layout`` gives views on both streams).
    depth : int
        Capacity in items, at least 1.
    buffered : bool
        Register the output (see above).

    Members
    -------
    i : In(stream.Signature(shape))
        Items in.
    o : Out(stream.Signature(shape))
        Items out, in order.
    level : Out(range(depth + 1))
        Items held.
    """

    def __init__(self, shape, *, depth, buffered=False):
        try:
            Shape.cast(shape)
        except TypeError:
            raise TypeError(f"Shape must be a shape-like object, not {shape!r}") from None
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise TypeError(f"Depth must be a positive integer, not {depth!r}")
        if not isinstance(buffered, bool):
            raise TypeError(f"Buffered must be a bool, not {buffered!r}")
        self._shape, self._depth, self._buffered = shape, depth, buffered
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    shape = property(lambda self: self._shape)
    depth = property(lambda self: self._depth)
    buffered = property(lambda self: self._buffered)

    def elaborate(self, platform):
        m = Module()
        cls = fifo.SyncFIFOBuffered if self._buffered else fifo.SyncFIFO
        m.submodules.fifo = f = cls(width=Shape.cast(self._shape).width, depth=self._depth)
        m.d.comb += [
            f.w_data.eq(self.i.payload),
            f.w_en.eq(self.i.valid),
            self.i.ready.eq(f.w_rdy),
            self.o.payload.eq(f.r_data),
            self.o.valid.eq(f.r_rdy),
            f.r_en.eq(self.o.ready),
            self.level.eq(f.level),
        ]
        return m
