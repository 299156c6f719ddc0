"""A router's crossbar: the granted queue heads to their output ports."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import check_unit

__all__ = ["NocCrossbar"]


class NocCrossbar(wiring.Component):
    """Switch traversal of a :class:`hdl.noc.NocRouter`, combinational.

    Output port ``r`` carries, in the cycle of the grant, the head flit of the input VC that
    won it (input port from ``grant.input[r]``, VC from ``grant.vc``) with the output VC that
    input VC's request names; nothing when no input won it.

    Parameters
    ----------
    config : RouterConfig
        The router's parameters.

    Members
    -------
    heads : In(HeadSignature(...)).array(ports, vcs)
        Every input VC's queue head.
    requests : In(RequestSignature(...)).array(ports, vcs)
        Every input VC's switch request (its output VC).
    grant : In(CrossbarGrantSignature(...))
        The switch allocation.
    outs : Out(TraversalSignature(...)).array(ports)
        The flit crossing to each output port.
    """

    def __init__(self, config):
        check_unit(config)
        self._config = c = config
        super().__init__({
            "heads": In(c.head_signature).array(c.ports, c.vcs),
            "requests": In(c.request_signature).array(c.ports, c.vcs),
            "grant": In(c.grant_signature),
            "outs": Out(c.traversal_signature).array(c.ports),
        })

    config = property(lambda self: self._config)

    def elaborate(self, platform):
        m = Module()
        P, V = self._config.ports, self._config.vcs
        for r in range(P):
            out = self.outs[r]
            for p in range(P):
                for v in range(V):
                    with m.If(self.grant.input[r][p] & self.grant.vc[p][v]):
                        m.d.comb += [out.valid.eq(1), out.flit.eq(self.heads[p][v].flit),
                                     out.vc.eq(self.requests[p][v].vc)]
        return m
