"""Delay lines for the array's operand skew and result de-skew, built from shared cells."""

from amaranth import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..cells import add_cell

__all__ = ["DelayLine", "delayed"]


class DelayLine(wiring.Component):
    """``o`` is ``i`` delayed by ``depth`` enabled cycles: ``depth`` plain registers.

    Parameters
    ----------
    width : int
        Bits per word.
    depth : int
        Delay in cycles (>= 1).

    Members
    -------
    i : In(width)
        Word entering the line.
    en : In(1, init=1)
        Shift enable (the array's global stall when low).
    o : Out(width)
        Word leaving the line.
    """

    def __init__(self, width, depth):
        self._width, self._depth = width, depth
        super().__init__({"i": In(width), "en": In(1, init=1), "o": Out(width)})

    def elaborate(self, platform):
        m = Module()
        w, d = self._width, self._depth
        # One wide signal per line (not one per stage) keeps elaboration fast.
        line = Signal(w * d, reset_less=True)
        with m.If(self.en):
            m.d.sync += line.eq(Cat(line[w:], self.i) if d > 1 else self.i)
        m.d.comb += self.o.eq(line[:w])
        return m


def delayed(m, name, value, depth, en):
    """``value`` delayed by ``depth`` enabled cycles (``en``), signedness kept.

    The line is a chain of shared :class:`DelayLine` cells of power-of-two depths (the binary
    digits of ``depth``), so a triangle of lines of every depth 1 .. n-1 (a skew) is a few
    hundred instances of at most ``log2(n)`` Verilog modules per width instead of one flat
    register file: Yosys and Verilator handle each module once.
    """
    value = Value.cast(value)
    if depth == 0:
        return value
    width = value.shape().width
    word = value.as_unsigned()
    bit = 0
    while depth >> bit:
        if depth >> bit & 1:
            line = add_cell(m, f"{name}_d{1 << bit}", DelayLine, width, 1 << bit,
                            module_name=f"delay_line_w{width}_d{1 << bit}")
            m.d.comb += [line.i.eq(word), line.en.eq(en)]
            word = line.o
        bit += 1
    return word.as_signed() if value.shape().signed else word
