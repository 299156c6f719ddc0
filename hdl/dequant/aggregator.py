"""Pipelined adder of the dequantized partial sums of the crossbars of one weight matrix."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._check import check_int
from .shift_add import _ubits

__all__ = ["Aggregator", "agg_input_layout", "agg_output_layout"]


def agg_input_layout(*, lanes, in_bits, columns):
    """One beat: a partial sum per lane, their saturation flags OR-ed, the column tag."""
    return data.StructLayout({
        "value": data.ArrayLayout(signed(in_bits), lanes),
        "saturated": unsigned(1),
        "column": unsigned(_ubits(columns)),
    })


def agg_output_layout(*, out_width, columns):
    return data.StructLayout({
        "value": signed(out_width),
        "saturated": unsigned(1),
        "column": unsigned(_ubits(columns)),
    })


class Aggregator(wiring.Component):
    """Sum ``lanes * beats`` partial sums per output column, exactly.

    Each beat carries one partial sum per lane (the crossbars read side by side); a pipelined
    adder tree of ``ceil(log2(lanes))`` levels adds the lanes, then an accumulator adds
    ``beats`` consecutive beats (the crossbars of the matrix that share a lane) and emits the
    column sum (:func:`golden.quant.aggregate`). The output ``column`` is the tag of the last
    beat; ``saturated`` is the OR of the beats' flags. The result width
    ``in_bits + ceil(log2(lanes * beats))`` cannot overflow.

    Latency and throughput: one beat per cycle; a sum leaves ``latency = tree levels + 1``
    cycles after its last beat; one global stall (``i.ready`` follows ``o.ready``).

    Parameters
    ----------
    lanes : int
        Partial sums per beat, 1 to 64.
    beats : int
        Beats per column sum, 1 to 256.
    in_bits : int
        Signed width of a partial sum, 2 to 64.
    columns : int
        Range of the column tag, 1 to 1024.

    Members
    -------
    i : In(stream.Signature(agg_input_layout(...)))
    o : Out(stream.Signature(agg_output_layout(...)))
    """

    def __init__(self, *, lanes=4, beats=2, in_bits=16, columns=64):
        self._lanes = check_int("lanes", lanes, 1, 64)
        self._beats = check_int("beats", beats, 1, 256)
        self._in_bits = check_int("in_bits", in_bits, 2, 64)
        self._columns = check_int("columns", columns, 1, 1024)
        self._out_width = in_bits + (lanes * beats - 1).bit_length()
        super().__init__({
            "i": In(stream.Signature(agg_input_layout(lanes=lanes, in_bits=in_bits, columns=columns))),
            "o": Out(stream.Signature(agg_output_layout(out_width=self._out_width, columns=columns))),
        })

    lanes = property(lambda self: self._lanes)
    beats = property(lambda self: self._beats)
    in_bits = property(lambda self: self._in_bits)
    columns = property(lambda self: self._columns)
    out_width = property(lambda self: self._out_width)

    @property
    def latency(self):
        return (self._lanes - 1).bit_length() + 1

    def elaborate(self, platform):
        m = Module()
        w = self._out_width
        ce = Signal()
        m.d.comb += [ce.eq(~self.o.valid | self.o.ready), self.i.ready.eq(ce)]
        v, sat, col = self.i.valid, self.i.payload.saturated, self.i.payload.column
        level = [self.i.payload.value[k] for k in range(self._lanes)]
        depth = 0
        while len(level) > 1:
            nxt = []
            for k in range(0, len(level), 2):
                s = Signal(signed(w), name=f"sum{depth}_{k // 2}")
                with m.If(ce):
                    m.d.sync += s.eq(level[k] + level[k + 1] if k + 1 < len(level) else level[k])
                nxt.append(s)
            nv, nsat, ncol = Signal(), Signal(), Signal.like(col)
            with m.If(ce):
                m.d.sync += [nv.eq(v), nsat.eq(sat), ncol.eq(col)]
            level, v, sat, col = nxt, nv, nsat, ncol
            depth += 1
        lane_sum = level[0]

        # Accumulate `beats` beats; emit on the last one.
        count = Signal(range(self._beats))
        acc = Signal(signed(w))
        acc_sat = Signal()
        first = count == 0
        total = Signal(signed(w))
        total_sat = Signal()
        if self._beats == 1:
            m.d.comb += [total.eq(lane_sum), total_sat.eq(sat)]
        else:
            m.d.comb += [total.eq(Mux(first, lane_sum, lane_sum + acc)),
                         total_sat.eq(sat | (acc_sat & ~first))]
        last = count == self._beats - 1
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(v & last), self.o.payload.value.eq(total),
                         self.o.payload.saturated.eq(total_sat), self.o.payload.column.eq(col)]
            with m.If(v):
                m.d.sync += [acc.eq(total), acc_sat.eq(total_sat),
                             count.eq(Mux(last, 0, count + 1))]
        return m

