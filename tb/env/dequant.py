"""Dequantizer test environment: golden-model stimulus (Amaranth sim and cocotb) and the
cocotb bench :class:`DequantBench` (clock, reset, drivers, monitor, in-order scoreboard).

Used by ``tb/test_dequant_sim.py``, ``tb/test_dequant_verilator.py`` and ``tb/bench/dequant.py``.
"""

import numpy as np
from amaranth.lib import data

from golden.crossbar import Crossbar, CrossbarConfig
from golden.quant import aggregate, dequantize
from golden.shift_add import aggregate_stream, dequantize_stream, read_sequence, shift_add_stream

__all__ = ["fit", "beat_dicts", "random_beats", "extreme_values", "interesting_scales", "group_stimulus",
           "strobe_put", "StrobeDriver", "DequantBench", "GROUP_CONFIGS", "GROUP_SIZE"]

# The ShiftAddDequantizer configurations of the Verilator regression (one build each), also
# the simulation-speed benchmark's dequantizer row.
GROUP_CONFIGS = {
    "mlc_flip_a7_even": dict(cell_bits=2, adc_bits=7, flip=True, rounding="half_even", out_bits=12,
                             multiplier="csd"),
    "slc_a6_up": dict(cell_bits=1, adc_bits=6, flip=False, rounding="half_up", out_bits=16,
                      multiplier="csd"),
}
GROUP_SIZE = dict(rows=16, n_out=3, xbars=4, units=2)


def random_beats(rng, *, reads, n_out, input_bits, n_slices, adc_bits, rows, xbars, flip, extreme=False,
                 columns=None):
    """Beats of ``reads`` crossbar reads (random codes) in the fixed order, one xbar tag per read."""
    columns = n_out if columns is None else columns
    out = []
    for r in range(reads):
        hi = (1 << adc_bits) - 1
        if extreme:
            codes = rng.choice([0, hi], size=(input_bits, n_slices, n_out))
        else:
            codes = rng.integers(0, hi + 1, (input_bits, n_slices, n_out))
        ones = rng.integers(0, rows + 1, input_bits)
        if extreme:
            ones = rng.choice([0, rows], size=input_bits)
        fl = rng.random((n_slices, n_out)) < 0.5 if flip else None
        base = int(rng.integers(0, columns - n_out + 1))
        out.append(read_sequence(codes, ones=ones, flip=fl, xbar=int(rng.integers(0, xbars)),
                                 column_base=base))
    return {k: np.concatenate([b[k] for b in out]) for k in out[0]}


def fit(layout, value):
    """Drop the fields of ``value`` that ``layout`` does not have (stimulus beats carry all)."""
    if isinstance(layout, data.StructLayout):
        return {k: fit(layout[k].shape, v) for k, v in value.items() if k in dict(layout)}
    if isinstance(layout, data.ArrayLayout):
        return [fit(layout.elem_shape, v) for v in value]
    return value


def beat_dicts(beats, *, ones, flip):
    keys = ["code", "plane", "slice", "column", "xbar", "first", "last"]
    if ones:
        keys.append("ones")
    if flip:
        keys.append("flip")
    n = len(beats["code"])
    return [{k: int(beats[k][t]) for k in keys} for t in range(n)]


def extreme_values(rng, width, n):
    """Random signed values of ``width`` bits, a third of them at or next to the extremes."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    v = rng.integers(lo, hi + 1, n, dtype=np.int64)
    k = n // 3
    v[:k] = rng.choice([lo, lo + 1, hi, hi - 1, 0, -1, 1], size=k)
    rng.shuffle(v)
    return v


def interesting_scales(rng, scale_bits, n):
    """Scales 0, 1, -1, max, min, powers of two (both signs), then random."""
    lo, hi = -(1 << (scale_bits - 1)), (1 << (scale_bits - 1)) - 1
    special = [0, 1, -1, hi, lo, hi - 1, lo + 1] + [1 << k for k in range(scale_bits - 1)] + \
              [-(1 << k) for k in range(scale_bits - 1)] + [0b0101 & hi, -(0b0101 & hi) or -1]
    extra = list(rng.integers(lo, hi + 1, max(0, n - len(special))))
    return [int(s) for s in special + extra]


def group_stimulus(rng, *, rows, n_out, xbars, units, cell_bits, weight_bits=8, input_bits=8,
                   batch=2, flip=False, scale_bits=16, scale_frac_bits=14, out_bits=16,
                   rounding="half_up", scale_range=None):
    """End-to-end stimulus of :class:`ShiftAddDequantizer` from the golden crossbar.

    Random int8 ``X (batch, xbars*rows)`` and ``W (xbars*rows, n_out)``, crossbar ``x`` holding
    rows ``x*rows ..``, lossless ADC, offset encoding. Returns ``(beats_per_lane, scales,
    expected)``: the top's input beats (a list of ``units`` dicts per beat), the scales and the
    expected ``(values, saturated)`` computed both from the traced codes and from ``X @ W``.
    """
    n_slices = weight_bits // cell_bits
    cfg = CrossbarConfig(rows=rows, cols=n_out * n_slices, cell_bits=cell_bits, weight_bits=weight_bits,
                         input_bits=input_bits, encoding="offset", flip=flip)
    lim_x, lim_w = 1 << (input_bits - 1), 1 << (weight_bits - 1)
    x = rng.integers(-lim_x, lim_x, (batch, xbars * rows))
    w = rng.integers(-lim_w, lim_w, (xbars * rows, n_out))
    x[0, :rows] = -lim_x                       # extremes in the first crossbar
    w[:rows, 0] = -lim_w
    if scale_range is None:
        scale_range = 1 << (scale_bits - 1)
    scales = rng.integers(-scale_range, scale_range, xbars)
    beats_per = xbars // units
    lane_streams = [[None] * beats_per for _ in range(units)]
    partial = np.zeros((batch, xbars, n_out), dtype=np.int64)
    for xb in range(xbars):
        xbar = Crossbar(cfg, xbar_id=xb).program(w[xb * rows:(xb + 1) * rows])
        y, tr = xbar.mvm(x[:, xb * rows:(xb + 1) * rows], trace=True)
        np.testing.assert_array_equal(y, x[:, xb * rows:(xb + 1) * rows] @ w[xb * rows:(xb + 1) * rows])
        partial[:, xb] = y
        codes = tr.logical("codes")[:, :, 0]            # (batch, P, G, S, n_out)
        ones = tr.planes.sum(-1)                         # (batch, P)
        flags = tr.logical("flip_flags")[0] if flip else None   # (S, n_out)
        u, b = xb % units, xb // units
        lane_streams[u][b] = [read_sequence(codes[k], ones=ones[k], flip=flags, xbar=xb,
                                            column_base=b * n_out) for k in range(batch)]
    # Interleave the crossbars of a lane beat by beat, batch after batch.
    beats = []
    for k in range(batch):
        n_beats = len(lane_streams[0][0][k]["code"])
        for t in range(n_beats):
            for b in range(beats_per):
                beats.append([{f: int(lane_streams[u][b][k][f][t]) for f in lane_streams[u][b][k]}
                              for u in range(units)])
    # Expected, from X @ W per crossbar: dequantize each partial, aggregate over crossbars.
    dq, sat = dequantize(partial, scales[None, :, None], scale_frac_bits=scale_frac_bits,
                         out_bits=out_bits, rounding=rounding)
    expected = aggregate(np.moveaxis(dq, 1, 0)).reshape(-1)       # (batch * n_out,)
    expected_sat = sat.any(axis=1).reshape(-1)
    # Cross-check the streaming golden chain on the traced codes.
    lanes_vals, lanes_sat = [], []
    for u in range(units):
        merged = {f: np.concatenate([np.stack([lane_streams[u][b][k][f] for b in range(beats_per)],
                                              axis=1).ravel() for k in range(batch)])
                  for f in lane_streams[u][0][0]}
        res = shift_add_stream(merged, input_bits=input_bits, weight_bits=weight_bits,
                               cell_bits=cell_bits, encoding="offset")
        v, s = dequantize_stream(res["value"], res["xbar"], scales, scale_frac_bits=scale_frac_bits,
                                 out_bits=out_bits, rounding=rounding)
        lanes_vals.append(v)
        lanes_sat.append(s)
    chain, chain_sat = aggregate_stream(np.stack(lanes_vals, 1), np.stack(lanes_sat, 1),
                                        lanes=units, beats=beats_per)
    np.testing.assert_array_equal(chain, expected)
    np.testing.assert_array_equal(chain_sat, expected_sat)
    return beats, [int(s) for s in scales], (expected, expected_sat)


# -- Amaranth simulator -----------------------------------------------------------------------

async def strobe_put(ctx, port, payload):
    """Drive one strobe (:class:`hdl.lib.signatures.StrobeSignature`): ``valid`` for one cycle
    with ``payload`` (an int, packed for struct payloads)."""
    target = port.payload
    if isinstance(target, data.View) and isinstance(payload, int):
        target = target.as_value()
    ctx.set(port.valid, 1)
    ctx.set(target, payload)
    await ctx.tick()
    ctx.set(port.valid, 0)


# -- cocotb -----------------------------------------------------------------------------------

class StrobeDriver:
    """Drives an always-ready stream (a strobe: ``<name>__valid``, ``<name>__payload``, no
    ``ready``): one queued payload per cycle, with seeded random idle cycles; sleeps while the
    queue is empty.

    Members
    -------
    send(value)
        Queue a payload (a dict for a struct layout).
    pending : int
        Payloads not yet driven.
    kill()
        Stop (``valid`` is dropped at the next falling edge).
    """

    def __init__(self, dut, name, layout, *, idle=0.0, seed=0):
        import random

        import cocotb
        from cocotb.triggers import Event
        self._clk = dut.clk
        self._valid = getattr(dut, f"{name}__valid")
        self._payload = getattr(dut, f"{name}__payload")
        self._layout = layout
        self._idle = idle
        self._rng = random.Random(seed)
        self._queue = []
        self._wake = Event()
        self._valid.value = 0
        self._task = cocotb.start_soon(self._run())

    @property
    def pending(self):
        return len(self._queue)

    def send(self, value):
        from tb.packing import pack
        self._queue.append(pack(self._layout, value))
        self._wake.set()

    def kill(self):
        self._task.cancel()
        self._valid.value = 0

    async def _run(self):
        from cocotb.triggers import FallingEdge
        valid = 0
        while True:
            if not self._queue:
                if valid:
                    await FallingEdge(self._clk)
                    self._valid.value = valid = 0
                self._wake.clear()
                await self._wake.wait()
            await FallingEdge(self._clk)
            if self._idle and self._rng.random() < self._idle:
                if valid:
                    self._valid.value = valid = 0
                continue
            self._payload.value = self._queue.pop(0)
            if not valid:
                self._valid.value = valid = 1


class DequantBench:
    """cocotb bench of :class:`hdl.dequant.ShiftAddDequantizer` or
    :class:`hdl.dequant.Dequantizer`: clock, reset, the ``i`` driver and ``cfg`` strobe writer
    with random idle cycles, the ``o`` monitor with random backpressure, and the in-order
    scoreboard (:meth:`drain`).

    Parameters
    ----------
    dut : the cocotb handle.
    block : the elaborated component (for its payload layouts).
    """

    def __init__(self, dut, block):
        import cocotb
        from cocotb.clock import Clock
        self.dut = dut
        self.in_layout = block.i.payload.shape()
        self.cfg_layout = block.cfg.payload.shape()
        self.out_layout = block.o.payload.shape()
        self.drv = self.cfg = self.mon = None
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.clear_saturated.value = 0

    async def reset(self):
        """Reset the DUT (the scale registers clear); running drivers are stopped."""
        from tb.cocotb_streams import reset_dut
        for t in (self.drv, self.cfg, self.mon):
            if t is not None:
                t.kill()
        await reset_dut(self.dut)

    def streams(self, *, seed, idle=0.0, cfg_idle=0.0, backpressure=0.0):
        """Fresh ``i``/``cfg`` drivers and ``o`` monitor (seeds ``seed``, ``+1``, ``+2``)."""
        from tb.cocotb_streams import StreamDriver, StreamMonitor
        self.drv = StreamDriver(self.dut, "i", self.in_layout, idle=idle, seed=seed)
        self.cfg = StrobeDriver(self.dut, "cfg", self.cfg_layout, idle=cfg_idle, seed=seed + 1)
        self.mon = StreamMonitor(self.dut, "o", self.out_layout, backpressure=backpressure,
                                 seed=seed + 2)

    async def write_scales(self, scales):
        """Write every crossbar's scale and wait until the writes are done."""
        from cocotb.triggers import ClockCycles, RisingEdge
        for xb, scale in enumerate(scales):
            self.cfg.send({"xbar": xb, "scale": int(scale)})
        while self.cfg.pending:
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 2)

    def send(self, beats):
        for b in beats:
            self.drv.send(fit(self.in_layout, b))

    async def drain(self, n, limit=20000):
        """Wait for ``n`` words in total on ``o``; nothing more may follow."""
        from cocotb.triggers import ClockCycles, RisingEdge
        for _ in range(limit):
            if len(self.mon.received) >= n:
                break
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 30)
        assert len(self.mon.received) == n, f"received {len(self.mon.received)} of {n}"
