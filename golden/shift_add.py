"""Streaming integer model of the shift-and-add accumulator, the crossbar-wise dequantizer and
the aggregator (Atleus Section IV-D, Fig. 5), in the order the RTL (``hdl/dequant``) works.

Beat stream of the accumulator (one ADC code per beat), fields as in the RTL payload:

- ``code``: ADC code; ``plane``: input bit ``i`` (0 = LSB); ``slice``: weight slice ``s``
  (0 = LSB cells); ``column``: accumulator index; ``xbar``: crossbar (selects the scale);
- ``first``: the beat starts the column's sum (the accumulator is loaded, not added to);
- ``last``: the beat ends it (the column result is emitted after this beat);
- ``ones``: sum of the DAC levels of the active rows in this plane (the popcount of the input
  plane for 1-bit DACs), used by the offset-encoding and column-flip corrections;
- ``flip``: the physical column is stored flipped (ISAAC), so ``code`` reads
  ``lmax * ones - true``.

Each beat adds ``term << plane`` (subtracted for the sign plane ``input_bits - 1`` when
``signed_inputs``), with ``term = c << (slice * cell_bits)``, ``c = lmax * ones - code`` if
``flip`` else ``code``, minus ``ones << (weight_bits - 1)`` on the slice-0 beats for
``encoding="offset"``, and negated on the top slice for ``encoding="twos"`` (``cell_bits == 1``
only: the top slice is then the sign bit alone). This is exactly :func:`golden.crossbar.shift_add`
plus the corrections of :class:`golden.crossbar.Crossbar` (tested in ``tb/test_dequant_sim.py``).
"""

import numpy as np

from ._check import as_int_array, check_choice, check_int
from .quant import aggregate, dequantize

__all__ = ["SA_ENCODINGS", "sa_acc_width", "csd_digits", "read_sequence", "shift_add_stream",
           "dequantize_stream", "aggregate_stream"]

SA_ENCODINGS = ("offset", "twos", "none")
_BEAT_FIELDS = ("code", "plane", "slice", "column", "xbar", "first", "last", "ones", "flip")


def sa_acc_width(*, adc_bits, input_bits, weight_bits, cell_bits, rows, encoding="offset",
                 flip=False, signed_inputs=True, row_groups=1):
    """Signed accumulator width that no beat sequence of one column can overflow.

    Bound: ``row_groups * sum_i 2**i * (sum_s 2**(s*cell_bits) * cmax + offset)`` with
    ``cmax = max(2**adc_bits - 1, lmax * rows if flip)`` and ``offset = rows << (weight_bits-1)``
    for ``encoding="offset"``; the width is ``bound.bit_length() + 1``.
    """
    n = weight_bits // cell_bits
    lmax = (1 << cell_bits) - 1
    cmax = max((1 << adc_bits) - 1, lmax * rows if flip else 0)
    per_plane = sum(cmax << (s * cell_bits) for s in range(n))
    if encoding == "offset":
        per_plane += rows << (weight_bits - 1)
    bound = row_groups * ((1 << input_bits) - 1) * per_plane
    return bound.bit_length() + 1


def csd_digits(scale, scale_bits):
    """Canonical signed digits of a signed ``scale_bits``-bit integer as two bit masks.

    Returns ``(pos, neg)`` with ``pos - neg == scale``, no two adjacent non-zero digits, all
    digits below bit ``scale_bits``. Computed as the RTL does: ``y = 3 * x`` modulo
    ``2**(scale_bits + 2)``, ``pos = (y & ~x) >> 1``, ``neg = (~y & x) >> 1``.
    """
    scale_bits = check_int("scale_bits", scale_bits, 2, 62)
    scale = check_int("scale", scale, -(1 << (scale_bits - 1)), (1 << (scale_bits - 1)) - 1)
    m = (1 << (scale_bits + 2)) - 1
    x = scale & m
    y = (3 * x) & m
    low = (1 << scale_bits) - 1
    return (((y & ~x) & m) >> 1) & low, (((~y & x) & m) >> 1) & low


def read_sequence(codes, *, ones=None, flip=None, xbar=0, column_base=0):
    """Beats of one crossbar read in the documented fixed order.

    Order: input plane (LSB first), then row group, then weight column ``j``, then slice ``s``
    (LSB first), i.e. physical column ``j * n_slices + s`` of the golden crossbar's layout.

    Parameters
    ----------
    codes : array_like of int
        ``(input_bits, row_groups, n_slices, n_out)`` or ``(input_bits, n_slices, n_out)`` codes.
    ones : array_like of int or None
        ``(input_bits, row_groups)`` or ``(input_bits,)`` plane popcounts (zeros if ``None``).
    flip : array_like of bool or None
        ``(n_slices, n_out)`` flip flags (none if ``None``).
    xbar : int
        Crossbar index of every beat.
    column_base : int
        Accumulator index of weight column 0.

    Returns
    -------
    dict of numpy.ndarray
        One int64 array per field (``code``, ``plane``, ``slice``, ``column``, ``xbar``,
        ``first``, ``last``, ``ones``, ``flip``).
    """
    c = as_int_array("codes", codes)
    if c.ndim == 3:
        c = c[:, None]
    if c.ndim != 4:
        raise ValueError(f"codes must be a 3-D or 4-D array, not {c.ndim}-D")
    p, g, s, n = c.shape
    o = np.zeros((p, g), dtype=np.int64) if ones is None else as_int_array("ones", ones).reshape(p, g)
    f = np.zeros((s, n), dtype=np.int64) if flip is None else np.asarray(flip).astype(np.int64).reshape(s, n)
    ip, ig, ij, isl = np.meshgrid(np.arange(p), np.arange(g), np.arange(n), np.arange(s), indexing="ij")
    beats = {
        "code": c[ip, ig, isl, ij], "plane": ip, "slice": isl, "column": ij + column_base,
        "xbar": np.full(ip.shape, xbar), "first": (ip == 0) & (ig == 0) & (isl == 0),
        "last": (ip == p - 1) & (ig == g - 1) & (isl == s - 1), "ones": o[ip, ig], "flip": f[isl, ij],
    }
    return {k: np.asarray(v, dtype=np.int64).ravel() for k, v in beats.items()}


def shift_add_stream(beats, *, input_bits, weight_bits, cell_bits, encoding="offset",
                     signed_inputs=True, acc_width=None):
    """Run a beat stream through the shift-and-add accumulator model, beat by beat.

    Parameters
    ----------
    beats : dict of array_like
        Fields as in :func:`read_sequence` (missing ``ones``/``flip``/``xbar`` are zeros).
    input_bits, weight_bits, cell_bits : int
    encoding : {"offset", "twos", "none"}
    signed_inputs : bool
    acc_width : int or None
        When given, the model checks that no partial sum leaves the signed range.

    Returns
    -------
    dict of numpy.ndarray
        ``xbar``, ``column``, ``value`` of every emitted column result, in output order.
    """
    check_choice("encoding", encoding, SA_ENCODINGS)
    n = weight_bits // cell_bits
    if encoding == "twos" and cell_bits != 1:
        raise ValueError(f"encoding 'twos' needs cell_bits 1, not {cell_bits}")
    lmax = (1 << cell_bits) - 1
    length = len(beats["code"])
    get = {k: (list(map(int, beats[k])) if k in beats else [0] * length) for k in _BEAT_FIELDS}
    acc = {}
    out = {"xbar": [], "column": [], "value": []}
    lim = None if acc_width is None else 1 << (acc_width - 1)
    for t in range(length):
        code, plane, slc = get["code"][t], get["plane"][t], get["slice"][t]
        ones = get["ones"][t]
        c = lmax * ones - code if get["flip"][t] else code
        term = c << (slc * cell_bits)
        if encoding == "offset" and slc == 0:
            term -= ones << (weight_bits - 1)
        if encoding == "twos" and slc == n - 1:
            term = -term
        term <<= plane
        if signed_inputs and plane == input_bits - 1:
            term = -term
        col = get["column"][t]
        value = (0 if get["first"][t] else acc.get(col, 0)) + term
        if lim is not None and not -lim <= value < lim:
            raise OverflowError(f"partial sum {value} of column {col} exceeds {acc_width} bits")
        acc[col] = value
        if get["last"][t]:
            out["xbar"].append(get["xbar"][t])
            out["column"].append(col)
            out["value"].append(value)
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


def dequantize_stream(values, xbars, scales, *, scale_frac_bits, out_bits, rounding="half_up"):
    """Dequantize column results with the scale of their crossbar.

    ``scales[xbars[k]]`` multiplies ``values[k]``; see :func:`golden.quant.dequantize`.
    Returns ``(out, saturated)``.
    """
    s = as_int_array("scales", scales)[as_int_array("xbars", xbars)]
    return dequantize(values, s, scale_frac_bits=scale_frac_bits, out_bits=out_bits, rounding=rounding)


def aggregate_stream(values, saturated, *, lanes, beats):
    """Aggregator model: results arrive as ``(n, lanes)`` rows; every ``beats`` rows are summed.

    Returns ``(sums, saturated_any)`` of length ``n // (beats)``.
    """
    v = as_int_array("values", values)
    k = v.shape[0] // beats
    v = v[:k * beats].reshape(k, beats * lanes)
    sat = np.asarray(saturated, dtype=bool)[:k * beats].reshape(k, beats * lanes)
    return aggregate(v.T), sat.any(axis=1)
