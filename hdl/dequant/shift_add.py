"""Shift-and-add accumulator of the ADC codes of one crossbar read (ISAAC/Atleus S&A unit)."""

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.shift_add import SA_ENCODINGS, sa_acc_width

from ._check import check_bool, check_choice, check_int

__all__ = ["ShiftAddAccumulator", "sa_input_layout", "sa_output_layout"]


def _ubits(n):
    """Unsigned width holding 0 .. n - 1 (at least 1 bit)."""
    return max(1, (n - 1).bit_length())


def sa_input_layout(*, adc_bits, input_bits, n_slices, columns, xbars, rows, ones, flip):
    """Payload of one ADC-code beat (see :class:`ShiftAddAccumulator`)."""
    fields = {
        "code": unsigned(adc_bits),
        "plane": unsigned(_ubits(input_bits)),
        "slice": unsigned(_ubits(n_slices)),
        "column": unsigned(_ubits(columns)),
        "xbar": unsigned(_ubits(xbars)),
        "first": unsigned(1),
        "last": unsigned(1),
    }
    if ones:
        fields["ones"] = unsigned(rows.bit_length())
    if flip:
        fields["flip"] = unsigned(1)
    return data.StructLayout(fields)


def sa_output_layout(*, columns, xbars, acc_width):
    """Payload of one column result."""
    return data.StructLayout({
        "xbar": unsigned(_ubits(xbars)),
        "column": unsigned(_ubits(columns)),
        "value": signed(acc_width),
    })


class ShiftAddAccumulator(wiring.Component):
    """Per-column shift-and-add of ADC codes with sign-plane and weight-encoding corrections.

    Each accepted beat adds ``term << plane`` to accumulator ``column`` (subtracts it for the
    sign plane ``input_bits - 1`` when ``signed_inputs``), where ``term = c << (slice *
    cell_bits)``; ``c`` is ``code``, or ``(2**cell_bits - 1) * ones - code`` for a beat with
    ``flip`` set (ISAAC column flip); ``encoding="offset"`` subtracts ``ones << (weight_bits -
    1)`` on every slice-0 beat (the digital sum of the inputs); ``encoding="twos"``
    (``cell_bits == 1``) negates the top slice (the sign bit). A beat with ``first`` loads the
    accumulator instead of adding; a beat with ``last`` emits the column's result. The model is
    :func:`golden.shift_add.shift_add_stream`; :func:`golden.shift_add.read_sequence` gives the
    fixed order plane -> row group -> weight column -> slice, but any order works in which each
    column's ``first`` beat comes first and its ``last`` beat last.

    Latency and throughput: one beat per cycle; a result leaves on ``o`` two cycles after its
    ``last`` beat is accepted. Backpressure on ``o`` stalls ``i`` only while a ``last`` beat
    waits (other beats keep flowing). ``i.ready`` depends combinationally on ``o.ready``.
    The accumulator width is derived from the parameters (:func:`golden.shift_add.sa_acc_width`)
    so it cannot overflow for any codes; ``plane``, ``slice`` and ``column`` must stay below
    ``input_bits``, ``n_slices`` and ``columns``.

    Parameters
    ----------
    adc_bits : int
        ADC code width, 1 to 16.
    input_bits : int
        Input width (bit-serial planes), 1 to 16.
    weight_bits : int
        Weight width, 1 to 16, a multiple of ``cell_bits``.
    cell_bits : int
        Bits per cell, 1 (SLC) to 4.
    columns : int
        Accumulators (column results in flight), 1 to 1024.
    xbars : int
        Crossbars whose tag travels with the results (the dequantizer's scale index), 1 to 256.
    rows : int
        Crossbar rows (bounds ``ones``), 1 to 4096.
    encoding : {"offset", "twos", "none"}
        Weight encoding to correct (``"none"``: raw unsigned weights).
    flip : bool
        Accept the ISAAC column-flip flag per beat.
    signed_inputs : bool
        Two's-complement inputs: the top plane is subtracted.
    row_groups : int
        ADC samples per plane (row groups) of one column, 1 to 64: bounds the width.
    acc_width : int or None
        Accumulator width; ``None`` derives it. A given width must be at least the derived one.

    Members
    -------
    i : In(stream.Signature(sa_input_layout(...)))
        ADC-code beats: ``code, plane, slice, column, xbar, first, last`` and ``ones`` (when
        ``encoding="offset"`` or ``flip``), ``flip`` (when ``flip``).
    o : Out(stream.Signature(sa_output_layout(...)))
        Column results ``xbar, column, value``.
    """

    def __init__(self, *, adc_bits=8, input_bits=8, weight_bits=8, cell_bits=2, columns=64,
                 xbars=8, rows=128, encoding="offset", flip=False, signed_inputs=True,
                 row_groups=1, acc_width=None):
        self._adc_bits = check_int("adc_bits", adc_bits, 1, 16)
        self._input_bits = check_int("input_bits", input_bits, 1, 16)
        self._weight_bits = check_int("weight_bits", weight_bits, 1, 16)
        self._cell_bits = check_int("cell_bits", cell_bits, 1, 4)
        if weight_bits % cell_bits:
            raise ValueError(f"cell_bits ({cell_bits}) must divide weight_bits ({weight_bits})")
        self._columns = check_int("columns", columns, 1, 1024)
        self._xbars = check_int("xbars", xbars, 1, 256)
        self._rows = check_int("rows", rows, 1, 4096)
        self._encoding = check_choice("encoding", encoding, SA_ENCODINGS)
        if encoding == "twos" and cell_bits != 1:
            raise ValueError(f"encoding 'twos' needs cell_bits 1 (the sign bit in a cell of its own), "
                             f"not {cell_bits}")
        self._flip = check_bool("flip", flip)
        self._signed_inputs = check_bool("signed_inputs", signed_inputs)
        self._row_groups = check_int("row_groups", row_groups, 1, 64)
        need = sa_acc_width(adc_bits=adc_bits, input_bits=input_bits, weight_bits=weight_bits,
                            cell_bits=cell_bits, rows=rows, encoding=encoding, flip=flip,
                            signed_inputs=signed_inputs, row_groups=row_groups)
        if acc_width is None:
            acc_width = need
        elif not isinstance(acc_width, int) or isinstance(acc_width, bool) or not need <= acc_width <= 64:
            raise ValueError(f"acc_width must be an integer from {need} (the width that cannot "
                             f"overflow) to 64, not {acc_width!r}")
        if acc_width > 64:
            raise ValueError(f"acc_width {acc_width} needed by these parameters exceeds 64 bits")
        self._acc_width = acc_width
        self._has_ones = encoding == "offset" or flip
        super().__init__({
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(self.output_layout)),
        })

    adc_bits = property(lambda self: self._adc_bits)
    input_bits = property(lambda self: self._input_bits)
    weight_bits = property(lambda self: self._weight_bits)
    cell_bits = property(lambda self: self._cell_bits)
    columns = property(lambda self: self._columns)
    xbars = property(lambda self: self._xbars)
    rows = property(lambda self: self._rows)
    encoding = property(lambda self: self._encoding)
    flip = property(lambda self: self._flip)
    signed_inputs = property(lambda self: self._signed_inputs)
    row_groups = property(lambda self: self._row_groups)
    acc_width = property(lambda self: self._acc_width)
    n_slices = property(lambda self: self._weight_bits // self._cell_bits)
    latency = 2
    """Cycles from accepting a ``last`` beat to its result on ``o`` (no backpressure)."""

    @property
    def input_layout(self):
        return sa_input_layout(adc_bits=self._adc_bits, input_bits=self._input_bits,
                               n_slices=self.n_slices, columns=self._columns, xbars=self._xbars,
                               rows=self._rows, ones=self._has_ones, flip=self._flip)

    @property
    def output_layout(self):
        return sa_output_layout(columns=self._columns, xbars=self._xbars, acc_width=self._acc_width)

    def elaborate(self, platform):
        m = Module()
        w = self._acc_width
        cb, n = self._cell_bits, self.n_slices
        p = self.i.payload

        # Stage 1: the shifted, corrected term of the beat.
        c = Signal(signed(w), name="corrected")
        if self._flip:
            m.d.comb += c.eq(Mux(p.flip, ((1 << cb) - 1) * p.ones - p.code, p.code))
        else:
            m.d.comb += c.eq(p.code)
        weighted = c << (p.slice * cb) if n > 1 else c
        sliced = Signal(signed(w))
        if self._encoding == "offset":
            m.d.comb += sliced.eq(weighted - Mux(p.slice == 0, p.ones << (self._weight_bits - 1), 0))
        elif self._encoding == "twos":
            m.d.comb += sliced.eq(Mux(p.slice == n - 1, -weighted, weighted))
        else:
            m.d.comb += sliced.eq(weighted)
        shifted = Signal(signed(w))
        m.d.comb += shifted.eq(sliced << p.plane)
        term = Signal(signed(w))
        if self._signed_inputs:
            m.d.comb += term.eq(Mux(p.plane == self._input_bits - 1, -shifted, shifted))
        else:
            m.d.comb += term.eq(shifted)

        v1 = Signal()
        t1 = Signal(signed(w))
        col1 = Signal.like(p.column)
        xbar1 = Signal.like(p.xbar)
        first1 = Signal()
        last1 = Signal()

        # Stage 2: read-modify-write of the column's accumulator; last beats load `o`.
        out_free = ~self.o.valid | self.o.ready
        move1 = v1 & (~last1 | out_free)
        m.d.comb += self.i.ready.eq(~v1 | move1)
        with m.If(self.i.ready):
            m.d.sync += [v1.eq(self.i.valid), t1.eq(term), col1.eq(p.column), xbar1.eq(p.xbar),
                         first1.eq(p.first), last1.eq(p.last)]

        acc = Array(Signal(signed(w), name=f"acc{k}") for k in range(self._columns))
        total = Signal(signed(w))
        m.d.comb += total.eq(Mux(first1, 0, acc[col1]) + t1)
        with m.If(move1):
            m.d.sync += acc[col1].eq(total)
        with m.If(out_free):
            m.d.sync += self.o.valid.eq(v1 & last1)
            m.d.sync += [self.o.payload.value.eq(total), self.o.payload.column.eq(col1),
                         self.o.payload.xbar.eq(xbar1)]
        return m
