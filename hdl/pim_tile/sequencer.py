"""The tile's front: configuration writes, the input double buffer and the plane sequencer."""

from amaranth import Array, Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..dequant.dequantizer import cfg_layout as scale_cfg_layout
from ..lib.signatures import strobe
from .layouts import (CfgField, bus_layout, cfg_layout, input_layout, plane_shape,
                      xbar_cfg_layout)

__all__ = ["PlaneSequencer", "ConfigDecoder", "MAX_VECTORS_IN_FLIGHT"]

#: Vectors loaded and not yet drained, at most (the sequencer stops loading beyond it).
MAX_VECTORS_IN_FLIGHT = 6


class PlaneSequencer(wiring.Component):
    """Input double buffer, plane sequencer and configuration port of the tile.

    Input. An input vector arrives on ``i`` as ``N_BLOCKS`` beats of ``rows`` activations (row
    block 0 first) into the loading half of a double buffer; when it is full and no vector is
    running (and fewer than :data:`MAX_VECTORS_IN_FLIGHT` are in flight) it moves to the
    running half in one cycle (``load``) and ``i`` takes the next vector.

    Planes. For each input bit plane (LSB first) the sequencer broadcasts that plane of row
    blocks ``0 .. N_BLOCKS - 1`` on ``bus``, one block per cycle, then starts the plane on every
    channel at once: ``cmd[x]`` is valid in the cycle in which every ``cmd[x].ready`` is high
    (a lockstep fork: every channel takes the plane in the same cycle, so each ``valid`` waits
    for all the ``ready`` s). The broadcast of the next plane starts in the cycle after, while
    the channels convert. ``issued`` strobes when the last plane of a vector starts;
    ``drained`` (from the output accumulator) tells that a vector has left the tile.

    Configuration. ``cfg`` writes are accepted only while the tile is idle (``busy`` low: no
    input beat buffered, no vector in flight, no load this cycle); each accepted write is
    repeated on ``wr``. The sequencer keeps ``N_BLOCKS`` (reset value 1).

    Parameters
    ----------
    config : golden.pim_tile.TileConfig

    Members
    -------
    i : In(stream.Signature(input_layout(rows, input_bits)))
    cfg : In(stream.Signature(cfg_layout(crossbars)))
    wr : Out(strobe(cfg_layout(crossbars)))
        The accepted configuration writes.
    bus : Out(strobe(bus_layout(rows, row_blocks)))
    cmd : Out(stream.Signature(plane_shape(input_bits))).array(crossbars)
    issued : Out(1)
        Strobe: the last plane of a vector started.
    drained : In(1)
        Strobe: a vector finished leaving the tile.
    busy : Out(1)
    """

    def __init__(self, config):
        c = self._config = config
        super().__init__({
            "i": In(stream.Signature(input_layout(c.rows, c.input_bits))),
            "cfg": In(stream.Signature(cfg_layout(c.crossbars))),
            "wr": Out(strobe(cfg_layout(c.crossbars))),
            "bus": Out(strobe(bus_layout(c.rows, c.row_blocks))),
            "cmd": Out(stream.Signature(plane_shape(c.input_bits))).array(c.crossbars),
            "issued": Out(1),
            "drained": In(1),
            "busy": Out(1),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        c = self._config
        R, IB, NB = c.rows, c.input_bits, c.row_blocks

        n_blocks = Signal(range(NB + 1), init=1)
        cfg_fire = self.cfg.valid & self.cfg.ready
        m.d.comb += [self.wr.valid.eq(cfg_fire), self.wr.payload.eq(self.cfg.payload)]
        with m.If(cfg_fire & (self.cfg.payload.field == CfgField.N_BLOCKS)):
            m.d.sync += n_blocks.eq(self.cfg.payload.value)

        # Input double buffer.
        blk_w = R * IB
        nxt = Array(Signal(blk_w, name=f"nxt{b}") for b in range(NB))
        cur = [Signal(blk_w, name=f"cur{b}") for b in range(NB)]
        blk = Signal(range(NB))
        nxt_full = Signal()
        running = Signal()
        plane = Signal(range(IB))
        inflight = Signal(range(8))       # vectors loaded and not yet drained

        m.d.comb += self.i.ready.eq(~nxt_full)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += nxt[blk].eq(self.i.payload.as_value())
            with m.If(blk + 1 >= n_blocks):
                m.d.sync += [blk.eq(0), nxt_full.eq(1)]
            with m.Else():
                m.d.sync += blk.eq(blk + 1)

        load = Signal()
        m.d.comb += load.eq(~running & nxt_full & (inflight < MAX_VECTORS_IN_FLIGHT))
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
        m.d.comb += [self.bus.valid.eq(bus_valid), self.bus.payload.block.eq(bus_block),
                     self.bus.payload.bits.eq(Array(flat)[bus_block * IB + plane])]

        # Lockstep fork of the plane command.
        issue = Signal()
        m.d.comb += issue.eq(running & preloaded & Cat(*[k.ready for k in self.cmd]).all())
        for k in self.cmd:
            m.d.comb += [k.valid.eq(issue), k.payload.eq(plane)]
        with m.If(issue):
            m.d.sync += preloaded.eq(0)
            with m.If(plane == IB - 1):
                m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += [plane.eq(plane + 1), bus_block.eq(0), bus_valid.eq(1)]

        m.d.comb += self.issued.eq(issue & (plane == IB - 1))
        m.d.sync += inflight.eq(inflight + load - self.drained)
        m.d.comb += self.busy.eq((inflight != 0) | nxt_full | (blk != 0))
        m.d.comb += self.cfg.ready.eq(~self.busy & ~load)
        return m


class ConfigDecoder(wiring.Component):
    """Address decode of the configuration writes: per-crossbar and per-group strobes.

    Combinational: ``xbar[x]`` repeats a write addressed to crossbar ``x`` (every field; the
    channel keeps MODE and IN_BLOCK); ``scale[g]`` carries a SCALE write to a crossbar of group
    ``g`` (index within the group, the low ``scale_bits`` of the value).

    Parameters
    ----------
    config : golden.pim_tile.TileConfig

    Members
    -------
    i : In(strobe(cfg_layout(crossbars)))
    xbar : Out(strobe(xbar_cfg_layout())).array(crossbars)
    scale : Out(strobe(hdl.dequant.dequantizer.cfg_layout(xbars=group, scale_bits))).array(groups)
    """

    def __init__(self, config):
        c = self._config = config
        super().__init__({
            "i": In(strobe(cfg_layout(c.crossbars))),
            "xbar": Out(strobe(xbar_cfg_layout())).array(c.crossbars),
            "scale": Out(strobe(scale_cfg_layout(xbars=c.group, scale_bits=c.scale_bits)))
                     .array(c.groups),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        w, G = self.i.payload, c.group
        for x, s in enumerate(self.xbar):
            m.d.comb += [s.valid.eq(self.i.valid & (w.xbar == x)),
                         s.payload.field.eq(w.field), s.payload.value.eq(w.value)]
        for g, s in enumerate(self.scale):
            m.d.comb += [
                s.valid.eq(self.i.valid & (w.field == CfgField.SCALE) & (w.xbar // G == g)),
                s.payload.xbar.eq(w.xbar % G),
                s.payload.scale.eq(w.value[:c.scale_bits]),
            ]
        return m
