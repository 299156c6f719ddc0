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

import cocotb
import pytest
from cocotb.triggers import ClockCycles

from golden import systolic as golden
from tb import runner
from tb.env.systolic import TB, build_spec, params_env

CONFIGS = {
    # name: (rows, cols, kwargs)
    "4x4": (4, 4, {}),
    "8x4_rows_scaled": (8, 4, {"drain": "rows", "out_shift": 6, "out_width": 16}),
    "16x16": (16, 16, {}),
    "128x32": (128, 32, {}),
}


# Coroutines are named without a test_ prefix so pytest does not collect them.

@cocotb.test()
async def random_gemms(dut):
    """Random GEMMs with partial folds; idle inputs and output backpressure; host reassembly."""
    tb = TB(dut)
    r, c = tb.rows, tb.cols
    await tb.start(idle=0.3, backpressure=0.3, seed=tb.seed)
    for m, n, k in [(2 * r + 1, c + 3, 7), (r, 2 * c, 1), (r - 1 or 1, 1, 2 * r + 5)]:
        a, b, folds = tb.random_gemm(m, n, k)
        await tb.start(idle=0.3, backpressure=0.3, seed=tb.seed + k)
        received = tb.unpack_outputs(await tb.run(folds))
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
    await tb.send(tb.input_words(tb.single_folds([9])) + tb.input_words(tb.single_folds([20]))[:7])
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
    received = tb.unpack_outputs(await tb.run(folds))
    length = tb.array.drain_length
    per_fold = [received[i:i + length] for i in range(0, len(received), length)][:4]
    result = golden.assemble(folds[:4], per_fold, a.shape[0], b.shape[1], rows=tb.rows,
                             cols=tb.cols, drain=tb.array.drain)
    assert (result == a @ b).all()


SMALL_TESTS = ["random_gemms", "extremes", "back_to_back", "reset_mid_fold"]


# The array inside its feeder/capture wrapper (tb.env.systolic.testbench_verilog); only the
# top ports are public; small arrays are built flat, large ones with one compiled row module
# (runner.choose_hier_blocks).
def _run(name, testcase, seed=1):
    rows, cols, kwargs = CONFIGS[name]
    spec = build_spec(rows, cols, **kwargs)
    runner.run(spec["verilog"], spec["toplevel"], "tb.test_systolic_verilator",
               name=f"systolic_{name}", testcase=testcase, **spec["options"],
               extra_env=params_env(rows, cols, seed=seed, **kwargs))


@pytest.mark.parametrize("name", ["4x4", "8x4_rows_scaled", "16x16"])
def test_systolic_verilator(name):
    _run(name, SMALL_TESTS)


def test_systolic_verilator_full_size():
    _run("128x32", "full_size")
