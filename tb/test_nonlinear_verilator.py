"""NonlinearUnit: cocotb + Verilator regression against the golden kernels.

One small build (16-bit elements, rows up to 16). The bench (:class:`tb.env.nonlinear.NonlinearBench`)
drives commands, elements and residuals with random idle cycles, takes the words with random
backpressure, and compares every word in order with the golden kernels of
:mod:`golden.nonlinear` (softmax, LayerNorm after gamma/beta loads, GELU, the residual add),
with extremes and refused commands in between; a reset in mid-row is followed by correct rows.
"""

import os

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from hdl.nonlinear import NonlinearUnit
from hdl.verilog import generate
from tb import runner
from tb.env.nonlinear import NonlinearBench, bad_jobs, extreme_jobs, random_jobs

CONFIG = dict(width=16, out_width=16, max_len=16)


def _params():
    return dict(width=int(os.environ["NL_WIDTH"]), out_width=int(os.environ["NL_OUT_WIDTH"]),
                max_len=int(os.environ["NL_MAX_LEN"]))


def _seed():
    return int(os.environ["NL_SEED"])


@cocotb.test()
async def random_rows(dut):
    """Random rows of every function and length, extremes and refused commands interleaved,
    random idle cycles and backpressure."""
    tb = NonlinearBench(dut, _params(), seed=_seed(), idle=0.3, backpressure=0.4)
    await tb.start()
    rng = np.random.default_rng(_seed())
    # Generated in the order they run (LayerNorm rows depend on the gamma/beta loads before
    # them); refused commands, which change nothing, go anywhere.
    jobs = random_jobs(tb.gold, rng, 25) + extreme_jobs(tb.gold) + random_jobs(tb.gold, rng, 25)
    for job in bad_jobs(tb.gold):
        jobs.insert(int(rng.integers(len(jobs) + 1)), job)
    tb.send(jobs)
    await tb.drain()
    assert {j.kind for j in jobs} >= {"softmax", "layernorm", "gelu", "add", "bad"}


@cocotb.test()
async def reset_mid_row(dut):
    """A reset while a softmax row is half out returns the unit to idle; the rows after it
    are correct."""
    tb = NonlinearBench(dut, _params(), seed=_seed() + 1, idle=0.0, backpressure=0.0)
    await tb.start()
    n = tb.unit.max_len
    job = tb.gold.softmax(np.arange(n) * 500 - 4000, 2.0 ** -8)
    tb.send([job])
    await tb.monitor.wait_received(n // 2, timeout=1000)
    assert int(dut.busy.value)
    await tb.reset_now()
    await FallingEdge(dut.clk)
    assert not int(dut.busy.value) and not int(dut.o__valid.value)
    tb.idle, tb.backpressure = 0.2, 0.3
    await tb.start(reset=False)
    rng = np.random.default_rng(_seed() + 2)
    tb.send([tb.gold.softmax(np.arange(n) * 500 - 4000, 2.0 ** -8)] + bad_jobs(tb.gold)[:1]
            + random_jobs(tb.gold, rng, 8))
    await tb.drain()


def test_nonlinear_verilator():
    verilog = generate(NonlinearUnit(**CONFIG), "nonlinear_unit")
    env = {"NL_WIDTH": CONFIG["width"], "NL_OUT_WIDTH": CONFIG["out_width"],
           "NL_MAX_LEN": CONFIG["max_len"], "NL_SEED": 21}
    runner.run(verilog, "nonlinear_unit", "tb.test_nonlinear_verilator", name="nonlinear_w16",
               extra_env=env, top_only=True)
