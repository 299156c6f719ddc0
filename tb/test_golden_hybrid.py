"""Tests of golden/hybrid.py: multi-crossbar mapping with dequantization, SVD split, LoRA."""

import numpy as np
import pytest

from golden.crossbar import Crossbar, CrossbarConfig
from golden.hybrid import HybridMatrix, MappedMatrix, lora_delta, lora_forward, svd_split
from golden.noise import NoiseConfig

RNG = np.random.default_rng(11)


def test_svd_split():
    w = RNG.standard_normal((40, 30))
    w_slc, w_mlc, idx = svd_split(w, slc_rate=0.2)
    assert np.allclose(w_slc + w_mlc, w)
    assert idx.tolist() == [0, 1, 2, 3, 4, 5] and np.linalg.matrix_rank(w_slc) == 6
    s = np.linalg.svd(w, compute_uv=False)
    assert np.allclose(np.linalg.svd(w_mlc, compute_uv=False)[:24], s[6:])
    # Caller-supplied importance: the weakest component goes to SLC.
    imp = np.arange(30.0)          # increasing: the last (weakest) component scores highest
    w1, _, idx1 = svd_split(w, slc_rate=1 / 30, importance=imp)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    assert idx1.tolist() == [29] and np.allclose(w1, s[29] * np.outer(u[:, 29], vt[29]))
    assert np.array_equal(svd_split(w, slc_rate=0.0)[0], np.zeros_like(w))


def test_mapped_matrix_exact_integer_pipeline():
    """Noise-free, lossless crossbars: outputs equal an independent per-tile integer computation."""
    cfg = CrossbarConfig(rows=64, cols=64)                 # 16 weight columns per crossbar
    w = RNG.standard_normal((150, 40))
    x = RNG.integers(-128, 128, (5, 150))
    m = MappedMatrix(w, config=cfg, scale_frac_bits=12, out_frac_bits=8)
    assert m.scales.shape == (3, 3) and m.n_crossbars == 9
    y, sat = m.mvm(x)
    ref = np.zeros((5, 40), dtype=object)
    for i in range(3):
        for j in range(3):
            xi = x[:, i * 64:(i + 1) * 64].astype(object)
            wij = m.w_int[i * 64:(i + 1) * 64, j * 16:(j + 1) * 16].astype(object)
            acc = xi @ wij
            s = int(m.scale_fixed[i, j])
            ref[:, j * 16:(j + 1) * 16] += (acc * s + (1 << 11)) >> 12
    assert y.tolist() == ref.tolist() and not sat.any()
    # And close to the float product (quantization error bound).
    assert np.abs(y / 256 - x @ w).max() < 0.02 * np.abs(x @ w).max()


def test_hybrid_matrix_noise_per_cell_type():
    w = RNG.standard_normal((128, 64))
    x = RNG.integers(-128, 128, (4, 128))
    slc = CrossbarConfig(cell_bits=1, cols=1024)
    mlc = CrossbarConfig(cell_bits=2, cols=512)
    h = HybridMatrix(w, slc_rate=0.25, slc_config=slc, mlc_config=mlc)
    y, _ = h.mvm(x)
    assert np.abs(y / 256 - x @ w).max() < 0.02 * np.abs(x @ w).max()
    ys, _ = h.slc.mvm(x)
    ym, _ = h.mlc.mvm(x)
    assert np.array_equal(y, ys + ym)
    noisy_mlc = CrossbarConfig(cell_bits=2, cols=512, noise=NoiseConfig(prog_sigma=0.3))
    hn = HybridMatrix(w, slc_rate=0.25, slc_config=slc, mlc_config=noisy_mlc)
    assert np.array_equal(hn.slc.mvm(x)[0], ys)          # SLC part unaffected
    assert not np.array_equal(hn.mlc.mvm(x)[0], ym)


def test_lora_exact():
    x = RNG.integers(-128, 128, (6, 128))
    a = RNG.integers(-128, 128, (128, 8))
    b = RNG.integers(-128, 128, (8, 32))
    d = lora_delta(x, a, b)
    ref = (x.astype(object) @ a.astype(object)) @ b.astype(object)
    assert d.tolist() == ref.tolist()
    d2 = lora_delta(x, a, b, mid_shift=4, out_shift=3, rounding="floor")
    assert d2.tolist() == ((((x.astype(object) @ a) >> 4) @ b) >> 3).tolist()
    w = RNG.integers(-128, 128, (128, 32))
    xb = Crossbar(CrossbarConfig(rows=128, cols=128)).program(w)
    y = lora_forward(xb.mvm(x), x, a, b)
    assert y.tolist() == (x.astype(object) @ w + ref).tolist()
    with pytest.raises(ValueError, match=r"do not chain as x @ a @ b$"):
        lora_delta(x, b, a)
    with pytest.raises(TypeError, match=r"^slc_rate must be a real number from 0 to 1, not 1.5$"):
        svd_split(np.ones((2, 2)), slc_rate=1.5)
