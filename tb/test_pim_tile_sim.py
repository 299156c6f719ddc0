# amaranth: UnusedElaboratable=no
"""PimTile in the Amaranth simulator (tiny sizes) and the host-side mapper's contract.

- The RTL end to end against :meth:`golden.pim_tile.TileMapping.golden`, with the same analog
  crossbars as the Verilator regression (:class:`tb.env.pim_tile.AnalogArray`), answering the
  trials each cycle from the codes it computed at each sample.
- The golden tile model against an independent composition of the golden blocks
  (:class:`golden.hybrid.MappedMatrix`) and against float.
- The cycle model, and every configuration error of the mapper and of the RTL constructor.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.hybrid import MappedMatrix
from golden.crossbar import CrossbarConfig
from golden.noise import NoiseConfig
from golden.pim_tile import TileConfig, analytic_bound, map_matrix, mvm_cycles
from hdl.pim_tile import PimTile, cfg_layout, input_layout, output_layout
from tb.packing import pack, unpack
from tb.env.pim_tile import AnalogArray
from tb.sim_streams import stream_get, stream_put

TINY = dict(crossbars=2, rows=4, cols=8, input_bits=3, weight_bits=8, adc_bits=4, resolutions=(3, 4),
            adcs_per_xbar=1, group=1, row_blocks=2, outputs=4, scale_bits=16, scale_frac_bits=16,
            out_bits=10)


def _sim_run(tile, mapping, batches):
    """Run ``batches`` (a list of input arrays) through the RTL; returns the output words."""
    dut = PimTile(**TINY)
    analog = AnalogArray(tile, mapping)
    lay_i, lay_c = input_layout(tile.rows, tile.input_bits), cfg_layout(tile.crossbars)
    lay_o = output_layout(tile.outputs, tile.out_width)
    n_words = sum(b.shape[0] for b in batches) * mapping.n_outputs
    got = []

    async def analog_side(ctx):
        for _ in range(20000):
            word = analog.cycle(sample=ctx.get(dut.sample), drive=lambda: ctx.get(dut.drive.as_value()),
                                trial_en=ctx.get(dut.trial_en), trial=lambda: ctx.get(dut.trial.as_value()),
                                column=lambda: ctx.get(dut.column.as_value()))
            ctx.set(dut.decision, word)
            await ctx.tick()
        raise AssertionError(f"timeout: {len(got)} of {n_words} outputs after 20000 cycles")

    async def producer(ctx):
        for w in mapping.config_writes():
            await stream_put(ctx, dut.cfg, pack(lay_c, w))
        for k, x in enumerate(batches):
            xp = mapping.pad_inputs(x)
            for v in range(xp.shape[0]):
                for b in range(mapping.n_blocks):
                    await stream_put(ctx, dut.i, pack(lay_i, xp[v, b * tile.rows:(b + 1) * tile.rows]),
                                     idle=(v + b) % 3)

    async def consumer(ctx):
        for n in range(n_words):
            word = await stream_get(ctx, dut.o, stall=n % 2)
            got.append(unpack(lay_o, word.as_value().value))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(analog_side, background=True)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got, analog


def _expected(mapping, batches):
    words, step = [], 0
    for x in batches:
        y, sat = mapping.golden(x, step=step)
        step += x.shape[0]
        for v in range(y.shape[0]):
            for i in range(y.shape[1]):
                words.append({"value": int(y[v, i]), "saturated": int(sat[v, i]), "index": i,
                              "last": int(i == y.shape[1] - 1)})
    return words


@pytest.mark.parametrize("kind", ["mlc", "slc_noisy"])
def test_tile_amaranth_sim(kind):
    tile = TileConfig(**TINY)
    rng = np.random.default_rng(3)
    if kind == "mlc":
        m = map_matrix(rng.normal(0, 1, (8, 2)), tile, cell_bits=2, adc_bits=4)
    else:
        m = map_matrix(rng.normal(0, 1, (4, 2)), tile, cell_bits=1, adc_bits=3,
                       noise=NoiseConfig(prog_sigma=0.1, comp_noise_sigma=0.3), seed=2)
    assert len(m.xbars) == 2
    batches = [rng.integers(-4, 4, (2, m.n_inputs)), rng.integers(-4, 4, (1, m.n_inputs))]
    batches[0][0] = -4
    got, analog = _sim_run(tile, m, batches)
    assert got == _expected(m, batches)
    assert analog.trials > 0


def test_analog_array_checks_the_rtl():
    """The analog side refuses a row drive that is not the expected plane and a trial that is
    not the SAR rule's, naming what it got."""
    tile = TileConfig(**TINY)
    rng = np.random.default_rng(7)
    m = map_matrix(rng.normal(0, 1, (4, 2)), tile, cell_bits=2, adc_bits=4)
    analog = AnalogArray(tile, m)
    x = m.pad_inputs(np.array([[3, -4, 1, 0]]))
    analog.expect(x)
    good = sum(int((v >> 0) & 1) << r for r, v in enumerate(x[0, :tile.rows]))
    with pytest.raises(AssertionError, match=r"crossbar 0: row drive of vector 0 plane 0 is"):
        analog.sample([0], good ^ 1)
    analog.restart()
    analog.expect(x)
    codes = analog.sample([0], good)
    c = int(codes[0, 0])
    assert analog.decide(0, 0, 0b1000) == (c >> 3) & 1
    wrong = ((c >> 3) & 1 ^ 1) << 3 | 0b100            # the MSB decision flipped
    with pytest.raises(AssertionError, match=r"ADC 0 \(crossbar 0\) column 0: trial .* is not the SAR"):
        analog.decide(0, 0, wrong)


def test_register_map_views():
    """The RTL's register layouts are views of the one register map in golden.pim_tile."""
    from golden.pim_tile import CfgField as GoldenField
    from golden.pim_tile import cfg_write_fields, mode_word
    from hdl.pim_tile import CfgField, mode_layout
    assert {f.name: f.value for f in CfgField} == {f.name: int(f) for f in GoldenField}
    for enable, cell_bits, bits in [(1, 1, 7), (0, 2, 8), (1, 2, 6)]:
        assert unpack(mode_layout(8), mode_word(enable, cell_bits, bits)) == {
            "enable": enable, "slc": int(cell_bits == 1), "adc_bits": bits}
    assert cfg_layout(96).size == sum(cfg_write_fields(96).values())
    w = {"xbar": 5, "field": GoldenField.SCALE, "value": 0xBEEF}
    assert unpack(cfg_layout(96), pack(cfg_layout(96), w)) == dict(w, field=3)


# -- golden model -----------------------------------------------------------------------------

def test_golden_tile_matches_mapped_matrix():
    """The tile model equals golden.hybrid.MappedMatrix built from the same golden blocks."""
    tile = TileConfig(crossbars=8, rows=16, cols=16, input_bits=6, row_blocks=2, outputs=16, group=2)
    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.1, (32, 8))
    m = map_matrix(w, tile, cell_bits=2, adc_bits=8)
    cfg = CrossbarConfig(rows=16, cols=16, cell_bits=2, weight_bits=8, input_bits=6, adc_bits=8,
                         encoding="offset")
    ref = MappedMatrix(w, config=cfg, scale_bits=tile.scale_bits, scale_frac_bits=tile.scale_frac_bits,
                       out_frac_bits=m.out_frac_bits, out_bits=tile.out_bits)
    x = rng.integers(-32, 32, (5, 32))
    y, sat = m.golden(x)
    y_ref, sat_ref = ref.mvm(x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sat, sat_ref)


def test_golden_tile_error_vs_float():
    tile = TileConfig(crossbars=8, rows=16, cols=16, input_bits=6, row_blocks=2, outputs=16, group=2)
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.1, (32, 8))
    x = rng.integers(-32, 32, (16, 32))
    ref = x @ w

    def err(m):
        y, _ = m.golden(x)
        return np.linalg.norm(m.to_float(y) - ref) / np.linalg.norm(ref)

    ideal = err(map_matrix(w, tile, cell_bits=2, adc_bits=8))
    noisy = err(map_matrix(w, tile, cell_bits=2, adc_bits=8, noise=NoiseConfig(prog_sigma=0.2)))
    assert ideal < 0.02
    assert noisy > 2 * ideal


def test_cycle_model():
    tile = TileConfig()
    assert analytic_bound(tile) == 8 * (1 + 128 * 8)
    assert mvm_cycles(tile, {0: 8, 1: 8}) == analytic_bound(tile)
    assert mvm_cycles(tile, {0: 7, 1: 8}) == analytic_bound(tile)          # lockstep: slowest
    # 8 crossbars at 6 bits in one group: the shift-and-add (one code per cycle) bounds it.
    assert mvm_cycles(tile, {x: 6 for x in range(8)}) == 8 * 8 * 128
    assert mvm_cycles(TileConfig(adcs_per_xbar=2), {0: 8}) == 8 * (1 + 64 * 8)


# -- configuration errors -----------------------------------------------------------------

def test_mapper_errors():
    tile = TileConfig(crossbars=4, rows=16, cols=16, row_blocks=2, outputs=16, group=2)
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=r"w has 48 rows, more than the tile's input buffer holds "
                                         r"\(row_blocks \* rows = 32\)"):
        map_matrix(rng.normal(size=(48, 4)), tile)
    with pytest.raises(ValueError, match=r"w has 17 columns, more than the tile's outputs \(16\)"):
        map_matrix(rng.normal(size=(16, 17)), tile)
    with pytest.raises(ValueError, match=r"the matrix needs 8 crossbars, more than the tile's 4"):
        map_matrix(rng.normal(size=(32, 16)), tile)
    with pytest.raises(ValueError, match=r"out of the 16-bit scale register range .* lower out_frac_bits"):
        map_matrix(rng.normal(size=(16, 4)), tile, out_frac_bits=20)
    with pytest.raises(ValueError, match=r"out of the 16-bit scale register range"):
        map_matrix(rng.integers(-5, 5, (16, 4)), tile, scale=4.0, out_frac_bits=0)
    with pytest.raises(TypeError, match=r"adc_bits must be one of the tile's resolutions \(6, 7, 8\), not 5"):
        map_matrix(rng.normal(size=(16, 4)), tile, adc_bits=5)
    with pytest.raises(TypeError, match=r"w must hold integers from -128 to 127, not 200"):
        map_matrix(np.full((16, 4), 200), tile)
    with pytest.raises(ValueError, match=r"slc_rate needs float weights"):
        map_matrix(np.ones((16, 4), dtype=np.int64), tile, slc_rate=0.1)
    with pytest.raises(TypeError, match=r"slc_rate must be a real number from 0 to 1, not 1.5"):
        map_matrix(rng.normal(size=(16, 4)), tile, slc_rate=1.5)
    with pytest.raises(TypeError, match=r"cell_bits must be 1 \(SLC\) or 2 \(MLC\), not 3"):
        map_matrix(rng.normal(size=(16, 4)), tile, cell_bits=3)
    with pytest.raises(ValueError, match=r"w must be a non-empty 2-D array"):
        map_matrix(np.zeros(4), tile)
    with pytest.raises(TypeError, match=r"noise must be a NoiseConfig"):
        map_matrix(rng.normal(size=(16, 4)), tile, noise=0.1)


def test_tile_parameter_errors():
    with pytest.raises(TypeError, match=r"crossbars must be an integer from 1 to 256, not 0"):
        PimTile(0)
    with pytest.raises(ValueError, match=r"group \(8\) must divide crossbars \(12\)"):
        PimTile(12)
    with pytest.raises(ValueError, match=r"cols must be a power of two, not 96"):
        PimTile(8, cols=96)
    with pytest.raises(ValueError, match=r"the widest of resolutions \(6, 7\) must equal adc_bits \(8\)"):
        PimTile(8, resolutions=(6, 7))
    with pytest.raises(ValueError, match=r"cols // adcs_per_xbar \(128 // 32\) must be a whole multiple"):
        PimTile(8, adcs_per_xbar=32)
    with pytest.raises(TypeError, match=r"rounding must be one of"):
        PimTile(8, rounding="nearest")
    with pytest.raises(TypeError, match=r"weight_bits must be one of 2, 4, 8, 16, not 6"):
        TileConfig(weight_bits=6)
    t = PimTile(8, rows=16, cols=16, row_blocks=2, outputs=16)
    assert (t.crossbars, t.rows, t.group, t.out_width) == (8, 16, 8, 27)
