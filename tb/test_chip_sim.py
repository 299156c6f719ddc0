# amaranth: UnusedElaboratable=no
"""CoreNode shell in the Amaranth simulator: demux, fence, loopback, host port, errors.

One host node (:class:`hdl.chip.CoreNode` with ``host=True``) around the test-fixture memory
core (:class:`tb.env.chip.MemCore`), its ``inject`` wired to its own ``eject`` (every packet
it sends comes back to it, as a one-node network would deliver it), 8-lane vectors. A
Python reference of the core's memory gives the expected vectors on ``host_o``.
"""


import random
import re

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden.network_interface import NiConfig
from hdl.chip import CoreNode
from hdl.chip.node import HOST_FIRST, command_port
from hdl.noc.network_interface import receive_layout, send_layout
from tb.env.chip import MemCore, command_vector, mem_command
from tb.packing import pack, unpack

NI = NiConfig(payload_width=32, elem_width=16, length=8, nodes=4, layer_bits=6, stage_bits=4,
              offset_bits=16)
WORDS = 32


class LoopNode(wiring.Component):
    """A host CoreNode whose packets come back to itself."""

    def __init__(self):
        from amaranth.lib import stream
        super().__init__({
            "host_i": In(stream.Signature(send_layout(NI))),
            "host_o": Out(stream.Signature(receive_layout(NI))),
            "busy": Out(1), "error": Out(1), "errors": Out(16), "addr_error": Out(1),
            "core_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.node = node = CoreNode(NI, core=MemCore, mem_words=WORDS, host=True)
        wiring.connect(m, node.inject, node.eject)
        wiring.connect(m, wiring.flipped(self.host_i), node.host_i)
        wiring.connect(m, node.host_o, wiring.flipped(self.host_o))
        m.d.comb += [node.node_id.eq(0), self.busy.eq(node.busy), self.error.eq(node.error),
                     self.errors.eq(node.errors), self.addr_error.eq(node.addr_error),
                     self.core_error.eq(node.core_error)]
        return m


def vec(dest, offset, lanes, layer=0):
    return pack(send_layout(NI), {"data": [v & 0xFFFF for v in lanes], "dest": dest,
                                  "tag": {"layer": layer, "stage": 0, "offset": offset}})


def run(items, expect_count, *, backpressure=0.0, seed=0, check=None):
    """Send ``items`` on ``host_i`` (random idle cycles), collect ``expect_count`` vectors
    from ``host_o`` (random backpressure); returns ``(received, status)``."""
    dut = LoopNode()
    got, status = [], {}
    rng = random.Random(seed)

    async def producer(ctx):
        for item in items:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.host_i.valid, 1)
            ctx.set(dut.host_i.payload.as_value(), item)
            await ctx.tick().until(dut.host_i.ready)
            ctx.set(dut.host_i.valid, 0)

    async def consumer(ctx):
        for _ in range(1500):
            ready = int(rng.random() >= backpressure)
            ctx.set(dut.host_o.ready, ready)
            await ctx.tick()
        for name in ("busy", "error", "errors", "addr_error", "core_error"):
            status[name] = ctx.get(getattr(dut, name))

    async def monitor(ctx):
        async for *_, valid, ready, payload in ctx.tick().sample(
                dut.host_o.valid, dut.host_o.ready, dut.host_o.payload):
            if valid and ready:
                got.append(unpack(receive_layout(NI), payload.as_value().value))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_process(monitor)
    sim.run()
    assert len(got) == expect_count, f"{len(got)} vectors, expected {expect_count}"
    return got, status


def rand_words(rng, n):
    return [[rng.randrange(-(1 << 15), 1 << 15) for _ in range(NI.length)] for _ in range(n)]


def lanes(v):
    return [x & 0xFFFF for x in v]


def cmd(wait, count, src, dest, dest_addr):
    return command_vector(NI.length, wait, mem_command(NI, count, src, dest, dest_addr))


@pytest.mark.parametrize("seed", [0, 1])
def test_fence_loopback_and_host_window(seed):
    """The command arrives before its writes (wait = 4); writes come over the 'network'
    (dest 1) and over the loopback (dest 0); the core's SEND to the host window loops back
    to ``host_o``; host-window vectors from the host go straight out."""
    rng = random.Random(seed)
    w = rand_words(rng, 4)
    items = [vec(0, command_port(NI), cmd(4, 4, 10, 0, HOST_FIRST + 3))]
    items += [vec(1 if k % 2 else 0, 10 + k, w[k]) for k in range(4)]
    items += [vec(0, HOST_FIRST, [7] * NI.length)]          # host -> host window
    got, status = run(items, 5, backpressure=0.3, seed=seed)
    by_offset = {g["tag"]["offset"]: list(g["data"]) for g in got}
    assert by_offset[HOST_FIRST] == [7] * NI.length
    for k in range(4):
        assert by_offset[HOST_FIRST + 3 + k] == lanes(w[k]), k
    assert status == {"busy": 0, "error": 0, "errors": 0, "addr_error": 0, "core_error": 0}


def test_command_waits_for_every_write():
    """With wait = 3 and only 2 writes the command is held (busy, nothing out); the third
    write releases it."""
    rng = random.Random(5)
    w = rand_words(rng, 3)
    head = [vec(0, command_port(NI), cmd(3, 1, 2, 0, HOST_FIRST))] + \
        [vec(1, k, w[k]) for k in range(2)]
    _, status = run(head, 0)
    assert status["busy"] == 1
    got, status = run(head + [vec(0, 2, w[2])], 1)
    assert list(got[0]["data"]) == lanes(w[2]) and status["busy"] == 0


def test_errors_flagged_and_traffic_continues():
    """An unexpected layer (dropped by the interface), a write past the memory (dropped,
    counted for the fence) and a refused command (count 0); a fenced SEND after them still
    delivers."""
    rng = random.Random(9)
    w = rand_words(rng, 1)
    items = [vec(1, 0, w[0], layer=3),                      # dropped: TAG
             vec(1, WORDS + 5, w[0]),                       # dropped: address
             vec(0, command_port(NI), cmd(0, 0, 0, 0, HOST_FIRST)),   # refused by the core
             vec(1, 4, w[0]),
             vec(0, command_port(NI), cmd(2, 1, 4, 0, HOST_FIRST))]
    got, status = run(items, 1)
    assert list(got[0]["data"]) == lanes(w[0])
    assert status == {"busy": 0, "error": 1, "errors": 1, "addr_error": 1, "core_error": 1}


def test_bad_parameters():
    with pytest.raises(TypeError, match="Mem words must be an integer from 1 to 32768"):
        CoreNode(NI, core=MemCore, mem_words=0)
    with pytest.raises(ValueError, match="elem_width must be 16"):
        CoreNode(NiConfig(elem_width=8), core=MemCore, mem_words=4)
    with pytest.raises(TypeError, match="Core must be a wiring.Component subclass"):
        CoreNode(NI, core=int, mem_words=4)


# -- the chip's area breakdown (synth.chip) --------------------------------------------------

def _fake_report():
    """A hierarchical report as synth.flow makes it: one host node with a systolic core, two
    ReRAM nodes with a core of two tiles (and their analog macros), three routers."""
    mods = {
        "atleus_chip": {"area_um2": 10.0, "submodules": {"host_node": 1, "pim_node": 2,
                                                         "noc_router": 3}},
        "host_node": {"area_um2": 5.0, "submodules": {"systolic_core": 1}},
        "pim_node": {"area_um2": 4.0, "submodules": {"pim_core": 1}},
        "pim_core": {"area_um2": 100.0, "submodules": {"pim_tile": 2,
                                                       "reram_crossbars_2x8x8": 2}},
        "pim_tile": {"area_um2": 50.0, "submodules": {}},
        "reram_crossbars_2x8x8": {"area_um2": 0.0, "submodules": {}},
        "systolic_core": {"area_um2": 200.0, "submodules": {}},
        "noc_router": {"area_um2": 7.0, "submodules": {}},
    }
    counts = {"atleus_chip": 1, "host_node": 1, "pim_node": 2, "pim_core": 2, "pim_tile": 4,
              "reram_crossbars_2x8x8": 4, "systolic_core": 1, "noc_router": 3}
    for name, m in mods.items():
        m["instances"] = counts[name]
    total = sum(counts[n] * m["area_um2"] for n, m in mods.items())
    return {"module": "atleus_chip", "area_um2": total, "modules": mods, "cells": {"total": 0}}


def test_area_breakdown_accounts_for_every_module():
    from golden.chip import REGRESSION_CHIP
    from synth.chip import ATLEUS_SYSTOLIC_MM2, ATLEUS_TILE_MM2, chip_breakdown
    rep = _fake_report()
    b = chip_breakdown(rep, REGRESSION_CHIP)
    by = {r["module"]: r for r in b["classes"]}
    assert b["accounted"] == pytest.approx(b["total"]) and b["total"] == rep["area_um2"]
    assert by["pim_tile"]["instances"] == 4 and by["pim_tile"]["per_instance"] == 50.0
    assert by["pim_core"]["per_instance"] == 100.0          # the core without its tiles
    assert by["pim_node"]["per_instance"] == 4.0 and by["host_node"]["per_instance"] == 5.0
    assert sum(r["share"] for r in b["classes"]) == pytest.approx(1.0)
    assert [m["module"] for m in b["not_included"]] == ["reram_crossbars_2x8x8"]
    a = b["atleus"]
    assert a["systolic_over_tile"] == pytest.approx(200.0 / 50.0)
    assert a["atleus_systolic_over_tile"] == pytest.approx(ATLEUS_SYSTOLIC_MM2 / ATLEUS_TILE_MM2)


def test_macro_stub_has_the_tile_ports():
    from amaranth.hdl import Shape

    from golden.chip import REGRESSION_CHIP
    from hdl.pim_tile import PimTile
    from hdl.pim_tile.core import macro_name
    from synth.chip import add_macro_stubs
    from synth.design import split_modules
    name = macro_name(REGRESSION_CHIP.tile)
    text = f"module \\pim_core\n  cell \\{name} \\xbars0\n  end\nend\n"
    mods = split_modules(add_macro_stubs(text, REGRESSION_CHIP))
    assert set(mods) == {"pim_core", name}
    sig = PimTile(**REGRESSION_CHIP.tile.__dict__).signature.members
    for port in ("drive", "sample", "column", "trial", "trial_en", "decision"):
        width = Shape.cast(sig[port].shape).width
        direction = "output" if port == "decision" else "input"
        decl = (f"wire width {width} " if width > 1 else "wire ") + direction
        assert re.search(rf"{decl} \d+ \\{port}$", mods[name], re.M), port
    assert add_macro_stubs("module \\x\nend\n", REGRESSION_CHIP) == "module \\x\nend\n"


def test_writes_flow_while_the_command_queue_is_full():
    """Two fenced commands fill the queue (cmd_depth 2) before any write: the writes they
    wait for still reach the core, and both commands run in order."""
    rng = random.Random(11)
    w = rand_words(rng, 3)
    items = [vec(0, command_port(NI), cmd(2, 2, 0, 0, HOST_FIRST)),
             vec(0, command_port(NI), cmd(3, 1, 2, 0, HOST_FIRST + 2))]
    items += [vec(1, k, w[k]) for k in range(3)]
    got, status = run(items, 3, backpressure=0.2, seed=3)
    by_offset = {g["tag"]["offset"]: list(g["data"]) for g in got}
    assert [by_offset[HOST_FIRST + k] for k in range(3)] == [lanes(v) for v in w]
    assert status["busy"] == 0 and status["error"] == 0
