"""One group of crossbars: their codes merged into a shift-and-add unit and a dequantizer."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..cells import add_cell
from ..dequant.dequantizer import Dequantizer, dq_output_layout
from ..dequant.dequantizer import cfg_layout as scale_cfg_layout
from ..dequant.shift_add import ShiftAddAccumulator
from ..lib.arbiter import StreamMerge
from ..lib.signatures import strobe
from .layouts import beat_layout, mode_layout

__all__ = ["TileGroup"]


class TileGroup(wiring.Component):
    """Shift-and-add and dequantization of one group of ``group`` crossbars (Atleus' S&A unit and
    scale registers per group of eight).

    The tagged codes of the group's channels (``i[k]``: crossbar ``k`` of the group) are merged
    round-robin, one per cycle (:class:`hdl.lib.arbiter.StreamMerge`), into one
    :class:`hdl.dequant.shift_add.ShiftAddAccumulator` (offset encoding, 1-bit slice steps:
    SLC and MLC crossbars alike; crossbar ``k``'s weight column ``j`` is accumulator ``k *
    max_n_out + j``) and one :class:`hdl.dequant.dequantizer.Dequantizer` with a scale register
    per crossbar (written by ``scale``). ``o`` carries each crossbar's dequantized column
    results (``xbar`` = ``k``, ``column`` = ``k * max_n_out + j``). Backpressure on ``o``
    stalls the dequantizer, the shift-and-add unit and then the channels. ``expected`` is the
    number of results per vector: the weight columns of the enabled crossbars (``mode[k]``).

    :class:`hdl.dequant.ShiftAddDequantizer` is not used here: its lanes run in lockstep and
    its aggregator adds the crossbars of a group into one column, while the tile's crossbars
    convert at their own resolutions and each adds into outputs of its own (``OUT_BASE``).

    Parameters
    ----------
    config : golden.pim_tile.TileConfig

    Members
    -------
    i : In(stream.Signature(beat_layout(...))).array(group)
    mode : In(mode_layout(adc_bits)).array(group)
        The MODE registers of the group's crossbars.
    scale : In(strobe(hdl.dequant.dequantizer.cfg_layout(xbars=group, scale_bits)))
    o : Out(stream.Signature(dq_output_layout(columns=group * max_n_out, xbars=group, out_bits)))
    expected : Out(range(group * max_n_out + 1))
    """

    def __init__(self, config):
        c = self._config = config
        beat = beat_layout(adc_bits=c.adc_bits, input_bits=c.input_bits, weight_bits=c.weight_bits,
                           max_n_out=c.max_n_out, rows=c.rows)
        super().__init__({
            "i": In(stream.Signature(beat)).array(c.group),
            "mode": In(mode_layout(c.adc_bits)).array(c.group),
            "scale": In(strobe(scale_cfg_layout(xbars=c.group, scale_bits=c.scale_bits))),
            "o": Out(stream.Signature(dq_output_layout(columns=c.group_columns, xbars=c.group,
                                                       out_bits=c.out_bits))),
            "expected": Out(range(c.group_columns + 1)),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        c = self._config
        G, mno = c.group, c.max_n_out
        sa = add_cell(m, "sa", ShiftAddAccumulator, adc_bits=c.adc_bits, input_bits=c.input_bits,
                      weight_bits=c.weight_bits, cell_bits=1, columns=c.group_columns, xbars=G,
                      rows=c.rows, encoding="offset", flip=False, signed_inputs=True, row_groups=1)
        dq = add_cell(m, "dq", Dequantizer, in_width=c.sa_acc_width, columns=c.group_columns,
                      xbars=G, scale_bits=c.scale_bits, scale_frac_bits=c.scale_frac_bits,
                      out_bits=c.out_bits, rounding=c.rounding, multiplier="csd")
        m.submodules.merge = merge = StreamMerge(self.i[0].payload.shape(), G)
        for k in range(G):
            wiring.connect(m, wiring.flipped(self.i[k]), merge.i[k])
        sel, sp = merge.o.payload, sa.i.payload
        m.d.comb += [
            sa.i.valid.eq(merge.o.valid), merge.o.ready.eq(sa.i.ready),
            sp.code.eq(sel.code), sp.plane.eq(sel.plane), sp.slice.eq(sel.slice),
            sp.column.eq(merge.grant * mno + sel.column), sp.xbar.eq(merge.grant),
            sp.first.eq(sel.first), sp.last.eq(sel.last), sp.ones.eq(sel.ones),
        ]
        wiring.connect(m, sa.o, dq.i)
        wiring.connect(m, wiring.flipped(self.scale), dq.cfg)
        m.d.comb += dq.clear_saturated.eq(0)
        wiring.connect(m, dq.o, wiring.flipped(self.o))
        n_out_mlc, n_out_slc = c.n_out(2), c.n_out(1)
        m.d.comb += self.expected.eq(sum(Mux(md.enable, Mux(md.slc, n_out_slc, n_out_mlc), 0)
                                         for md in self.mode))
        return m
