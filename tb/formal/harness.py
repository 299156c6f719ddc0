"""Formal harness building blocks: free inputs, the stream rules, history registers.

Every input port of the design under proof becomes a free input of the harness (any value in
any cycle, unless an ``Assume`` restricts it); the harness adds the properties as
combinational ``Assert`` statements over the ports and registered history. Reset is held low
(the proof starts from the reset state, which is every register's ``init``).
"""

import contextlib

from amaranth import Elaboratable, Module, ResetSignal, Signal, Value
from amaranth.hdl import Assert, Assume
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Flow

__all__ = ["FormalHarness", "Mutant", "past", "stream_rule", "assume_stream", "assert_stream",
           "implies", "toggle", "dropping_valid"]


def implies(a, b):
    """``a -> b`` as a 1-bit value."""
    return ~a | b


def past(m, value, *, init=0, name=None):
    """``value`` one cycle ago (a register; ``init`` in the first cycle)."""
    value = Value.cast(value)
    reg = Signal(value.shape(), init=init, name=name)
    m.d.sync += reg.eq(value)
    return reg


def stream_rule(m, stream, name):
    """The ``amaranth.lib.stream`` rule for ``stream`` as a 1-bit value: a transfer offered
    and not taken in the previous cycle (``valid`` high, ``ready`` low) is offered again,
    with the same payload. Streams with ``always_valid`` or ``always_ready`` have no rule
    (the value is 1)."""
    if stream.signature.always_ready or stream.signature.always_valid:
        return Value.cast(1)
    valid = past(m, stream.valid, name=f"{name}_prev_valid")
    ready = past(m, stream.ready, name=f"{name}_prev_ready")
    payload = past(m, Value.cast(stream.payload), name=f"{name}_prev_payload")
    rule = Signal(name=f"{name}_stream_rule")
    m.d.comb += rule.eq(implies(valid & ~ready,
                                stream.valid & (Value.cast(stream.payload) == payload)))
    return rule


def assume_stream(m, stream, name):
    """The environment drives the input ``stream`` by the stream rules."""
    m.d.comb += Assume(stream_rule(m, stream, name))


def assert_stream(m, stream, name):
    """The design drives the output ``stream`` by the stream rules."""
    m.d.comb += Assert(stream_rule(m, stream, name))


class FormalHarness(Elaboratable):
    """Base harness: the design ``dut`` (a ``wiring.Component``) with free inputs.

    Each input member of ``dut`` (flattened) is driven from a free harness input of the same
    shape. Input streams (``In(stream.Signature)`` members) are constrained by the stream
    rules; output streams are checked against them. Subclasses add their properties in
    :meth:`properties` (``m`` is the harness module; ``self.dut`` the design).

    Parameters
    ----------
    dut : wiring.Component
    check_streams : bool
        Assert the stream rules on every output stream of ``dut``.
    assume_streams : bool
        Assume the stream rules on every input stream of ``dut``.
    """

    def __init__(self, dut, *, check_streams=True, assume_streams=True):
        self.dut = dut
        self.check_streams = check_streams
        self.assume_streams = assume_streams
        self.ports = []
        self._drive = []
        for path, member, value in dut.signature.flatten(dut):
            if member.flow is Flow.In:
                free = Signal(Value.cast(value).shape(),
                              name="in__" + "__".join(str(p) for p in path))
                self.ports.append(free)
                self._drive.append((value, free))

    def free(self, shape, name):
        """An extra free input of the harness (any value in any cycle)."""
        s = Signal(shape, name=name)
        self.ports.append(s)
        return s

    def streams(self, flow):
        """``(name, stream)`` of the dut's stream members with ``flow`` (Flow.In or Out),
        array members included (``name`` like ``o_0``)."""
        found = []

        def walk(name, member, value):
            if member.is_port:
                return
            if member.dimensions:
                for k in range(member.dimensions[0]):
                    sub = wiring.Member(member.flow, member.signature)
                    walk(f"{name}_{k}", sub, value[k])
                return
            if isinstance(member.signature, stream.Signature):
                found.append((name, value))
        for name, member in self.dut.signature.members.items():
            if member.is_signature and member.flow is flow:
                walk(name, member, getattr(self.dut, name))
        return found

    def properties(self, m):
        """Add properties to ``m`` (override)."""

    def elaboration_context(self):
        """A context manager active while the harness elaborates (override: e.g. to put
        checking subclasses of a design's cells in place)."""
        return contextlib.nullcontext()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        for value, free in self._drive:
            m.d.comb += value.eq(free)
        m.d.comb += Assume(~ResetSignal())
        if self.assume_streams:
            for name, s in self.streams(Flow.In):
                assume_stream(m, s, f"in_{name}")
        if self.check_streams:
            for name, s in self.streams(Flow.Out):
                assert_stream(m, s, f"out_{name}")
        self.properties(m)
        return m


class Mutant(wiring.Component):
    """``inner`` behind a wrapper that corrupts some of its ports: a seeded bug.

    Every member of ``inner`` passes through unchanged except those in ``overrides``:
    ``{path: fn}`` with ``path`` a flattened member path (``("o", "valid")``) and
    ``fn(m, value)`` returning what the port carries instead (``value`` is the inner
    design's output, or the outer input for an input member). Attributes the wrapper lacks
    (parameters) are read from ``inner``.
    """

    def __init__(self, inner, overrides):
        self.inner = inner
        self._overrides = dict(overrides)
        super().__init__(inner.signature)
        self._delegate = True

    def __getattr__(self, name):
        if name.startswith("_") or not self.__dict__.get("_delegate"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self.inner
        outer = list(self.signature.flatten(self))
        inner = list(self.inner.signature.flatten(self.inner))
        for (path, member, value), (_, _, inner_value) in zip(outer, inner):
            fn = self._overrides.get(tuple(path))
            if member.flow is Flow.In:
                m.d.comb += inner_value.eq(fn(m, value) if fn else value)
            else:
                m.d.comb += value.eq(fn(m, inner_value) if fn else inner_value)
        return m


def toggle(m, name="toggle"):
    """A register that flips every cycle (for seeded bugs)."""
    t = Signal(name=name)
    m.d.sync += t.eq(~t)
    return t


def dropping_valid(stream_path):
    """Overrides for :class:`Mutant`: the stream at ``stream_path`` (a tuple) shows its
    ``valid`` only every other cycle, whether or not the transfer happened (breaks the rule
    that ``valid`` stays high until ``ready``)."""
    state = {}

    def gate(m):
        if "t" not in state:
            state["t"] = toggle(m, "drop_valid_toggle")
        return state["t"]

    return {stream_path + ("valid",): lambda m, v: v & gate(m),
            stream_path + ("ready",): lambda m, v: v & gate(m)}
