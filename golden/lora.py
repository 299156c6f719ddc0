"""LoRA fine-tuning on the chip: integer forward and backward of the adapters, the float64
reference, and a self-contained teacher/student experiment with analog noise and drift.

Arithmetic contract of the digital path (the systolic array, :mod:`golden.systolic`):

- Operands: every GEMM operand is a signed ``bits``-bit integer (8, the array's ``in_width``)
  with a per-tensor power-of-two scale ``2**-frac`` (:func:`quantize_pow2`: round half up,
  saturate). Static tensors (A, B) get their ``frac`` from their largest magnitude when they
  are quantized after each optimizer step; dynamic ones (``X``, the upstream gradient ``G``,
  ``dT``) from theirs, one max-reduction per tensor in the digital path (a data-dependent
  shift: the hardware reads the largest magnitude, then shifts).
- Accumulators: ``acc_width`` = 32 bits. ``|operand| <= 2**(bits-1)``, so a product is at
  most ``2**(2 bits - 2)`` and a K-long dot product is exact (no wrap) while
  ``K * 2**(2 bits - 2) < 2**(acc_width - 1)``: K < 131,072 at 8 bits; larger K is refused.
- Forward (:func:`lora_forward`): ``T = X A`` requantized to ``bits`` (rounding shift and
  saturation, the array's output stage), ``D = T B`` requantized to the output format.
- Backward (:func:`lora_backward`), given ``G = dL/dY`` of the adapted projection:
  ``dB = T^T G`` and ``dT = G B^T`` exact accumulators; ``dT`` requantized to ``bits``;
  ``dA = X^T dT_q`` exact accumulator. The integer accumulators with their fractional bits
  are the spec the RTL matches; :func:`lora_grads_float` is the float64 analytic reference.
  The gradient through the frozen analog weight (``dX = G W0^T``, a transposed crossbar read)
  is not needed by this single-projection step and is not modeled (Atleus does not describe
  it); ``dX`` through the adapter, ``dT A^T``, is returned for a caller that chains layers.
- Update: SGD or Adam on fp64 master copies of A and B (the digital path; Atleus keeps LoRA
  unquantized, V.F), re-quantized for the next forward.

ReRAM writes: the frozen ``W0`` is programmed once (:func:`golden.pim_tile.map_matrix`); LoRA
training writes no cell. The all-ReRAM baseline that keeps A and B on crossbars rewrites them
after every step; :func:`finetune_experiment` counts both the same way (cells).
"""

import math

import numpy as np

from . import systolic
from ._check import as_int_array, check_choice, check_int, check_real
from .noise import NoiseConfig
from .nonlinear import rshift_round, saturate
from .pim_tile import TileConfig, map_matrix
from .transformer import relative_l2, tile_forward

__all__ = ["quantize_pow2", "lora_forward", "lora_backward", "lora_grads_float",
           "check_accumulator", "Adam", "finetune_experiment", "DRIFT_TIMES"]

#: Evaluation times of the drift study (seconds after programming): 1 s (reference), 1 hour,
#: 1 day, 1 month (30 days).
DRIFT_TIMES = {"t0": 1.0, "1h": 3600.0, "1d": 86400.0, "1mo": 30 * 86400.0}


def quantize_pow2(x, bits=8, frac=None):
    """Per-tensor power-of-two quantization: ``(q, frac)`` with ``q = sat(round_half_up(x 2**frac))``.

    ``frac=None`` picks the largest ``frac`` for which ``max|x| 2**frac <= 2**(bits-1) - 1``.
    """
    x = np.asarray(x, dtype=np.float64)
    bits = check_int("bits", bits, 2, 32)
    if frac is None:
        m = float(np.abs(x).max(initial=0.0))
        frac = bits - 1 if m == 0 else math.floor(math.log2(((1 << (bits - 1)) - 1) / m))
    q = saturate(np.floor(x * 2.0 ** frac + 0.5).astype(np.int64), bits)
    return q, int(frac)


def check_accumulator(k, bits, acc_width):
    """Refuse a dot-product length ``k`` that could wrap the accumulator."""
    if k * (1 << (2 * bits - 2)) >= 1 << (acc_width - 1):
        raise ValueError(f"K = {k} products of {bits}-bit operands can exceed the {acc_width}-bit "
                         f"accumulator; K must be below {(1 << (acc_width - 1)) >> (2 * bits - 2)}")


def _gemm(a, b, acc_width, bits):
    check_accumulator(a.shape[1], bits, acc_width)
    return systolic.gemm(a, b, acc_width=acc_width)


def lora_forward(x, fx, a, fa, b, fb, *, out_frac=None, bits=8, out_bits=16, acc_width=32):
    """Integer adapter path ``D = (X A) B``.

    Returns ``(d, fd, t, ft)``: ``d`` with ``fd`` fractional bits (``out_bits`` wide;
    ``out_frac=None``: the finest format that holds the largest value), ``t = X A``
    requantized to ``bits`` with ``ft`` fractional bits (the finest that holds its largest
    value; the array's right shift ``fx + fa - ft`` is non-negative).
    """
    x, a, b = (as_int_array(n, v, ndim=2) for n, v in (("x", x), ("a", a), ("b", b)))
    acc = _gemm(x, a, acc_width, bits)
    ft = fx + fa - max(0, int(np.abs(acc).max(initial=0)).bit_length() - (bits - 1))
    t = systolic.output_stage(acc, acc_width=acc_width, out_shift=fx + fa - ft, out_width=bits)
    acc2 = _gemm(t, b, acc_width, bits)
    if out_frac is None:
        out_frac = ft + fb - max(0, int(np.abs(acc2).max(initial=0)).bit_length() - (out_bits - 1))
    if ft + fb < out_frac:
        raise ValueError(f"out_frac ({out_frac}) is finer than the product's {ft + fb} fractional bits")
    d = systolic.output_stage(acc2, acc_width=acc_width, out_shift=ft + fb - out_frac, out_width=out_bits)
    return d, out_frac, t, ft


def lora_backward(x, fx, t, ft, g, fg, a, fa, b, fb, *, bits=8, acc_width=32):
    """Integer gradients of the adapters (see the module docstring).

    Returns a dict of exact integer accumulators and their fractional bits:
    ``dB``/``f_dB`` (``r x N``), ``dA``/``f_dA`` (``K x r``), ``dT``/``f_dT`` (``dT`` requantized to
    ``bits``), ``dX``/``f_dX`` (``dT_q A^T``, the adapter's share of the input gradient), and
    ``float``: each dequantized.
    """
    x, t, g, a, b = (as_int_array(n, v, ndim=2) for n, v in
                     (("x", x), ("t", t), ("g", g), ("a", a), ("b", b)))
    db = _gemm(t.T, g, acc_width, bits)
    dt_acc = _gemm(g, b.T, acc_width, bits)
    m = int(np.abs(dt_acc).max(initial=0))
    sh = max(0, m.bit_length() - (bits - 1))
    dt = saturate(rshift_round(dt_acc, sh), bits)
    f_dt = fg + fb - sh
    da = _gemm(x.T, dt, acc_width, bits)
    dx = _gemm(dt, a.T, acc_width, bits)
    out = {"dB": db, "f_dB": ft + fg, "dT": dt, "f_dT": f_dt, "dA": da, "f_dA": fx + f_dt,
           "dX": dx, "f_dX": f_dt + fa}
    out["float"] = {k: out[k] * 2.0 ** -out["f_" + k] for k in ("dA", "dB", "dT", "dX")}
    return out


def lora_grads_float(x, a, b, g):
    """Float64 analytic reference: ``T = X A``, ``dB = T^T G``, ``dT = G B^T``, ``dA = X^T dT``,
    ``dX = dT A^T``."""
    x, a, b, g = (np.asarray(v, dtype=np.float64) for v in (x, a, b, g))
    t = x @ a
    dt = g @ b.T
    return {"dA": x.T @ dt, "dB": t.T @ g, "dT": dt, "dX": dt @ a.T}


class Adam:
    """Adam (Kingma and Ba) on float64 master weights: ``lr``, ``betas``, ``eps``."""

    def __init__(self, shapes, *, lr=1e-2, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps
        self.m = {k: np.zeros(s) for k, s in shapes.items()}
        self.v = {k: np.zeros(s) for k, s in shapes.items()}
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        for k in params:
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * grads[k]
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * grads[k] ** 2
            mh = self.m[k] / (1 - self.b1 ** self.t)
            vh = self.v[k] / (1 - self.b2 ** self.t)
            params[k] = params[k] - self.lr * mh / (np.sqrt(vh) + self.eps)


#: The experiment's tile: 32x32 crossbars (the regression chip's), one tile holds a 64x64 W0.
EXPERIMENT_TILE = TileConfig(crossbars=32, rows=32, cols=32, row_blocks=8, outputs=256, group=8)
#: The experiment's non-idealities (choices, not from the papers): MLC programming noise of
#: 0.05 level step (about 16% relative output error of the 64x64 projection at t0: the noise
#: of the four cells of a weight adds with their 1..64 significances, and the ADC rounds each
#: column sum), read noise 0.01 step, ReRAM-like weak drift nu = 0.005 +- 0.003 from t0 = 1 s.
EXPERIMENT_NOISE = NoiseConfig(prog_sigma=0.05, read_sigma=0.01, drift_nu=0.005, drift_nu_sigma=0.003)


def finetune_experiment(*, d=64, r=4, steps=300, batch=32, n_test=256, lr=0.02, delta=0.5,
                        tile=None, noise=None, injection_sigma=None,
                        modes=("hw_aware", "injection", "ideal"), analog="chip", weight_sigma=0.04,
                        drift_compensation=True, bits=8, seed=0, log_every=10):
    """Teacher/student LoRA fine-tuning of one projection with W0 on noisy analog crossbars.

    Teacher: ``y = x (W0 + delta * A_t B_t)`` (rank ``r``), ``W0 ~ N(0, 1/d)``. Student: W0
    programmed once on the tile's crossbars (crossbar-wise 8-bit quantization, ``noise``); only
    A and B train (B starts at 0, LoRA's initialization), by Adam on the MSE with integer
    forward and backward GEMMs (:func:`lora_forward`, :func:`lora_backward`), learning rate
    decaying linearly from ``lr`` to 0. Inputs
    ``x ~ N(0, 1)`` quantized to ``bits``.

    Modes (AHWA-LoRA and Atleus V.E):

    - ``"hw_aware"``: the forward runs through the student's own noisy crossbars (its
      programming noise fixed, fresh read noise each step): hardware in the loop.
    - ``"injection"``: Atleus V.E's noise injection: the forward uses ``W0 + N(0, s)`` in float,
      fresh each step, ``s = injection_sigma * max|W0|`` (Atleus sets sigma from the largest
      weight; default: ``e rms(W0) / max|W0|`` with ``e`` the chip's relative output error on
      a calibration batch, so the injected noise causes the chip's error), then deployed on
      the chip.
    - ``"ideal"``: trained on the ideal float W0, deployed on the chip.

    ``analog="gaussian"`` replaces the crossbars by Atleus V.E's own noise model: the student's
    analog W0 is ``W0 + N(0, weight_sigma max|W0|)``, one fixed draw, in float (no ADC, no
    drift: every drift time reports the same error).

    Each mode's student chip is the same (same seed): the comparison isolates the training.
    Evaluation on a fixed test set: relative L2 error of the chip's output against the
    teacher's, at each of :data:`DRIFT_TIMES`, with (``drift_compensation``) a global drift
    compensation: the analog output is scaled digitally by ``||y(t0)|| / ||y(t)||`` measured on
    a fixed calibration batch through the frozen path (AIHWKit's global drift compensation).

    Returns
    -------
    dict
        ``loss_curve`` per mode (relative error on the training batch every ``log_every``
        steps), ``final`` per mode per drift time, ``no_lora`` (W0 alone on the chip), ``writes``.
    """
    d = check_int("d", d, 2)
    r = check_int("r", r, 1, d)
    steps = check_int("steps", steps, 1)
    batch = check_int("batch", batch, 1)
    check_real("lr", lr, 0, lo_open=True)
    for m in modes:
        check_choice("modes", m, ("hw_aware", "injection", "ideal"))
    tile = EXPERIMENT_TILE if tile is None else tile
    noise = EXPERIMENT_NOISE if noise is None else noise
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, 1 / math.sqrt(d), (d, d))
    dw = delta * rng.normal(0, 1 / math.sqrt(d), (d, r)) @ rng.normal(0, 1 / math.sqrt(r), (r, d))
    w_teacher = w0 + dw
    fx = bits - 4                                   # x ~ N(0, 1): |x| < 8 at 8 bits
    x_test = rng.normal(0, 1, (n_test, d))
    xq_test, _ = quantize_pow2(x_test, bits, fx)
    xr_test = xq_test * 2.0 ** -fx
    y_test = xr_test @ w_teacher
    x_cal = quantize_pow2(rng.normal(0, 1, (64, d)), bits, fx)[0]

    check_choice("analog", analog, ("chip", "gaussian"))
    mapping = map_matrix(w0, tile, noise=noise, seed=seed + 1)
    ofb = mapping.out_frac_bits
    n_xbars = len(mapping.crossbar_bits)
    cells = n_xbars * tile.rows * tile.cols
    check_real("weight_sigma", weight_sigma, 0)
    w_analog = w0 + np.random.default_rng(seed + 3).normal(0, weight_sigma * np.abs(w0).max(), w0.shape)

    def chip(xq, step, time=None):
        if analog == "gaussian":
            return xq * 2.0 ** -fx @ w_analog
        return tile_forward(mapping, xq, step=step, time=time) * 2.0 ** -(ofb + fx)

    # The chip's relative output error on the calibration batch sets the injection sigma:
    # Gaussian weight noise of std e * rms(W0) gives a relative output error of about e.
    y0_cal = chip(x_cal, 2 * 10 ** 9)
    chip_err = relative_l2(y0_cal, x_cal * 2.0 ** -fx @ w0)
    if injection_sigma is None:
        injection_sigma = float(chip_err * np.sqrt(np.mean(w0 ** 2)) / np.abs(w0).max())
    # How much of the chip's error a linear correction of any rank can remove: the best
    # full-rank correction E (least squares on a fit batch), applied to the test set.
    x_fit = quantize_pow2(rng.normal(0, 1, (8 * d, d)), bits, fx)[0]
    xr_fit = x_fit * 2.0 ** -fx
    e_fit, *_ = np.linalg.lstsq(xr_fit, chip(x_fit, 4 * 10 ** 9) - xr_fit @ w0, rcond=None)
    y_chip_test = chip(xq_test, 5 * 10 ** 9)
    linear_err = relative_l2(y_chip_test - xr_test @ e_fit, xr_test @ w0)
    gdc = {}
    for name, t in DRIFT_TIMES.items():
        if drift_compensation and t != DRIFT_TIMES["t0"]:
            gdc[name] = np.linalg.norm(y0_cal) / np.linalg.norm(chip(x_cal, 2 * 10 ** 9, time=t))
        else:
            gdc[name] = 1.0

    def evaluate(params, time_name):
        t = DRIFT_TIMES[time_name]
        ya = chip(xq_test, 3 * 10 ** 9, time=None if time_name == "t0" else t) * gdc[time_name]
        if params is None:
            return relative_l2(ya, y_test)
        aq, fa = quantize_pow2(params["A"], bits)
        bq, fb = quantize_pow2(params["B"], bits)
        dq, fd, _, _ = lora_forward(xq_test, fx, aq, fa, bq, fb, bits=bits)
        return relative_l2(ya + dq * 2.0 ** -fd, y_test)

    result = {"params": {"d": d, "r": r, "steps": steps, "batch": batch, "lr": lr, "delta": delta,
                         "bits": bits, "noise": {k: getattr(noise, k) for k in
                                                 ("prog_sigma", "read_sigma", "drift_nu", "drift_nu_sigma")},
                         "injection_sigma_rel_max": injection_sigma,
                         "chip_rel_output_error_t0": chip_err,
                         "chip_error_after_best_linear_correction": linear_err,
                         "drift_compensation": drift_compensation, "analog": analog,
                         "weight_sigma": weight_sigma if analog == "gaussian" else None},
              "no_lora": {k: evaluate(None, k) for k in DRIFT_TIMES},
              "loss_curve": {}, "final": {}}
    train_rng = np.random.default_rng(seed + 7)
    xs = [quantize_pow2(train_rng.normal(0, 1, (batch, d)), bits, fx)[0] for _ in range(steps)]
    for mode in modes:
        prng = np.random.default_rng(seed + 11)
        params = {"A": prng.normal(0, 1 / math.sqrt(d), (d, r)), "B": np.zeros((r, d))}
        opt = Adam({k: v.shape for k, v in params.items()}, lr=lr)
        curve = []
        nrng = np.random.default_rng(seed + 13)
        for s in range(steps):
            xq = xs[s]
            xr = xq * 2.0 ** -fx
            yt = xr @ w_teacher
            if mode == "hw_aware":
                y0 = chip(xq, s * batch)
            elif mode == "injection":
                y0 = xr @ (w0 + nrng.normal(0, injection_sigma * np.abs(w0).max(), w0.shape))
            else:
                y0 = xr @ w0
            aq, fa = quantize_pow2(params["A"], bits)
            bq, fb = quantize_pow2(params["B"], bits)
            dq, fd, tq, ft = lora_forward(xq, fx, aq, fa, bq, fb, bits=bits)
            y = y0 + dq * 2.0 ** -fd
            err = y - yt
            if s % log_every == 0 or s == steps - 1:
                curve.append((s, relative_l2(y, yt)))
            g = 2.0 * err / err.size
            gq, fg = quantize_pow2(g, bits)
            grads = lora_backward(xq, fx, tq, ft, gq, fg, aq, fa, bq, fb, bits=bits)["float"]
            opt.lr = lr * (1 - s / steps)          # linear decay to 0
            opt.step(params, {"A": grads["dA"], "B": grads["dB"]})
        result["loss_curve"][mode] = curve
        result["final"][mode] = {k: evaluate(params, k) for k in DRIFT_TIMES}
    result["writes"] = {
        "lora_flow_cells": cells, "lora_flow_programs": 1, "crossbars": n_xbars,
        "all_reram_lora_cells": steps * 2 * d * r * (tile.weight_bits // 2),
        "all_reram_full_finetune_cells": steps * cells,
    }
    return result
