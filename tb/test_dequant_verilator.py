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
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from golden.quant import dequantize
from hdl.dequant import Dequantizer, ShiftAddDequantizer
from hdl.verilog import generate
from tb import runner
from tb.cocotb_streams import StreamDriver, StreamMonitor, reset_dut
from tb.dequant_common import extreme_values, fit, group_stimulus, interesting_scales

GROUP_CONFIGS = {
    "mlc_flip_a7_even": dict(cell_bits=2, adc_bits=7, flip=True, rounding="half_even", out_bits=12,
                             multiplier="csd"),
    "slc_a6_up": dict(cell_bits=1, adc_bits=6, flip=False, rounding="half_up", out_bits=16,
                      multiplier="csd"),
}
GROUP_SIZE = dict(rows=16, n_out=3, xbars=4, units=2)


def _params():
    return json.loads(os.environ["DQ_PARAMS"])


async def _start(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.clear_saturated.value = 0
    await reset_dut(dut)


async def _write_scales_then_send(dut, cfg, scales, drv, in_layout, beats):
    """Write every crossbar's scale, wait until the writes are taken, then queue the beats."""
    for xb, scale in enumerate(scales):
        cfg.send({"xbar": xb, "scale": scale})
    while cfg.pending:
        await RisingEdge(dut.clk)
    await ClockCycles(dut.clk, 2)
    for b in beats:
        drv.send(fit(in_layout, b))


async def _drain(monitor, n, dut, limit=20000):
    for _ in range(limit):
        if len(monitor.received) >= n:
            break
        await RisingEdge(dut.clk)
    await ClockCycles(dut.clk, 30)
    assert len(monitor.received) == n, f"received {len(monitor.received)} of {n}"


# -- whole group --------------------------------------------------------------------------------

def _group_layouts(p):
    dut = ShiftAddDequantizer(**{k: v for k, v in p.items() if k != "seed"})
    return dut.i.payload.shape(), dut.cfg.payload.shape(), dut.o.payload.shape()


@cocotb.test()
async def group_end_to_end(dut):
    """Two reads with a scale rewrite between them, idle cycles and backpressure, sticky flag."""
    p = _params()
    in_l, cfg_l, out_l = _group_layouts(p)
    await _start(dut)
    rng = np.random.default_rng(p["seed"])
    drv = StreamDriver(dut, "i", in_l, idle=0.3, seed=p["seed"])
    cfg = StreamDriver(dut, "cfg", cfg_l, idle=0.3, seed=p["seed"] + 1)
    mon = StreamMonitor(dut, "o", out_l, backpressure=0.3, seed=p["seed"] + 2)
    any_sat = False
    expected = []
    for read in range(2):
        beats, scales, (ev, es) = group_stimulus(
            rng, rows=p["rows"], n_out=p["n_out"], xbars=p["xbars"], units=p["units"],
            cell_bits=p["cell_bits"], batch=2, flip=p["flip"], out_bits=p["out_bits"],
            rounding=p["rounding"], scale_range=1 << (13 if read == 0 else 15))
        await _write_scales_then_send(dut, cfg, scales, drv, in_l, beats)   # rewritten per read
        expected += [{"value": int(v), "saturated": int(s)} for v, s in zip(ev, es)]
        any_sat |= bool(es.any())
        await _drain(mon, len(expected), dut)
    got = [{"value": g["value"], "saturated": g["saturated"]} for g in mon.received]
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
    in_l, cfg_l, out_l = _group_layouts(p)
    await _start(dut)
    rng = np.random.default_rng(p["seed"] + 10)
    kw = dict(rows=p["rows"], n_out=p["n_out"], xbars=p["xbars"], units=p["units"],
              cell_bits=p["cell_bits"], batch=1, flip=p["flip"], out_bits=p["out_bits"],
              rounding=p["rounding"], scale_range=1 << 12)
    beats, scales, _ = group_stimulus(rng, **kw)
    cfg = StreamDriver(dut, "cfg", cfg_l, seed=3)
    drv = StreamDriver(dut, "i", in_l, idle=0.2, seed=4)
    mon = StreamMonitor(dut, "o", out_l, backpressure=0.5, seed=5)
    for xb, s in enumerate(scales):
        cfg.send({"xbar": xb, "scale": s})
    for b in beats:
        drv.send(fit(in_l, b))
    await ClockCycles(dut.clk, len(beats) - 7)  # the last beats of the read are still in flight
    for t in (drv, cfg, mon):
        t.kill()
    await reset_dut(dut)
    beats, scales, (ev, es) = group_stimulus(rng, **kw)
    cfg = StreamDriver(dut, "cfg", cfg_l, seed=6)
    drv = StreamDriver(dut, "i", in_l, idle=0.2, seed=7)
    mon = StreamMonitor(dut, "o", out_l, backpressure=0.3, seed=8)
    await _write_scales_then_send(dut, cfg, scales, drv, in_l, beats)   # reset cleared them
    await _drain(mon, len(ev), dut)
    assert [g["value"] for g in mon.received] == [int(v) for v in ev]


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
    d = Dequantizer(**{k: v for k, v in p.items() if k != "seed"})
    in_l, cfg_l, out_l = d.i.payload.shape(), d.cfg.payload.shape(), d.o.payload.shape()
    await _start(dut)
    rng = np.random.default_rng(p["seed"])
    drv = StreamDriver(dut, "i", in_l, idle=0.3, seed=1)
    cfg = StreamDriver(dut, "cfg", cfg_l, seed=2)
    mon = StreamMonitor(dut, "o", out_l, backpressure=0.3, seed=3)
    scales = interesting_scales(rng, p["scale_bits"], 48)
    expected, n_per = [], 40
    for r in range(0, len(scales), p["xbars"]):
        sc = (scales[r:r + p["xbars"]] + [0] * p["xbars"])[:p["xbars"]]
        for xb, s in enumerate(sc):
            cfg.send({"xbar": xb, "scale": s})
        while cfg.pending:
            await RisingEdge(dut.clk)
        await ClockCycles(dut.clk, 2)
        v = extreme_values(rng, p["in_width"], n_per)
        x = rng.integers(0, p["xbars"], n_per)
        ev, es = dequantize(v, np.asarray(sc)[x], scale_frac_bits=p["scale_frac_bits"],
                            out_bits=p["out_bits"], rounding=p["rounding"])
        for k in range(n_per):
            drv.send({"xbar": int(x[k]), "column": k % p["columns"], "value": int(v[k])})
        expected += [(int(x[k]), k % p["columns"], int(ev[k]), int(es[k])) for k in range(n_per)]
        await _drain(mon, len(expected), dut)
    got = [(g["xbar"], g["column"], g["value"], g["saturated"]) for g in mon.received]
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
