"""NocNetwork: cocotb + Verilator regressions on 4x4, 4x4x4 and Atleus, against golden.noc.

- every (source, destination) pair delivers a single packet with exactly the contract latency
  (:func:`golden.noc.zero_load_latency` over :func:`golden.noc.hops`);
- a Constellation-style scoreboard under uniform random, transpose and hot-spot traffic at
  offered load 1.0 with random ejection backpressure: no flit lost, duplicated or corrupted,
  packets contiguous, in order per (source, destination), the network drains to empty, and a
  watchdog fails the run when no flit moves for 1,000 cycles while flits are in flight;
- a destination outside the network is refused at injection with the error flag.

The traffic is driven by one coroutine per cycle for all nodes (:class:`NocTraffic`), which the
benchmark (:mod:`tb.bench.noc`) reuses.
"""

import os
import random
from collections import deque

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from golden import noc as golden_noc
from hdl.noc import NocNetwork
from hdl.verilog import generate
from tb import runner

WATCHDOG = 1000


def parse_dims(text):
    return tuple(int(d) for d in str(text).replace("x", ",").split(","))


class NocTraffic:
    """Drives every injection stream and samples every ejection stream, one coroutine step
    per cycle, and keeps the scoreboard.

    Packets are queued per source (:meth:`queue`); each source offers its queue's flits back
    to back. The head payload carries ``src`` (bits 0-7), ``seq`` (8-23) and the packet
    length (24-31); other payloads are random. Ejected packets are compared flit by flit
    with the expected queue of their (source, destination) pair.
    """

    def __init__(self, dut, topology, dims, *, backpressure=0.0, seed=0, payload_width=32,
                 routing_scheme="auto"):
        self.dut = dut
        self.topo = golden_noc.make_topology(topology, dims)
        self.table = golden_noc.routing_table(self.topo, routing_scheme)
        self.N = self.topo.n_nodes
        from hdl.noc.router import dest_bits_for, flit_layout
        self.layout = flit_layout(dest_bits=dest_bits_for(self.N), payload_width=payload_width)
        self.dest_shift = self.layout["dest"].offset
        self.payload_shift = self.layout["payload"].offset
        self.payload_mask = (1 << payload_width) - 1
        self.rng = random.Random(seed)
        self.backpressure = backpressure
        self.inj_valid = [getattr(dut, f"inject__{n}__valid") for n in range(self.N)]
        self.inj_ready = [getattr(dut, f"inject__{n}__ready") for n in range(self.N)]
        self.inj_payload = [getattr(dut, f"inject__{n}__payload") for n in range(self.N)]
        self.ej_valid = [getattr(dut, f"eject__{n}__valid") for n in range(self.N)]
        self.ej_ready = [getattr(dut, f"eject__{n}__ready") for n in range(self.N)]
        self.ej_payload = [getattr(dut, f"eject__{n}__payload") for n in range(self.N)]
        self.sources = [deque() for _ in range(self.N)]      # flits (int, packet record)
        self.expected = {}                                   # (src, dst) -> deque of packets
        self.open = [None] * self.N                          # packet being ejected per node
        self.holding = [None] * self.N
        self.ready_now = [0] * self.N
        self.cycle = 0
        self.last_move = 0
        self.in_flight = 0
        self.delivered = []           # (src, dst, flits, t_head_inject, t_tail_eject, t_created)
        self.errors = 0
        self.seq = {}
        self.pending = [0] * self.N                          # packets still due per node

    def flit(self, head, tail, dest, payload):
        return head | (tail << 1) | (dest << self.dest_shift) | (payload << self.payload_shift)

    def queue(self, src, dst, length, created=None):
        seq = self.seq.get((src, dst), 0)
        self.seq[(src, dst)] = seq + 1
        flits = []
        for k in range(length):
            payload = (src | (seq & 0xFFFF) << 8 | length << 24) if k == 0 else \
                self.rng.getrandbits(32)
            flits.append(self.flit(int(k == 0), int(k == length - 1), dst, payload & self.payload_mask))
        record = {"src": src, "dst": dst, "flits": flits, "created": created,
                  "t_inject": None}
        if dst < self.N:
            self.expected.setdefault((src, dst), deque()).append(record)
            self.pending[dst] += 1
        for k, f in enumerate(flits):
            self.sources[src].append((f, record, k))
        return record

    @property
    def outstanding(self):
        return sum(len(q) for q in self.expected.values())

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        for n in range(self.N):
            self.inj_valid[n].value = 0
            self.ej_ready[n].value = 0
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def step(self, generate=None):
        """One cycle: drive at the falling edge, sample in its read-only phase."""
        if generate is not None:
            generate(self)
        for n in range(self.N):
            if self.holding[n] is None and self.sources[n]:
                self.holding[n] = self.sources[n].popleft()
                self.inj_payload[n].value = self.holding[n][0]
                self.inj_valid[n].value = 1
            ready = int(self.backpressure == 0 or self.rng.random() >= self.backpressure)
            if ready != self.ready_now[n]:
                self.ej_ready[n].value = ready
                self.ready_now[n] = ready
        await ReadOnly()
        for n in range(self.N):
            h = self.holding[n]
            if h is not None and self.inj_ready[n].value:
                f, record, k = h
                if k == 0:
                    record["t_inject"] = self.cycle
                    if record["dst"] < self.N:
                        self.in_flight += 1
                self.holding[n] = None
            if self.pending[n] and self.ready_now[n] and self.ej_valid[n].value:
                self.eject(n, self.ej_payload[n].value.to_unsigned())
        self.errors += bin(self.dut.error.value.to_unsigned()).count("1")
        await RisingEdge(self.dut.clk)
        self.cycle += 1
        await FallingEdge(self.dut.clk)
        for n in range(self.N):
            if self.holding[n] is None and not self.sources[n]:
                self.inj_valid[n].value = 0
        if self.in_flight and self.cycle - self.last_move > WATCHDOG:
            raise AssertionError(f"watchdog: no flit ejected for {WATCHDOG} cycles with "
                                 f"{self.in_flight} packets in flight (deadlock?)")

    def eject(self, n, word):
        self.last_move = self.cycle
        head, tail = word & 1, (word >> 1) & 1
        dest = (word >> self.dest_shift) & ((1 << (self.payload_shift - self.dest_shift)) - 1)
        assert dest == n, f"flit for {dest} ejected at node {n} (cycle {self.cycle})"
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
            self.delivered.append((src, n, len(flits), record["t_inject"], self.cycle,
                                   record["created"]))

    async def drain(self, limit=10**7, settle=20):
        """Run until every queued packet was delivered; then check the network is empty
        (nothing ejected anywhere for ``settle`` more cycles)."""
        while self.in_flight or any(self.pending) or any(self.sources) or \
                any(h is not None for h in self.holding):
            await self.step()
            assert self.cycle < limit, "drain limit reached"
        for n in range(self.N):
            self.ej_ready[n].value = 1
            self.ready_now[n] = 1
        for _ in range(settle):
            await ReadOnly()
            stray = [n for n in range(self.N) if self.ej_valid[n].value]
            assert not stray, f"flits ejected after the drain at nodes {stray}"
            await RisingEdge(self.dut.clk)
            self.cycle += 1
            await FallingEdge(self.dut.clk)
        assert self.outstanding == 0 and all(o is None for o in self.open)


def destination(topo, pattern, src, rng, hot):
    X, Y, Z = topo.shape3
    if pattern == "uniform":
        return rng.randrange(topo.n_nodes)
    if pattern == "transpose":
        x, y, z = topo.coords(src)
        return topo.node(y % X, x % Y, Z - 1 - z)
    if pattern == "hotspot":
        return hot
    raise ValueError(pattern)


def env_config():
    return (os.environ["NOC_TOPOLOGY"], parse_dims(os.environ["NOC_DIMS"]),
            int(os.environ.get("NOC_SEED", "1")))


# -- cocotb tests ---------------------------------------------------------------------------

def disjoint_rounds(topo, table):
    """All (src, dst) pairs grouped into rounds whose routes share no channel, source or
    destination: packets of one round never meet, so each sees zero-load latency. Longest
    routes are placed first (fewer rounds: 83 instead of 112 on the 4x4x4 mesh; Atleus needs
    512, the number of routes over its busiest channel)."""
    hop = golden_noc.hop_matrix(topo, table)
    todo = sorted(((s, d) for s in range(topo.n_nodes) for d in range(topo.n_nodes)),
                  key=lambda pair: -hop[pair])
    channels = {(s, d): {(a, int(table[a, d])) for a in golden_noc.path(topo, table, s, d)[:-1]}
                for s, d in todo}
    rounds = []
    while todo:
        used, srcs, dsts, this, rest = set(), set(), set(), [], []
        for s, d in todo:
            chans = channels[(s, d)]
            if s in srcs or d in dsts or chans & used:
                rest.append((s, d))
                continue
            used |= chans
            srcs.add(s)
            dsts.add(d)
            this.append((s, d))
        rounds.append(this)
        todo = rest
    return rounds


@cocotb.test()
async def noc_all_pairs_latency(dut):
    """Every (src, dst) pair, in rounds of non-interfering packets: exactly the contract
    latency, with packet lengths 1 to 4."""
    topology, dims, seed = env_config()
    tb = NocTraffic(dut, topology, dims, seed=seed)
    await tb.start()
    for pairs in disjoint_rounds(tb.topo, tb.table):
        first = len(tb.delivered)
        for src, dst in pairs:
            tb.queue(src, dst, 1 + (src + 3 * dst) % 4)
        await tb.drain(settle=0)
        for s, d, flits, t0, t1, _ in tb.delivered[first:]:
            want = golden_noc.zero_load_latency(golden_noc.hops(tb.topo, tb.table, s, d), flits)
            assert t1 - t0 == want, f"{s}->{d} ({flits} flits): {t1 - t0} cycles, contract {want}"
    assert sorted((s, d) for s, d, *_ in tb.delivered) == \
        [(s, d) for s in range(tb.N) for d in range(tb.N)]


async def run_scoreboard(dut, pattern):
    topology, dims, seed = env_config()
    packets = int(os.environ["NOC_PACKETS"])
    tb = NocTraffic(dut, topology, dims, backpressure=0.3, seed=seed)
    await tb.start()
    rng = random.Random(seed + 7)
    hot = rng.randrange(tb.N)
    per_node = max(1, packets // tb.N)
    # Offered load 1.0: every source always has flits to offer until its share is sent.
    for _ in range(per_node):
        for src in range(tb.N):
            tb.queue(src, destination(tb.topo, pattern, src, rng, hot), rng.randint(1, 4))
    await tb.drain()
    assert len(tb.delivered) == per_node * tb.N


@cocotb.test()
async def noc_scoreboard_uniform(dut):
    await run_scoreboard(dut, "uniform")


@cocotb.test()
async def noc_scoreboard_transpose(dut):
    await run_scoreboard(dut, "transpose")


@cocotb.test()
async def noc_scoreboard_hotspot(dut):
    await run_scoreboard(dut, "hotspot")


@cocotb.test()
async def noc_bad_destination(dut):
    """Heads for nodes outside the network are refused with the error flag; traffic
    before and after still arrives."""
    topology, dims, seed = env_config()
    tb = NocTraffic(dut, topology, dims, backpressure=0.2, seed=seed)
    await tb.start()
    rng = random.Random(seed)
    bad = 0
    for _ in range(4):
        for src in range(tb.N):
            tb.queue(src, rng.randrange(tb.N), rng.randint(1, 4))
            if rng.random() < 0.5:
                tb.queue(src, rng.randrange(tb.N, 1 << tb.layout["dest"].width), rng.randint(1, 4))
                bad += 1
    await tb.drain()
    assert tb.errors == bad, f"{tb.errors} error flags for {bad} refused packets"


# -- pytest ---------------------------------------------------------------------------------

CONFIGS = {
    # name: (topology, dims, vcs, buffer, scoreboard packets, slots); the two 2-VC networks
    # cover one-slot (single-destination) VCs and the default two-slot mirror
    "mesh4x4": ("mesh", (4, 4), 2, 4, 6000, 1),
    "mesh4x4x4": ("mesh", (4, 4, 4), 1, 3, 2000, 2),
    "atleus": ("atleus", (4, 4, 4), 2, 4, 2000, 2),
}

_VERILOG = {}


def network_verilog(topology, dims, vcs, buffer, payload_width=32, slots=2, routing_scheme="auto"):
    key = (topology, dims, vcs, buffer, payload_width, slots, routing_scheme)
    if key not in _VERILOG:
        text = generate(NocNetwork(topology, dims=dims, vcs=vcs, buffer=buffer,
                                   payload_width=payload_width, slots=slots,
                                   routing_scheme=routing_scheme), "noc_network")
        _VERILOG[key] = text
    return _VERILOG[key]


# Verilator generates code per instance: 64 routers would be 64 copies of the router's C++.
# Hierarchical verilation builds each router module once; only the top's ports are public.
VERILATOR_OPTIONS = {"top_only": True, "hier_blocks": ("noc_router",)}


def _run(config, testcase, **env):
    topology, dims, vcs, buffer, packets, slots = CONFIGS[config]
    runner.run(network_verilog(topology, dims, vcs, buffer, slots=slots), "noc_network",
               "tb.test_noc_verilator", name=f"noc_{config}", testcase=testcase,
               **VERILATOR_OPTIONS,
               extra_env={"NOC_TOPOLOGY": topology, "NOC_DIMS": ",".join(map(str, dims)),
                          "NOC_SEED": 3, **env})


@pytest.mark.parametrize("config", list(CONFIGS))
def test_noc_all_pairs_latency(config):
    _run(config, "noc_all_pairs_latency")


@pytest.mark.parametrize("config,pattern", [
    ("mesh4x4", "uniform"), ("mesh4x4", "transpose"), ("mesh4x4", "hotspot"),
    ("mesh4x4x4", "uniform"), ("atleus", "uniform"), ("atleus", "hotspot"),
])
def test_noc_scoreboard(config, pattern):
    packets = CONFIGS[config][4]
    if pattern == "hotspot":
        packets //= 4       # many-to-one drains at the one ejection port's rate
    _run(config, f"noc_scoreboard_{pattern}", NOC_PACKETS=packets)


def test_noc_bad_destination():
    _run("mesh4x4", "noc_bad_destination")
