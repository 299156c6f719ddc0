"""Formal harness of :class:`hdl.sar_adc.SarAdcController` (black box: ports only).

The harness keeps a reference of the controller's contract (:mod:`golden.sar_adc`) from the
commands it accepts and the comparator decisions it gives, and asserts in every cycle:

- stream rules on ``o`` (and assumed on ``cmd``);
- a command is accepted only when idle or in the cycle the previous command ends (its last
  trial, or its error word leaving);
- ``sample`` is high exactly in the cycle after a non-``hold`` command is accepted;
- every trial cycle belongs to a conversion of an accepted valid command, on its column
  (``first..last`` in order) and at its resolution; the trial word is the SAR rule's
  ``code | 1 << k`` for ``k = bits-1 .. 0`` (one new bit per cycle, MSB first); after
  exactly ``bits`` trials the column's word is due;
- the words on ``o`` are exactly the promised ones, in order: one per column with the
  SAR code and ``last`` on the last column, or one error word (``column = first``,
  ``code = 0``, ``error``, ``last``) for a refused command; at most ``queue`` words pending;
- no deadlock: while words are due, a word leaves within ``settle_cycles + max_bits + 2``
  cycles in which the output is not blocked (``o.valid`` and not ``o.ready``), and an idle
  controller (``busy`` low) owes nothing but the word in its output register.
"""

from amaranth import Const, Mux, Signal
from amaranth.hdl import Assert

from hdl.sar_adc import SarAdcController, result_layout

from .harness import FormalHarness, Mutant, dropping_valid, past
from .shadow import ShadowQueue

__all__ = ["SarAdcHarness", "adc_ports", "SAR_BUGS"]


def adc_ports(dut):
    """The analog-side ports (``sample``, ``column``, ``trial``, ``trial_en``, ``bits``,
    ``decision``) of the controller: its ``adc`` member (an ``AdcPortSignature``). The one
    place to change if they move again."""
    return dut.adc


class _ReadyWhileBusy(SarAdcController):
    """Seeded bug: accepts a command in any cycle (drops the conversion in progress)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.cmd.ready.eq(1)
        return m


def _adc_path(dut, port):
    return ("adc", port)


def _trial_bit0(**params):
    """Seeded bug: the trial word always has bit 0 set (not the SAR rule)."""
    dut = SarAdcController(**params)
    return Mutant(dut, {_adc_path(dut, "trial"): lambda m, v: v | 1})


def _valid_drop(**params):
    """Seeded bug: ``o.valid`` falls every other cycle before the word was taken."""
    return Mutant(SarAdcController(**params), dropping_valid(("o",)))


class _NoLast(SarAdcController):
    """Seeded bug: the last word of a command lacks ``last``."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.o.payload.last.eq(0)
        return m


SAR_BUGS = {"ready_while_busy": _ReadyWhileBusy, "trial_bit0": _trial_bit0, "no_last": _NoLast,
            "valid_drop": _valid_drop}


class SarAdcHarness(FormalHarness):
    """The controller with free commands, decisions and backpressure, and its contract.

    Parameters
    ----------
    max_bits, columns, settle_cycles, resolutions
        As :class:`hdl.sar_adc.SarAdcController`.
    bug : str or None
        A key of :data:`SAR_BUGS` (a seeded bug the proof must find).
    queue : int
        Words the harness expects may be pending at once (the output register and one
        finished conversion waiting).
    """

    def __init__(self, *, max_bits=3, columns=3, settle_cycles=1, resolutions=(), bug=None,
                 queue=2):
        cls = SAR_BUGS[bug] if bug else SarAdcController
        self.queue = queue
        super().__init__(cls(max_bits=max_bits, columns=columns, settle_cycles=settle_cycles,
                             resolutions=resolutions))

    def properties(self, m):
        dut, adc = self.dut, adc_ports(self.dut)
        mb, ncol, settle = dut.max_bits, dut.columns, dut.settle_cycles
        cmd = dut.cmd.payload
        accept = Signal()
        m.d.comb += accept.eq(dut.cmd.valid & dut.cmd.ready)

        # The acceptance rule (golden.sar_adc: a selectable resolution and a valid range).
        bits_ok = Const(0)
        for r in dut.resolutions:
            bits_ok = bits_ok | (cmd.bits == r)
        ok = Signal()
        m.d.comb += ok.eq(bits_ok & (cmd.all | ((cmd.first <= cmd.last) & (cmd.last < ncol))))

        # Reference conversion: the command converting, its column, trial step and code.
        col_shape = cmd.first.shape()
        conv = Signal()
        conv_bits = Signal(cmd.bits.shape())
        col = Signal(col_shape)
        last = Signal(col_shape)
        step = Signal(range(mb + 1))
        code = Signal(mb)
        bit = Signal(mb)
        shift = Signal(range(2 * mb + 2))
        m.d.comb += [shift.eq(mb - conv_bits + step), bit.eq(Const(1 << (mb - 1), mb) >> shift)]
        trial = Signal(mb)
        kept = Signal(mb)
        m.d.comb += [trial.eq(code | bit), kept.eq(Mux(adc.decision, trial, code))]
        final = Signal()           # this trial is the column's last one
        m.d.comb += final.eq(adc.trial_en & (step + 1 == conv_bits))
        ends = Signal()            # ... and the command's last column
        m.d.comb += ends.eq(final & (col == last))

        words = ShadowQueue(m, result_layout(mb, ncol), self.queue, "words")
        word = Signal(result_layout(mb, ncol))
        m.d.comb += [word.column.eq(col), word.code.eq(kept), word.error.eq(0),
                     word.last.eq(col == last)]
        err = Signal(result_layout(mb, ncol))
        m.d.comb += [err.column.eq(cmd.first), err.code.eq(0), err.error.eq(1), err.last.eq(1)]
        words.push(final, word)
        words.push(accept & ~ok, err)
        words.pop(dut.o.valid & dut.o.ready)
        words.build()

        m.d.comb += [
            Assert(~adc.trial_en | conv),
            Assert(~adc.trial_en | (step < conv_bits)),
            Assert(~adc.trial_en | (adc.column == col)),
            Assert(~adc.trial_en | (adc.bits == conv_bits)),
            Assert(~adc.trial_en | (adc.trial == trial)),
            Assert(~accept | ~conv | ends),
            Assert(adc.sample == past(m, accept & ok & ~cmd.hold, name="sample_due")),
            Assert(~dut.o.valid | words.nonempty),
            Assert(~dut.o.valid | (dut.o.payload.as_value() == words.head.as_value())),
            Assert(~dut.busy | conv | words.nonempty),
            Assert(dut.busy | ~conv),
        ]
        with m.If(adc.trial_en):
            with m.If(final):
                m.d.sync += [step.eq(0), code.eq(0)]
                with m.If(col == last):
                    m.d.sync += conv.eq(0)
                with m.Else():
                    m.d.sync += col.eq(col + 1)
            with m.Else():
                m.d.sync += [step.eq(step + 1), code.eq(kept)]
        with m.If(accept & ok):
            m.d.sync += [conv.eq(1), conv_bits.eq(cmd.bits), step.eq(0), code.eq(0),
                         col.eq(Mux(cmd.all, 0, cmd.first)),
                         last.eq(Mux(cmd.all, ncol - 1, cmd.last))]

        # Bounded progress: cycles (not blocked by the consumer) since the last word left
        # while something is owed.
        bound = settle + mb + 2
        waited = Signal(range(bound + 2))
        owed = conv | words.nonempty
        with m.If((dut.o.valid & dut.o.ready) | ~owed):
            m.d.sync += waited.eq(0)
        with m.Elif(~(dut.o.valid & ~dut.o.ready) & (waited <= bound)):
            m.d.sync += waited.eq(waited + 1)
        m.d.comb += Assert(waited <= bound)
