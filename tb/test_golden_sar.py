"""Tests of golden/sar.py: the bit-true SAR ADC against an independent ideal quantizer."""

import math

import numpy as np
import pytest

from golden.sar import compare, ideal_quantize, sar_convert, sar_trace_from_codes


def ref_quantize(values, bits, lsb=1.0):
    """Round half up and clip, one value at a time with Python floats (independent reference)."""
    top = 2 ** bits - 1
    return np.array([min(max(math.floor(v / lsb + 0.5), 0), top) for v in np.ravel(values)],
                    dtype=np.int64).reshape(np.shape(values))


def sweep(bits):
    """Every code centre, both sides of every threshold (+-1e-9) and out-of-range values."""
    c = np.arange(2 ** bits, dtype=np.float64)
    pts = [c, c - 0.5, c - 0.5 - 1e-9, c + 0.5 - 1e-9, c + 0.25, c - 0.25,
           np.array([-3.0, -0.5 - 1e-9, 2.0 ** bits - 0.5, 2.0 ** bits + 7])]
    return np.concatenate(pts)


@pytest.mark.parametrize("bits", [6, 7, 8])
def test_exhaustive_sweep_equals_ideal_quantizer(bits):
    a = sweep(bits)
    expected = ref_quantize(a, bits)
    assert np.array_equal(ideal_quantize(a, bits), expected)
    codes, trials, decisions = sar_convert(a, bits, trace=True)
    assert codes.dtype == np.int64
    assert np.array_equal(codes, expected)
    assert trials.shape == decisions.shape == (a.size, bits)
    # Decision of step k is bit k of the code, MSB step first.
    k = np.arange(bits - 1, -1, -1)
    assert np.array_equal(decisions, ((expected[:, None] >> k) & 1).astype(bool))
    t2, d2 = sar_trace_from_codes(codes, bits)
    assert np.array_equal(t2, trials) and np.array_equal(d2, decisions)


@pytest.mark.parametrize("bits", [6, 7, 8])
def test_integer_inputs_every_code(bits):
    a = np.arange(-4, 2 ** bits + 4)
    codes, trials, _ = sar_convert(a, bits, trace=True)
    assert np.array_equal(codes, np.clip(a, 0, 2 ** bits - 1))
    assert np.array_equal(trials[:, 0], np.full(a.size, 1 << (bits - 1)))


def test_compare_drives_a_testbench_loop():
    """A testbench answering an RTL controller calls compare() once per trial code."""
    bits = 7
    a = sweep(bits)
    code = np.zeros(a.size, dtype=np.int64)
    for k in range(bits - 1, -1, -1):
        trial = code | (1 << k)
        code = np.where(compare(a, trial), trial, code)
    assert np.array_equal(code, ref_quantize(a, bits))


def test_strict_comparator_rounds_ties_down():
    a = np.array([0.5, 1.5, 2.5, 2.6])
    assert list(sar_convert(a, 4, comparator=">")) == [0, 1, 2, 3]
    assert list(sar_convert(a, 4, comparator=">=")) == [1, 2, 3, 3]


def test_lsb_scaling():
    a = np.arange(0, 40) * 0.75
    assert np.array_equal(sar_convert(a, 5, lsb=2.5), ref_quantize(a, 5, lsb=2.5))


def test_offset_shifts_thresholds():
    a = np.linspace(-2, 20, 441)
    assert np.array_equal(sar_convert(a, 4, offset=0.25), ref_quantize(a + 0.25, 4))


def test_per_conversion_resolution():
    a = np.arange(0, 130, dtype=np.float64)
    bits = np.where(np.arange(a.size) % 2 == 0, 6, 7)
    codes, trials, decisions = sar_convert(a, bits, trace=True)
    expected = np.where(bits == 6, ref_quantize(a, 6), ref_quantize(a, 7))
    assert np.array_equal(codes, expected)
    assert np.all(trials[bits == 6, 0] == -1) and not decisions[bits == 6, 0].any()
    assert np.all(trials[bits == 7, 0] == 64)


def test_ideal_cap_weights_equal_ideal():
    bits = 8
    w = 2.0 ** np.arange(bits - 1, -1, -1)
    a = sweep(bits)
    assert np.array_equal(sar_convert(a, bits, cap_weights=w), ref_quantize(a, bits))


def test_cap_mismatch_large_msb_gives_missing_codes():
    """MSB capacitor 2 LSB too large: the MSB trial threshold moves to 129.5, so inputs from
    127.5 to 129.4 resolve with MSB 0 and all lower bits 1 (code 127)."""
    bits = 8
    w = 2.0 ** np.arange(bits - 1, -1, -1)
    w[0] += 2
    a = np.array([127.0, 127.6, 128.0, 129.0, 129.4, 129.5, 130.0])
    codes = sar_convert(a, bits, cap_weights=w)
    assert list(codes) == [127, 127, 127, 127, 127, 128, 128]
    # compare() agrees with the SAR loop on the MSB trial.
    assert list(compare(a, np.full(a.size, 128), cap_weights=w)) == [False] * 5 + [True] * 2


def test_comparator_noise_statistics():
    """1-bit conversion at 0.5 + d with noise sigma: P(code 1) = Phi(d / sigma)."""
    rng = np.random.default_rng(1234)
    n, d, sigma = 200_000, 0.1, 0.2
    codes = sar_convert(np.full(n, 0.5 + d), 1, noise_sigma=sigma, rng=rng)
    p = 0.5 * (1 + math.erf(d / sigma / math.sqrt(2)))
    assert abs(codes.mean() - p) < 0.005          # 5 standard errors
    again = sar_convert(np.full(n, 0.5 + d), 1, noise_sigma=sigma, rng=np.random.default_rng(1234))
    assert np.array_equal(codes, again)


def test_predrawn_noise_equals_offset():
    a = np.linspace(0, 16, 200)
    noise = np.full((a.size, 4), 0.3)
    assert np.array_equal(sar_convert(a, 4, noise=noise), sar_convert(a, 4, offset=0.3))


def test_errors():
    with pytest.raises(TypeError, match=r"^bits must be an integer from 1 to 16, not 20$"):
        sar_convert([1.0], 20)
    with pytest.raises(TypeError, match=r"^bits must be an integer from 1 to 16, not 0$"):
        ideal_quantize([1.0], 0)
    with pytest.raises(TypeError, match=r"^comparator must be one of '>=', '>', not '=>'$"):
        sar_convert([1.0], 4, comparator="=>")
    with pytest.raises(TypeError, match=r"^lsb must be a real number greater than 0, not 0.0$"):
        sar_convert([1.0], 4, lsb=0.0)
    with pytest.raises(TypeError, match=r"^rng must be a numpy.random.Generator when noise_sigma > 0"):
        sar_convert([1.0], 4, noise_sigma=0.1)
    with pytest.raises(ValueError, match=r"^cap_weights must have a last axis of length bits \(4\)"):
        sar_convert([1.0], 4, cap_weights=[8, 4, 2])
    with pytest.raises(TypeError, match=r"^trial_code must be an array of integers, not float64 values$"):
        compare([1.0], [1.5])
