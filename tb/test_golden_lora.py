"""LoRA forward/backward in integers against plain NumPy and the float64 reference
(golden/lora.py), and the fine-tuning experiment's bookkeeping."""

import numpy as np
import pytest

from golden.lora import (check_accumulator, finetune_experiment, lora_backward, lora_forward,
                         lora_grads_float, quantize_pow2)


def _operands(seed=0, n=48, d=40, r=6):
    rng = np.random.default_rng(seed)
    x, a, b = rng.normal(0, 1, (n, d)), rng.normal(0, 0.2, (d, r)), rng.normal(0, 0.3, (r, d))
    g = rng.normal(0, 1e-3, (n, d))
    return x, a, b, g


def test_integer_gemms_are_exact():
    x, a, b, g = _operands()
    (xq, fx), (aq, fa), (bq, fb), (gq, fg) = (quantize_pow2(v) for v in (x, a, b, g))
    d, fd, t, ft = lora_forward(xq, fx, aq, fa, bq, fb)
    acc = xq @ aq
    sh = fx + fa - ft
    assert (t == np.clip((acc + (1 << (sh - 1))) >> sh, -128, 127)).all()
    acc2 = t @ bq
    sh2 = ft + fb - fd
    ref = (acc2 + (1 << (sh2 - 1))) >> sh2 if sh2 else acc2
    assert (d == np.clip(ref, -(1 << 15), (1 << 15) - 1)).all()
    out = lora_backward(xq, fx, t, ft, gq, fg, aq, fa, bq, fb)
    assert (out["dB"] == t.T @ gq).all()
    assert (out["dA"] == xq.T @ out["dT"]).all()
    assert (out["dX"] == out["dT"] @ aq.T).all()
    assert out["f_dB"] == ft + fg and out["f_dA"] == fx + out["f_dT"]


def test_gradients_agree_with_float_reference():
    # Tolerance: each 8-bit operand with a power-of-two per-tensor scale carries a relative RMS
    # error of about (max/rms) / (2**7 sqrt(12)) * 2 (the power-of-two scale wastes up to half
    # the range): ~2% for Gaussian data (max/rms ~ 3.5); a gradient is a product of two to
    # three quantized operands (X, T or dT, G): 5% relative Frobenius error bounds it.
    for seed in range(3):
        x, a, b, g = _operands(seed)
        (xq, fx), (aq, fa), (bq, fb), (gq, fg) = (quantize_pow2(v) for v in (x, a, b, g))
        _, _, t, ft = lora_forward(xq, fx, aq, fa, bq, fb)
        got = lora_backward(xq, fx, t, ft, gq, fg, aq, fa, bq, fb)["float"]
        ref = lora_grads_float(x, a, b, g)
        for k in ("dA", "dB", "dT", "dX"):
            assert np.linalg.norm(got[k] - ref[k]) / np.linalg.norm(ref[k]) < 0.05, k


def test_float_reference_is_the_analytic_gradient():
    x, a, b, g = _operands(1, n=5, d=4, r=2)
    ref = lora_grads_float(x, a, b, g)
    eps = 1e-6

    def loss(a_, b_):
        return float(np.sum((x @ a_ @ b_) * g))    # dL/dY = G
    num = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        da = np.zeros_like(a)
        da[i] = eps
        num[i] = (loss(a + da, b) - loss(a - da, b)) / (2 * eps)
    assert np.allclose(num, ref["dA"], atol=1e-8)
    num = np.zeros_like(b)
    for i in np.ndindex(b.shape):
        db = np.zeros_like(b)
        db[i] = eps
        num[i] = (loss(a, b + db) - loss(a, b - db)) / (2 * eps)
    assert np.allclose(num, ref["dB"], atol=1e-8)


def test_accumulator_width_is_checked():
    check_accumulator(131071, 8, 32)
    with pytest.raises(ValueError, match="K = 131072 products of 8-bit operands can exceed the 32-bit"):
        check_accumulator(131072, 8, 32)


def test_finetune_experiment_small():
    r = finetune_experiment(d=32, r=4, steps=60, batch=16, n_test=64, lr=0.05, modes=("hw_aware", "ideal"))
    # Training on ideal weights fits the teacher's low-rank update: the loss falls.
    curve = r["loss_curve"]["ideal"]
    assert curve[-1][1] < 0.5 * curve[0][1]
    for mode in ("hw_aware", "ideal"):
        # On the chip, the adapters beat W0 alone (they learned the teacher's update).
        assert r["final"][mode]["t0"] < r["no_lora"]["t0"]
        assert set(r["final"][mode]) == {"t0", "1h", "1d", "1mo"}
    w = r["writes"]
    assert w["lora_flow_programs"] == 1 and w["lora_flow_cells"] == w["crossbars"] * 32 * 32
    assert w["all_reram_lora_cells"] == 60 * 2 * 32 * 4 * 4
    assert w["all_reram_full_finetune_cells"] == 60 * w["lora_flow_cells"]


def test_hardware_aware_training_recovers_a_fixed_linear_error():
    # Atleus V.E's noise model (a fixed Gaussian weight error): training through the noisy
    # weights lets a rank-r adapter cancel part of the error; training on ideal weights cannot.
    r = finetune_experiment(d=16, r=8, steps=150, batch=16, n_test=64, lr=0.05, analog="gaussian",
                            weight_sigma=0.1, modes=("hw_aware", "ideal"))
    assert r["final"]["hw_aware"]["t0"] < 0.8 * r["final"]["ideal"]["t0"]


def test_bad_parameters():
    with pytest.raises(TypeError, match="r must be an integer from 1 to 16"):
        finetune_experiment(d=16, r=0, steps=1)
    with pytest.raises(TypeError, match="analog must be one of 'chip', 'gaussian'"):
        finetune_experiment(d=16, r=2, steps=1, analog="optical")
    with pytest.raises(TypeError, match="modes must be one of"):
        finetune_experiment(d=16, r=2, steps=1, modes=("magic",))
    with pytest.raises(TypeError, match="bits must be an integer from 2 to 32"):
        quantize_pow2(np.ones(3), bits=1)


def test_lora_benchmark_writes_its_files(tmp_path):
    import json

    from tb.bench import lora
    assert lora.main(["--ranks", "2", "--steps", "3", "--d", "16", "--out-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "lora.json").read_text())
    assert set(data["experiments"]) == {"chip_r2", "gaussian_r2"}
    assert set(data["experiments"]["chip_r2"]["final"]) == {"hw_aware", "injection", "ideal"}
    assert all(v < 0.05 for v in data["gradients"]["rel_err"].values())
    assert (tmp_path / "lora_curve.png").stat().st_size > 10_000
