# amaranth: UnusedElaboratable=no
"""The shared test infrastructure itself: packing, stream helpers, shared cells, runner."""

import os
import random
import re

import cocotb
import numpy as np
import pytest
from amaranth import Module, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from hdl.cells import add_cell, cell_key, shared_cell, snake_case
from hdl.verilog import generate, generate_modules
from tb import runner
from tb.cocotb_streams import StreamDriver, StreamMonitor, reset_dut
from tb.packing import hex_lines, pack, pack_many, pack_many_bytes, unpack, words_to_bytes
from tb.sim_streams import stream_get, stream_put

FLIT = data.StructLayout({"dest": 4, "data": data.ArrayLayout(signed(7), 3), "last": 1})


class StreamFifo(wiring.Component):
    """A FIFO between two stream ports (test vehicle for the stream helpers)."""

    def __init__(self, layout=FLIT, depth=4):
        self._layout, self._depth = layout, depth
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = f = fifo.SyncFIFOBuffered(width=FLIT.size, depth=self._depth)
        wiring.connect(m, wiring.flipped(self.i), f.w_stream)
        wiring.connect(m, f.r_stream, wiring.flipped(self.o))
        return m


class Mac(wiring.Component):
    """A tiny registered multiply-accumulate cell (test vehicle for hdl.cells)."""

    def __init__(self, width=8):
        self._width = width
        super().__init__({"a": In(width), "b": In(width), "a_out": Out(width),
                          "acc": Out(4 * width)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.a_out.eq(self.a), self.acc.eq(self.acc + self.a * self.b)]
        return m


class MacRow(wiring.Component):
    """Two MACs in a row, each a shared cell, and one of another width."""

    def __init__(self):
        super().__init__({"a": In(8), "b0": In(8), "b1": In(8), "acc1": Out(32),
                          "acc_narrow": Out(16)})

    def elaborate(self, platform):
        m = Module()
        macs = [Mac(8) for _ in range(2)]
        for n, mac in enumerate(macs):
            m.submodules[f"mac{n}"] = shared_cell(mac, key=8)
        narrow = Mac(4)     # keep the cell: shared_cell() may return an Instance
        m.submodules.narrow = shared_cell(narrow, key=4)
        m.d.comb += [macs[0].a.eq(self.a), macs[1].a.eq(macs[0].a_out),
                     macs[0].b.eq(self.b0), macs[1].b.eq(self.b1), self.acc1.eq(macs[1].acc),
                     narrow.a.eq(self.a), narrow.b.eq(1), self.acc_narrow.eq(narrow.acc)]
        return m


def random_flits(seed, n):
    rng = random.Random(seed)
    return [{"dest": rng.randrange(16), "data": [rng.randrange(-64, 64) for _ in range(3)],
             "last": rng.randrange(2)} for _ in range(n)]


def _simulate(dut, *benches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


def test_pack_roundtrip():
    for flit in random_flits(0, 100):
        assert unpack(FLIT, pack(FLIT, flit)) == flit
    # Amaranth puts the first field at the LSB.
    assert pack(FLIT, {"dest": 5, "data": [0, 0, 0], "last": 0}) == 5
    assert pack(FLIT, {"dest": 0, "data": [1, 0, 0], "last": 1}) == (1 << 4) | (1 << 25)
    with pytest.raises(ValueError, match="does not fit"):
        pack(FLIT, {"dest": 16, "data": [0, 0, 0], "last": 0})


@pytest.mark.parametrize("width", [3, 8, 16, 32, 64])
@pytest.mark.parametrize("is_signed", [True, False])
def test_pack_arrays_bit_by_bit(width, is_signed):
    """Arrays (NumPy fast path for 8/16/32-bit elements, plain loop otherwise) pack exactly
    as the bit-by-bit definition, from lists and NumPy arrays, extremes included."""
    elem = signed(width) if is_signed else unsigned(width)
    layout = data.StructLayout({"a": data.ArrayLayout(elem, 7), "last": 1})
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if is_signed else (0, (1 << width) - 1)
    rng = random.Random(width)
    for _ in range(50):
        a = [rng.choice([lo, hi, 0, rng.randint(lo, hi)]) for _ in range(7)]
        want = sum((x & ((1 << width) - 1)) << (i * width) for i, x in enumerate(a))
        want |= 1 << (7 * width)
        assert pack(layout, {"a": a, "last": 1}) == want
        if width < 64:
            assert pack(layout, {"a": np.array(a), "last": 1}) == want
        assert unpack(layout, want) == {"a": a, "last": 1}
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ValueError, match=f"Value {bad} does not fit"):
            pack(layout, {"a": [0, bad], "last": 0})


@pytest.mark.parametrize("width", [3, 8, 32])
def test_pack_many_bytes_and_hex_lines(width):
    """The bulk forms agree with :func:`pack` item by item: ``pack_many`` ints,
    ``pack_many_bytes`` rows of little-endian bytes (``words_to_bytes`` gives them back from
    ints) and ``hex_lines``, the ``$readmemh`` text a Verilog feeder is loaded with."""
    layout = data.StructLayout({"a": data.ArrayLayout(signed(width), 5), "last": 1})
    rng = np.random.default_rng(width)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    a = rng.integers(lo, hi + 1, (40, 5))
    a[0], a[1] = lo, hi
    last = rng.integers(0, 2, 40)
    want = [pack(layout, {"a": list(map(int, a[i])), "last": int(last[i])}) for i in range(40)]
    assert pack_many(layout, {"a": a, "last": last}) == want
    raw = pack_many_bytes(layout, {"a": a, "last": last})
    assert raw.dtype == np.uint8 and raw.shape == (40, (5 * width + 1 + 7) // 8)
    assert (words_to_bytes(want, 5 * width + 1) == raw).all()
    lines = hex_lines(raw).splitlines()
    assert [int(line, 16) for line in lines] == want
    assert all(len(line) == 2 * raw.shape[1] for line in lines)


def test_pack_matches_amaranth_view():
    """pack() agrees with Amaranth's own layout of a View in the simulator."""
    dut = StreamFifo()
    flits = random_flits(1, 20)
    got = []

    async def producer(ctx):
        for n, flit in enumerate(flits):
            await stream_put(ctx, dut.i, pack(FLIT, flit), idle=n % 3)

    async def consumer(ctx):
        for n in range(len(flits)):
            payload = await stream_get(ctx, dut.o, stall=n % 2)
            got.append(unpack(FLIT, payload.as_value().value))
            # The View's own fields agree with unpack().
            assert payload.dest == got[-1]["dest"] and payload.data[1] == got[-1]["data"][1]

    _simulate(dut, producer, consumer)
    assert got == flits


def test_shared_cell_emits_one_module_per_configuration():
    text = generate(MacRow())
    assert text.count("module mac(") == 1 and text.count("module mac_2(") == 1
    assert len(re.findall(r"^\s*mac \S+ \(", text, re.MULTILINE)) == 2
    assert len(re.findall(r"^\s*mac_2 \S+ \(", text, re.MULTILINE)) == 1
    assert snake_case("SarAdcController") == "sar_adc_controller"
    assert snake_case("NocRouter") == "noc_router"


class Comb(wiring.Component):
    """A combinational cell (no clock domain)."""

    def __init__(self, width=4, *, invert=False):
        self._width, self._invert = width, invert
        super().__init__({"a": In(width), "y": Out(width)})

    width = property(lambda self: self._width)
    invert = property(lambda self: self._invert)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(~self.a if self._invert else self.a)
        return m


class CellRow(wiring.Component):
    """Cells added with add_cell: two equal MAC configurations (the default spelled out
    once), one other, and combinational cells."""

    def __init__(self):
        super().__init__({"a": In(8), "b": In(8), "acc": Out(32), "acc4": Out(16),
                          "y": Out(4), "z": Out(4)})

    def elaborate(self, platform):
        m = Module()
        mac0 = add_cell(m, "mac0", Mac)
        mac1 = add_cell(m, "mac1", Mac, width=8)
        mac4 = add_cell(m, "mac4", Mac, 4)
        inv = add_cell(m, "inv", Comb, invert=True)
        buf = add_cell(m, "buf", Comb, 4, module_name="comb_buffer")
        m.d.comb += [mac0.a.eq(self.a), mac0.b.eq(self.b), mac1.a.eq(mac0.a_out),
                     mac1.b.eq(self.b), self.acc.eq(mac1.acc), mac4.a.eq(self.a),
                     mac4.b.eq(1), self.acc4.eq(mac4.acc), inv.a.eq(self.a), buf.a.eq(inv.y),
                     self.y.eq(inv.y), self.z.eq(buf.y)]
        return m


def test_add_cell_keys_on_constructor_arguments():
    """Equal arguments (defaults applied) share a module; other arguments, another module;
    the clock and reset inputs come from the domains each cell uses."""
    top, cells = generate_modules(CellRow())
    assert list(cells) == ["mac", "mac_2", "comb", "comb_buffer"]
    assert len(re.findall(r"^\s*mac \S+ \(", top, re.MULTILINE)) == 2
    assert len(re.findall(r"^\s*mac_2 \S+ \(", top, re.MULTILINE)) == 1
    assert ".clk(clk)" in top.split("mac_2 ")[1].split(");")[0]
    comb_instance = top.split("\n  comb ")[1].split(");")[0]
    assert ".clk(" not in comb_instance and ".rst(" not in comb_instance
    assert "clk" not in cells["comb"] and "input clk;" in cells["mac"]
    # The RTLIL backend: same modules, same structure.
    il_top, il_cells = generate_modules(CellRow(), backend="rtlil")
    assert list(il_cells) == list(cells) and il_top.startswith("attribute")
    with pytest.raises(ValueError, match=r"^Backend must be one of verilog, rtlil, not 'edif'$"):
        generate(CellRow(), backend="edif")


def test_add_cell_same_behaviour_in_amaranth_sim():
    dut = CellRow()

    async def bench(ctx):
        total = 0
        for t in range(12):
            ctx.set(dut.a, t)
            ctx.set(dut.b, 2)
            assert ctx.get(dut.y) == (~t & 15) and ctx.get(dut.z) == (~t & 15)
            await ctx.tick()
            if t >= 1:
                total += (t - 1) * 2
            assert ctx.get(dut.acc) == total

    _simulate(dut, bench)


def test_cell_key_and_errors():
    assert cell_key(Comb(4, invert=True)) == (("width", 4), ("invert", True))
    with pytest.raises(TypeError, match=r"^Cannot derive the key of Mac: it has no property "
                                        r"for its constructor parameter 'width'$"):
        cell_key(Mac(8))
    with pytest.raises(TypeError, match=r"^Cell type must be a wiring.Component subclass, "
                                        r"not 3$"):
        add_cell(Module(), "x", 3)
    with pytest.raises(TypeError, match=r"^Shared cell must be a wiring.Component, not 3$"):
        shared_cell(3)


class LegacyRow(wiring.Component):
    """shared_cell without a key: the key comes from the cells' properties."""

    def __init__(self):
        super().__init__({"a": In(4), "y": Out(4), "z": Out(4)})

    def elaborate(self, platform):
        m = Module()
        cells = [Comb(4), Comb(4), Comb(4, invert=True)]
        for n, c in enumerate(cells):
            m.submodules[f"c{n}"] = shared_cell(c)
            m.d.comb += c.a.eq(self.a)
        m.d.comb += [self.y.eq(cells[1].y), self.z.eq(cells[2].y)]
        return m


def test_shared_cell_derives_its_key():
    _, cells = generate_modules(LegacyRow())
    assert list(cells) == ["comb", "comb_2"]


def test_shared_cell_same_behaviour_in_amaranth_sim():
    dut = MacRow()

    async def bench(ctx):
        total = 0
        for t in range(20):
            ctx.set(dut.a, t)
            ctx.set(dut.b1, 3)
            await ctx.tick()
            if t >= 1:
                total += (t - 1) * 3
            assert ctx.get(dut.acc1) == total

    _simulate(dut, bench)


# -- cocotb: stream drivers and monitors through a FIFO, with idle cycles and backpressure --

@cocotb.test()
async def fifo_streams(dut):
    n = int(os.environ["N_FLITS"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    driver = StreamDriver(dut, "i", FLIT, idle=0.3, seed=2)
    monitor = StreamMonitor(dut, "o", FLIT, backpressure=0.4, seed=3)
    await reset_dut(dut)
    flits = random_flits(4, n)
    for flit in flits:
        driver.send(flit)
    for _ in range(20 * n):
        await ClockCycles(dut.clk, 1)
        if len(monitor.received) == n:
            break
    await ClockCycles(dut.clk, 10)
    assert list(monitor.received) == flits


def test_streams_verilator():
    runner.run(generate(StreamFifo(), "stream_fifo"), "stream_fifo", "tb.test_infrastructure",
               name="stream_fifo", extra_env={"N_FLITS": 500})


# -- the Verilog CLI and the build cache -----------------------------------------------------

def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "hdl", *args], capture_output=True, text=True,
                          cwd=runner.ROOT)


def test_cli_lists_every_registered_block():
    from hdl.registry import blocks
    result = _cli("list")
    assert result.returncode == 0
    for name in blocks():
        assert f"{name}:" in result.stdout


@pytest.mark.parametrize("args,message", [
    (("systolic_pe", "--in-width", "40"), r"in_width must be an integer from 2 to 16, not 40"),
    (("systolic_pe", "--in-width", "eight"), r"in_width must be an integer, not 'eight'"),
    (("systolic_pe", "--bogus", "1"), r"unrecognized arguments: --bogus"),
    (("no_such_block",), r"unknown block 'no_such_block'"),
])
def test_cli_bad_parameter_is_one_line_and_status_2(args, message):
    result = _cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0])


def test_cli_writes_verilog(tmp_path):
    out = tmp_path / "pe.v"
    result = _cli("systolic_pe", "--in-width", "4", "--acc-width", "12", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "module systolic_pe(" in text and "input [3:0] a;" in text


def test_build_cache_reuses_unchanged_verilog():
    verilog = generate(StreamFifo(), "stream_fifo")
    first = runner.build(verilog, "stream_fifo", name="stream_fifo")   # as test_streams_verilator's
    stamp = (first / "built.ok").stat().st_mtime_ns
    again = runner.build(verilog, "stream_fifo", name="stream_fifo")
    assert again == first and (again / "built.ok").stat().st_mtime_ns == stamp
    # Any change of the Verilog, the arguments or the waves setting is another configuration.
    other = [runner.build_dir_for(verilog + "\n", "stream_fifo", name="stream_fifo")[0],
             runner.build_dir_for(verilog, "stream_fifo", name="stream_fifo",
                                  build_args=["-O3"])[0],
             runner.build_dir_for(verilog, "stream_fifo", name="stream_fifo",
                                  waves=not runner.waves_requested())[0]]
    assert len({first, *other}) == 4


def test_parameter_options_shared_by_hdl_and_synth():
    """One parser for block parameters: single values (python -m hdl) and sweeps (python -m
    synth sweep), tuples by ``,`` and lists of tuples by ``/``."""
    import argparse

    import synth.__main__ as synth_main
    from hdl import __main__ as hdl_main
    from hdl.cli import add_parameter_options, parse_parameters
    from hdl.registry import blocks
    assert synth_main.parse_parameters is parse_parameters is hdl_main.parse_parameters
    block = blocks()["noc_router"]
    parser = argparse.ArgumentParser()
    add_parameter_options(parser, block)
    assert parse_parameters(block, parser.parse_args(["--dims", "4,4,4", "--vcs", "4"])) == \
        {"vcs": 4, "dims": (4, 4, 4)}
    sweep = parse_parameters(block, parser.parse_args(["--dims", "4,4/2,2,2", "--vcs", "1,2"]),
                             sweep=True)
    assert sweep == {"vcs": [1, 2], "dims": [(4, 4), (2, 2, 2)]}
    with pytest.raises(ValueError, match=r"^dims must be comma-separated integers, not '4,x'$"):
        parse_parameters(block, parser.parse_args(["--dims", "4,x"]))
    with pytest.raises(ValueError, match=r"^vcs must be an integer, not 'two'$"):
        parse_parameters(block, parser.parse_args(["--vcs", "1,two"]), sweep=True)


def test_registry_skips_a_broken_module_on_request(monkeypatch):
    import importlib

    from hdl import registry
    real = importlib.import_module
    broken = "hdl.noc.network"

    def fake(name, *args):
        if name == broken:
            raise RuntimeError("under construction")
        return real(name, *args)

    monkeypatch.setattr(registry.importlib, "import_module", fake)
    seen = []
    registry.blocks(on_error=lambda name, e: seen.append((name, str(e))))
    assert seen == [(broken, "under construction")]
    with pytest.raises(RuntimeError, match="under construction"):
        registry.blocks()


def test_synthesis_units_fold_amaranth_submodules():
    """A block's Amaranth submodules (``top.a``, ``top.a.b``) are synthesized with it; shared
    cell modules (and theirs) are units of their own."""
    from synth.design import synthesis_units
    mods = dict.fromkeys(["top", "top.a", "cell", "top.a.b", "cell.fifo", "other.x"], "")
    assert synthesis_units(mods) == {"top": ["top", "top.a", "top.a.b"],
                                     "cell": ["cell", "cell.fifo"], "other.x": ["other.x"]}
