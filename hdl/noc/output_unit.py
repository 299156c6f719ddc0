"""A router's output unit: output register, credits, VC ownership and destination slots."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .config import check_unit

__all__ = ["NocOutputUnit"]


class NocOutputUnit(wiring.Component):
    """Output port ``port`` of a :class:`hdl.noc.NocRouter`.

    The flit that crosses the switch (``i``) is in the output register at the next clock
    edge: on the link (ports 1 and up; valid for one cycle, no handshake) or on the ejection
    stream (port 0; held until taken). Per output VC the unit reports to the VC allocator
    (``state``) whether a flit may be sent now (``avail``: a credit, counting one returning
    this cycle, or a free ejection register) and whether a packet holds the VC (``busy``: from
    its head to its tail). Credits start at ``buffer`` per VC, fall per flit sent and rise
    per credit returned. With more than one VC, ``slots`` destination slots per VC mirror the
    packets still downstream (sent and not all credited back): a head for a new destination
    starts a slot, consecutive packets for one destination share it, and the oldest slot
    leaves when its flits are all credited back and no packet is still being sent into it.

    Parameters
    ----------
    config : RouterConfig
        The router's parameters.
    port : int
        The output port, 0 (ejection) to ``config.ports - 1``.

    Members
    -------
    i : In(TraversalSignature(...))
        The flit crossing the switch to this port.
    eject : Out(stream.Signature(flit_layout))
        Port 0 only: the ejection stream.
    o : Out(NocLinkSignature(...))
        Ports 1 and up: the output link.
    state : Out(OutputVcSignature(...)).array(vcs or 1)
        Each output VC's state for VC allocation.
    """

    def __init__(self, config, *, port):
        check_unit(config, port)
        self._config, self._port = config, port
        c = config
        members = {"i": In(c.traversal_signature)}
        if port == 0:
            members["eject"] = Out(stream.Signature(c.flit_layout))
        else:
            members["o"] = Out(c.link_signature)
        members["state"] = Out(c.output_vc_signature(port)).array(c.output_vcs(port))
        super().__init__(members)

    config = property(lambda self: self._config)
    port = property(lambda self: self._port)

    def elaborate(self, platform):
        m = Module()
        c, r = self._config, self._port
        D, K = c.buffer, c.tracked_slots
        flit = self.i.flit
        sent = []
        for w, st in enumerate(self.state):
            s = Signal(name=f"sent_v{w}")
            m.d.comb += s.eq(self.i.valid & (self.i.vc == w))
            sent.append(s)
            # VC ownership: taken by a head (not tail), given back by the tail.
            with m.If(s & flit.head & ~flit.tail):
                m.d.sync += st.busy.eq(1)
            with m.If(s & flit.tail):
                m.d.sync += st.busy.eq(0)

        if r == 0:
            ej = self.eject
            m.d.comb += self.state[0].avail.eq(~ej.valid | ej.ready)
            with m.If(self.i.valid):
                m.d.sync += [ej.valid.eq(1), ej.payload.eq(flit)]
            with m.Elif(ej.ready):
                m.d.sync += ej.valid.eq(0)
            return m

        o = self.o
        m.d.sync += [o.valid.eq(self.i.valid), o.flit.flit.eq(flit), o.flit.vc.eq(self.i.vc)]
        for w, st in enumerate(self.state):
            credits = Signal(range(D + 1), init=D, name=f"credits_v{w}")
            m.d.comb += st.avail.eq((credits != 0) | o.credit[w])
            m.d.sync += credits.eq(credits + o.credit[w] - sent[w])
            if K:
                self._slots(m, w, st, sent[w], o.credit[w])
        return m

    def _slots(self, m, w, st, sent, credit):
        """Per output VC, a ring of K slots mirrors the packets still downstream (sent, and
        not yet all credited back): slot = (destination, flits downstream)."""
        D, K = self._config.buffer, self._config.tracked_slots
        flit = self.i.flit
        cnt = [Signal(range(D + 1), name=f"slot_v{w}_{k}_cnt") for k in range(K)]
        rd = Signal(range(K), name=f"slot_v{w}_rd")
        wr = Signal(range(K), name=f"slot_v{w}_wr")
        used = Signal(range(K + 1), name=f"slot_v{w}_used")
        newest = Signal(range(K), name=f"slot_v{w}_newest")
        m.d.comb += newest.eq(Mux(wr == 0, K - 1, wr - 1))
        # slot k is in use: (k - rd) mod K < used
        for k in range(K):
            m.d.comb += st.live[k].eq((used != 0) & (
                Mux(wr > rd, (k >= rd) & (k < wr), (k >= rd) | (k < wr)) | (used == K)))
        with m.Switch(newest):
            for k in range(K):
                with m.Case(k):
                    m.d.comb += st.newest.eq(st.dest[k])
        m.d.comb += st.full.eq(used == K)

        start = Signal(name=f"slot_v{w}_start")     # head starts a new slot
        m.d.comb += start.eq(sent & flit.head & ((used == 0) | (st.newest != flit.dest)))
        target = Mux(start, wr, newest)               # slot of the flit sent
        cnt_next = [Signal(range(D + 1), name=f"slot_v{w}_{k}_cnt_next") for k in range(K)]
        for k in range(K):
            m.d.comb += cnt_next[k].eq(cnt[k] + (sent & (target == k)) - (credit & (rd == k)))
            m.d.sync += cnt[k].eq(cnt_next[k])
        with m.If(start):
            with m.Switch(wr):
                for k in range(K):
                    with m.Case(k):
                        m.d.sync += st.dest[k].eq(flit.dest)
            m.d.sync += wr.eq(Mux(wr == K - 1, 0, wr + 1))
        # The oldest slot leaves when its flits are all credited back and no packet is still
        # being sent into it (it is not the newest slot of a busy VC).
        rd_cnt_zero = Signal(name=f"slot_v{w}_rd_zero")
        with m.Switch(rd):
            for k in range(K):
                with m.Case(k):
                    m.d.comb += rd_cnt_zero.eq(cnt_next[k] == 0)
        still_open = Signal(name=f"slot_v{w}_open")
        busy_next = (st.busy & ~(sent & flit.tail)) | (sent & flit.head & ~flit.tail)
        m.d.comb += still_open.eq(busy_next & (rd == newest) & ~start)
        leave = Signal(name=f"slot_v{w}_leave")
        m.d.comb += leave.eq((used != 0) & rd_cnt_zero & ~still_open)
        with m.If(leave):
            m.d.sync += rd.eq(Mux(rd == K - 1, 0, rd + 1))
        m.d.sync += used.eq(used + start - leave)
