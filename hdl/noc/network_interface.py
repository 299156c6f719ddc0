"""The network interface between a block's vector streams and :class:`NocNetwork` 's flits.

Packet format, the meaning of an expected tag and the error rules are specified once, in
:mod:`golden.network_interface` (the golden model, :func:`~golden.network_interface.packetize`
and :func:`~golden.network_interface.depacketize`); this module implements them.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.network_interface import MAX_COUNT, ErrorKind as _GoldenErrorKind, NiConfig

from ..registry import block
from .router import dest_bits_for, flit_layout

__all__ = ["NetworkInterface", "NiPacketizer", "NiDepacketizer", "NiErrorKind", "NiConfig",
           "tag_layout", "config_layout", "error_layout", "send_layout", "receive_layout"]


class NiErrorKind(enum.Enum, shape=2):
    """Why a packet was dropped (:class:`golden.network_interface.ErrorKind`)."""
    NONE = int(_GoldenErrorKind.NONE)
    TAG = int(_GoldenErrorKind.TAG)
    LENGTH = int(_GoldenErrorKind.LENGTH)
    ORPHAN = int(_GoldenErrorKind.ORPHAN)


def tag_layout(cfg):
    """The tag: ``layer``, ``stage``, ``offset`` (first field at the LSB, as in the header)."""
    return data.StructLayout({"layer": cfg.layer_bits, "stage": cfg.stage_bits,
                              "offset": cfg.offset_bits})


def config_layout(cfg):
    """A configuration write: ``set`` loads the expectation (``layer``, ``stage``, offsets
    ``first..last`` inclusive), ``clear`` clears the error flag, count and word."""
    return data.StructLayout({"set": 1, "clear": 1, "layer": cfg.layer_bits,
                              "stage": cfg.stage_bits, "first": cfg.offset_bits,
                              "last": cfg.offset_bits})


def error_layout(cfg):
    """The last error: its ``kind`` (:class:`NiErrorKind`) and the ``tag`` it concerns."""
    return data.StructLayout({"kind": NiErrorKind, "tag": tag_layout(cfg)})


def _vector_layout(cfg):
    return data.ArrayLayout(cfg.elem_width, cfg.length)


def send_layout(cfg):
    """A vector to send: ``data`` (``ArrayLayout(elem_width, length)``), ``dest``, ``tag``."""
    return data.StructLayout({"data": _vector_layout(cfg), "dest": cfg.dest_bits,
                              "tag": tag_layout(cfg)})


def receive_layout(cfg):
    """A received vector: ``data`` and ``tag``."""
    return data.StructLayout({"data": _vector_layout(cfg), "tag": tag_layout(cfg)})


def _flit(cfg):
    assert dest_bits_for(cfg.nodes) == cfg.dest_bits
    return flit_layout(dest_bits=cfg.dest_bits, payload_width=cfg.payload_width)


def _as_config(cfg):
    if not isinstance(cfg, NiConfig):
        raise TypeError(f"Config must be a golden.network_interface.NiConfig, not {cfg!r}")
    return cfg


class NiPacketizer(wiring.Component):
    """Turns vectors into packets: a header flit, then ``B`` body flits, one flit per cycle.

    A vector accepted on ``i`` at a clock edge has its header flit on ``o`` from the next
    cycle (1 cycle of latency); body flit ``j`` follows the transfer of flit ``j - 1``. ``i``
    is ready while no packet is being sent, or in the cycle the tail flit is transferred, so
    packets go back to back: a vector every ``1 + B`` cycles without backpressure. ``o.ready``
    low stalls the packet; ``o.valid`` never falls inside a packet.

    Parameters
    ----------
    cfg : golden.network_interface.NiConfig

    Members
    -------
    i : In(stream.Signature(StructLayout({"data", "dest", "tag"})))
        Vectors with their destination node and tag.
    o : Out(stream.Signature(flit_layout(...)))
        Flits (format: :mod:`golden.network_interface`).
    """

    def __init__(self, cfg):
        self._cfg = cfg = _as_config(cfg)
        super().__init__({
            "i": In(stream.Signature(send_layout(cfg))),
            "o": Out(stream.Signature(_flit(cfg))),
        })

    config = property(lambda self: self._cfg)

    def elaborate(self, platform):
        m = Module()
        c = self._cfg
        P, B = c.payload_width, c.body_flits
        busy = Signal()
        count = Signal(range(B + 1))          # next flit: 0 header, 1..B body
        dest = Signal(c.dest_bits)
        tag = Signal(c.tag_bits)
        shreg = Signal(B * P)                 # body bits not yet sent, next chunk at the LSB

        last = Signal()
        m.d.comb += [
            last.eq(count == B),
            self.o.valid.eq(busy),
            self.o.payload.head.eq(count == 0),
            self.o.payload.tail.eq(last),
            self.o.payload.dest.eq(dest),
            self.o.payload.payload.eq(Mux(count == 0, tag, shreg[:P])),
            self.i.ready.eq(~busy | (last & self.o.ready)),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += count.eq(count + 1)
            with m.If(count != 0):
                m.d.sync += shreg.eq(shreg >> P)
            with m.If(last):
                m.d.sync += busy.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                busy.eq(1),
                count.eq(0),
                dest.eq(self.i.payload.dest),
                tag.eq(self.i.payload.tag),
                shreg.eq(self.i.payload.data.as_value()),
            ]
        return m


class NiDepacketizer(wiring.Component):
    """Reassembles vectors from packets; drops unexpected and malformed packets whole.

    Takes one flit per cycle on ``i``. The vector of a packet whose tail flit is accepted at
    a clock edge is on ``o`` from the next cycle (1 cycle of latency). ``i`` is always ready
    except for the flit that would complete a vector while ``o`` holds one that is not taken
    in that cycle; dropped packets never wait. Which packets are delivered and which errors
    are recorded: :func:`golden.network_interface.depacketize`.

    Expectation: a ``cfg`` write with ``set`` takes effect for heads accepted from the next
    cycle; after reset nothing is expected. ``cfg`` is always ready.

    Parameters
    ----------
    cfg : golden.network_interface.NiConfig

    Members
    -------
    i : In(stream.Signature(flit_layout(...)))
        Flits from the network's ejection port.
    o : Out(stream.Signature(StructLayout({"data", "tag"})))
        Delivered vectors with their tags.
    cfg : In(stream.Signature(config_layout(...)))
        Configuration writes.
    error : Out(1)
        Sticky: a packet was dropped since reset or the last ``clear``.
    errors : Out(16)
        Packets dropped (saturating at 65535).
    last_error : Out(error_layout(...))
        The kind and tag of the last dropped packet (``NONE`` if none).
    """

    def __init__(self, cfg):
        self._cfg = cfg = _as_config(cfg)
        super().__init__({
            "i": In(stream.Signature(_flit(cfg))),
            "o": Out(stream.Signature(receive_layout(cfg))),
            "cfg": In(stream.Signature(config_layout(cfg))),
            "error": Out(1),
            "errors": Out(16),
            "last_error": Out(error_layout(cfg)),
        })

    config = property(lambda self: self._cfg)

    def elaborate(self, platform):
        m = Module()
        c = self._cfg
        P, B = c.payload_width, c.body_flits

        # Expectation (empty after reset: first = 1 > last = 0).
        exp = Signal(config_layout(c), init={"first": 1})
        m.d.comb += self.cfg.ready.eq(1)
        with m.If(self.cfg.valid):
            with m.If(self.cfg.payload.set):
                m.d.sync += exp.eq(self.cfg.payload)

        # Reassembly.
        IDLE, KEEP, DROP = 0, 1, 2
        mode = Signal(range(3))
        count = Signal(range(max(B, 2)))      # body flits received (KEEP)
        tag = Signal(tag_layout(c))           # the packet's tag (KEEP)
        shreg = Signal(B * P)                 # body flits, the newest at the top
        out_valid = Signal()
        out = Signal(self.o.payload.shape())

        flit = self.i.payload
        ftag = Signal(tag_layout(c))
        m.d.comb += ftag.eq(flit.payload[:c.tag_bits])
        expected = Signal()
        m.d.comb += expected.eq((ftag.layer == exp.layer) & (ftag.stage == exp.stage) &
                                (ftag.offset >= exp.first) & (ftag.offset <= exp.last))
        completing = Signal()                 # the next flit in KEEP is body flit B
        m.d.comb += completing.eq((mode == KEEP) & (count == B - 1))
        m.d.comb += [
            self.i.ready.eq(~completing | ~out_valid | self.o.ready),
            self.o.valid.eq(out_valid),
            self.o.payload.eq(out),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += out_valid.eq(0)

        fail = Signal()
        fail_kind = Signal(NiErrorKind)
        fail_tag = Signal(tag_layout(c))
        assembled = Signal(B * P)
        m.d.comb += assembled.eq(Cat(shreg[P:], flit.payload))
        take = self.i.valid & self.i.ready
        with m.If(take):
            with m.Switch(mode):
                with m.Case(IDLE):
                    with m.If(flit.head):
                        with m.If(~expected):
                            m.d.comb += [fail.eq(1), fail_kind.eq(NiErrorKind.TAG),
                                         fail_tag.eq(ftag)]
                        with m.Elif(flit.tail):
                            m.d.comb += [fail.eq(1), fail_kind.eq(NiErrorKind.LENGTH),
                                         fail_tag.eq(ftag)]
                        with m.Else():
                            m.d.sync += [mode.eq(KEEP), count.eq(0), tag.eq(ftag)]
                    with m.Else():
                        m.d.comb += [fail.eq(1), fail_kind.eq(NiErrorKind.ORPHAN)]
                with m.Case(KEEP):
                    with m.If(flit.head | (flit.tail != completing)):
                        m.d.comb += [fail.eq(1), fail_kind.eq(NiErrorKind.LENGTH),
                                     fail_tag.eq(tag)]
                    with m.Else():
                        m.d.sync += [shreg.eq(assembled), count.eq(count + 1)]
                        with m.If(completing):
                            m.d.sync += [
                                mode.eq(IDLE),
                                out_valid.eq(1),
                                out.data.eq(assembled[:c.vector_bits]),
                                out.tag.eq(tag),
                            ]
                with m.Case(DROP):
                    with m.If(flit.tail):
                        m.d.sync += mode.eq(IDLE)
            with m.If(fail):
                m.d.sync += mode.eq(Mux(flit.tail, IDLE, DROP))

        # Errors.
        error = Signal()
        errors = Signal(16)
        last_error = Signal(error_layout(c))
        m.d.comb += [self.error.eq(error), self.errors.eq(errors),
                     self.last_error.eq(last_error)]
        with m.If(fail):
            m.d.sync += [error.eq(1), last_error.kind.eq(fail_kind),
                         last_error.tag.eq(fail_tag)]
            with m.If(errors != MAX_COUNT):
                m.d.sync += errors.eq(errors + 1)
        with m.If(self.cfg.valid & self.cfg.payload.clear):
            m.d.sync += [error.eq(0), errors.eq(0), last_error.eq(0)]
        return m


@block("network_interface", payload_width="flit payload width in bits (the network's, 1-1024)",
       elem_width="vector element width in bits (1-1024)",
       length="elements per vector (1-4096)",
       nodes="nodes of the network (sets the dest field width; 1-4096)",
       layer_bits="tag layer field width (1-16)", stage_bits="tag stage field width (1-16)",
       offset_bits="tag offset field width (1-32); the tag must fit one flit payload")
class NetworkInterface(wiring.Component):
    """A node's network interface: vectors to flit packets and back, a flit per cycle each way.

    Vectors from ``i`` leave as packets on ``inject``; packets from ``eject`` come back as
    vectors on ``o``.

    Contract (both directions independent; full backpressure end to end):

    - Send (:class:`NiPacketizer`): a vector ``{data, dest, tag}`` accepted on ``i`` at a
      clock edge puts its header flit on ``inject`` the next cycle (1 cycle of latency),
      then its ``B = ceil(length * elem_width / payload_width)`` body flits, the last with
      ``tail``: ``1 + B`` flits per vector, one per cycle, and the next vector is accepted
      in the cycle the tail goes, so the throughput is one vector per ``1 + B`` cycles.
      ``inject.ready`` low stalls the packet (``inject.valid`` stays high); ``i.ready`` is
      low while a packet is in progress and its tail has not gone.
    - Receive (:class:`NiDepacketizer`): flits from ``eject`` at one per cycle; the vector
      ``{data, tag}`` of a packet appears on ``o`` the cycle after its tail flit was taken
      (1 cycle of latency). ``eject.ready`` falls only for a completing flit while ``o``
      holds an untaken vector. A packet whose tag is not expected, or that is malformed, is
      dropped whole and never blocks later packets; ``error`` (sticky), ``errors`` (count)
      and ``last_error`` (kind and tag) record it.
    - Expectation: a ``cfg`` write ``{set: 1, layer, stage, first, last}`` makes the node
      accept tags with that layer and stage and an offset in ``first..last`` (inclusive),
      from the next cycle; ``clear: 1`` clears ``error``, ``errors`` and ``last_error``.
      After reset nothing is expected. ``cfg`` is always ready.

    Formats (the exact flits, and which packets are dropped with which error):
    :mod:`golden.network_interface`. Header payload: the tag, ``layer`` at the LSB, then
    ``stage``, then ``offset``; body flits: the vector's elements packed LSB first (element
    0 at bit 0), cut into ``payload_width``-bit chunks, the last zero-padded.

    Parameters
    ----------
    payload_width : int
        Flit payload width, 1 to 1024 bits (the network's).
    elem_width : int
        Element width, 1 to 1024 bits.
    length : int
        Elements per vector, 1 to 4096.
    nodes : int
        Network nodes, 1 to 4096 (the ``dest`` field width, as the network's).
    layer_bits, stage_bits : int
        Tag field widths, 1 to 16.
    offset_bits : int
        Tag offset width, 1 to 32. ``layer_bits + stage_bits + offset_bits`` must not exceed
        ``payload_width`` (``ValueError``).

    Members
    -------
    i : In(stream.Signature(StructLayout({"data", "dest", "tag"})))
        Vectors to send: ``data`` an ``ArrayLayout(elem_width, length)``, ``dest`` the node,
        ``tag`` a :func:`tag_layout`.
    inject : Out(stream.Signature(flit_layout(...)))
        To the network's ``inject[n]``.
    eject : In(stream.Signature(flit_layout(...)))
        From the network's ``eject[n]``.
    o : Out(stream.Signature(StructLayout({"data", "tag"})))
        Received vectors.
    cfg : In(stream.Signature(config_layout(...)))
        Expectation and error clearing.
    error : Out(1)
        Sticky error flag.
    errors : Out(16)
        Dropped packets since reset or ``clear`` (saturating).
    last_error : Out(error_layout(...))
        Kind (:class:`NiErrorKind`) and tag of the last dropped packet.
    """

    def __init__(self, payload_width=32, *, elem_width=8, length=32, nodes=64, layer_bits=6,
                 stage_bits=4, offset_bits=16):
        self._cfg = cfg = NiConfig(payload_width=payload_width, elem_width=elem_width,
                                   length=length, nodes=nodes, layer_bits=layer_bits,
                                   stage_bits=stage_bits, offset_bits=offset_bits)
        super().__init__({
            "i": In(stream.Signature(send_layout(cfg))),
            "inject": Out(stream.Signature(_flit(cfg))),
            "eject": In(stream.Signature(_flit(cfg))),
            "o": Out(stream.Signature(receive_layout(cfg))),
            "cfg": In(stream.Signature(config_layout(cfg))),
            "error": Out(1),
            "errors": Out(16),
            "last_error": Out(error_layout(cfg)),
        })

    config = property(lambda self: self._cfg)
    payload_width = property(lambda self: self._cfg.payload_width)
    elem_width = property(lambda self: self._cfg.elem_width)
    length = property(lambda self: self._cfg.length)
    nodes = property(lambda self: self._cfg.nodes)
    layer_bits = property(lambda self: self._cfg.layer_bits)
    stage_bits = property(lambda self: self._cfg.stage_bits)
    offset_bits = property(lambda self: self._cfg.offset_bits)
    flits_per_packet = property(lambda self: self._cfg.flits_per_packet)

    def elaborate(self, platform):
        m = Module()
        m.submodules.packetizer = pk = NiPacketizer(self._cfg)
        m.submodules.depacketizer = dp = NiDepacketizer(self._cfg)
        wiring.connect(m, wiring.flipped(self.i), pk.i)
        wiring.connect(m, pk.o, wiring.flipped(self.inject))
        wiring.connect(m, wiring.flipped(self.eject), dp.i)
        wiring.connect(m, dp.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.cfg), dp.cfg)
        m.d.comb += [self.error.eq(dp.error), self.errors.eq(dp.errors),
                     self.last_error.eq(dp.last_error)]
        return m
