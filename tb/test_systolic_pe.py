# amaranth: UnusedElaboratable=no
"""SystolicPe: Amaranth-sim unit test and cocotb+Verilator regression, checked against NumPy.

This is also the end-to-end proof of the toolchain: Amaranth -> Verilog (hdl.verilog) ->
Verilator (tb.runner) -> cocotb, with the expected values from a NumPy model.
"""

import os

import cocotb
import numpy as np
import pytest
from amaranth.sim import Simulator
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from hdl.systolic.pe import SystolicPe
from hdl.verilog import generate
from tb import runner


def pe_model(a, b, valid, first, acc_width):
    """Accumulator after each cycle: NumPy reference of the PE's contract."""
    acc = np.zeros(len(a) + 1, dtype=np.int64)
    for t in range(len(a)):
        product = int(a[t]) * int(b[t])
        acc[t + 1] = (product if first[t] else acc[t] + product) if valid[t] else acc[t]
    wrap = 1 << acc_width
    return (acc[1:] + wrap // 2) % wrap - wrap // 2


def stimulus(seed, n, in_width):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (in_width - 1)), (1 << (in_width - 1)) - 1
    a = rng.integers(lo, hi + 1, n)
    b = rng.integers(lo, hi + 1, n)
    # Corner cases first: extremes accumulate fastest (all -128 * -128).
    a[:40], b[:40] = lo, lo
    a[40:60], b[40:60] = hi, lo
    valid = rng.random(n) < 0.8
    first = rng.random(n) < 0.05
    first[0] = True
    return a, b, valid, first


@pytest.mark.parametrize("in_width,acc_width", [(8, 32), (4, 8), (16, 40)])
def test_pe_amaranth_sim(in_width, acc_width):
    dut = SystolicPe(in_width, acc_width=acc_width)
    a, b, valid, first = stimulus(1, 300, in_width)
    expected = pe_model(a, b, valid, first, acc_width)
    seen = []

    async def bench(ctx):
        for t in range(len(a)):
            ctx.set(dut.a, int(a[t]))
            ctx.set(dut.b, int(b[t]))
            ctx.set(dut.valid, int(valid[t]))
            ctx.set(dut.first, int(first[t]))
            await ctx.tick()
            seen.append(ctx.get(dut.acc))
            assert ctx.get(dut.a_out) == a[t] and ctx.get(dut.b_out) == b[t]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(seen, expected)


def test_pe_result_and_stall():
    """``result`` is the fold's result in the one cycle after its last operands (``last_out``)
    and 0 otherwise; nothing changes while ``en`` is low."""
    dut = SystolicPe(8, acc_width=32)
    rng = np.random.default_rng(3)
    n = 400
    a, b = rng.integers(-128, 128, n), rng.integers(-128, 128, n)
    valid, last = rng.random(n) < 0.8, rng.random(n) < 0.1
    first = np.r_[True, last[:-1]]
    en = rng.random(n) < 0.8
    en[0] = True

    async def bench(ctx):
        acc = done = 0
        results = 0
        for t in range(n):
            for sig, val in [(dut.a, a[t]), (dut.b, b[t]), (dut.valid, valid[t]),
                             (dut.first, first[t]), (dut.last, last[t]), (dut.en, en[t])]:
                ctx.set(sig, int(val))
            await ctx.tick()
            if en[t]:
                if valid[t]:
                    acc = (0 if first[t] else acc) + int(a[t]) * int(b[t])
                done = int(valid[t] and last[t])
            assert ctx.get(dut.last_out) == done, f"cycle {t}"
            assert ctx.get(dut.acc) == acc, f"cycle {t}"
            assert ctx.get(dut.result) == (acc if done else 0), f"cycle {t}"
            results += done
        assert results > 10    # the stimulus did end folds

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_pe_bad_parameters():
    with pytest.raises(TypeError, match=r"in_width must be an integer from 2 to 16, not 1"):
        SystolicPe(1)
    with pytest.raises(ValueError, match=r"acc_width must be an integer of at least"):
        SystolicPe(8, acc_width=15)


# -- cocotb ---------------------------------------------------------------------------------

@cocotb.test()
async def pe_random_stream(dut):
    in_width = int(os.environ["PE_IN_WIDTH"])
    acc_width = int(os.environ["PE_ACC_WIDTH"])
    a, b, valid, first = stimulus(int(os.environ["PE_SEED"]), 2000, in_width)
    expected = pe_model(a, b, valid, first, acc_width)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.valid.value = 0
    # `last` and the stall input are idle here (test_pe_result_and_stall covers them).
    dut.en.value = 1
    dut.last.value = 0
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    for t in range(len(a)):
        dut.a.value = int(a[t])
        dut.b.value = int(b[t])
        dut.valid.value = int(valid[t])
        dut.first.value = int(first[t])
        await RisingEdge(dut.clk)
        await ReadOnly()
        assert dut.acc.value.to_signed() == expected[t], f"cycle {t}"
        assert dut.a_out.value.to_signed() == a[t]
        await FallingEdge(dut.clk)   # leave the read-only phase before driving again


@pytest.mark.parametrize("in_width,acc_width", [(8, 32), (16, 40)])
def test_pe_verilator(in_width, acc_width):
    verilog = generate(SystolicPe(in_width, acc_width=acc_width), "systolic_pe")
    runner.run(verilog, "systolic_pe", "tb.test_systolic_pe", name=f"pe_{in_width}_{acc_width}",
               extra_env={"PE_IN_WIDTH": in_width, "PE_ACC_WIDTH": acc_width, "PE_SEED": 7})
