"""The tile's output accumulator: every crossbar's partial sums added into the output vector."""

from amaranth import Cat, Module, Signal, signed, unsigned
from amaranth.hdl import Array
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dequant.dequantizer import dq_output_layout
from ..lib.arbiter import StreamMerge
from ..lib.signatures import strobe
from .layouts import CfgField, cfg_layout, output_layout, ubits

__all__ = ["OutputAccumulator"]


class OutputAccumulator(wiring.Component):
    """Adds each dequantized partial sum into output ``OUT_BASE[x] + j`` and streams the vector.

    The groups' results (``i[g]``) are taken round-robin, one per cycle, each group up to its
    ``expected[g]`` results per vector, and added (wrapping to ``out_width``, the saturation
    flags ORed) into a one-port accumulator memory; results for outputs at or above
    ``N_OUTPUTS`` are dropped. Once every group delivered its results and a vector's last plane
    was issued (``issued`` strobes, counted), the vector drains: ``N_OUTPUTS`` words on ``o``
    (``last`` on the final one), each entry cleared as it is read, then ``drained`` strobes.
    Backpressure on ``o`` holds the drain and, through it, the groups. After reset the memory
    clears itself (``outputs`` cycles) before it accepts results. The accumulator keeps the
    OUT_BASE registers and N_OUTPUTS (reset value ``outputs``), written by ``cfg`` strobes.

    Parameters
    ----------
    config : golden.pim_tile.TileConfig

    Members
    -------
    i : In(stream.Signature(dq_output_layout(...))).array(groups)
    expected : In(range(group * max_n_out + 1)).array(groups)
    cfg : In(strobe(cfg_layout(crossbars)))
    issued : In(1)
        Strobe: the last plane of a vector started.
    drained : Out(1)
        Strobe: a vector finished draining.
    o : Out(stream.Signature(output_layout(outputs, out_width)))
    """

    def __init__(self, config):
        c = self._config = config
        part = dq_output_layout(columns=c.group_columns, xbars=c.group, out_bits=c.out_bits)
        super().__init__({
            "i": In(stream.Signature(part)).array(c.groups),
            "expected": In(range(c.group_columns + 1)).array(c.groups),
            "cfg": In(strobe(cfg_layout(c.crossbars))),
            "issued": In(1),
            "drained": Out(1),
            "o": Out(stream.Signature(output_layout(c.outputs, c.out_width))),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        c = self._config
        X, G, NO, groups, mno = c.crossbars, c.group, c.outputs, c.groups, c.max_n_out
        ow = c.out_width

        # OUT_BASE and N_OUTPUTS registers.
        out_base = [Signal(range(NO), name=f"out_base{x}") for x in range(X)]
        n_outputs = Signal(range(NO + 1), init=NO)
        w = self.cfg.payload
        with m.If(self.cfg.valid):
            with m.If(w.field == CfgField.N_OUTPUTS):
                m.d.sync += n_outputs.eq(w.value)
            with m.If(w.field == CfgField.OUT_BASE):
                m.d.sync += Array(out_base)[w.xbar].eq(w.value)

        done = Signal(range(8))           # vectors whose last plane started, not yet drained
        m.d.sync += done.eq(done + self.issued - self.drained)

        mem = Memory(shape=unsigned(ow + 1), depth=NO, init=[])
        m.submodules.acc_mem = mem
        rd = mem.read_port(domain="comb")
        wr = mem.write_port()
        count = [Signal(range(c.group_columns + 1), name=f"count{g}") for g in range(groups)]
        complete = Signal()
        m.d.comb += complete.eq(Cat(*[count[g] == self.expected[g] for g in range(groups)]).all())

        clearing = Signal(init=1)           # after reset: zero the accumulator
        clear_idx = Signal(range(NO))
        draining = Signal()
        drain_idx = Signal(range(NO + 1))
        accumulating = ~clearing & ~draining

        # Each group's results, up to its expected count, round-robin.
        m.submodules.merge = merge = StreamMerge(self.i[0].payload.shape(), groups)
        for g in range(groups):
            want = Signal(name=f"want{g}")
            m.d.comb += [
                want.eq(count[g] < self.expected[g]),
                merge.i[g].valid.eq(self.i[g].valid & want),
                merge.i[g].payload.eq(self.i[g].payload),
                self.i[g].ready.eq(merge.i[g].ready & want),
            ]
        m.d.comb += merge.o.ready.eq(accumulating)
        fire = Signal()
        m.d.comb += fire.eq(merge.o.valid & merge.o.ready)
        res = merge.o.payload
        xg = Signal(ubits(X))
        m.d.comb += xg.eq(merge.grant * G + res.xbar)
        base = Signal(range(NO))
        m.d.comb += base.eq(Array(out_base)[xg])
        j = Signal(ubits(mno))
        m.d.comb += j.eq(res.column % mno)
        idx = Signal(range(NO + mno))
        m.d.comb += idx.eq(base + j)
        old_val = Signal(signed(ow))
        old_sat = Signal()
        m.d.comb += [old_val.eq(rd.data[:ow]), old_sat.eq(rd.data[ow])]
        new = Signal(ow + 1)
        m.d.comb += new.eq(Cat((old_val + res.value)[:ow], old_sat | res.saturated))
        with m.If(fire):
            for g in range(groups):
                with m.If(merge.grant == g):
                    m.d.sync += count[g].eq(count[g] + 1)

        # Output register and drain.
        o_free = ~self.o.valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        start_drain = accumulating & complete & (done != 0)
        m.d.comb += self.drained.eq(0)
        with m.If(clearing):
            m.d.comb += [wr.addr.eq(clear_idx), wr.data.eq(0), wr.en.eq(1)]
            m.d.sync += clear_idx.eq(clear_idx + 1)
            with m.If(clear_idx == NO - 1):
                m.d.sync += clearing.eq(0)
        with m.Elif(draining):
            m.d.comb += rd.addr.eq(drain_idx)
            with m.If(drain_idx >= n_outputs):
                m.d.sync += [draining.eq(0)] + [count[g].eq(0) for g in range(groups)]
                m.d.comb += self.drained.eq(1)
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
