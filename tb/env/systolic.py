"""cocotb environment of :class:`hdl.systolic.SystolicArray`: clock, reset, the input driver,
the output monitor, the handshake recorder and the scoreboard against :mod:`golden.systolic`.

Used by ``tb/test_systolic_verilator.py`` (the regression) and ``tb/bench/systolic.py`` /
``tb/bench/simspeed.py`` (benchmarks). The array's parameters reach the simulator process
through the environment (:func:`params_env`).

Speed: in the regression every cycle must be sampled (the recorder replays each cycle's
handshakes through :class:`golden.systolic.TimingModel`), so the driver, the monitor and the
recorder share one :class:`tb.cocotb_streams.CycleLoop`: one coroutine and two triggers per
cycle. Without recording (the benchmarks) the driver and the monitor run on their own and
sleep while nothing can happen (the monitor wakes only on ``o.valid``).
Input vectors are packed and expected outputs computed in bulk per GEMM
(:func:`tb.packing.pack_many`); the scoreboard compares packed words (one integer comparison
per output vector) and unpacks only for a failure message or the host-side reassembly.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from golden import systolic as golden
from tb.cocotb_streams import CycleLoop, StreamDriver, StreamMonitor, reset_dut
from tb.packing import pack_many, unpack, unpack_many

__all__ = ["TB", "params_env", "PARAMS_VAR", "SEED_VAR"]

PARAMS_VAR = "SYSTOLIC_PARAMS"
SEED_VAR = "SYSTOLIC_SEED"


def params_env(rows, cols, *, seed=None, **kwargs):
    """The simulator environment that tells :class:`TB` the array's parameters (and seed)."""
    env = {PARAMS_VAR: json.dumps({"rows": rows, "cols": cols, "kwargs": kwargs})}
    if seed is not None:
        env[SEED_VAR] = str(seed)
    return env


class TB:
    """Clock, reset, stream driver and monitor, handshake recorder and scoreboard.

    Parameters
    ----------
    dut : the ``systolic_array`` handle.
    record : bool
        Record every cycle's handshakes and counters for :meth:`check_timing` (the
        regression); without it only the transfer cycles are kept (the benchmarks).

    Members
    -------
    rows, cols, kwargs : the array's parameters (from :func:`params_env`).
    seed : the run's seed; ``rng`` a NumPy generator seeded with it.
    driver, monitor : the streams of the current :meth:`start`.
    trace : per cycle ``(i.valid, last, i.ready, o.valid, o.ready, macs, busy_cycles)``.
    """

    def __init__(self, dut, *, record=True):
        from hdl.systolic import SystolicArray
        self.dut = dut
        params = json.loads(os.environ[PARAMS_VAR])
        rows, cols, kwargs = params["rows"], params["cols"], params["kwargs"]
        self.record = record
        self.array = SystolicArray(rows, cols, **kwargs)   # layouts and parameters only
        self.rows, self.cols = rows, cols
        self.kwargs = kwargs
        self.seed = int(os.environ.get(SEED_VAR, "1"))
        self.rng = np.random.default_rng(self.seed)
        self.last_bit = 1 << (self.array.i_layout["last"].offset)
        self.driver = self.monitor = self.loop = None
        self.trace = []
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def start(self, *, idle, backpressure, seed):
        """Reset, then attach a fresh driver, monitor and recorder (one cycle loop)."""
        for part in (self.driver, self.monitor, self.loop):
            if part is not None:
                part.kill()
        self.dut.i__valid.value = 0
        await reset_dut(self.dut)
        await RisingEdge(self.dut.clk)
        self.trace = []
        self.loop = None
        if self.record:
            # Every cycle is sampled: one coroutine for the recorder, driver and monitor (the
            # recorder first, so that it sees the payload held in that cycle).
            self.loop = CycleLoop(self.dut.clk)
            self.loop.on_sample(self._record)
        # Without recording the streams run on their own and sleep when nothing can happen.
        self.driver = StreamDriver(self.dut, "i", idle=idle, seed=seed, loop=self.loop)
        self.monitor = StreamMonitor(self.dut, "o", backpressure=backpressure, seed=seed + 1,
                                     loop=self.loop)

    def _record(self):
        dut, driver = self.dut, self.driver
        last = int(bool(driver.payload_word & self.last_bit))
        self.trace.append((driver.valid, last, int(dut.i__ready.value), int(dut.o__valid.value),
                           self.monitor.ready, dut.macs.value.to_unsigned(),
                           dut.busy_cycles.value.to_unsigned()))

    # -- stimulus and expected values, in bulk ---------------------------------------------

    def input_words(self, folds):
        """The packed input vectors of ``folds``, in order (what :func:`golden.systolic.
        fold_inputs` gives, packed)."""
        a = np.concatenate([f.a.T for f in folds])
        b = np.concatenate([f.b for f in folds])
        last = np.concatenate([np.arange(f.k) == f.k - 1 for f in folds]).astype(np.int64)
        return pack_many(self.array.i_layout, {"a": a, "b": b, "last": last})

    def expected_words(self, folds):
        """The packed golden output vectors of ``folds``, in order."""
        side = golden.drain_side(self.rows, self.cols, self.kwargs.get("drain", "auto"))
        acc_width = self.kwargs.get("acc_width", 32)
        data, last = [], []
        for f in folds:
            tile = golden.output_stage(golden.gemm(f.a, f.b, acc_width=acc_width),
                                       acc_width=acc_width,
                                       out_shift=self.kwargs.get("out_shift", 0),
                                       out_width=self.kwargs.get("out_width", 0))
            vectors = tile.T if side == "cols" else tile
            data.append(vectors)
            last.append(np.arange(len(vectors)) == len(vectors) - 1)
        return pack_many(self.array.o_layout, {"data": np.concatenate(data),
                                               "last": np.concatenate(last).astype(np.int64)})

    def expected(self, folds):
        """The golden output vectors of ``folds`` as dicts (``golden.systolic.fold_outputs``)."""
        return [v for f in folds for v in golden.fold_outputs(f, rows=self.rows, cols=self.cols,
                                                               **self.kwargs)]

    def unpack_outputs(self, words):
        """Output words -> list of ``{"data": [...], "last"}`` (as :meth:`expected`)."""
        if not words:
            return []
        u = unpack_many(self.array.o_layout, words)
        return [{"data": d, "last": int(l)} for d, l in zip(u["data"].tolist(), u["last"])]

    # -- running ---------------------------------------------------------------------------

    async def run(self, folds, *, timeout=200_000):
        """Send every fold, wait for all outputs, check values and every cycle's timing.

        Returns the received output words (packed ints; :meth:`unpack_outputs` unpacks)."""
        expected = self.expected_words(folds)
        self.driver.send_many(self.input_words(folds))
        await self.monitor.wait_received(len(expected), timeout=timeout)
        await ClockCycles(self.dut.clk, 3)
        received = list(self.monitor.received)
        assert len(received) == len(expected), f"{len(received)} of {len(expected)} vectors"
        if received != expected:
            n = next(n for n, (g, w) in enumerate(zip(received, expected)) if g != w)
            layout = self.array.o_layout
            raise AssertionError(f"vector {n}: {unpack(layout, received[n])} != "
                                 f"{unpack(layout, expected[n])}")
        assert self.driver.pending == 0
        if self.record:
            self.check_timing()
        return received

    def check_timing(self):
        """Replay every recorded cycle through the golden timing model."""
        a = self.array
        model = golden.TimingModel(a.rows, a.cols, a.drain)
        for cycle, (valid, last, ready, o_valid, o_ready, macs, busy) in enumerate(self.trace):
            assert (macs, busy) == (model.macs, model.busy_cycles), f"counters, cycle {cycle}"
            got = (bool(ready), bool(o_valid))
            assert model.step(valid, last, o_ready) == got, (
                f"handshakes, cycle {cycle}: recorded (i.valid, last, i.ready, o.valid, o.ready, "
                f"macs, busy) from cycle {max(cycle - 3, 0)}: "
                f"{self.trace[max(cycle - 3, 0):cycle + 2]}")

    def measured_cycles(self):
        """Cycles from the first input transfer to the last output transfer, both included."""
        return self.monitor.cycles[-1] - self.driver.cycles[0] + 1

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
