"""NetworkInterface on a NoC: cocotb + Verilator regression.

Four :class:`hdl.noc.NetworkInterface` s on a 2x2 :class:`hdl.noc.NocNetwork` mesh
(:class:`tb.env.network_interface.NiMesh`): every node sends random vectors to every other
node (and to itself), some with tags the destination does not expect, with random idle
cycles on each ``i`` and random backpressure on each ``o``. The scoreboard
(:class:`tb.env.network_interface.NiMeshBench`) checks that each node receives exactly the
golden model's reassembly of the golden packets, bit for bit and in order per flow, and
that its error count equals the unexpected packets sent to it. One Verilator build.
"""

import os
import random

import cocotb

from tb import runner
from tb.env.network_interface import MESH_CONFIG, NiMesh, NiMeshBench


@cocotb.test()
async def ni_mesh_all_to_all(dut):
    """All-to-all random traffic with unexpected tags, idle cycles and backpressure."""
    seed = int(os.environ.get("NI_SEED", "3"))
    tb = NiMeshBench(dut, seed=seed, idle=0.3, backpressure=0.3)
    await tb.start()
    rng = random.Random(seed)
    for _ in range(int(os.environ.get("NI_VECTORS", "150"))):
        for src in range(tb.nodes):
            dst = rng.randrange(tb.nodes)
            tb.send(src, dst, good=rng.random() >= 0.15)
    assert any(tb.bad) and all(tb.seq.get((s, d)) for s in range(tb.nodes)
                               for d in range(tb.nodes) if s != d)
    await tb.finish()


@cocotb.test()
async def ni_mesh_saturated(dut):
    """Every node streams to one destination without idle cycles, the destination takes
    every vector at once: all arrive, in order per flow."""
    tb = NiMeshBench(dut, seed=5, idle=0.0, backpressure=0.0)
    await tb.start()
    for _ in range(12):
        for src in range(tb.nodes):
            tb.send(src, 3)
    await tb.finish()


@cocotb.test()
async def ni_mesh_zero_load_latency(dut):
    """One flow at a time, 1 and 3 vectors back to back, between every pair of nodes: the
    cycles from the first vector in to the last vector out equal
    :func:`golden.network_interface.stream_cycles` (the vectors reach ``o`` unchanged)."""
    from golden import noc as golden_noc
    from golden.network_interface import stream_cycles
    tb = NiMeshBench(dut, seed=7, idle=0.0, backpressure=0.0)
    await tb.start()
    topo = golden_noc.make_topology("mesh", MESH_CONFIG["dims"])
    hops = golden_noc.hop_matrix(topo, golden_noc.routing_table(topo))
    for src in range(tb.nodes):
        for dst in range(tb.nodes):
            for k in (1, 3):
                first = tb.drivers[src].sent
                start = len(tb.monitors[dst].received)
                for _ in range(k):
                    tb.send(src, dst)
                await tb.monitors[dst].wait_received(start + k, timeout=200)
                t_in = tb.drivers[src].cycles[first]
                t_out = tb.monitors[dst].cycles[start + k - 1]
                assert t_out - t_in == stream_cycles(tb.cfg, int(hops[src, dst]), k), \
                    f"{src}->{dst}, {k} vectors: {t_out - t_in} cycles"
    await tb.finish()


def test_network_interface_verilator():
    from hdl.verilog import generate
    top = NiMesh(**MESH_CONFIG)
    verilog = generate(top, "ni_mesh")
    runner.run(verilog, "ni_mesh", "tb.test_network_interface_verilator", name="ni_mesh_2x2",
               top_only=True, extra_env={"NI_SEED": 3, "NI_VECTORS": 150})
