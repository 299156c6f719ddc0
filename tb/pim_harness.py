"""cocotb harness of the PIM tile: the golden analog crossbars answer the RTL, cycle by cycle.

:class:`AnalogArray` plays the analog half of every crossbar of a :class:`hdl.pim_tile.PimTile`
from a :class:`golden.pim_tile.TileMapping` (the golden crossbars, programmed and with their
noise):

- on a crossbar's ``sample`` strobe it reads that crossbar's row drive (the 1-bit DAC inputs the
  RTL drives) and computes the held column values: ``drive @ conductances`` in cell-current
  steps, plus the read noise of that vector and plane, drawn from the same random stream as
  :meth:`golden.crossbar.Crossbar.mvm` (the harness counts the samples of each crossbar: sample
  ``n`` is vector ``step0 + n // input_bits``, plane ``n % input_bits``);
- in every cycle it answers each ADC's trial code (``trial_en``) through the comparator model
  :func:`golden.sar.compare`, with that conversion's comparator offset, noise and capacitor
  weights (again the golden crossbar's random streams).

One coroutine per cycle serves all ADCs: the wide ``trial``/``column``/``drive`` buses are read
as integers and unpacked with NumPy (:meth:`AnalogArray.cycle` holds the logic, so the
Amaranth-simulator tests call it too). ``trials`` and ``cycles`` count the ADC work for the
utilization figure.

:class:`TileBench` wraps a DUT for tests, the benchmark and the demo: clock, reset (also in
mid-batch), the ``cfg``/``i`` drivers with random idle cycles, the ``o`` monitor with random
backpressure, :meth:`TileBench.configure` (a mapping's register writes, once the tile is idle),
:meth:`TileBench.send` (a batch, its golden outputs queued as expected) and
:meth:`TileBench.drain` (the in-order scoreboard).
"""

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge

from golden.sar import compare

__all__ = ["AnalogArray", "TileBench", "unpack_fields"]


def unpack_fields(value, width, count):
    """``count`` unsigned fields of ``width`` bits from an integer, field 0 at the LSB."""
    n = width * count
    raw = np.frombuffer(int(value).to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")[:n].reshape(count, width).astype(np.int64)
    return bits @ (np.int64(1) << np.arange(width, dtype=np.int64))


class _Xbar:
    def __init__(self, tile, xb, *, time=None):
        c = xb.crossbar.config
        self.index = xb.index
        self.bits = xb.adc_bits
        self.config = c
        nz = c.noise
        exact = nz.ideal or (not nz.prog_sigma and not nz.prog_ber and not nz.stuck_on
                             and not nz.stuck_off and not nz.ir_wl and not nz.ir_bl
                             and not nz.drift_nu and not nz.drift_nu_sigma)
        self.g = (xb.crossbar.levels[0].astype(np.int64) if exact
                  else xb.crossbar.effective_conductances(time)[0])
        self.read_sigma = nz.read_sigma
        self.comp_sigma = nz.comp_noise_sigma
        self.crossbar = xb.crossbar
        self.offset = xb.crossbar.adc_offsets()
        self.cap = xb.crossbar.adc_cap_weights(self.bits)
        self._step = None
        self._read = None
        self._comp = None

    def noise_for(self, step):
        if self._step != step:
            self._read = self.crossbar.read_noise(step)[:, 0, 0] if self.read_sigma else None
            self._comp = (self.crossbar.comparator_noise(step, self.bits)[:, 0, 0]
                          if self.comp_sigma else None)
            self._step = step
        return self._read, self._comp


class AnalogArray:
    """The analog crossbars and ADC front ends of a tile, answering the RTL each cycle.

    Parameters
    ----------
    dut : the cocotb handle of a ``pim_tile`` top level, or ``None`` to call :meth:`cycle`
        from another simulator (the Amaranth testbenches do).
    tile : golden.pim_tile.TileConfig
    mapping : golden.pim_tile.TileMapping or None
        The programmed crossbars (``None``: nothing programmed; every column reads 0).
    step0 : int
        Global vector index of the first sample (the golden model's ``step``).
    time : float or None
        Seconds since programming (drift).
    """

    def __init__(self, dut, tile, mapping=None, *, step0=0, time=None):
        self._dut = dut
        self._tile = tile
        self.trials = 0
        self.cycles = 0
        self.samples = 0
        self.program(mapping, step0=step0, time=time)
        self._task = cocotb.start_soon(self._run()) if dut is not None else None

    def program(self, mapping, *, step0=0, time=None):
        """Program new crossbars (a reconfiguration) and restart the sample counting at ``step0``."""
        t = self._tile
        self._xbars = {}
        if mapping is not None:
            for xb in mapping.xbars:
                self._xbars[xb.index] = _Xbar(t, xb, time=time)
        exact = all(v.g.dtype.kind == "i" and not v.read_sigma for v in self._xbars.values())
        self._held = np.zeros((t.crossbars, t.cols), dtype=np.int64 if exact else np.float64)
        self._plane = np.zeros(t.crossbars, dtype=np.int64)
        self._comp = np.zeros((t.crossbars, t.cols, t.adc_bits))
        self._bits = np.full(t.crossbars, t.adc_bits, dtype=np.int64)
        for x, v in self._xbars.items():
            self._bits[x] = v.bits
        self._offset = np.zeros(t.crossbars * t.adcs_per_xbar)
        for x, v in self._xbars.items():
            self._offset[x * t.adcs_per_xbar:(x + 1) * t.adcs_per_xbar] = v.offset
        self._count = np.zeros(t.crossbars, dtype=np.int64)
        self._step0 = step0
        self._has_cap = any(v.cap is not None for v in self._xbars.values())

    def restart(self, step0=0):
        """After a DUT reset: the next sample of every crossbar is plane 0 of vector ``step0``."""
        self._count[:] = 0
        self._step0 = step0

    def kill(self):
        self._task.cancel()

    def _sample(self, xs, drive_word):
        t = self._tile
        drive = unpack_fields(drive_word, 1, t.rows * t.crossbars).reshape(t.crossbars, t.rows)
        for x in xs:
            n = int(self._count[x])
            self._count[x] += 1
            step, plane = self._step0 + n // t.input_bits, n % t.input_bits
            self._plane[x] = plane
            v = self._xbars.get(int(x))
            self.samples += 1
            if v is None:
                self._held[x] = 0
                continue
            d = drive[x]
            if v.g.dtype.kind == "i":
                sums = d @ v.g
            else:
                sums = (d.astype(np.float64)[None] @ v.g)[0]
            read, comp = v.noise_for(step)
            if read is not None:
                sums = sums + read[plane] * (v.read_sigma * np.sqrt(float(d.sum())))
            self._held[x] = sums
            if comp is not None:
                self._comp[x, :, :v.bits] = comp[plane]

    def cycle(self, *, sample, drive, trial_en, trial, column):
        """One clock cycle of the analog side: the RTL's outputs in (integers, as on the
        ports; ``drive``, ``trial`` and ``column`` are read only when needed: pass callables),
        the ``decision`` word out."""
        t = self._tile
        A = t.adcs_per_xbar
        n_adcs = t.crossbars * A
        share = t.columns_per_adc
        col_w = max(1, (share - 1).bit_length())
        self.cycles += 1
        if sample:
            self._sample([x for x in range(t.crossbars) if (sample >> x) & 1], drive())
        if not trial_en:
            return 0
        # Python integer ops beat NumPy's per-call overhead at these sizes (tens of ADCs).
        active = [k for k in range(n_adcs) if (trial_en >> k) & 1]
        self.trials += len(active)
        tv, cv = trial(), column()
        tmask, cmask, tb = (1 << t.adc_bits) - 1, (1 << col_w) - 1, t.adc_bits
        trial = np.array([(tv >> (tb * k)) & tmask for k in active], dtype=np.int64)
        column = np.array([(cv >> (col_w * k)) & cmask for k in active], dtype=np.int64)
        active = np.array(active, dtype=np.int64)
        x = active // A
        c = (active % A) * share + column
        analog = self._held[x, c]
        k = np.log2(trial & -trial).astype(np.int64)        # the bit under trial
        bits = self._bits[x]
        noise = self._comp[x, c, bits - 1 - k]
        if self._has_cap:
            keep = np.empty(len(active), dtype=bool)
            for n_, (i, a) in enumerate(zip(x, active % A)):
                v = self._xbars.get(int(i))
                cw = None if v is None or v.cap is None else v.cap[a]
                keep[n_] = compare(analog[n_], trial[n_], offset=self._offset[active[n_]],
                                   noise=noise[n_], cap_weights=cw)
        else:
            keep = compare(analog, trial, offset=self._offset[active], noise=noise)
        word = 0
        for pos in active[keep].tolist():
            word |= 1 << pos
        return word

    async def _run(self):
        dut = self._dut
        last = 0
        while True:
            await FallingEdge(dut.clk)
            word = self.cycle(sample=_u(dut.sample), drive=lambda: _u(dut.drive),
                              trial_en=_u(dut.trial_en), trial=lambda: _u(dut.trial),
                              column=lambda: _u(dut.column))
            if word != last:
                dut.decision.value = word
                last = word


def _u(handle):
    """A port's value as an unsigned integer (one-bit ports are ``Logic``, wider ``LogicArray``)."""
    v = handle.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)




class TileBench:
    """Clock, reset, stream drivers, output monitor and the analog array of one tile DUT.

    Parameters
    ----------
    dut : the cocotb handle.
    tile : golden.pim_tile.TileConfig
    idle : probability of an idle cycle before each input beat.
    backpressure : probability of ``ready`` low on the output.
    seed : seed of the idle and backpressure patterns.
    """

    def __init__(self, dut, tile, *, idle=0.0, backpressure=0.0, seed=0):
        from cocotb.clock import Clock
        self.dut = dut
        self.tile = tile
        self.idle = idle
        self.backpressure = backpressure
        self.seed = seed
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.decision.value = 0
        self.analog = AnalogArray(dut, tile)
        self.mapping = None
        self.vectors = 0           # vectors sent since the crossbars were programmed
        self.expected = []
        self.last_received = []
        self._streams()

    def _streams(self):
        from hdl.pim_tile import cfg_layout, input_layout, output_layout
        from tb.cocotb_streams import StreamDriver, StreamMonitor
        t = self.tile
        self.cfg = StreamDriver(self.dut, "cfg", cfg_layout(t.crossbars), seed=self.seed)
        self.inp = StreamDriver(self.dut, "i", input_layout(t.rows, t.input_bits), idle=self.idle,
                                seed=self.seed + 1)
        self.out = StreamMonitor(self.dut, "o", output_layout(t.outputs, t.out_width),
                                 backpressure=self.backpressure, seed=self.seed + 2)

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
        from cocotb.triggers import RisingEdge
        for _ in range(n):
            await RisingEdge(self.dut.clk)

    async def idle_wait(self, limit=200_000):
        """Wait until the tile is idle (every output received); returns at a falling edge."""
        from cocotb.triggers import ReadOnly
        for _ in range(limit):
            await FallingEdge(self.dut.clk)
            await ReadOnly()
            if not self.dut.busy.value and not self.inp.pending and not self.cfg.pending:
                await FallingEdge(self.dut.clk)
                return
        raise AssertionError(f"tile still busy after {limit} cycles")

    async def configure(self, mapping):
        """Write the mapping's registers (waits for idle first) and program the analog array."""
        await self.idle_wait()
        for w in mapping.config_writes():
            self.cfg.send(w)
        while self.cfg.pending:
            await FallingEdge(self.dut.clk)
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
        for v in range(xp.shape[0]):
            for b in range(m.n_blocks):
                self.inp.send([int(e) for e in xp[v, b * t.rows:(b + 1) * t.rows]])
            n = y.shape[1]
            for i in range(n):
                self.expected.append({"value": int(y[v, i]), "saturated": int(sat[v, i]),
                                      "index": i, "last": int(i == n - 1)})
        return y

    async def drain(self, limit=2_000_000, *, check=True):
        """Wait for every expected output and compare them in order; nothing may be left over.

        Returns the transfer cycle of each output; the words stay in ``last_received``. With
        ``check=False`` nothing is asserted (the caller counts the agreement)."""
        from cocotb.triggers import RisingEdge
        n = 0
        while len(self.out.received) < len(self.expected):
            await RisingEdge(self.dut.clk)
            n += 1
            if n >= limit:
                assert not check, (f"timeout: {len(self.out.received)} of {len(self.expected)} "
                                   f"outputs after {limit} cycles")
                break
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
