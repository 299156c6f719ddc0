"""ShiftAddDequantizer and Dequantizer: cocotb + Verilator regressions against the golden models.

Per configuration (pytest) one Verilator build; the cocotb coroutines below run against it:
end to end with the golden crossbar (random int8 X and W, lossless ADC), random idle cycles
and backpressure on every stream, scale rewrites between reads, reset in mid-stream, the
sticky saturation flag; and the standalone dequantizer over extreme values and scales.
"""

import json
import os

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, FallingEdge

from golden.quant import dequantize
from hdl.dequant import Dequantizer, ShiftAddDequantizer
from hdl.verilog import generate
from tb import runner
from tb.env.dequant import (GROUP_CONFIGS, GROUP_SIZE, DequantBench, extreme_values, group_stimulus,
                            interesting_scales)



def _params():
    return json.loads(os.environ["DQ_PARAMS"])


# -- whole group --------------------------------------------------------------------------------

async def _group_bench(dut, p):
    tb = DequantBench(dut, ShiftAddDequantizer(**{k: v for k, v in p.items() if k != "seed"}))
    await tb.reset()
    return tb


@cocotb.test()
async def group_end_to_end(dut):
    """Two reads with a scale rewrite between them, idle cycles and backpressure, sticky flag."""
    p = _params()
    tb = await _group_bench(dut, p)
    rng = np.random.default_rng(p["seed"])
    tb.streams(seed=p["seed"], idle=0.3, cfg_idle=0.3, backpressure=0.3)
    any_sat = False
    expected = []
    for read in range(2):
        beats, scales, (ev, es) = group_stimulus(
            rng, rows=p["rows"], n_out=p["n_out"], xbars=p["xbars"], units=p["units"],
            cell_bits=p["cell_bits"], batch=2, flip=p["flip"], out_bits=p["out_bits"],
            rounding=p["rounding"], scale_range=1 << (13 if read == 0 else 15))
        await tb.write_scales(scales)                                       # rewritten per read
        tb.send(beats)
        expected += [{"value": int(v), "saturated": int(s)} for v, s in zip(ev, es)]
        any_sat |= bool(es.any())
        await tb.drain(len(expected))
    got = [{"value": g["value"], "saturated": g["saturated"]} for g in tb.mon.received]
    assert got == expected
    await FallingEdge(dut.clk)
    assert int(dut.saturated.value) == int(any_sat)
    dut.clear_saturated.value = 1
    await FallingEdge(dut.clk)
    dut.clear_saturated.value = 0
    await FallingEdge(dut.clk)
    assert int(dut.saturated.value) == 0


@cocotb.test()
async def group_reset_mid_stream(dut):
    """Reset while a read streams through; the next full read must be exact."""
    p = _params()
    tb = await _group_bench(dut, p)
    rng = np.random.default_rng(p["seed"] + 10)
    kw = dict(rows=p["rows"], n_out=p["n_out"], xbars=p["xbars"], units=p["units"],
              cell_bits=p["cell_bits"], batch=1, flip=p["flip"], out_bits=p["out_bits"],
              rounding=p["rounding"], scale_range=1 << 12)
    beats, scales, _ = group_stimulus(rng, **kw)
    tb.streams(seed=4, idle=0.2, backpressure=0.5)
    for xb, s in enumerate(scales):
        tb.cfg.send({"xbar": xb, "scale": s})
    tb.send(beats)
    await ClockCycles(dut.clk, len(beats) - 7)  # the last beats of the read are still in flight
    await tb.reset()
    beats, scales, (ev, es) = group_stimulus(rng, **kw)
    tb.streams(seed=7, idle=0.2, backpressure=0.3)
    await tb.write_scales(scales)                                       # reset cleared them
    tb.send(beats)
    await tb.drain(len(ev))
    assert [g["value"] for g in tb.mon.received] == [int(v) for v in ev]


@pytest.mark.parametrize("config", list(GROUP_CONFIGS))
def test_group_verilator(config):
    p = dict(GROUP_CONFIGS[config], **GROUP_SIZE)
    verilog = generate(ShiftAddDequantizer(**p), "shift_add_dequantizer")
    runner.run(verilog, "shift_add_dequantizer", "tb.test_dequant_verilator", name=f"dequant_{config}",
               testcase=["group_end_to_end", "group_reset_mid_stream"],
               extra_env={"DQ_PARAMS": json.dumps(dict(p, seed=21))})


# -- standalone dequantizer ---------------------------------------------------------------------

DQ_CONFIG = dict(in_width=24, columns=4, xbars=4, scale_bits=16, scale_frac_bits=14, out_bits=8,
                 rounding="half_up", multiplier="csd")


@cocotb.test()
async def dequantizer_extremes(dut):
    """Extreme values times 0, +-1, max, min, powers of two and random scales, both saturations."""
    p = _params()
    tb = DequantBench(dut, Dequantizer(**{k: v for k, v in p.items() if k != "seed"}))
    await tb.reset()
    rng = np.random.default_rng(p["seed"])
    tb.streams(seed=1, idle=0.3, backpressure=0.3)
    scales = interesting_scales(rng, p["scale_bits"], 48)
    expected, n_per = [], 40
    for r in range(0, len(scales), p["xbars"]):
        sc = (scales[r:r + p["xbars"]] + [0] * p["xbars"])[:p["xbars"]]
        await tb.write_scales(sc)
        v = extreme_values(rng, p["in_width"], n_per)
        x = rng.integers(0, p["xbars"], n_per)
        ev, es = dequantize(v, np.asarray(sc)[x], scale_frac_bits=p["scale_frac_bits"],
                            out_bits=p["out_bits"], rounding=p["rounding"])
        for k in range(n_per):
            tb.drv.send({"xbar": int(x[k]), "column": k % p["columns"], "value": int(v[k])})
        expected += [(int(x[k]), k % p["columns"], int(ev[k]), int(es[k])) for k in range(n_per)]
        await tb.drain(len(expected))
    got = [(g["xbar"], g["column"], g["value"], g["saturated"]) for g in tb.mon.received]
    assert got == expected
    vals = [e[2] for e in expected]
    lim = 1 << (p["out_bits"] - 1)
    assert max(vals) == lim - 1 and min(vals) == -lim     # saturation at both ends was exercised
    assert int(dut.saturated.value) == 1


@pytest.mark.parametrize("multiplier", ["csd"])
def test_dequantizer_verilator(multiplier):
    p = dict(DQ_CONFIG, multiplier=multiplier)
    verilog = generate(Dequantizer(**p), "dequantizer")
    runner.run(verilog, "dequantizer", "tb.test_dequant_verilator", name=f"dequantizer_{multiplier}",
               testcase="dequantizer_extremes", extra_env={"DQ_PARAMS": json.dumps(dict(p, seed=5))})
