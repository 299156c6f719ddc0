"""cocotb environment of :class:`hdl.noc.NocNetwork`: clock, reset, one stream driver per
injection port and one monitor per ejection port, and a scoreboard against :mod:`golden.noc`.

Used by the regression (``tb/test_noc_verilator.py``) and the benchmark (``tb/bench/noc.py``);
:func:`simulate` builds a network with Verilator (one build per configuration, shared by both)
and runs a cocotb test module against it.
"""

import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event

from golden import noc as golden_noc
from tb.cocotb_streams import CycleLoop, StreamDriver, StreamMonitor, reset_dut

__all__ = ["NocBench", "parse_dims", "destination", "network_verilog",
           "simulate", "CONFIGS", "WATCHDOG"]

WATCHDOG = 1000

# The regression's networks: name -> (topology, dims, vcs, buffer, scoreboard packets,
# slots). The two 2-VC networks cover one-slot (single-destination) VCs and the default
# two-slot mirror. The benchmark reuses these builds when it asks for the same network.
CONFIGS = {
    "mesh4x4": ("mesh", (4, 4), 2, 4, 6000, 1),
    "mesh4x4x4": ("mesh", (4, 4, 4), 1, 3, 2000, 2),
    "atleus": ("atleus", (4, 4, 4), 2, 4, 2000, 2),
}

# Verilator generates code per instance: 64 routers would be 64 copies of the router's C++.
# Hierarchical verilation builds each router module once; only the top's ports are public.
VERILATOR_OPTIONS = {"top_only": True, "hier_blocks": ("noc_router",)}


def parse_dims(text):
    """``"4x4x4"`` or ``"4,4,4"`` -> ``(4, 4, 4)``."""
    return tuple(int(d) for d in str(text).replace("x", ",").split(","))


def destination(topo, pattern, src, rng, hot):
    """A packet destination of traffic ``pattern``: ``uniform`` random, ``transpose``
    (``(x, y, z) -> (y, x, Z-1-z)``) or ``hotspot`` (every node to ``hot``)."""
    X, Y, Z = topo.shape3
    if pattern == "uniform":
        return rng.randrange(topo.n_nodes)
    if pattern == "transpose":
        x, y, z = topo.coords(src)
        return topo.node(y % X, x % Y, Z - 1 - z)
    if pattern == "hotspot":
        return hot
    raise ValueError(f"Pattern must be one of uniform, transpose, hotspot, not {pattern!r}")


_VERILOG = {}


def network_verilog(topology, dims, vcs, buffer, payload_width=32, slots=2,
                    routing_scheme="auto"):
    """The Verilog of a :class:`hdl.noc.NocNetwork` (generated once per configuration and
    process)."""
    from hdl.noc import NocNetwork
    from hdl.verilog import generate
    key = (topology, tuple(dims), vcs, buffer, payload_width, slots, routing_scheme)
    if key not in _VERILOG:
        _VERILOG[key] = generate(NocNetwork(topology, dims=tuple(dims), vcs=vcs, buffer=buffer,
                                            payload_width=payload_width, slots=slots,
                                            routing_scheme=routing_scheme), "noc_network")
    return _VERILOG[key]


def simulate(test_module, testcase, *, topology, dims, vcs, buffer, slots=2,
             routing_scheme="auto", extra_env=None):
    """Build the network with Verilator and run ``testcase`` of the cocotb ``test_module``.

    A regression network (:data:`CONFIGS`, default routing) keeps its regression build name
    (``noc_<config>``), so that the benchmark reuses its model; others are named by their
    parameters (the build folder's Verilog digest keeps routing schemes apart).
    """
    from tb import runner
    dims = tuple(dims)
    name = f"noc_bench_{topology}_{'x'.join(map(str, dims))}_v{vcs}_b{buffer}_s{slots}"
    for config, (t, d, v, b, _, k) in CONFIGS.items():
        if (t, tuple(d), v, b, k) == (topology, dims, vcs, buffer, slots) and \
                routing_scheme == "auto":
            name = f"noc_{config}"
    runner.run(network_verilog(topology, dims, vcs, buffer, slots=slots,
                               routing_scheme=routing_scheme), "noc_network", test_module,
               name=name, testcase=testcase, **VERILATOR_OPTIONS,
               extra_env={"NOC_TOPOLOGY": topology, "NOC_DIMS": ",".join(map(str, dims)),
                          "NOC_ROUTING_SCHEME": routing_scheme, **(extra_env or {})})


class NocBench:
    """Traffic and scoreboard for every node of a network, one :class:`tb.cocotb_streams.CycleLoop`.

    Packets are queued per source (:meth:`queue`) into that node's
    :class:`tb.cocotb_streams.StreamDriver`, which offers them back to back; each ejection
    port has a :class:`tb.cocotb_streams.StreamMonitor` with random backpressure. The head
    payload carries ``src`` (bits 0-7), ``seq`` (8-23) and the packet length (24-31); other
    payloads are random. Every ejected flit is checked at once: it is at its destination,
    packets arrive contiguously, and each packet equals, flit for flit, the oldest expected
    packet of its (source, destination) pair (no loss, duplication, corruption or
    reordering per pair). A watchdog fails the run when nothing is ejected for
    :data:`WATCHDOG` cycles while packets are in flight.

    Parameters
    ----------
    dut : the cocotb handle of a ``noc_network`` top.
    topology, dims, routing_scheme :
        The network (:func:`golden.noc.make_topology`, :func:`golden.noc.routing_table`).
    backpressure : float
        Probability that an ejection port's ``ready`` is low in a cycle.
    seed : int
        Seeds the payloads and the backpressure.
    payload_width : int
        The network's flit payload width.

    Members
    -------
    cycle : int
        The cycle that is driven next: while :meth:`step` waits, the cycle being sampled;
        after it, the following one (cycles of the :class:`tb.cocotb_streams.CycleLoop`).
    delivered : list
        ``(src, dst, flits, t_head_inject, t_tail_eject, created)`` per delivered packet.
    errors : int
        Error flags seen (heads refused for a destination outside the network).
    """

    def __init__(self, dut, topology, dims, *, backpressure=0.0, seed=0, payload_width=32,
                 routing_scheme="auto"):
        from hdl.noc.signatures import dest_bits_for, flit_layout
        self.dut = dut
        self.topo = golden_noc.make_topology(topology, dims)
        self.table = golden_noc.routing_table(self.topo, routing_scheme)
        self.N = self.topo.n_nodes
        self.layout = flit_layout(dest_bits=dest_bits_for(self.N), payload_width=payload_width)
        self.dest_shift = self.layout["dest"].offset
        self.payload_shift = self.layout["payload"].offset
        self.payload_mask = (1 << payload_width) - 1
        self.rng = random.Random(seed)
        self.backpressure = backpressure
        self.seed = seed
        self.expected = {}                                   # (src, dst) -> deque of packets
        self.open = [None] * self.N                          # packet being ejected per node
        self.in_flight = 0
        self.delivered = []
        self.errors = 0
        self.seq = {}
        self.pending = [0] * self.N                          # packets still due per node
        self._meta = [deque() for _ in range(self.N)]        # (record, flit index) queued
        self._last_move = 0
        self._generate = None
        self._tick = None
        self.loop = None
        self.cycle = 0

    def flit(self, head, tail, dest, payload):
        return head | (tail << 1) | (dest << self.dest_shift) | (payload << self.payload_shift)

    @property
    def outstanding(self):
        """Packets expected and not yet delivered."""
        return sum(len(q) for q in self.expected.values())

    async def start(self):
        """Start the clock, the streams and the loop, and reset the network."""
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.loop = CycleLoop(dut.clk)
        self._tick = Event()
        self.loop.on_drive(self._drive)
        self.drivers = [StreamDriver(dut, f"inject__{n}", loop=self.loop) for n in range(self.N)]
        self.monitors = [StreamMonitor(dut, f"eject__{n}", backpressure=self.backpressure,
                                       seed=self.seed * 1000 + n, loop=self.loop)
                         for n in range(self.N)]
        self.loop.on_sample(self._sample)
        await reset_dut(dut, cycles=3)
        self._tick.clear()
        await self._tick.wait()        # returns, as step() does, with the next cycle to run
        self._last_move = self.cycle

    def queue(self, src, dst, length, created=None):
        """Queue a packet of ``length`` flits from ``src`` to ``dst`` (``dst`` outside the
        network: refused by the network, not expected); returns its record."""
        seq = self.seq.get((src, dst), 0)
        self.seq[(src, dst)] = seq + 1
        flits = []
        for k in range(length):
            payload = (src | (seq & 0xFFFF) << 8 | length << 24) if k == 0 else \
                self.rng.getrandbits(32)
            flits.append(self.flit(int(k == 0), int(k == length - 1), dst,
                                   payload & self.payload_mask))
        record = {"src": src, "dst": dst, "flits": flits, "created": created,
                  "t_inject": None}
        if dst < self.N:
            self.expected.setdefault((src, dst), deque()).append(record)
            self.pending[dst] += 1
        self.drivers[src].send_many(flits)
        self._meta[src].extend((record, k) for k in range(length))
        return record

    def _drive(self):
        self.cycle = self.loop.cycle
        if self._generate is not None:
            self._generate(self)

    def _sample(self):
        cycle = self.loop.cycle
        for n in range(self.N):
            sent = self.drivers[n].cycles
            while sent:
                t = sent.popleft()
                record, k = self._meta[n].popleft()
                if k == 0:
                    record["t_inject"] = t
                    if record["dst"] < self.N:
                        self.in_flight += 1
            mon = self.monitors[n]
            while mon.received:
                self.eject(n, mon.received.popleft(), mon.cycles.popleft())
        error = self.dut.error.value.to_unsigned()
        if error:
            self.errors += bin(error).count("1")
        if self.in_flight and cycle - self._last_move > WATCHDOG:
            raise AssertionError(f"watchdog: no flit ejected for {WATCHDOG} cycles with "
                                 f"{self.in_flight} packets in flight (deadlock?)")
        self.cycle = cycle + 1
        self._tick.set()

    async def step(self, generate=None):
        """Run cycle :attr:`cycle`: ``generate(env)`` is called at its start (it may queue
        packets), and this returns once it was sampled."""
        self._generate = generate
        self._tick.clear()
        await self._tick.wait()
        self._generate = None

    def eject(self, n, word, cycle):
        """Check one flit ejected at node ``n``."""
        self._last_move = cycle
        head, tail = word & 1, (word >> 1) & 1
        dest = (word >> self.dest_shift) & ((1 << (self.payload_shift - self.dest_shift)) - 1)
        assert dest == n, f"flit for {dest} ejected at node {n} (cycle {cycle})"
        if head:
            assert self.open[n] is None, f"node {n}: head inside an open packet (not contiguous)"
            self.open[n] = [word]
        else:
            assert self.open[n] is not None, f"node {n}: body/tail flit without a head"
            self.open[n].append(word)
        if tail:
            flits = self.open[n]
            self.open[n] = None
            src = (flits[0] >> self.payload_shift) & 0xFF
            queue = self.expected.get((src, n))
            assert queue, f"node {n}: unexpected packet from {src} (duplicate or corrupt)"
            record = queue.popleft()
            assert flits == record["flits"], \
                f"node {n}: packet from {src} corrupt or out of order: {flits} != {record['flits']}"
            self.in_flight -= 1
            self.pending[n] -= 1
            self.delivered.append((src, n, len(flits), record["t_inject"], cycle,
                                   record["created"]))

    async def drain(self, limit=10**7, settle=20):
        """Run until every queued packet was delivered; then, with every ejection port
        ready, check for ``settle`` more cycles that nothing else is ejected."""
        while self.in_flight or any(self.pending) or any(d.pending for d in self.drivers):
            await self.step()
            assert self.cycle < limit, "drain limit reached"
        if settle:
            for mon in self.monitors:
                mon.backpressure = 0.0
            for _ in range(settle):
                await self.step()
        assert self.outstanding == 0 and all(o is None for o in self.open)

