"""Processing element of the output-stationary systolic array."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..registry import block

__all__ = ["SystolicPe"]


@block("systolic_pe", in_width="operand width in bits (2..16)",
       acc_width="accumulator width in bits (>= 2*in_width)")
class SystolicPe(wiring.Component):
    """Output-stationary multiply-accumulate cell with a double-buffered result register.

    In every cycle with ``en`` set (``en`` is the array's global stall: nothing changes while
    it is low):

    - ``a``, ``b`` and the flags ``valid``, ``first``, ``last`` are forwarded one cycle later
      on ``a_out``, ``b_out``, ``valid_out``, ``first_out``, ``last_out`` (registers), so
      operands advance one PE per cycle;
    - with ``valid`` set the accumulator ``acc`` takes ``a * b`` (``first`` set: a new fold
      starts) or ``acc + a * b``;
    - with ``valid`` and ``last`` set the fold's result (the value ``acc`` takes) is also
      written to the result register ``d_out`` (the second accumulator buffer), so the next
      fold can accumulate while this one drains;
    - otherwise, with ``start`` or ``shift_in`` set, ``d_out`` loads ``d_in`` (the left
      neighbour's ``d_out``: the drain chain) and ``shift_out`` is the registered
      ``start | shift_in`` (the drain window, one cycle shorter in every next PE).

    The accumulator wraps modulo ``2**acc_width`` (the caller picks a wide enough one).

    Parameters
    ----------
    in_width : int
        Width of the signed operands, 2 to 16.
    acc_width : int
        Width of the signed accumulator, at least ``2 * in_width``.

    Members
    -------
    a, b : In(signed(in_width))
        Operands from the left and from the top.
    valid, first, last : In(1)
        The operands are valid; they are the first / the last pair of a fold.
    start, shift_in : In(1)
        Drain control: the row's drain starts (broadcast); the left neighbour is shifting.
    d_in : In(signed(acc_width))
        Result register of the left neighbour.
    en : In(1, init=1)
        Clock enable (global stall when low).
    a_out, b_out : Out(signed(in_width))
        Operands to the right and to the bottom neighbour.
    valid_out, first_out, last_out, shift_out : Out(1)
        Flags forwarded with the operands; the drain window for the right neighbour.
    acc : Out(signed(acc_width))
        The accumulator.
    d_out : Out(signed(acc_width))
        The result register (drain chain).
    """

    def __init__(self, in_width=8, *, acc_width=32):
        if not isinstance(in_width, int) or isinstance(in_width, bool) or not 2 <= in_width <= 16:
            raise TypeError(f"in_width must be an integer from 2 to 16, not {in_width!r}")
        if not isinstance(acc_width, int) or isinstance(acc_width, bool) or acc_width < 2 * in_width:
            raise ValueError(f"acc_width must be an integer of at least 2*in_width = "
                             f"{2 * in_width}, not {acc_width!r}")
        self._in_width = in_width
        self._acc_width = acc_width
        super().__init__({
            "a": In(signed(in_width)), "b": In(signed(in_width)),
            "valid": In(1), "first": In(1), "last": In(1),
            "start": In(1), "shift_in": In(1), "d_in": In(signed(acc_width)),
            "en": In(1, init=1),
            "a_out": Out(signed(in_width)), "b_out": Out(signed(in_width)),
            "valid_out": Out(1), "first_out": Out(1), "last_out": Out(1), "shift_out": Out(1),
            "acc": Out(signed(acc_width)), "d_out": Out(signed(acc_width)),
        })

    @property
    def in_width(self):
        return self._in_width

    @property
    def acc_width(self):
        return self._acc_width

    def elaborate(self, platform):
        m = Module()
        # Data registers need no reset: `first` restarts the accumulator, and `valid`/`last`
        # (which are reset) decide when anything is used.
        a_r = Signal(signed(self._in_width), reset_less=True)
        b_r = Signal(signed(self._in_width), reset_less=True)
        acc = Signal(signed(self._acc_width), reset_less=True)
        d = Signal(signed(self._acc_width), reset_less=True)
        m.d.comb += [self.a_out.eq(a_r), self.b_out.eq(b_r), self.acc.eq(acc), self.d_out.eq(d)]
        product = Signal(signed(2 * self._in_width))
        total = Signal(signed(self._acc_width))
        shift = Signal()
        m.d.comb += [
            product.eq(self.a * self.b),
            total.eq(Mux(self.first, 0, acc) + product),
            shift.eq(self.start | self.shift_in),
        ]
        with m.If(self.en):
            m.d.sync += [
                a_r.eq(self.a), b_r.eq(self.b),
                self.valid_out.eq(self.valid), self.first_out.eq(self.first),
                self.last_out.eq(self.valid & self.last), self.shift_out.eq(shift),
            ]
            with m.If(self.valid):
                m.d.sync += acc.eq(total)
            with m.If(self.valid & self.last):
                m.d.sync += d.eq(total)
            with m.Elif(shift):
                m.d.sync += d.eq(self.d_in)
        return m
