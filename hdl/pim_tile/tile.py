"""ReRAM PIM tile: the digital periphery of an Atleus/ISAAC tile around its analog crossbars."""

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.pim_tile import TileConfig

from ..cells import add_cell
from ..registry import block
from .accumulator import OutputAccumulator
from .channel import PimChannel
from .group import TileGroup
from .layouts import cfg_layout, input_layout, output_layout, ubits
from .sequencer import ConfigDecoder, PlaneSequencer

__all__ = ["PimTile"]


@block("pim_tile",
       crossbars="crossbars in the tile (Atleus: 96)",
       rows="rows per crossbar, one 1-bit DAC each (128)",
       cols="cell columns per crossbar, a power of two (128)",
       input_bits="signed activation width: one DAC plane per bit (8)",
       weight_bits="signed weight width: 4 MLC or 8 SLC cells per weight (8)",
       adc_bits="widest ADC resolution (8)",
       resolutions="ADC resolutions a crossbar may select, e.g. 6,7,8",
       adcs_per_xbar="SAR ADCs per crossbar, each muxing cols/adcs_per_xbar columns (1)",
       group="crossbars per shift-and-add/dequantizer group (8: Atleus's 12 groups)",
       row_blocks="input buffer size in row blocks of `rows` activations (8)",
       outputs="output accumulator entries: the longest output vector (1024)",
       scale_bits="signed width of the per-crossbar scale registers (16)",
       scale_frac_bits="fractional bits of the scales: the dequantizer's right shift (16)",
       out_bits="signed width of one dequantized partial sum, saturating (24)",
       rounding="rounding of the dequantizer shift: half_up, half_even or floor")
class PimTile(wiring.Component):
    """ReRAM PIM tile: bit-serial crossbar MVM, SAR ADCs, shift-and-add, dequantization.

    The digital periphery of an Atleus/ISAAC tile (Atleus Table IV and Section IV-D) with
    HyFlexPIM's per-crossbar SLC/MLC mode and reconfigurable ADC resolution; the analog
    crossbars are outside (the testbench plays them, :mod:`tb.env.pim_tile`).

    Structure: stream-connected stages (:mod:`hdl.pim_tile`): the :class:`PlaneSequencer`
    (configuration port, input double buffer, plane broadcast and lockstep plane commands), a
    :class:`ConfigDecoder`, one :class:`PimChannel` per crossbar (row drive and SAR-ADC
    controllers), one :class:`TileGroup` per ``group`` crossbars (shift-and-add unit and
    dequantizer) and the :class:`OutputAccumulator`.

    Dataflow. An input vector arrives on ``i`` as ``N_BLOCKS`` beats of ``rows`` signed
    activations (row block 0 first) into a double buffer, so the next vector loads while one
    computes. For each input bit plane (LSB first) the tile drives every crossbar's rows with
    that plane of its row block (``drive``, the 1-bit DACs), strobes the sample-and-hold
    (``sample``) and sweeps the columns through each crossbar's ADCs, one SAR trial per cycle
    (``trial``/``trial_en`` out, ``decision`` in from the comparators). The codes of each group
    of ``group`` crossbars go to one shift-and-add unit and one dequantizer with a scale
    register per crossbar; the dequantized partial sums of all crossbars are added into output
    ``OUT_BASE + j`` of an output accumulator, which streams the vector out on ``o``
    (``N_OUTPUTS`` words, ``last`` on the final one). Outputs at or above ``N_OUTPUTS`` are
    dropped. The result is :meth:`golden.pim_tile.TileMapping.golden`, bit for bit.

    Timing contract. The planes of all crossbars run in lockstep: a plane starts when every
    enabled ADC has accepted its command, so a plane costs ``1 + cols / adcs_per_xbar * b``
    cycles for the slowest crossbar's resolution ``b``, and consecutive planes and vectors follow
    without a gap while inputs are ready (the next plane of every row block is broadcast to the
    crossbars, one block per cycle, while the current plane converts): ``input_bits * (1 + cols / adcs_per_xbar * b)`` cycles
    per MVM (:func:`golden.pim_tile.mvm_cycles`), unless a group's shift-and-add (one code per
    cycle) is the bottleneck. An output vector starts streaming a few cycles after the last
    code of its MVM. Backpressure on ``o`` stalls the dequantizers, the shift-and-add units and
    then the ADCs (which hold their samples); nothing is lost. ``cfg`` writes are accepted
    only while the tile is idle (``busy`` low: no input beat buffered, no vector in flight), so
    a reconfiguration always falls between batches. Reset (also in mid-batch) drops every
    vector in flight and clears the configuration; the output accumulator then clears itself
    (``outputs`` cycles) before it accepts results.

    Configuration registers (``cfg`` writes ``{xbar, field, value}``, :class:`CfgField`):
    ``MODE`` = ``enable | slc << 1 | adc_bits << 2`` (``adc_bits`` must be one of
    ``resolutions``: the ADC controllers refuse any other, and the tile's output is then
    undefined),
    ``IN_BLOCK``, ``OUT_BASE``, ``SCALE`` (two's complement in the low ``scale_bits``) per
    crossbar; ``N_OUTPUTS`` and ``N_BLOCKS`` global. :func:`golden.pim_tile.map_matrix` computes
    them.

    Configuration registers (``cfg`` writes ``{xbar, field, value}``; the register map is
    :class:`golden.pim_tile.CfgField` and :func:`golden.pim_tile.mode_fields`): ``MODE`` =
    ``enable | slc << 1 | adc_bits << 2`` (``adc_bits`` must be one of ``resolutions``: the ADC
    controllers refuse any other, and the tile's output is then undefined), ``IN_BLOCK``,
    ``OUT_BASE``, ``SCALE`` (two's complement in the low ``scale_bits``) per crossbar;
    ``N_OUTPUTS`` and ``N_BLOCKS`` global. :func:`golden.pim_tile.map_matrix` computes them.

    Parameters
    ----------
    crossbars, rows, cols, input_bits, weight_bits, adc_bits, resolutions, adcs_per_xbar,
    group, row_blocks, outputs, scale_bits, scale_frac_bits, out_bits, rounding
        See :class:`golden.pim_tile.TileConfig` (the same names and defaults: Atleus's 96
        crossbars of 128 x 128 2-bit cells, one 8-bit ADC each, 12 groups of 8). The tile
        keeps them as one ``TileConfig`` (:attr:`config`; :meth:`from_config` builds a tile
        from one).

    Members
    -------
    i : In(stream.Signature(input_layout(rows, input_bits)))
        Input row blocks.
    o : Out(stream.Signature(output_layout(outputs, out_width)))
        Outputs ``{value, saturated, index, last}``, ``value`` signed ``out_bits +
        ceil(log2(crossbars))`` bits.
    cfg : In(stream.Signature(cfg_layout(crossbars)))
        Register writes.
    busy : Out(1)
        A vector is buffered or in flight.
    drive : Out(data.ArrayLayout(rows, crossbars))
        Row drive (1-bit DAC inputs) of each crossbar.
    sample : Out(crossbars)
        Sample-and-hold strobe of each crossbar's ADCs.
    column : Out(data.ArrayLayout(ceil(log2(cols / adcs_per_xbar)), crossbars * adcs_per_xbar))
        Column mux select of each ADC (ADC ``a`` of crossbar ``x`` is ``x * adcs_per_xbar + a``;
        it converts columns ``a * cols / adcs_per_xbar ..``).
    trial : Out(data.ArrayLayout(adc_bits, crossbars * adcs_per_xbar))
        Trial code of each ADC, LSB-aligned at its resolution.
    trial_en : Out(crossbars * adcs_per_xbar)
        A trial is shown; the comparator answers on ``decision`` in the same cycle.
    decision : In(crossbars * adcs_per_xbar)
        Comparator decisions.

    ``sample``, ``column``, ``trial``, ``trial_en`` and ``decision`` are the members of every
    ADC's :class:`hdl.lib.signatures.AdcPortSignature`, packed over the ADCs (so that a
    testbench reads each as one word).
    """

    def __init__(self, crossbars=96, *, rows=128, cols=128, input_bits=8, weight_bits=8, adc_bits=8,
                 resolutions=(6, 7, 8), adcs_per_xbar=1, group=8, row_blocks=8, outputs=1024,
                 scale_bits=16, scale_frac_bits=16, out_bits=24, rounding="half_up"):
        resolutions = tuple(resolutions) if isinstance(resolutions, list) else resolutions
        config = TileConfig(crossbars=crossbars, rows=rows, cols=cols, input_bits=input_bits,
                            weight_bits=weight_bits, adc_bits=adc_bits, resolutions=resolutions,
                            adcs_per_xbar=adcs_per_xbar, group=group, row_blocks=row_blocks,
                            outputs=outputs, scale_bits=scale_bits, scale_frac_bits=scale_frac_bits,
                            out_bits=out_bits, rounding=rounding)
        # One configuration object; resolutions sorted (the ADC controllers' order).
        self._config = TileConfig(**{**config.__dict__,
                                     "resolutions": tuple(sorted(config.resolutions))})
        c = self._config
        super().__init__({
            "i": In(stream.Signature(input_layout(c.rows, c.input_bits))),
            "o": Out(stream.Signature(output_layout(c.outputs, c.out_width))),
            "cfg": In(stream.Signature(cfg_layout(c.crossbars))),
            "busy": Out(1),
            "drive": Out(data.ArrayLayout(c.rows, c.crossbars)),
            "sample": Out(c.crossbars),
            "column": Out(data.ArrayLayout(ubits(c.columns_per_adc), c.n_adcs)),
            "trial": Out(data.ArrayLayout(c.adc_bits, c.n_adcs)),
            "trial_en": Out(c.n_adcs),
            "decision": In(c.n_adcs),
        })

    @classmethod
    def from_config(cls, config):
        """A tile with the parameters of a :class:`golden.pim_tile.TileConfig`."""
        if not isinstance(config, TileConfig):
            raise TypeError(f"Config must be a golden.pim_tile.TileConfig, not {config!r}")
        return cls(**config.__dict__)

    @property
    def config(self):
        """The parameters (:class:`golden.pim_tile.TileConfig`)."""
        return self._config

    @property
    def params(self):
        """The parameters as a dict (``golden.pim_tile.TileConfig(**tile.params)``)."""
        return dict(self._config.__dict__)

    @property
    def out_width(self):
        return self._config.out_width

    def elaborate(self, platform):
        m = Module()
        c = self._config
        m.submodules.sequencer = seq = PlaneSequencer(c)
        m.submodules.registers = regs = ConfigDecoder(c)
        m.submodules.accumulator = acc = OutputAccumulator(c)
        wiring.connect(m, wiring.flipped(self.i), seq.i)
        wiring.connect(m, wiring.flipped(self.cfg), seq.cfg)
        wiring.connect(m, seq.wr, regs.i)
        wiring.connect(m, seq.wr, acc.cfg)
        wiring.connect(m, acc.o, wiring.flipped(self.o))
        m.d.comb += [acc.issued.eq(seq.issued), seq.drained.eq(acc.drained),
                     self.busy.eq(seq.busy)]

        channels = []
        for x in range(c.crossbars):
            ch = add_cell(m, f"xbar{x}", PimChannel, c)
            wiring.connect(m, regs.xbar[x], ch.cfg)
            wiring.connect(m, seq.cmd[x], ch.cmd)
            wiring.connect(m, seq.bus, ch.bus)
            channels.append(ch)

        for g in range(c.groups):
            m.submodules[f"group{g}"] = grp = TileGroup(c)
            for k, ch in enumerate(channels[g * c.group:(g + 1) * c.group]):
                wiring.connect(m, ch.o, grp.i[k])
                m.d.comb += grp.mode[k].eq(ch.mode)
            wiring.connect(m, regs.scale[g], grp.scale)
            wiring.connect(m, grp.o, acc.i[g])
            m.d.comb += acc.expected[g].eq(grp.expected)

        # The ADC front ends, packed over the ADCs.
        A = c.adcs_per_xbar
        for x, ch in enumerate(channels):
            m.d.comb += [self.drive[x].eq(ch.drive), self.sample[x].eq(ch.adc[0].sample)]
            for a in range(A):
                k = x * A + a
                m.d.comb += [self.column[k].eq(ch.adc[a].column), self.trial[k].eq(ch.adc[a].trial),
                             self.trial_en[k].eq(ch.adc[a].trial_en),
                             ch.adc[a].decision.eq(self.decision[k])]
        return m


for _name in ("crossbars", "rows", "cols", "input_bits", "weight_bits", "adc_bits", "resolutions",
              "adcs_per_xbar", "group", "row_blocks", "outputs", "scale_bits", "scale_frac_bits",
              "out_bits", "rounding"):
    setattr(PimTile, _name, property(lambda self, _n=_name: getattr(self._config, _n),
                                     doc=f"The ``{_name}`` parameter."))
del _name
