"""Processing element of the output-stationary systolic array."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..registry import block

__all__ = ["SystolicPe"]


@block("systolic_pe", in_width="operand width in bits (2..16)",
       acc_width="accumulator width in bits (>= 2*in_width)")
class SystolicPe(wiring.Component):
    """Output-stationary multiply-accumulate cell that presents each fold's result for one cycle.

    In every cycle with ``en`` set (``en`` is the array's global stall: nothing changes while
    it is low):

    - ``a``, ``b`` and the flags ``valid``, ``first``, ``last`` are forwarded one cycle later
      on ``a_out``, ``b_out``, ``valid_out``, ``first_out``, ``last_out`` (registers), so
      operands advance one PE per cycle;
    - with ``valid`` set the accumulator ``acc`` takes ``a * b`` (``first`` set: a new fold
      starts) or ``acc + a * b``.

    ``last_out`` is high in the one (advance) cycle after a fold's last operands, when ``acc``
    holds the fold's result; ``result`` is ``acc`` in that cycle and 0 otherwise, so the
    results of a row of PEs, which finish one per cycle, can be OR-ed onto one bus
    (:class:`SystolicRow`). The next fold accumulates from the following cycle on: reading
    the result in the cycle it completes replaces a second (drain) register per PE.

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
    en : In(1, init=1)
        Clock enable (global stall when low).
    a_out, b_out : Out(signed(in_width))
        Operands to the right and to the bottom neighbour.
    valid_out, first_out, last_out : Out(1)
        Flags forwarded with the operands (``last_out``: ``valid & last`` registered).
    acc : Out(signed(acc_width))
        The accumulator.
    result : Out(signed(acc_width))
        ``acc`` while ``last_out`` is high, else 0.
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
            "en": In(1, init=1),
            "a_out": Out(signed(in_width)), "b_out": Out(signed(in_width)),
            "valid_out": Out(1), "first_out": Out(1), "last_out": Out(1),
            "acc": Out(signed(acc_width)), "result": Out(signed(acc_width)),
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
        m.d.comb += [self.a_out.eq(a_r), self.b_out.eq(b_r), self.acc.eq(acc),
                     self.result.eq(Mux(self.last_out, acc, 0))]
        product = Signal(signed(2 * self._in_width))
        total = Signal(signed(self._acc_width))
        m.d.comb += [
            product.eq(self.a * self.b),
            total.eq(Mux(self.first, 0, acc) + product),
        ]
        with m.If(self.en):
            m.d.sync += [
                a_r.eq(self.a), b_r.eq(self.b),
                self.valid_out.eq(self.valid), self.first_out.eq(self.first),
                self.last_out.eq(self.valid & self.last),
            ]
            with m.If(self.valid):
                m.d.sync += acc.eq(total)
        return m
