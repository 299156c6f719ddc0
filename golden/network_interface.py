"""Golden model of the NoC network interface: the exact flit sequence of a vector's packet
(:func:`packetize`) and the reassembly of vectors from a node's ejected flits
(:func:`depacketize`), with the rules that flag and drop unexpected or malformed packets.

The spec that :class:`hdl.noc.NetworkInterface` matches bit for bit.

Packet format (flit fields as :func:`hdl.noc.flit_layout`: ``head``, ``tail``, ``dest``,
``payload``; every flit of a packet carries the packet's ``dest``)::

    flit 0        head=1 tail=0   payload = tag: layer | stage << layer_bits
                                            | offset << (layer_bits + stage_bits), zero above
    flit 1..B     head=0          payload = bits [(j-1) P, j P) of the vector, where the
                                            vector's element k occupies bits [k E, (k+1) E)
                                            (LSB first), zero above the last element
                  tail=1 on flit B only

with ``P = payload_width``, ``E = elem_width``, ``L = length`` and ``B = ceil(L E / P)`` body
flits: ``1 + B`` flits per packet, one packet per vector.

Reassembly at a node (what "expected" means): the node holds one expectation
(:class:`Expect`: a layer, a stage and an inclusive offset range ``first..last``), set by a
configuration write; after reset nothing is expected (empty range). The flits that arrive at
the node are read as packets, from a head flit to the next tail flit; a packet is delivered
(its tag and vector) only if it has exactly ``1 + B`` flits and its tag is expected.
Otherwise it is dropped whole and one error is recorded at the flit that shows it:

- ``TAG``: the head's tag is not expected (layer or stage differ, or the offset is outside
  ``first..last``); checked first.
- ``LENGTH``: a head flit that is also a tail, a tail before body flit ``B``, no tail on body
  flit ``B``, or a head flit inside a packet (it is taken as a body flit, so the packet has
  the wrong shape).
- ``ORPHAN``: a flit without a head outside a packet (the rest of a packet whose head the
  node never saw, e.g. after a reset in mid-packet).

After an error the node discards flits up to and including the next tail (none if the
flit that showed the error was a tail) and then reads the next packet.
"""

import enum
from dataclasses import dataclass

import numpy as np

from . import noc
from ._check import check_int

__all__ = ["NiConfig", "Expect", "ErrorKind", "NiError", "NONE_EXPECTED", "dest_bits_for",
           "packetize", "depacketize", "flit_word", "flit_fields", "tag_word",
           "packet_flits", "transfer_flits", "stream_cycles"]

MAX_COUNT = (1 << 16) - 1      # the error counter saturates here (16 bits)


def dest_bits_for(nodes):
    """Width of a flit's ``dest`` field for a network of ``nodes`` nodes (as
    :func:`hdl.noc.router.dest_bits_for`: at least 8 bits)."""
    return max(8, (nodes - 1).bit_length())


class ErrorKind(enum.IntEnum):
    """Why a packet was dropped (the ``kind`` of :attr:`NetworkInterface.last_error`)."""
    NONE = 0
    TAG = 1
    LENGTH = 2
    ORPHAN = 3


@dataclass(frozen=True)
class NiConfig:
    """Parameters of a network interface (and of its packets).

    Parameters
    ----------
    payload_width : int
        Flit payload width ``P`` in bits, 1 to 1024 (the network's).
    elem_width : int
        Vector element width ``E`` in bits, 1 to 1024 (elements are raw bit patterns).
    length : int
        Elements per vector ``L``, 1 to 4096.
    nodes : int
        Nodes of the network, 1 to 4096 (sets the ``dest`` field width).
    layer_bits, stage_bits : int
        Widths of the tag's ``layer`` and ``stage`` fields, 1 to 16.
    offset_bits : int
        Width of the tag's ``offset`` field, 1 to 32.

    The tag (``layer_bits + stage_bits + offset_bits`` bits) must fit one flit payload:
    ``ValueError`` otherwise (it is never truncated).
    """
    payload_width: int = 32
    elem_width: int = 8
    length: int = 32
    nodes: int = 64
    layer_bits: int = 6
    stage_bits: int = 4
    offset_bits: int = 16

    def __post_init__(self):
        check_int("payload_width", self.payload_width, 1, 1024)
        check_int("elem_width", self.elem_width, 1, 1024)
        check_int("length", self.length, 1, 4096)
        check_int("nodes", self.nodes, 1, 4096)
        check_int("layer_bits", self.layer_bits, 1, 16)
        check_int("stage_bits", self.stage_bits, 1, 16)
        check_int("offset_bits", self.offset_bits, 1, 32)
        if self.tag_bits > self.payload_width:
            raise ValueError(f"The tag (layer_bits + stage_bits + offset_bits = {self.tag_bits} "
                             f"bits) must fit the flit payload (payload_width = "
                             f"{self.payload_width} bits)")

    @property
    def tag_bits(self):
        return self.layer_bits + self.stage_bits + self.offset_bits

    @property
    def dest_bits(self):
        return dest_bits_for(self.nodes)

    @property
    def vector_bits(self):
        """``L * E``."""
        return self.length * self.elem_width

    @property
    def body_flits(self):
        """``B = ceil(L E / P)``."""
        return -(-self.vector_bits // self.payload_width)

    @property
    def flits_per_packet(self):
        """``1 + B``: the header and the body flits."""
        return 1 + self.body_flits

    @property
    def flit_bits(self):
        """Width of a whole flit: ``2 + dest_bits + payload_width``."""
        return 2 + self.dest_bits + self.payload_width


@dataclass(frozen=True)
class Expect:
    """A node's expectation: tags with this ``layer`` and ``stage`` and an offset in
    ``first..last`` (inclusive; ``first > last`` expects nothing)."""
    layer: int = 0
    stage: int = 0
    first: int = 1
    last: int = 0

    def matches(self, tag):
        layer, stage, offset = tag
        return layer == self.layer and stage == self.stage and self.first <= offset <= self.last


NONE_EXPECTED = Expect()      # the state after reset


@dataclass(frozen=True)
class NiError:
    """One dropped packet: its kind and the tag known when it was dropped (``TAG``: the
    head's; ``LENGTH``: the packet's head tag; ``ORPHAN``: ``(0, 0, 0)``)."""
    kind: ErrorKind
    tag: tuple = (0, 0, 0)


def _check_tag(cfg, tag):
    layer, stage, offset = tag
    check_int("layer", layer, 0, (1 << cfg.layer_bits) - 1)
    check_int("stage", stage, 0, (1 << cfg.stage_bits) - 1)
    check_int("offset", offset, 0, (1 << cfg.offset_bits) - 1)
    return int(layer), int(stage), int(offset)


def tag_word(cfg, tag):
    """The header payload of ``tag = (layer, stage, offset)``."""
    layer, stage, offset = _check_tag(cfg, tag)
    return layer | stage << cfg.layer_bits | offset << (cfg.layer_bits + cfg.stage_bits)


def _tag_of(cfg, word):
    lb, sb = cfg.layer_bits, cfg.stage_bits
    return (word & ((1 << lb) - 1), (word >> lb) & ((1 << sb) - 1),
            (word >> (lb + sb)) & ((1 << cfg.offset_bits) - 1))


def _vector_word(cfg, vector):
    v = np.asarray(vector)
    if v.shape != (cfg.length,):
        raise ValueError(f"vector must have length {cfg.length}, not shape {v.shape}")
    word = 0
    hi = (1 << cfg.elem_width) - 1
    for k, e in enumerate(v.tolist()):
        e = int(e)
        if not 0 <= e <= hi:
            raise ValueError(f"vector element {k} must be from 0 to {hi} (elem_width "
                             f"{cfg.elem_width}), not {e}")
        word |= e << (k * cfg.elem_width)
    return word


def _vector_of(cfg, word):
    mask = (1 << cfg.elem_width) - 1
    return [(word >> (k * cfg.elem_width)) & mask for k in range(cfg.length)]


def packetize(cfg, dest, tag, vector):
    """The packet of one vector: a list of flits ``(head, tail, dest, payload)``.

    Parameters
    ----------
    cfg : NiConfig
    dest : int
        Destination node, 0 to ``2**dest_bits - 1`` (the network refuses nodes it lacks).
    tag : (int, int, int)
        ``(layer, stage, offset)``, each within its field width.
    vector : sequence of int
        ``length`` elements, each 0 to ``2**elem_width - 1`` (a bit pattern).
    """
    check_int("dest", dest, 0, (1 << cfg.dest_bits) - 1)
    word = _vector_word(cfg, vector)
    P, B = cfg.payload_width, cfg.body_flits
    mask = (1 << P) - 1
    flits = [(1, 0, int(dest), tag_word(cfg, tag))]
    for j in range(B):
        flits.append((0, int(j == B - 1), int(dest), (word >> (j * P)) & mask))
    return flits


def flit_word(cfg, flit):
    """A flit ``(head, tail, dest, payload)`` packed as :func:`hdl.noc.flit_layout` packs it
    (``head`` at bit 0, ``tail`` at 1, ``dest`` from bit 2, ``payload`` above)."""
    head, tail, dest, payload = flit
    return head | tail << 1 | dest << 2 | payload << (2 + cfg.dest_bits)


def flit_fields(cfg, word):
    """Inverse of :func:`flit_word`."""
    db = cfg.dest_bits
    return (word & 1, (word >> 1) & 1, (word >> 2) & ((1 << db) - 1),
            (word >> (2 + db)) & ((1 << cfg.payload_width) - 1))


def depacketize(cfg, flits, expect=NONE_EXPECTED, *, state=None):
    """Reassemble vectors from the flits that arrive at one node, in arrival order.

    Parameters
    ----------
    cfg : NiConfig
    flits : iterable of (head, tail, dest, payload)
        The node's ejected flits (``dest`` is not looked at).
    expect : Expect
        The node's expectation for all of these flits.
    state : dict, optional
        The reassembly state to continue from (returned by a previous call); None: the state
        after reset.

    Returns
    -------
    (list, list, dict)
        The delivered ``(tag, vector)`` pairs (``vector`` a list of ints), the
        :class:`NiError` s in order, and the state at the end.
    """
    st = dict(state) if state is not None else {"mode": "idle", "count": 0, "tag": (0, 0, 0),
                                                "word": 0}
    P, B = cfg.payload_width, cfg.body_flits
    out, errors = [], []
    for head, tail, _dest, payload in flits:
        mode = st["mode"]
        if mode == "idle":
            if head:
                tag = _tag_of(cfg, payload)
                if not expect.matches(tag):
                    errors.append(NiError(ErrorKind.TAG, tag))
                    st["mode"] = "idle" if tail else "drop"
                elif tail:
                    errors.append(NiError(ErrorKind.LENGTH, tag))
                else:
                    st.update(mode="keep", count=0, tag=tag, word=0)
            else:
                errors.append(NiError(ErrorKind.ORPHAN))
                st["mode"] = "idle" if tail else "drop"
        elif mode == "keep":
            last = st["count"] + 1 == B
            if head or tail != last:
                errors.append(NiError(ErrorKind.LENGTH, st["tag"]))
                st["mode"] = "idle" if tail else "drop"
            else:
                st["word"] |= payload << (st["count"] * P)
                st["count"] += 1
                if last:
                    out.append((st["tag"], _vector_of(cfg, st["word"])))
                    st["mode"] = "idle"
        else:   # drop
            if tail:
                st["mode"] = "idle"
    return out, errors, st


def packet_flits(cfg):
    """Flits per vector packet: ``1 + ceil(length * elem_width / payload_width)``."""
    return cfg.flits_per_packet


def transfer_flits(nbytes, *, payload_width, vector_bytes):
    """Flits of a transfer of ``nbytes`` sent as vectors of ``vector_bytes`` bytes each, one
    packet per vector (the last vector zero-padded): ``packets * (1 + ceil(8 vector_bytes /
    payload_width))``. Compare :func:`golden.chip.transfer_cycles`, which counts
    ``ceil(8 nbytes / payload_width)`` flits without headers."""
    check_int("nbytes", nbytes, 0)
    check_int("payload_width", payload_width, 1, 1024)
    check_int("vector_bytes", vector_bytes, 1)
    packets = -(-int(nbytes) // vector_bytes)
    return packets * (1 + -(-8 * vector_bytes // payload_width))


def stream_cycles(cfg, hops, vectors=1):
    """Zero-load cycles from the transfer of the first of ``vectors`` back-to-back vectors
    on the sending interface's ``i`` to the transfer of the last one on the receiving
    interface's ``o`` (``o`` always ready), ``hops`` router-to-router links apart:
    1 (vector to header flit) + :func:`golden.noc.zero_load_latency` of ``vectors *
    flits_per_packet`` flits (the packets go back to back) + 1 (tail flit to vector)."""
    check_int("hops", hops, 0)
    check_int("vectors", vectors, 1)
    return 2 + int(noc.zero_load_latency(hops, vectors * cfg.flits_per_packet))
