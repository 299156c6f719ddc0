"""Tests of golden/crossbar.py: exact X @ W, each signal-path step, ADC sharing, traces, errors."""

import itertools

import numpy as np
import pytest

from golden.crossbar import (Crossbar, CrossbarConfig, adc_schedule, bit_planes, column_sums,
                             flip_columns, input_planes, load_trace, shift_add, shift_add_planes,
                             slice_weights)
from golden.noise import NoiseConfig
from golden.sar import ideal_quantize

RNG = np.random.default_rng(2024)


def int8(shape):
    a = RNG.integers(-128, 128, shape)
    a.flat[0], a.flat[-1] = -128, 127
    return a


def ref_column_sums(planes, cells, lo, hi):
    """Explicit loops over rows: sum_r planes[b, p, r] * cells[s, r, c] for rows lo..hi-1."""
    b, p, _ = planes.shape
    s, _, c = cells.shape
    out = np.zeros((b, p, s, c), dtype=np.int64)
    for r in range(lo, hi):
        out += planes[:, :, r, None, None] * cells[None, None, :, r, :]
    return out


@pytest.mark.parametrize("encoding,cell_bits,flip,rows_active", list(itertools.product(
    ["twos", "offset", "differential"], [1, 2], [False, True], [None, 48])))
def test_lossless_exact(encoding, cell_bits, flip, rows_active):
    cfg = CrossbarConfig(rows=128, cols=8 * 24 // cell_bits, cell_bits=cell_bits, encoding=encoding,
                         flip=flip, rows_active=rows_active)
    w = int8((128, cfg.n_out))
    x = int8((9, 128))
    x[1] = -128
    x[2] = 127
    y = Crossbar(cfg).program(w).mvm(x)
    assert y.dtype == np.int64
    assert np.array_equal(y, x @ w)


@pytest.mark.parametrize("weights", ["min", "max"])
def test_extreme_weights_exact(weights):
    cfg = CrossbarConfig(rows=128, cols=64)
    w = np.full((128, cfg.n_out), -128 if weights == "min" else 127)
    x = np.stack([np.full(128, -128), np.full(128, 127), np.full(128, -1)])
    assert np.array_equal(Crossbar(cfg).program(w).mvm(x), x @ w)


@pytest.mark.parametrize("input_encoding,dac_bits,base", [
    ("twos", 2, 3), ("twos", 3, 3), ("twos", 8, 3), ("balanced", 1, 3), ("balanced", 2, 5),
    ("balanced", 3, 7)])
@pytest.mark.parametrize("encoding,flip", [("twos", False), ("offset", True), ("differential", True)])
def test_input_encodings_exact(input_encoding, dac_bits, base, encoding, flip):
    cfg = CrossbarConfig(rows=64, cols=64, input_encoding=input_encoding, dac_bits=dac_bits,
                         input_base=base, rows_active=40, encoding=encoding, flip=flip)
    w, x = int8((64, 16)), int8((5, 64))
    assert np.array_equal(Crossbar(cfg).program(w).mvm(x), x @ w)
    assert np.array_equal(Crossbar(cfg, adc="sar").program(w).mvm(x), x @ w)


def test_bit_and_input_planes_reconstruct():
    x = np.arange(-128, 128)[None, :]
    p = bit_planes(x, 8)
    assert p.shape == (1, 8, 256) and set(np.unique(p)) <= {0, 1}
    w = 1 << np.arange(8)
    w[-1] = -w[-1]
    assert np.array_equal(np.einsum("bpr,p->br", p, w), x)
    for enc, dac, base in [("twos", 3, 3), ("balanced", 1, 3), ("balanced", 3, 9)]:
        planes, pw = input_planes(x, input_bits=8, dac_bits=dac, input_encoding=enc, input_base=base)
        assert planes.min() >= 0 and planes.max() <= 2 ** dac - 1
        assert np.array_equal(np.einsum("bpr,p->br", planes, pw), x)


@pytest.mark.parametrize("encoding", ["twos", "offset", "differential"])
@pytest.mark.parametrize("cell_bits", [1, 2, 4])
def test_slice_weights_reconstruct(encoding, cell_bits):
    w = np.arange(-128, 128).reshape(16, 16)
    sl = slice_weights(w, 8, cell_bits, encoding)
    sw = (1 << (np.arange(8 // cell_bits) * cell_bits))[:, None, None]
    assert sl.min() >= 0 and sl.max() <= 2 ** cell_bits - 1
    if encoding == "differential":
        assert sl.shape == (2, 8 // cell_bits, 16, 16)
        assert np.array_equal((sl[0] * sw).sum(0) - (sl[1] * sw).sum(0), w)
    else:
        assert sl.shape == (8 // cell_bits, 16, 16)
        u = (sl * sw).sum(0)
        assert np.array_equal(u - 256 * (w < 0) if encoding == "twos" else u - 128, w)


def test_column_sums_against_loops():
    planes = RNG.integers(0, 2, (3, 8, 100))
    cells = RNG.integers(0, 4, (4, 100, 20))
    assert np.array_equal(column_sums(planes, cells), ref_column_sums(planes, cells, 0, 100))
    g = column_sums(planes, cells, rows_active=32)
    assert g.shape == (3, 8, 4, 20, 4)
    for i, lo in enumerate(range(0, 100, 32)):
        assert np.array_equal(g[..., i], ref_column_sums(planes, cells, lo, min(100, lo + 32)))


def test_shift_add_orders_and_pipeline():
    x, w = int8((6, 32)), int8((32, 10))
    planes = bit_planes(x, 8)
    sums = column_sums(planes, slice_weights(w, 8, 2, "offset"))     # (6, 8, 4, 10)
    lsb = shift_add(sums, input_bits=8, cell_bits=2)
    msb = shift_add(sums, input_bits=8, cell_bits=2, order="msb_first")
    assert np.array_equal(lsb, msb)
    assert np.array_equal(lsb - 128 * x.sum(1, keepdims=True), x @ w)
    pw = 1 << np.arange(8)
    pw[-1] = -pw[-1]
    assert np.array_equal(shift_add_planes(sums, pw, cell_bits=2), lsb)
    u = shift_add(sums, input_bits=8, cell_bits=2, signed_inputs=False)
    assert np.array_equal(u, (x & 255) @ (w + 128))


def test_flip_never_saturates_8bit_adc():
    """ISAAC flip: a 128-row, 2-bit int8 array never exceeds 192 <= 255 per column sample."""
    cfg = CrossbarConfig(rows=128, cols=512, adc_bits=8, flip=True, encoding="offset")
    w = int8((128, 128))
    w[:, :8] = 127            # offset level 255: all cells at level 3 -> flipped
    w[:, 8:16] = -128         # all cells at level 0
    x = np.concatenate([int8((8, 128)), np.full((2, 128), -1), np.full((1, 128), -128)])
    xb = Crossbar(cfg).program(w)
    y, tr = xb.mvm(x, trace=True)
    assert tr.column_sums.max() <= 192 and tr.codes.max() <= 192
    assert np.array_equal(y, x @ w)
    assert xb.flip_flags[0, :32].all()
    stored, flags = flip_columns(slice_weights(w, 8, 2, "offset")[0], 2)
    assert np.all(stored.sum(0) <= 192) and flags[:8].all()
    # Without the flip the same 8-bit ADC clips and the result is wrong.
    y2 = Crossbar(CrossbarConfig(rows=128, cols=512, adc_bits=8, encoding="offset")).program(w).mvm(x)
    assert not np.array_equal(y2, x @ w)


@pytest.mark.parametrize("adc_bits", [5, 7])
def test_clipping_adc_matches_independent_pipeline(adc_bits):
    """A lossy ADC: outputs equal ideal_quantize of the loop-computed sums, shift-added."""
    cfg = CrossbarConfig(rows=64, cols=32, adc_bits=adc_bits, rows_active=40)
    w, x = int8((64, 8)), int8((4, 64))
    cells = slice_weights(w, 8, 2, "twos")
    planes = bit_planes(x, 8)
    codes = sum(ideal_quantize(ref_column_sums(planes, cells, lo, hi), adc_bits)
                for lo, hi in [(0, 40), (40, 64)])
    expected = shift_add(codes, input_bits=8, cell_bits=2) - 256 * (x @ (w < 0))
    y_ideal = Crossbar(cfg).program(w).mvm(x)
    y_sar, tr = Crossbar(cfg, adc="sar").program(w).mvm(x, trace=True)
    assert np.array_equal(y_ideal, expected) and np.array_equal(y_sar, expected)
    k = np.arange(adc_bits - 1, -1, -1)
    assert np.array_equal(tr.decisions, ((tr.codes[..., None] >> k) & 1).astype(bool))
    assert tr.logical("codes").shape == (4, 8, 1, 2, 4, 8)


def test_adc_bits_per_call_switch():
    """HyFlexPIM's 6/7-bit switch: the per-call resolution equals a config at that resolution."""
    w, x = int8((64, 16)), int8((3, 64))
    xb = Crossbar(CrossbarConfig(rows=64, cols=64, adc="sar")).program(w)
    for b in (6, 7):
        ref = Crossbar(CrossbarConfig(rows=64, cols=64, adc_bits=b)).program(w).mvm(x)
        assert np.array_equal(xb.mvm(x, adc_bits=b), ref)


def test_adc_schedule():
    adc, slot, seq = adc_schedule(10, 4, "sequential")
    assert adc.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert seq.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, -1, -1]]
    adc, slot, seq = adc_schedule(8, 4, "interleaved")
    assert adc.tolist() == [0, 1, 0, 1, 0, 1, 0, 1] and slot.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert seq.tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    for order in ("sequential", "interleaved"):
        _, _, seq = adc_schedule(512, 8, order)
        assert sorted(seq[seq >= 0].tolist()) == list(range(512))


def test_trace_layout_and_npz_roundtrip(tmp_path):
    cfg = CrossbarConfig(rows=32, cols=16, adc="sar", adc_bits=6, rows_active=20, adc_share=4)
    w, x = int8((32, 4)), int8((3, 32))
    y, tr = Crossbar(cfg).program(w).mvm(x, trace=True)
    assert tr.column_sums.shape == (3, 8, 1, 2, 16) and tr.trials.shape == (3, 8, 1, 2, 16, 6)
    lg = tr.logical("column_sums")
    assert lg.shape == (3, 8, 1, 2, 4, 4)
    assert np.array_equal(lg[..., 1, 2], tr.column_sums[..., 2 * 4 + 1])
    assert tr.logical("trials").shape == (3, 8, 1, 2, 4, 4, 6)
    assert tr.adc_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    tr.save(tmp_path / "t.npz")
    back = load_trace(tmp_path / "t.npz")
    for k in ("column_sums", "codes", "trials", "decisions", "outputs", "planes"):
        assert np.array_equal(getattr(back, k), getattr(tr, k))
    assert np.array_equal(back.outputs, y)


def test_single_vector():
    w, x = int8((16, 4)), int8((16,))
    y = Crossbar(CrossbarConfig(rows=16, cols=16)).program(w).mvm(x)
    assert y.shape == (4,) and np.array_equal(y, x @ w)


def test_errors():
    cfg = CrossbarConfig(rows=16, cols=16)
    xb = Crossbar(cfg)
    with pytest.raises(ValueError, match=r"^program\(\) must be called before mvm\(\)$"):
        xb.mvm(np.zeros((1, 16), dtype=int))
    with pytest.raises(TypeError, match=r"^weights must be an array of integers, not float64 values$"):
        xb.program(np.zeros((16, 4)))
    with pytest.raises(TypeError, match=r"^weights must hold integers from -128 to 127, not 128$"):
        xb.program(np.full((16, 4), 128))
    with pytest.raises(ValueError, match=r"^weights must have shape \(rows, n_out\) = \(16, 4\), not \(16, 5\)$"):
        xb.program(np.zeros((16, 5), dtype=int))
    xb.program(np.zeros((16, 4), dtype=int))
    with pytest.raises(ValueError, match=r"^inputs must have shape \(batch, rows=16\), not \(2, 15\)$"):
        xb.mvm(np.zeros((2, 15), dtype=int))
    with pytest.raises(TypeError, match=r"^inputs must hold integers from -128 to 127, not -129$"):
        xb.mvm(np.full((1, 16), -129))
    with pytest.raises(ValueError, match=r"^cell_bits \(3\) must divide weight_bits \(8\)$"):
        CrossbarConfig(cell_bits=3)
    with pytest.raises(TypeError, match=r"^adc_bits must be an integer from 1 to 16, not 20$"):
        CrossbarConfig(adc_bits=20)
    with pytest.raises(TypeError, match=r"^adc_bits must be an integer from 1 to 16, not 0$"):
        xb.mvm(np.zeros((1, 16), dtype=int), adc_bits=0)
    with pytest.raises(TypeError, match=r"^rows_active must be an integer from 1 to 16, not 17$"):
        CrossbarConfig(rows=16, cols=16, rows_active=17)
    with pytest.raises(TypeError, match=r"^encoding must be one of 'twos', 'offset', 'differential', not 'sign'$"):
        CrossbarConfig(encoding="sign")
    with pytest.raises(ValueError, match=r"^cols \(10\) must be a multiple of weight_bits // cell_bits \(4\)$"):
        CrossbarConfig(cols=10)
    with pytest.raises(ValueError, match=r"^input_base 7 needs digit magnitudes up to 3, more than dac_bits 1"):
        CrossbarConfig(input_encoding="balanced", input_base=7)
    with pytest.raises(TypeError, match=r"^input_base must be an odd integer from 3 to 255, not 4$"):
        CrossbarConfig(input_encoding="balanced", input_base=4, dac_bits=2)
    with pytest.raises(ValueError, match=r"^comparator and capacitor-DAC noise need adc='sar'"):
        from golden.noise import NoiseConfig
        CrossbarConfig(noise=NoiseConfig(comp_noise_sigma=0.1))


@pytest.mark.parametrize("noisy", [False, True])
def test_analog_front_end_matches_mvm(noisy):
    """column_values + adc_codes reproduce mvm's column sums and codes line by line, and the
    per-trial comparator run MSB first reproduces the codes (noise, offsets, capacitors)."""
    nz = (NoiseConfig(prog_sigma=0.05, read_sigma=0.05, comp_offset_sigma=0.2,
                      comp_noise_sigma=0.3, cap_mismatch_sigma=0.02) if noisy else NoiseConfig())
    cfg = CrossbarConfig(rows=16, cols=16, cell_bits=2, weight_bits=8, input_bits=4, adc_bits=6,
                         encoding="offset", adc="sar", adc_share=8, noise=nz, seed=3, xbar_id=1)
    rng = np.random.default_rng(8)
    xb = Crossbar(cfg).program(rng.integers(-128, 128, (16, 4)))
    x = rng.integers(-8, 8, (3, 16))
    _, tr = xb.mvm(x, step=5, trace=True)
    planes = bit_planes(x, 4)                                  # (batch, P, rows)
    for b in range(3):
        for p in range(4):
            v = xb.column_values(planes[b, p], step=5 + b, plane=p)
            assert v.dtype == (np.float64 if noisy else np.int64)
            # One line through BLAS against the batch: equal up to the summation order.
            np.testing.assert_allclose(v[0], tr.column_sums[b, p], rtol=1e-12)
            codes = xb.adc_codes(v, step=5 + b, plane=p, bits=6)
            np.testing.assert_array_equal(codes[0], tr.codes[b, p])
            sar = np.zeros(v.shape[1:], dtype=np.int64)
            for k in range(5, -1, -1):
                keep = xb.compare(v[0], sar | (1 << k), step=5 + b, plane=p, bits=6)
                sar = np.where(keep, sar | (1 << k), sar)
            np.testing.assert_array_equal(sar, tr.codes[b, p])
    with pytest.raises(TypeError, match=r"plane from 0 to 3"):
        xb.column_values(planes[0, 0], step=0, plane=4)
