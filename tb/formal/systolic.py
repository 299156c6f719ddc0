"""Formal harness of :class:`hdl.systolic.SystolicArray` (a small array).

Properties, every cycle:

- the stream rules on ``o`` (assumed on ``i``);
- row bus: in every row at most one PE presents a result (``last_out``) per cycle, so the
  row's OR bus never mixes two results (checked inside each :class:`SystolicRow`);
- stall: in a cycle after ``en`` was low, every PE's registers (``a_out``, ``b_out``, the
  flags and ``acc``, all of its state) are unchanged (checked inside each
  :class:`SystolicPe`); at the array's ports, ``i.ready`` is low and ``o`` holds its
  vector while the output is blocked;
- fold order: the harness multiplies and accumulates the accepted input vectors itself
  (``acc_width`` bits, wrapping) and, per fold, expects ``L`` output vectors in the
  documented order (vector ``m`` is column ``m`` of ``C = A @ B`` with ``drain="cols"``,
  row ``m`` with ``"rows"``), ``last`` on the fold's final vector only.

The row and PE checks are added by elaborating the array with checking subclasses of
:class:`hdl.systolic.row.SystolicRow` and :class:`hdl.systolic.pe.SystolicPe` (the same
logic, plus ``Assert`` statements) in place of the originals.
"""

import contextlib
from unittest import mock

from amaranth import Cat, Mux, Signal, signed
from amaranth.hdl import Assert

import hdl.systolic.array as array_module
import hdl.systolic.row as row_module
from hdl.systolic import SystolicArray
from hdl.systolic.pe import SystolicPe
from hdl.systolic.row import SystolicRow

from .harness import FormalHarness, Mutant, past
from .shadow import ShadowQueue

__all__ = ["SystolicHarness", "SYSTOLIC_BUGS"]


class CheckedPe(SystolicPe):
    """:class:`SystolicPe` that asserts its stall contract: nothing changes while ``en`` is
    low (every register of the PE is one of its outputs)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        state = Cat(self.a_out, self.b_out, self.valid_out, self.first_out, self.last_out,
                    self.acc)
        stalled = past(m, ~self.en, name="stalled")
        m.d.comb += Assert(~stalled | (state == past(m, state, name="state_before")))
        return m


class CheckedRow(SystolicRow):
    """:class:`SystolicRow` that asserts that at most one PE drives the row's bus."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        flags = Cat(m.submodules[f"pe{q}"].last_out for q in range(self._length))
        m.d.comb += Assert((flags & (flags - 1)) == 0)
        return m


class _UnqualifiedLastPe(CheckedPe):
    """Seeded bug: ``last_out`` follows ``last`` without ``valid`` (results of idle
    cycles reach the bus)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.en):
            m.d.sync += self.last_out.eq(self.last)
        return m


class _StallLeakPe(CheckedPe):
    """Seeded bug: ``valid_out`` moves on while the array is stalled."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.sync += self.valid_out.eq(self.valid)
        return m


def _swapped_lanes(**params):
    """Seeded bug: elements 0 and 1 of each output vector swapped."""
    def swap(m, v):
        d = v.data
        return Cat(d[1], d[0], *[d[k] for k in range(2, len(d))], v.last)
    return Mutant(SystolicArray(**params), {("o", "payload"): swap})


SYSTOLIC_BUGS = {"unqualified_last": _UnqualifiedLastPe, "stall_leak": _StallLeakPe,
                 "swapped_lanes": _swapped_lanes}


class SystolicHarness(FormalHarness):
    """A small :class:`SystolicArray` with free operands and backpressure.

    Parameters
    ----------
    rows, cols, in_width, acc_width, drain
        As :class:`SystolicArray` (no output stage).
    bug : str or None
        A key of :data:`SYSTOLIC_BUGS`.
    """

    def __init__(self, *, rows=2, cols=2, in_width=2, acc_width=4, drain="auto", bug=None):
        params = dict(rows=rows, cols=cols, in_width=in_width, acc_width=acc_width,
                      drain=drain)
        self._pe = CheckedPe
        if bug in ("unqualified_last", "stall_leak"):
            self._pe = SYSTOLIC_BUGS[bug]
            dut = SystolicArray(**params)
        elif bug is not None:
            dut = SYSTOLIC_BUGS[bug](**params)
        else:
            dut = SystolicArray(**params)
        super().__init__(dut)

    def elaboration_context(self):
        stack = contextlib.ExitStack()
        stack.enter_context(mock.patch.object(array_module, "SystolicRow", CheckedRow))
        stack.enter_context(mock.patch.object(row_module, "SystolicPe", self._pe))
        return stack

    def properties(self, m):
        dut = self.dut
        rows, cols, aw = dut.rows, dut.cols, dut.acc_width
        P, L = dut.port_width, dut.drain_length
        i, o = dut.i, dut.o
        accept = i.valid & i.ready

        # Reference accumulators C[r][c] of the fold being fed.
        fresh = Signal(init=1)
        acc = [[Signal(signed(aw), name=f"c_{r}_{c}") for c in range(cols)] for r in range(rows)]
        nxt = [[Signal(signed(aw), name=f"c_next_{r}_{c}") for c in range(cols)]
               for r in range(rows)]
        for r in range(rows):
            for c in range(cols):
                prod = i.payload.a[r] * i.payload.b[c]
                m.d.comb += nxt[r][c].eq(Mux(fresh, 0, acc[r][c]) + prod)
        with m.If(accept):
            m.d.sync += fresh.eq(i.payload.last)
            for r in range(rows):
                for c in range(cols):
                    m.d.sync += acc[r][c].eq(nxt[r][c])

        # Output vector m of a fold: element p = C[p][m] ("cols") or C[m][p] ("rows").
        def element(p, k):
            return nxt[p][k] if dut.drain == "cols" else nxt[k][p]
        tile = Cat(element(p, k) for k in range(L) for p in range(P))
        tiles = ShadowQueue(m, len(tile), 3, "tiles")
        tiles.push(accept & i.payload.last, tile)
        index = Signal(range(L))
        sent = o.valid & o.ready
        with m.If(sent):
            m.d.sync += index.eq(Mux(index == L - 1, 0, index + 1))
        tiles.pop(sent & (index == L - 1))
        tiles.build()
        expected = Signal(aw * P)
        with m.Switch(index):
            for k in range(L):
                with m.Case(k):
                    m.d.comb += expected.eq(tiles.head[k * P * aw:(k + 1) * P * aw])
        m.d.comb += [
            Assert(~o.valid | tiles.nonempty),
            Assert(~o.valid | (o.payload.data.as_value() == expected)),
            Assert(~o.valid | (o.payload.last == (index == L - 1))),
            # Stall at the ports: nothing is accepted while the output is blocked.
            Assert(~(o.valid & ~o.ready) | ~i.ready),
        ]
