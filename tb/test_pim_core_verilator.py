"""PimCore end to end in Verilator (``analog="macro"``), the golden crossbars in the loop.

Each tile's analog macro is the behavioural code store of :mod:`tb.env.pim_core`
(``crossbar_macro_verilog``), answered by the golden crossbars at each sample strobe. Every
vector on ``o`` is compared in order with :class:`golden.pim_core.PimCoreModel`, and the
rows with the transformer's own arithmetic:

- small tiles (4 crossbars of 16 x 16, 3 tiles): a 64 x 8 matrix cut by
  :func:`golden.transformer.chunk_plan` into 2 row chunks on 2 tiles (summed), ideal and
  noisy, to memory then SEND, and requantized to ``o``, with
  random idle cycles and backpressure; the steady-state cycles per token equal
  :func:`golden.pim_core.cycles_per_token` (the slowest tile's ``mvm_cycles``); a reset in
  mid-MVM and a refused command.
- the regression tile (``golden.chip.REGRESSION_TILE``, 16 crossbars of 32 x 32) on 3 tiles
  holding ``REGRESSION_LAYER``'s W^QKV (64 x 192) as :class:`EncoderLayer` cuts it (3 column
  chunks), with the blackbox SRAMs (``memory="macro"``, as in the chip): the rows equal
  ``EncoderLayer.project("wqkv", x)`` bit for bit, noise off and on (the tiles programmed at a
  later noise step), and a requantized K projection equals the layer's ``_projection_out``
  for ``k``.
"""

import functools
import json
import os

import cocotb
import numpy as np
import pytest

from golden.chip import REGRESSION_CHIP, REGRESSION_LAYER, REGRESSION_TILE
from golden.network_interface import NiConfig
from golden.noise import NoiseConfig
from golden.pim_core import (CoreConfig, CoreField, Op, cycles_per_token, encode_command, matrix_words,
                             tile_commands)
from golden.pim_tile import TileConfig, map_matrix
from golden.transformer import EncoderLayer, chunk_plan, random_weights, tile_forward
from hdl.pim_tile.core import PimCore
from hdl.verilog import generate
from tb import runner
from tb.env.pim_core import core_macros_verilog

SMALL_TILE = dict(crossbars=4, rows=16, cols=16, input_bits=6, weight_bits=8, adc_bits=8,
                  resolutions=(6, 7, 8), adcs_per_xbar=1, group=2, row_blocks=2, outputs=16,
                  scale_bits=16, scale_frac_bits=16, out_bits=14)
SMALL = dict(tiles=3, tile=SMALL_TILE, ni=dict(payload_width=32, elem_width=32, length=32, nodes=8),
             mem_words=64, max_cols=32)
_L = max(REGRESSION_TILE.rows, REGRESSION_CHIP.systolic_rows)
REGRESSION = dict(tiles=3, tile={**REGRESSION_TILE.__dict__},
                  ni=dict(payload_width=32, elem_width=32, length=_L, nodes=8),
                  mem_words=256, max_cols=256)

NOISY = NoiseConfig(prog_sigma=0.08, read_sigma=0.05, comp_offset_sigma=0.2, comp_noise_sigma=0.3)


def _config(params):
    t = dict(params["tile"])
    t["resolutions"] = tuple(t["resolutions"])
    return CoreConfig(tiles=params["tiles"], tile=TileConfig(**t), ni=NiConfig(**params["ni"]),
                      mem_words=params["mem_words"], max_cols=params["max_cols"])


def _cfg():
    return _config(json.loads(os.environ["PIM_CORE"]))


# -- cocotb ---------------------------------------------------------------------------------

async def _bench(dut, seed, **kw):
    from tb.env.pim_core import CoreBench
    tb = CoreBench(dut, _cfg(), seed=seed, **kw)
    await tb.reset()
    return tb


def _small_matrix(cfg, rng, noise=None):
    """64 x 8 weights cut by chunk_plan into 2 row chunks onto tiles 0-1 (summed)."""
    t = cfg.tile
    w = rng.normal(0, 0.1, (64, 8))
    plan = chunk_plan(64, 8, 2, t)
    assert len(plan) == 2 and len({p[0] for p in plan}) == 2
    maps = [map_matrix(w[r0:r1, c0:c1], t, cell_bits=2, adc_bits=8, seed=i, noise=noise)
            for i, (r0, r1, c0, c1) in enumerate(plan)]
    ofb = min(m.out_frac_bits for m in maps)
    maps = [map_matrix(w[r0:r1, c0:c1], t, cell_bits=2, adc_bits=8, seed=i, noise=noise,
                       out_frac_bits=ofb) for i, (r0, r1, c0, c1) in enumerate(plan)]
    return plan, maps


def _load(tb, plan, maps, tiles=None, step0=0):
    tiles = list(range(len(plan))) if tiles is None else tiles
    for k, (r0, r1, c0, c1), m in zip(tiles, plan, maps):
        tb.program(k, m, step0)
        for word in tile_commands(tb.cfg, k, m, r0, c0):
            tb.command(word)


def _inputs(rng, bits, tokens, k):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (tokens, k))
    x[0] = lo
    x[1] = hi
    return x


async def _small(dut, noise, seed):
    tb = await _bench(dut, seed, idle=0.2, backpressure=0.3)
    cfg, rng = tb.cfg, np.random.default_rng(seed)
    plan, maps = _small_matrix(cfg, rng, noise)
    _load(tb, plan, maps)
    x = _inputs(rng, cfg.tile.input_bits, 4, 64)
    want = np.zeros((4, 8), dtype=np.int64)
    for i, (r0, r1, c0, c1) in enumerate(plan):
        want[:, c0:c1] += tile_forward(maps[i], x[:, r0:r1])
    tb.write(0, matrix_words(x, cfg.length))
    await tb.idle_wait()
    C = functools.partial(encode_command, cfg)
    tb.command(C(Op.MVM, mask=0b011, tokens=4, in_addr=0, in_words=2, out_cols=8, out_addr=20))
    tb.command(C(Op.SEND, in_addr=20, tokens=4, dest=3, dest_addr=0x8000, layer=1))
    tb.command(C(Op.MVM, mask=0b011, tokens=4, in_addr=0, in_words=2, out_cols=8, to_o=1,
                 dest=2, dest_addr=40, out_shift=4, out_bits=8))
    await tb.drain()
    rows = tb.model.read_matrix(20, 4, 8)
    assert np.array_equal(rows, want)          # the exact sums of the chunks' tile outputs


@cocotb.test()
async def small_chunks_ideal(dut):
    """Two row chunks on 2 tiles (summed), ideal crossbars: to memory, SEND, requantized to o."""
    await _small(dut, None, 1)


@cocotb.test()
async def small_chunks_noisy(dut):
    """The same with programming, read and comparator noise."""
    await _small(dut, NOISY, 2)


@cocotb.test()
async def small_cycles_per_token(dut):
    """Steady state: consecutive rows on o are cycles_per_token apart (no idle, no
    backpressure); a 7-bit tile makes the others wait (the slowest tile sets the pace)."""
    tb = await _bench(dut, 3)
    cfg, rng = tb.cfg, np.random.default_rng(3)
    t = cfg.tile
    w = rng.normal(0, 0.1, (32, 8))
    maps = [map_matrix(w, t, cell_bits=2, adc_bits=7 if k == 2 else 6, seed=k) for k in range(3)]
    for k, m in enumerate(maps):
        tb.program(k, m)
        for word in tile_commands(cfg, k, m, 0, 0 if k == 0 else 16):
            tb.command(word)
    tokens = 8
    tb.write(0, matrix_words(_inputs(rng, t.input_bits, tokens, 32), cfg.length))
    await tb.idle_wait()
    tb.command(encode_command(cfg, Op.MVM, mask=0b101, tokens=tokens, in_addr=0, in_words=1,
                              out_cols=32, to_o=1, dest=1))
    cycles = await tb.drain()
    per = cycles_per_token(cfg, {0: maps[0], 2: maps[2]})
    assert per == t.input_bits * (1 + t.cols * 7)
    gaps = np.diff(cycles[2:])                  # from the third row on: steady state
    assert list(gaps) == [per] * (tokens - 3), f"row intervals {list(np.diff(cycles))}, model {per}"
    dut._log.info(f"cycles per token {per}, first row at {cycles[0]}")


@cocotb.test()
async def small_reset_and_error(dut):
    """Reset in mid-MVM, reconfiguration, exact rows again; a refused command sets error and
    the next command still runs."""
    from cocotb.triggers import ClockCycles
    tb = await _bench(dut, 4, idle=0.1, backpressure=0.2)
    cfg, rng = tb.cfg, np.random.default_rng(4)
    plan, maps = _small_matrix(cfg, rng)
    _load(tb, plan, maps)
    x = _inputs(rng, cfg.tile.input_bits, 4, 64)
    tb.write(0, matrix_words(x, cfg.length))
    await tb.idle_wait()
    mvm = encode_command(cfg, Op.MVM, mask=0b011, tokens=4, in_addr=0, in_words=2, out_cols=8,
                         to_o=1, dest=1)
    tb.command(mvm)
    await ClockCycles(dut.clk, 2 * cfg.tile.input_bits * (1 + cfg.tile.cols * 8))
    await tb.reset()
    _load(tb, plan, maps)
    tb.command(mvm)
    await tb.drain()
    tb.command(encode_command(cfg, Op.MVM, mask=0b011, tokens=0, in_words=2, out_cols=8))
    tb.command(encode_command(cfg, Op.SEND, in_addr=1, tokens=2, dest=3))
    await tb.drain()
    assert int(dut.error.value) == 1


async def _regression(dut, noise, seed, step0=0):
    tb = await _bench(dut, seed, idle=0.1, backpressure=0.2)
    cfg, rng = tb.cfg, np.random.default_rng(seed)
    lc = REGRESSION_LAYER
    layer = EncoderLayer(lc, random_weights(lc, seed), tile=cfg.tile, noise=noise, seed=seed)
    chunks = layer.chunks("wqkv")
    assert len(chunks) == 3
    tiles = [0, 1, 2]
    plan = [(r.start, r.stop, c.start, c.stop) for r, c, _ in chunks]
    _load(tb, plan, [m for _, _, m in chunks], tiles, step0)
    if step0:                                  # the layer's earlier vectors (noise steps)
        layer.project("wqkv", np.zeros((step0, lc.d_model), dtype=np.int64))
    tokens = 6
    xf = rng.normal(0, 1, (lc.seq_len, lc.d_model))
    layer.calibrate(xf)
    x = layer.quantize_input(xf)[:tokens]
    tb.write(0, matrix_words(x, cfg.length))
    await tb.idle_wait()
    d = lc.d_model
    words = -(-d // cfg.length)
    tb.command(encode_command(cfg, Op.MVM, mask=0b111, tokens=tokens, in_addr=0, in_words=words,
                              out_cols=3 * d, to_o=1, dest=0, dest_addr=0x8000))
    await tb.drain()
    y = layer.project("wqkv", x)
    rows = np.array([v[3] for v in tb.last_received]).reshape(tokens, -1)[:, :3 * d]
    assert np.array_equal(rows, y), "the core's rows differ from EncoderLayer.project"
    # The K projection alone, requantized by the core: tile 1 (W^K's chunk) moved to column 0.
    fx, fk = layer.formats["x"], layer.formats["k"]
    shift = layer.out_frac_bits("wqkv") + fx - fk
    assert 0 <= shift <= cfg.acc_width
    tb.command(encode_command(cfg, Op.CONFIG, tile=1, core=1, field=CoreField.OUT_COL, value=0))
    tb.command(encode_command(cfg, Op.MVM, mask=0b010, tokens=tokens, in_addr=0, in_words=words,
                              out_cols=d, to_o=1, dest=0, dest_addr=0x8100, out_shift=shift,
                              out_bits=lc.act_bits))
    await tb.drain()
    y2 = layer.project("wqkv", x)              # the second pass: the same noise steps
    k_want = layer._projection_out("wqkv", x, "k", fx, None, y=y2[:, d:2 * d], lt="k")
    k_got = np.array([v[3] for v in tb.last_received]).reshape(tokens, -1)[:, :d]
    assert np.array_equal(k_got, k_want)


@cocotb.test()
async def regression_wqkv(dut):
    """REGRESSION_LAYER's W^QKV on 3 of 4 regression tiles, bit-exact with
    EncoderLayer.project; then the K projection requantized by the core (out_shift, out_bits)
    equals the layer's _projection_out for k (no LoRA on W^K)."""
    await _regression(dut, None, 5)


@cocotb.test()
async def regression_wqkv_noisy(dut):
    """The same with noisy crossbars (the layer's and the tiles' noise draws agree), the tiles
    programmed at noise step 3 (the layer projected 3 vectors before)."""
    await _regression(dut, NOISY, 6, step0=3)


# -- pytest ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _verilog(params_json, memory):
    cfg = _config(json.loads(params_json))
    core = PimCore(cfg.tiles, tile=cfg.tile, ni=cfg.ni, mem_words=cfg.mem_words,
                   max_cols=cfg.max_cols, analog="macro", memory=memory)
    return generate(core, "pim_core") + core_macros_verilog(cfg, memory=memory)


def _run(params, name, testcase, memory="amaranth"):
    runner.run(_verilog(json.dumps(params), memory), "pim_core", "tb.test_pim_core_verilator", name=name,
               testcase=testcase, extra_env={"PIM_CORE": json.dumps(params)}, top_only=True)


@pytest.mark.parametrize("testcase", ["small_chunks_ideal", "small_chunks_noisy",
                                      "small_cycles_per_token", "small_reset_and_error"])
def test_pim_core_small(testcase):
    _run(SMALL, "pim_core_small", testcase)


@pytest.mark.parametrize("testcase", ["regression_wqkv", "regression_wqkv_noisy"])
def test_pim_core_regression(testcase):
    """The regression tile, with blackbox SRAMs (memory="macro", as in the chip)."""
    _run(REGRESSION, "pim_core_regression", testcase, memory="macro")
