"""PimTile end to end in Verilator, with the golden crossbars answering the RTL (tb.env.pim_tile:
the codes of every sample computed by the golden model and answered from a code store).

Every output word is compared in order with :meth:`golden.pim_tile.TileMapping.golden`:
ideal and noisy crossbars (programming, read, comparator noise; the same seeds), MLC, SLC and
hybrid (mixed) layouts, 6/7/8-bit ADC modes, random idle input and output backpressure,
reconfiguration between batches and reset in mid-batch, at a scaled-down size (4 crossbars
of 16 x 16 in two groups) and once at a full 128 x 128 crossbar.
"""

import functools
import json
import os

import cocotb
import numpy as np
import pytest

from golden.noise import NoiseConfig
from golden.pim_tile import TileConfig, map_matrix
from hdl.pim_tile import PimTile
from hdl.verilog import generate
from tb import runner
from tb.env.pim_tile import TESTBENCH_TOP, tile_testbench_verilog

SMALL = dict(crossbars=4, rows=16, cols=16, input_bits=6, weight_bits=8, adc_bits=8,
             resolutions=(6, 7, 8), adcs_per_xbar=1, group=2, row_blocks=2, outputs=16,
             scale_bits=16, scale_frac_bits=16, out_bits=14)
FULL = dict(crossbars=1, rows=128, cols=128, input_bits=8, weight_bits=8, adc_bits=8,
            resolutions=(6, 7, 8), adcs_per_xbar=2, group=1, row_blocks=1, outputs=32,
            scale_bits=16, scale_frac_bits=16, out_bits=24)

NOISY = NoiseConfig(prog_sigma=0.08, read_sigma=0.05, comp_offset_sigma=0.2, comp_noise_sigma=0.3)


def _tile():
    p = json.loads(os.environ["PIM_TILE"])
    p["resolutions"] = tuple(p["resolutions"])
    return TileConfig(**p)


def _inputs(rng, tile, batch, k):
    lo, hi = -(1 << (tile.input_bits - 1)), (1 << (tile.input_bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (batch, k))
    x[0] = lo           # extremes: every plane driven, the sign plane alone
    if batch > 1:
        x[1] = hi
    return x


# -- cocotb ---------------------------------------------------------------------------------

async def _bench(dut, seed, **kw):
    from tb.env.pim_tile import TileBench
    tb = TileBench(dut, _tile(), seed=seed, **kw)
    await tb.reset()
    return tb


@cocotb.test()
async def ideal_mlc_slc_reconfigure(dut):
    """Ideal MLC (8-bit ADC), then SLC (7-bit) after a reconfiguration, idle input in between."""
    tb = await _bench(dut, 1, idle=0.3, backpressure=0.3)
    t, rng = tb.tile, np.random.default_rng(11)
    k = t.rows * min(2, t.row_blocks)
    mlc = map_matrix(rng.normal(0, 0.1, (k, 2 * t.n_out(2))), t, cell_bits=2, adc_bits=8)
    await tb.configure(mlc)
    tb.send(_inputs(rng, t, 3, k))
    await tb.drain()
    await tb.cycles(500)                           # idle input: the tile waits
    tb.send(_inputs(rng, t, 1, k))
    await tb.drain()
    slc = map_matrix(rng.integers(-128, 128, (t.rows, 2 * t.n_out(1))), t, cell_bits=1, adc_bits=7,
                     scale=0.01)
    await tb.configure(slc)
    tb.send(_inputs(rng, t, 3, t.rows))
    await tb.drain()


@cocotb.test()
async def noisy_mlc(dut):
    """Programming, read and comparator noise (offset and per-trial), 7-bit ADC."""
    tb = await _bench(dut, 2, idle=0.2, backpressure=0.4)
    t, rng = tb.tile, np.random.default_rng(12)
    k = t.rows * min(2, t.row_blocks)
    m = map_matrix(rng.normal(0, 0.1, (k, t.n_out(2) + 1)), t, cell_bits=2, adc_bits=7,
                   noise=NOISY, seed=5)
    await tb.configure(m)
    tb.send(_inputs(rng, t, 3, k))
    await tb.drain()


@cocotb.test()
async def hybrid_mixed(dut):
    """HyFlexPIM hybrid: SLC crossbars at 6 bits beside noisy MLC crossbars at 8 bits."""
    tb = await _bench(dut, 3, idle=0.1, backpressure=0.2)
    t, rng = tb.tile, np.random.default_rng(13)
    if t.crossbars < 3:
        return
    m = map_matrix(rng.normal(0, 0.1, (t.rows, t.n_out(2))), t, slc_rate=0.5,
                   adc_bits={1: 6, 2: 8}, noise={"mlc": NOISY}, seed=7)
    assert sorted(x.cell_bits for x in m.xbars) == [1, 1, 2]
    await tb.configure(m)
    tb.send(_inputs(rng, t, 3, t.rows))
    await tb.drain()


@cocotb.test()
async def reset_mid_batch(dut):
    """Reset while a batch computes; after reconfiguration only the new batch comes out."""
    tb = await _bench(dut, 4, idle=0.1, backpressure=0.3)
    t, rng = tb.tile, np.random.default_rng(14)
    m = map_matrix(rng.normal(0, 0.1, (t.rows, t.n_out(2))), t, cell_bits=2, adc_bits=6)
    await tb.configure(m)
    tb.send(_inputs(rng, t, 4, t.rows))
    await tb.cycles(int(1.5 * t.input_bits * (1 + t.columns_per_adc * 6)))
    await tb.reset()
    assert not tb.out.received
    await tb.configure(m)
    tb.send(_inputs(rng, t, 2, t.rows))
    await tb.drain()


@cocotb.test()
async def full_crossbar(dut):
    """One full 128 x 128 MLC crossbar with two ADCs, noisy, 6-bit ADC (column sums clip at 63)."""
    tb = await _bench(dut, 5, idle=0.2, backpressure=0.2)
    t, rng = tb.tile, np.random.default_rng(15)
    m = map_matrix(rng.normal(0, 0.1, (t.rows, t.n_out(2))), t, cell_bits=2, adc_bits=6,
                   noise=NoiseConfig(prog_sigma=0.05, comp_noise_sigma=0.3), seed=9)
    await tb.configure(m)
    tb.send(_inputs(rng, t, 2, t.rows))
    await tb.drain()


@cocotb.test()
async def code_store_checks_trials(dut):
    """The code store flags a trial that breaks the SAR rule: codes replaced in mid-conversion
    (every later trial then disagrees with the decisions the RTL already took)."""
    from cocotb.triggers import ClockCycles, RisingEdge
    tb = await _bench(dut, 6)
    tb.stop_trial_check()
    t, rng = tb.tile, np.random.default_rng(16)
    m = map_matrix(rng.normal(0, 0.1, (t.rows, t.n_out(2))), t, cell_bits=2, adc_bits=8)
    await tb.configure(m)
    tb.send(_inputs(rng, t, 1, t.rows))
    await RisingEdge(dut.sample_any)
    await ClockCycles(dut.clk, 3)                   # two trials of each conversion taken
    assert not int(dut.sar_error.value)
    n = t.crossbars * t.cols * t.adc_bits
    dut.codes_data.value = dut.codes_data.value.to_unsigned() ^ ((1 << n) - 1)
    dut.codes_mask.value = (1 << t.crossbars) - 1
    dut.codes_we.value = 1
    await RisingEdge(dut.clk)
    dut.codes_we.value = 0
    await ClockCycles(dut.clk, 3)
    assert int(dut.sar_error.value)
    trial, code = int(dut.sar_error_trial.value), int(dut.sar_error_code.value)
    low = trial & -trial
    assert trial != (code & ~(low | (low - 1))) | low


# -- pytest ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _verilog(params_json):
    params = json.loads(params_json)
    params["resolutions"] = tuple(params["resolutions"])
    return tile_testbench_verilog(generate(PimTile(**params), "pim_tile"), TileConfig(**params))


def _run(params, name, testcase):
    verilog = _verilog(json.dumps(params))
    runner.run(verilog, TESTBENCH_TOP, "tb.test_pim_tile_verilator", name=name, testcase=testcase,
               extra_env={"PIM_TILE": json.dumps(params)}, top_only=True)


@pytest.mark.parametrize("testcase", ["ideal_mlc_slc_reconfigure", "noisy_mlc", "hybrid_mixed",
                                      "reset_mid_batch", "code_store_checks_trials"])
def test_pim_tile_small(testcase):
    _run(SMALL, "pim_tile_small", testcase)


def test_pim_tile_full_crossbar():
    _run(FULL, "pim_tile_full", "full_crossbar")
