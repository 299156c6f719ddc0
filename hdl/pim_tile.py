"""ReRAM PIM tile: the digital periphery of an Atleus/ISAAC tile around its analog crossbars."""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import Array
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.pim_tile import check_tile_params

from .cells import shared_cell
from .dequant.dequantizer import Dequantizer
from .dequant.shift_add import ShiftAddAccumulator
from .registry import block
from .sar_adc import SarAdcController

__all__ = ["PimTile", "PimChannel", "CfgField", "cfg_layout", "input_layout", "output_layout",
           "beat_layout"]


class CfgField(enum.Enum, shape=3):
    """Register of a configuration write (see :class:`PimTile`)."""
    MODE = 0        # value: enable | slc << 1 | adc_bits << 2 (per crossbar)
    IN_BLOCK = 1    # row block of the input vector the crossbar reads (per crossbar)
    OUT_BASE = 2    # output index of the crossbar's first weight column (per crossbar)
    SCALE = 3       # signed fixed-point dequantization scale (per crossbar)
    N_OUTPUTS = 4   # output vector length (global)
    N_BLOCKS = 5    # input beats (row blocks) per vector (global)


def _ubits(n):
    return max(1, (n - 1).bit_length())


def cfg_layout(crossbars):
    """Configuration write: ``{xbar, field, value}``."""
    return data.StructLayout({"xbar": unsigned(_ubits(crossbars)), "field": CfgField,
                              "value": unsigned(32)})


def input_layout(rows, input_bits):
    """One input beat: the ``rows`` activations of one row block, element 0 at the LSB."""
    return data.ArrayLayout(signed(input_bits), rows)


def output_layout(outputs, out_width):
    """One output: ``{value, saturated, index, last}`` (``last``: last output of a vector)."""
    return data.StructLayout({"value": signed(out_width), "saturated": 1,
                              "index": unsigned(_ubits(outputs)), "last": 1})


def beat_layout(*, adc_bits, input_bits, weight_bits, max_n_out, rows):
    """One ADC code of a crossbar, tagged for the shift-and-add unit."""
    return data.StructLayout({
        "code": unsigned(adc_bits), "plane": unsigned(_ubits(input_bits)),
        "slice": unsigned(_ubits(weight_bits)), "column": unsigned(_ubits(max_n_out)),
        "first": 1, "last": 1, "ones": unsigned(rows.bit_length()),
    })


def _add_cell(m, name, cell, key):
    """Add ``cell`` as submodule ``name`` through :func:`hdl.cells.shared_cell`; returns the cell
    (whose ports the design connects)."""
    m.submodules[name] = shared_cell(cell, key=key)
    return cell


def _popcount(m, bits):
    level = [bits[i] for i in range(len(bits))]
    while len(level) > 1:
        nxt = []
        for k in range(0, len(level), 2):
            nxt.append(level[k] + level[k + 1] if k + 1 < len(level) else level[k])
        level = nxt
    return level[0]


def _round_robin(m, valids, name):
    """Round-robin arbiter: returns ``(grant, any_valid, pointer)``; advance ``pointer`` to
    ``grant + 1`` on a transfer (the caller does that)."""
    n = len(valids)
    if n == 1:
        return Const(0, 1), valids[0], None
    ptr = Signal(range(n), name=f"{name}_ptr")
    grant = Signal(range(n), name=f"{name}_grant")
    any_valid = Signal(name=f"{name}_any")
    m.d.comb += any_valid.eq(Cat(*valids).any())
    with m.Switch(ptr):
        for p in range(n):
            with m.Case(p):
                # The last assignment wins: walk the order backwards.
                for off in reversed(range(n)):
                    k = (p + off) % n
                    with m.If(valids[k]):
                        m.d.comb += grant.eq(k)
    return grant, any_valid, ptr


class PimChannel(wiring.Component):
    """The digital drive of one crossbar: 1-bit DAC row drive, its ADC controllers, code tags.

    The channel holds its crossbar's mode and row-block registers (written through ``cfg_we``,
    ``cfg_field``, ``cfg_value``, :class:`CfgField`). Before each plane the tile broadcasts that
    plane of every row block on ``bus`` (``bus_valid``, block ``bus_block``); the channel keeps
    the one of its row block. On ``issue`` (one cycle; the tile raises it only when
    ``cmd_ready`` is high) the channel moves it into the row drive ``drive`` and, when enabled,
    starts every ADC on a full sweep of its columns: the ADCs sample the next cycle
    (``sample``) and convert ``cols // adcs`` columns each, one trial per cycle
    (:class:`hdl.sar_adc.SarAdcController`). Each code leaves on ``o`` tagged with its input
    plane (counted per ADC, LSB plane first), weight column ``j = c // n_slices``, slice index
    ``s * cell_bits`` (``n_slices`` = ``weight_bits`` cells for SLC, ``weight_bits // 2`` for
    MLC), ``first``/``last`` of the column's sum and the popcount ``ones`` of its plane's row
    drive. The codes of the ADCs are merged round-robin; backpressure on ``o`` stalls the ADCs
    (the sample-and-hold keeps their values).

    Parameters
    ----------
    rows, cols, adcs, adc_bits, resolutions, input_bits, weight_bits
        As in :class:`PimTile` (``adcs`` = ``adcs_per_xbar``).
    """

    def __init__(self, *, rows, cols, adcs, adc_bits, resolutions, input_bits, weight_bits,
                 row_blocks):
        self._rows, self._cols, self._adcs = rows, cols, adcs
        self._row_blocks = row_blocks
        self._adc_bits, self._resolutions = adc_bits, tuple(resolutions)
        self._input_bits, self._weight_bits = input_bits, weight_bits
        self._share = cols // adcs
        self._max_n_out = cols * 2 // weight_bits
        super().__init__({
            "cfg_we": In(1),
            "cfg_field": In(CfgField),
            "cfg_value": In(32),
            "enable": Out(1),
            "slc": Out(1),
            "bus": In(rows),
            "bus_block": In(range(row_blocks)),
            "bus_valid": In(1),
            "issue": In(1),
            "plane": In(range(input_bits)),
            "cmd_ready": Out(1),
            "drive": Out(rows),
            "sample": Out(1),
            "column": Out(data.ArrayLayout(_ubits(self._share), adcs)),
            "trial": Out(data.ArrayLayout(adc_bits, adcs)),
            "trial_en": Out(adcs),
            "decision": In(adcs),
            "o": Out(stream.Signature(beat_layout(adc_bits=adc_bits, input_bits=input_bits,
                                                  weight_bits=weight_bits, max_n_out=self._max_n_out,
                                                  rows=rows))),
        })

    @property
    def cell_key(self):
        return (self._rows, self._cols, self._adcs, self._adc_bits, self._resolutions,
                self._input_bits, self._weight_bits, self._row_blocks)

    def elaborate(self, platform):
        m = Module()
        ib, wb = self._input_bits, self._weight_bits
        # Mode and row-block registers.
        bits_w = self._adc_bits.bit_length()
        bits = Signal(bits_w, init=self._adc_bits)
        in_block = Signal(range(self._row_blocks))
        with m.If(self.cfg_we):
            with m.Switch(self.cfg_field):
                with m.Case(CfgField.MODE):
                    m.d.sync += [self.enable.eq(self.cfg_value[0]), self.slc.eq(self.cfg_value[1]),
                                 bits.eq(self.cfg_value[2:2 + bits_w])]
                with m.Case(CfgField.IN_BLOCK):
                    m.d.sync += in_block.eq(self.cfg_value)
        drive_next = Signal(self._rows)
        with m.If(self.bus_valid & (self.bus_block == in_block)):
            m.d.sync += drive_next.eq(self.bus)
        # Row drive and the popcount of each plane (for the offset-encoding correction).
        ones_w = self._rows.bit_length()
        ones_hist = Array(Signal(ones_w, name=f"ones{p}") for p in range(ib))
        count_pending = Signal()
        count_plane = Signal(range(ib))
        with m.If(self.issue):
            m.d.sync += [self.drive.eq(drive_next), count_pending.eq(1),
                         count_plane.eq(self.plane)]
        with m.Elif(count_pending):
            m.d.sync += [ones_hist[count_plane].eq(_popcount(m, self.drive)), count_pending.eq(0)]

        readies = []
        beats = []
        for a in range(self._adcs):
            ctrl = SarAdcController(self._adc_bits, columns=self._share, settle_cycles=0,
                                    resolutions=self._resolutions)
            adc = _add_cell(m, f"adc{a}", ctrl, ctrl.cell_key)
            cp = adc.cmd.payload
            m.d.comb += [
                adc.cmd.valid.eq(self.issue & self.enable),
                cp.first.eq(0), cp.last.eq(self._share - 1), cp.all.eq(1), cp.hold.eq(0),
                cp.bits.eq(bits),
                adc.adc.decision.eq(self.decision[a]),
                self.column[a].eq(adc.adc.column),
                self.trial[a].eq(adc.adc.trial),
                self.trial_en[a].eq(adc.adc.trial_en),
            ]
            if a == 0:
                m.d.comb += self.sample.eq(adc.adc.sample)
            readies.append(adc.cmd.ready)
            # Plane of the words leaving this ADC: one sweep per plane, LSB plane first.
            plane = Signal(range(ib), name=f"plane{a}")
            with m.If(adc.o.valid & adc.o.ready & adc.o.payload.last):
                m.d.sync += plane.eq(Mux(plane == ib - 1, 0, plane + 1))
            col = Signal(_ubits(self._cols), name=f"col{a}")
            m.d.comb += col.eq(adc.o.payload.column + a * self._share)
            beat = Signal(self.o.payload.shape(), name=f"beat{a}")
            ns_mlc, ns_slc = wb // 2, wb
            s = Signal(_ubits(wb), name=f"slice{a}")
            j = Signal(_ubits(self._max_n_out), name=f"j{a}")
            s_top = Signal(name=f"s_top{a}")
            with m.If(self.slc):
                m.d.comb += [s.eq(col[:(ns_slc - 1).bit_length()]), j.eq(col >> (ns_slc - 1).bit_length()),
                             s_top.eq(s == ns_slc - 1), beat.slice.eq(s)]
            with m.Else():
                m.d.comb += [s.eq(col[:(ns_mlc - 1).bit_length()]), j.eq(col >> (ns_mlc - 1).bit_length()),
                             s_top.eq(s == ns_mlc - 1), beat.slice.eq(s << 1)]
            m.d.comb += [
                beat.code.eq(adc.o.payload.code), beat.plane.eq(plane), beat.column.eq(j),
                beat.first.eq((plane == 0) & (s == 0)), beat.last.eq((plane == ib - 1) & s_top),
                beat.ones.eq(ones_hist[plane]),
            ]
            beats.append((adc, beat))
        m.d.comb += self.cmd_ready.eq(Cat(*readies).all())

        grant, any_valid, ptr = _round_robin(m, [adc.o.valid for adc, _ in beats], "adc")
        m.d.comb += [self.o.valid.eq(any_valid), self.o.payload.eq(Array(b for _, b in beats)[grant])]
        for k, (adc, _) in enumerate(beats):
            m.d.comb += adc.o.ready.eq(self.o.ready & (grant == k))
        if ptr is not None:
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += ptr.eq(Mux(grant == self._adcs - 1, 0, grant + 1))
        return m


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
    crossbars are outside (the testbench plays them, :mod:`tb.pim_harness`).

    Dataflow. An input vector arrives on ``i`` as ``N_BLOCKS`` beats of ``rows`` signed
    activations (row block 0 first) into a double buffer, so the next vector loads while one
    computes. For each input bit plane (LSB first) the tile drives every crossbar's rows with
    that plane of its row block (``drive``, the 1-bit DACs), strobes the sample-and-hold
    (``sample``) and sweeps the columns through each crossbar's ADCs, one SAR trial per cycle
    (``trial``/``trial_en`` out, ``decision`` in from the comparators). The codes of each group
    of ``group`` crossbars go to one shift-and-add unit (:class:`hdl.dequant.shift_add.ShiftAddAccumulator`,
    SLC and MLC slices alike) and one dequantizer with a scale register per crossbar
    (:class:`hdl.dequant.dequantizer.Dequantizer`); the dequantized partial sums of all
    crossbars are added into output ``OUT_BASE + j`` of an output accumulator, which streams
    the vector out on ``o`` (``N_OUTPUTS`` words, ``last`` on the final one). Outputs at or
    above ``N_OUTPUTS`` are dropped. The result is :meth:`golden.pim_tile.TileMapping.golden`,
    bit for bit.

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

    Parameters
    ----------
    crossbars, rows, cols, input_bits, weight_bits, adc_bits, resolutions, adcs_per_xbar,
    group, row_blocks, outputs, scale_bits, scale_frac_bits, out_bits, rounding
        See :class:`golden.pim_tile.TileConfig` (the same names and defaults: Atleus's 96
        crossbars of 128 x 128 2-bit cells, one 8-bit ADC each, 12 groups of 8).

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
    """

    def __init__(self, crossbars=96, *, rows=128, cols=128, input_bits=8, weight_bits=8, adc_bits=8,
                 resolutions=(6, 7, 8), adcs_per_xbar=1, group=8, row_blocks=8, outputs=1024,
                 scale_bits=16, scale_frac_bits=16, out_bits=24, rounding="half_up"):
        resolutions = tuple(resolutions) if isinstance(resolutions, list) else resolutions
        check_tile_params(crossbars=crossbars, rows=rows, cols=cols, input_bits=input_bits,
                          weight_bits=weight_bits, adc_bits=adc_bits, resolutions=resolutions,
                          adcs_per_xbar=adcs_per_xbar, group=group, row_blocks=row_blocks,
                          outputs=outputs, scale_bits=scale_bits, scale_frac_bits=scale_frac_bits,
                          out_bits=out_bits, rounding=rounding)
        self._p = dict(crossbars=crossbars, rows=rows, cols=cols, input_bits=input_bits,
                       weight_bits=weight_bits, adc_bits=adc_bits, resolutions=tuple(sorted(resolutions)),
                       adcs_per_xbar=adcs_per_xbar, group=group, row_blocks=row_blocks,
                       outputs=outputs, scale_bits=scale_bits, scale_frac_bits=scale_frac_bits,
                       out_bits=out_bits, rounding=rounding)
        n_adcs = crossbars * adcs_per_xbar
        self._out_width = out_bits + (crossbars - 1).bit_length()
        super().__init__({
            "i": In(stream.Signature(input_layout(rows, input_bits))),
            "o": Out(stream.Signature(output_layout(outputs, self._out_width))),
            "cfg": In(stream.Signature(cfg_layout(crossbars))),
            "busy": Out(1),
            "drive": Out(data.ArrayLayout(rows, crossbars)),
            "sample": Out(crossbars),
            "column": Out(data.ArrayLayout(_ubits(cols // adcs_per_xbar), n_adcs)),
            "trial": Out(data.ArrayLayout(adc_bits, n_adcs)),
            "trial_en": Out(n_adcs),
            "decision": In(n_adcs),
        })

    @property
    def params(self):
        """The parameters as a dict (``golden.pim_tile.TileConfig(**tile.params)``)."""
        return dict(self._p)

    @property
    def out_width(self):
        return self._out_width

    def elaborate(self, platform):
        m = Module()
        P = self._p
        X, R, C, IB, WB = P["crossbars"], P["rows"], P["cols"], P["input_bits"], P["weight_bits"]
        A, G, NB, NO = P["adcs_per_xbar"], P["group"], P["row_blocks"], P["outputs"]
        groups = X // G
        max_n_out = C * 2 // WB

        # ---- configuration registers
        out_base = [Signal(range(NO), name=f"out_base{x}") for x in range(X)]
        n_outputs = Signal(range(NO + 1), init=NO)
        n_blocks = Signal(range(NB + 1), init=1)
        cfg = self.cfg.payload
        cfg_fire = self.cfg.valid & self.cfg.ready
        with m.If(cfg_fire):
            with m.Switch(cfg.field):
                with m.Case(CfgField.N_OUTPUTS):
                    m.d.sync += n_outputs.eq(cfg.value)
                with m.Case(CfgField.N_BLOCKS):
                    m.d.sync += n_blocks.eq(cfg.value)
            with m.If(cfg.field == CfgField.OUT_BASE):
                m.d.sync += Array(out_base)[cfg.xbar].eq(cfg.value)

        # ---- input double buffer and plane sequencer
        blk_w = R * IB
        nxt = Array(Signal(blk_w, name=f"nxt{b}") for b in range(NB))
        cur = [Signal(blk_w, name=f"cur{b}") for b in range(NB)]
        blk = Signal(range(NB))
        nxt_full = Signal()
        running = Signal()
        plane = Signal(range(IB))
        inflight = Signal(range(8))       # vectors loaded and not yet drained
        done = Signal(range(8))           # vectors whose last plane started, not yet drained
        drained = Signal()                # a vector finished draining (this cycle)

        m.d.comb += self.i.ready.eq(~nxt_full)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += nxt[blk].eq(self.i.payload.as_value())
            with m.If(blk + 1 >= n_blocks):
                m.d.sync += [blk.eq(0), nxt_full.eq(1)]
            with m.Else():
                m.d.sync += blk.eq(blk + 1)

        load = Signal()
        m.d.comb += load.eq(~running & nxt_full & (inflight < 6))
        # Before each plane, broadcast plane `plane` of row blocks 0 .. n_blocks - 1, one per
        # cycle; every channel keeps its own block (`preloaded` once all were sent).
        bus_block = Signal(range(NB))
        bus_valid = Signal()
        preloaded = Signal()
        with m.If(load):
            m.d.sync += [running.eq(1), plane.eq(0), nxt_full.eq(0), bus_block.eq(0),
                         bus_valid.eq(1), preloaded.eq(0)]
            m.d.sync += [cur[b].eq(nxt[b]) for b in range(NB)]
        with m.Elif(bus_valid):
            with m.If(bus_block + 1 >= n_blocks):
                m.d.sync += [bus_valid.eq(0), preloaded.eq(1)]
            with m.Else():
                m.d.sync += bus_block.eq(bus_block + 1)
        flat = []
        for b in range(NB):
            for p in range(IB):
                flat.append(Cat(cur[b][r * IB + p] for r in range(R)))
        bus = Signal(R)
        m.d.comb += bus.eq(Array(flat)[bus_block * IB + plane])

        # ---- channels (one per crossbar) and groups
        channels = []
        for x in range(X):
            ch = PimChannel(rows=R, cols=C, adcs=A, adc_bits=P["adc_bits"],
                            resolutions=P["resolutions"], input_bits=IB, weight_bits=WB,
                            row_blocks=NB)
            channels.append(_add_cell(m, f"xbar{x}", ch, ch.cell_key))
        all_ready = Signal()
        m.d.comb += all_ready.eq(Cat(*[c.cmd_ready for c in channels]).all())
        issue = Signal()
        m.d.comb += issue.eq(running & preloaded & all_ready)
        with m.If(issue):
            m.d.sync += preloaded.eq(0)
            with m.If(plane == IB - 1):
                m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += [plane.eq(plane + 1), bus_block.eq(0), bus_valid.eq(1)]

        for x, ch in enumerate(channels):
            m.d.comb += [
                ch.cfg_we.eq(cfg_fire & (cfg.xbar == x)), ch.cfg_field.eq(cfg.field),
                ch.cfg_value.eq(cfg.value),
                ch.bus.eq(bus), ch.bus_block.eq(bus_block), ch.bus_valid.eq(bus_valid),
                ch.issue.eq(issue), ch.plane.eq(plane),
                self.drive[x].eq(ch.drive), self.sample[x].eq(ch.sample),
            ]
            for a in range(A):
                k = x * A + a
                m.d.comb += [self.column[k].eq(ch.column[a]), self.trial[k].eq(ch.trial[a]),
                             self.trial_en[k].eq(ch.trial_en[a]), ch.decision[a].eq(self.decision[k])]

        last_issue = issue & (plane == IB - 1)
        m.d.sync += inflight.eq(inflight + load - drained)
        m.d.sync += done.eq(done + last_issue - drained)
        m.d.comb += self.busy.eq((inflight != 0) | nxt_full | (blk != 0))
        m.d.comb += self.cfg.ready.eq(~self.busy & ~load)

        n_out_mlc, n_out_slc = C * 2 // WB, C // WB
        deq_outs = []
        expected = []
        for g in range(groups):
            members = channels[g * G:(g + 1) * G]
            sa = ShiftAddAccumulator(adc_bits=P["adc_bits"], input_bits=IB, weight_bits=WB, cell_bits=1,
                                     columns=G * max_n_out, xbars=G, rows=R, encoding="offset",
                                     flip=False, signed_inputs=True, row_groups=1)
            dq = Dequantizer(in_width=sa.acc_width, columns=G * max_n_out, xbars=G,
                             scale_bits=P["scale_bits"], scale_frac_bits=P["scale_frac_bits"],
                             out_bits=P["out_bits"], rounding=P["rounding"], multiplier="csd")
            sa_key = (P["adc_bits"], IB, WB, G * max_n_out, G, R)
            dq_key = (sa.acc_width, G * max_n_out, G, P["scale_bits"], P["scale_frac_bits"],
                      P["out_bits"], P["rounding"])
            _add_cell(m, f"sa{g}", sa, sa_key)
            _add_cell(m, f"dq{g}", dq, dq_key)
            # Codes of the group's crossbars, round-robin, into the shift-and-add unit.
            grant, any_valid, ptr = _round_robin(m, [c.o.valid for c in members], f"g{g}")
            sel = Array(c.o.payload for c in members)[grant]
            sp = sa.i.payload
            m.d.comb += [
                sa.i.valid.eq(any_valid),
                sp.code.eq(sel.code), sp.plane.eq(sel.plane), sp.slice.eq(sel.slice),
                sp.column.eq(grant * max_n_out + sel.column), sp.xbar.eq(grant),
                sp.first.eq(sel.first), sp.last.eq(sel.last), sp.ones.eq(sel.ones),
            ]
            for k, c in enumerate(members):
                m.d.comb += c.o.ready.eq(sa.i.ready & (grant == k))
            if ptr is not None:
                with m.If(sa.i.valid & sa.i.ready):
                    m.d.sync += ptr.eq(Mux(grant == G - 1, 0, grant + 1))
            wiring.connect(m, sa.o, dq.i)
            m.d.comb += [
                dq.cfg.valid.eq(cfg_fire & (cfg.field == CfgField.SCALE) & (cfg.xbar // G == g)),
                dq.cfg.payload.xbar.eq(cfg.xbar % G),
                dq.cfg.payload.scale.eq(cfg.value[:P["scale_bits"]]),
                dq.clear_saturated.eq(0),
            ]
            exp = Signal(range(G * max_n_out + 1), name=f"expected{g}")
            m.d.comb += exp.eq(sum(Mux(c.enable, Mux(c.slc, n_out_slc, n_out_mlc), 0) for c in members))
            expected.append(exp)
            deq_outs.append(dq)

        # ---- output accumulator: add each dequantized partial sum into its output
        ow = self._out_width
        mem = Memory(shape=unsigned(ow + 1), depth=NO, init=[])
        m.submodules.acc_mem = mem
        rd = mem.read_port(domain="comb")
        wr = mem.write_port()
        count = [Signal(range(G * max_n_out + 1), name=f"count{g}") for g in range(groups)]
        complete = Signal()
        m.d.comb += complete.eq(Cat(*[count[g] == expected[g] for g in range(groups)]).all())

        clearing = Signal(init=1)           # after reset: zero the accumulator
        clear_idx = Signal(range(NO))
        draining = Signal()
        drain_idx = Signal(range(NO + 1))

        takes = [Signal(name=f"take{g}") for g in range(groups)]
        for g in range(groups):
            m.d.comb += takes[g].eq(deq_outs[g].o.valid & (count[g] < expected[g]))
        grant, any_take, ptr = _round_robin(m, takes, "merge")
        accumulating = ~clearing & ~draining
        fire = Signal()
        m.d.comb += fire.eq(accumulating & any_take)
        for g in range(groups):
            m.d.comb += deq_outs[g].o.ready.eq(fire & (grant == g))
        if ptr is not None:
            with m.If(fire):
                m.d.sync += ptr.eq(Mux(grant == groups - 1, 0, grant + 1))
        res = Array(d.o.payload for d in deq_outs)[grant]
        local = Signal(range(G))
        m.d.comb += local.eq(res.xbar)
        xg = Signal(_ubits(X))
        m.d.comb += xg.eq(grant * G + local)
        base = Signal(range(NO))
        m.d.comb += base.eq(Array(out_base)[xg])
        j = Signal(_ubits(max_n_out))
        m.d.comb += j.eq(res.column % max_n_out)
        idx = Signal(range(NO + max_n_out))
        m.d.comb += idx.eq(base + j)
        old_val = Signal(signed(ow))
        old_sat = Signal()
        m.d.comb += [old_val.eq(rd.data[:ow]), old_sat.eq(rd.data[ow])]
        new = Signal(ow + 1)
        m.d.comb += new.eq(Cat((old_val + res.value)[:ow], old_sat | res.saturated))
        with m.If(fire):
            for g in range(groups):
                with m.If(grant == g):
                    m.d.sync += count[g].eq(count[g] + 1)

        # Output register and drain.
        o_free = ~self.o.valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        start_drain = accumulating & complete & (done != 0)
        m.d.comb += drained.eq(0)
        with m.If(clearing):
            m.d.comb += [wr.addr.eq(clear_idx), wr.data.eq(0), wr.en.eq(1)]
            m.d.sync += clear_idx.eq(clear_idx + 1)
            with m.If(clear_idx == NO - 1):
                m.d.sync += clearing.eq(0)
        with m.Elif(draining):
            m.d.comb += rd.addr.eq(drain_idx)
            with m.If(drain_idx >= n_outputs):
                m.d.sync += [draining.eq(0)] + [count[g].eq(0) for g in range(groups)]
                m.d.comb += drained.eq(1)
            with m.Elif(o_free):
                m.d.comb += [wr.addr.eq(drain_idx), wr.data.eq(0), wr.en.eq(1)]
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.value.eq(old_val), self.o.payload.saturated.eq(old_sat),
                    self.o.payload.index.eq(drain_idx),
                    self.o.payload.last.eq(drain_idx == n_outputs - 1),
                    drain_idx.eq(drain_idx + 1),
                ]
        with m.Elif(start_drain):
            m.d.sync += [draining.eq(1), drain_idx.eq(0)]
        with m.Else():
            m.d.comb += rd.addr.eq(idx)
            m.d.comb += [wr.addr.eq(idx), wr.data.eq(new), wr.en.eq(fire & (idx < n_outputs))]
        return m


for _name in ("crossbars", "rows", "cols", "input_bits", "weight_bits", "adc_bits", "resolutions",
              "adcs_per_xbar", "group", "row_blocks", "outputs", "scale_bits", "scale_frac_bits",
              "out_bits", "rounding"):
    setattr(PimTile, _name, property(lambda self, _n=_name: self._p[_n],
                                     doc=f"The ``{_name}`` parameter."))
del _name
