"""Tests of the non-idealities: statistics at a fixed seed, keyed streams, batch-split invariance,
and the first-order IR-drop model against an exact nodal solve."""

import math

import numpy as np
import pytest

from golden.crossbar import Crossbar, CrossbarConfig
from golden.noise import (NoiseConfig, ber_from_sigma, generator, ir_drop_conductance,
                          sigma_from_ber)

RNG = np.random.default_rng(77)
W = RNG.integers(-128, 128, (128, 128))
X = RNG.integers(-128, 128, (64, 128))


def xbar(seed=0, **noise):
    adc = "sar" if any(k.startswith(("comp", "cap")) for k in noise) else "ideal"
    return Crossbar(CrossbarConfig(noise=NoiseConfig(**noise), seed=seed, adc=adc)).program(W)


def test_generators_are_keyed():
    a = generator(1, 0, "read", 5).standard_normal(4)
    assert np.array_equal(a, generator(1, 0, "read", 5).standard_normal(4))
    for other in [generator(2, 0, "read", 5), generator(1, 1, "read", 5),
                  generator(1, 0, "program", 5), generator(1, 0, "read", 6)]:
        assert not np.array_equal(a, other.standard_normal(4))


def test_default_is_ideal():
    assert NoiseConfig().ideal
    assert np.array_equal(xbar().mvm(X), X @ W)


# Tolerances: N = 128 * 512 = 65536 cells; the standard error of a sample sigma is
# sigma / sqrt(2N) = 0.28 %, of a mean sigma / sqrt(N) = 0.4 % of sigma. We allow 2 % on sigmas
# and 0.02 sigma on means (about 5 standard errors).

def test_programming_noise_absolute():
    xb = xbar(prog_sigma=0.1)
    lv = xb.levels
    d = (xb.conductances - lv)[lv >= 1]           # level 0 is clipped at G = 0
    assert abs(d.mean()) < 0.02 * 0.1
    assert d.std() == pytest.approx(0.1, rel=0.02)


def test_programming_noise_proportional():
    xb = xbar(prog_sigma=0.05, prog_mode="proportional")
    lv = xb.levels
    d = ((xb.conductances - lv) / np.where(lv > 0, lv, 1))[lv >= 1]
    assert d.std() == pytest.approx(0.05, rel=0.02)
    assert np.all(xb.conductances[lv == 0] == 0)


def test_ber_sigma_roundtrip_and_rate():
    for levels in (2, 4):
        for ber in (1e-3, 1e-2, 0.05):
            assert ber_from_sigma(sigma_from_ber(ber, levels), levels) == pytest.approx(ber, rel=1e-9)
    xb = xbar(prog_ber=0.02)
    lv = xb.levels
    read = np.clip(np.rint(xb.conductances), 0, 3)     # read-back thresholds at k + 0.5
    rate = np.mean(read != lv)
    # Expected rate for the actual level mix: outer levels err on one side only.
    s = sigma_from_ber(0.02, 4)
    q = 0.5 * math.erfc(0.5 / s / math.sqrt(2))
    expected = np.mean(np.where((lv == 0) | (lv == 3), q, 2 * q))
    assert abs(rate - expected) < 0.0035       # 5 standard errors of a rate near 0.02
    assert abs(expected - 0.02) < 0.01         # the level mix is near uniform


def test_stuck_cells_fixed_per_crossbar():
    xb = xbar(stuck_on=0.01, stuck_off=0.02)
    g = xb.conductances
    lv = xb.levels
    on = (g == 3) & (lv != 3)
    off = (g == 0) & (lv != 0)
    # Visible faults are those whose level differs; expected rates 0.01 * P(lv != 3), etc.
    assert on.mean() == pytest.approx(0.01 * np.mean(lv != 3), rel=0.15)
    assert off.mean() == pytest.approx(0.02 * np.mean(lv != 0), rel=0.1)
    xb2 = Crossbar(xb.config).program(np.zeros_like(W))
    stuck_on_again = xb2.conductances == 3
    assert np.array_equal(stuck_on_again, xb._stuck == 1)


def test_drift_power_law():
    xb = xbar(drift_nu=0.05)
    g0 = xb.effective_conductances(None)
    g = xb.effective_conductances(100.0)
    assert np.allclose(g, g0 * 100.0 ** -0.05)
    assert np.array_equal(xb.effective_conductances(0.5), g0)     # t < t0: no drift
    xs = xbar(drift_nu=0.05, drift_nu_sigma=0.01)
    nu = -np.log(xs.effective_conductances(1000.0)[xs.levels > 0] / xs.conductances[xs.levels > 0]) / np.log(1000)
    assert nu.mean() == pytest.approx(0.05, abs=0.0005) and nu.std() == pytest.approx(0.01, rel=0.03)


def test_read_noise_statistics():
    sigma = 0.2
    xb = xbar(read_sigma=sigma)
    _, tr = xb.mvm(X, trace=True)
    ideal = Crossbar(CrossbarConfig()).program(W).mvm(X, trace=True)[1].column_sums
    pop = tr.planes.sum(-1)[:, :, None, None, None]
    z = (tr.column_sums - ideal) / (sigma * np.sqrt(np.maximum(pop, 1)))
    z = z[np.broadcast_to(pop, z.shape) > 0]
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, rel=0.01)


def test_comparator_offset_and_noise():
    xb = xbar(comp_offset_sigma=0.3)
    assert xb._adc_offset.std() == pytest.approx(0.3, rel=0.25)      # 512 ADCs
    y = xb.mvm(X)
    assert not np.array_equal(y, X @ W)
    xn = xbar(comp_noise_sigma=0.5)
    _, tr = xn.mvm(X[:16], trace=True)
    err = tr.codes - tr.column_sums
    # A SAR with noise on every trial: code errors are mostly 0 or +-1 LSB.
    assert 0.2 < np.mean(err != 0) < 0.8 and np.abs(err.mean()) < 0.05


def test_cap_mismatch_changes_codes_only_slightly():
    xb = xbar(cap_mismatch_sigma=0.02)
    _, tr = xb.mvm(X[:8], trace=True)
    err = tr.codes - tr.column_sums
    assert np.any(err != 0) and np.abs(err).max() <= 8


ALL_NOISE = dict(prog_sigma=0.05, read_sigma=0.1, stuck_on=0.002, stuck_off=0.002, drift_nu=0.02,
                 drift_nu_sigma=0.005, ir_wl=1e-5, ir_bl=1e-5, comp_offset_sigma=0.2,
                 comp_noise_sigma=0.2, cap_mismatch_sigma=0.01)


def test_batch_split_and_call_order_invariance():
    y_all = xbar(**ALL_NOISE).mvm(X, time=10.0)
    xb = xbar(**ALL_NOISE)
    parts = [xb.mvm(X[:5], time=10.0), xb.mvm(X[5:40], time=10.0), xb.mvm(X[40:], time=10.0)]
    assert np.array_equal(np.concatenate(parts), y_all)
    xr = xbar(**ALL_NOISE)
    late = xr.mvm(X[40:], step=40, time=10.0)
    early = xr.mvm(X[:40], step=0, time=10.0)
    assert np.array_equal(np.concatenate([early, late]), y_all)
    assert not np.array_equal(xbar(seed=1, **ALL_NOISE).mvm(X, time=10.0), y_all)
    assert not np.array_equal(y_all, X @ W)


def nodal_column_currents(g, x, r_wl, r_bl):
    """Exact DC solve of a crossbar with resistive word and bit lines (independent reference).

    Word line r: driver x_r -- r_wl -- node (r, 0) -- r_wl -- node (r, 1) ...; bit line c:
    node (0, c) -- r_bl -- node (1, c) ... node (R-1, c) -- r_bl -- ground (ADC input).
    """
    rows, cols = g.shape
    n = 2 * rows * cols

    def wl(r, c):
        return r * cols + c

    def bl(r, c):
        return rows * cols + r * cols + c

    a = np.zeros((n, n))
    b = np.zeros(n)

    def link(i, j, cond):
        a[i, i] += cond
        if j is None:
            return
        a[j, j] += cond
        a[i, j] -= cond
        a[j, i] -= cond

    for r in range(rows):
        a[wl(r, 0), wl(r, 0)] += 1 / r_wl
        b[wl(r, 0)] += x[r] / r_wl
        for c in range(cols):
            if c + 1 < cols:
                link(wl(r, c), wl(r, c + 1), 1 / r_wl)
            link(wl(r, c), bl(r, c), g[r, c])
            link(bl(r, c), bl(r + 1, c) if r + 1 < rows else None, 1 / r_bl)
    v = np.linalg.solve(a, b)
    return np.array([v[bl(rows - 1, c)] / r_bl for c in range(cols)])


def test_ir_drop_first_order_matches_nodal_solve():
    rng = np.random.default_rng(9)
    g = rng.integers(0, 4, (12, 10)).astype(float)
    x = rng.integers(0, 2, 12).astype(float)
    for r in (1e-5, 1e-4):
        exact = nodal_column_currents(g, x, r, r)
        ideal = x @ g
        model = x @ ir_drop_conductance(g, r_wl=r, r_bl=r)
        drop, resid = ideal - exact, model - exact
        assert np.all(drop > 0)
        # First order: the residual is O(r**2), far below the drop itself.
        assert np.abs(resid).max() < 0.05 * np.abs(drop).max()
    assert np.array_equal(ir_drop_conductance(g), g)


def test_errors():
    with pytest.raises(TypeError, match=r"^prog_sigma must be a real number of at least 0, not -0.1$"):
        NoiseConfig(prog_sigma=-0.1)
    with pytest.raises(TypeError, match=r"^prog_mode must be one of 'absolute', 'proportional', not 'rel'$"):
        NoiseConfig(prog_mode="rel")
    with pytest.raises(TypeError, match=r"^stuck_on must be a real number from 0 to 1, not 2.0$"):
        NoiseConfig(stuck_on=2.0)
    with pytest.raises(ValueError, match=r"^stuck_on \+ stuck_off must be at most 1"):
        NoiseConfig(stuck_on=0.6, stuck_off=0.6)
    with pytest.raises(ValueError, match=r"^prog_ber and prog_sigma cannot both be set$"):
        NoiseConfig(prog_ber=0.01, prog_sigma=0.1)
    with pytest.raises(TypeError, match=r"^source must be one of 'program', 'read'"):
        generator(0, 0, "thermal", 0)
