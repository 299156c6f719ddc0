"""Bit-true model of a successive-approximation (SAR) ADC and its comparator.

Units: ``analog`` values are in units of one cell-current step (the current of one cell level
driven by one DAC level); ``lsb`` is the ADC step in the same units. Comparator ``offset`` and
``noise`` and the capacitor-DAC ``cap_weights`` are in LSB units.

The ideal comparator rule is mid-tread: the DAC threshold of trial code ``t`` is
``(t - 0.5) * lsb``, and the comparator keeps the trial when ``analog + offset >= threshold``
(``comparator=">="``) or ``>`` (``comparator=">"``). With ``">="`` and ideal capacitors the SAR
result equals :func:`ideal_quantize`: round half up, clipped to ``[0, 2**bits - 1]``. With
``">"`` exact ties (``analog == (t - 0.5) * lsb``) round down instead.

The search is MSB first with one trial per step: step ``k`` (``k = bits - 1`` down to ``0``)
tries ``trial = code | (1 << k)`` and sets ``code = trial`` when the comparator keeps it. Hence
the decision of step ``k`` is always bit ``k`` of the final code, whatever the comparator did.
"""

import numpy as np

from ._check import check_choice, check_int, check_real

__all__ = ["compare", "sar_convert", "ideal_quantize", "sar_trace_from_codes"]

_COMPARATORS = (">=", ">")
_CHUNK = 1 << 16


def _check_common(lsb, comparator):
    lsb = check_real("lsb", lsb, 0, lo_open=True)
    check_choice("comparator", comparator, _COMPARATORS)
    return lsb


def _check_bits(bits):
    if isinstance(bits, np.ndarray) and bits.ndim > 0:
        if bits.dtype.kind not in "iu":
            raise TypeError(f"bits must be an integer from 1 to 16 or an array of them, not {bits.dtype} values")
        if bits.size and (bits.min() < 1 or bits.max() > 16):
            raise TypeError(f"bits must be an integer from 1 to 16, not {int(bits.min() if bits.min() < 1 else bits.max())}")
        return bits.astype(np.int64), int(bits.max()) if bits.size else 1
    if isinstance(bits, np.ndarray):
        bits = bits.item()
    bits = check_int("bits", bits, 1, 16)
    return bits, bits


def _cap_weights(cap_weights, bits):
    w = np.asarray(cap_weights, dtype=np.float64)
    if w.ndim == 0 or w.shape[-1] != bits:
        raise ValueError(f"cap_weights must have a last axis of length bits ({bits}), not shape {w.shape}")
    return w


def _dac(trial, cap_weights):
    """DAC level of a trial code in LSB units (before the half-LSB mid-tread shift)."""
    if cap_weights is None:
        return trial
    bits = cap_weights.shape[-1]
    out = 0.0
    for j in range(bits):
        out = out + cap_weights[..., j] * ((trial >> (bits - 1 - j)) & 1)
    return out


def compare(analog, trial_code, *, lsb=1.0, comparator=">=", offset=0.0, noise=None, cap_weights=None):
    """Comparator decision of one SAR trial.

    Parameters
    ----------
    analog : array_like
        Sampled column values, in cell-current steps.
    trial_code : array_like of int
        Trial code, broadcast against ``analog``.
    lsb : float
        ADC step in cell-current steps.
    comparator : {">=", ">"}
        Comparator rule at an exact tie.
    offset : float or array_like
        Comparator input offset in LSB units (positive offset makes the comparator keep more).
    noise : array_like or None
        Already-drawn comparator noise in LSB units, broadcast against ``analog``.
    cap_weights : array_like or None
        Per-bit capacitor-DAC weights in LSB units, MSB first, last axis of length ``bits``
        (ideal: ``2**(bits-1), ..., 2, 1``); broadcast against ``analog`` on the other axes.

    Returns
    -------
    numpy.ndarray of bool
        ``analog / lsb + offset + noise >= dac(trial) - 0.5`` (``>`` when ``comparator=">"``),
        where ``dac(t) = t`` or, with ``cap_weights``, the sum of the weights of the set bits.
    """
    lsb = _check_common(lsb, comparator)
    a = np.asarray(analog, dtype=np.float64) / lsb + np.asarray(offset, dtype=np.float64)
    if noise is not None:
        a = a + np.asarray(noise, dtype=np.float64)
    trial = np.asarray(trial_code)
    if trial.dtype.kind not in "iu":
        raise TypeError(f"trial_code must be an array of integers, not {trial.dtype} values")
    trial = trial.astype(np.int64)
    if cap_weights is not None:
        cap_weights = np.asarray(cap_weights, dtype=np.float64)
    thr = _dac(trial, cap_weights) - 0.5
    return a >= thr if comparator == ">=" else a > thr


def ideal_quantize(analog, bits, *, lsb=1.0):
    """Ideal mid-tread quantizer: ``clip(floor(analog / lsb + 0.5), 0, 2**bits - 1)`` as int64.

    Parameters
    ----------
    analog : array_like
        Values in cell-current steps.
    bits : int or array_like of int
        Resolution, 1 to 16 (per value when an array).
    lsb : float
        ADC step in cell-current steps.
    """
    lsb = check_real("lsb", lsb, 0, lo_open=True)
    bits, _ = _check_bits(bits if not isinstance(bits, (list, tuple)) else np.asarray(bits))
    a = np.asarray(analog)
    if a.dtype.kind in "iub" and lsb == 1.0:
        q = a.astype(np.int64)
    else:
        q = np.floor(a.astype(np.float64) / lsb + 0.5)
    top = (np.int64(1) << np.asarray(bits, dtype=np.int64)) - 1
    return np.clip(q, 0, top).astype(np.int64)


def sar_trace_from_codes(codes, bits):
    """Trials and decisions of a SAR conversion, rebuilt from its final codes.

    Because the decision of step ``k`` is bit ``k`` of the final code, the trace is a pure
    function of the codes: ``trial_k = (code >> (k + 1) << (k + 1)) | (1 << k)``.

    Returns
    -------
    (trials, decisions)
        Arrays with a trailing axis of length ``bits``, MSB step first.
    """
    bits = check_int("bits", bits, 1, 16)
    codes = np.asarray(codes, dtype=np.int64)
    k = np.arange(bits - 1, -1, -1, dtype=np.int64)
    c = codes[..., None]
    trials = ((c >> (k + 1)) << (k + 1)) | (np.int64(1) << k)
    decisions = ((c >> k) & 1).astype(bool)
    return trials, decisions


def sar_convert(analog, bits, *, lsb=1.0, comparator=">=", offset=0.0, noise_sigma=0.0, rng=None,
                cap_weights=None, trace=False, noise=None):
    """Bit-true SAR conversion, one trial per step, MSB first.

    Parameters
    ----------
    analog : array_like
        Sampled column values in cell-current steps (ints or floats).
    bits : int or array_like of int
        Resolution, 1 to 16. An integer array (broadcast against ``analog``) switches the
        resolution per conversion: a ``b``-bit conversion runs only the steps ``k < b``; in the
        trace the skipped leading steps have trial ``-1`` and decision ``False``.
    lsb : float
        ADC step in cell-current steps.
    comparator : {">=", ">"}
        Comparator rule at an exact tie.
    offset : float or array_like
        Comparator offset in LSB units, broadcast against ``analog`` (per-ADC offsets).
    noise_sigma : float
        Standard deviation of the comparator noise in LSB units, a fresh sample per trial,
        drawn from ``rng`` as one ``standard_normal((*analog.shape, bits))`` call.
    rng : numpy.random.Generator or None
        Required when ``noise_sigma > 0``.
    cap_weights : array_like or None
        Capacitor-DAC weights in LSB units, MSB first (see :func:`compare`); last axis of
        length ``bits``, other axes broadcast against ``analog``.
    trace : bool
        Also return the trial code and decision of every step.
    noise : array_like or None
        Already-drawn comparator noise in LSB units, shape ``(*analog.shape, bits)``, MSB step
        first; added to the ``noise_sigma`` noise.

    Returns
    -------
    codes : numpy.ndarray of int64
        Same shape as ``analog``.
    trials, decisions : numpy.ndarray
        Only with ``trace=True``; trailing axis of length ``bits``, MSB step first.
    """
    lsb = _check_common(lsb, comparator)
    if isinstance(bits, (list, tuple)):
        bits = np.asarray(bits)
    bits, nbits = _check_bits(bits)
    noise_sigma = check_real("noise_sigma", noise_sigma, 0)
    if noise_sigma > 0 and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator when noise_sigma > 0, not {rng!r}")
    a = np.asarray(analog)
    shape = a.shape
    per_conv_bits = isinstance(bits, np.ndarray)
    if per_conv_bits:
        bits_b = np.broadcast_to(bits, shape)

    step_noise = None
    if noise_sigma > 0:
        step_noise = rng.standard_normal((*shape, nbits)) * noise_sigma
    if noise is not None:
        n = np.asarray(noise, dtype=np.float64)
        if n.shape[-1:] != (nbits,):
            raise ValueError(f"noise must have a last axis of length bits ({nbits}), not shape {n.shape}")
        step_noise = n if step_noise is None else step_noise + n
    if cap_weights is not None:
        cap_weights = _cap_weights(cap_weights, nbits)
    offset = np.asarray(offset, dtype=np.float64)

    # Integer fast path: exact integer inputs, ideal comparator and DAC. For an integer value
    # v, v >= t - 0.5 and v > t - 0.5 both mean v >= t.
    ideal = (step_noise is None and cap_weights is None and not np.any(offset)
             and a.dtype.kind in "iub" and lsb == 1.0)
    n = a.size
    tdtype = np.int16 if nbits <= 14 else np.int32
    if ideal:
        lo, hi = np.iinfo(tdtype).min, np.iinfo(tdtype).max
        av = a.reshape(-1)
        if av.dtype != tdtype:
            av = np.clip(av, lo, hi).astype(tdtype)
    else:
        av = np.broadcast_to(a.astype(np.float64) / lsb + offset, shape).reshape(-1)
        if step_noise is not None:
            step_noise = np.broadcast_to(step_noise, (*shape, nbits)).reshape(n, nbits)
        if cap_weights is not None:
            cap_weights = np.broadcast_to(cap_weights, (*shape, nbits)).reshape(n, nbits)
    if per_conv_bits:
        bits_f = bits_b.reshape(-1)
    code = np.zeros(n, dtype=tdtype)
    m = min(n, _CHUNK)
    if trace:
        trials = np.empty((nbits, n), dtype=tdtype)
        decisions = np.empty((nbits, n), dtype=bool)
    else:
        trial_buf = np.empty(m, dtype=tdtype)
        keep_buf = np.empty(m, dtype=bool)
    inc_buf = np.empty(m, dtype=tdtype)

    # Work in cache-sized chunks: every step of a chunk runs before the next chunk. The code
    # update is code |= keep << k (the same as code = trial where keep), done arithmetically.
    for s0 in range(0, n, _CHUNK):
        s1 = min(n, s0 + _CHUNK)
        c = code[s0:s1]
        x = av[s0:s1]
        inc = inc_buf[:s1 - s0]
        if not ideal and cap_weights is not None:
            dac_code = np.zeros(s1 - s0)
        for j in range(nbits):
            k = nbits - 1 - j
            bit = tdtype(1 << k)
            trial = trials[j, s0:s1] if trace else trial_buf[:s1 - s0]
            keep = decisions[j, s0:s1] if trace else keep_buf[:s1 - s0]
            np.bitwise_or(c, bit, out=trial)
            if ideal:
                np.greater_equal(x, trial, out=keep)
            else:
                if cap_weights is None:
                    thr = trial - 0.5
                else:
                    dac_trial = dac_code + cap_weights[s0:s1, j]
                    thr = dac_trial - 0.5
                lhs = x if step_noise is None else x + step_noise[s0:s1, j]
                if comparator == ">=":
                    np.greater_equal(lhs, thr, out=keep)
                else:
                    np.greater(lhs, thr, out=keep)
            if per_conv_bits:
                active = k < bits_f[s0:s1]
                keep &= active
                if trace:
                    trial[~active] = -1
            if not ideal and cap_weights is not None:
                dac_code += keep * cap_weights[s0:s1, j]
            np.multiply(keep, bit, out=inc)
            np.bitwise_or(c, inc, out=c)

    codes = code.astype(np.int64).reshape(shape)
    if trace:
        trials = np.moveaxis(trials.reshape(nbits, *shape), 0, -1)
        decisions = np.moveaxis(decisions.reshape(nbits, *shape), 0, -1)
        return codes, trials, decisions
    return codes
