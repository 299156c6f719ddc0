"""Formal harness of :class:`hdl.dequant.dequantizer.Dequantizer` against the golden rule.

The harness enumerates :func:`golden.quant.dequantize` over every input value and every
scale of the (small) configuration into a lookup table, keeps its own copy of the scale
registers (written by ``cfg``, cleared by reset) and, per accepted input, expects the golden
``(out, saturated)`` with the input's ``xbar`` and ``column``, in order. Every cycle:

- the stream rules on ``o`` (assumed on ``i`` and ``cfg``);
- every output word is the next expected one: ``value`` and the per-word ``saturated``
  bit exactly as the golden saturation rule says (nothing is emitted that was not put in,
  at most ``latency + 1`` words in flight);
- the sticky flag ``saturated`` is high exactly when a saturated word has left since the
  last ``clear_saturated`` (or reset): set by the golden rule, kept until cleared.
"""

import numpy as np
from amaranth import Array, Cat, Const, Signal
from amaranth.hdl import Assert

from golden.quant import dequantize
from hdl.dequant.dequantizer import Dequantizer

from .harness import FormalHarness, Mutant, toggle
from .shadow import ShadowQueue

__all__ = ["DequantHarness", "DEQUANT_BUGS"]


def _flag_drops(**params):
    """Seeded bug: the sticky flag reads 0 every other cycle (not sticky)."""
    return Mutant(Dequantizer(**params), {("saturated",): lambda m, v: v & toggle(m)})


def _flag_at_max(**params):
    """Seeded bug: a word equal to the largest output counts as saturated (an off-by-one
    saturation rule)."""
    def wrong(m, v):
        hi = (1 << (len(v.value) - 1)) - 1
        return Cat(v.xbar, v.column, v.value, v.value >= hi)
    return Mutant(Dequantizer(**params), {("o", "payload"): wrong})


DEQUANT_BUGS = {"flag_drops": _flag_drops, "flag_at_max": _flag_at_max}


class DequantHarness(FormalHarness):
    """A small dequantizer with free inputs, scale writes, clears and backpressure.

    Parameters
    ----------
    in_width, scale_bits, scale_frac_bits, out_bits, xbars, rounding, multiplier
        As :class:`Dequantizer` (``columns=2``).
    bug : str or None
        A key of :data:`DEQUANT_BUGS`.
    """

    def __init__(self, *, in_width=4, scale_bits=4, scale_frac_bits=2, out_bits=3, xbars=2,
                 rounding="half_even", multiplier="csd", bug=None):
        params = dict(in_width=in_width, columns=2, xbars=xbars, scale_bits=scale_bits,
                      scale_frac_bits=scale_frac_bits, out_bits=out_bits, rounding=rounding,
                      multiplier=multiplier)
        self.golden_params = dict(scale_frac_bits=scale_frac_bits, out_bits=out_bits,
                                  rounding=rounding)
        super().__init__(DEQUANT_BUGS[bug](**params) if bug else Dequantizer(**params))

    def table(self):
        """Golden ``(out, saturated)`` for every (value, scale), indexed by
        ``value_bits | scale_bits << in_width`` (two's complement)."""
        iw, sb = self.dut.in_width, self.dut.scale_bits
        values = np.arange(1 << iw) - ((np.arange(1 << iw) >> (iw - 1)) << iw)
        scales = np.arange(1 << sb) - ((np.arange(1 << sb) >> (sb - 1)) << sb)
        acc = np.tile(values, len(scales))
        scale = np.repeat(scales, len(values))
        return dequantize(acc, scale, **self.golden_params)

    def properties(self, m):
        dut = self.dut
        ob = dut.out_bits
        out, sat = self.table()
        entries = [Const((int(o) & ((1 << ob) - 1)) | int(s) << ob, ob + 1)
                   for o, s in zip(out, sat)]
        lut = Array(entries)

        scales = Array(Signal(dut.scale_bits, name=f"scale{k}") for k in range(dut.xbars))
        with m.If(dut.cfg.valid):                  # always ready
            m.d.sync += scales[dut.cfg.payload.xbar].eq(dut.cfg.payload.scale)
        ip, op = dut.i.payload, dut.o.payload
        golden = Signal(ob + 1)
        m.d.comb += golden.eq(lut[Cat(ip.value, scales[ip.xbar])])
        expected = Signal(op.shape())
        m.d.comb += [expected.xbar.eq(ip.xbar), expected.column.eq(ip.column),
                     expected.value.eq(golden[:ob]), expected.saturated.eq(golden[ob])]
        words = ShadowQueue(m, op.shape(), dut.latency + 1, "words")
        words.push(dut.i.valid & dut.i.ready, expected)
        sent = dut.o.valid & dut.o.ready
        words.pop(sent)
        words.build()
        m.d.comb += [
            Assert(~dut.o.valid | words.nonempty),
            Assert(~dut.o.valid | (op.as_value() == words.head.as_value())),
        ]
        flag = Signal()
        with m.If(dut.clear_saturated):
            m.d.sync += flag.eq(0)
        with m.Elif(sent & words.head.saturated):
            m.d.sync += flag.eq(1)
        m.d.comb += Assert(dut.saturated == flag)
