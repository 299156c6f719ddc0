"""Integer nonlinear kernels (golden/nonlinear.py) against their float64 definitions."""

import math

import numpy as np
import pytest

from golden import nonlinear as nl
from golden.systolic import output_stage


def test_rshift_round_matches_systolic_output_stage():
    x = np.random.default_rng(1).integers(-(1 << 40), 1 << 40, 5000)
    for s in (1, 3, 7, 15):
        assert (nl.rshift_round(x, s) == output_stage(x, acc_width=64, out_shift=s)).all()
    assert (nl.rshift_round(x, -3) == x * 8).all()
    assert (nl.saturate(x, 8) == output_stage(x, acc_width=64, out_width=8)).all()


def test_isqrt_exact():
    rng = np.random.default_rng(2)
    n = np.concatenate([np.arange(0, 5000), rng.integers(0, 1 << 62, 5000),
                        np.array([(1 << 31) ** 2 - 1, (1 << 31) ** 2, (1 << 62) - 1 + (1 << 62)])])
    r = nl.isqrt(n)
    assert all(int(a) == math.isqrt(int(b)) for a, b in zip(r, n))


def test_dyadic():
    for f in (0.7, 1e-5, 3.3, -0.01, 70000.0):
        m, r = nl.dyadic(f, 16)
        assert abs(m) < 1 << 15
        assert abs(m * 2.0 ** -r - f) <= 2.0 ** -r / 2 + 1e-18


def test_i_exp_error():
    for s in (2.0 ** -6, 2.0 ** -10, 0.3e-3):
        c = nl.exp_constants(s)
        q = -np.arange(0, int(12 / s), dtype=np.int64)
        e = nl.i_exp(q, q_ln2=c["q_ln2"], q_b=c["q_b"], q_c=c["q_c"]) * c["out_scale"]
        # I-BERT's polynomial is within 1.9e-3 of exp on (-ln2, 0]; the floors of the constants
        # add O(S) relative error.
        assert np.abs(e - np.exp(q * s)).max() < 2e-3 + 3 * s


def test_i_softmax_error_and_rows():
    rng = np.random.default_rng(3)
    s = 2.0 ** -9
    x = rng.normal(0, 4, (64, 37))
    q = np.floor(x / s + 0.5).astype(np.int64)
    for bits in (8, 12):
        p = nl.i_softmax(q, s, out_bits=bits)
        assert p.min() >= 0 and p.max() <= (1 << (bits - 1)) - 1
        ref = np.exp(q * s - (q * s).max(-1, keepdims=True))
        ref /= ref.sum(-1, keepdims=True)
        # Half an output LSB of rounding plus the i-exp error relative to the row sum (>= 1
        # at the max element): exp error 2e-3 of each term, normalized.
        assert np.abs(p * 2.0 ** -(bits - 1) - ref).max() < 2.0 ** -bits + 5e-3
    # Shift invariance: adding a constant to a row changes nothing (the max is subtracted).
    assert (nl.i_softmax(q + 12345, s) == nl.i_softmax(q, s)).all()


def test_i_gelu_error():
    for s in (2.0 ** -6, 2.0 ** -10):
        q = np.arange(-(1 << 15), 1 << 15, 7, dtype=np.int64)
        out_s = 2.0 ** -10
        g = nl.i_gelu(q, **nl.gelu_constants(s, out_s), out_bits=20) * out_s
        x = q * s
        ref = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
        # I-BERT reports a maximum i-GELU error of 1.8e-2 (its erf polynomial); + output LSB.
        assert np.abs(g - ref).max() < 0.019 + out_s


def test_i_layernorm_error():
    rng = np.random.default_rng(4)
    n = 96
    x = rng.normal(-0.5, 1.5, (40, n))
    q = np.floor(x * 64 + 0.5).astype(np.int64)
    gamma, beta = rng.uniform(0.5, 2, n), rng.normal(0, 0.2, n)
    c = nl.layernorm_constants(gamma, beta, 2.0 ** -8)
    y = nl.i_layernorm(q, c["gamma_q"], c["beta_q"], gamma_frac=c["gamma_frac"], out_scale_log2=-8,
                       out_bits=16) * 2.0 ** -8
    xr = q / 64.0
    ref = (xr - xr.mean(-1, keepdims=True)) / xr.std(-1, keepdims=True) * gamma + beta
    # floor(sqrt) of the variance in input LSBs: relative error <= 1/std (std ~ 96 LSB) on y,
    # times |y| <= 3.5 sigma and gamma <= 2, plus the output LSB.
    assert np.abs(y - ref).max() < 2 * 3.5 * 2 / 90 + 2.0 ** -7


def test_kernel_errors_table():
    e = nl.kernel_errors()
    assert set(e) == {"i_exp", "i_softmax", "i_gelu", "i_layernorm"}
    assert e["i_exp"]["max_abs_err"] < 2.2e-3
    assert e["i_softmax"]["max_abs_err"] < 2.0 ** -7
    assert e["i_gelu"]["max_abs_err"] < 0.019
    assert e["i_layernorm"]["rel_l2"] < 5e-3


def test_bad_parameters():
    with pytest.raises(TypeError, match="scale must be a real number greater than 0"):
        nl.exp_constants(0)
    with pytest.raises(ValueError, match="too coarse"):
        nl.exp_constants(0.5)
    with pytest.raises(TypeError, match="out_bits must be an integer from 2 to 16"):
        nl.i_softmax(np.zeros((2, 2), dtype=np.int64), 2.0 ** -8, out_bits=1)
    with pytest.raises(TypeError, match="q must hold non-positive"):
        nl.i_exp(np.array([1]), q_ln2=100, q_b=1, q_c=1)
    with pytest.raises(TypeError, match="q must be an array of integers"):
        nl.i_softmax(np.zeros((2, 2)), 2.0 ** -8)


@pytest.mark.parametrize("gmax", [1.0, 1.99999, 0.99999, -1.99999, 3.9999999, 0.3])
def test_layernorm_gamma_fits_gamma_bits(gmax):
    from golden.nonlinear import layernorm_constants
    for bits in (8, 16):
        c = layernorm_constants(np.array([gmax, 0.5 * gmax]), np.zeros(2), 0.05, gamma_bits=bits)
        lim = 2 ** (bits - 1)
        assert -lim <= c["gamma_q"].min() and c["gamma_q"].max() <= lim - 1
        # As fine as fits: one more fractional bit would not.
        assert np.abs(np.floor(gmax * 2.0 ** (c["gamma_frac"] + 1) + 0.5)) > lim - 1
