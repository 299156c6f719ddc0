"""Network generator: any :mod:`golden.noc` topology built from :class:`NocRouter` s."""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden import noc as golden_noc

from ..cells import add_cell
from ..registry import block
from .config import RouterConfig
from .router import NocRouter, dest_bits_for, flit_layout

__all__ = ["NocNetwork", "check_network"]


def check_network(topology="atleus", *, dims=(4, 4, 4), vcs=2, buffer=8, payload_width=32,
                  slots=2, routing_scheme="auto"):
    """Check :class:`NocNetwork` parameters without building anything.

    Returns
    -------
    (golden.noc.Topology, numpy.ndarray)
        The topology and its routing table.

    Raises
    ------
    TypeError, ValueError
        A bad parameter, named (the router's through :class:`hdl.noc.RouterConfig`).
    """
    if topology not in golden_noc.TOPOLOGIES:
        raise TypeError(f"topology must be one of {', '.join(golden_noc.TOPOLOGIES)}, "
                        f"not {topology!r}")
    if not isinstance(dims, tuple) or len(dims) not in (2, 3) or \
            not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 64 for d in dims):
        raise TypeError(f"dims must be a tuple of 2 or 3 integers from 1 to 64, not {dims!r}")
    topo = golden_noc.make_topology(topology, dims)
    schemes = ("auto", "dor") if topo.routing == "dor" else ("auto", "rule", "updown")
    if routing_scheme not in schemes:
        raise ValueError(f"routing_scheme must be one of {', '.join(schemes)} on the "
                         f"{topology} topology, not {routing_scheme!r}")
    table = golden_noc.routing_table(topo, routing_scheme)
    for n_ports in sorted({topo.n_ports(n) for n in range(topo.n_nodes)}):
        RouterConfig(ports=n_ports, vcs=vcs, buffer=buffer, payload_width=payload_width,
                     routing=topo.routing, dims=dims, slots=slots)
    return topo, table


@block("noc_network", topology="mesh, mesh_skip or atleus",
       dims="X,Y for a 2D mesh or X,Y,Z (Z tiers; Atleus: 4,4,4)",
       vcs="virtual channels per link (1, 2 or 4)",
       buffer="input buffer depth per VC in flits (>= 3)",
       payload_width="flit payload width in bits",
       slots="destinations each output VC tracks downstream (1 to buffer)",
       routing_scheme="routing table: auto (dimension order on a mesh, else the fewest average "
                      "hops of rule and up*/down*), rule or updown (not on a mesh)")
class NocNetwork(wiring.Component):
    """A network of :class:`NocRouter` s with one injection and one ejection stream per node.

    The topology, port numbering and routing tables come from :mod:`golden.noc`
    (:func:`golden.noc.make_topology`, :func:`golden.noc.routing_table`, which proves the
    routing deadlock-free before any RTL is built). Meshes route by dimension order in the
    routers; other topologies through a routing-table input wired to constants. Each
    distinct router configuration (port count, VCs, buffer, width, routing) is one shared
    Verilog module (:func:`hdl.cells.add_cell`).

    Timing: per packet of ``L`` flits over ``h`` hops, ``2*h + 2 + L - 1`` cycles from the
    head's injection to the tail's ejection at zero load (:func:`golden.noc.zero_load_latency`,
    ``h`` from :func:`golden.noc.hops`). Packets from one source to one destination arrive in
    order (one deterministic route, and the router's VC rule: see :class:`NocRouter`) and
    each packet's flits leave contiguously.

    Parameters
    ----------
    topology : str
        ``"mesh"``, ``"mesh_skip"`` or ``"atleus"``.
    dims : tuple of int
        ``(X, Y)`` or ``(X, Y, Z)``.
    vcs, buffer, payload_width, slots : int
        As :class:`NocRouter`.
    routing_scheme : str
        The routing table (:func:`golden.noc.routing_table`): ``"auto"`` (dimension order on
        a mesh; otherwise whichever of the topology's rule and up*/down* routing has the
        fewer average hops under uniform traffic), ``"rule"`` or ``"updown"`` (tables, not on
        a mesh, whose routers route by dimension order). On Atleus, ``"auto"`` picks
        up*/down* (fewer average hops); the rule (vertical first, then along the
        tier) gives every layer-to-layer flow of :func:`golden.noc.layer_pipeline` its own
        channels.

    Members
    -------
    inject : In(stream.Signature(flit_layout(...))).array(n_nodes)
        Injection stream of node ``n`` (flit format: :func:`hdl.noc.flit_layout`).
    eject : Out(stream.Signature(flit_layout(...))).array(n_nodes)
        Ejection stream of node ``n``.
    error : Out(n_nodes)
        Bit ``n``: node ``n`` refused a head flit with a destination outside the network
        this cycle (the packet is discarded).
    """

    def __init__(self, topology="atleus", *, dims=(4, 4, 4), vcs=2, buffer=8, payload_width=32,
                 slots=2, routing_scheme="auto"):
        self._topo, self._table = check_network(
            topology, dims=dims, vcs=vcs, buffer=buffer, payload_width=payload_width,
            slots=slots, routing_scheme=routing_scheme)
        self._routing_scheme = routing_scheme
        self._topology, self._dims = topology, dims
        self._vcs, self._buffer, self._payload_width = vcs, buffer, payload_width
        self._slots = slots
        flit = flit_layout(dest_bits=dest_bits_for(self._topo.n_nodes), payload_width=payload_width)
        self._flit_layout = flit
        n = self._topo.n_nodes
        super().__init__({
            "inject": In(stream.Signature(flit)).array(n),
            "eject": Out(stream.Signature(flit)).array(n),
            "error": Out(n),
        })

    topology = property(lambda self: self._topology)
    dims = property(lambda self: self._dims)
    vcs = property(lambda self: self._vcs)
    buffer = property(lambda self: self._buffer)
    payload_width = property(lambda self: self._payload_width)
    slots = property(lambda self: self._slots)
    routing_scheme = property(lambda self: self._routing_scheme)

    @property
    def graph(self):
        """The :class:`golden.noc.Topology` this network implements."""
        return self._topo

    @property
    def table(self):
        """The routing table ``table[router, dest] -> port`` (:func:`golden.noc.routing_table`)."""
        return self._table

    @property
    def flit_layout(self):
        return self._flit_layout

    def elaborate(self, platform):
        m = Module()
        topo = self._topo
        routers = [add_cell(m, f"router_{n}", NocRouter, topo.n_ports(n), vcs=self._vcs,
                            buffer=self._buffer, payload_width=self._payload_width,
                            routing=topo.routing, dims=self._dims, slots=self._slots)
                   for n in range(topo.n_nodes)]
        for n, r in enumerate(routers):
            wiring.connect(m, wiring.flipped(self.inject[n]), r.inject)
            wiring.connect(m, r.eject, wiring.flipped(self.eject[n]))
            m.d.comb += self.error[n].eq(r.error)
            if topo.routing == "dor":
                x, y, z = topo.coords(n)
                m.d.comb += [r.coord.x.eq(x), r.coord.y.eq(y)]
                if len(self._dims) == 3:
                    m.d.comb += r.coord.z.eq(z)
            else:
                for d in range(topo.n_nodes):
                    m.d.comb += r.routes[d].eq(int(self._table[n, d]))
        for n, p, nb, q, _ in topo.links():
            wiring.connect(m, routers[n].o[p - 1], routers[nb].i[q - 1])
        return m
