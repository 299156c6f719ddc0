"""One row of the systolic array: a chain of PEs, emitted as one shared Verilog module."""

from amaranth import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..cells import add_cell
from .pe import SystolicPe

__all__ = ["SystolicRow"]


class SystolicRow(wiring.Component):
    """``length`` PEs in a row: operands and flags flow right; results leave on one OR bus.

    Internal cell of :class:`hdl.systolic.SystolicArray` (the array instantiates one shared
    module per row, which instantiates one shared PE module per PE: the Verilog then stays
    small however large the array). See :class:`SystolicPe` for the per-PE contract.

    A fold's last operands reach PE ``q`` one cycle after PE ``q-1``, so the PEs present
    their results one per cycle, PE 0 first: ``result`` is the OR of the PEs' ``result``
    outputs (each 0 outside its one cycle), and ``read`` the OR of their ``last_out``. No PE
    result is ever held or shifted: the array de-skews the rows' buses.

    Parameters
    ----------
    length : int
        PEs in the row (>= 1).
    in_width, acc_width : int
        As :class:`SystolicPe`.

    Members
    -------
    a : In(signed(in_width))
        Operand entering the leftmost PE.
    valid, first, last : In(1)
        Flags entering the leftmost PE.
    b : In(data.ArrayLayout(signed(in_width), length))
        Operands from the row above (element ``q`` enters PE ``q``).
    en : In(1, init=1)
        Global clock enable.
    b_out : Out(data.ArrayLayout(signed(in_width), length))
        Operands for the row below.
    valid_down, first_down, last_down : Out(1)
        The leftmost PE's forwarded flags (the flags of the row below, one cycle later).
    result : Out(signed(acc_width))
        The row's result bus: PE ``q``'s fold result ``q`` cycles after PE 0's.
    read : Out(1)
        ``result`` carries a result this cycle.
    """

    def __init__(self, length, *, in_width=8, acc_width=32):
        self._length, self._in_width, self._acc_width = length, in_width, acc_width
        super().__init__({
            "a": In(signed(in_width)), "valid": In(1), "first": In(1), "last": In(1),
            "b": In(data.ArrayLayout(signed(in_width), length)), "en": In(1, init=1),
            "b_out": Out(data.ArrayLayout(signed(in_width), length)),
            "valid_down": Out(1), "first_down": Out(1), "last_down": Out(1),
            "result": Out(signed(acc_width)), "read": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n, w, aw = self._length, self._in_width, self._acc_width
        pes = [add_cell(m, f"pe{q}", SystolicPe, w, acc_width=aw) for q in range(n)]
        for q, pe in enumerate(pes):
            if q == 0:
                m.d.comb += [pe.a.eq(self.a), pe.valid.eq(self.valid), pe.first.eq(self.first),
                             pe.last.eq(self.last)]
            else:
                left = pes[q - 1]
                m.d.comb += [pe.a.eq(left.a_out), pe.valid.eq(left.valid_out),
                             pe.first.eq(left.first_out), pe.last.eq(left.last_out)]
            m.d.comb += [pe.b.eq(self.b[q]), self.b_out[q].eq(pe.b_out), pe.en.eq(self.en)]
        m.d.comb += [
            self.valid_down.eq(pes[0].valid_out), self.first_down.eq(pes[0].first_out),
            self.last_down.eq(pes[0].last_out),
            # At most one PE presents a result per cycle (the array spaces fold ends by at
            # least `length` cycles), so an OR tree is the whole read-out multiplexer.
            self.result.eq(_or_tree([pe.result.as_unsigned() for pe in pes])),
            self.read.eq(_or_tree([pe.last_out for pe in pes])),
        ]
        return m


def _or_tree(values):
    """Balanced OR of ``values`` (log2 depth)."""
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]
