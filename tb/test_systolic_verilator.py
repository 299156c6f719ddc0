"""SystolicArray: cocotb + Verilator regressions, bit-exact and cycle-exact against golden/.

Per configuration (4x4, 8x4 with the transposed drain and the output stage, 16x16, and one
128x32 run at the paper's size):

- random GEMMs with partial folds, random idle cycles on the input and random backpressure
  on the output;
- extremes (all -128, all 127, mixed signs) with K from 1 to 512;
- back-to-back folds with K from 1 to 512: the measured cycles equal
  :func:`golden.systolic.cycle_model`;
- reset in the middle of a fold.

In every run a recorder samples the handshakes in each cycle and replays them through
:class:`golden.systolic.TimingModel`: ``i.ready``, ``o.valid`` and the counters must agree
in every cycle.
"""

import json
import os

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotb.clock import Clock

from golden import systolic as golden
from hdl.systolic import SystolicArray
from hdl.verilog import generate
from tb import runner
from tb.cocotb_streams import StreamDriver, StreamMonitor, reset_dut

CONFIGS = {
    # name: (rows, cols, kwargs)
    "4x4": (4, 4, {}),
    "8x4_rows_scaled": (8, 4, {"drain": "rows", "out_shift": 6, "out_width": 16}),
    "16x16": (16, 16, {}),
    "128x32": (128, 32, {}),
}


class TB:
    """Clock, reset, stream driver and monitor, handshake recorder and scoreboard."""

    def __init__(self, dut, *, record=True):
        self.dut = dut
        params = json.loads(os.environ["SYSTOLIC_PARAMS"])
        rows, cols, kwargs = params["rows"], params["cols"], params["kwargs"]
        self.record = record
        self.array = SystolicArray(rows, cols, **kwargs)   # layouts and parameters only
        self.rows, self.cols = rows, cols
        self.kwargs = kwargs
        self.seed = int(os.environ.get("SYSTOLIC_SEED", "1"))
        self.rng = np.random.default_rng(self.seed)
        self.last_bit = 1 << (self.array.i_layout["last"].offset)
        self.driver = self.monitor = None
        self.trace = []
        self._recorder = None
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def start(self, *, idle, backpressure, seed):
        """Reset, then attach a fresh driver, monitor and recorder."""
        for task in (self.driver, self.monitor):
            if task is not None:
                task.kill()
        if self._recorder is not None:
            self._recorder.cancel()
        self.dut.i__valid.value = 0
        await reset_dut(self.dut)
        await RisingEdge(self.dut.clk)
        self.trace = []
        self._recorder = cocotb.start_soon(self._record())
        self.driver = StreamDriver(self.dut, "i", self.array.i_layout, idle=idle, seed=seed)
        self.monitor = StreamMonitor(self.dut, "o", self.array.o_layout,
                                     backpressure=backpressure, seed=seed + 1)

    async def _record(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            await ReadOnly()
            if not self.record:      # handshakes only (fast, for the benchmark)
                self.trace.append((int(dut.i__valid.value), 0, int(dut.i__ready.value),
                                   int(dut.o__valid.value), int(dut.o__ready.value), 0, 0))
                continue
            payload = dut.i__payload.value.to_unsigned()
            self.trace.append((int(dut.i__valid.value), int(bool(payload & self.last_bit)),
                               int(dut.i__ready.value), int(dut.o__valid.value),
                               int(dut.o__ready.value), dut.macs.value.to_unsigned(),
                               dut.busy_cycles.value.to_unsigned()))

    def expected(self, folds):
        return [v for f in folds for v in golden.fold_outputs(f, rows=self.rows, cols=self.cols,
                                                               **self.kwargs)]

    async def run(self, folds, *, timeout=200_000):
        """Send every fold, wait for all outputs, check values and every cycle's timing."""
        expected = self.expected(folds)
        for f in folds:
            for v in golden.fold_inputs(f):
                self.driver.send(v)
        for _ in range(timeout):
            await RisingEdge(self.dut.clk)
            if len(self.monitor.received) >= len(expected):
                break
        await ClockCycles(self.dut.clk, 3)
        received = list(self.monitor.received)
        assert len(received) == len(expected), f"{len(received)} of {len(expected)} vectors"
        for n, (got, want) in enumerate(zip(received, expected)):
            assert got == want, f"vector {n}: {got} != {want}"
        assert self.driver.pending == 0
        if self.record:
            self.check_timing()
        return received

    def check_timing(self):
        a = self.array
        model = golden.TimingModel(a.rows, a.cols, a.drain)
        for cycle, (valid, last, ready, o_valid, o_ready, macs, busy) in enumerate(self.trace):
            assert (macs, busy) == (model.macs, model.busy_cycles), f"counters, cycle {cycle}"
            got = (bool(ready), bool(o_valid))
            assert model.step(valid, last, o_ready) == got, f"handshakes, cycle {cycle}"

    def measured_cycles(self):
        first_in = next(t for t, x in enumerate(self.trace) if x[0] and x[2])
        last_out = max(t for t, x in enumerate(self.trace) if x[3] and x[4])
        return last_out - first_in + 1

    def random_gemm(self, m, n, k, lo=-128, hi=127):
        a = self.rng.integers(lo, hi + 1, (m, k))
        b = self.rng.integers(lo, hi + 1, (k, n))
        return a, b, golden.tile_gemm(a, b, self.rows, self.cols)

    def single_folds(self, ks, fill=None):
        folds = []
        for k in ks:
            if fill is None:
                a = self.rng.integers(-128, 128, (self.rows, k))
                b = self.rng.integers(-128, 128, (k, self.cols))
            else:
                a = np.full((self.rows, k), fill[0])
                b = np.full((k, self.cols), fill[1])
            folds += golden.tile_gemm(a, b, self.rows, self.cols)
        return folds


# Coroutines are named without a test_ prefix so pytest does not collect them.

@cocotb.test()
async def random_gemms(dut):
    """Random GEMMs with partial folds; idle inputs and output backpressure; host reassembly."""
    tb = TB(dut)
    r, c = tb.rows, tb.cols
    await tb.start(idle=0.3, backpressure=0.3, seed=tb.seed)
    for m, n, k in [(2 * r + 1, c + 3, 7), (r, 2 * c, 1), (r - 1 or 1, 1, 2 * r + 5)]:
        a, b, folds = tb.random_gemm(m, n, k)
        tb.monitor.received.clear()
        tb.trace.clear()
        await tb.start(idle=0.3, backpressure=0.3, seed=tb.seed + k)
        received = await tb.run(folds)
        length = tb.array.drain_length
        per_fold = [received[i:i + length] for i in range(0, len(received), length)]
        if not tb.kwargs.get("out_shift") and not tb.kwargs.get("out_width"):
            result = golden.assemble(folds, per_fold, m, n, rows=r, cols=c,
                                     drain=tb.array.drain)
            assert (result == a @ b).all()


@cocotb.test()
async def extremes(dut):
    """All -128, all 127, mixed signs, K from 1 to 512; heavy backpressure."""
    tb = TB(dut)
    await tb.start(idle=0.2, backpressure=0.6, seed=tb.seed + 10)
    folds = []
    for k, fill in zip([1, 512, 37, 512, 2], [(-128, -128), (-128, -128), (127, 127),
                                               (-128, 127), (127, -128)]):
        folds += tb.single_folds([k], fill)
    await tb.run(folds)


@cocotb.test()
async def back_to_back(dut):
    """No idle, no backpressure: K from 1 to 512, below and above the drain length."""
    tb = TB(dut)
    await tb.start(idle=0.0, backpressure=0.0, seed=tb.seed + 20)
    length = tb.array.drain_length
    ks = [1, 2, 1, 3, max(length - 1, 1), length, length + 1, 2 * length, 5, 512, 1, 64]
    await tb.run(tb.single_folds(ks))
    assert tb.measured_cycles() == golden.cycle_model(ks, tb.rows, tb.cols,
                                                      tb.array.drain)["cycles"]


@cocotb.test()
async def reset_mid_fold(dut):
    """A reset in the middle of a fold and of a drain loses the old work and nothing else."""
    tb = TB(dut)
    await tb.start(idle=0.0, backpressure=0.5, seed=tb.seed + 30)
    for v in golden.fold_inputs(tb.single_folds([9])[0]):
        tb.driver.send(v)
    for v in golden.fold_inputs(tb.single_folds([20])[0])[:7]:
        tb.driver.send(v)
    await ClockCycles(dut.clk, 9 + 5 + tb.rows + tb.cols)   # first fold draining, second open
    await tb.start(idle=0.2, backpressure=0.3, seed=tb.seed + 31)
    await tb.run(tb.single_folds([5, 3]))


@cocotb.test()
async def full_size(dut):
    """The one 128x32 regression: a modest GEMM with partial folds, idle and backpressure."""
    tb = TB(dut)
    await tb.start(idle=0.2, backpressure=0.2, seed=tb.seed + 40)
    a, b, folds = tb.random_gemm(tb.rows + 72, tb.cols + 8, 48)
    folds += tb.single_folds([1], (-128, -128)) + tb.single_folds([40], (127, -128))
    received = await tb.run(folds)
    length = tb.array.drain_length
    per_fold = [received[i:i + length] for i in range(0, len(received), length)][:4]
    result = golden.assemble(folds[:4], per_fold, a.shape[0], b.shape[1], rows=tb.rows,
                             cols=tb.cols, drain=tb.array.drain)
    assert (result == a @ b).all()


SMALL_TESTS = ["random_gemms", "extremes", "back_to_back", "reset_mid_fold"]


# The testbenches touch only top-level ports, so the array is built with only the top module
# public (runner's top_only): with every PE signal a VPI object the 128x32 model's symbol
# table alone is ~270 MB of C++.
def params_env(rows, cols, **kwargs):
    """The environment that tells :class:`TB` the array's parameters."""
    return {"SYSTOLIC_PARAMS": json.dumps({"rows": rows, "cols": cols, "kwargs": kwargs})}


def _run(name, testcase, seed=1):
    rows, cols, kwargs = CONFIGS[name]
    verilog = generate(SystolicArray(rows, cols, **kwargs), "systolic_array")
    runner.run(verilog, "systolic_array", "tb.test_systolic_verilator", name=f"systolic_{name}",
               testcase=testcase, top_only=True, hier_blocks=("systolic_row",),
               extra_env={**params_env(rows, cols, **kwargs), "SYSTOLIC_SEED": seed})


@pytest.mark.parametrize("name", ["4x4", "8x4_rows_scaled", "16x16"])
def test_systolic_verilator(name):
    _run(name, SMALL_TESTS)


def test_systolic_verilator_full_size():
    _run("128x32", "full_size")
