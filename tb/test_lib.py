# amaranth: UnusedElaboratable=no
"""hdl.lib: round-robin arbiter, stream merge and queue against reference models, cycle by
cycle, in the Amaranth simulator; parameter validation."""

import collections
import random

import pytest
from amaranth import ClockDomain, Module
from amaranth.lib import data
from amaranth.sim import Simulator

from hdl.lib import Queue, RoundRobin, StreamMerge


class RoundRobinModel:
    """The arbitration rule: the first requester at or after the pointer wins; an advance
    moves the pointer past the winner, or with ``hold`` onto it until ``last``."""

    def __init__(self, count, hold):
        self.count, self.hold, self.ptr = count, hold, 0

    def grant(self, requests):
        for j in range(self.count):
            i = (self.ptr + j) % self.count
            if requests[i]:
                return i
        return None

    def advance(self, requests, last=True):
        g = self.grant(requests)
        if g is not None and self.count > 1:
            self.ptr = (g + 1) % self.count if (last or not self.hold) else g


def _run(dut, bench):
    m = Module()            # a sync domain even for stateless configurations (count 1)
    m.domains.sync = ClockDomain()
    m.submodules.dut = dut
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("hold", [False, True])
def test_round_robin_matches_model(count, hold):
    rng = random.Random(count * 10 + hold)
    dut = RoundRobin(count, hold=hold)
    model = RoundRobinModel(count, hold)
    seen = set()

    async def bench(ctx):
        for _ in range(400):
            req = [rng.random() < 0.5 for _ in range(count)]
            adv = rng.random() < 0.7
            last = rng.random() < 0.4
            ctx.set(dut.requests, sum(b << i for i, b in enumerate(req)))
            ctx.set(dut.advance, adv)
            if hold:
                ctx.set(dut.last, last)
            g = model.grant(req)
            assert ctx.get(dut.valid) == (g is not None)
            assert ctx.get(dut.grant) == (0 if g is None else 1 << g)
            assert ctx.get(dut.index) == (g or 0)
            seen.add(g)
            if adv:
                model.advance(req, last)
            await ctx.tick()
    _run(dut, bench)
    assert seen == set(range(count)) | {None}


def test_round_robin_hold_keeps_priority_until_last():
    """Held: requester 0 keeps winning against 1 until its ``last``; then 1 wins."""
    dut = RoundRobin(2, hold=True)

    async def bench(ctx):
        ctx.set(dut.requests, 0b11)
        ctx.set(dut.advance, 1)
        grants = []
        for last in (0, 0, 1, 0, 1, 0):
            ctx.set(dut.last, last)
            grants.append(ctx.get(dut.index))
            await ctx.tick()
        assert grants == [0, 0, 0, 1, 1, 0]
    _run(dut, bench)


FLIT = data.StructLayout({"last": 1, "src": 3, "seq": 8})


@pytest.mark.parametrize("count,last", [(1, None), (3, None), (4, None), (3, "last")])
def test_stream_merge_matches_model(count, last):
    """Random valid/payload on every input and random ready on the output: each cycle,
    ``o`` and the inputs' ``ready`` are what the arbitration rule gives, and a stalled ``o``
    keeps its grant (the stream rule) whatever the other inputs do."""
    rng = random.Random(count)
    dut = StreamMerge(FLIT, count, last=last)
    model = RoundRobinModel(count, last is not None)
    seq = [0] * count
    pending = [None] * count        # an offered item stays until it is taken
    out = []
    held = [None]                   # the input a stalled output holds the grant for
    stalls = [0]

    async def bench(ctx):
        for _ in range(500):
            for k in range(count):
                if pending[k] is None and rng.random() < 0.6:
                    pending[k] = {"last": int(rng.random() < 0.3), "src": k, "seq": seq[k]}
                    seq[k] = (seq[k] + 1) % 256
                ctx.set(dut.i[k].valid, pending[k] is not None)
                if pending[k] is not None:
                    ctx.set(dut.i[k].payload, pending[k])
            ready = rng.random() < 0.8
            ctx.set(dut.o.ready, ready)
            req = [p is not None for p in pending]
            g = model.grant(req) if held[0] is None else held[0]
            assert ctx.get(dut.o.valid) == (g is not None)
            for k in range(count):
                assert ctx.get(dut.i[k].ready) == (ready and (0 if g is None else g) == k)
            if g is not None:
                assert ctx.get(dut.grant) == g
                got = ctx.get(dut.o.payload)
                assert (got.last, got.src, got.seq) == \
                    (pending[g]["last"], g, pending[g]["seq"])
                if ready:
                    out.append(pending[g])
                    model.advance([k == g for k in range(count)] if held[0] is not None
                                  else req, pending[g]["last"])
                    pending[g] = None
                    stalls[0] += held[0] is not None
                held[0] = None if ready else g
            await ctx.tick()
    _run(dut, bench)
    for k in range(count):      # each input's items in order, none lost
        got = [o["seq"] for o in out if o["src"] == k]
        assert got == [n % 256 for n in range(len(got))]
    assert len(out) > 200


@pytest.mark.parametrize("depth", [1, 3, 8])
@pytest.mark.parametrize("buffered", [False, True])
def test_queue_matches_model(depth, buffered):
    """Random pushes and pops against a deque: in order, never in the cycle it is accepted,
    and at the head of the queue from the next cycle (unbuffered) or within two (buffered)."""
    rng = random.Random(depth)
    dut = Queue(FLIT, depth=depth, buffered=buffered)
    model = collections.deque()
    arrivals = collections.deque()      # cycle each held item was accepted
    n_out = 0

    async def bench(ctx):
        nonlocal n_out
        seq = 0
        for cycle in range(600):
            push = rng.random() < 0.55
            pop = rng.random() < 0.5
            ctx.set(dut.i.valid, push)
            ctx.set(dut.i.payload, {"last": seq & 1, "src": 0, "seq": seq % 256})
            ctx.set(dut.o.ready, pop)
            if not buffered:
                assert ctx.get(dut.level) == len(model)
                assert ctx.get(dut.i.ready) == (len(model) < depth)
                assert ctx.get(dut.o.valid) == (len(model) > 0)
            if model and cycle - arrivals[0] >= (2 if buffered else 1):
                assert ctx.get(dut.o.valid)
            if ctx.get(dut.o.valid):
                assert model and cycle - arrivals[0] >= 1
                assert ctx.get(dut.o.payload).seq == model[0]
                if pop:
                    model.popleft()
                    arrivals.popleft()
                    n_out += 1
            if push and ctx.get(dut.i.ready):
                model.append(seq % 256)
                arrivals.append(cycle)
                seq += 1
            await ctx.tick()
    _run(dut, bench)
    assert n_out > 100


def test_parameter_errors():
    with pytest.raises(TypeError, match=r"^Count must be a positive integer, not 0$"):
        RoundRobin(0)
    with pytest.raises(TypeError, match=r"^Count must be a positive integer, not True$"):
        RoundRobin(True)
    with pytest.raises(TypeError, match=r"^Hold must be a bool, not 1$"):
        RoundRobin(2, hold=1)
    with pytest.raises(TypeError, match=r"^Count must be a positive integer, not 2\.0$"):
        StreamMerge(8, 2.0)
    with pytest.raises(TypeError, match=r"^Shape must be a shape-like object, not 'x'$"):
        StreamMerge("x", 2)
    with pytest.raises(TypeError, match=r"^Last must be a payload field name or None, not 1$"):
        StreamMerge(FLIT, 2, last=1)
    with pytest.raises(ValueError, match=r"^Last must name a 1-bit field of the payload "
                                         r"layout, not 'seq'"):
        StreamMerge(FLIT, 2, last="seq")
    with pytest.raises(ValueError, match=r"^Last must name a 1-bit field"):
        StreamMerge(8, 2, last="last")
    with pytest.raises(TypeError, match=r"^Depth must be a positive integer, not 0$"):
        Queue(8, depth=0)
    with pytest.raises(TypeError, match=r"^Shape must be a shape-like object, not None$"):
        Queue(None, depth=4)
    with pytest.raises(TypeError, match=r"^Buffered must be a bool, not 'yes'$"):
        Queue(8, depth=4, buffered="yes")
