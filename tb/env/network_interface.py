"""Network interface test environment: stimulus and expected results from
:mod:`golden.network_interface`, a small network of interfaces (:class:`NiMesh`), and its
cocotb bench (:class:`NiMeshBench`: clock, reset, drivers, monitors, scoreboard).

Used by ``tb/test_network_interface_sim.py`` (stimulus) and
``tb/test_network_interface_verilator.py`` (the mesh and its bench).
"""

import random
from collections import deque

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.network_interface import Expect, NiConfig, depacketize, packetize

__all__ = ["random_vector", "send_item", "config_item", "random_tag", "bad_tag", "NiMesh",
           "NiMeshBench", "MESH_CONFIG"]

# The Verilator regression's network: a 2x2 mesh; vectors of 6 12-bit elements in 32-bit
# payloads (72 bits: 3 body flits, the last one partly padding).
MESH_CONFIG = dict(dims=(2, 2), vcs=2, buffer=4, payload_width=32, elem_width=12, length=6,
                   layer_bits=4, stage_bits=4, offset_bits=12)


def random_vector(rng, cfg):
    """``length`` random elements of ``elem_width`` bits (extremes included now and then)."""
    hi = (1 << cfg.elem_width) - 1
    return [rng.choice((0, hi, rng.randrange(hi + 1), rng.randrange(hi + 1)))
            for _ in range(cfg.length)]


def random_tag(rng, cfg, expect):
    """A tag that ``expect`` expects (offsets at both ends of its range now and then)."""
    offset = rng.choice((expect.first, expect.last, rng.randint(expect.first, expect.last)))
    return (expect.layer, expect.stage, offset)


def bad_tag(rng, cfg, expect):
    """A tag that ``expect`` does not expect: another layer or stage, or an offset just (or
    far) outside its range."""
    choices = []
    lmax, smax, omax = ((1 << b) - 1 for b in (cfg.layer_bits, cfg.stage_bits, cfg.offset_bits))
    if lmax:
        choices.append(((expect.layer + rng.randint(1, lmax)) % (lmax + 1), expect.stage,
                        expect.first))
    if smax:
        choices.append((expect.layer, (expect.stage + rng.randint(1, smax)) % (smax + 1),
                        expect.last))
    if expect.first > 0:
        choices.append((expect.layer, expect.stage, expect.first - 1))
    if expect.last < omax:
        choices.append((expect.layer, expect.stage, rng.randint(expect.last + 1, omax)))
    return rng.choice(choices)


def send_item(dest, tag, vector):
    """The ``i`` payload of a vector, for :func:`tb.packing.pack`."""
    layer, stage, offset = tag
    return {"data": list(vector), "dest": dest,
            "tag": {"layer": layer, "stage": stage, "offset": offset}}


def config_item(expect=None, *, clear=False):
    """A ``cfg`` payload: set ``expect`` (an :class:`golden.network_interface.Expect`) and/or
    clear the errors."""
    item = {"set": int(expect is not None), "clear": int(clear)}
    if expect is not None:
        item.update(layer=expect.layer, stage=expect.stage, first=expect.first, last=expect.last)
    return item


def tag_of(item):
    t = item["tag"]
    return (t["layer"], t["stage"], t["offset"])


class NiMesh(wiring.Component):
    """One :class:`hdl.noc.NetworkInterface` per node of a :class:`hdl.noc.NocNetwork` mesh
    (a test top: the interfaces' vector, config and error ports per node).

    Members
    -------
    i, o, cfg : the interfaces' ports, ``.array(nodes)``
    errors : Out(16).array(nodes)
    """

    def __init__(self, *, dims=(2, 2), vcs=2, buffer=4, payload_width=32, elem_width=12,
                 length=6, layer_bits=4, stage_bits=4, offset_bits=12):
        from hdl.noc.network_interface import config_layout, receive_layout, send_layout
        n = 1
        for d in dims:
            n *= d
        self.nodes = n
        self.net_params = dict(dims=tuple(dims), vcs=vcs, buffer=buffer,
                               payload_width=payload_width)
        self.ni_params = dict(payload_width=payload_width, elem_width=elem_width, length=length,
                              nodes=n, layer_bits=layer_bits, stage_bits=stage_bits,
                              offset_bits=offset_bits)
        self.ni_config = cfg = NiConfig(**self.ni_params)
        super().__init__({
            "i": In(stream.Signature(send_layout(cfg))).array(n),
            "o": Out(stream.Signature(receive_layout(cfg))).array(n),
            "cfg": In(stream.Signature(config_layout(cfg))).array(n),
            "errors": Out(16).array(n),
        })

    def elaborate(self, platform):
        from hdl.noc import NocNetwork
        from hdl.noc.network_interface import NetworkInterface
        m = Module()
        m.submodules.net = net = NocNetwork("mesh", **self.net_params)
        for n in range(self.nodes):
            m.submodules[f"ni{n}"] = ni = NetworkInterface(**self.ni_params)
            wiring.connect(m, wiring.flipped(self.i[n]), ni.i)
            wiring.connect(m, ni.o, wiring.flipped(self.o[n]))
            wiring.connect(m, wiring.flipped(self.cfg[n]), ni.cfg)
            wiring.connect(m, ni.inject, net.inject[n])
            wiring.connect(m, net.eject[n], ni.eject)
            m.d.comb += self.errors[n].eq(ni.errors)
        return m


class NiMeshBench:
    """cocotb bench of a :class:`NiMesh`: clock, reset, a driver per node on ``i`` (random
    idle) and ``cfg``, a monitor per node on ``o`` (random backpressure), and a scoreboard.

    Node ``n`` expects layer 1, stage ``n`` and every offset (:meth:`expect`). Each vector's
    offset carries its source (top bits) and its sequence number in its flow, so a received
    vector names its flow; :meth:`check` compares each node's vectors, in order per flow,
    with the golden model's reassembly of the golden packets (:func:`golden.network_interface.
    packetize` -> :func:`~golden.network_interface.depacketize`), and each node's error
    count with the unexpected packets sent to it.
    """

    def __init__(self, dut, *, seed=0, idle=0.3, backpressure=0.3, **params):
        from hdl.noc.network_interface import config_layout, receive_layout, send_layout
        p = dict(MESH_CONFIG)
        p.update(params)
        self.dut = dut
        self.nodes = 1
        for d in p["dims"]:
            self.nodes *= d
        self.cfg = NiConfig(payload_width=p["payload_width"], elem_width=p["elem_width"],
                            length=p["length"], nodes=self.nodes, layer_bits=p["layer_bits"],
                            stage_bits=p["stage_bits"], offset_bits=p["offset_bits"])
        self.layouts = (send_layout(self.cfg), receive_layout(self.cfg), config_layout(self.cfg))
        self.rng = random.Random(seed)
        self.seed, self.idle, self.backpressure = seed, idle, backpressure
        self.src_shift = self.cfg.offset_bits - max(1, (self.nodes - 1).bit_length())
        self.expected = {}            # (src, dst) -> deque of (tag, vector)
        self.bad = [0] * self.nodes   # unexpected packets sent to each node
        self.seq = {}
        self.sent = 0

    def expect(self, n):
        return Expect(layer=1, stage=n, first=0, last=(1 << self.cfg.offset_bits) - 1)

    async def start(self):
        import cocotb
        from cocotb.clock import Clock
        from tb.cocotb_streams import StreamDriver, StreamMonitor, reset_dut
        dut = self.dut
        send, recv, conf = self.layouts
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.drivers = [StreamDriver(dut, f"i__{n}", send, idle=self.idle,
                                     seed=self.seed * 100 + n) for n in range(self.nodes)]
        self.cfg_drivers = [StreamDriver(dut, f"cfg__{n}", conf) for n in range(self.nodes)]
        self.monitors = [StreamMonitor(dut, f"o__{n}", recv, backpressure=self.backpressure,
                                       seed=self.seed * 100 + 50 + n) for n in range(self.nodes)]
        await reset_dut(dut, cycles=3)
        for n in range(self.nodes):
            self.cfg_drivers[n].send(config_item(self.expect(n)))
        for n in range(self.nodes):
            await self.cfg_drivers[n].wait_sent()

    def send(self, src, dst, *, good=True):
        """Queue a random vector from ``src`` to ``dst``, with a tag ``dst`` expects (or
        not, with ``good=False``)."""
        seq = self.seq.get((src, dst), 0)
        self.seq[(src, dst)] = seq + 1
        offset = (src << self.src_shift) | (seq % (1 << self.src_shift))
        exp = self.expect(dst)
        tag = (exp.layer, exp.stage, offset) if good else \
            (exp.layer, (exp.stage + 1) % (1 << self.cfg.stage_bits), offset)
        vector = random_vector(self.rng, self.cfg)
        flits = packetize(self.cfg, dst, tag, vector)
        delivered, errors, _ = depacketize(self.cfg, flits, exp)
        assert len(delivered) == int(good) and len(errors) == int(not good)
        if good:
            self.expected.setdefault((src, dst), deque()).append(delivered[0])
        else:
            self.bad[dst] += 1
        self.drivers[src].send(send_item(dst, tag, vector))
        self.sent += 1

    async def finish(self, *, timeout=20000):
        """Wait for every expected vector, then check order, contents and error counts."""
        from cocotb.triggers import ClockCycles
        want = [0] * self.nodes
        for (src, dst), q in self.expected.items():
            want[dst] += len(q)
        for n in range(self.nodes):
            await self.monitors[n].wait_received(want[n], timeout=timeout)
        for n in range(self.nodes):
            await self.drivers[n].wait_sent()
        await ClockCycles(self.dut.clk, 50)       # stragglers (dropped or extra) land
        for dst in range(self.nodes):
            got = list(self.monitors[dst].received)
            assert len(got) == want[dst], f"node {dst}: {len(got)} vectors, expected {want[dst]}"
            for item in got:
                tag = tag_of(item)
                src = tag[2] >> self.src_shift
                q = self.expected.get((src, dst))
                assert q, f"node {dst}: unexpected vector {item} (flow from {src})"
                exp_tag, exp_vec = q.popleft()
                assert (tag, list(item["data"])) == (exp_tag, exp_vec), \
                    f"flow {src}->{dst}: got {tag} {list(item['data'])}, " \
                    f"expected {exp_tag} {exp_vec}"
            errors = getattr(self.dut, f"errors__{dst}").value.to_unsigned()
            assert errors == self.bad[dst], f"node {dst}: {errors} errors, sent {self.bad[dst]} bad"
        assert not any(self.expected.values())
