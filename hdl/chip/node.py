"""The shell of one chip node: network interface, receive demux, command fence, loopback and
(at node 0) the host port, around one core (:mod:`hdl.chip`; the interface is the chip's core
interface: ``cmd``, ``wr``, ``o``, ``busy``, ``error``)."""

from amaranth import Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.network_interface import NiConfig

from ..cells import add_cell
from ..lib import Queue, StreamMerge
from ..noc.network_interface import (NetworkInterface, config_layout, error_layout,
                                     receive_layout, send_layout)
from ..noc.router import flit_layout

__all__ = ["CoreNode", "ELEM_WIDTH", "WAIT_BITS", "HOST_FIRST", "command_port",
           "vector_layout", "write_layout", "command_entry_layout", "addr_bits"]

#: Element width of every vector on the chip's NoC and of every core memory word.
ELEM_WIDTH = 16
#: Width of a command vector's ``wait`` field (lane 0): the fence's write count.
WAIT_BITS = 16
#: First tag offset of node 0's host window (``HOST_FIRST .. command_port - 1``).
HOST_FIRST = 0x8000


def command_port(ni):
    """The tag offset of a core's command port: ``2**offset_bits - 1``."""
    return (1 << ni.offset_bits) - 1


def vector_layout(ni):
    """A memory word / NoC vector: ``ArrayLayout(signed(16), length)``."""
    return data.ArrayLayout(signed(ELEM_WIDTH), ni.length)


def addr_bits(mem_words):
    """Width of a core memory address: ``ceil(log2(mem_words))`` (at least 1)."""
    return max(1, (mem_words - 1).bit_length())


def write_layout(ni, mem_words):
    """A core's ``wr`` payload: ``{addr, data}``."""
    return data.StructLayout({"addr": unsigned(addr_bits(mem_words)),
                              "data": vector_layout(ni)})


def command_entry_layout(command_bits):
    """An entry of the shell's command queue: ``{wait, command}``."""
    return data.StructLayout({"wait": WAIT_BITS, "command": command_bits})


def _check_int(name, value, lo, hi=None):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or \
            (hi is not None and value > hi):
        rng = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
        raise TypeError(f"{name} must be an integer {rng}, not {value!r}")
    return value


class CoreNode(wiring.Component):
    """One node of the chip: a core behind a :class:`hdl.noc.NetworkInterface`.

    The core is ``core(ni=ni, mem_words=mem_words, **core_args)`` (a shared cell: equal cores
    are one Verilog module) with the chip's core interface (``cmd``, ``wr``, ``o``, ``busy``,
    ``error``); the node connects it to the network:

    - Expectation. One cycle after reset the shell writes the interface's ``cfg`` once:
      tags of layer ``layer``, stage 0 and every offset ``0 .. 2**offset_bits - 1``.
      Anything else is dropped by the interface and counted (``errors``, ``last_error``).
    - Receive demux. A received vector (from the network, or looped back, see below) with
      offset ``command_port(ni)`` (0xFFFF) is a command: lane 0 is ``wait``, the vector's
      bits from bit 16 up, cut to the width of the core's ``cmd`` payload, are the command.
      With ``host``, offsets ``HOST_FIRST .. command_port - 1`` (0x8000-0xFFFE) go to
      ``host_o`` unchanged (data and tag). Every other vector is a memory write
      ``wr {addr = offset, data}``; an offset at or above ``mem_words`` is dropped, sets the
      sticky ``addr_error`` and still counts as a write for the fence.
    - Fence. Commands wait in a queue of ``cmd_depth`` entries; the head goes to ``cmd``
      only once the core has received at least ``wait`` writes since reset (a 16-bit
      counter; ``(writes - wait) mod 2**16 < 2**15``). Writes keep flowing into ``wr``
      while commands wait; only a command vector that finds the queue full stalls the
      demux (and so the writes behind it). Rule for the host: at most ``cmd_depth``
      commands outstanding (received, not yet taken by the core) per node.
    - Send. The core's ``o`` (and, with ``host``, ``host_i``, merged vector by vector, round
      robin) goes to the interface's packetizer, except vectors whose ``dest`` is this node
      (``node_id``), which loop back through a 2-entry queue into the receive demux,
      arbitrated round robin with the network's vectors. Each vector is one packet, so the
      merge is at packet granularity.

    Latency: a received vector reaches ``wr`` in the cycle after the interface delivers it
    (the interface: 1 cycle after the tail flit); a looped-back vector 1 cycle after it
    leaves ``o``. One vector per cycle through the demux.

    Parameters
    ----------
    ni : golden.network_interface.NiConfig
        The chip's interface configuration (``elem_width`` must be 16).
    core : type
        The core class (a ``wiring.Component`` subclass taking ``ni=`` and ``mem_words=``).
    core_args : dict or tuple of (str, value) pairs
        The core's other constructor arguments.
    mem_words : int
        Words of the core's memory, 1 to 32768 (``HOST_FIRST``).
    host : bool
        This node has the host port (``host_i``, ``host_o``).
    layer : int
        The layer this node expects in tags.
    cmd_depth : int
        Commands queued behind the fence, 1 to 1024. A command that finds the queue full
        holds the receive demux (and the writes behind it) until the head command leaves.

    Members
    -------
    inject : Out(stream.Signature(flit_layout(...)))
        To the network's ``inject[n]``.
    eject : In(stream.Signature(flit_layout(...)))
        From the network's ``eject[n]``.
    node_id : In(dest_bits)
        This node's number (a constant at the top, so that all nodes of a class share a
        module).
    host_i : In(stream.Signature(send_layout(ni)))
        With ``host`` only: vectors from the host (``data``, ``dest``, ``tag``).
    host_o : Out(stream.Signature(receive_layout(ni)))
        With ``host`` only: vectors for the host (``data``, ``tag``).
    busy : Out(1)
        The core is busy, or a command waits in the shell.
    error : Out(1)
        Sticky: the interface dropped a packet, a write was out of range, or the core
        refused a command.
    errors : Out(16)
        The interface's dropped-packet count.
    last_error : Out(error_layout(ni))
        The interface's last error (kind and tag).
    addr_error : Out(1)
        Sticky: a write to an address at or above ``mem_words`` was dropped.
    core_error : Out(1)
        The core's ``error``.
    """

    def __init__(self, ni, *, core, core_args=(), mem_words, host=False, layer=0, cmd_depth=2):
        if not isinstance(ni, NiConfig):
            raise TypeError(f"Ni must be a golden.network_interface.NiConfig, not {ni!r}")
        if ni.elem_width != ELEM_WIDTH:
            raise ValueError(f"Ni elem_width must be {ELEM_WIDTH}, not {ni.elem_width}")
        if not (isinstance(core, type) and issubclass(core, wiring.Component)):
            raise TypeError(f"Core must be a wiring.Component subclass, not {core!r}")
        if isinstance(core_args, dict):
            core_args = tuple(sorted(core_args.items()))
        if not isinstance(core_args, tuple) or not all(
                isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in core_args):
            raise TypeError(f"Core args must be a dict or a tuple of (name, value) pairs, "
                            f"not {core_args!r}")
        _check_int("Mem words", mem_words, 1, HOST_FIRST)
        if not isinstance(host, bool):
            raise TypeError(f"Host must be a bool, not {host!r}")
        _check_int("Layer", layer, 0, (1 << ni.layer_bits) - 1)
        _check_int("Cmd depth", cmd_depth, 1, 1024)
        self._ni, self._core, self._core_args = ni, core, core_args
        self._mem_words, self._host, self._layer, self._cmd_depth = \
            mem_words, host, layer, cmd_depth
        flit = flit_layout(dest_bits=ni.dest_bits, payload_width=ni.payload_width)
        members = {
            "inject": Out(stream.Signature(flit)),
            "eject": In(stream.Signature(flit)),
            "node_id": In(ni.dest_bits),
            "busy": Out(1),
            "error": Out(1),
            "errors": Out(16),
            "last_error": Out(error_layout(ni)),
            "addr_error": Out(1),
            "core_error": Out(1),
        }
        if host:
            members["host_i"] = In(stream.Signature(send_layout(ni)))
            members["host_o"] = Out(stream.Signature(receive_layout(ni)))
        super().__init__(members)

    ni = property(lambda self: self._ni)
    core = property(lambda self: self._core)
    core_args = property(lambda self: self._core_args)
    mem_words = property(lambda self: self._mem_words)
    host = property(lambda self: self._host)
    layer = property(lambda self: self._layer)
    cmd_depth = property(lambda self: self._cmd_depth)

    def elaborate(self, platform):
        m = Module()
        c = self._ni
        L = c.length
        m.submodules.ni = ni = NetworkInterface(
            c.payload_width, elem_width=c.elem_width, length=L, nodes=c.nodes,
            layer_bits=c.layer_bits, stage_bits=c.stage_bits, offset_bits=c.offset_bits)
        core = add_cell(m, "core", self._core, ni=c, mem_words=self._mem_words,
                        **dict(self._core_args))
        if "node_id" in core.signature.members:
            m.d.comb += core.node_id.eq(self.node_id)
        wiring.connect(m, ni.inject, wiring.flipped(self.inject))
        wiring.connect(m, wiring.flipped(self.eject), ni.eject)

        # Expectation: one cfg write after reset.
        configured = Signal()
        m.d.comb += [
            ni.cfg.valid.eq(~configured),
            ni.cfg.payload.eq(config_layout(c).const({
                "set": 1, "clear": 0, "layer": self._layer, "stage": 0, "first": 0,
                "last": command_port(c)})),
        ]
        with m.If(ni.cfg.valid & ni.cfg.ready):
            m.d.sync += configured.eq(1)

        # Send side: core.o (+ host_i) -> loopback or packetizer.
        if self._host:
            m.submodules.send_merge = smerge = StreamMerge(send_layout(c), 2)
            wiring.connect(m, core.o, smerge.i[0])
            wiring.connect(m, wiring.flipped(self.host_i), smerge.i[1])
            src = smerge.o
        else:
            src = core.o
        m.submodules.loopback = loop = Queue(receive_layout(c), depth=2)
        local = Signal()
        m.d.comb += [
            local.eq(src.payload.dest == self.node_id),
            ni.i.payload.eq(src.payload),
            ni.i.valid.eq(src.valid & ~local),
            loop.i.payload.data.eq(src.payload.data),
            loop.i.payload.tag.eq(src.payload.tag),
            loop.i.valid.eq(src.valid & local),
            src.ready.eq(local & loop.i.ready | ~local & ni.i.ready),
        ]

        # Receive side: network and loopback -> demux.
        m.submodules.recv_merge = rmerge = StreamMerge(receive_layout(c), 2)
        wiring.connect(m, ni.o, rmerge.i[0])
        wiring.connect(m, loop.o, rmerge.i[1])
        rx = rmerge.o
        offset = rx.payload.tag.offset
        is_cmd, is_host, bad = Signal(), Signal(), Signal()
        m.d.comb += is_cmd.eq(offset == command_port(c))
        if self._host:
            m.d.comb += is_host.eq(~is_cmd & (offset >= HOST_FIRST))
        m.d.comb += bad.eq(~is_cmd & ~is_host & (offset >= self._mem_words))
        is_wr = ~is_cmd & ~is_host & ~bad

        cmd_shape = core.cmd.payload.shape()
        cmd_bits = Shape.cast(cmd_shape).width
        if cmd_bits > L * ELEM_WIDTH - WAIT_BITS:
            raise ValueError(f"The core's command ({cmd_bits} bits) must fit a command vector "
                             f"after its wait field ({L * ELEM_WIDTH - WAIT_BITS} bits)")
        entry = command_entry_layout(cmd_bits)
        m.submodules.commands = cq = Queue(entry, depth=self._cmd_depth)
        bits = rx.payload.data.as_value()
        m.d.comb += [
            cq.i.payload.wait.eq(bits[:WAIT_BITS]),
            cq.i.payload.command.eq(bits[WAIT_BITS:WAIT_BITS + cmd_bits]),
            cq.i.valid.eq(rx.valid & is_cmd),
            core.wr.payload.addr.eq(offset),
            core.wr.payload.data.eq(rx.payload.data),
            core.wr.valid.eq(rx.valid & is_wr),
        ]
        ready = is_cmd & cq.i.ready | is_wr & core.wr.ready | bad
        if self._host:
            m.d.comb += [
                self.host_o.payload.eq(rx.payload),
                self.host_o.valid.eq(rx.valid & is_host),
            ]
            ready = ready | is_host & self.host_o.ready
        m.d.comb += rx.ready.eq(ready)

        # Fence: writes since reset against the head command's wait.
        writes = Signal(WAIT_BITS)
        counted = (core.wr.valid & core.wr.ready) | (rx.valid & bad)
        with m.If(counted):
            m.d.sync += writes.eq(writes + 1)
        ahead = Signal(WAIT_BITS)
        passed = Signal()
        m.d.comb += [
            ahead.eq(writes - cq.o.payload.wait),
            passed.eq(~ahead[WAIT_BITS - 1]),
            core.cmd.payload.eq(cq.o.payload.command),
            core.cmd.valid.eq(cq.o.valid & passed),
            cq.o.ready.eq(core.cmd.ready & passed),
        ]

        # Status.
        addr_error = Signal()
        with m.If(rx.valid & bad):
            m.d.sync += addr_error.eq(1)
        m.d.comb += [
            self.addr_error.eq(addr_error),
            self.core_error.eq(core.error),
            self.errors.eq(ni.errors),
            self.last_error.eq(ni.last_error),
            self.error.eq(ni.error | addr_error | core.error),
            self.busy.eq(core.busy | cq.o.valid),
        ]
        return m
