# amaranth: UnusedElaboratable=no
"""NoC: golden-model checks, parameter validation and a small Amaranth-simulator run."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import noc as golden_noc
from hdl.noc import NocNetwork, NocRouter
from tb.packing import pack, unpack


# -- golden model ---------------------------------------------------------------------------

@pytest.mark.parametrize("topology,dims", [
    ("mesh", (4, 4)), ("mesh", (4, 4, 4)), ("mesh", (3, 5)), ("mesh_skip", (4, 4, 4)),
    ("atleus", (4, 4, 4)), ("atleus", (3, 2, 3)),
])
def test_routing_deadlock_free_and_complete(topology, dims):
    topo = golden_noc.make_topology(topology, dims)
    table = golden_noc.routing_table(topo)
    assert golden_noc.check_deadlock_free(topo, table)
    h = golden_noc.hop_matrix(topo, table)
    for s in range(topo.n_nodes):
        for d in range(topo.n_nodes):
            route = golden_noc.path(topo, table, s, d)
            assert route[0] == s and route[-1] == d and len(route) - 1 == h[s, d]
    if topology == "mesh":     # dimension order is minimal: Manhattan distance
        c = np.array([topo.coords(n) for n in range(topo.n_nodes)])
        np.testing.assert_array_equal(h, np.abs(c[:, None, :] - c[None, :, :]).sum(-1))


def test_deadlock_checker_finds_a_cycle():
    """Shortest-path routing on a 4x1 ring would deadlock (the classic counter-example)."""
    topo = golden_noc.Topology("ring", (4, 1))
    topo.ports = [[None] for _ in range(4)]
    for n in range(4):
        golden_noc._connect(topo.ports, n, (n + 1) % 4, "planar")
    table = np.zeros((4, 4), dtype=np.int64)
    for n in range(4):
        for d in range(4):
            if d != n:   # always clockwise: port towards n+1
                table[n, d] = golden_noc._port_to(topo, n, (n + 1) % 4)
    with pytest.raises(ValueError, match="can deadlock: channel-dependency cycle"):
        golden_noc.check_deadlock_free(topo, table)
    golden_noc.check_deadlock_free(topo, golden_noc.updown_table(topo, 0))


def test_atleus_structure():
    topo = golden_noc.atleus((4, 4, 4))
    kinds = {}
    for n, p, nb, q, kind in topo.links():
        kinds[kind] = kinds.get(kind, 0) + 1
        assert topo.ports[nb][q][:2] == (n, p)      # links are symmetric
    # Paper, Section V: 48 vertical TSV links + 16 skip links; 24 mesh + 3*15 chain links.
    assert kinds == {"tsv": 2 * 48, "skip": 2 * 16, "planar": 2 * (24 + 3 * 15)}
    curve = topo.curve
    assert sorted(curve) == [(x, y) for x in range(4) for y in range(4)]
    assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(curve, curve[1:]))
    # Fewer ports than the 3D mesh with skip links (Fig. 8(a)).
    skip = golden_noc.port_histogram(golden_noc.mesh_skip((4, 4, 4)))
    ours = golden_noc.port_histogram(topo)
    assert sum(k * v for k, v in ours.items()) < sum(k * v for k, v in skip.items())


def test_layer_pipeline():
    """Atleus' layer-to-layer traffic: one chain through every core, one hop per stage on
    Atleus except the hand-over to the next layer (chain hop + TSV)."""
    succ = golden_noc.layer_pipeline((4, 4, 4))
    starts = set(range(64)) - {d for d in succ if d is not None}
    assert succ.count(None) == 1 and len(starts) == 1
    order, n = [], starts.pop()
    while n is not None:
        order.append(n)
        n = succ[n]
    assert sorted(order) == list(range(64))                  # visits every core once
    topo = golden_noc.atleus((4, 4, 4))
    h = golden_noc.hop_matrix(topo, golden_noc.routing_table(topo))
    steps = [int(h[a, b]) for a, b in zip(order, order[1:])]
    assert steps == ([1, 1, 1, 2] * 16)[:-1]                 # skip, TSV, TSV, chain + TSV
    tiers = [topo.coords(n)[2] for n in order]
    assert tiers[:4] == [3, 0, 1, 2]
    with pytest.raises(ValueError, match="at least 3 tiers"):
        golden_noc.layer_pipeline((4, 4, 2))


def test_zero_load_latency_contract():
    assert golden_noc.zero_load_latency(0, 1) == 2
    np.testing.assert_array_equal(golden_noc.zero_load_latency(np.arange(4), 4),
                                  2 * np.arange(4) + 5)


# -- parameters -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    ({"ports": 1}, TypeError, r"ports must be an integer from 2 to 16, not 1"),
    ({"vcs": 3}, TypeError, r"vcs must be one of 1, 2, 4, not 3"),
    ({"buffer": 2}, ValueError, r"buffer must be at least the credit round trip of 3 flits, not 2"),
    ({"buffer": 0}, TypeError, r"buffer must be an integer from 1 to 256, not 0"),
    ({"payload_width": 0}, TypeError, r"payload_width must be an integer from 1 to 1024"),
    ({"routing": "xy"}, TypeError, r"routing must be one of dor, table, not 'xy'"),
    ({"dims": (4,)}, TypeError, r"dims must be a tuple of 2 or 3 integers"),
    ({"ports": 7}, ValueError, r"ports must be 5 for dimension-order routing"),
    ({"slots": 0}, TypeError, r"slots must be an integer from 1 to buffer \(8\), not 0"),
    ({"buffer": 4, "slots": 5}, TypeError, r"slots must be an integer from 1 to buffer \(4\), not 5"),
])
def test_router_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        NocRouter(**kwargs)


def test_network_bad_parameters():
    with pytest.raises(TypeError, match=r"topology must be one of mesh, mesh_skip, atleus"):
        NocNetwork("torus")
    with pytest.raises(ValueError, match=r"dims must have 3 entries for this topology"):
        NocNetwork("atleus", dims=(4, 4))
    with pytest.raises(TypeError, match=r"vcs must be one of 1, 2, 4, not 8"):
        NocNetwork("mesh", dims=(2, 2), vcs=8)
    with pytest.raises(ValueError, match=r"routing_scheme must be one of auto, dor on the mesh "
                                         r"topology, not 'rule'"):
        NocNetwork("mesh", dims=(2, 2), routing_scheme="rule")
    with pytest.raises(ValueError, match=r"routing_scheme must be one of auto, rule, updown on "
                                         r"the atleus topology, not 'xy'"):
        NocNetwork("atleus", routing_scheme="xy")


@pytest.mark.parametrize("argv,message", [
    (["--routing-scheme", "rule"], "--routing-scheme needs --topology"),
    (["--vcs", "1"], "--vcs needs --topology"),
    (["--topology", "mesh", "--routing-scheme", "rule"], "routing_scheme must be one of auto, dor"),
    (["--topology", "atleus", "--dims", "4x4"], "dims must have 3 entries"),
    (["--topology", "mesh", "--dims", "4xa"], "--dims must be X x Y or X x Y x Z integers"),
    (["--topology", "mesh", "--buffer", "2"], "buffer must be at least the credit round trip"),
    (["--topology", "mesh", "--traffic", "layer"], "--traffic layer needs a 3D network"),
    (["--topology", "mesh", "--seeds", "1,x"], "--seeds must be comma-separated integers"),
])
def test_bench_refuses_bad_options_before_any_build(argv, message, capsys, tmp_path):
    from tb.bench.noc import main
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--out-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())          # nothing built or written


# -- Amaranth simulator: single packets on a 2x2 mesh, exact contract latency ----------------

@pytest.mark.parametrize("topology,dims,scheme", [
    ("mesh", (2, 2), "auto"), ("atleus", (2, 1, 3), "auto"), ("atleus", (2, 2, 3), "rule"),
])
def test_network_single_packets_amaranth_sim(topology, dims, scheme):
    dut = NocNetwork(topology, dims=dims, vcs=2, buffer=3, payload_width=8, routing_scheme=scheme)
    assert (dut.table == golden_noc.routing_table(dut.graph, scheme)).all()
    topo, table, layout = dut.graph, dut.table, dut.flit_layout
    N = topo.n_nodes
    results = []

    async def bench(ctx):
        for n in range(N):
            ctx.set(dut.eject[n].ready, 1)
        cycle = 0
        for src in range(N):
            for dst in range(N):
                length = 1 + (src + dst) % 3
                flits = [{"head": int(k == 0), "tail": int(k == length - 1), "dest": dst,
                          "payload": (17 * src + 5 * dst + k) & 0xFF} for k in range(length)]
                got, t_head, t_tail = [], None, None
                sent = 0
                while len(got) < length:
                    if sent < length:
                        ctx.set(dut.inject[src].valid, 1)
                        ctx.set(dut.inject[src].payload.as_value(), pack(layout, flits[sent]))
                    else:
                        ctx.set(dut.inject[src].valid, 0)
                    _, _, inj_ready, ej_valid, ej_payload = await ctx.tick().sample(
                        dut.inject[src].ready, dut.eject[dst].valid, dut.eject[dst].payload.as_value())
                    if sent < length and inj_ready:
                        if sent == 0:
                            t_head = cycle
                        sent += 1
                    if ej_valid:
                        got.append(unpack(layout, ej_payload))
                        t_tail = cycle
                    cycle += 1
                    assert cycle < 10000
                ctx.set(dut.inject[src].valid, 0)
                results.append((src, dst, length, got == flits, t_tail - t_head))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for src, dst, length, ok, latency in results:
        assert ok, (src, dst)
        assert latency == golden_noc.zero_load_latency(golden_noc.hops(topo, table, src, dst), length)


# -- Amaranth simulator: packet-level switch arbitration --------------------------------------

def test_router_packets_cross_a_link_back_to_back():
    """Two 4-flit packets for the +x output, one from the local port and one from the -x
    link, for different destinations (so both VCs are open to them), arriving together: the
    winner's four flits leave on four consecutive cycles, then the other packet's. Per-flit
    round robin would interleave them on the two VCs and stretch both packets."""
    dut = NocRouter(5, vcs=2, buffer=8, payload_width=8, dims=(4, 4))
    layout = dut.flit_layout
    link_layout = dut.i[1].flit.shape()
    sent = []

    def flit(k, payload):
        # The router sits at (1, 1): (2, 1) and (3, 1) both lie +x.
        dest = 2 + 4 * 1 if payload >> 4 == 1 else 3 + 4 * 1
        return {"head": int(k == 0), "tail": int(k == 3), "dest": dest, "payload": payload}

    async def bench(ctx):
        ctx.set(dut.coord.as_value(), pack(dut.coord_layout, {"x": 1, "y": 1, "z": 0}))
        ctx.set(dut.eject.ready, 1)
        for k in range(4):                  # fill both input buffers in the same cycles
            ctx.set(dut.inject.valid, 1)
            ctx.set(dut.inject.payload.as_value(), pack(layout, flit(k, 0x10 + k)))
            ctx.set(dut.i[1].valid, 1)       # input port 2 (-x): a packet travelling +x
            ctx.set(dut.i[1].flit.as_value(), pack(link_layout, {"vc": 1, "flit": flit(k, 0x20 + k)}))
            _, _, ready, valid, word = await ctx.tick().sample(
                dut.inject.ready, dut.o[0].valid, dut.o[0].flit.as_value())
            assert ready
            if valid:
                sent.append(unpack(link_layout, word))
        ctx.set(dut.inject.valid, 0)
        ctx.set(dut.i[1].valid, 0)
        for _ in range(12):
            _, _, valid, word = await ctx.tick().sample(dut.o[0].valid, dut.o[0].flit.as_value())
            if valid:
                sent.append(unpack(link_layout, word))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    payloads = [f["flit"]["payload"] for f in sent]
    assert sorted(payloads) == [0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23]
    packets = [p >> 4 for p in payloads]
    assert packets in ([1] * 4 + [2] * 4, [2] * 4 + [1] * 4), payloads
