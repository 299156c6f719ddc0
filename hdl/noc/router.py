"""The credit-based wormhole router with virtual channels, composed of its units.

Flit and link formats: :mod:`hdl.noc.signatures` (re-exported here).
"""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..registry import block
from .config import RouterConfig
from .crossbar import NocCrossbar
from .input_unit import NocInputUnit
from .output_unit import NocOutputUnit
from .signatures import NocLinkSignature, dest_bits_for, flit_layout, link_flit_layout
from .switch_allocator import NocSwitchAllocator
from .vc_allocator import NocVcAllocator

__all__ = ["NocRouter", "NocLinkSignature", "flit_layout", "link_flit_layout", "dest_bits_for"]


@block("noc_router", ports="router ports incl. the local one (>= 2; 5 for a 2D mesh, 7 for 3D)",
       vcs="virtual channels per link (1, 2 or 4)",
       buffer="input buffer depth per VC in flits (>= the credit round trip, 3)",
       payload_width="flit payload width in bits",
       routing="dor (dimension order X, Y, Z on a mesh) or table (routing table input)",
       dims="network dimensions X,Y[,Z] (node ids, mesh coordinates)",
       slots="destinations each output VC tracks downstream (1 to buffer)")
class NocRouter(wiring.Component):
    """Input-buffered wormhole router with virtual channels and credit-based flow control.

    Timing contract: one cycle through the router and one on the link, so 2 cycles per hop
    at zero load. A flit in an input buffer at a clock edge computes its route, wins VC and
    switch allocation and is in the output register at the next edge (one flit per output
    port and per input port per cycle); the link delivers it into the next router's input
    buffer one edge later. A packet of ``L`` flits over ``h`` hops leaves the ejection port
    ``2*h + 2 + L - 1`` cycles after its head entered the injection port
    (:func:`golden.noc.zero_load_latency`). Credits return 3 cycles after the flit was sent
    (:data:`golden.noc.CREDIT_ROUND_TRIP`), so ``buffer >= 3`` streams one flit per cycle
    per link. Flits are never dropped: a flit leaves only when the next buffer has a credit
    for its VC (or the ejection register is free).

    Port 0 is the local port: the injection stream fills ``vcs`` input queues of ``buffer``
    flits, one per destination class (``dest % vcs``; a packet's body follows its head), so a
    blocked packet holds up only packets of its own class; ``inject.ready`` falls when the
    packet's queue is full. The ejection stream delivers each packet contiguously (the
    ejection port is held from head to tail). A head flit whose ``dest`` is outside the
    network (``dest >= prod(dims)``) is accepted and discarded with its body and tail, never
    routed, and ``error`` is high in the cycle its head is accepted.

    Allocation: a head flit takes any output VC that is not held by another packet and has a
    credit (the lowest such VC), with one ordering rule that keeps the packets of each
    (source, destination) flow in order: per output VC the router mirrors the packets still
    downstream (sent and not yet all credited back) in ``slots`` destination slots, and a
    head for ``d`` must take the VC that still holds a packet for ``d`` when there is one
    (waiting for it if it is busy), and otherwise may not start a new slot in a VC whose
    slots are all in use. Routes are deterministic, so all packets of a flow take one path;
    a later packet can take a different VC than an earlier one only once the earlier one has
    left the next router's input buffer, so it can never overtake it (by induction over the
    hops; the injection and ejection queues are FIFOs per flow). With ``slots == buffer`` the
    mirror is exact and the rule restricts only packets whose own destination is
    downstream. The VC stays its packet's until the tail leaves (wormhole). Deadlock freedom:
    every wait is for a channel that the route's next hop uses, so the router's VC-level
    dependencies lie inside the physical channel-dependency graph, which
    :func:`golden.noc.check_deadlock_free` proves acyclic for every routing table
    (dimension order on meshes is acyclic too). Separable input-first switch allocation
    with round-robin arbiters at the inputs (over VCs) and outputs (over input ports); the
    arbiters rotate per packet, not per flit (a granted packet keeps priority until its tail
    crosses), which keeps packets contiguous on the links.
    Routing is dimension order (X, then Y, then Z; ``routing="dor"``, ports as
    :data:`golden.noc.MESH_PORTS`) or a routing table given as an input
    (``routing="table"``), so routers of one configuration share one Verilog module
    whatever their position.

    The router only instantiates and connects its units, as Constellation structures its
    router: an input unit per port (:class:`hdl.noc.input_unit.NocInputUnit`: VC queues,
    route computation, credits back), the VC allocator
    (:class:`hdl.noc.vc_allocator.NocVcAllocator`: output VC choice, the ordering rule,
    per-packet VC state, switch requests), the switch allocator
    (:class:`hdl.noc.switch_allocator.NocSwitchAllocator`), the crossbar
    (:class:`hdl.noc.crossbar.NocCrossbar`) and an output unit per port
    (:class:`hdl.noc.output_unit.NocOutputUnit`: output register, credits, VC ownership,
    destination slots). Its parameters are one :class:`hdl.noc.RouterConfig`.

    Parameters
    ----------
    ports : int
        Ports including the local one, at least 2; ``1 + 2*len(dims)`` with ``"dor"``.
    vcs : int
        Virtual channels per router-to-router link: 1, 2 or 4.
    buffer : int
        Input buffer depth per VC in flits, at least the credit round trip (3).
    payload_width : int
        Flit payload width, 1 to 1024 bits.
    routing : str
        ``"dor"`` or ``"table"``.
    dims : tuple of int
        Network dimensions ``(X, Y)`` or ``(X, Y, Z)``; nodes are numbered
        ``x + X*(y + Y*z)``.
    slots : int
        Destination slots per output VC for the ordering rule, 1 to ``buffer``;
        ``slots == buffer`` is the exact mirror of the downstream buffer, fewer slots cost
        less logic and may stall a head until an older packet has drained downstream (1
        keeps every VC single-destination while it holds flits downstream). Unused with one
        VC. Saturation throughput against ``slots``: ``python -m tb.bench.noc --slots``.

    Members
    -------
    inject : In(stream.Signature(flit_layout(...)))
        Flits from the local core; each packet starts with a head flit.
    eject : Out(stream.Signature(flit_layout(...)))
        Flits to the local core.
    error : Out(1)
        High in the cycle a head flit with a destination outside the network is accepted.
    i : In(NocLinkSignature(...)).array(ports - 1)
        Input links of ports 1 .. ports-1.
    o : Out(NocLinkSignature(...)).array(ports - 1)
        Output links of ports 1 .. ports-1.
    coord : In(StructLayout({"x", "y", "z"}))
        This router's coordinates (``routing="dor"`` only).
    routes : In(ArrayLayout(port_bits, prod(dims)))
        Output port per destination (``routing="table"`` only).
    """

    def __init__(self, ports=5, *, vcs=2, buffer=8, payload_width=32, routing="dor", dims=(4, 4),
                 slots=2):
        self._config = c = RouterConfig(ports=ports, vcs=vcs, buffer=buffer,
                                        payload_width=payload_width, routing=routing, dims=dims,
                                        slots=slots)
        link = c.link_signature
        members = {
            "inject": In(stream.Signature(c.flit_layout)),
            "eject": Out(stream.Signature(c.flit_layout)),
            "error": Out(1),
            "i": In(link).array(ports - 1),
            "o": Out(link).array(ports - 1),
        }
        if routing == "dor":
            members["coord"] = In(c.coord_layout)
        else:
            members["routes"] = In(c.routes_layout)
        super().__init__(members)

    config = property(lambda self: self._config)
    ports = property(lambda self: self._config.ports)
    vcs = property(lambda self: self._config.vcs)
    buffer = property(lambda self: self._config.buffer)
    payload_width = property(lambda self: self._config.payload_width)
    routing = property(lambda self: self._config.routing)
    dims = property(lambda self: self._config.dims)
    slots = property(lambda self: self._config.slots)
    n_nodes = property(lambda self: self._config.n_nodes)
    dest_bits = property(lambda self: self._config.dest_bits)
    flit_layout = property(lambda self: self._config.flit_layout)
    coord_layout = property(lambda self: self._config.coord_layout)

    def elaborate(self, platform):
        m = Module()
        c = self._config
        P, V = c.ports, c.vcs
        iu = [NocInputUnit(c, port=p) for p in range(P)]
        ou = [NocOutputUnit(c, port=r) for r in range(P)]
        for p in range(P):
            m.submodules[f"input{p}"] = iu[p]
        m.submodules.vc_alloc = vca = NocVcAllocator(c)
        m.submodules.sw_alloc = sa = NocSwitchAllocator(c)
        m.submodules.crossbar = xbar = NocCrossbar(c)
        for r in range(P):
            m.submodules[f"output{r}"] = ou[r]

        wiring.connect(m, wiring.flipped(self.inject), iu[0].inject)
        m.d.comb += self.error.eq(iu[0].error)
        for p in range(1, P):
            wiring.connect(m, wiring.flipped(self.i[p - 1]), iu[p].i)
        for p in range(P):
            if c.routing == "dor":
                m.d.comb += iu[p].coord.eq(self.coord)
            else:
                m.d.comb += iu[p].routes.eq(self.routes)
            for v in range(V):
                wiring.connect(m, iu[p].heads[v], vca.heads[p][v], sa.heads[p][v],
                               xbar.heads[p][v])
                wiring.connect(m, vca.requests[p][v], sa.requests[p][v], xbar.requests[p][v])
            wiring.connect(m, sa.pops[p], iu[p].pop, vca.pops[p])
        wiring.connect(m, sa.grant, xbar.grant)
        wiring.connect(m, ou[0].state[0], vca.ej)
        for r in range(P):
            wiring.connect(m, xbar.outs[r], ou[r].i)
        for r in range(1, P):
            for w in range(V):
                wiring.connect(m, ou[r].state[w], vca.o[r - 1][w])
        wiring.connect(m, ou[0].eject, wiring.flipped(self.eject))
        for r in range(1, P):
            wiring.connect(m, ou[r].o, wiring.flipped(self.o[r - 1]))
        return m
