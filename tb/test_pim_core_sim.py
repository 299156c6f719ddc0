# amaranth: UnusedElaboratable=no
"""PimCore in the Amaranth simulator (tiny tiles), against golden.pim_core.PimCoreModel.

The tiles' analog ports are answered each cycle by the golden crossbars
(:class:`tb.env.pim_tile.AnalogArray`, one per tile, checking each tile's row drive against
the inputs the model says it gets). Covered: command decoding and every refusal rule of
:func:`golden.pim_core.check_command` (error sticky, the command dropped, the next command
runs), SEND, CONFIG, MVM over tiles holding row and column chunks of one matrix (the row
chunks summed), requantization, to memory and to ``o``, ``o`` backpressure, ``wr`` during
a command, reset in mid-MVM, the constructor's errors.
"""

import numpy as np
import pytest
from amaranth import ClockDomain, Module
from amaranth.sim import Simulator
from amaranth.sim._async import DomainReset

from golden.network_interface import NiConfig
from golden.pim_core import (CoreConfig, CoreField, Op, PimCoreModel, decode_command,
                             encode_command, matrix_words, tile_commands)
from golden.pim_tile import CfgField, TileConfig, map_matrix, mode_word
from golden.transformer import chunk_plan, tile_forward
from hdl.noc.network_interface import send_layout
from hdl.pim_tile.core import PimCore, write_layout
from tb.env.pim_tile import AnalogArray
from tb.packing import pack, unpack

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TINY = TileConfig(crossbars=2, rows=4, cols=8, input_bits=3, weight_bits=8, adc_bits=4,
                  resolutions=(3, 4), adcs_per_xbar=1, group=1, row_blocks=2, outputs=4,
                  scale_bits=16, scale_frac_bits=16, out_bits=10)
NI = NiConfig(payload_width=32, elem_width=32, length=8, nodes=4)


def _core(tiles=4, mem_words=32):
    return CoreConfig(tiles=tiles, tile=TINY, ni=NI, mem_words=mem_words, max_cols=12)


class _Host:
    """Runs a host program (``("wr", addr, words)``, ``("cmd", int)``, ``("reset",)``) through
    the RTL and the golden model at once; collects ``o`` and ``error`` per command."""

    def __init__(self, cfg, mappings=None, *, backpressure=0, limit=30000):
        """Program items: ``("wr", addr, words)`` (once the core is idle), ``("wr_now", addr,
        words)`` (at once, also while a command runs), ``("cmd", word[, complete])``
        (``complete=False``: a reset will cut it; ``None``: do not wait for it to end),
        ``("idle", cycles)``, ``("reset", cycles)``."""
        self.cfg = cfg
        self.dut = PimCore(cfg.tiles, tile=cfg.tile, ni=cfg.ni, mem_words=cfg.mem_words,
                           max_cols=cfg.max_cols)
        self.model = PimCoreModel(cfg)
        self.analog = [AnalogArray(cfg.tile) for _ in range(cfg.tiles)]
        for k, mp in (mappings or {}).items():
            self.model.program(k, mp)
            self.analog[k].program(mp)
        self.backpressure = backpressure
        self.limit = limit
        self.got = []
        self.cycles = 0
        self.wr_stalls = 0          # cycles a wr transfer waited (the drain writing memory)

    def run(self, program):
        dut, cfg = self.dut, self.cfg
        top = Module()
        top.domains.sync = cd = ClockDomain()
        top.submodules.dut = dut
        lay_w, lay_o = write_layout(cfg), send_layout(cfg.ni)
        E = cfg.elem_width
        expected, errors, cut = [], [], []
        done = []

        async def analog_side(ctx):
            t = cfg.tile
            while True:
                for k, a in enumerate(self.analog):
                    word = a.cycle(sample=ctx.get(dut.sample[k]),
                                   drive=lambda k=k: ctx.get(dut.drive[k].as_value()),
                                   trial_en=ctx.get(dut.trial_en[k]),
                                   trial=lambda k=k: ctx.get(dut.trial[k].as_value()),
                                   column=lambda k=k: ctx.get(dut.column[k].as_value()))
                    ctx.set(dut.decision[k], word)
                await ctx.tick()
                self.cycles += 1
                if self.cycles > self.limit:
                    raise AssertionError(f"timeout after {self.limit} cycles ({len(self.got)} vectors)")

        async def wait_idle(ctx):
            await ctx.tick()
            while ctx.get(dut.busy):
                await ctx.tick()

        async def producer(ctx):
            for item in program:
                if item[0] == "reset":
                    await ctx.tick().repeat(item[1])
                    ctx.set(cd.rst, 1)
                    # what the cut command sent before the reset
                    expected.extend(cut[:len(self.got) - len(expected)])
                    cut.clear()
                    await ctx.tick()
                    ctx.set(cd.rst, 0)
                    self.model.reset()
                    for a, k in zip(self.analog, range(cfg.tiles)):
                        a.restart(self.model.steps[k])
                    continue
                if item[0] in ("wr", "wr_now"):
                    if item[0] == "wr":
                        await wait_idle(ctx)
                    _, addr, words = item
                    self.model.write(addr, words)
                    for j, w in enumerate(np.asarray(words).reshape(-1, cfg.length)):
                        ctx.set(dut.wr.payload.as_value(), pack(lay_w, {"addr": addr + j, "data": w}))
                        ctx.set(dut.wr.valid, 1)
                        while not ctx.get(dut.wr.ready):
                            self.wr_stalls += 1
                            await ctx.tick()
                        await ctx.tick()
                    ctx.set(dut.wr.valid, 0)
                    continue
                if item[0] == "idle":
                    await ctx.tick().repeat(item[1])
                    continue
                word = item[1]
                complete = len(item) < 3 or item[2] is not False   # False: a reset cuts it
                wait = len(item) < 3 or item[2]                     # None: do not wait
                self._expect_inputs(word)
                out = self.model.execute(word)
                if complete:
                    expected.extend(out)
                else:
                    cut.extend(out)
                ctx.set(dut.cmd.payload.as_value(), word)
                ctx.set(dut.cmd.valid, 1)
                await ctx.tick().until(dut.cmd.ready)
                ctx.set(dut.cmd.valid, 0)
                if wait:
                    await wait_idle(ctx)
                    errors.append((bool(ctx.get(dut.error)), self.model.error))
            await ctx.tick().repeat(20)
            done.append(1)

        async def consumer(ctx):
            n = 0
            while True:
                stall = self.backpressure and (n % 3 == 1)
                if stall:
                    await ctx.tick().repeat(self.backpressure)
                ctx.set(dut.o.ready, 1)
                try:
                    payload, = await ctx.tick().sample(dut.o.payload).until(dut.o.valid)
                except DomainReset:
                    continue
                ctx.set(dut.o.ready, 0)
                v = unpack(lay_o, payload.as_value().value)
                data = [((e + (1 << (E - 1))) % (1 << E)) - (1 << (E - 1)) for e in v["data"]]
                self.got.append((v["dest"], v["tag"]["offset"], v["tag"]["layer"], data))
                n += 1

        sim = Simulator(top)
        sim.add_clock(1e-8)
        sim.add_testbench(analog_side, background=True)
        sim.add_testbench(consumer, background=True)
        sim.add_testbench(producer)
        sim.run()
        assert done
        exp = [(d, off, lay, [int(e) for e in data]) for d, off, lay, data in expected]
        self.errors = errors
        assert len(self.got) == len(exp), f"{len(self.got)} vectors on o, expected {len(exp)}"
        for k, (g, e) in enumerate(zip(self.got, exp)):
            assert g == e, f"vector {k}: got {g}, expected {e}"
        return errors

    def _expect_inputs(self, word):
        """Tell each tile's analog array the inputs an MVM feeds it (row drive check)."""
        cfg, m = self.cfg, self.model
        c = decode_command(cfg, word)
        if c["op"] != Op.MVM:
            return
        from golden.pim_core import check_command
        if not check_command(cfg, c, m.regs):
            return
        L, t = cfg.length, cfg.tile
        x = m.mem[c["in_addr"]:c["in_addr"] + c["tokens"] * c["in_words"]]
        x = x.reshape(c["tokens"], -1)
        lim = 1 << (t.input_bits - 1)
        x = ((x + lim) % (2 * lim)) - lim
        for k in range(cfg.tiles):
            if (c["mask"] >> k) & 1:
                r0 = m.regs["in_base"][k] * t.rows
                self.analog[k].expect(x[:, r0:r0 + m.regs["n_blocks"][k] * t.rows])


def _cmd(cfg, op, **kw):
    return ("cmd", encode_command(cfg, op, **kw))


def _chunked(cfg, rng, k, n, tiles_used=None, noise=None):
    """A (k, n) int8-range matrix cut by golden.transformer.chunk_plan onto tiles 0..; returns
    (mappings {tile: mapping}, plan, program of CONFIG commands)."""
    t = cfg.tile
    w = rng.normal(0, 0.1, (k, n))
    plan = chunk_plan(k, n, 2, t)
    maps = [map_matrix(w[r0:r1, c0:c1], t, cell_bits=2, adc_bits=4, seed=i, noise=noise)
            for i, (r0, r1, c0, c1) in enumerate(plan)]
    ofb = min(mp.out_frac_bits for mp in maps)
    maps = [map_matrix(w[r0:r1, c0:c1], t, cell_bits=2, adc_bits=4, seed=i, noise=noise,
                       out_frac_bits=ofb) for i, (r0, r1, c0, c1) in enumerate(plan)]
    prog = []
    for i, ((r0, r1, c0, c1), mp) in enumerate(zip(plan, maps)):
        prog += [("cmd", wd) for wd in tile_commands(cfg, i, mp, r0, c0)]
    return dict(enumerate(maps)), plan, prog


def test_mvm_row_and_column_chunks():
    """A 16 x 4 matrix on 4 tiles (2 row chunks x 2 column chunks): the rows are the chunks'
    tile outputs summed (EncoderLayer.project's arithmetic), unshifted to memory then SENT,
    requantized straight to o; the feeder's beats checked by the analog arrays."""
    cfg = _core()
    rng = np.random.default_rng(1)
    maps, plan, prog = _chunked(cfg, rng, 16, 4)
    assert len(plan) == 4 and {p[0] for p in plan} == {0, 8}
    x = rng.integers(-4, 4, (3, 16))
    # the exact rows, independently of the core model: sum of the chunks' tile outputs
    want = np.zeros((3, 4), dtype=np.int64)
    for i, (r0, r1, c0, c1) in enumerate(plan):
        want[:, c0:c1] += tile_forward(maps[i], x[:, r0:r1])
    host = _Host(cfg, maps, backpressure=2)
    prog += [("wr", 0, matrix_words(x, cfg.length)),
             _cmd(cfg, Op.MVM, mask=0b1111, tokens=3, in_addr=0, in_words=2, out_cols=4,
                  out_addr=10),
             _cmd(cfg, Op.SEND, in_addr=10, tokens=3, dest=2, dest_addr=0x8000, layer=5),
             _cmd(cfg, Op.MVM, mask=0b1111, tokens=2, in_addr=2, in_words=2, out_cols=4,
                  to_o=1, dest=1, dest_addr=7, out_shift=3, out_bits=5)]
    errors = host.run(prog)
    assert not any(e for e, _ in errors) and not any(m for _, m in errors)
    rows = [g[3][:4] for g in host.got[:3]]
    assert np.array_equal(np.array(rows), want)
    assert host.got[0][:3] == (2, 0x8000, 5)


def test_wr_during_mvm_to_memory():
    """``wr`` transfers while an MVM drains its rows into memory (the drain has priority):
    both land, read back by SEND."""
    cfg = _core(tiles=2)
    rng = np.random.default_rng(5)
    maps, plan, prog = _chunked(cfg, rng, 8, 4)
    x = rng.integers(-4, 4, (4, 8))
    rounds = rng.integers(-1000, 1000, (30, 16, cfg.length))
    host = _Host(cfg, maps)
    mvm = _cmd(cfg, Op.MVM, mask=0b11, tokens=4, in_addr=0, in_words=1, out_cols=4, out_addr=8)
    prog += [("wr", 0, matrix_words(x, cfg.length)), ("cmd", mvm[1], None)]
    prog += [("wr_now", 16, r) for r in rounds]      # back to back through the whole MVM
    prog += [_cmd(cfg, Op.SEND, in_addr=8, tokens=4, dest=1),
             _cmd(cfg, Op.SEND, in_addr=16, tokens=16, dest=2)]
    errors = host.run(prog)
    assert not any(e for e, _ in errors)
    assert [g[3] for g in host.got[4:]] == rounds[-1].tolist()
    assert host.wr_stalls > 0, "no wr transfer met the drain: the test did not overlap them"


def test_bad_commands_refused():
    """Every refusal rule: error set (sticky until reset), nothing sent, memory untouched,
    the core takes the next command."""
    cfg = _core(tiles=3, mem_words=16)
    t = cfg.tile
    C = lambda op, **kw: encode_command(cfg, op, **kw)          # noqa: E731
    bad = [
        3 | 0,                                                       # op 3
        C(Op.CONFIG, tile=3, field=CfgField.N_BLOCKS, value=1),      # tile >= tiles
        C(Op.CONFIG, tile=0, field=CfgField.N_BLOCKS, value=0),
        C(Op.CONFIG, tile=0, field=CfgField.N_BLOCKS, value=t.row_blocks + 1),
        C(Op.CONFIG, tile=0, field=CfgField.N_OUTPUTS, value=t.outputs + 1),
        C(Op.CONFIG, all=1, field=CfgField.MODE, value=mode_word(1, 2, 2)),   # 2 bits: no ADC
        C(Op.CONFIG, tile=1, field=CfgField.IN_BLOCK, value=t.row_blocks),
        C(Op.CONFIG, tile=1, field=CfgField.OUT_BASE, value=t.outputs),
        C(Op.CONFIG, tile=1, field=CfgField.SCALE, value=1 << t.scale_bits),
        C(Op.CONFIG, tile=1, field=6, value=0),
        C(Op.CONFIG, tile=1, core=1, field=2, value=0),
        C(Op.CONFIG, tile=1, core=1, field=CoreField.OUT_COL, value=cfg.max_cols),
        C(Op.MVM, mask=0, tokens=1, in_words=1, out_cols=8),
        C(Op.MVM, mask=1, tokens=0, in_words=1, out_cols=8),
        C(Op.MVM, mask=1, tokens=1, in_words=0, out_cols=8),
        C(Op.MVM, mask=1, tokens=1, in_words=1, out_cols=0),
        C(Op.MVM, mask=1, tokens=1, in_words=1, out_cols=cfg.max_cols + 1),
        C(Op.MVM, mask=1, tokens=9, in_words=2, in_addr=0, out_cols=8, to_o=1),   # input > mem
        C(Op.MVM, mask=1, tokens=2, in_words=1, in_addr=0, out_cols=8, out_addr=15),
        C(Op.MVM, mask=1, tokens=1, in_words=1, out_cols=8, to_o=1, out_shift=cfg.acc_width + 1),
        C(Op.MVM, mask=1, tokens=1, in_words=1, out_cols=8, to_o=1, out_bits=cfg.elem_width + 1),
        C(Op.MVM, mask=1, tokens=1, in_words=1, out_cols=3, to_o=1),   # tile 0's 4 outputs > 3
        C(Op.MVM, mask=4, tokens=1, in_words=1, out_cols=8, to_o=1),   # tile 2 at OUT_COL 6
        C(Op.SEND, in_addr=0, tokens=0),
        C(Op.SEND, in_addr=10, tokens=7),
    ]
    prog = [("wr", 0, np.arange(16 * cfg.length).reshape(16, -1) % 50 - 25)]
    setup = _cmd(cfg, Op.CONFIG, tile=2, core=1, field=CoreField.OUT_COL, value=6)
    for b in bad:
        prog += [setup, ("cmd", b), _cmd(cfg, Op.SEND, in_addr=3, tokens=1, dest=1), ("reset", 2)]
    host = _Host(cfg)
    errors = host.run(prog)
    # per bad command: the setup (no error), the bad one (error), a SEND (runs, still error)
    for k in range(len(bad)):
        e_setup, e_bad, e_next = errors[3 * k:3 * k + 3]
        assert e_setup == (False, False)
        assert e_bad == (True, True), f"bad command {k} ({decode_command(cfg, bad[k])}) not refused"
        assert e_next == (True, True)
    assert len(host.got) == len(bad)                  # only the SENDs


def test_reset_mid_mvm_and_unconfigured_tiles():
    """Reset while an MVM computes (its rows half collected in the row buffer): the core
    comes back, reconfigured it computes exact rows again; an MVM on tiles with nothing
    programmed gives zeros and does not hang."""
    cfg = _core(tiles=2)
    rng = np.random.default_rng(3)
    maps, plan, prog = _chunked(cfg, rng, 8, 4)
    assert len(plan) == 2
    x = rng.integers(-4, 4, (4, 8))
    host = _Host(cfg, maps)
    mvm = _cmd(cfg, Op.MVM, mask=0b11, tokens=4, in_addr=0, in_words=1, out_cols=4, to_o=1)
    cut = ("cmd", mvm[1], False)
    mvm_cycles = TINY.input_bits * (1 + TINY.cols * 4)
    errors = host.run(prog + [("wr", 0, matrix_words(x, cfg.length)), cut,
                              ("reset", 2 * mvm_cycles + 12)] + prog + [mvm])
    assert not any(e for e, _ in errors)
    assert 1 <= len(host.got) - 4 <= 3          # the cut MVM sent some of its rows
    host2 = _Host(cfg)
    errors = host2.run([_cmd(cfg, Op.MVM, mask=0b11, tokens=1, in_words=1, out_cols=8, to_o=1)])
    assert errors == [(False, False)] and host2.got[0][3] == [0] * 8


def test_constructor_errors():
    with pytest.raises(TypeError, match="Analog must be 'ports' or 'macro'"):
        PimCore(2, tile=TINY, ni=NI, analog="spice")
    with pytest.raises(TypeError, match="tiles must be"):
        PimCore(0, tile=TINY, ni=NI)
    with pytest.raises(ValueError, match="must divide the vector length"):
        PimCore(2, tile=TINY, ni=NiConfig(elem_width=16, length=6))
    with pytest.raises(TypeError, match="Tile must be a golden.pim_tile.TileConfig or one of"):
        PimCore(2, tile={"rows": 4}, ni=NI)


def test_constructor_presets_and_max_cols():
    with pytest.raises(TypeError, match="Max_cols must be a non-negative integer"):
        PimCore(2, tile=TINY, ni=NI, max_cols=-1)
    with pytest.raises(TypeError, match="Ni must be a golden.network_interface.NiConfig or one of 'atleus', 'regression', 'small'"):
        PimCore(2, tile=TINY, ni="huge")
    core = PimCore(8, tile="regression", ni="regression", mem_words=256)
    from golden.chip import REGRESSION_TILE
    assert core.tile == REGRESSION_TILE and core.ni.length == 32 and core.max_cols == 8 * 256
    assert core.config == CoreConfig(tiles=8, tile=REGRESSION_TILE, ni=core.ni, mem_words=256)
    small = PimCore(2, tile="small", ni="small", mem_words=16)
    assert small.tile.crossbars == 2 and small.ni.elem_width == 32


def test_verilog_one_tile_module_and_macros():
    """analog="macro": every tile is one shared module, each has its analog macro instance and
    the core has no analog ports; analog="ports": the ports are there, no macro."""
    from hdl.pim_tile.core import macro_name
    from hdl.verilog import generate_modules
    top, cells = generate_modules(PimCore(3, tile=TINY, ni=NI, mem_words=32, max_cols=12,
                                          analog="macro"), "pim_core")
    assert "pim_tile" in cells and not any(n.startswith("pim_tile_") for n in cells)
    name = macro_name(TINY)
    assert name == "reram_crossbars_2x4x8"
    for k in range(3):
        assert f"{name} xbars{k} (" in top and f"pim_tile tile{k} (" in top
    header = top[top.index("module pim_core("):top.index(");")]
    assert "decision" not in header and "drive" not in header
    top2, _ = generate_modules(PimCore(3, tile=TINY, ni=NI, mem_words=32, max_cols=12), "pim_core")
    header2 = top2[top2.index("module pim_core("):top2.index(");")]
    assert "decision" in header2 and name not in top2


def test_encode_command_fields():
    """encode/decode round trip in the RTL's field order; errors name the field."""
    from hdl.pim_tile.core import command_layout
    from golden.pim_core import command_fields
    cfg = _core()
    lay = command_layout(cfg)
    assert [k for k, _ in lay] == list(command_fields(cfg))
    assert lay.size == sum(command_fields(cfg).values())
    fields = {"mask": 0b1010, "tokens": 7, "in_addr": 3, "in_words": 2, "out_cols": 12,
              "out_addr": 20, "to_o": 1, "dest": 3, "dest_addr": 0xFFFE, "layer": 63,
              "out_shift": 9, "out_bits": 32}
    word = encode_command(cfg, Op.MVM, **fields)
    back = decode_command(cfg, word)
    assert back["op"] == Op.MVM and all(back[k] == v for k, v in fields.items())
    assert unpack(lay, word)["out_shift"] == 9
    with pytest.raises(ValueError, match="Unknown command field 'bogus'"):
        encode_command(cfg, Op.SEND, bogus=1)
    with pytest.raises(ValueError, match="Command field tokens must be 0 to 63"):
        encode_command(cfg, Op.SEND, tokens=64)
