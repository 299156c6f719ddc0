"""The NoC's flit formats, its link, and the bundles between a router's units.

Flit format (:func:`flit_layout`, first field at the LSB)::

    head    : 1               first flit of a packet (carries the destination)
    tail    : 1               last flit of a packet (head and tail set: a one-flit packet)
    dest    : dest_bits       destination node (read from the head flit only; body and tail
                              flits carry it unchanged and the router ignores it)
    payload : payload_width   user data, delivered unchanged

On a router-to-router link the flit travels with its virtual channel (:func:`link_flit_layout`:
``vc`` then ``flit``), and credits travel back, one bit per VC (:class:`NocLinkSignature`).

Inside a router (:class:`hdl.noc.NocRouter`) the units exchange, per input VC, its queue head
(:class:`HeadSignature`), its switch request (:class:`RequestSignature`) and its pops
(:class:`PopSignature`); per output port the flit it sends (:class:`TraversalSignature`) and
per output VC its allocation state (:class:`OutputVcSignature`); the switch allocator's grants
drive the crossbar (:class:`CrossbarGrantSignature`). Every bundle is seen from its driver.
"""

from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["dest_bits_for", "vc_bits_for", "flit_layout", "link_flit_layout",
           "NocLinkSignature", "HeadSignature", "RequestSignature", "PopSignature",
           "CrossbarGrantSignature", "TraversalSignature", "OutputVcSignature"]


def dest_bits_for(n_nodes):
    """Width of the ``dest`` field: at least 8 bits, so that destinations outside a small
    network can be expressed (and are refused at injection)."""
    return max(8, (n_nodes - 1).bit_length())


def vc_bits_for(vcs):
    """Width of a virtual-channel number (at least 1 bit)."""
    return max(1, (vcs - 1).bit_length())


def flit_layout(*, dest_bits, payload_width):
    """The flit: ``head``, ``tail``, ``dest``, ``payload`` (first field at the LSB)."""
    return data.StructLayout({"head": 1, "tail": 1, "dest": dest_bits, "payload": payload_width})


def link_flit_layout(*, vcs, dest_bits, payload_width):
    """A flit on a router-to-router link: ``vc`` (its virtual channel), then ``flit``."""
    return data.StructLayout({"vc": vc_bits_for(vcs),
                              "flit": flit_layout(dest_bits=dest_bits, payload_width=payload_width)})


class _Bundle(wiring.Signature):
    """A signature defined by keyword parameters: equal when the class and parameters are."""

    def __init__(self, members, **params):
        self._params = params
        super().__init__(members)

    def __eq__(self, other):
        return type(other) is type(self) and self._params == other._params

    def __hash__(self):
        return hash((type(self), tuple(sorted(self._params.items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"


class NocLinkSignature(_Bundle):
    """A router-to-router channel, as seen by the sending router.

    Members
    -------
    valid : Out(1)
        A flit is on the link this cycle (no handshake: credits guarantee buffer space).
    flit : Out(link_flit_layout(...))
        The flit and its virtual channel.
    credit : In(vcs)
        One bit per VC: the receiver freed one buffer slot of that VC (one cycle pulse).
    """

    def __init__(self, *, vcs, dest_bits, payload_width):
        super().__init__({
            "valid": Out(1),
            "flit": Out(link_flit_layout(vcs=vcs, dest_bits=dest_bits, payload_width=payload_width)),
            "credit": In(vcs),
        }, vcs=vcs, dest_bits=dest_bits, payload_width=payload_width)


class HeadSignature(_Bundle):
    """The head of one input VC's queue, from the input unit.

    Members
    -------
    valid : Out(1)
        The queue holds a flit.
    flit : Out(flit)
        The flit at its head.
    route : Out(range(ports))
        The output port of a packet whose head flit this is (route computation).
    """

    def __init__(self, *, flit, ports):
        super().__init__({"valid": Out(1), "flit": Out(flit), "route": Out(range(ports))},
                         flit=flit, ports=ports)


class RequestSignature(_Bundle):
    """One input VC's switch request, from the VC allocator.

    Members
    -------
    req : Out(ports)
        One-hot: the output port its head flit may cross to this cycle (an output VC is
        allocated or free and has a credit); zero when it may not move.
    vc : Out(vc_bits)
        The output VC it leaves on.
    """

    def __init__(self, *, ports, vcs):
        super().__init__({"req": Out(ports), "vc": Out(vc_bits_for(vcs))}, ports=ports, vcs=vcs)


class PopSignature(_Bundle):
    """The flits that leave one input port's queues this cycle, from the switch allocator.

    Members
    -------
    pop : Out(vcs)
        Bit ``v``: the head flit of VC ``v`` crosses the switch (at most one bit set).
    """

    def __init__(self, *, vcs):
        super().__init__({"pop": Out(vcs)}, vcs=vcs)


class CrossbarGrantSignature(_Bundle):
    """The switch allocation of one cycle, from the switch allocator to the crossbar.

    Members
    -------
    vc : Out(ArrayLayout(vcs, ports))
        Per input port, one-hot: the VC that won its input arbiter.
    input : Out(ArrayLayout(ports, ports))
        Per output port, one-hot: the input port that won it.
    """

    def __init__(self, *, ports, vcs):
        super().__init__({"vc": Out(data.ArrayLayout(vcs, ports)),
                          "input": Out(data.ArrayLayout(ports, ports))}, ports=ports, vcs=vcs)


class TraversalSignature(_Bundle):
    """The flit that crosses the switch to one output port this cycle, from the crossbar.

    Members
    -------
    valid : Out(1)
        A flit crosses.
    flit : Out(flit)
        The flit.
    vc : Out(vc_bits)
        The output VC it takes.
    """

    def __init__(self, *, flit, vcs):
        super().__init__({"valid": Out(1), "flit": Out(flit), "vc": Out(vc_bits_for(vcs))},
                         flit=flit, vcs=vcs)


class OutputVcSignature(_Bundle):
    """One output VC's state for the VC allocator, from the output unit.

    Members
    -------
    avail : Out(1)
        A flit may be sent on the VC this cycle (a credit, or the ejection register frees).
    busy : Out(1)
        A packet holds the VC (its head has left, its tail not yet).
    live : Out(slots)
        Destination slots in use (with ``slots > 0`` only; see :class:`hdl.noc.NocRouter`).
    dest : Out(ArrayLayout(dest_bits, slots))
        Each slot's destination.
    full : Out(1)
        Every slot is in use.
    newest : Out(dest_bits)
        The destination of the newest slot.
    """

    def __init__(self, *, dest_bits, slots):
        members = {"avail": Out(1), "busy": Out(1)}
        if slots:
            members.update(live=Out(slots), dest=Out(data.ArrayLayout(dest_bits, slots)),
                           full=Out(1), newest=Out(dest_bits))
        super().__init__(members, dest_bits=dest_bits, slots=slots)
