"""A router's VC allocator: output VCs for head flits, the VC each packet holds, requests."""

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import check_unit

__all__ = ["NocVcAllocator"]


class NocVcAllocator(wiring.Component):
    """Virtual-channel allocation and per-input-VC packet state of a :class:`hdl.noc.NocRouter`.

    Combinational, every cycle, for each input VC whose queue holds a flit: a head flit may
    take the lowest output VC of its route's port that no packet holds, has a credit, and
    passes the ordering rule (with more than one VC: a head for ``d`` must take the VC whose
    destination slots still hold a packet for ``d`` when there is one, and otherwise may not
    start a new slot in a VC whose slots are all in use; see :class:`hdl.noc.NocRouter`); a
    body or tail flit may follow its packet's VC when that VC has a credit. The result is the
    input VC's switch request (``requests``): the one output port it may cross to now and the
    output VC it takes. When a head crosses (``pops``), its input VC holds the port and output
    VC until its tail crosses.

    Parameters
    ----------
    config : RouterConfig
        The router's parameters.

    Members
    -------
    heads : In(HeadSignature(...)).array(ports, vcs)
        Every input VC's queue head and route.
    pops : In(PopSignature(...)).array(ports)
        The heads that cross the switch this cycle.
    ej : In(OutputVcSignature(slots=0))
        The ejection port's single VC.
    o : In(OutputVcSignature(...)).array(ports - 1, vcs)
        The link output VCs of ports 1 and up.
    requests : Out(RequestSignature(...)).array(ports, vcs)
        Every input VC's switch request.
    """

    def __init__(self, config):
        check_unit(config)
        self._config = c = config
        super().__init__({
            "heads": In(c.head_signature).array(c.ports, c.vcs),
            "pops": In(c.pop_signature).array(c.ports),
            "ej": In(c.output_vc_signature(0)),
            "o": In(c.output_vc_signature(1)).array(c.ports - 1, c.vcs),
            "requests": Out(c.request_signature).array(c.ports, c.vcs),
        })

    config = property(lambda self: self._config)

    def elaborate(self, platform):
        m = Module()
        c = self._config
        P, V, K = c.ports, c.vcs, c.tracked_slots
        outs = [[self.ej]] + [list(self.o[r - 1]) for r in range(1, P)]
        for p in range(P):
            for v in range(V):
                head = self.heads[p][v]
                d, rc = head.flit.dest, head.route
                active = Signal(name=f"active_i{p}_v{v}")
                oport = Signal(range(P), name=f"oport_i{p}_v{v}")
                ovc = Signal(c.vc_bits, name=f"ovc_i{p}_v{v}")
                newvc = Signal(c.vc_bits, name=f"newvc_i{p}_v{v}")
                req = self.requests[p][v].req
                for r in range(P):
                    # ok[w]: a head for d may take output VC w now.
                    if not K or r == 0:
                        ok = [~o.busy & o.avail for o in outs[r]]
                    else:
                        holds = []
                        for o in outs[r]:
                            h = C(0)
                            for k in range(K):
                                h = h | (o.live[k] & (o.dest[k] == d))
                            holds.append(h)
                        hasmatch = C(0)
                        for h in holds:
                            hasmatch = hasmatch | h
                        ok = [~o.busy & o.avail & (~o.full | (o.newest == d)) & (h | ~hasmatch)
                              for o, h in zip(outs[r], holds)]
                    okv = Signal(len(ok), name=f"ok_i{p}_v{v}_o{r}")
                    m.d.comb += okv.eq(Cat(*ok))
                    with m.If(rc == r):
                        for w in reversed(range(len(ok))):      # the lowest VC it may take
                            with m.If(okv[w]):
                                m.d.comb += newvc.eq(w)
                    held = C(0)
                    for w, o in enumerate(outs[r]):
                        held = held | ((ovc == w) & o.avail)
                    m.d.comb += req[r].eq(head.valid & Mux(
                        active, (oport == r) & held, (rc == r) & okv.any()))
                m.d.comb += self.requests[p][v].vc.eq(Mux(active, ovc, newvc))
                # The packet holds its port and VC from its head to its tail.
                with m.If(self.pops[p].pop[v]):
                    with m.If(head.flit.tail):
                        m.d.sync += active.eq(0)
                    with m.Elif(~active):
                        m.d.sync += [active.eq(1), ovc.eq(newvc)]
                        for r in range(P):
                            with m.If(req[r]):
                                m.d.sync += oport.eq(r)
        return m
