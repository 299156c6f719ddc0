"""One row of the systolic array: a chain of PEs, emitted as one shared Verilog module."""

from amaranth import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..cells import shared_cell
from .pe import SystolicPe

__all__ = ["SystolicRow"]


class SystolicRow(wiring.Component):
    """``length`` PEs in a row: operands and flags flow right, the drain chain too.

    Internal cell of :class:`hdl.systolic.SystolicArray` (the array instantiates one shared
    module per row, which instantiates one shared PE module per PE: the Verilog then stays
    small however large the array). See :class:`SystolicPe` for the per-PE contract.

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
        The rightmost PE's result register (the row's drain output).
    read : Out(1)
        ``result`` holds a result to read this cycle (the row's drain window).
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
        pes = [SystolicPe(w, acc_width=aw) for _ in range(n)]
        for q, pe in enumerate(pes):
            m.submodules[f"pe{q}"] = shared_cell(pe, key=(w, aw))
            if q == 0:
                m.d.comb += [pe.a.eq(self.a), pe.valid.eq(self.valid), pe.first.eq(self.first),
                             pe.last.eq(self.last), pe.shift_in.eq(0), pe.d_in.eq(0),
                             pe.start.eq(0)]
            else:
                left = pes[q - 1]
                m.d.comb += [pe.a.eq(left.a_out), pe.valid.eq(left.valid_out),
                             pe.first.eq(left.first_out), pe.last.eq(left.last_out),
                             pe.shift_in.eq(left.shift_out), pe.d_in.eq(left.d_out),
                             # The drain starts when the fold's last flag leaves the row.
                             pe.start.eq(pes[-1].last_out)]
            m.d.comb += [pe.b.eq(self.b[q]), self.b_out[q].eq(pe.b_out), pe.en.eq(self.en)]
        m.d.comb += [
            self.valid_down.eq(pes[0].valid_out), self.first_down.eq(pes[0].first_out),
            self.last_down.eq(pes[0].last_out),
            self.result.eq(pes[-1].d_out),
            self.read.eq(pes[-1].last_out | pes[-1].shift_out),
        ]
        return m
