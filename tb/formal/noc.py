"""Formal harness of :class:`hdl.noc.router.NocRouter`, black box (ports only).

The router's internals (input units, allocators, arbiters) may be restructured freely: the
harness sees only the ports and keeps its own books. The environment is a well-behaved
network around the router:

- upstream routers send a flit on input VC ``v`` only with a credit (the harness counts
  them from ``buffer`` down and up again on the router's ``credit`` pulses), and their
  packets are well formed per VC (head, body..., tail; a one-flit packet has both);
- downstream routers return a credit only for a flit they hold (the harness mirrors each
  output VC's downstream buffer: a FIFO of the destinations of the flits sent and not yet
  credited);
- the routing table is any constant table of valid ports; link destinations are nodes of
  the network (the injection port may send any destination: it must drop bad ones);
- every flit's payload carries the input VC it came from (a tag), so the harness can tell
  packets apart at the outputs.

Safety properties (``NocHarness(liveness=False)``), every cycle:

- the stream rules on ``eject`` (assumed on ``inject``);
- credits: a flit leaves on an output VC only with a credit (the downstream buffer of that
  VC never holds more than ``buffer`` flits); the credits the router returns on an input VC
  never exceed the flits it received there (no input buffer underflow; the upstream count
  never exceeds ``buffer``, so no input buffer overflows either);
- wormhole: on every output VC (and on ``eject``) the flits of one packet leave
  contiguously, head first, tail last, all from one input VC, no other packet's flit in
  between;
- per-flow order: a head flit for destination ``d`` never takes an output VC while another
  VC of that port still holds a flit for ``d`` downstream (so a later packet of a flow can
  never overtake an earlier one in the next router).

Liveness (``NocHarness(liveness=True)``): one-flit packets, downstream routers that return
each credit in the cycle after the flit arrives, an always-ready ejection port. Then every
input VC holding a flit returns a credit (sends a flit) within ``bound`` cycles, and the
injection port never refuses a flit for more than ``bound`` cycles in a row: round-robin
allocation starves no input.
"""

from amaranth import Cat, Const, Mux, Signal
from amaranth.hdl import Assert, Assume

from hdl.noc.router import NocRouter

from .harness import FormalHarness, Mutant, past, toggle
from .shadow import ShadowQueue

__all__ = ["NocHarness", "NOC_BUGS"]


def _ignore_credits(**params):
    """Seeded bug: the router sees a returned credit on output link 0 in every cycle (it
    loses count of the downstream buffer)."""
    return Mutant(NocRouter(**params), {("o", 0, "credit"): lambda m, v: Const(-1, len(v))})


def _extra_credit(**params):
    """Seeded bug: input link 0 returns a spurious credit on VC 0 every other cycle."""
    return Mutant(NocRouter(**params), {("i", 0, "credit"): lambda m, v: v | toggle(m)})


def _swap_body_vc(**params):
    """Seeded bug: body and tail flits on output link 0 leave on the other VC than their
    head (packets interleave on the link)."""
    def swap(m, v):
        return Cat(v.vc ^ ~v.flit.head, v.flit.as_value())
    return Mutant(NocRouter(**params), {("o", 0, "flit"): swap})


def _instant_credits(**params):
    """Seeded bug: the router takes every flit it sends on output link 0 as credited back in
    the next cycle (its mirror of the downstream buffer forgets destinations early)."""
    state = {}

    def early(m, v):
        router = state["router"]
        o = router.o[0]
        back = Signal(len(v), name="instant_credit")
        m.d.sync += back.eq(Mux(o.valid, 1 << o.flit.vc, 0))
        return back
    router = NocRouter(**params)
    state["router"] = router
    return Mutant(router, {("o", 0, "credit"): early})


def _hold_credits(**params):
    """Seeded bug: input link 0 returns no credits (its input VCs starve)."""
    return Mutant(NocRouter(**params), {("i", 0, "credit"): lambda m, v: Const(0, len(v))})


NOC_BUGS = {"ignore_credits": _ignore_credits, "extra_credit": _extra_credit,
            "swap_body_vc": _swap_body_vc, "hold_credits": _hold_credits,
            "instant_credits": _instant_credits}


class NocHarness(FormalHarness):
    """A ``routing="table"`` router in a well-behaved environment, with its properties.

    Parameters
    ----------
    ports, vcs, buffer, slots
        As :class:`hdl.noc.router.NocRouter` (``payload_width`` is the tag width).
    dims : tuple of int
        Network dimensions (node count ``prod(dims)``).
    liveness : bool
        Check bounded progress (one-flit packets, prompt credits) instead of the safety
        properties.
    bound : int
        Liveness bound in cycles.
    routes : tuple of int or None
        The routing table (output port per destination); ``None``: any constant table.
    check_credits : bool
        Assert the output credit rule (off only to show that another property fails on
        its own).
    bug : str or None
        A key of :data:`NOC_BUGS`.
    """

    def __init__(self, *, ports=3, vcs=2, buffer=3, slots=2, dims=(2, 2), liveness=False,
                 bound=8, routes=None, check_credits=True, bug=None):
        self.n_tags = ports * vcs
        params = dict(ports=ports, vcs=vcs, buffer=buffer, slots=slots, dims=dims,
                      payload_width=max(1, (self.n_tags - 1).bit_length()), routing="table")
        self.liveness, self.bound, self.routes = liveness, bound, routes
        self.check_credits = check_credits
        super().__init__(NOC_BUGS[bug](**params) if bug else NocRouter(**params))

    def properties(self, m):
        dut = self.dut
        P, V, D = dut.ports, dut.vcs, dut.buffer
        n_nodes = dut.n_nodes

        if self.routes is None:
            # Any constant routing table of valid ports.
            first = Signal(init=1)
            m.d.sync += first.eq(0)
            m.d.comb += Assume(first | (dut.routes.as_value() == past(m, dut.routes.as_value())))
            for d in range(n_nodes):
                m.d.comb += Assume(dut.routes[d] < P)
        else:
            for d in range(n_nodes):
                m.d.comb += Assume(dut.routes[d] == self.routes[d])

        # -- injection port: well-formed packets tagged with their class ---------------------
        inj = dut.inject
        inj_open = Signal()
        inj_class = Signal(max(1, (V - 1).bit_length()))
        cls = Mux(inj.payload.head, inj.payload.dest[:len(inj_class)] if V > 1 else 0, inj_class)
        with m.If(inj.valid):
            m.d.comb += [Assume(inj.payload.head == ~inj_open), Assume(inj.payload.payload == cls)]
            if self.liveness:
                m.d.comb += Assume(inj.payload.head & inj.payload.tail)
        with m.If(inj.valid & inj.ready):
            m.d.sync += [inj_open.eq(~inj.payload.tail), inj_class.eq(cls)]

        # -- input links: credits, well-formed packets, tags ---------------------------------
        for k in range(P - 1):
            p = k + 1
            link = dut.i[k]
            f = link.flit.flit
            for v in range(V):
                up = Signal(range(D + 1), init=D, name=f"up_credits_i{p}_v{v}")
                is_open = Signal(name=f"in_open_i{p}_v{v}")
                arrive = link.valid & (link.flit.vc == v)
                back = link.credit[v]
                with m.If(arrive):
                    m.d.comb += [Assume(up != 0), Assume(f.head == ~is_open),
                                 Assume(f.payload == p * V + v)]
                    with m.If(f.head):
                        m.d.comb += Assume(f.dest < n_nodes)
                    if self.liveness:
                        m.d.comb += Assume(f.head & f.tail)
                    m.d.sync += is_open.eq(~f.tail)
                nxt = up - arrive + back
                m.d.sync += up.eq(nxt)
                if not self.liveness:
                    # Credits never exceed the flits received.
                    m.d.comb += Assert(up - arrive + back <= D)
                else:
                    held = Signal(range(self.bound + 2), name=f"wait_i{p}_v{v}")
                    with m.If((up == D) | back):
                        m.d.sync += held.eq(0)
                    with m.Elif(held <= self.bound):
                        m.d.sync += held.eq(held + 1)
                    m.d.comb += Assert(held <= self.bound)
            if V == 1:
                m.d.comb += Assume(link.flit.vc == 0)
            else:
                m.d.comb += Assume(~link.valid | (link.flit.vc < V))

        # -- outputs: credits, downstream mirror, wormhole contiguity, per-flow order --------
        def wormhole(send, flit, tag_name):
            is_open = Signal(name=f"{tag_name}_open")
            tag = Signal(flit.payload.shape(), name=f"{tag_name}_tag")
            with m.If(send):
                m.d.comb += Assert(flit.head == ~is_open)
                m.d.comb += Assert(~is_open | (flit.payload == tag))
                m.d.sync += [is_open.eq(~flit.tail), tag.eq(flit.payload)]

        ej = dut.eject
        wormhole(ej.valid & ej.ready, ej.payload, "eject")
        if self.liveness:
            m.d.comb += Assume(ej.ready)
            refused = Signal(range(self.bound + 2))
            with m.If(inj.valid & ~inj.ready):
                with m.If(refused <= self.bound):
                    m.d.sync += refused.eq(refused + 1)
            with m.Else():
                m.d.sync += refused.eq(0)
            m.d.comb += Assert(refused <= self.bound)

        for k in range(P - 1):
            r = k + 1
            o = dut.o[k]
            f = o.flit.flit
            mirrors = []
            for w in range(V):
                send = Signal(name=f"send_o{r}_v{w}")
                m.d.comb += send.eq(o.valid & (o.flit.vc == w))
                back = o.credit[w]
                down = ShadowQueue(m, f.dest.shape(), D, f"down_o{r}_v{w}",
                                   check_overflow=self.check_credits)
                pkt_dest = Signal(f.dest.shape(), name=f"pkt_dest_o{r}_v{w}")
                dest = Mux(f.head, f.dest, pkt_dest)
                with m.If(send & f.head):
                    m.d.sync += pkt_dest.eq(f.dest)
                # A credit comes back only for a flit downstream (the queue asserts that
                # it never holds more than `buffer` flits: no flit without a credit).
                m.d.comb += Assume(~back | down.nonempty)
                if self.liveness:
                    m.d.comb += Assume(back == down.nonempty)
                down.push(send, dest)
                down.pop(back)
                down.build()
                mirrors.append((send, dest, down))
                if not self.liveness:
                    wormhole(send, f, f"out_o{r}_v{w}")
            if not self.liveness and V > 1:
                for w, (send, dest, _) in enumerate(mirrors):
                    for w2, (_, _, other) in enumerate(mirrors):
                        if w2 == w:
                            continue
                        clash = Const(0)
                        for j, item in enumerate(other.items):
                            clash = clash | ((other.count > j) & (item == dest))
                        order_ok = Signal(name=f"order_ok_o{r}_v{w}_v{w2}")
                        m.d.comb += [order_ok.eq(~(send & f.head & clash)), Assert(order_ok)]
            if not self.liveness:
                m.d.comb += Assert(~o.valid | (o.flit.vc < V))
