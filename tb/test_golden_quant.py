"""Tests of golden/quant.py against exact rational arithmetic (fractions.Fraction)."""

import math
from fractions import Fraction

import numpy as np
import pytest

from golden.quant import (aggregate, dequantize, quantize_crossbarwise, round_shift, saturate,
                          scale_to_fixed)


def ref_round(num, den, rounding):
    q = Fraction(num, den)
    if rounding == "floor":
        return math.floor(q)
    if rounding == "half_up":
        return math.floor(q + Fraction(1, 2))
    return round(q)    # Fraction rounds half to even


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "floor"])
@pytest.mark.parametrize("shift", [1, 2, 5])
def test_round_shift_exhaustive(rounding, shift):
    x = np.arange(-300, 301)
    expected = [ref_round(int(v), 2 ** shift, rounding) for v in x]
    assert round_shift(x, shift, rounding).tolist() == expected
    # Python-int object arrays beyond int64.
    big = x.astype(object) * (1 << 70)
    assert round_shift(big, shift + 70, rounding).tolist() == expected


def test_round_shift_zero_is_identity():
    x = np.array([-7, 0, 9])
    assert round_shift(x, 0).tolist() == [-7, 0, 9]


def test_saturate():
    y, sat = saturate(np.array([-200, -128, 0, 127, 128]), 8)
    assert y.tolist() == [-128, -128, 0, 127, 127]
    assert sat.tolist() == [True, False, False, False, True]


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "floor"])
def test_dequantize_matches_fraction_reference(rounding):
    rng = np.random.default_rng(3)
    acc = rng.integers(-2 ** 22, 2 ** 22, 2000)
    scale = rng.integers(-2 ** 15, 2 ** 15, 2000)
    out, sat = dequantize(acc, scale, scale_frac_bits=12, out_bits=16, rounding=rounding)
    ref = [ref_round(int(a) * int(s), 1 << 12, rounding) for a, s in zip(acc, scale)]
    ref_sat = [min(max(r, -2 ** 15), 2 ** 15 - 1) for r in ref]
    assert out.tolist() == ref_sat
    assert sat.tolist() == [r != s for r, s in zip(ref, ref_sat)]


def test_dequantize_broadcasts_one_scale_per_crossbar():
    acc = np.arange(-6, 6).reshape(3, 4)          # 3 crossbars x 4 columns
    scale = np.array([[1], [2], [3]]) << 4
    out, _ = dequantize(acc, scale, scale_frac_bits=4, out_bits=32)
    assert np.array_equal(out, acc * np.array([[1], [2], [3]]))


def test_dequantize_wide_products_exact():
    out, sat = dequantize(np.array([2 ** 50]), np.array([2 ** 20 + 1]), scale_frac_bits=10, out_bits=64)
    assert out.tolist() == [(2 ** 50 * (2 ** 20 + 1)) >> 10] and not sat[0]


def test_aggregate():
    p = np.arange(24).reshape(4, 6) - 10
    assert np.array_equal(aggregate(p), p.sum(axis=0))
    assert aggregate(np.array([[2 ** 62], [2 ** 62]])).tolist() == [2 ** 63]


def test_quantize_crossbarwise():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((300, 200)) * np.linspace(0.1, 3, 200)
    wi, s = quantize_crossbarwise(w, weight_bits=8, rows=128, cols_per_xbar=64)
    assert s.shape == (3, 4) and wi.dtype == np.int64
    full = np.repeat(np.repeat(s, 128, 0), 64, 1)[:300, :200]
    assert np.all(np.abs(wi * full - w) <= full / 2 + 1e-12)
    assert np.abs(wi).max() == 127
    for i in range(3):
        for j in range(4):
            tile = w[i * 128:(i + 1) * 128, j * 64:(j + 1) * 64]
            assert s[i, j] == pytest.approx(np.abs(tile).max() / 127)


def test_scale_to_fixed():
    q = scale_to_fixed(np.array([0.5, 0.1, 1.0]), scale_bits=16, scale_frac_bits=12)
    assert q.tolist() == [2048, 410, 4096]
    with pytest.raises(ValueError, match=r"^scale_float times 2\*\*scale_frac_bits must fit in 8 signed bits"):
        scale_to_fixed(np.array([1.0]), scale_bits=8, scale_frac_bits=8)


def test_errors():
    with pytest.raises(TypeError, match=r"^rounding must be one of 'half_up', 'half_even', 'floor', not 'up'$"):
        round_shift(np.array([1]), 1, "up")
    with pytest.raises(TypeError, match=r"^shift must be an integer from 0 to 256, not -1$"):
        round_shift(np.array([1]), -1)
    with pytest.raises(TypeError, match=r"^x must be an array of integers, not float64 values$"):
        round_shift(np.array([1.5]), 1)
    with pytest.raises(TypeError, match=r"^bits must be an integer from 1 to 64, not 0$"):
        saturate(np.array([1]), 0)
    with pytest.raises(TypeError, match=r"^weight_bits must be an integer from 2 to 16, not 1$"):
        quantize_crossbarwise(np.ones((2, 2)), weight_bits=1, rows=2, cols_per_xbar=2)
    with pytest.raises(ValueError, match=r"^w_float must be a 2-D array, not 1-D"):
        quantize_crossbarwise(np.ones(2), weight_bits=8, rows=2, cols_per_xbar=2)


INT64_EXTREMES = [-2 ** 63, -2 ** 63 + 1, -2 ** 62, -3, -1, 0, 1, 5, 2 ** 62, 2 ** 63 - 2, 2 ** 63 - 1]


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "floor"])
@pytest.mark.parametrize("out_bits", [16, 63, 64])
@pytest.mark.parametrize("frac", [0, 1, 20, 62])
def test_dequantize_exact_at_int64_extremes(rounding, out_bits, frac):
    scales = [-2 ** 15, -3, -1, 0, 1, 3, 2 ** 15 - 1, -2 ** 62, 2 ** 62 - 1]
    acc = np.array([a for a in INT64_EXTREMES for _ in scales], dtype=np.int64)
    scale = np.array([s for _ in INT64_EXTREMES for s in scales], dtype=np.int64)
    out, sat = dequantize(acc, scale, scale_frac_bits=frac, out_bits=out_bits, rounding=rounding)
    lo, hi = -2 ** (out_bits - 1), 2 ** (out_bits - 1) - 1
    ref = [ref_round(int(a) * int(s), 1 << frac, rounding) for a, s in zip(acc, scale)]
    assert out.dtype == np.int64
    assert out.tolist() == [min(max(r, lo), hi) for r in ref]
    assert sat.tolist() == [not lo <= r <= hi for r in ref]


def test_dequantize_int64_extreme_cases_from_the_readme():
    assert dequantize(-2 ** 63, 3, scale_frac_bits=20, out_bits=64)[0] == -26388279066624
    assert dequantize(-2 ** 63, -1, scale_frac_bits=20, out_bits=64)[0] == 2 ** 43
    out, sat = dequantize([-2 ** 63, 5], [2, 2], scale_frac_bits=1, out_bits=64)
    assert out.tolist() == [-2 ** 63, 5] and not sat.any()


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "floor"])
@pytest.mark.parametrize("shift", [1, 2, 62, 63, 64])
def test_round_shift_exact_at_int64_extremes(rounding, shift):
    x = np.array(INT64_EXTREMES, dtype=np.int64)
    out = round_shift(x, shift, rounding)
    assert out.dtype == np.int64
    assert out.tolist() == [ref_round(int(v), 2 ** shift, rounding) for v in x]


def test_aggregate_exact_beyond_int64():
    assert aggregate([[-2 ** 63], [-1]]).tolist() == [-2 ** 63 - 1]
    assert aggregate([[2 ** 63 - 1], [1]]).tolist() == [2 ** 63]
    assert aggregate([[-2 ** 63], [2 ** 63 - 1]]).tolist() == [-1]
    rng = np.random.default_rng(5)
    p = rng.choice(np.array(INT64_EXTREMES, dtype=np.int64), size=(7, 50))
    assert aggregate(p).tolist() == [sum(int(v) for v in col) for col in p.T]
    small = aggregate(np.array([[1, -2], [3, 4]]))
    assert small.dtype == np.int64 and small.tolist() == [4, 2]
