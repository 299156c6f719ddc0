"""Crossbar-wise quantization (Atleus) and post-ADC integer dequantization.

Atleus quantizes the weights of each crossbar with one scale of its own, runs the MVM on the
integer weights, and dequantizes each crossbar's integer partial sum after the ADC and the
shift-and-add, before the partial sums of the crossbars of one large matrix are added. In
hardware the dequantization is an integer multiply by a fixed-point scale (``scale_frac_bits``
fractional bits, one scale register per crossbar), a rounding right shift and a saturation:

    out, saturated = saturate(round_shift(acc * scale, scale_frac_bits, rounding), out_bits)

All functions here are exact on integers, over the whole int64 range and beyond: they work on
int64 arrays and switch to object arrays of Python ints wherever an intermediate value could
leave int64 (the product ``acc * scale``, the rounding offset, a sum of many partials). Where
the exact result itself does not fit int64 (``round_shift`` of a large product, ``aggregate``
of large partials), it is returned as an object array of Python ints, never wrapped or clamped;
``dequantize`` saturates to ``out_bits <= 64`` and so always returns int64.
"""

import numpy as np

from ._check import check_choice, check_int

__all__ = ["round_shift", "saturate", "dequantize", "aggregate", "quantize_crossbarwise",
           "scale_to_fixed", "ROUNDING_MODES"]

ROUNDING_MODES = ("half_up", "half_even", "floor")
INT64_MAX = (1 << 63) - 1


def _int_array(name, x):
    a = np.asarray(x)
    if a.dtype == object:
        return a
    if a.dtype.kind not in "iu" or a.dtype.kind == "b":
        raise TypeError(f"{name} must be an array of integers, not {a.dtype} values")
    if a.dtype == np.uint64:
        return a.astype(object)
    return a.astype(np.int64, copy=False)


def _bounds(a):
    """(min, max) of an integer array as Python ints ((0, 0) when empty). ``np.abs`` is not
    used: ``np.abs(-2**63)`` is ``-2**63`` in int64."""
    if a.size == 0:
        return 0, 0
    return int(a.min()), int(a.max())


def _magnitude(a):
    lo, hi = _bounds(a)
    return max(-lo, hi)


def round_shift(x, shift, rounding="half_up"):
    """Divide integers by ``2**shift`` with an explicit rounding rule.

    Parameters
    ----------
    x : array_like of int
        Signed integers (int64 or object arrays of Python ints).
    shift : int
        Right shift, 0 to 256 (above 62 needs an object array); ``shift == 0`` returns ``x`` unchanged.
    rounding : {"half_up", "half_even", "floor"}
        ``"half_up"``: ties toward +inf, ``(x + 2**(shift-1)) >> shift``; ``"half_even"``: ties
        to the even quotient; ``"floor"``: ``x >> shift`` (toward -inf).

    Returns
    -------
    numpy.ndarray
        Same shape and integer dtype as ``x`` (int64 input whose rounding offset would leave
        int64 is computed in Python ints and returned as int64, where the result always fits).
    """
    shift = check_int("shift", shift, 0, 256)
    check_choice("rounding", rounding, ROUNDING_MODES)
    a = _int_array("x", x)
    if shift == 0:
        return a.copy() if isinstance(a, np.ndarray) else a
    half = 1 << (shift - 1)
    if a.dtype != object and (shift > 62 or _bounds(a)[1] > INT64_MAX - half):
        # x + half would wrap in int64; the quotient itself always fits.
        return round_shift(a.astype(object), shift, rounding).astype(np.int64)
    if rounding == "floor":
        return a >> shift
    if rounding == "half_up":
        return (a + half) >> shift
    q = a >> shift
    r = a - (q << shift)
    up = (r > half) | ((r == half) & ((q & 1) == 1))
    return q + up.astype(np.int64) if a.dtype != object else q + up.astype(object)


def saturate(x, bits):
    """Clamp integers to the signed range of ``bits`` bits.

    Returns
    -------
    (y, saturated)
        ``y = clip(x, -2**(bits-1), 2**(bits-1) - 1)`` and the boolean mask of the clamped values.
    """
    bits = check_int("bits", bits, 1, 64)
    a = _int_array("x", x)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    sat = (a < lo) | (a > hi)
    y = np.where(a < lo, lo, np.where(a > hi, hi, a))
    if a.dtype != object:
        y = y.astype(np.int64)
    return y, np.asarray(sat, dtype=bool)


def _fits_int64(a, b):
    """True when every product of |a| and |b| is below 2**62 (so a*b + rounding fits int64)."""
    if a.dtype == object or b.dtype == object:
        return False
    return _magnitude(a) * _magnitude(b) < (1 << 62)


def dequantize(acc, scale, *, scale_frac_bits, out_bits, rounding="half_up"):
    """Integer dequantization of a crossbar's partial sums.

    Parameters
    ----------
    acc : array_like of int
        Integer partial sums (shift-and-add output), shape ``(..., cols)``.
    scale : int or array_like of int
        Signed fixed-point scale with ``scale_frac_bits`` fractional bits, broadcast against
        ``acc`` (one per crossbar, broadcast along the columns).
    scale_frac_bits : int
        Fractional bits of ``scale`` (the right shift), 0 to 62.
    out_bits : int
        Width of the signed result, 1 to 64.
    rounding : {"half_up", "half_even", "floor"}
        Rounding rule of the shift.

    Returns
    -------
    (out, saturated)
        ``saturate(round_shift(acc * scale, scale_frac_bits, rounding), out_bits)``, computed
        exactly for every int64 ``acc`` and ``scale`` (the product in Python ints where it could
        leave int64); ``out`` is int64.
    """
    a = _int_array("acc", acc)
    s = _int_array("scale", scale)
    if not _fits_int64(a, s):
        a, s = a.astype(object), s.astype(object)
    prod = a * s
    out, sat = saturate(round_shift(prod, scale_frac_bits, rounding), out_bits)
    if out.dtype == object and out_bits <= 64:
        out = out.astype(np.int64)
    return out, sat


def aggregate(partials):
    """Sum the dequantized partial sums of the crossbars of one matrix along axis 0 (exact).

    Returns int64 when every partial sum of ``len(partials)`` terms provably fits int64, and
    otherwise an object array of Python ints (``aggregate([[-2**63], [-1]])`` is
    ``[-2**63 - 1]``), never a wrapped value.
    """
    p = _int_array("partials", partials)
    if p.ndim == 0:
        raise ValueError("partials must have at least one axis (the crossbar axis)")
    if p.dtype != object:
        lo, hi = _bounds(p)
        n = max(p.shape[0], 1)
        if lo * n < -(1 << 63) or hi * n > INT64_MAX:
            p = p.astype(object)
    return p.sum(axis=0)


def quantize_crossbarwise(w_float, *, weight_bits, rows, cols_per_xbar, rounding="half_even"):
    """Symmetric per-crossbar quantization of a float weight matrix (Atleus).

    The matrix ``(K, N)`` is cut into tiles of ``rows x cols_per_xbar`` weights (the last tiles
    may be partial); each tile gets the scale ``max|w| / (2**(weight_bits-1) - 1)`` (1.0 for an
    all-zero tile) and ``w_int = clip(round(w / scale), -(2**(weight_bits-1) - 1), 2**(weight_bits-1) - 1)``.

    Parameters
    ----------
    w_float : array_like
        Real weight matrix, shape ``(K, N)``.
    weight_bits : int
        2 to 16.
    rows : int
        Crossbar rows (weights per tile along K).
    cols_per_xbar : int
        Weights per tile along N (``cols * cell_bits // weight_bits`` of the crossbar).
    rounding : {"half_even", "half_up"}
        Rounding of ``w / scale``.

    Returns
    -------
    (w_int, scales)
        ``w_int``: int64 ``(K, N)``; ``scales``: float64 ``(ceil(K / rows), ceil(N / cols_per_xbar))``
        so that ``w_float ~= w_int * scales[i // rows, j // cols_per_xbar]``.
    """
    weight_bits = check_int("weight_bits", weight_bits, 2, 16)
    rows = check_int("rows", rows, 1)
    cols_per_xbar = check_int("cols_per_xbar", cols_per_xbar, 1)
    check_choice("rounding", rounding, ("half_even", "half_up"))
    w = np.asarray(w_float, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"w_float must be a 2-D array, not {w.ndim}-D with shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("w_float must hold finite values")
    k, n = w.shape
    tr, tc = -(-k // rows), -(-n // cols_per_xbar)
    qmax = (1 << (weight_bits - 1)) - 1
    pad = np.zeros((tr * rows, tc * cols_per_xbar))
    pad[:k, :n] = np.abs(w)
    amax = pad.reshape(tr, rows, tc, cols_per_xbar).max(axis=(1, 3))
    scales = np.where(amax > 0, amax / qmax, 1.0)
    full = np.repeat(np.repeat(scales, rows, axis=0), cols_per_xbar, axis=1)[:k, :n]
    q = w / full
    q = np.rint(q) if rounding == "half_even" else np.floor(q + 0.5)
    return np.clip(q, -qmax, qmax).astype(np.int64), scales


def scale_to_fixed(scale_float, *, scale_bits, scale_frac_bits):
    """Round real scales to signed fixed point: ``round(scale * 2**scale_frac_bits)`` (half up).

    Parameters
    ----------
    scale_float : array_like
        Real scales.
    scale_bits : int
        Width of the signed scale register, 2 to 63.
    scale_frac_bits : int
        Fractional bits, 0 to 62.

    Returns
    -------
    numpy.ndarray of int64

    Raises
    ------
    ValueError
        When a scale does not fit in ``scale_bits`` signed bits (no silent saturation).
    """
    scale_bits = check_int("scale_bits", scale_bits, 2, 63)
    scale_frac_bits = check_int("scale_frac_bits", scale_frac_bits, 0, 62)
    s = np.asarray(scale_float, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("scale_float must hold finite values")
    q = np.floor(s * float(1 << scale_frac_bits) + 0.5)
    lo, hi = -(1 << (scale_bits - 1)), (1 << (scale_bits - 1)) - 1
    if q.size and (q.min() < lo or q.max() > hi):
        raise ValueError(f"scale_float times 2**scale_frac_bits must fit in {scale_bits} signed bits "
                         f"({lo} to {hi}), not {q.max() if q.max() > hi else q.min():.0f}")
    return q.astype(np.int64)
