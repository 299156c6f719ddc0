"""Output-stationary systolic array (Atleus' 128x32 cores) with double-buffered accumulators."""

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.systolic import check_config

from ..cells import add_cell
from ..registry import block
from .row import SystolicRow
from .skew import delayed as _delayed

__all__ = ["SystolicArray"]


@block("systolic_array",
       rows="PE rows (output-tile rows; A vector length)",
       cols="PE columns (output-tile columns; B vector length)",
       in_width="signed operand width in bits (2..16)",
       acc_width="accumulator width in bits (>= 2*in_width)",
       drain="drain side: auto (the shorter), cols (one result column per output), rows",
       out_shift="output stage: rounding (half-up) right shift, 0 = off",
       out_width="output stage: saturate to this width, 0 = off (acc_width bits out)")
class SystolicArray(wiring.Component):
    """Output-stationary systolic array: one ``rows x cols`` output tile per fold, K any length.

    A fold computes the tile ``C = A @ B`` (``A`` is ``rows x K``, ``B`` is ``K x cols``).
    Input vector ``k`` of a fold carries column ``k`` of ``A`` and row ``k`` of ``B``,
    un-skewed; the vector with ``last`` set ends the fold (K >= 1). The array skews the
    operands, multiplies-and-accumulates in every PE (``acc_width`` bits, wrapping), and
    reads each PE's result in the cycle it completes, over one result bus per row; the
    de-skew registers behind the buses are the second accumulator buffer (the next fold
    accumulates while they drain), one output vector per cycle: with ``drain="cols"``
    (default when ``cols <= rows``) vector ``m`` is column
    ``m`` of ``C`` (``rows`` elements, ``cols`` vectors per fold); with ``"rows"`` it is row
    ``m`` (``cols`` elements, ``rows`` vectors per fold). ``P`` is the vector width and
    ``L`` the number of vectors per fold (the drain length).

    Latency and throughput contract, in *advance cycles* (cycles in which the array is not
    stalled; it stalls, entirely, only while ``o.valid`` is high and ``o.ready`` low):

    - one input vector per cycle; the fold whose last vector is accepted at cycle ``T``
      outputs vector ``m`` at cycle ``T + P + 1 + m`` (``m = 0 .. L-1``): the last one
      ``T + rows + cols``, one cycle after the last PE's last MAC (the output register);
    - the last vector of the next fold is held (``i.ready`` low while it is offered) until
      cycle ``T + L``; so with ``K >= L`` folds follow one another with no bubble, and
      back-to-back folds ``K_0, K_1, ...`` take
      ``K_0 + sum(max(K_f, L), f >= 1) + P + L`` cycles, first input to last
      output (:func:`golden.systolic.cycle_model`, cycle-exact, also under idle inputs and
      backpressure: :class:`golden.systolic.TimingModel`);
    - ``i.ready`` depends combinationally on ``o.ready`` and ``i.payload.last`` (never on
      ``i.valid``); ``o.valid`` is a register.

    Results are exact modulo ``2**acc_width``; the optional output stage rounds (half up)
    by ``out_shift`` bits and saturates to ``out_width`` bits (Gemmini's output scaling).
    Each PE, each row and each skew delay line is one shared Verilog module
    (:func:`hdl.cells.add_cell`).

    Parameters
    ----------
    rows, cols : int
        Array size (>= 1): rows of the output tile, columns of the output tile.
    in_width : int
        Signed operand width, 2 to 16.
    acc_width : int
        Accumulator width, at least ``2 * in_width`` (up to 64).
    drain : str
        ``"auto"`` (drain along the shorter side), ``"cols"`` or ``"rows"``.
    out_shift : int
        Rounding right shift of the output stage (0: none), below ``acc_width``.
    out_width : int
        Saturate outputs to this width (0: no saturation, ``acc_width``-bit outputs).

    Members
    -------
    i : In(stream.Signature(data.StructLayout({"a": data.ArrayLayout(signed(in_width), rows), "b": data.ArrayLayout(signed(in_width), cols), "last": 1})))
        Operand vectors.
    o : Out(stream.Signature(data.StructLayout({"data": data.ArrayLayout(signed(out_width or acc_width), P), "last": 1})))
        Result vectors; ``last`` marks the fold's final vector.
    macs : Out(48)
        MACs performed (``rows * cols`` per accepted input vector, padding included).
    busy_cycles : Out(48)
        Cycles in which a fold is in flight (first input vector accepted until its last
        output vector leaves), stalls included.
    """

    def __init__(self, rows=128, cols=32, *, in_width=8, acc_width=32, drain="auto",
                 out_shift=0, out_width=0):
        side = check_config(rows, cols, in_width=in_width, acc_width=acc_width, drain=drain,
                            out_shift=out_shift, out_width=out_width)
        self._rows, self._cols = rows, cols
        self._in_width, self._acc_width = in_width, acc_width
        self._drain = side
        self._out_shift, self._out_width = out_shift, out_width
        width = rows if side == "cols" else cols
        self._port_width = width
        self._drain_length = cols if side == "cols" else rows
        self.i_layout = data.StructLayout({
            "a": data.ArrayLayout(signed(in_width), rows),
            "b": data.ArrayLayout(signed(in_width), cols),
            "last": 1,
        })
        self.o_layout = data.StructLayout({
            "data": data.ArrayLayout(signed(out_width or acc_width), width),
            "last": 1,
        })
        super().__init__({
            "i": In(stream.Signature(self.i_layout)),
            "o": Out(stream.Signature(self.o_layout)),
            "macs": Out(48),
            "busy_cycles": Out(48),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    in_width = property(lambda self: self._in_width)
    acc_width = property(lambda self: self._acc_width)
    drain = property(lambda self: self._drain, doc="The resolved drain side, cols or rows")
    out_shift = property(lambda self: self._out_shift)
    out_width = property(lambda self: self._out_width)
    port_width = property(lambda self: self._port_width, doc="Elements per output vector")
    drain_length = property(lambda self: self._drain_length, doc="Output vectors per fold")

    def elaborate(self, platform):
        m = Module()
        w, aw = self._in_width, self._acc_width
        P, L = self._port_width, self._drain_length

        # The core is P x L: drain="rows" is the transposed array (B enters from the left).
        if self._drain == "cols":
            core_a, core_b = self.i.payload.a, self.i.payload.b
        else:
            core_a, core_b = self.i.payload.b, self.i.payload.a

        en = Signal()           # global advance (stall when an output waits)
        accept = Signal()
        since = Signal(range(L + 1), init=L)   # advance cycles since the last `last` accepted
        fresh = Signal(init=1)                  # the next accepted vector starts a fold
        m.d.comb += [
            en.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(en & ~(self.i.payload.last & (since < L))),
            accept.eq(self.i.valid & self.i.ready),
        ]
        with m.If(en):
            with m.If(accept & self.i.payload.last):
                m.d.sync += since.eq(1)
            with m.Elif(since < L):
                m.d.sync += since.eq(since + 1)
            with m.If(accept):
                m.d.sync += fresh.eq(self.i.payload.last)

        # Input skew: core row p delayed by p, B element q (physical column q) by q.
        def delayed(name, value, depth):
            return _delayed(m, name, value, depth, en)

        a_in = [delayed(f"skew_a{p}", core_a[p], p) for p in range(P)]
        b_in = [delayed(f"skew_b{q}", core_b[q], q) for q in range(L)]

        rows = [add_cell(m, f"row{p}", SystolicRow, L, in_width=w, acc_width=aw)
                for p in range(P)]
        for p, row in enumerate(rows):
            if p == 0:
                m.d.comb += [row.valid.eq(accept), row.first.eq(fresh),
                             row.last.eq(self.i.payload.last)]
                m.d.comb += [row.b[q].eq(b_in[q]) for q in range(L)]
            else:
                up = rows[p - 1]
                m.d.comb += [row.valid.eq(up.valid_down), row.first.eq(up.first_down),
                             row.last.eq(up.last_down), row.b.eq(up.b_out)]
            m.d.comb += [row.a.eq(a_in[p]), row.en.eq(en)]

        # Row p's bus carries its fold results, column 0 first, p cycles after row 0's
        # (one cycle after the fold's last operands pass each PE); de-skew row p by P-1-p.
        read_valid = rows[P - 1].read
        vector = [delayed(f"deskew{p}", rows[p].result.as_signed(), P - 1 - p) for p in range(P)]

        count = Signal(range(L))
        out_w = self._out_width or aw
        with m.If(en):
            m.d.sync += self.o.valid.eq(read_valid)
            with m.If(read_valid):
                m.d.sync += [count.eq(Mux(count == L - 1, 0, count + 1)),
                             self.o.payload.last.eq(count == L - 1)]
                for p in range(P):
                    m.d.sync += self.o.payload.data[p].eq(self._scale(m, vector[p], out_w))

        # Counters.
        pending = Signal(range(2 * L * (P + 2 * L + 2) + 1))   # output vectors not yet sent
        is_open = Signal()
        sent = Signal()
        m.d.comb += sent.eq(self.o.valid & self.o.ready)
        new = Mux(accept & self.i.payload.last, L, 0)
        m.d.sync += pending.eq(pending + new - sent)
        with m.If(accept):
            m.d.sync += [is_open.eq(~self.i.payload.last), self.macs.eq(self.macs + P * L)]
        with m.If(is_open | (pending != 0) | accept):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
        return m

    def _scale(self, m, x, out_w):
        """Output stage: round-half-up shift by out_shift, saturate to out_width."""
        aw, s = self._acc_width, self._out_shift
        v = x.as_signed() if not x.shape().signed else x
        if s:
            v = (v + Const(1 << (s - 1), aw + 1)) >> s
        if self._out_width and self._out_width < aw:
            lo, hi = -(1 << (out_w - 1)), (1 << (out_w - 1)) - 1
            v = Mux(v > hi, hi, Mux(v < lo, lo, v))
        return v

