"""A router's switch allocator: separable input-first, packet-level round robin."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..lib import RoundRobin
from .config import check_unit

__all__ = ["NocSwitchAllocator"]


def _any(bits):
    return sum(bits) != 0


class NocSwitchAllocator(wiring.Component):
    """Switch allocation of a :class:`hdl.noc.NocRouter`, combinational.

    Separable input-first: per input port a round-robin arbiter (:class:`hdl.lib.RoundRobin`)
    picks one of its requesting VCs, then per output port a round-robin arbiter picks one of
    the input ports whose picked VC requests it. Both arbiters rotate per packet, not per
    flit: a granted requester keeps the priority until its tail crosses, which keeps packets
    contiguous on the links; requesters that do not request are skipped, so no cycle is
    lost. An input port whose pick loses its output sends nothing that cycle. The grants
    pop the winners' queue heads (``pops``) and steer the crossbar (``grant``).

    Parameters
    ----------
    config : RouterConfig
        The router's parameters.

    Members
    -------
    heads : In(HeadSignature(...)).array(ports, vcs)
        Every input VC's queue head (its ``tail`` bit ends a packet).
    requests : In(RequestSignature(...)).array(ports, vcs)
        Every input VC's switch request.
    pops : Out(PopSignature(...)).array(ports)
        Per input port, the VC whose head crosses this cycle.
    grant : Out(CrossbarGrantSignature(...))
        The winners, for the crossbar.
    """

    def __init__(self, config):
        check_unit(config)
        self._config = c = config
        super().__init__({
            "heads": In(c.head_signature).array(c.ports, c.vcs),
            "requests": In(c.request_signature).array(c.ports, c.vcs),
            "pops": Out(c.pop_signature).array(c.ports),
            "grant": Out(c.grant_signature),
        })

    config = property(lambda self: self._config)

    def elaborate(self, platform):
        m = Module()
        P, V = self._config.ports, self._config.vcs
        req = [[self.requests[p][v].req for v in range(V)] for p in range(P)]
        tail = [[self.heads[p][v].flit.tail for v in range(V)] for p in range(P)]
        vgrant = [self.grant.vc[p] for p in range(P)]
        out_grant = [self.grant.input[r] for r in range(P)]

        in_arb, in_req = [], []
        for p in range(P):
            m.submodules[f"in{p}"] = arb = RoundRobin(V, hold=True)
            for v in range(V):
                m.d.comb += arb.requests[v].eq(req[p][v] != 0)
            m.d.comb += vgrant[p].eq(arb.grant)
            in_arb.append(arb)
            in_req.append([Signal(name=f"inreq_i{p}_o{r}") for r in range(P)])
            for r in range(P):
                m.d.comb += in_req[p][r].eq(_any(vgrant[p][v] & req[p][v][r] for v in range(V)))

        for r in range(P):
            m.submodules[f"out{r}"] = arb = RoundRobin(P, hold=True)
            m.d.comb += [arb.requests[p].eq(in_req[p][r]) for p in range(P)]
            m.d.comb += out_grant[r].eq(arb.grant)
            granted_tail = Signal(name=f"granted_tail_o{r}")
            m.d.comb += granted_tail.eq(_any(out_grant[r][p] & vgrant[p][v] & tail[p][v]
                                             for p in range(P) for v in range(V)))
            m.d.comb += [arb.advance.eq(arb.valid), arb.last.eq(granted_tail)]

        for p in range(P):
            granted_in = Signal(name=f"granted_i{p}")
            m.d.comb += granted_in.eq(_any(out_grant[r][p] for r in range(P)))
            granted_tail = Signal(name=f"granted_tail_i{p}")
            m.d.comb += granted_tail.eq(_any(vgrant[p][v] & tail[p][v] for v in range(V)))
            m.d.comb += [in_arb[p].advance.eq(granted_in), in_arb[p].last.eq(granted_tail)]
            for v in range(V):
                m.d.comb += self.pops[p].pop[v].eq(granted_in & vgrant[p][v])
        return m
