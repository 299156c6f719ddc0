"""NocNetwork: cocotb + Verilator regressions on 4x4, 4x4x4 and Atleus, against golden.noc.

- every (source, destination) pair delivers a single packet with exactly the contract latency
  (:func:`golden.noc.zero_load_latency` over :func:`golden.noc.hops`);
- a Constellation-style scoreboard under uniform random, transpose and hot-spot traffic at
  offered load 1.0 with random ejection backpressure: no flit lost, duplicated or corrupted,
  packets contiguous, in order per (source, destination), the network drains to empty, and a
  watchdog fails the run when no flit moves for 1,000 cycles while flits are in flight;
- a destination outside the network is refused at injection with the error flag.

The environment (clock, reset, stream drivers and monitors, scoreboard) is
:class:`tb.env.noc.NocBench`, which the benchmark (:mod:`tb.bench.noc`) uses too.
"""

import os
import random

import cocotb
import pytest

from golden import noc as golden_noc
from tb.env.noc import CONFIGS, NocBench, destination, parse_dims, simulate


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
    tb = NocBench(dut, topology, dims, seed=seed)
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
    tb = NocBench(dut, topology, dims, backpressure=0.3, seed=seed)
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
    tb = NocBench(dut, topology, dims, backpressure=0.2, seed=seed)
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

def _run(config, testcase, **env):
    topology, dims, vcs, buffer, packets, slots = CONFIGS[config]
    simulate("tb.test_noc_verilator", testcase, topology=topology, dims=dims, vcs=vcs,
             buffer=buffer, slots=slots, extra_env={"NOC_SEED": 3, **env})


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
