"""cocotb environment of :class:`hdl.systolic.SystolicArray`: clock, reset, an in-simulation
input feeder and output capture, the handshake recorder and the scoreboard against
:mod:`golden.systolic`.

Used by ``tb/test_systolic_verilator.py`` (the regression) and ``tb/bench/systolic.py`` /
``tb/bench/simspeed.py`` (benchmarks). The array's parameters reach the simulator process
through the environment (:func:`params_env`).

Speed: Python does nothing per cycle. The cocotb top level is a Verilog wrapper
(:func:`testbench_verilog`, module :data:`TESTBENCH_TOP`) around the array:

- an input feeder: the testbench writes a batch of packed input vectors to a hex file and
  pulses ``load``; the wrapper reads it with ``$readmemh`` into one half of a two-half
  memory and streams the vectors into ``i`` (``valid`` held with its payload until the
  transfer, the stream rule), with seeded random idle cycles (xorshift32: a cycle in
  which no vector is held stays idle with probability ``idle_thr / 65536``);
- an output capture: every ``o`` transfer is stored in a two-half memory, with seeded random
  backpressure (``ready`` low with probability ``bp_thr / 65536``, drawn every cycle); the
  testbench reads a half back with ``$writememh`` when it fills, and the rest at the end;
- a recorder (``record``): each cycle's ``(i.valid, last, i.ready, o.valid, o.ready, macs,
  busy_cycles)`` into a third memory, read back the same way and replayed through
  :class:`golden.systolic.TimingModel` (:meth:`TB.check_timing`);
- counters (cycles since reset, vectors sent and received, the cycles of the first input
  and the last output transfer) on ports.

The testbench wakes only when a memory half must be refilled or read, when every expected
output has arrived, or at the timeout. Input vectors are packed and expected outputs
computed in bulk per GEMM (:func:`tb.packing.pack_many`); the scoreboard compares packed
words (one integer comparison per output vector) and unpacks only for a failure message or
the host-side reassembly.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer, ValueChange

from golden import systolic as golden
from tb.cocotb_streams import reset_dut
from tb.packing import hex_lines, pack_many, pack_many_bytes, unpack, unpack_many, words_to_bytes

__all__ = ["TB", "params_env", "testbench_verilog", "build_spec", "PARAMS_VAR", "SEED_VAR",
           "TESTBENCH_TOP", "INPUT_DEPTH", "OUTPUT_DEPTH", "TRACE_DEPTH"]

PARAMS_VAR = "SYSTOLIC_PARAMS"
SEED_VAR = "SYSTOLIC_SEED"
#: Top-level module of the cocotb build: the array, its feeder, capture and recorder.
TESTBENCH_TOP = "systolic_tb"
#: Entries of the wrapper's memories (two halves each; powers of two).
INPUT_DEPTH, OUTPUT_DEPTH, TRACE_DEPTH = 8192, 1024, 8192
#: Files the wrapper reads and writes, in the simulator's working folder.
IN_FILE, OUT_FILE, TRACE_FILE = "systolic_in.hex", "systolic_out.hex", "systolic_trace.hex"
_COUNTER_BITS = 48      # the array's macs and busy_cycles ports
_THRESHOLD_ONE = 1 << 16


def params_env(rows, cols, *, seed=None, **kwargs):
    """The simulator environment that tells :class:`TB` the array's parameters (and seed)."""
    env = {PARAMS_VAR: json.dumps({"rows": rows, "cols": cols, "kwargs": kwargs})}
    if seed is not None:
        env[SEED_VAR] = str(seed)
    return env


def _log2(n, name):
    if n < 4 or n & (n - 1):
        raise ValueError(f"{name} must be a power of two of at least 4, not {n!r}")
    return n.bit_length() - 1


def testbench_verilog(array_verilog, array, *, name=TESTBENCH_TOP, array_top="systolic_array",
                      input_depth=INPUT_DEPTH, output_depth=OUTPUT_DEPTH,
                      trace_depth=TRACE_DEPTH):
    """The cocotb top level: ``array_verilog`` (module ``array_top``, the Verilog of
    ``array``, a :class:`hdl.systolic.SystolicArray`) inside a feeder/capture wrapper ``name``.

    Ports besides ``clk`` and ``rst`` (every counter restarts at reset):

    - ``load`` (pulse, one rising edge): ``$readmemh`` of :data:`IN_FILE` (its ``@`` address
      picks the half) and ``load_count`` more vectors to send;
    - ``idle_thr``, ``bp_thr`` (16 bits), ``seed`` (32 bits, taken at reset): the idle and
      backpressure probabilities times 65536 and the random seed;
    - ``record``: write each cycle to the trace memory;
    - ``dump_out``/``dump_trace`` (pulse): ``$writememh`` of entries ``dump_first`` to
      ``dump_last`` of the output or trace memory to :data:`OUT_FILE`/:data:`TRACE_FILE`;
    - ``expected_count``: ``done`` is high once ``received >= expected_count``;
    - outputs ``cycle``, ``sent``, ``received``, ``traced`` (32 bits), ``first_in`` and
      ``last_out`` (the cycles of the first input and the latest output transfer),
      ``sent_half``, ``received_half``, ``traced_half`` (the counters' bit that flips each
      time a memory half is passed), ``done``.

    A trace entry is ``{busy_cycles, macs, o.ready, o.valid, i.ready, last, i.valid}``, LSB
    first from ``i.valid``; ``last`` is the payload's ``last`` bit as the port shows it.
    """
    iw, ow = array.i_layout.size, array.o_layout.size
    last_bit = array.i_layout["last"].offset
    cw = _COUNTER_BITS
    tw = 5 + 2 * cw
    ia, oa, ta = (_log2(input_depth, "input_depth"), _log2(output_depth, "output_depth"),
                  _log2(trace_depth, "trace_depth"))
    return array_verilog + f"""
// The cocotb top level: the array with an input feeder, an output capture and a recorder.
module {name}(
  input clk,
  input rst,
  input load,
  input [31:0] load_count,
  input [15:0] idle_thr,
  input [15:0] bp_thr,
  input [31:0] seed,
  input record,
  input dump_out,
  input dump_trace,
  input [31:0] dump_first,
  input [31:0] dump_last,
  input [31:0] expected_count,
  output reg [31:0] cycle,
  output reg [31:0] sent,
  output reg [31:0] received,
  output reg [31:0] traced,
  output reg [31:0] first_in,
  output reg [31:0] last_out,
  output sent_half,
  output received_half,
  output traced_half,
  output done
);
  reg [{iw - 1}:0] in_mem [0:{input_depth - 1}];
  reg [{ow - 1}:0] out_mem [0:{output_depth - 1}];
  reg [{tw - 1}:0] trace_mem [0:{trace_depth - 1}];
  reg [31:0] loaded;
  reg valid_r;
  reg [31:0] idle_rand, bp_rand;
  wire i_ready, o_valid;
  wire [{iw - 1}:0] i_payload = in_mem[sent[{ia - 1}:0]];
  wire [{ow - 1}:0] o_payload;
  wire [{cw - 1}:0] macs, busy_cycles;
  wire o_ready = bp_rand[15:0] >= bp_thr;
  {array_top} dut (
    .clk(clk), .rst(rst),
    .i__payload(i_payload), .i__valid(valid_r), .i__ready(i_ready),
    .o__payload(o_payload), .o__valid(o_valid), .o__ready(o_ready),
    .macs(macs), .busy_cycles(busy_cycles)
  );
  wire taken = valid_r & i_ready;
  wire [31:0] sent_next = sent + {{31'd0, taken}};
  assign sent_half = sent[{ia - 1}];
  assign received_half = received[{oa - 1}];
  assign traced_half = traced[{ta - 1}];
  assign done = received >= expected_count;
  function [31:0] rand_step(input [31:0] s);   // xorshift32
    reg [31:0] t;
    begin
      t = s ^ (s << 13);
      t = t ^ (t >> 17);
      rand_step = t ^ (t << 5);
    end
  endfunction
  always @(posedge clk) begin
    if (rst) begin
      cycle <= 0; sent <= 0; received <= 0; traced <= 0; loaded <= 0; valid_r <= 1'b0;
      first_in <= 0; last_out <= 0;
      idle_rand <= seed | 32'd1;
      bp_rand <= (seed ^ 32'h5bd1e995) | 32'd1;
    end else begin
      cycle <= cycle + 1;
      idle_rand <= rand_step(idle_rand);
      bp_rand <= rand_step(bp_rand);
      if (load) begin
        $readmemh("{IN_FILE}", in_mem);
        loaded <= loaded + load_count;
      end
      if (taken && sent == 0)
        first_in <= cycle;
      sent <= sent_next;
      if (valid_r && !i_ready)
        valid_r <= 1'b1;                   // held until the transfer
      else
        valid_r <= (sent_next < loaded) && (idle_rand[15:0] >= idle_thr);
      if (o_valid && o_ready) begin
        out_mem[received[{oa - 1}:0]] <= o_payload;
        received <= received + 1;
        last_out <= cycle;
      end
      if (record) begin
        trace_mem[traced[{ta - 1}:0]] <= {{busy_cycles, macs, o_ready, o_valid, i_ready,
                                           i_payload[{last_bit}], valid_r}};
        traced <= traced + 1;
      end
    end
    if (dump_out)
      $writememh("{OUT_FILE}", out_mem, dump_first[{oa - 1}:0], dump_last[{oa - 1}:0]);
    if (dump_trace)
      $writememh("{TRACE_FILE}", trace_mem, dump_first[{ta - 1}:0], dump_last[{ta - 1}:0]);
  end
endmodule
"""


def build_spec(rows, cols, **kwargs):
    """The cocotb build of a ``rows`` x ``cols`` array: ``verilog`` (the wrapper),
    ``toplevel``, ``array_verilog`` (the array alone: what a plain C++ main runs) and the
    runner options (``top_only``, ``hier_blocks`` by :func:`tb.runner.choose_hier_blocks`)."""
    from hdl.systolic import SystolicArray
    from hdl.verilog import generate
    from tb.runner import choose_hier_blocks
    array = SystolicArray(rows, cols, **kwargs)
    array_verilog = generate(array, "systolic_array")
    hier = choose_hier_blocks(array_verilog, "systolic_array", ("systolic_row",))
    return {"verilog": testbench_verilog(array_verilog, array), "toplevel": TESTBENCH_TOP,
            "array_verilog": array_verilog, "options": {"top_only": True, "hier_blocks": hier}}


def _u(handle):
    return handle.value.to_unsigned()


def _read_hex(path):
    """The words of a ``$writememh`` file (comment lines skipped)."""
    return [int(line, 16) for line in Path(path).read_text().split()
            if line and line[0] not in "/@"]


class TB:
    """Clock, reset, the wrapper's feeder, capture and recorder, and the scoreboard.

    Parameters
    ----------
    dut : the :data:`TESTBENCH_TOP` handle.
    record : bool
        Record every cycle's handshakes and counters for :meth:`check_timing` (the
        regression); without it only the first input and last output cycles are kept (the
        benchmarks).

    Members
    -------
    rows, cols, kwargs : the array's parameters (from :func:`params_env`).
    seed : the run's seed; ``rng`` a NumPy generator seeded with it.
    received : the output words captured since :meth:`start` (packed ints).
    trace : per cycle ``(i.valid, last, i.ready, o.valid, o.ready, macs, busy_cycles)``
        since :meth:`start` (with ``record``), read back by :meth:`run`.
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
        self.received = []
        self.trace = []
        for port in ("load", "record", "dump_out", "dump_trace"):
            getattr(dut, port).value = 0
        dut.expected_count.value = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    # -- the wrapper's memories --------------------------------------------------------------

    async def start(self, *, idle, backpressure, seed):
        """Reset the array and the wrapper (every vector not yet sent is dropped), with new
        idle and backpressure probabilities and random seed."""
        for name, p in (("idle", idle), ("backpressure", backpressure)):
            if not 0 <= p < 1:
                raise ValueError(f"{name} must be a probability from 0 to below 1, not {p!r}")
        dut = self.dut
        dut.idle_thr.value = int(round(idle * _THRESHOLD_ONE))
        dut.bp_thr.value = int(round(backpressure * _THRESHOLD_ONE))
        dut.seed.value = (seed * 0x9E3779B1) & 0xFFFFFFFF
        dut.record.value = int(self.record)
        dut.load.value = 0
        await reset_dut(dut)
        self._pending = []          # input chunks not loaded yet
        self._loaded = 0            # vectors loaded
        self._chunks = 0            # chunks loaded
        self.received = []
        self.trace = []
        self._traced = 0            # trace entries read back

    def load(self, words):
        """Queue input vectors (packed ints, or their bytes as :meth:`input_bytes` gives); they
        are loaded into the feeder (a half at a time) by :meth:`send` or :meth:`run`."""
        half = INPUT_DEPTH // 2
        raw = words if isinstance(words, np.ndarray) else words_to_bytes(words,
                                                                          self.array.i_layout.size)
        if self._pending and len(self._pending[-1]) < half:
            room = half - len(self._pending[-1])
            self._pending[-1] = np.concatenate([self._pending[-1], raw[:room]])
            raw = raw[room:]
        self._pending += [raw[i:i + half] for i in range(0, len(raw), half)]

    async def send(self, words):
        """Queue packed input vectors and load the feeder now (up to both halves); the rest
        is loaded by :meth:`feed`. Returns at a falling edge."""
        self.load(words)
        await FallingEdge(self.dut.clk)
        while self._pending and self._chunks < 2:
            await self._load_next()

    async def _load_next(self):
        """At a falling edge: load the next pending chunk into the next half."""
        half = INPUT_DEPTH // 2
        chunk = self._pending.pop(0)
        base = (self._chunks % 2) * half
        Path(IN_FILE).write_text(f"@{base:x}\n" + hex_lines(chunk))
        dut = self.dut
        dut.load_count.value = len(chunk)
        dut.load.value = 1
        await FallingEdge(dut.clk)
        dut.load.value = 0
        self._chunks += 1
        self._loaded += len(chunk)

    async def _dump(self, port, path, first, last):
        """At a falling edge: entries ``first`` to ``last`` of a memory, read back."""
        dut = self.dut
        dut.dump_first.value = first
        dut.dump_last.value = last
        port.value = 1
        await FallingEdge(dut.clk)
        port.value = 0
        return _read_hex(path)

    async def _collect(self, final=False):
        """Read back the full halves of the output and trace memories (and, with ``final``,
        what is left: recording pauses meanwhile, in cycles in which nothing happens)."""
        dut = self.dut
        if final and self.record:
            dut.record.value = 0
            await FallingEdge(dut.clk)
        for mem, depth, store, count, port, path in (
                ("out", OUTPUT_DEPTH, self.received, _u(dut.received), dut.dump_out, OUT_FILE),
                ("trace", TRACE_DEPTH, None, _u(dut.traced) if self.record else 0,
                 dut.dump_trace, TRACE_FILE)):
            half = depth // 2
            done = len(store) if store is not None else self._traced
            while True:
                if count - done > depth:
                    raise AssertionError(f"the {mem} memory overflowed ({count - done} unread)")
                boundary = (done // half + 1) * half     # a dump stays inside one half
                if count >= boundary:
                    n = boundary - done
                elif final and count > done:
                    n = count - done
                else:
                    break
                words = await self._dump(port, path, done % depth, done % depth + n - 1)
                if store is not None:
                    store += words
                else:
                    self._add_trace(words)
                done += n
                if not final:
                    count = _u(dut.received) if mem == "out" else _u(dut.traced)
        if final and self.record:
            dut.record.value = 1
    def _add_trace(self, words):
        cw = _COUNTER_BITS
        mask = (1 << cw) - 1
        self.trace += [(w & 1, (w >> 1) & 1, (w >> 2) & 1, (w >> 3) & 1, (w >> 4) & 1,
                        (w >> 5) & mask, (w >> (5 + cw)) & mask) for w in words]
        self._traced += len(words)

    async def feed(self, until_received, *, timeout):
        """Keep the feeder loaded and the capture read until ``until_received`` outputs have
        arrived (``timeout`` cycles at most); returns at a falling edge."""
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.expected_count.value = until_received
        half = INPUT_DEPTH // 2
        while self._pending and _u(dut.sent) >= (self._chunks - 1) * half:
            await self._load_next()
        deadline = Timer(max(timeout, 1) * 10, unit="ns")
        while True:
            if _u(dut.received) >= until_received:
                break
            wakes = [RisingEdge(dut.done), ValueChange(dut.received_half), deadline]
            if self._pending:
                wakes.append(ValueChange(dut.sent_half))
            if self.record:
                wakes.append(ValueChange(dut.traced_half))
            if await First(*wakes) is deadline:
                raise AssertionError(f"{_u(dut.received)} of {until_received} output vectors "
                                     f"after {timeout} cycles ({_u(dut.sent)} of "
                                     f"{self._loaded + sum(map(len, self._pending))} inputs "
                                     f"sent)")
            await FallingEdge(dut.clk)
            while self._pending and _u(dut.sent) >= (self._chunks - 1) * half:
                await self._load_next()
            await self._collect()
        await self._collect()

    # -- stimulus and expected values, in bulk ---------------------------------------------

    def input_words(self, folds):
        """The packed input vectors of ``folds``, in order (what :func:`golden.systolic.
        fold_inputs` gives, packed)."""
        return [int.from_bytes(r.tobytes(), "little") for r in self.input_bytes(folds)]

    def input_bytes(self, folds):
        """:meth:`input_words` as little-endian bytes, ``(vectors, bytes)`` (what the feeder
        is loaded with)."""
        a = np.concatenate([f.a.T for f in folds])
        b = np.concatenate([f.b for f in folds])
        last = np.concatenate([np.arange(f.k) == f.k - 1 for f in folds]).astype(np.int64)
        return pack_many_bytes(self.array.i_layout, {"a": a, "b": b, "last": last})

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

        Returns this run's output words (packed ints; :meth:`unpack_outputs` unpacks)."""
        expected = self.expected_words(folds)
        first = len(self.received)
        self.load(self.input_bytes(folds))
        await self.feed(first + len(expected), timeout=timeout)
        await ClockCycles(self.dut.clk, 3)
        await FallingEdge(self.dut.clk)
        await self._collect(final=True)
        received = self.received[first:]
        assert len(received) == len(expected), f"{len(received)} of {len(expected)} vectors"
        if received != expected:
            n = next(n for n, (g, w) in enumerate(zip(received, expected)) if g != w)
            layout = self.array.o_layout
            raise AssertionError(f"vector {n}: {unpack(layout, received[n])} != "
                                 f"{unpack(layout, expected[n])}")
        assert not self._pending and _u(self.dut.sent) == self._loaded, "inputs left unsent"
        if self.record:
            self.check_timing()
        return received

    def check_timing(self):
        """Replay every recorded cycle since :meth:`start` through the golden timing model."""
        a = self.array
        assert self.trace, "no cycle was recorded"
        model = golden.TimingModel(a.rows, a.cols, a.drain)
        for cycle, (valid, last, ready, o_valid, o_ready, macs, busy) in enumerate(self.trace):
            assert (macs, busy) == (model.macs, model.busy_cycles), f"counters, cycle {cycle}"
            got = (bool(ready), bool(o_valid))
            assert model.step(valid, last, o_ready) == got, (
                f"handshakes, cycle {cycle}: recorded (i.valid, last, i.ready, o.valid, o.ready, "
                f"macs, busy) from cycle {max(cycle - 3, 0)}: "
                f"{self.trace[max(cycle - 3, 0):cycle + 2]}")

    def measured_cycles(self):
        """Cycles from the first input transfer to the last output transfer, both included
        (since :meth:`start`)."""
        return _u(self.dut.last_out) - _u(self.dut.first_in) + 1

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
