"""Integer-only nonlinear kernels of the transformer layer (I-BERT style), the spec of the
chip's ``NonlinearUnit``.

Every kernel is a pure NumPy function of int64 arrays and integer constants. The constants are
derived once from the real scale of the input (:func:`exp_constants`, :func:`gelu_constants`,
:func:`dyadic`), in float64 on the host, and handed to the hardware as registers: the kernels
themselves use only integer add, multiply, arithmetic shift, compare, one integer division per
row (the reciprocal) and an integer square root, with every rounding stated below, so an RTL
unit can match them bit for bit.

Rounding primitives (shared with :func:`golden.systolic.output_stage`):

- :func:`rshift_round`: ``(x + 2**(s-1)) >> s`` (round half up, ties toward +inf); ``s <= 0``
  is an exact left shift by ``-s``.
- :func:`saturate`: clip to the signed range of ``bits`` bits.
- :func:`isqrt`: ``floor(sqrt(n))`` exactly (integer Newton iteration from above, I-BERT's
  i-sqrt, run to convergence).

Kernels (I-BERT, Kim et al., ICML 2021, with their constants):

- :func:`i_exp`: ``exp(x)`` for ``x <= 0`` as ``2**-z * L(p)``, ``x = p - z ln2``, with the
  second-order polynomial ``L(p) = 0.3585 (p + 1.353)**2 + 0.344`` on ``(-ln2, 0]``.
- :func:`i_softmax`: row max subtracted, :func:`i_exp`, row sum, one reciprocal
  ``floor(2**M / sum)`` per row, a rounding shift to ``out_bits - 1`` fractional bits and
  saturation (1.0 saturates to ``1 - 2**-(out_bits-1)``).
- :func:`i_gelu`: ``x/2 (1 + erf(x/sqrt2))`` with I-BERT's i-erf polynomial
  ``sign(x) [-0.2888 (min(|x|, 1.769) - 1.769)**2 + 1]``, then a dyadic requantization.
- :func:`i_layernorm`: mean by a rounding division, variance by a flooring division, i-sqrt,
  one reciprocal per row, a dyadic multiply by ``gamma`` and an add of ``beta``. No epsilon
  (I-BERT's choice; an all-equal row gives ``std = 0``, which is clamped to 1).

Errors against float64 over each kernel's input range are measured by :func:`kernel_errors`
(printed by ``python -m tb.bench.system``, bounded in ``tb/test_golden_nonlinear.py``).
"""

import math

import numpy as np

from ._check import as_int_array, check_int, check_real

__all__ = ["rshift_round", "saturate", "isqrt", "dyadic", "requantize",
           "EXP_A", "EXP_B", "EXP_C", "ERF_A", "ERF_B",
           "exp_constants", "i_exp", "i_softmax", "gelu_constants", "i_gelu", "i_layernorm",
           "layernorm_constants", "kernel_errors"]

EXP_A, EXP_B, EXP_C = 0.3585, 1.353, 0.344      # I-BERT i-exp polynomial
ERF_A, ERF_B = -0.2888, -1.769                  # I-BERT i-erf polynomial


def rshift_round(x, s):
    """``round(x / 2**s)`` with ties toward +inf: ``(x + 2**(s-1)) >> s``; ``s <= 0``: ``x << -s``.

    ``s`` may be an integer array broadcastable against ``x`` (shifts above 62 give the sign:
    0 or -1 after rounding, as the hardware's saturated shifter does).
    """
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    if s.ndim == 0 and int(s) <= 0:
        return x << np.int64(-int(s))
    sp = np.clip(s, 1, 62)
    r = (x + (np.int64(1) << (sp - 1))) >> sp
    r = np.where(s > 62, np.where(x < 0, np.int64(-1), np.int64(0)), r)
    return np.where(s <= 0, x << np.clip(-s, 0, 62), r).astype(np.int64)


def saturate(x, bits):
    """Clip integers to the signed range of ``bits`` bits (``bits == 0``: unchanged)."""
    x = np.asarray(x, dtype=np.int64)
    if not bits:
        return x
    return np.clip(x, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def isqrt(n):
    """``floor(sqrt(n))`` of non-negative int64 integers, exactly (vectorized Newton from above).

    ``x0 = 2**ceil(bits(n) / 2) >= sqrt(n)``, then ``x <- (x + n // x) >> 1`` while it
    decreases (I-BERT's i-sqrt). The result equals :func:`math.isqrt` for every ``n``.
    """
    n = np.asarray(n, dtype=np.int64)
    if np.any(n < 0):
        raise TypeError("n must hold non-negative integers")
    bits = np.zeros(n.shape, dtype=np.int64)
    t = n.copy()
    while np.any(t > 0):
        bits += (t > 0)
        t >>= 1
    x = np.where(n > 0, np.int64(1) << ((bits + 1) // 2), 0).astype(np.int64)
    while True:
        safe = np.maximum(x, 1)
        y = np.where(x > 0, (x + n // safe) >> 1, 0)
        if not np.any(y < x):
            return x
        x = np.minimum(x, y)


def dyadic(factor, bits=16):
    """A real factor as ``m / 2**r`` with ``|m| < 2**bits`` (``m = round_half_up(factor * 2**r)``),
    ``r`` as large as fits. Returns ``(m, r)``; ``r`` may be negative for a factor >= 2**bits."""
    factor = check_real("factor", factor)
    bits = check_int("bits", bits, 2, 48)
    if factor == 0:
        return 0, 0
    r = bits - 1 - math.floor(math.log2(abs(factor))) - 1
    while abs(math.floor(factor * 2.0 ** r + 0.5)) >= 1 << (bits - 1):
        r -= 1
    return math.floor(factor * 2.0 ** r + 0.5), r


def requantize(x, m, r, bits):
    """Dyadic requantization ``saturate(rshift_round(x * m, r), bits)`` (the product must fit int64)."""
    x = np.asarray(x, dtype=np.int64)
    big = int(np.abs(x).max(initial=0)) * abs(int(m))
    if big >= 1 << 62:
        raise ValueError(f"x * m reaches 2**{big.bit_length()}, beyond the 63-bit product of the unit")
    return saturate(rshift_round(x * np.int64(m), r), bits)


# --------------------------------------------------------------------------------------------
# exp and softmax

def exp_constants(scale):
    """Integer constants of :func:`i_exp` for inputs of real scale ``scale`` (``x = q * scale``).

    Returns ``{"q_ln2", "q_b", "q_c", "out_scale"}``: ``q_ln2 = floor(ln2 / S)``,
    ``q_b = floor(b / S)``, ``q_c = floor(c / (a S**2))`` (I-BERT's floors) and the real scale
    of the output ``a * S**2``.
    """
    s = check_real("scale", scale, 0, lo_open=True)
    q_ln2 = math.floor(math.log(2) / s)
    if q_ln2 < 4:
        raise ValueError(f"scale {s!r} is too coarse for i-exp: ln2 / scale must be at least 4")
    return {"q_ln2": q_ln2, "q_b": math.floor(EXP_B / s), "q_c": math.floor(EXP_C / (EXP_A * s * s)),
            "out_scale": EXP_A * s * s}


def i_exp(q, *, q_ln2, q_b, q_c):
    """I-BERT's i-exp of non-positive integers ``q`` (constants from :func:`exp_constants`).

    ``z = floor(-q / q_ln2)``, ``p = q + z q_ln2`` (in ``(-q_ln2, 0]``),
    ``L = (p + q_b)**2 + q_c``, result ``L >> z`` (floor shift; 0 for ``z > 62``). Real value:
    result times ``out_scale``.
    """
    q = np.asarray(q, dtype=np.int64)
    if np.any(q > 0):
        raise TypeError("q must hold non-positive integers (subtract the row maximum first)")
    z = (-q) // q_ln2
    p = q + z * q_ln2
    L = (p + q_b) * (p + q_b) + q_c
    return np.where(z > 62, 0, L >> np.clip(z, 0, 62)).astype(np.int64)


def i_softmax(q, scale, *, out_bits=8, recip_bits=32):
    """Integer softmax along the last axis of scores ``q`` of real scale ``scale``.

    Steps: ``d = q - max(q)`` per row; ``e = i_exp(d)``; ``s = sum(e)``;
    ``f = floor(2**recip_bits / s)`` (one division per row); ``p = (e f + 2**(t-1)) >> t`` with
    ``t = recip_bits - (out_bits - 1)``; saturation to ``[0, 2**(out_bits-1) - 1]``.

    Returns
    -------
    numpy.ndarray of int64
        Probabilities with ``out_bits - 1`` fractional bits (signed ``out_bits``-bit values).
    """
    q = as_int_array("q", q)
    out_bits = check_int("out_bits", out_bits, 2, 16)
    recip_bits = check_int("recip_bits", recip_bits, out_bits, 48)
    c = exp_constants(scale)
    d = q - q.max(axis=-1, keepdims=True)
    e = i_exp(d, q_ln2=c["q_ln2"], q_b=c["q_b"], q_c=c["q_c"])
    s = e.sum(axis=-1, keepdims=True)
    if int(s.max(initial=0)) >= 1 << 62 or int(e.max(initial=0)) << recip_bits >= 1 << 62:
        raise ValueError(f"scale {scale!r} is too fine for i-softmax: the exp values overflow "
                         f"the unit's 63-bit products; use a coarser score format")
    f = (np.int64(1) << np.int64(recip_bits)) // s
    p = rshift_round(e * f, recip_bits - (out_bits - 1))
    return np.clip(p, 0, (1 << (out_bits - 1)) - 1)


# --------------------------------------------------------------------------------------------
# GELU

def gelu_constants(scale, out_scale, *, mult_bits=16):
    """Constants of :func:`i_gelu` for inputs of real scale ``scale`` and outputs of real scale
    ``out_scale``.

    With ``S' = scale / sqrt2``: ``q_clip = floor(-b / S')``, ``q_b = floor(b / S')``,
    ``q_c = floor(1 / (a S'**2))``, ``q_one = floor(1 / (a S'**2))`` (the erf output scale is
    ``a S'**2 < 0``), and the dyadic ``(m, r)`` of ``scale * a S'**2 / 2 / out_scale``.
    """
    s = check_real("scale", scale, 0, lo_open=True)
    so = check_real("out_scale", out_scale, 0, lo_open=True)
    sp = s / math.sqrt(2.0)
    s_erf = ERF_A * sp * sp
    m, r = dyadic(s * s_erf / 2.0 / so, mult_bits)
    return {"q_clip": math.floor(-ERF_B / sp), "q_b": math.floor(ERF_B / sp),
            "q_c": math.floor(1.0 / s_erf), "q_one": math.floor(1.0 / s_erf), "m": m, "r": r}


def i_gelu(q, *, q_clip, q_b, q_c, q_one, m, r, out_bits=8):
    """I-BERT's i-GELU of integers ``q`` (constants from :func:`gelu_constants`).

    ``a = min(|q|, q_clip)``; ``L = (a + q_b)**2 + q_c``; ``erf = sign(q) L``;
    ``g = q (erf + q_one)``; result ``saturate(rshift_round(g m, r), out_bits)``.
    """
    q = np.asarray(q, dtype=np.int64)
    a = np.minimum(np.abs(q), q_clip)
    L = (a + q_b) * (a + q_b) + q_c
    g = q * (np.sign(q) * L + q_one)
    return requantize(g, m, r, out_bits)


# --------------------------------------------------------------------------------------------
# LayerNorm

def layernorm_constants(gamma, beta, out_scale, *, gamma_bits=16, norm_frac=12):
    """Integer ``gamma`` (``gamma_frac`` fractional bits, chosen so the largest fits
    ``gamma_bits``) and ``beta`` (at ``out_scale``, rounded half up) of :func:`i_layernorm`."""
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    so = check_real("out_scale", out_scale, 0, lo_open=True)
    gmax = float(np.abs(gamma).max(initial=0)) or 1.0
    gfrac = gamma_bits - 2 - math.floor(math.log2(gmax))
    gamma_q = np.floor(gamma * 2.0 ** gfrac + 0.5).astype(np.int64)
    if np.abs(gamma_q).max(initial=0) > (1 << (gamma_bits - 1)) - 1:
        # max|gamma| just below a power of two rounds up to 2**(gamma_bits-1): one bit less.
        gfrac -= 1
        gamma_q = np.floor(gamma * 2.0 ** gfrac + 0.5).astype(np.int64)
    return {"gamma_q": gamma_q, "gamma_frac": gfrac,
            "beta_q": np.floor(beta / so + 0.5).astype(np.int64), "norm_frac": norm_frac}


def i_layernorm(q, gamma_q, beta_q, *, gamma_frac, out_scale_log2, norm_frac=12, recip_bits=24,
                out_bits=8):
    """Integer LayerNorm along the last axis (the input scale cancels).

    ``mu = floor((2 sum(q) + n) / (2n))`` (rounding division); ``y = q - mu``;
    ``var = floor(sum(y**2) / n)``; ``std = max(isqrt(var), 1)``;
    ``f = floor(2**recip_bits / std)``; ``z = rshift_round(y f, recip_bits - norm_frac)``
    (``y / std`` with ``norm_frac`` fractional bits); output
    ``saturate(rshift_round(z gamma_q, gamma_frac + norm_frac + out_scale_log2) + beta_q, out_bits)``
    where the output's real scale is ``2**out_scale_log2`` (power of two).
    """
    q = as_int_array("q", q)
    n = q.shape[-1]
    s = q.sum(axis=-1, keepdims=True)
    mu = (2 * s + n) // (2 * n)
    y = q - mu
    var = (y * y).sum(axis=-1, keepdims=True) // n
    std = np.maximum(isqrt(var), 1)
    f = (np.int64(1) << np.int64(recip_bits)) // std
    z = rshift_round(y * f, recip_bits - norm_frac)
    out = rshift_round(z * np.asarray(gamma_q, dtype=np.int64), gamma_frac + norm_frac + out_scale_log2)
    return saturate(out + np.asarray(beta_q, dtype=np.int64), out_bits)


# --------------------------------------------------------------------------------------------
# Error measurement

def _gelu(x):
    from math import erf
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


def kernel_errors(seed=0):
    """Error of each kernel against float64 over its input range (the documented bounds).

    Returns ``{kernel: {"range", "max_abs_err", "rel_l2"}}``:

    - ``i_exp``: every ``x = q S`` in ``[-16, 0]``, ``S = 2**-10``;
    - ``i_softmax``: 256 rows of 64 scores ``N(0, 3)``, ``S = 2**-10``, 8-bit outputs;
    - ``i_gelu``: every 16-bit ``q`` with ``S = 2**-10`` (``x`` in ``[-32, 32)``), output scale
      ``2**-10`` and 16 bits (the unit's arithmetic; the layer then keeps 8 bits);
    - ``i_layernorm``: 256 rows of 768 values ``N(0.3, 2)`` at ``2**-8``, ``gamma ~ U(0.5, 1.5)``,
      ``beta ~ N(0, 0.1)``, output scale ``2**-10`` in 16 bits.
    """
    rng = np.random.default_rng(seed)
    out = {}
    S = 2.0 ** -10
    q = -np.arange(0, 16 * 1024 + 1, dtype=np.int64)
    c = exp_constants(S)
    e = i_exp(q, q_ln2=c["q_ln2"], q_b=c["q_b"], q_c=c["q_c"]) * c["out_scale"]
    ref = np.exp(q * S)
    out["i_exp"] = {"range": "[-16, 0]", "max_abs_err": float(np.abs(e - ref).max()),
                    "rel_l2": float(np.linalg.norm(e - ref) / np.linalg.norm(ref))}
    x = rng.normal(0, 3, (256, 64))
    qx = np.floor(x / S + 0.5).astype(np.int64)
    p = i_softmax(qx, S) / 128.0
    xr = qx * S
    ref = np.exp(xr - xr.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    out["i_softmax"] = {"range": "rows of 64, N(0, 3)", "max_abs_err": float(np.abs(p - ref).max()),
                        "rel_l2": float(np.linalg.norm(p - ref) / np.linalg.norm(ref))}
    q = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)
    g = i_gelu(q, **gelu_constants(S, S), out_bits=16) * S
    ref = _gelu(q * S)
    out["i_gelu"] = {"range": "[-32, 32)", "max_abs_err": float(np.abs(g - ref).max()),
                     "rel_l2": float(np.linalg.norm(g - ref) / np.linalg.norm(ref))}
    x = rng.normal(0.3, 2, (256, 768))
    qx = np.floor(x * 256 + 0.5).astype(np.int64)
    gamma = rng.uniform(0.5, 1.5, 768)
    beta = rng.normal(0, 0.1, 768)
    lc = layernorm_constants(gamma, beta, 2.0 ** -10)
    y = i_layernorm(qx, lc["gamma_q"], lc["beta_q"], gamma_frac=lc["gamma_frac"], out_scale_log2=-10,
                    out_bits=16) * 2.0 ** -10
    xr = qx / 256.0
    ref = (xr - xr.mean(-1, keepdims=True)) / xr.std(-1, keepdims=True) * gamma + beta
    out["i_layernorm"] = {"range": "rows of 768, N(0.3, 2)", "max_abs_err": float(np.abs(y - ref).max()),
                          "rel_l2": float(np.linalg.norm(y - ref) / np.linalg.norm(ref))}
    return out
