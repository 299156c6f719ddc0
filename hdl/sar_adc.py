"""Digital half of a column-multiplexed, reconfigurable SAR ADC (HyFlexPIM 6/7-bit, ISAAC 8-bit)."""

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.sar_adc import check_resolutions

from .lib.signatures import AdcPortSignature
from .registry import block

__all__ = ["SarAdcController", "command_layout", "result_layout"]


class _State(enum.Enum, shape=3):
    IDLE = 0
    SAMPLE = 1
    SETTLE = 2
    CONVERT = 3
    WAIT = 4
    ERROR = 5


def _column_shape(columns):
    return unsigned(max(1, (columns - 1).bit_length()))


def _bits_shape(max_bits):
    return unsigned(max_bits.bit_length())


def command_layout(max_bits, columns):
    """Command payload: convert columns ``first..last`` (all of them with ``all``) at ``bits``
    bits; ``hold`` converts the values already held (no sample cycle)."""
    col = _column_shape(columns)
    return data.StructLayout({"first": col, "last": col, "all": 1, "hold": 1,
                              "bits": _bits_shape(max_bits)})


def result_layout(max_bits, columns):
    """Result payload: the ``column``, its ``code`` (LSB-aligned at the command's resolution),
    ``error`` (the command was refused; ``code`` is 0) and ``last`` (last word of a command)."""
    return data.StructLayout({"column": _column_shape(columns), "code": unsigned(max_bits),
                              "error": 1, "last": 1})


def _check_params(max_bits, columns, settle_cycles, resolutions):
    if not isinstance(max_bits, int) or isinstance(max_bits, bool) or not 1 <= max_bits <= 16:
        raise TypeError(f"max_bits must be an integer from 1 to 16, not {max_bits!r}")
    if not isinstance(columns, int) or isinstance(columns, bool) or not 1 <= columns <= 4096:
        raise TypeError(f"columns must be an integer from 1 to 4096, not {columns!r}")
    if (not isinstance(settle_cycles, int) or isinstance(settle_cycles, bool)
            or not 0 <= settle_cycles <= 255):
        raise TypeError(f"settle_cycles must be an integer from 0 to 255, not {settle_cycles!r}")
    if (not isinstance(resolutions, (tuple, list))
            or not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= 16
                       for r in resolutions)):
        raise TypeError(f"resolutions must be a tuple of integers from 1 to 16, "
                        f"not {resolutions!r}")
    # Repeats, the max_bits bound and the default: the golden model's own rule.
    return check_resolutions(max_bits, resolutions)


@block("sar_adc_controller",
       max_bits="widest resolution and width of the code and trial ports (1..16)",
       columns="columns multiplexed onto the ADC (1..4096)",
       settle_cycles="settle cycles after each column switch, before the first trial (0..255)",
       resolutions="resolutions a command may select, e.g. 6,7 "
                   "(empty: every one from 1 to max_bits)")
class SarAdcController(wiring.Component):
    """Successive-approximation register, column sequencer and resolution switch of one ADC.

    One ADC converts the held column values of a crossbar read, one column after the other
    through the column mux, MSB first with one trial per cycle. A command selects a column
    range and a resolution ``b``; the command after it may select another resolution.

    Timing contract (``S = settle_cycles``; :mod:`golden.sar_adc` is the cycle-true model;
    ``sample``, ``column``, ``trial``, ``trial_en``, ``bits`` and ``decision`` are the members of
    ``adc``):

    - The command is accepted in cycle 0; unless ``hold`` is set, cycle 1 is the sample cycle
      (``sample`` high for one cycle). Each column then takes ``S`` settle cycles (``column``
      switched, ``trial_en`` low) and ``b`` trial cycles: an ``N``-column command costs
      ``1 + N * (S + b)`` cycles, and the next command is accepted in the last trial cycle
      (no idle cycle between columns or commands).
    - In a trial cycle, ``trial`` (a register) shows the trial code ``code | 1 << k`` for
      step ``k = b-1 .. 0``, LSB-aligned at resolution ``b`` (``bits`` tells the capacitor DAC
      the resolution); the comparator answers on ``decision`` within the same cycle, and the
      controller registers it at the rising edge that ends that cycle.
    - The word of a column is on ``o`` from the cycle after its last trial. Backpressure: when
      a conversion ends while the output register is still full, its code waits in the SAR
      register and the controller shows no trial (``trial_en`` low) until the output register
      empties; the sample-and-hold keeps the value, so the code does not change.
    - A resolution not in ``resolutions``, ``first > last`` or ``last >= columns`` is refused:
      one word with ``error`` set, ``column = first``, ``code = 0``, ``last`` set.
    - Reset returns to idle from any state (the word in the output register is dropped).

    The block is one ADC's controller; a tile with many ADCs instantiates it through
    :func:`hdl.cells.shared_cell` with ``key=controller.cell_key``.

    Parameters
    ----------
    max_bits : int
        Widest resolution, 1 to 16 (8 for ISAAC/Atleus; 7 for HyFlexPIM's 6/7-bit ADC).
    columns : int
        Columns behind the column mux, 1 to 4096 (128: one crossbar).
    settle_cycles : int
        Cycles after each column switch before the first trial, 0 to 255.
    resolutions : tuple of int
        Resolutions a command may select, each 1 to ``max_bits``; empty (default) for every
        one from 1 to ``max_bits``. ``(6, 7)`` is HyFlexPIM's switch; a single value gives a
        fixed-resolution controller (no resolution register).

    Members
    -------
    cmd : In(stream.Signature(command_layout(max_bits, columns)))
        Commands ``{first, last, all, hold, bits}``.
    o : Out(stream.Signature(result_layout(max_bits, columns)))
        Words ``{column, code, error, last}``.
    adc : Out(AdcPortSignature(max_bits=max_bits, columns=columns))
        The analog front end: ``sample`` strobe, ``column`` mux select, ``trial`` code with
        ``trial_en`` and ``bits`` to the capacitor DAC, ``decision`` from the comparator
        (:class:`hdl.lib.signatures.AdcPortSignature`).
    busy : Out(1)
        A command is in progress.
    """

    def __init__(self, max_bits=8, *, columns=128, settle_cycles=0, resolutions=()):
        self._resolutions = _check_params(max_bits, columns, settle_cycles, resolutions)
        self._max_bits = max_bits
        self._columns = columns
        self._settle_cycles = settle_cycles
        super().__init__({
            "cmd": In(stream.Signature(command_layout(max_bits, columns))),
            "o": Out(stream.Signature(result_layout(max_bits, columns))),
            "adc": Out(AdcPortSignature(max_bits=max_bits, columns=columns)),
            "busy": Out(1),
        })

    @property
    def max_bits(self):
        return self._max_bits

    @property
    def columns(self):
        return self._columns

    @property
    def settle_cycles(self):
        return self._settle_cycles

    @property
    def resolutions(self):
        """The selectable resolutions, sorted (every one from 1 to max_bits by default)."""
        return self._resolutions

    @property
    def cell_key(self):
        """Key for :func:`hdl.cells.shared_cell`."""
        return (self._max_bits, self._columns, self._settle_cycles, self._resolutions)

    def elaborate(self, platform):
        m = Module()
        res = self._resolutions
        n_modes = len(res)
        state = Signal(_State)
        sar = Signal(self._max_bits)             # the trial code; the code once finished
        mask = Signal(self._max_bits)            # one-hot: the bit under trial
        col = Signal(_column_shape(self._columns))
        last_col = Signal(_column_shape(self._columns))
        settle = Signal(range(max(1, self._settle_cycles)))
        out = Signal(result_layout(self._max_bits, self._columns))
        out_valid = Signal()
        # The resolution as an index into `res` (no register when the resolution is fixed).
        mode = Signal(range(n_modes)) if n_modes > 1 else Const(0, 1)

        def top_bit(index):
            """One-hot MSB of the resolution with index `index` (a value)."""
            if n_modes == 1:
                return Const(1 << (res[0] - 1), self._max_bits)
            onehot = Signal(self._max_bits)
            with m.Switch(index):
                for i, r in enumerate(res):
                    with m.Case(i):
                        m.d.comb += onehot.eq(1 << (r - 1))
            return onehot

        # Command decode: is the resolution selectable, and which mode is it.
        cmd = self.cmd.payload
        cmd_mode = Signal(range(n_modes)) if n_modes > 1 else Const(0, 1)
        bits_ok = Signal()
        with m.Switch(cmd.bits):
            for i, r in enumerate(res):
                with m.Case(r):
                    m.d.comb += bits_ok.eq(1)
                    if n_modes > 1:
                        m.d.comb += cmd_mode.eq(i)
        range_ok = cmd.all | ((cmd.first <= cmd.last) & (cmd.last < self._columns))
        cmd_ok = bits_ok & range_ok

        with m.Switch(mode):
            for i, r in enumerate(res):
                with m.Case(i):
                    m.d.comb += self.adc.bits.eq(r)

        out_free = ~out_valid | self.o.ready
        is_last = col == last_col
        converting = state == _State.CONVERT
        finishing = (converting & mask[0]) | (state == _State.WAIT)
        release = ((state == _State.IDLE) | ((state == _State.ERROR) & out_free)
                   | (finishing & is_last & out_free))
        accept = self.cmd.valid & release
        kept = Signal(self._max_bits)
        m.d.comb += [
            kept.eq(Mux(self.adc.decision, sar, sar & ~mask)),   # the trial bit, kept or cleared
            self.cmd.ready.eq(release),
            self.o.valid.eq(out_valid),
            self.o.payload.eq(out),
            self.adc.sample.eq(state == _State.SAMPLE),
            self.adc.trial_en.eq(converting),
            self.adc.trial.eq(sar),
            self.adc.column.eq(col),
            self.busy.eq(state != _State.IDLE),
        ]

        current_top = top_bit(mode)

        def start_column(top):
            m.d.sync += [sar.eq(top), mask.eq(top)]
            if self._settle_cycles:
                m.d.sync += [state.eq(_State.SETTLE), settle.eq(self._settle_cycles - 1)]
            else:
                m.d.sync += state.eq(_State.CONVERT)

        with m.If(out_valid & self.o.ready):
            m.d.sync += out_valid.eq(0)

        finish = Signal()
        finish_code = Signal(self._max_bits)
        with m.Switch(state):
            with m.Case(_State.SAMPLE):
                start_column(current_top)
            with m.Case(_State.SETTLE):
                with m.If(settle == 0):
                    m.d.sync += state.eq(_State.CONVERT)
                with m.Else():
                    m.d.sync += settle.eq(settle - 1)
            with m.Case(_State.CONVERT):
                with m.If(mask[0]):
                    with m.If(out_free):
                        m.d.comb += [finish.eq(1), finish_code.eq(kept)]
                    with m.Else():
                        m.d.sync += [sar.eq(kept), state.eq(_State.WAIT)]
                with m.Else():
                    m.d.sync += [sar.eq(kept | (mask >> 1)), mask.eq(mask >> 1)]
            with m.Case(_State.WAIT):
                with m.If(out_free):
                    m.d.comb += [finish.eq(1), finish_code.eq(sar)]
            with m.Case(_State.ERROR):
                with m.If(out_free):
                    m.d.sync += [out.column.eq(col), out.code.eq(0), out.error.eq(1),
                                 out.last.eq(1), out_valid.eq(1), state.eq(_State.IDLE)]

        with m.If(finish):
            m.d.sync += [out.column.eq(col), out.code.eq(finish_code), out.error.eq(0),
                         out.last.eq(is_last), out_valid.eq(1)]
            with m.If(is_last):
                m.d.sync += state.eq(_State.IDLE)
            with m.Else():
                m.d.sync += col.eq(col + 1)
                start_column(current_top)

        # Acceptance comes last: it overrides the end of the previous command.
        with m.If(accept):
            with m.If(~cmd_ok):
                m.d.sync += [state.eq(_State.ERROR), col.eq(cmd.first)]
            with m.Else():
                if n_modes > 1:
                    m.d.sync += mode.eq(cmd_mode)
                m.d.sync += [col.eq(cmd.first), last_col.eq(cmd.last)]
                with m.If(cmd.all):
                    m.d.sync += [col.eq(0), last_col.eq(self._columns - 1)]
                with m.If(cmd.hold):
                    start_column(top_bit(cmd_mode))
                with m.Else():
                    m.d.sync += state.eq(_State.SAMPLE)
        return m
