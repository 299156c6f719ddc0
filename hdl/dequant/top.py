"""One Atleus tile group's dequantizing periphery: S&A lanes, dequantizers, aggregator."""

from amaranth import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..cells import shared_cell
from ..lib.signatures import strobe
from ..registry import block
from ._check import check_bool, check_int
from .aggregator import Aggregator, agg_output_layout
from .dequantizer import Dequantizer, cfg_layout
from .shift_add import ShiftAddAccumulator

__all__ = ["ShiftAddDequantizer"]


@block("shift_add_dequantizer",
       cell_bits="bits per RRAM cell (1 SLC, 2 MLC)", input_bits="bit-serial input width",
       weight_bits="weight width", adc_bits="ADC code width", xbars="crossbars per group (one matrix)",
       units="S&A + dequantizer lanes in parallel", scale_bits="signed scale register width",
       scale_frac_bits="fractional bits of the scale", out_bits="dequantized partial-sum width",
       rows="crossbar rows", n_out="weight columns per crossbar",
       encoding="weight encoding to correct: offset, twos (cell_bits 1), none",
       flip="ISAAC column-flip correction", rounding="half_up, half_even or floor",
       multiplier="csd (shift-and-add) or generic (DSP-style)",
       pipelined_tree="register every level of the CSD adder tree")
class ShiftAddDequantizer(wiring.Component):
    """Shift-and-add, crossbar-wise dequantization and aggregation of one crossbar group.

    ``units`` lanes each run a :class:`ShiftAddAccumulator` then a :class:`Dequantizer`; an
    :class:`Aggregator` adds the lanes' dequantized partial sums and ``xbars // units`` beats
    of them, so each output is one column of the layer's activation ``sum_x dequant_x(X_x @
    W_x)`` over the ``xbars`` crossbars that hold the matrix (unused crossbars: scale 0).

    Order (documented contract for the tile): beat ``k`` of ``i`` carries one ADC-code beat
    per lane, the lanes in lockstep with the same ``plane``, ``slice``, ``column``, ``first``
    and ``last``; lane ``u`` serves crossbars ``u, u + units, u + 2*units, ..`` and the column
    results of one output column must leave the lanes in ``xbars // units`` consecutive beats
    (crossbar ``b * units + u`` in beat ``b``): e.g. interleave the read sequences
    (:func:`golden.shift_add.read_sequence`) of the crossbars of a lane beat by beat with
    accumulator index ``column = b * n_out + j``. The output ``column`` is the lane-0 tag of the
    last beat.

    Latency and throughput: one input beat (``units`` ADC codes) per cycle; the dequantizers
    and the aggregator take one column result per lane per cycle, so they never limit the
    rate (a lane produces one column result per ``input_bits * n_slices`` beats of a read, at
    most one per cycle in the last plane). Latency from
    the ``last`` beat of the last crossbar to ``o``: ``latency`` cycles. Backpressure on ``o``
    stalls everything (``i.ready`` follows ``o.ready`` combinationally).

    Parameters
    ----------
    cell_bits, input_bits, weight_bits, adc_bits : int
        2, 8, 8, 8 (Atleus / ISAAC).
    xbars : int
        Crossbars per group (one scale register each), 8; a multiple of ``units``.
    units : int
        Lanes, 4.
    scale_bits, scale_frac_bits : int
        16-bit scales with 14 fractional bits (range -2 to 2).
    out_bits : int
        Width of a dequantized partial sum, 16 (the aggregate has
        ``out_bits + ceil(log2(xbars))`` bits).
    rows, n_out : int
        Crossbar rows (128) and weight columns per crossbar (32 = 128 cells * 2 / 8).
    encoding, flip, rounding, multiplier, pipelined_tree
        See :class:`ShiftAddAccumulator` and :class:`Dequantizer`.

    Members
    -------
    i : In(stream.Signature(data.ArrayLayout(<S&A input layout>, units)))
    cfg : In(strobe(cfg_layout(...)))
        Scale writes (a strobe: one write per cycle with ``valid``) into the group's scale
        registers, shared by the lanes.
    o : Out(stream.Signature(agg_output_layout(...)))
        ``value, saturated, column``.
    saturated : Out(1)
        Sticky: some dequantized partial sum saturated since reset or ``clear_saturated``.
    clear_saturated : In(1)
    """

    def __init__(self, *, cell_bits=2, input_bits=8, weight_bits=8, adc_bits=8, xbars=8, units=4,
                 scale_bits=16, scale_frac_bits=14, out_bits=16, rows=128, n_out=32,
                 encoding="offset", flip=False, rounding="half_up", multiplier="csd",
                 pipelined_tree=True):
        self._units = check_int("units", units, 1, 64)
        self._xbars = check_int("xbars", xbars, 1, 256)
        if xbars % units:
            raise ValueError(f"xbars ({xbars}) must be a multiple of units ({units})")
        self._n_out = check_int("n_out", n_out, 1, 1024)
        beats = xbars // units
        columns = beats * n_out
        if columns > 1024:
            raise ValueError(f"xbars // units * n_out must be at most 1024, not {columns}")
        self._sa_kw = dict(adc_bits=adc_bits, input_bits=input_bits, weight_bits=weight_bits,
                           cell_bits=cell_bits, columns=columns, xbars=xbars, rows=rows,
                           encoding=encoding, flip=check_bool("flip", flip))
        # Lane 0's cells and the aggregator, built here for their derived widths and latencies
        # and used as they are in elaborate (nothing is constructed that is not used).
        self._sa = ShiftAddAccumulator(**self._sa_kw)
        self._dq_kw = dict(in_width=self._sa.acc_width, columns=columns, xbars=xbars,
                           scale_bits=scale_bits, scale_frac_bits=scale_frac_bits,
                           out_bits=out_bits, rounding=rounding, multiplier=multiplier,
                           pipelined_tree=pipelined_tree, scale_registers=False)
        self._dq = Dequantizer(**self._dq_kw)
        self._agg_kw = dict(lanes=units, beats=beats, in_bits=out_bits, columns=columns)
        self._agg = Aggregator(**self._agg_kw)
        self._latency = self._sa.latency + self._dq.latency + self._agg.latency
        self._params = dict(self._sa_kw, **self._dq_kw)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(self._sa.input_layout, units))),
            "cfg": In(strobe(cfg_layout(xbars=xbars, scale_bits=scale_bits))),
            "o": Out(stream.Signature(agg_output_layout(out_width=self._agg.out_width,
                                                        columns=columns))),
            "saturated": Out(1),
            "clear_saturated": In(1),
        })

    units = property(lambda self: self._units)
    xbars = property(lambda self: self._xbars)
    n_out = property(lambda self: self._n_out)
    acc_width = property(lambda self: self._sa.acc_width)
    latency = property(lambda self: self._latency)

    def elaborate(self, platform):
        m = Module()
        n = self._units
        sa = [self._sa] + [ShiftAddAccumulator(**self._sa_kw) for _ in range(n - 1)]
        dq = [self._dq] + [Dequantizer(**self._dq_kw) for _ in range(n - 1)]
        agg = self._agg
        # The group's scale registers (Atleus: one 16-byte scale register per group of 8),
        # shared by the lanes' dequantizers.
        scales = Signal(data.ArrayLayout(signed(self._dq_kw["scale_bits"]), self._xbars))
        with m.If(self.cfg.valid):
            m.d.sync += scales[self.cfg.payload.xbar].eq(self.cfg.payload.scale)
        sa_key = tuple(sorted(self._sa_kw.items()))
        dq_key = tuple(sorted(self._dq_kw.items()))
        for u in range(n):
            m.submodules[f"sa{u}"] = shared_cell(sa[u], key=sa_key)
            m.submodules[f"dq{u}"] = shared_cell(dq[u], key=dq_key)
            m.d.comb += [
                dq[u].i.valid.eq(sa[u].o.valid), dq[u].i.payload.eq(sa[u].o.payload),
                sa[u].o.ready.eq(dq[u].i.ready),
                dq[u].scales.eq(scales),
                dq[u].clear_saturated.eq(self.clear_saturated),
            ]
        m.submodules.agg = agg

        # Fork: a beat enters all lanes at once.
        all_ready = Signal()
        ready_bits = [s.i.ready for s in sa]
        m.d.comb += all_ready.eq(_and(ready_bits))
        m.d.comb += self.i.ready.eq(all_ready)
        for u in range(n):
            m.d.comb += [sa[u].i.valid.eq(self.i.valid & all_ready),
                         sa[u].i.payload.eq(self.i.payload[u])]

        # Join: the lanes' results enter the aggregator together.
        valid_bits = [d.o.valid for d in dq]
        all_valid = Signal()
        m.d.comb += all_valid.eq(_and(valid_bits))
        m.d.comb += agg.i.valid.eq(all_valid)
        for u in range(n):
            m.d.comb += [dq[u].o.ready.eq(agg.i.ready & all_valid),
                         agg.i.payload.value[u].eq(dq[u].o.payload.value)]
        m.d.comb += [agg.i.payload.saturated.eq(_or([d.o.payload.saturated for d in dq])),
                     agg.i.payload.column.eq(dq[0].o.payload.column)]
        wiring.connect(m, wiring.flipped(self.o), agg.o)
        m.d.comb += self.saturated.eq(_or([d.saturated for d in dq]))
        return m


def _and(bits):
    out = bits[0]
    for b in bits[1:]:
        out = out & b
    return out


def _or(bits):
    out = bits[0]
    for b in bits[1:]:
        out = out | b
    return out
