"""PIM tile test environment: the golden crossbars answer the RTL's ADCs in bulk.

A SAR conversion's decision at trial ``k`` is bit ``k`` of its final code (:mod:`golden.sar`).
So the analog side of the tile needs Python once per sample, not once per trial:

- :class:`AnalogArray` holds the golden crossbars of a :class:`golden.pim_tile.TileMapping`.
  When told the input vectors (:meth:`AnalogArray.expect`) it computes, in bulk, the held
  column values of every sample they will cause with
  :meth:`golden.crossbar.Crossbar.column_values` and converts them with
  :meth:`golden.crossbar.Crossbar.adc_codes` (read noise, comparator offset and noise,
  capacitor weights: the golden model's own draws, over the same lines as
  :meth:`golden.crossbar.Crossbar.mvm`), giving the code of every column. On a crossbar's
  sample it checks the row drive the RTL drives against the plane of the input vector the
  sample must be (vector ``step0 + n // input_bits``, plane ``n % input_bits`` for the
  crossbar's ``n``-th sample) and hands out that sample's codes (a sample beyond the
  expected vectors is computed on the spot from the drive).
- In Verilator the codes go, once per sample, into a behavioural code store in the cocotb top
  level (:func:`tile_testbench_verilog`: ``pim_tile_tb`` wraps ``pim_tile``), which answers every
  trial from the stored code bit and checks that each trial is the one the SAR rule expects
  (``sar_error`` with the ADC, trial and code, reported by :class:`TileBench` as a test
  failure). In the Amaranth simulator :meth:`AnalogArray.cycle` answers the trials in Python
  from the same codes, with the same check.

:class:`TileBench` is the tile's cocotb environment for the tests, the benchmark and the demo:
clock, reset (also in mid-batch), the ``cfg``/``i`` drivers with random idle cycles, the
``o`` monitor with random backpressure (:mod:`tb.cocotb_streams`: they sleep while nothing can
happen), the code-store writer (it sleeps until a sample strobe), :meth:`TileBench.configure`
(a mapping's register writes, once the tile is idle), :meth:`TileBench.send` (a batch, its
golden outputs queued as expected) and :meth:`TileBench.drain` (the in-order scoreboard).
"""

import numpy as np

__all__ = ["AnalogArray", "TileBench", "tile_testbench_verilog", "TESTBENCH_TOP", "unpack_fields"]

#: Top-level module of the cocotb build: the tile and its code store.
TESTBENCH_TOP = "pim_tile_tb"


def unpack_fields(value, width, count):
    """``count`` unsigned fields of ``width`` bits from an integer, field 0 at the LSB."""
    n = width * count
    raw = np.frombuffer(int(value).to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")[:n]
    if width == 1:
        return bits.astype(np.int64)
    bits = bits.reshape(count, width).astype(np.int64)
    return bits @ (np.int64(1) << np.arange(width, dtype=np.int64))


def _pack_rows(values, width):
    """Each row of ``values`` ``(n, count)`` packed as by :func:`pack_fields`: a list of ``n``
    integers."""
    v = np.asarray(values, dtype=np.uint64)
    n, count = v.shape
    bits = ((v[:, :, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    raw = np.packbits(bits.reshape(n, count * width), axis=1, bitorder="little")
    return [int.from_bytes(r.tobytes(), "little") for r in raw]


def pack_fields(values, width):
    """The inverse of :func:`unpack_fields`: non-negative ``values`` as one integer."""
    v = np.asarray(values, dtype=np.uint64).reshape(-1)
    bits = ((v[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return int.from_bytes(np.packbits(bits.reshape(-1), bitorder="little").tobytes(), "little")


class AnalogArray:
    """The analog crossbars and ADC front ends of a tile, answering the RTL in bulk.

    Parameters
    ----------
    tile : golden.pim_tile.TileConfig
    mapping : golden.pim_tile.TileMapping or None
        The programmed crossbars (``None``: nothing programmed; every column reads 0).
    step0 : int
        Global vector index of the first sample (the golden model's ``step``).
    time : float or None
        Seconds since programming (drift).

    Members
    -------
    samples, trials : int
        Crossbar samples taken and SAR trials they answer (``cols * bits`` per sample).
    """

    def __init__(self, tile, mapping=None, *, step0=0, time=None):
        self._tile = tile
        self.trials = 0
        self.samples = 0
        self.cycles = 0
        self.program(mapping, step0=step0, time=time)

    def program(self, mapping, *, step0=0, time=None):
        """Program new crossbars (a reconfiguration) and restart the sample counting at ``step0``."""
        t = self._tile
        self._time = time
        self._xbars = {} if mapping is None else {xb.index: xb for xb in mapping.xbars}
        self._codes = np.zeros((t.crossbars, t.cols), dtype=np.int64)
        self._bits = np.full(t.crossbars, t.adc_bits, dtype=np.int64)
        for x, xb in self._xbars.items():
            self._bits[x] = xb.adc_bits
        self.restart(step0)

    def restart(self, step0=0):
        """After a DUT reset: the next sample of every crossbar is plane 0 of vector ``step0``."""
        self._count = np.zeros(self._tile.crossbars, dtype=np.int64)
        self._step0 = step0
        self._vectors = []
        # Per crossbar, the samples computed ahead by expect(): codes (samples, cols), their
        # packed words and the row drives they expect (integers, row 0 at the LSB).
        self._ahead = {x: ([], [], []) for x in self._xbars}

    def expect(self, vectors):
        """Input vectors ``(batch, n_blocks * rows)`` sent to the tile, in order: the row drive
        of every later sample is checked against them.

        The codes of every sample of these vectors are computed here, in bulk: one
        :meth:`golden.crossbar.Crossbar.column_values` and one
        :meth:`~golden.crossbar.Crossbar.adc_codes` call per crossbar over all (vector,
        plane) lines, in the order :meth:`golden.crossbar.Crossbar.mvm` uses (the golden
        model's own draws), so a sample costs a lookup and an integer comparison."""
        t = self._tile
        v = np.asarray(vectors, dtype=np.int64)
        if v.ndim == 1:
            v = v[None]
        k0 = len(self._vectors)
        self._vectors.extend(v)
        if not len(v):
            return
        n_planes = t.input_bits
        steps = np.repeat(np.arange(k0, k0 + len(v)) + self._step0, n_planes)
        planes = np.tile(np.arange(n_planes), len(v))
        for x, xb in self._xbars.items():
            xi = v[:, xb.in_block * t.rows:(xb.in_block + 1) * t.rows]
            drive = ((xi[:, None, :] >> np.arange(n_planes)[None, :, None]) & 1).reshape(-1, t.rows)
            cb = xb.crossbar
            values = cb.column_values(drive, step=steps, plane=planes, time=self._time)
            codes = cb.adc_codes(values, step=steps, plane=planes, bits=xb.adc_bits)[:, 0, 0]
            codes_list, words, drives = self._ahead[x]
            codes_list.extend(codes)
            words.extend(_pack_rows(codes, t.adc_bits))
            drives.extend(_pack_rows(drive, 1))

    @property
    def bits(self):
        """ADC resolution of each crossbar, ``(crossbars,)``."""
        return self._bits.copy()

    def sample(self, xs, drive):
        """Samples of crossbars ``xs`` with the row drive word ``drive`` (the RTL's ``drive``
        port, crossbar ``x``'s rows at bits ``x * rows ..``); returns the codes ``(len(xs),
        cols)`` now held for their columns."""
        self._sample(xs, drive)
        return self._codes[list(xs)]

    def sample_word(self, xs, drive):
        """:meth:`sample`, returning the codes as the code store's ``codes_data`` word (crossbar
        ``x``'s column ``c`` at bit ``(x * cols + c) * adc_bits``; zero for crossbars not in
        ``xs``)."""
        return self._sample(xs, drive)

    def bits_word(self):
        """The resolutions as the code store's ``codes_bits`` word."""
        return pack_fields(self._bits, self._tile.adc_bits.bit_length())

    def _sample(self, xs, drive):
        t = self._tile
        rows = None
        row_mask = (1 << t.rows) - 1
        field = t.cols * t.adc_bits
        word = 0
        for x in xs:
            x = int(x)
            n = int(self._count[x])
            self._count[x] += 1
            step, plane = self._step0 + n // t.input_bits, n % t.input_bits
            self.samples += 1
            xb = self._xbars.get(x)
            if xb is None:
                self._codes[x] = 0
                continue
            codes_ahead, words, drives = self._ahead[x]
            if n < len(words):                 # computed ahead by expect()
                if (drive >> (x * t.rows)) & row_mask == drives[n]:
                    self._codes[x] = codes_ahead[n]
                    word |= words[n] << (x * field)
                    self.trials += t.cols * xb.adc_bits
                    continue
            if rows is None:
                rows = unpack_fields(drive, 1, t.rows * t.crossbars).reshape(t.crossbars, t.rows)
            d = rows[x]
            k = step - self._step0
            if k < len(self._vectors):
                v = self._vectors[k][xb.in_block * t.rows:(xb.in_block + 1) * t.rows]
                want = (v >> plane) & 1
                if not np.array_equal(d, want):
                    raise AssertionError(
                        f"crossbar {x}: row drive of vector {step} plane {plane} is "
                        f"{''.join(map(str, d[::-1]))}, expected {''.join(map(str, want[::-1]))} "
                        f"(row {t.rows - 1} first)")
            cb = xb.crossbar
            values = cb.column_values(d, step=step, plane=plane, time=self._time)
            self._codes[x] = cb.adc_codes(values, step=step, plane=plane, bits=xb.adc_bits)[0, 0, 0]
            word |= pack_fields(self._codes[x], t.adc_bits) << (x * field)
            self.trials += t.cols * xb.adc_bits
        return word

    def decide(self, adc, column, trial):
        """The comparator's answer to ADC ``adc``'s trial code ``trial`` at mux position
        ``column``: bit ``k`` of the held code for the trial of step ``k``; AssertionError if
        the trial is not the one the SAR rule expects from the decisions so far."""
        t = self._tile
        x, a = divmod(adc, t.adcs_per_xbar)
        code = int(self._codes[x, a * t.columns_per_adc + column])
        low = trial & -trial
        want = (code & ~(low | (low - 1))) | low
        if not low or trial != want or trial >> int(self._bits[x]):
            raise AssertionError(
                f"ADC {adc} (crossbar {x}) column {column}: trial {trial:#b} is not the SAR "
                f"rule's (held code {code:#b}, {int(self._bits[x])} bits)")
        return int(bool(code & low))

    def cycle(self, *, sample, drive, trial_en, trial, column):
        """One clock cycle of the analog side in a simulator that calls Python every cycle (the
        Amaranth tests): the RTL's outputs in (integers as on the ports; ``drive``, ``trial``
        and ``column`` are read only when needed: pass callables), the ``decision`` word out."""
        t = self._tile
        self.cycles += 1
        if sample:
            self.sample([x for x in range(t.crossbars) if (sample >> x) & 1], drive())
        if not trial_en:
            return 0
        n_adcs = t.crossbars * t.adcs_per_xbar
        col_w = max(1, (t.columns_per_adc - 1).bit_length())
        tv, cv = trial(), column()
        word = 0
        for k in range(n_adcs):
            if (trial_en >> k) & 1:
                tk = (tv >> (t.adc_bits * k)) & ((1 << t.adc_bits) - 1)
                ck = (cv >> (col_w * k)) & ((1 << col_w) - 1)
                word |= self.decide(k, ck, tk) << k
        return word


# -- Verilator: the code store around the tile --------------------------------------------------

def tile_testbench_verilog(tile_verilog, config, *, tile_top="pim_tile", name=TESTBENCH_TOP):
    """The cocotb top level: ``tile_verilog`` (the tile as ``tile_top``) inside a wrapper
    ``name`` with the same ports, except that ``decision`` comes from a code store.

    Code store ports (driven by :class:`TileBench`): ``codes_we`` writes, at the rising edge,
    ``codes_data`` (crossbar ``x``'s ``cols`` codes of ``adc_bits`` bits, column ``c`` at bit
    ``(x * cols + c) * adc_bits``) and ``codes_bits`` (its resolution) for every crossbar ``x``
    set in ``codes_mask``. ``sample_any`` is the OR of the tile's ``sample`` strobes (the
    testbench wakes on it; the build makes only top-level ports public). ``decision[k]`` is the stored code bit under trial (the lowest set
    bit of ADC ``k``'s trial code). A trial that is not ``code[b-1:k+1], 1, 0..`` (or has no bit
    set) sets ``sar_error`` (sticky until reset) with ``sar_error_adc``, ``_trial``, ``_code``
    and ``_column`` of the first one.
    """
    from hdl.pim_tile import cfg_layout, input_layout, output_layout
    c = config
    X, C, B, A = c.crossbars, c.cols, c.adc_bits, c.adcs_per_xbar
    NA, share = X * A, c.columns_per_adc
    CW = max(1, (share - 1).bit_length())
    BW = B.bit_length()
    AW = max(1, (NA - 1).bit_length())
    # The tile's ports (PimTile's signature, flattened as in its Verilog).
    ports = []
    for name_, layout, direction in (("i", input_layout(c.rows, c.input_bits), "input"),
                                     ("o", output_layout(c.outputs, c.out_width), "output"),
                                     ("cfg", cfg_layout(c.crossbars), "input")):
        back = "output" if direction == "input" else "input"
        ports += [(f"{name_}__payload", direction, layout.size), (f"{name_}__valid", direction, 1),
                  (f"{name_}__ready", back, 1)]
    ports += [("busy", "output", 1), ("drive", "output", c.rows * X), ("sample", "output", X),
              ("column", "output", CW * NA), ("trial", "output", B * NA),
              ("trial_en", "output", NA), ("decision", "input", NA)]
    decl = ["  input clk", "  input rst"]
    conn = ["    .clk(clk)", "    .rst(rst)"]
    for pname, direction, width in ports:
        rng = f"[{width - 1}:0] " if width > 1 else ""
        if pname == "decision":
            conn.append(f"    .decision(decision)")
            continue
        decl.append(f"  {direction} {rng}{pname}")
        conn.append(f"    .{pname}({pname})")
    decl += [
        "  input codes_we",
        f"  input [{X - 1}:0] codes_mask",
        f"  input [{X * C * B - 1}:0] codes_data",
        f"  input [{X * BW - 1}:0] codes_bits",
        "  output sample_any",
        "  output reg sar_error",
        f"  output reg [{AW - 1}:0] sar_error_adc",
        f"  output reg [{B - 1}:0] sar_error_trial",
        f"  output reg [{B - 1}:0] sar_error_code",
        f"  output reg [{CW - 1}:0] sar_error_column",
    ]
    ports_txt = ",\n".join(decl)
    conn_txt = ",\n".join(conn)
    return tile_verilog + f"""
// The cocotb top level: the tile, and a code store that answers its ADCs' trials.
module {name}(
{ports_txt}
);
  wire [{NA - 1}:0] decision;
  {tile_top} dut (
{conn_txt}
  );
  assign sample_any = |sample;   // a port: the testbench wakes on it (top ports only are public)
  reg [{C * B - 1}:0] codes [0:{X - 1}];
  reg [{BW - 1}:0] res [0:{X - 1}];
  integer x;
  always @(posedge clk) begin
    if (codes_we)
      for (x = 0; x < {X}; x = x + 1)
        if (codes_mask[x]) begin
          codes[x] <= codes_data[x * {C * B} +: {C * B}];
          res[x] <= codes_bits[x * {BW} +: {BW}];
        end
  end
  wire [{NA - 1}:0] bad;
  wire [{NA * B - 1}:0] code_flat;
  genvar k;
  generate for (k = 0; k < {NA}; k = k + 1) begin : adc
    wire [{CW - 1}:0] col = column[k * {CW} +: {CW}];
    wire [{B - 1}:0] t = trial[k * {B} +: {B}];
    wire [{B - 1}:0] code = codes[k / {A}][((k % {A}) * {share} + col) * {B} +: {B}];
    wire [{B - 1}:0] low = t & (~t + {B}'d1);
    wire [{B - 1}:0] want = (code & ~(low | (low - {B}'d1))) | low;
    assign decision[k] = |(code & low);
    assign code_flat[k * {B} +: {B}] = code;
    assign bad[k] = trial_en[k] & ((t != want) | (low == {B}'d0) | ((t >> res[k / {A}]) != {B}'d0));
  end endgenerate
  integer j;
  always @(posedge clk) begin
    if (rst)
      sar_error <= 1'b0;
    else if (!sar_error && (|bad))
      for (j = {NA - 1}; j >= 0; j = j - 1)
        if (bad[j]) begin
          sar_error <= 1'b1;
          sar_error_adc <= j[{AW - 1}:0];
          sar_error_trial <= trial[j * {B} +: {B}];
          sar_error_code <= code_flat[j * {B} +: {B}];
          sar_error_column <= column[j * {CW} +: {CW}];
          $display("pim_tile_tb: ADC %0d column %0d: trial %b is not the SAR rule's (held code %b)",
                   j, column[j * {CW} +: {CW}], trial[j * {B} +: {B}], code_flat[j * {B} +: {B}]);
        end
  end
endmodule
"""


def _u(handle):
    """A port's value as an unsigned integer (one-bit ports are ``Logic``, wider ``LogicArray``)."""
    v = handle.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


class TileBench:
    """Clock, reset, stream drivers, output monitor and the analog array of one tile.

    The DUT is the :data:`TESTBENCH_TOP` wrapper of :func:`tile_testbench_verilog`.

    Parameters
    ----------
    dut : the cocotb handle.
    tile : golden.pim_tile.TileConfig
    idle : probability of an idle cycle before each input beat.
    backpressure : probability of ``ready`` low on the output.
    seed : seed of the idle and backpressure patterns.
    """

    PERIOD_NS = 10

    def __init__(self, dut, tile, *, idle=0.0, backpressure=0.0, seed=0):
        import cocotb
        from cocotb.clock import Clock
        self.dut = dut
        self.tile = tile
        self.idle = idle
        self.backpressure = backpressure
        self.seed = seed
        cocotb.start_soon(Clock(dut.clk, self.PERIOD_NS, unit="ns").start())
        dut.codes_we.value = 0
        self.analog = AnalogArray(tile)
        self.mapping = None
        self.vectors = 0           # vectors sent since the crossbars were programmed
        self.expected = []
        self.last_received = []
        self._streams()
        self._tasks = [cocotb.start_soon(self._serve()), cocotb.start_soon(self._watch())]

    def _streams(self):
        from hdl.pim_tile import cfg_layout, input_layout, output_layout
        from tb.cocotb_streams import StreamDriver, StreamMonitor
        t = self.tile
        self.cfg = StreamDriver(self.dut, "cfg", cfg_layout(t.crossbars), seed=self.seed)
        self.inp = StreamDriver(self.dut, "i", input_layout(t.rows, t.input_bits), idle=self.idle,
                                seed=self.seed + 1)
        self.out = StreamMonitor(self.dut, "o", output_layout(t.outputs, t.out_width),
                                 backpressure=self.backpressure, seed=self.seed + 2)

    async def _serve(self):
        """At each sample strobe: the codes of the sampled crossbars into the code store."""
        from cocotb.triggers import RisingEdge
        dut, t = self.dut, self.tile
        edge, clk_edge = RisingEdge(dut.sample_any), RisingEdge(dut.clk)
        self._bits_word = None
        while True:
            await edge
            sample = _u(dut.sample)
            xs = [x for x in range(t.crossbars) if (sample >> x) & 1]
            dut.codes_data.value = self.analog.sample_word(xs, _u(dut.drive))
            bits = self.analog.bits_word()
            if bits != self._bits_word:
                dut.codes_bits.value = self._bits_word = bits
            dut.codes_mask.value = sample
            dut.codes_we.value = 1
            await clk_edge
            dut.codes_we.value = 0

    async def _watch(self):
        from cocotb.triggers import RisingEdge
        dut, t = self.dut, self.tile
        await RisingEdge(dut.sar_error)
        adc = _u(dut.sar_error_adc)
        raise AssertionError(
            f"ADC {adc} (crossbar {adc // t.adcs_per_xbar}) column {_u(dut.sar_error_column)}: "
            f"trial {_u(dut.sar_error_trial):#b} is not the SAR rule's "
            f"(held code {_u(dut.sar_error_code):#b})")

    def stop_trial_check(self):
        """Stop turning ``sar_error`` into a test failure (a test that provokes it)."""
        self._tasks[1].cancel()

    def sim_cycles(self):
        """Clock cycles simulated so far."""
        from cocotb.simtime import get_sim_time
        return int(get_sim_time(unit="ns") // self.PERIOD_NS)

    async def reset(self):
        """Reset the DUT (also in mid-batch): streams restart empty, the configuration is lost."""
        from tb.cocotb_streams import reset_dut
        for s in (self.cfg, self.inp, self.out):
            s.kill()
        self._streams()
        await reset_dut(self.dut)
        self.analog.restart()
        self.expected = []
        self.mapping = None

    async def cycles(self, n):
        from cocotb.triggers import ClockCycles
        await ClockCycles(self.dut.clk, n)

    async def idle_wait(self, limit=200_000):
        """Wait until the tile is idle (every input taken, ``busy`` low); returns at a falling
        edge."""
        from cocotb.triggers import FallingEdge, First, ReadOnly, Timer
        await self.inp.wait_sent()
        await self.cfg.wait_sent()
        await FallingEdge(self.dut.clk)
        await ReadOnly()
        if self.dut.busy.value:
            timeout = Timer(limit * self.PERIOD_NS, unit="ns")
            if await First(FallingEdge(self.dut.busy), timeout) is timeout:
                raise AssertionError(f"tile still busy after {limit} cycles")
        await FallingEdge(self.dut.clk)

    async def configure(self, mapping):
        """Write the mapping's registers (waits for idle first) and program the analog array."""
        from cocotb.triggers import FallingEdge
        await self.idle_wait()
        self.cfg.send_many(mapping.config_writes())
        await self.cfg.wait_sent()
        await FallingEdge(self.dut.clk)
        self.analog.program(mapping, step0=0)
        self.mapping = mapping
        self.vectors = 0

    def send(self, x):
        """Queue a batch ``(batch, K)``; its golden outputs join the expected queue."""
        m, t = self.mapping, self.tile
        xp = m.pad_inputs(x)
        y, sat = m.golden(x, step=self.vectors)
        self.vectors += xp.shape[0]
        self.analog.expect(xp)
        self.inp.send_many([[int(e) for e in xp[v, b * t.rows:(b + 1) * t.rows]]
                            for v in range(xp.shape[0]) for b in range(m.n_blocks)])
        for v in range(xp.shape[0]):
            n = y.shape[1]
            for i in range(n):
                self.expected.append({"value": int(y[v, i]), "saturated": int(sat[v, i]),
                                      "index": i, "last": int(i == n - 1)})
        return y

    async def drain(self, limit=2_000_000, *, check=True):
        """Wait for every expected output and compare them in order; nothing may be left over.

        Returns the transfer cycle of each output; the words stay in ``last_received``. With
        ``check=False`` nothing is asserted (the caller counts the agreement)."""
        try:
            await self.out.wait_received(len(self.expected), timeout=limit)
        except AssertionError:
            if check:
                raise
        await self.cycles(20)
        got = list(self.out.received)
        self.last_received = got
        if check:
            assert len(got) == len(self.expected), f"{len(got)} outputs, expected {len(self.expected)}"
            for k, (g, e) in enumerate(zip(got, self.expected)):
                assert g == e, f"output {k}: got {g}, expected {e}"
        cycles = list(self.out.cycles)
        self.out.received.clear()
        self.out.cycles.clear()
        self.expected = []
        return cycles
