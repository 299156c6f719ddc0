"""The digital drive of one crossbar: row drive, ADC controllers, code tags."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import Array
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..cells import add_cell
from ..lib.arbiter import StreamMerge
from ..lib.signatures import AdcPortSignature, strobe
from ..sar_adc import SarAdcController
from .layouts import (CfgField, beat_layout, bus_layout, mode_layout, plane_shape, ubits,
                      xbar_cfg_layout)

__all__ = ["PimChannel"]


def _popcount(bits):
    level = [bits[i] for i in range(len(bits))]
    while len(level) > 1:
        nxt = []
        for k in range(0, len(level), 2):
            nxt.append(level[k] + level[k + 1] if k + 1 < len(level) else level[k])
        level = nxt
    return level[0]


class PimChannel(wiring.Component):
    """The digital drive of one crossbar: 1-bit DAC row drive, its ADC controllers, code tags.

    The channel holds its crossbar's MODE and IN_BLOCK registers (written by ``cfg`` strobes,
    :class:`golden.pim_tile.CfgField`; other fields are ignored). Before each plane the
    sequencer broadcasts that plane of every row block on ``bus``; the channel keeps the one
    of its row block. A ``cmd`` transfer (input plane ``p``; ``cmd.ready`` is high while every
    ADC can take a command) moves the kept plane into the row drive ``drive`` and, when the
    crossbar is enabled, starts every ADC on a full sweep of its columns: the ADCs sample the
    next cycle (``adc[a].sample``) and convert ``cols // adcs_per_xbar`` columns each, one trial
    per cycle (:class:`hdl.sar_adc.SarAdcController`). Each code leaves on ``o`` tagged with
    its input plane (counted per ADC, LSB plane first), weight column ``j = c // n_slices``,
    slice index ``s * cell_bits`` (``n_slices`` = ``weight_bits`` cells for SLC,
    ``weight_bits // 2`` for MLC), ``first``/``last`` of the column's sum and the popcount
    ``ones`` of its plane's row drive. The ADCs' codes are merged round-robin
    (:class:`hdl.lib.arbiter.StreamMerge`); backpressure on ``o`` stalls the ADCs (the
    sample-and-hold keeps their values).

    Parameters
    ----------
    config : golden.pim_tile.TileConfig
        The tile's parameters (the channel uses ``rows``, ``cols``, ``adcs_per_xbar``,
        ``adc_bits``, ``resolutions``, ``input_bits``, ``weight_bits`` and ``row_blocks``).

    Members
    -------
    cfg : In(strobe(xbar_cfg_layout()))
        Register writes to this crossbar.
    mode : Out(mode_layout(adc_bits))
        The MODE register (``enable``, ``slc``, ``adc_bits``).
    bus : In(strobe(bus_layout(rows, row_blocks)))
        Plane broadcast.
    cmd : In(stream.Signature(plane_shape(input_bits)))
        Start a plane.
    drive : Out(rows)
        Row drive (1-bit DAC inputs), bit ``r`` for row ``r``.
    adc : Out(AdcPortSignature(max_bits=adc_bits, columns=cols // adcs_per_xbar)).array(adcs_per_xbar)
        The analog front ends of the ADCs (ADC ``a`` converts columns ``a * cols / adcs ..``).
    o : Out(stream.Signature(beat_layout(...)))
        Tagged ADC codes.
    """

    def __init__(self, config):
        c = self._config = config
        self._share = c.columns_per_adc
        super().__init__({
            "cfg": In(strobe(xbar_cfg_layout())),
            "mode": Out(mode_layout(c.adc_bits), init={"adc_bits": c.adc_bits}),
            "bus": In(strobe(bus_layout(c.rows, c.row_blocks))),
            "cmd": In(stream.Signature(plane_shape(c.input_bits))),
            "drive": Out(c.rows),
            "adc": Out(AdcPortSignature(max_bits=c.adc_bits, columns=self._share))
                   .array(c.adcs_per_xbar),
            "o": Out(stream.Signature(beat_layout(adc_bits=c.adc_bits, input_bits=c.input_bits,
                                                  weight_bits=c.weight_bits,
                                                  max_n_out=c.max_n_out, rows=c.rows))),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        c = self._config
        ib, wb, share = c.input_bits, c.weight_bits, self._share
        # MODE and IN_BLOCK registers.
        in_block = Signal(range(c.row_blocks))
        with m.If(self.cfg.valid):
            with m.Switch(self.cfg.payload.field):
                with m.Case(CfgField.MODE):
                    m.d.sync += self.mode.eq(self.cfg.payload.value[:len(self.mode.as_value())])
                with m.Case(CfgField.IN_BLOCK):
                    m.d.sync += in_block.eq(self.cfg.payload.value)
        drive_next = Signal(c.rows)
        with m.If(self.bus.valid & (self.bus.payload.block == in_block)):
            m.d.sync += drive_next.eq(self.bus.payload.bits)
        # Row drive and the popcount of each plane (for the offset-encoding correction).
        issue = self.cmd.valid & self.cmd.ready
        ones_hist = Array(Signal(c.rows.bit_length(), name=f"ones{p}") for p in range(ib))
        count_pending = Signal()
        count_plane = Signal(range(ib))
        with m.If(issue):
            m.d.sync += [self.drive.eq(drive_next), count_pending.eq(1),
                         count_plane.eq(self.cmd.payload)]
        with m.Elif(count_pending):
            m.d.sync += [ones_hist[count_plane].eq(_popcount(self.drive)), count_pending.eq(0)]

        m.submodules.merge = merge = StreamMerge(self.o.payload.shape(), c.adcs_per_xbar)
        readies = []
        for a in range(c.adcs_per_xbar):
            ctrl = add_cell(m, f"adc{a}", SarAdcController, c.adc_bits, columns=share,
                            settle_cycles=0, resolutions=c.resolutions)
            cp = ctrl.cmd.payload
            m.d.comb += [
                ctrl.cmd.valid.eq(issue & self.mode.enable),
                cp.first.eq(0), cp.last.eq(share - 1), cp.all.eq(1), cp.hold.eq(0),
                cp.bits.eq(self.mode.adc_bits),
            ]
            wiring.connect(m, wiring.flipped(self.adc[a]), ctrl.adc)
            readies.append(ctrl.cmd.ready)
            # Plane of the words leaving this ADC: one sweep per plane, LSB plane first.
            plane = Signal(range(ib), name=f"plane{a}")
            with m.If(ctrl.o.valid & ctrl.o.ready & ctrl.o.payload.last):
                m.d.sync += plane.eq(Mux(plane == ib - 1, 0, plane + 1))
            col = Signal(ubits(c.cols), name=f"col{a}")
            m.d.comb += col.eq(ctrl.o.payload.column + a * share)
            beat = merge.i[a].payload
            ns_mlc, ns_slc = wb // 2, wb
            s = Signal(ubits(wb), name=f"slice{a}")
            j = Signal(ubits(c.max_n_out), name=f"j{a}")
            s_top = Signal(name=f"s_top{a}")
            with m.If(self.mode.slc):
                m.d.comb += [s.eq(col[:(ns_slc - 1).bit_length()]),
                             j.eq(col >> (ns_slc - 1).bit_length()),
                             s_top.eq(s == ns_slc - 1), beat.slice.eq(s)]
            with m.Else():
                m.d.comb += [s.eq(col[:(ns_mlc - 1).bit_length()]),
                             j.eq(col >> (ns_mlc - 1).bit_length()),
                             s_top.eq(s == ns_mlc - 1), beat.slice.eq(s << 1)]
            m.d.comb += [
                beat.code.eq(ctrl.o.payload.code), beat.plane.eq(plane), beat.column.eq(j),
                beat.first.eq((plane == 0) & (s == 0)), beat.last.eq((plane == ib - 1) & s_top),
                beat.ones.eq(ones_hist[plane]),
                merge.i[a].valid.eq(ctrl.o.valid), ctrl.o.ready.eq(merge.i[a].ready),
            ]
        m.d.comb += self.cmd.ready.eq(Cat(*readies).all())
        wiring.connect(m, merge.o, wiring.flipped(self.o))
        return m
