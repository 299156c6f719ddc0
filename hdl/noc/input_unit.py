"""A router's input unit: one queue per virtual channel and the route of each queue head."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.noc import MESH_PORTS

from ..cells import shared_cell
from ..lib import Queue
from .config import check_unit

__all__ = ["NocInputUnit"]


class NocInputUnit(wiring.Component):
    """Input port ``port`` of a :class:`hdl.noc.NocRouter`: ``vcs`` flit queues of ``buffer``
    flits (:class:`hdl.lib.Queue`, one shared Verilog module per flit width and depth) and
    route computation for the flit at each queue head.

    A flit accepted at a clock edge is at its queue's head (``heads[v]``) from the next
    cycle, with its route computed combinationally (meaningful for head flits: dimension
    order on the router's coordinates, or the routing-table input); ``pop.pop[v]`` drops the
    head at the edge. The link input (ports 1 and up) pushes each arriving flit into the
    queue of its VC (credits guarantee space) and returns one credit per popped flit, one
    cycle after the pop. The local input (port 0) takes the injection stream: a packet goes
    to the queue of its destination's class (``dest % vcs``; body flits follow their head),
    ``inject.ready`` is low while that queue is full, and a head flit for a destination
    outside the network is accepted and dropped with the rest of its packet, with ``error``
    high in the cycle the head is accepted.

    Parameters
    ----------
    config : RouterConfig
        The router's parameters.
    port : int
        The input port, 0 (local) to ``config.ports - 1``.

    Members
    -------
    inject : In(stream.Signature(flit_layout))
        Port 0 only: the injection stream.
    error : Out(1)
        Port 0 only: a head flit with a destination outside the network is accepted.
    i : In(NocLinkSignature(...))
        Ports 1 and up: the input link.
    coord : In(config.coord_layout)
        The router's coordinates (``routing="dor"``).
    routes : In(config.routes_layout)
        Output port per destination (``routing="table"``).
    heads : Out(HeadSignature(...)).array(vcs)
        The head of each VC's queue and its route.
    pop : In(PopSignature(vcs=vcs))
        The heads leaving this cycle.
    """

    def __init__(self, config, *, port):
        check_unit(config, port)
        self._config, self._port = config, port
        c = config
        members = {}
        if port == 0:
            members["inject"] = In(stream.Signature(c.flit_layout))
            members["error"] = Out(1)
        else:
            members["i"] = In(c.link_signature)
        if c.routing == "dor":
            members["coord"] = In(c.coord_layout)
        else:
            members["routes"] = In(c.routes_layout)
        members["heads"] = Out(c.head_signature).array(c.vcs)
        members["pop"] = In(c.pop_signature)
        super().__init__(members)

    config = property(lambda self: self._config)
    port = property(lambda self: self._port)

    def _route(self, m, dest, name):
        """The output port of a head flit for ``dest`` (combinational)."""
        c = self._config
        port = Signal(range(c.ports), name=f"{name}_route")
        if c.routing == "table":
            m.d.comb += port.eq(self.routes[dest])
            return port
        X, Y, Z = tuple(c.dims) + (1,) * (3 - len(c.dims))
        target = Signal(c.coord_layout, name=f"{name}_target")
        if all(d & (d - 1) == 0 for d in (X, Y, Z)):
            # Power-of-two dimensions: the coordinates are bit fields of the node id.
            bx, by, bz = ((d - 1).bit_length() for d in (X, Y, Z))
            m.d.comb += [target.x.eq(dest[:bx]), target.y.eq(dest[bx:bx + by])]
            if bz:
                m.d.comb += target.z.eq(dest[bx + by:bx + by + bz])
        else:
            with m.Switch(dest):
                for n in range(c.n_nodes):
                    with m.Case(n):
                        m.d.comb += target.eq(c.coord_layout.const(
                            {"x": n % X, "y": (n // X) % Y, "z": n // (X * Y)}))
        first = True
        for a in "xyz"[:len(c.dims)]:
            for cond, name_ in ((target[a] > self.coord[a], f"+{a}"),
                                (target[a] < self.coord[a], f"-{a}")):
                with (m.If if first else m.Elif)(cond):
                    m.d.comb += port.eq(MESH_PORTS[name_])
                first = False
        return port

    def elaborate(self, platform):
        m = Module()
        c, p = self._config, self._port
        V = c.vcs
        queues = []
        for v in range(V):
            q = Queue(c.flit_layout, depth=c.buffer)
            m.submodules[f"vc{v}"] = shared_cell(
                q, name=f"noc_vc_fifo_w{c.flit_layout.size}_d{c.buffer}")
            queues.append(q)
            head = self.heads[v]
            m.d.comb += [head.valid.eq(q.o.valid), head.flit.eq(q.o.payload),
                         q.o.ready.eq(self.pop.pop[v]),
                         head.route.eq(self._route(m, q.o.payload.dest, f"v{v}"))]

        if p > 0:
            link = self.i
            for v in range(V):
                m.d.comb += [queues[v].i.valid.eq(link.valid & (link.flit.vc == v)),
                             queues[v].i.payload.eq(link.flit.flit)]
            m.d.sync += link.credit.eq(self.pop.pop)
            return m

        # Injection: refuse destinations outside the network; one queue per VC class. The
        # queue of a packet is its destination's class (dest mod vcs), so the packets of one
        # flow share one queue; body flits follow their head's queue.
        inj = self.inject
        dropping = Signal()
        bad_head = Signal()
        m.d.comb += bad_head.eq(inj.payload.head & (inj.payload.dest >= c.n_nodes))
        refuse = Signal()
        m.d.comb += refuse.eq(dropping | bad_head)
        inj_vc = Signal(c.vc_bits)
        inj_sel = Signal(c.vc_bits)
        if V > 1:
            m.d.comb += inj_sel.eq(Mux(inj.payload.head, inj.payload.dest[:c.vc_bits], inj_vc))
        inj_full = Signal()
        for v in range(V):
            with m.If(inj_sel == v):
                m.d.comb += inj_full.eq(~queues[v].i.ready)
            m.d.comb += [queues[v].i.valid.eq(inj.valid & ~refuse & (inj_sel == v)),
                         queues[v].i.payload.eq(inj.payload)]
        m.d.comb += [
            inj.ready.eq(refuse | ~inj_full),
            self.error.eq(inj.valid & ~dropping & bad_head),
        ]
        with m.If(inj.valid & inj.ready):
            with m.If(bad_head & ~inj.payload.tail & ~dropping):
                m.d.sync += dropping.eq(1)
            with m.If(dropping & inj.payload.tail):
                m.d.sync += dropping.eq(0)
            with m.If(inj.payload.head & ~refuse):
                m.d.sync += inj_vc.eq(inj_sel)
        return m
