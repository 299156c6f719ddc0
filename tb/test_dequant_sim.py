# amaranth: UnusedElaboratable=no
"""Shift-and-add, dequantizer, aggregator: golden self-checks and fast Amaranth-sim tests."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.crossbar import shift_add
from golden.quant import dequantize
from golden.shift_add import aggregate_stream, csd_digits, read_sequence, sa_acc_width, shift_add_stream
from hdl.dequant import Aggregator, Dequantizer, ShiftAddAccumulator, ShiftAddDequantizer
from tb.env.dequant import strobe_put, beat_dicts, fit, extreme_values, group_stimulus, interesting_scales, random_beats
from tb.packing import pack, unpack
from tb.sim_streams import stream_get, stream_put


def run_streams(dut, inputs, n_out, *, seed=0, idle=0.3, stall=0.3, before=None):
    """Drive ``inputs`` (payload dicts) into ``dut.i``, collect ``n_out`` payloads from ``dut.o``."""
    rng = np.random.default_rng(seed)
    in_layout = dut.i.payload.shape()
    out_layout = dut.o.payload.shape()
    idles = (rng.random(len(inputs)) < idle) * rng.integers(1, 4, len(inputs))
    stalls = (rng.random(n_out) < stall) * rng.integers(1, 4, n_out)
    got = []

    async def producer(ctx):
        if before is not None:
            await before(ctx)
        for k, beat in enumerate(inputs):
            await stream_put(ctx, dut.i, pack(in_layout, fit(in_layout, beat)), idle=int(idles[k]))

    async def consumer(ctx):
        for k in range(n_out):
            v = await stream_get(ctx, dut.o, stall=int(stalls[k]))
            got.append(unpack(out_layout, v.as_value().value))
        for _ in range(20):          # nothing left over
            await ctx.tick()
            assert not ctx.get(dut.o.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got


# -- golden self-checks ------------------------------------------------------------------------

def test_csd_digits_exhaustive():
    for bits in (2, 5, 8, 11):
        for s in range(-(1 << (bits - 1)), 1 << (bits - 1)):
            pos, neg = csd_digits(s, bits)
            assert pos - neg == s and pos & neg == 0 and (pos | neg) & ((pos | neg) >> 1) == 0
            assert (pos | neg) < (1 << bits)


@pytest.mark.parametrize("cell_bits", [1, 2])
def test_golden_stream_matches_crossbar_shift_add(cell_bits):
    rng = np.random.default_rng(cell_bits)
    n_slices, n_out = 8 // cell_bits, 5
    codes = rng.integers(0, 256, (8, n_slices, n_out))
    res = shift_add_stream(read_sequence(codes), input_bits=8, weight_bits=8, cell_bits=cell_bits,
                           encoding="none")
    np.testing.assert_array_equal(res["value"], shift_add(codes, input_bits=8, cell_bits=cell_bits))


def test_golden_acc_width_is_tight_enough():
    # All-max codes with ones = 0 reach the positive bound; the width must hold them.
    for cb, flip in ((1, False), (2, True), (2, False)):
        w = sa_acc_width(adc_bits=8, input_bits=8, weight_bits=8, cell_bits=cb, rows=128, flip=flip)
        n = 8 // cb
        codes = np.full((8, n, 1), 255)
        beats = read_sequence(codes, ones=np.full(8, 128), flip=np.full((n, 1), flip))
        for signed in (True, False):
            shift_add_stream(beats, input_bits=8, weight_bits=8, cell_bits=cb, signed_inputs=signed,
                             acc_width=w)


# -- shift-and-add accumulator -----------------------------------------------------------------

SA_CONFIGS = [
    dict(cell_bits=2, adc_bits=8, encoding="offset", flip=True),
    dict(cell_bits=1, adc_bits=6, encoding="twos", flip=False),
    dict(cell_bits=2, adc_bits=7, encoding="none", flip=False, signed_inputs=False),
]


@pytest.mark.parametrize("cfg", SA_CONFIGS, ids=lambda c: f"c{c['cell_bits']}a{c['adc_bits']}{c['encoding']}")
def test_shift_add_sim(cfg):
    rows, n_out, cols, xbars = 16, 3, 6, 2
    dut = ShiftAddAccumulator(input_bits=8, weight_bits=8, columns=cols, xbars=xbars, rows=rows, **cfg)
    rng = np.random.default_rng(5)
    n_slices = 8 // cfg["cell_bits"]
    beats = random_beats(rng, reads=2, n_out=n_out, input_bits=8, n_slices=n_slices,
                         adc_bits=cfg["adc_bits"], rows=rows, xbars=xbars, flip=cfg["flip"], columns=cols)
    ext = random_beats(rng, reads=1, n_out=n_out, input_bits=8, n_slices=n_slices, extreme=True,
                       adc_bits=cfg["adc_bits"], rows=rows, xbars=xbars, flip=cfg["flip"], columns=cols)
    beats = {k: np.concatenate([beats[k], ext[k]]) for k in beats}
    exp = shift_add_stream(beats, input_bits=8, weight_bits=8, cell_bits=cfg["cell_bits"],
                           encoding=cfg["encoding"], signed_inputs=cfg.get("signed_inputs", True),
                           acc_width=dut.acc_width)
    ins = beat_dicts(beats, ones=cfg["encoding"] == "offset" or cfg["flip"], flip=cfg["flip"])
    got = run_streams(dut, ins, len(exp["value"]), seed=3)
    assert [g["value"] for g in got] == list(exp["value"])
    assert [g["column"] for g in got] == list(exp["column"])
    assert [g["xbar"] for g in got] == list(exp["xbar"])


# -- dequantizer --------------------------------------------------------------------------------

@pytest.mark.parametrize("rounding,multiplier,out_bits,pipelined,sb",
                         [("half_up", "csd", 8, True, 16), ("half_even", "csd", 16, True, 16),
                          ("half_even", "generic", 8, True, 16), ("floor", "csd", 12, False, 16),
                          ("half_up", "csd", 10, False, 16),
                          # 6 and 5 CSD terms: adder-tree levels with an odd term out
                          ("half_up", "csd", 12, True, 12), ("half_even", "csd", 8, True, 10)])
def test_dequantizer_sim(rounding, multiplier, out_bits, pipelined, sb):
    xbars, in_width, frac = 4, 20, sb - 2
    dut = Dequantizer(in_width=in_width, columns=4, xbars=xbars, scale_bits=sb, scale_frac_bits=frac,
                      out_bits=out_bits, rounding=rounding, multiplier=multiplier)
    rng = np.random.default_rng(11)
    all_scales = interesting_scales(rng, sb, 40)
    # One scale set per simulation (rewrites within one run: the cocotb regression).
    rounds = [all_scales[k:k + xbars] for k in range(0, len(all_scales), xbars)]
    rounds = [r + [0] * (xbars - len(r)) for r in rounds]
    n_per = 16
    got_all = []
    for r, scales in enumerate(rounds):
        dut = Dequantizer(in_width=in_width, columns=4, xbars=xbars, scale_bits=sb, scale_frac_bits=frac,
                          out_bits=out_bits, rounding=rounding, multiplier=multiplier, pipelined_tree=pipelined)
        if sb == 16:
            assert dut.latency == (3 if multiplier == "generic" or not pipelined else 6)
        v = extreme_values(rng, in_width, n_per)
        x = rng.integers(0, xbars, n_per)
        ev, es = dequantize(v, np.asarray(scales)[x], scale_frac_bits=frac, out_bits=out_bits, rounding=rounding)
        ins = [{"xbar": int(x[k]), "column": k % 4, "value": int(v[k])} for k in range(n_per)]

        async def write_scales(ctx, dut=dut, scales=scales):
            for xb, s in enumerate(scales):
                await strobe_put(ctx, dut.cfg, pack(dut.cfg.payload.shape(), {"xbar": xb, "scale": s}))

        got = run_streams(dut, ins, n_per, seed=r, before=write_scales)
        assert [g["value"] for g in got] == list(ev), f"round {r} scales {scales}"
        assert [g["saturated"] for g in got] == list(es.astype(int))
        got_all += got
    assert any(g["saturated"] for g in got_all) and not all(g["saturated"] for g in got_all)


# -- aggregator ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes,beats", [(4, 2), (3, 1), (1, 3)])
def test_aggregator_sim(lanes, beats):
    dut = Aggregator(lanes=lanes, beats=beats, in_bits=8, columns=8)
    rng = np.random.default_rng(lanes)
    n = 10 * beats
    v = extreme_values(rng, 8, n * lanes).reshape(n, lanes)
    sat = rng.random((n, lanes)) < 0.1
    ev, es = aggregate_stream(v, sat, lanes=lanes, beats=beats)
    ins = [{"value": [int(a) for a in v[k]], "saturated": int(sat[k].any()), "column": k % 8} for k in range(n)]
    got = run_streams(dut, ins, n // beats, seed=2)
    assert [g["value"] for g in got] == list(ev)
    assert [g["saturated"] for g in got] == list(es.astype(int))
    assert [g["column"] for g in got] == [(k * beats + beats - 1) % 8 for k in range(n // beats)]


# -- whole group, end to end with the golden crossbar ------------------------------------------

@pytest.mark.parametrize("cell_bits,flip", [(2, True), (1, False)])
def test_group_end_to_end_sim(cell_bits, flip):
    rows, n_out, xbars, units = 8, 2, 4, 2
    rng = np.random.default_rng(cell_bits)
    beats, scales, (ev, es) = group_stimulus(rng, rows=rows, n_out=n_out, xbars=xbars, units=units,
                                             cell_bits=cell_bits, batch=1, flip=flip, out_bits=12,
                                             scale_range=1 << 13)
    dut = ShiftAddDequantizer(cell_bits=cell_bits, xbars=xbars, units=units, rows=rows, n_out=n_out,
                              flip=flip, out_bits=12)

    async def write_scales(ctx):
        for xb, s in enumerate(scales):
            await strobe_put(ctx, dut.cfg, pack(dut.cfg.payload.shape(), {"xbar": xb, "scale": s}))

    got = run_streams(dut, beats, len(ev), seed=4, idle=0.1, stall=0.2, before=write_scales)
    assert [g["value"] for g in got] == list(ev)
    assert [g["saturated"] for g in got] == list(es.astype(int))


# -- parameters ---------------------------------------------------------------------------------

def test_bad_parameters():
    with pytest.raises(TypeError, match=r"adc_bits must be an integer from 1 to 16, not 0"):
        ShiftAddAccumulator(adc_bits=0)
    with pytest.raises(ValueError, match=r"cell_bits \(3\) must divide weight_bits \(8\)"):
        ShiftAddAccumulator(cell_bits=3)
    with pytest.raises(ValueError, match=r"acc_width must be an integer from 25 .* not 20"):
        ShiftAddAccumulator(acc_width=20)
    with pytest.raises(ValueError, match=r"encoding 'twos' needs cell_bits 1"):
        ShiftAddAccumulator(encoding="twos")
    with pytest.raises(TypeError, match=r"encoding must be one of 'offset', 'twos', 'none', not 'x'"):
        ShiftAddAccumulator(encoding="x")
    with pytest.raises(TypeError, match=r"flip must be a bool, not 1"):
        ShiftAddAccumulator(flip=1)
    with pytest.raises(TypeError, match=r"scale_bits must be an integer from 2 to 32, not 0"):
        Dequantizer(scale_bits=0)
    with pytest.raises(TypeError, match=r"scale_frac_bits must be an integer from 0 to 47, not 48"):
        Dequantizer(in_width=32, scale_bits=16, scale_frac_bits=48)
    with pytest.raises(TypeError, match=r"rounding must be one of 'half_up', 'half_even', 'floor'"):
        Dequantizer(rounding="nearest")
    with pytest.raises(TypeError, match=r"multiplier must be one of 'csd', 'generic', not 'dsp'"):
        Dequantizer(multiplier="dsp")
    with pytest.raises(TypeError, match=r"out_bits must be an integer from 2 to 64, not 1"):
        Dequantizer(out_bits=1)
    with pytest.raises(TypeError, match=r"pipelined_tree must be a bool, not None"):
        Dequantizer(pipelined_tree=None)
    with pytest.raises(TypeError, match=r"scale_registers must be a bool, not 0"):
        Dequantizer(scale_registers=0)
    with pytest.raises(TypeError, match=r"lanes must be an integer from 1 to 64, not 0"):
        Aggregator(lanes=0)
    with pytest.raises(ValueError, match=r"xbars \(6\) must be a multiple of units \(4\)"):
        ShiftAddDequantizer(xbars=6)
