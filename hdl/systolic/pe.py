"""Processing element of the output-stationary systolic array."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..registry import block

__all__ = ["SystolicPe"]


@block("systolic_pe", in_width="operand width in bits (2..16)",
       acc_width="accumulator width in bits (>= 2*in_width)")
class SystolicPe(wiring.Component):
    """Output-stationary multiply-accumulate cell.

    Each cycle with ``valid`` set, the PE adds ``a * b`` to its accumulator (or loads the
    product when ``first`` is set, starting a new fold), and forwards ``a`` right and ``b``
    down one cycle later (``a_out``/``b_out``/``valid_out``/``first_out`` are registers), so
    operands advance one PE per cycle. ``acc`` is the accumulator, updated one cycle after
    the operands arrive. The accumulator wraps modulo ``2**acc_width`` (the array derives a
    width that cannot overflow).

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
    valid, first : In(1)
        The operands are valid; this is the first pair of a fold.
    a_out, b_out : Out(signed(in_width))
        Operands to the right and to the bottom neighbour.
    valid_out, first_out : Out(1)
        Flags forwarded with the operands.
    acc : Out(signed(acc_width))
        The accumulator.
    """

    def __init__(self, in_width=8, *, acc_width=32):
        if not isinstance(in_width, int) or not 2 <= in_width <= 16:
            raise TypeError(f"in_width must be an integer from 2 to 16, not {in_width!r}")
        if not isinstance(acc_width, int) or acc_width < 2 * in_width:
            raise ValueError(f"acc_width must be an integer of at least 2*in_width = "
                             f"{2 * in_width}, not {acc_width!r}")
        self._in_width = in_width
        self._acc_width = acc_width
        super().__init__({
            "a": In(signed(in_width)), "b": In(signed(in_width)),
            "valid": In(1), "first": In(1),
            "a_out": Out(signed(in_width)), "b_out": Out(signed(in_width)),
            "valid_out": Out(1), "first_out": Out(1),
            "acc": Out(signed(acc_width)),
        })

    @property
    def in_width(self):
        return self._in_width

    @property
    def acc_width(self):
        return self._acc_width

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [
            self.a_out.eq(self.a), self.b_out.eq(self.b),
            self.valid_out.eq(self.valid), self.first_out.eq(self.first),
        ]
        product = Signal(signed(2 * self._in_width))
        m.d.comb += product.eq(self.a * self.b)
        with m.If(self.valid):
            m.d.sync += self.acc.eq(Mux(self.first, product, self.acc + product))
        return m
