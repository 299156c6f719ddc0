"""Golden model of one analog RRAM crossbar with its DACs, ADCs and shift-and-add.

Signal path of :meth:`Crossbar.mvm` (each step is also a function of its own):

1. inputs -> DAC planes (:func:`input_planes`; :func:`bit_planes` for 1-bit DACs): the input is
   applied one plane at a time; a plane holds non-negative DAC levels and has a signed integer
   weight (two's complement: the MSB plane has weight ``-2**(input_bits-1)``);
2. weights -> cell levels (:func:`slice_weights`), then the physical layout: weight ``j``
   occupies the ``n_slices`` adjacent columns ``j * n_slices + s``, LSB slice ``s = 0`` first;
   optional ISAAC column flip (:func:`flip_columns`);
3. analog column sums in units of one cell-current step, ``rows_active`` rows per ADC sample
   (:func:`column_sums`);
4. ADC: ideal mid-tread quantizer or bit-true SAR (:mod:`golden.sar`); ``adc_share`` columns per
   ADC through a mux (:func:`adc_schedule`);
5. digital side, all integer: flip correction with a popcount, sum of the row groups,
   shift-and-add over planes and slices (:func:`shift_add`, :func:`shift_add_planes`), encoding
   correction (offset: ``-2**(weight_bits-1) * sum(x)``; two's complement: ``-2**weight_bits *
   (x @ sign_bits)``; differential: positive minus negative array).

Weight encodings (``encoding``):

- ``"twos"``: the cells hold the two's-complement bit pattern ``w mod 2**weight_bits``; the
  sign weight is corrected digitally with the per-column sign bits (an AND-popcount per plane).
- ``"offset"``: the cells hold ``w + 2**(weight_bits-1)``; the offset is corrected digitally
  with the sum of the inputs.
- ``"differential"``: two arrays of ``rows x cols`` cells, ``max(w, 0)`` and ``max(-w, 0)``,
  each converted by the ADCs; the digital side subtracts.

Input encodings (``input_encoding``): ``"twos"`` (bit-serial with ``dac_bits == 1``; with
``dac_bits = k > 1`` unsigned ``k``-bit chunks and the signed top chunk split into a positive
and a negative plane) and ``"balanced"`` (signed digits in the odd base ``input_base``, each
digit split into a positive and a negative plane; base 3 runs on 1-bit DACs).
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from . import noise as _noise
from ._check import as_int_array, check_choice, check_int, check_real
from .noise import NoiseConfig
from . import sar as _sar
from .sar import ideal_quantize, sar_convert

__all__ = ["CrossbarConfig", "Crossbar", "CrossbarTrace", "load_trace",
           "bit_planes", "input_planes", "slice_weights", "flip_columns", "column_sums",
           "shift_add", "shift_add_planes", "adc_schedule", "n_balanced_digits", "ENCODINGS",
           "INPUT_ENCODINGS"]

ENCODINGS = ("twos", "offset", "differential")
INPUT_ENCODINGS = ("twos", "balanced")
ADC_KINDS = ("ideal", "sar")
ADC_ORDERS = ("sequential", "interleaved")


# --------------------------------------------------------------------------------------------
# Inputs

def bit_planes(x, input_bits):
    """Two's-complement bit planes of signed integer inputs.

    Parameters
    ----------
    x : array_like of int
        Inputs ``(..., rows)`` in ``[-2**(input_bits-1), 2**(input_bits-1) - 1]``.
    input_bits : int
        1 to 32.

    Returns
    -------
    numpy.ndarray of int64
        ``(..., input_bits, rows)`` 0/1 planes, LSB plane first; plane ``input_bits - 1`` is the
        sign plane (weight ``-2**(input_bits-1)``).
    """
    input_bits = check_int("input_bits", input_bits, 1, 32)
    lim = 1 << (input_bits - 1)
    x = as_int_array("x", x, lo=-lim, hi=lim - 1)
    i = np.arange(input_bits, dtype=np.int64)[:, None]
    return (x[..., None, :] >> i) & 1


def _balanced_digits(x, base, n_digits):
    h = (base - 1) // 2
    out = np.empty((n_digits, *x.shape), dtype=np.int64)
    v = x.copy()
    for j in range(n_digits):
        r = np.mod(v + h, base) - h
        out[j] = r
        v = (v - r) // base
    return out


def n_balanced_digits(input_bits, base):
    """Number of balanced base-``base`` digits needed for ``input_bits``-bit signed inputs."""
    need = 1 << (input_bits - 1)
    d = 1
    while (base ** d - 1) // 2 < need:
        d += 1
    return d


def input_planes(x, *, input_bits, dac_bits=1, input_encoding="twos", input_base=3):
    """DAC planes of signed integer inputs and the signed weight of each plane.

    ``x == sum_p weights[p] * planes[..., p, :]`` exactly.

    Parameters
    ----------
    x : array_like of int
        ``(..., rows)``, ``input_bits``-bit signed.
    input_bits : int
        1 to 32.
    dac_bits : int
        DAC resolution, 1 to 8 (planes hold levels ``0 .. 2**dac_bits - 1``).
    input_encoding : {"twos", "balanced"}
    input_base : int
        Odd base from 3 for ``"balanced"``; its digit magnitude ``(input_base - 1) // 2`` must fit
        the DAC.

    Returns
    -------
    (planes, weights)
        ``planes``: int64 ``(..., n_planes, rows)`` of DAC levels, ``weights``: int64 ``(n_planes,)``.
    """
    input_bits = check_int("input_bits", input_bits, 1, 32)
    dac_bits = check_int("dac_bits", dac_bits, 1, 8)
    check_choice("input_encoding", input_encoding, INPUT_ENCODINGS)
    lim = 1 << (input_bits - 1)
    x = as_int_array("x", x, lo=-lim, hi=lim - 1)
    if input_encoding == "twos":
        if dac_bits == 1:
            w = 1 << np.arange(input_bits, dtype=np.int64)
            w[-1] = -w[-1]
            return bit_planes(x, input_bits), w
        k = dac_bits
        n_chunks = -(-input_bits // k)
        top_shift = (n_chunks - 1) * k
        mask = (1 << k) - 1
        planes = [(x >> (j * k)) & mask for j in range(n_chunks - 1)]
        top = x >> top_shift
        planes += [np.maximum(top, 0), np.maximum(-top, 0)]
        w = [1 << (j * k) for j in range(n_chunks - 1)] + [1 << top_shift, -(1 << top_shift)]
        return np.stack(planes, axis=-2), np.asarray(w, dtype=np.int64)
    base = check_int("input_base", input_base, 3, 255)
    if base % 2 == 0:
        raise TypeError(f"input_base must be an odd integer from 3 to 255, not {base}")
    h = (base - 1) // 2
    if h > (1 << dac_bits) - 1:
        raise ValueError(f"input_base {base} needs digit magnitudes up to {h}, more than dac_bits "
                         f"{dac_bits} can drive ({(1 << dac_bits) - 1})")
    nd = n_balanced_digits(input_bits, base)
    d = _balanced_digits(x, base, nd)
    planes = np.empty((*x.shape[:-1], 2 * nd, x.shape[-1]), dtype=np.int64)
    planes[..., 0::2, :] = np.moveaxis(np.maximum(d, 0), 0, -2)
    planes[..., 1::2, :] = np.moveaxis(np.maximum(-d, 0), 0, -2)
    pw = np.asarray([base ** j for j in range(nd)], dtype=np.int64)
    w = np.empty(2 * nd, dtype=np.int64)
    w[0::2], w[1::2] = pw, -pw
    return planes, w


# --------------------------------------------------------------------------------------------
# Weights

def _check_bits_pair(weight_bits, cell_bits):
    weight_bits = check_int("weight_bits", weight_bits, 1, 32)
    cell_bits = check_int("cell_bits", cell_bits, 1, 8)
    if weight_bits % cell_bits:
        raise ValueError(f"cell_bits ({cell_bits}) must divide weight_bits ({weight_bits})")
    return weight_bits, cell_bits


def slice_weights(w, weight_bits, cell_bits, encoding="twos"):
    """Cell levels of signed integer weights, LSB slice first.

    Parameters
    ----------
    w : array_like of int
        ``(rows, cols)`` weights in ``[-2**(weight_bits-1), 2**(weight_bits-1) - 1]``.
    weight_bits, cell_bits : int
        ``cell_bits`` divides ``weight_bits``.
    encoding : {"twos", "offset", "differential"}

    Returns
    -------
    numpy.ndarray of int64
        ``(n_slices, rows, cols)`` levels in ``[0, 2**cell_bits - 1]``; for ``"differential"``
        ``(2, n_slices, rows, cols)`` (positive array, negative array).
    """
    weight_bits, cell_bits = _check_bits_pair(weight_bits, cell_bits)
    check_choice("encoding", encoding, ENCODINGS)
    lim = 1 << (weight_bits - 1)
    w = as_int_array("w", w, lo=-lim, hi=lim - 1)
    n = weight_bits // cell_bits
    mask = (1 << cell_bits) - 1
    sh = (np.arange(n, dtype=np.int64) * cell_bits).reshape((n,) + (1,) * w.ndim)

    def cut(u):
        return (u[None] >> sh) & mask

    if encoding == "twos":
        return cut(w & ((1 << weight_bits) - 1))
    if encoding == "offset":
        return cut(w + lim)
    return np.stack([cut(np.maximum(w, 0)), cut(np.maximum(-w, 0))])


def flip_columns(levels, cell_bits):
    """ISAAC column flip: store ``2**cell_bits - 1 - level`` in the columns where that lowers the
    column's level sum (strictly), one flag per column.

    Parameters
    ----------
    levels : array_like of int
        ``(..., rows, cols)`` cell levels.
    cell_bits : int

    Returns
    -------
    (stored, flags)
        Stored levels (same shape) and bool flags ``(..., cols)``. A flipped column's sum is
        recovered digitally as ``(2**cell_bits - 1) * sum(dac levels of the active rows) - read``.
    """
    cell_bits = check_int("cell_bits", cell_bits, 1, 8)
    lv = as_int_array("levels", levels, lo=0, hi=(1 << cell_bits) - 1)
    lmax = (1 << cell_bits) - 1
    rows = lv.shape[-2]
    flags = 2 * lv.sum(axis=-2) > lmax * rows
    stored = np.where(flags[..., None, :], lmax - lv, lv)
    return stored, flags


# --------------------------------------------------------------------------------------------
# Analog column sums

def _groups(rows, rows_active):
    if rows_active is None:
        return [(0, rows)]
    return [(r, min(rows, r + rows_active)) for r in range(0, rows, rows_active)]


def _matmul_exact(a, b):
    """Exact product of small non-negative integer arrays through float BLAS."""
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * a.shape[-1]
    if bound < 2 ** 24:
        return a.astype(np.float32) @ b.astype(np.float32)
    if bound < 2 ** 53:
        return a.astype(np.float64) @ b.astype(np.float64)
    return a.astype(np.int64) @ b.astype(np.int64)


def column_sums(planes, cells, rows_active=None):
    """Analog column sums in cell-current steps (exact integers for integer levels).

    Parameters
    ----------
    planes : array_like of int
        ``(..., n_planes, rows)`` DAC levels.
    cells : array_like
        ``(*lead, rows, cols)`` cell levels (e.g. ``(n_slices, rows, cols)``); real-valued
        conductances are accepted (the result is then float64).
    rows_active : int or None
        Rows per ADC sample; ``None`` means all rows at once.

    Returns
    -------
    numpy.ndarray
        ``(..., n_planes, *lead, cols)``, plus a trailing row-group axis of length
        ``ceil(rows / rows_active)`` when ``rows_active`` is given (group ``g`` covers rows
        ``g * rows_active`` to ``(g + 1) * rows_active - 1``).
    """
    p = np.asarray(planes)
    c = np.asarray(cells)
    if p.shape[-1] != c.shape[-2]:
        raise ValueError(f"planes has {p.shape[-1]} rows but cells has {c.shape[-2]}")
    rows, cols = c.shape[-2:]
    lead = c.shape[:-2]
    if rows_active is not None:
        rows_active = check_int("rows_active", rows_active, 1, rows)
    integer = c.dtype.kind in "iub" and p.dtype.kind in "iub"
    cm = np.moveaxis(c.reshape(-1, rows, cols), 1, 0).reshape(rows, -1)   # (rows, lead*cols)
    pm = p.reshape(-1, rows)
    outs = []
    for r0, r1 in _groups(rows, rows_active):
        if integer:
            s = _matmul_exact(pm[:, r0:r1], cm[r0:r1])
            s = np.rint(s).astype(np.int64) if s.dtype.kind == "f" else s
        else:
            s = pm[:, r0:r1].astype(np.float64) @ cm[r0:r1].astype(np.float64)
        outs.append(s.reshape(*p.shape[:-1], *lead, cols))
    if rows_active is None:
        return outs[0]
    return np.stack(outs, axis=-1)


# --------------------------------------------------------------------------------------------
# Shift-and-add

def shift_add(codes, *, input_bits, cell_bits, signed_inputs=True, order="lsb_first"):
    """Shift-and-add of per-(input bit, slice, column) codes, the order the RTL uses.

    ``sum_{i, s} codes[..., i, s, :] << (i + s * cell_bits)``, plane ``input_bits - 1``
    subtracted when ``signed_inputs``.

    Parameters
    ----------
    codes : array_like of int
        ``(..., input_bits, n_slices, cols)``.
    input_bits, cell_bits : int
    signed_inputs : bool
    order : {"lsb_first", "msb_first"}
        ``"msb_first"`` is the Horner form ``acc = (acc << 1) + plane`` (and ``<< cell_bits``
        over slices) starting from the MSB; both give the same integers.

    Returns
    -------
    numpy.ndarray of int64
        ``(..., cols)``.
    """
    input_bits = check_int("input_bits", input_bits, 1, 32)
    cell_bits = check_int("cell_bits", cell_bits, 1, 8)
    check_choice("order", order, ("lsb_first", "msb_first"))
    c = as_int_array("codes", codes)
    if c.ndim < 3 or c.shape[-3] != input_bits:
        raise ValueError(f"codes must have shape (..., input_bits={input_bits}, n_slices, cols), not {c.shape}")
    n = c.shape[-2]
    if order == "lsb_first":
        acc = np.zeros(c.shape[:-3] + c.shape[-1:], dtype=np.int64)
        for i in range(input_bits):
            for s in range(n):
                term = c[..., i, s, :] << (i + s * cell_bits)
                acc = acc - term if (signed_inputs and i == input_bits - 1) else acc + term
        return acc
    acc = None
    for i in range(input_bits - 1, -1, -1):
        v = np.zeros(c.shape[:-3] + c.shape[-1:], dtype=np.int64)
        for s in range(n - 1, -1, -1):
            v = (v << cell_bits) + c[..., i, s, :]
        if acc is None:
            acc = -v if signed_inputs else v
        else:
            acc = (acc << 1) + v
    return acc


def shift_add_planes(codes, plane_weights, *, cell_bits):
    """General shift-and-add: ``sum_{p, s} plane_weights[p] * codes[..., p, s, :] << (s * cell_bits)``.

    For any DAC planes from :func:`input_planes` (signed plane weights).
    """
    cell_bits = check_int("cell_bits", cell_bits, 1, 8)
    c = as_int_array("codes", codes)
    pw = as_int_array("plane_weights", plane_weights, ndim=1)
    if c.ndim < 3 or c.shape[-3] != pw.shape[0]:
        raise ValueError(f"codes must have shape (..., n_planes={pw.shape[0]}, n_slices, cols), not {c.shape}")
    sw = np.int64(1) << (np.arange(c.shape[-2], dtype=np.int64) * cell_bits)
    return np.einsum("...psc,p,s->...c", c, pw, sw)


# --------------------------------------------------------------------------------------------
# ADC sharing

def adc_schedule(cols, adc_share, order="sequential"):
    """Column-to-ADC assignment with ``adc_share`` columns per ADC through a mux.

    Parameters
    ----------
    cols : int
        Physical columns.
    adc_share : int
        Columns per ADC (1 to ``cols``).
    order : {"sequential", "interleaved"}
        ``"sequential"``: ADC ``a`` converts columns ``a * adc_share ..`` in increasing order;
        ``"interleaved"``: ADC ``a`` converts columns ``a, a + n_adcs, a + 2 * n_adcs, ..``.

    Returns
    -------
    (adc_index, slot, sequence)
        ``adc_index[c]`` and ``slot[c]`` (conversion slot of column ``c`` within one sample);
        ``sequence[a]`` lists the columns of ADC ``a`` in conversion order (``-1`` padding),
        shape ``(n_adcs, adc_share)``.
    """
    cols = check_int("cols", cols, 1)
    adc_share = check_int("adc_share", adc_share, 1, cols)
    check_choice("adc_order", order, ADC_ORDERS)
    n_adcs = -(-cols // adc_share)
    c = np.arange(cols)
    if order == "sequential":
        adc, slot = c // adc_share, c % adc_share
    else:
        adc, slot = c % n_adcs, c // n_adcs
    seq = np.full((n_adcs, adc_share), -1, dtype=np.int64)
    seq[adc, slot] = c
    return adc.astype(np.int64), slot.astype(np.int64), seq


# --------------------------------------------------------------------------------------------
# Configuration

@dataclass(frozen=True)
class CrossbarConfig:
    """Parameters of one crossbar and its periphery.

    Parameters
    ----------
    rows, cols : int
        Physical array in cells. A weight takes ``weight_bits // cell_bits`` adjacent cells, so
        the crossbar holds ``cols * cell_bits // weight_bits`` weight columns (``n_out``).
    cell_bits : int
        1 (SLC) to 8; 2 is MLC.
    weight_bits : int
        Signed weight width, a multiple of ``cell_bits``, up to 32.
    input_bits : int
        Signed input width, 1 to 32.
    adc_bits : int or None
        ADC resolution, 1 to 16; ``None`` picks the lossless resolution (enough bits for the
        largest possible column sum of one sample, see :attr:`adc_resolution`).
    rows_active : int or None
        Rows driven per ADC sample (``None``: all rows).
    encoding : {"twos", "offset", "differential"}
    flip : bool
        ISAAC column flip with popcount correction.
    dac_bits : int
        DAC resolution, 1 to 8.
    input_encoding : {"twos", "balanced"}
    input_base : int
        Odd base of the balanced encoding.
    adc : {"ideal", "sar"}
        Ideal mid-tread quantizer or bit-true SAR (needed for comparator and DAC non-idealities).
    adc_lsb : float
        ADC step in cell-current steps (1.0: one LSB per step).
    comparator : {">=", ">"}
    adc_share : int
        Columns per ADC.
    adc_order : {"sequential", "interleaved"}
    noise : NoiseConfig
    seed : int
        Root seed of all random streams.
    xbar_id : int
        Crossbar id in the seed key.
    """

    rows: int = 128
    cols: int = 512
    cell_bits: int = 2
    weight_bits: int = 8
    input_bits: int = 8
    adc_bits: int | None = None
    rows_active: int | None = None
    encoding: str = "twos"
    flip: bool = False
    dac_bits: int = 1
    input_encoding: str = "twos"
    input_base: int = 3
    adc: str = "ideal"
    adc_lsb: float = 1.0
    comparator: str = ">="
    adc_share: int = 1
    adc_order: str = "sequential"
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    seed: int = 0
    xbar_id: int = 0

    def __post_init__(self):
        check_int("rows", self.rows, 1, 1 << 16)
        check_int("cols", self.cols, 1, 1 << 16)
        _check_bits_pair(self.weight_bits, self.cell_bits)
        if (self.cols * self.cell_bits) % self.weight_bits:
            raise ValueError(f"cols ({self.cols}) must be a multiple of weight_bits // cell_bits "
                             f"({self.weight_bits // self.cell_bits})")
        check_int("input_bits", self.input_bits, 1, 32)
        if self.adc_bits is not None:
            check_int("adc_bits", self.adc_bits, 1, 16)
        if self.rows_active is not None:
            check_int("rows_active", self.rows_active, 1, self.rows)
        check_choice("encoding", self.encoding, ENCODINGS)
        if not isinstance(self.flip, bool):
            raise TypeError(f"flip must be a bool, not {self.flip!r}")
        check_int("dac_bits", self.dac_bits, 1, 8)
        check_choice("input_encoding", self.input_encoding, INPUT_ENCODINGS)
        if self.input_encoding == "balanced":
            input_planes(np.zeros(1, dtype=np.int64), input_bits=self.input_bits, dac_bits=self.dac_bits,
                         input_encoding="balanced", input_base=self.input_base)
        check_choice("adc", self.adc, ADC_KINDS)
        check_real("adc_lsb", self.adc_lsb, 0, lo_open=True)
        check_choice("comparator", self.comparator, (">=", ">"))
        check_int("adc_share", self.adc_share, 1, self.cols)
        check_choice("adc_order", self.adc_order, ADC_ORDERS)
        if not isinstance(self.noise, NoiseConfig):
            raise TypeError(f"noise must be a NoiseConfig, not {self.noise!r}")
        check_int("seed", self.seed, 0)
        check_int("xbar_id", self.xbar_id, 0)
        n = self.noise
        if self.adc == "ideal" and (n.comp_offset_sigma or n.comp_noise_sigma or n.cap_mismatch_sigma):
            raise ValueError("comparator and capacitor-DAC noise need adc='sar', not adc='ideal'")

    @property
    def n_slices(self):
        """Cells per weight."""
        return self.weight_bits // self.cell_bits

    @property
    def n_out(self):
        """Weight columns (outputs of one MVM)."""
        return self.cols // self.n_slices

    @property
    def n_arrays(self):
        """Physical arrays (2 for differential pairs)."""
        return 2 if self.encoding == "differential" else 1

    @property
    def dac_max(self):
        """Largest DAC level used by the input encoding."""
        if self.input_encoding == "balanced":
            return (self.input_base - 1) // 2
        if self.dac_bits == 1:
            return 1
        n_chunks = -(-self.input_bits // self.dac_bits)
        top_bits = self.input_bits - (n_chunks - 1) * self.dac_bits
        low = (1 << self.dac_bits) - 1 if n_chunks > 1 else 0
        return max(low, 1 << (top_bits - 1))

    @property
    def max_column_sum(self):
        """Largest column sum of one ideal sample."""
        ra = self.rows if self.rows_active is None else self.rows_active
        return ra * ((1 << self.cell_bits) - 1) * self.dac_max

    @property
    def adc_resolution(self):
        """ADC bits in use (``adc_bits`` or the lossless resolution)."""
        if self.adc_bits is not None:
            return self.adc_bits
        need = math.floor(self.max_column_sum / self.adc_lsb + 0.5)
        return min(16, max(1, int(need).bit_length()))

    @property
    def n_groups(self):
        """Row groups (ADC samples per plane)."""
        return 1 if self.rows_active is None else -(-self.rows // self.rows_active)


# --------------------------------------------------------------------------------------------
# Trace

_TRACE_ARRAYS = ("inputs", "planes", "plane_weights", "column_sums", "codes", "corrected",
                 "trials", "decisions", "outputs", "flip_flags", "col_weight", "col_slice",
                 "adc_index", "adc_slot", "steps")


@dataclass
class CrossbarTrace:
    """Per-conversion record of one :meth:`Crossbar.mvm` batch.

    Array layout (physical columns; ``A`` = arrays, 2 for differential, ``G`` = row groups):

    - ``column_sums``: ``(batch, n_planes, A, G, cols)`` analog sums in cell-current steps
      (int64 when exact, else float64), as the ADC sampled them (flipped columns stored flipped);
    - ``codes``: ADC codes, same shape; ``corrected``: codes after the flip correction;
    - ``trials``, ``decisions``: SAR trial codes and comparator decisions, shape
      ``(*codes.shape, adc_bits)``, MSB step first (SAR only, else ``None``);
    - ``col_weight[c]``, ``col_slice[c]``: weight column and slice of physical column ``c``;
      ``adc_index[c]``, ``adc_slot[c]``: its ADC and mux slot; ``flip_flags``: ``(A, cols)``;
    - ``planes`` ``(batch, n_planes, rows)`` and ``plane_weights``; ``steps``: global vector
      indices; ``inputs``, ``outputs``.

    :meth:`logical` reorders a column-axis array to ``(..., n_slices, n_out)``.
    """

    inputs: np.ndarray
    planes: np.ndarray
    plane_weights: np.ndarray
    column_sums: np.ndarray
    codes: np.ndarray
    corrected: np.ndarray
    trials: np.ndarray | None
    decisions: np.ndarray | None
    outputs: np.ndarray
    flip_flags: np.ndarray
    col_weight: np.ndarray
    col_slice: np.ndarray
    adc_index: np.ndarray
    adc_slot: np.ndarray
    steps: np.ndarray

    def logical(self, name):
        """Array ``name`` with its column axis split into ``(n_slices, n_out)``, slice first."""
        a = getattr(self, name)
        axis = -2 if name in ("trials", "decisions") else -1
        n_slices = int(self.col_slice.max()) + 1
        a = np.moveaxis(a, axis, -1)
        a = np.swapaxes(a.reshape(*a.shape[:-1], -1, n_slices), -1, -2)
        if axis == -2:
            a = np.moveaxis(a, -3, -1)
        return a

    def save(self, path):
        """Write every array to an ``.npz`` file (missing SAR arrays are left out)."""
        arrays = {k: getattr(self, k) for k in _TRACE_ARRAYS if getattr(self, k) is not None}
        np.savez_compressed(path, **arrays)


def load_trace(path):
    """Read a :class:`CrossbarTrace` written by :meth:`CrossbarTrace.save`."""
    with np.load(path) as f:
        kw = {k: (f[k] if k in f.files else None) for k in _TRACE_ARRAYS}
    return CrossbarTrace(**kw)


# --------------------------------------------------------------------------------------------
# Crossbar

class Crossbar:
    """One crossbar with DACs, ADCs and digital shift-and-add.

    Parameters
    ----------
    config : CrossbarConfig

    Members
    -------
    program(weights)
        Store a signed integer matrix ``(rows, n_out)``.
    mvm(inputs, *, step=None, time=None, adc_bits=None, trace=False)
        Integer outputs ``(batch, n_out)``.
    column_values(drive, *, step, plane, time=None)
        The analog column values of given row drives (what the ADCs sample), with read noise.
    adc_codes(values, *, step, plane, bits=None)
        Their ADC codes (offsets, capacitor weights, comparator noise): ``mvm``'s conversion.
    compare(values, trial, *, step, plane, bits=None)
        The comparator's decision for single SAR trials.
    """

    def __init__(self, config=None, **kwargs):
        if config is None:
            config = CrossbarConfig(**kwargs)
        elif kwargs:
            config = replace(config, **kwargs)
        if not isinstance(config, CrossbarConfig):
            raise TypeError(f"config must be a CrossbarConfig, not {config!r}")
        self._config = config
        self._weights = None
        self._program_count = 0
        self._next_step = 0
        c = config
        self._adc_index, self._adc_slot, self._adc_seq = adc_schedule(c.cols, c.adc_share, c.adc_order)
        n_adcs = self._adc_seq.shape[0]
        nz = c.noise
        self._stuck = None
        if nz.stuck_on or nz.stuck_off:
            u = self._rng("stuck", 0).random((c.n_arrays, c.rows, c.cols))
            self._stuck = np.where(u < nz.stuck_on, 1, np.where(u < nz.stuck_on + nz.stuck_off, -1, 0))
        self._adc_offset = None
        if nz.comp_offset_sigma:
            self._adc_offset = self._rng("adc_offset", 0).standard_normal(n_adcs) * nz.comp_offset_sigma
        self._cap = None
        if nz.cap_mismatch_sigma:
            self._cap = _noise.cap_weights_mismatch(self._rng("cap", 0), n_adcs, 16, nz.cap_mismatch_sigma)

    # --- properties
    @property
    def config(self):
        """The :class:`CrossbarConfig`."""
        return self._config

    @property
    def weights(self):
        """The programmed integer weights (``None`` before :meth:`program`)."""
        return None if self._weights is None else self._weights.copy()

    @property
    def levels(self):
        """Stored cell levels ``(A, rows, cols)`` after slicing and flip (ideal, before noise)."""
        return self._levels.copy()

    @property
    def flip_flags(self):
        """Flip flag per physical column ``(A, cols)``."""
        return self._flags.copy()

    @property
    def conductances(self):
        """Programmed conductances ``(A, rows, cols)`` in level steps (noise, faults; no drift)."""
        return self._g.copy()

    @property
    def next_step(self):
        """Global index of the next input vector when ``mvm`` is called with ``step=None``."""
        return self._next_step

    def adc_offsets(self):
        """Comparator offset of each ADC in LSB, ``(n_adcs,)`` (zeros when off)."""
        n_adcs = self._adc_seq.shape[0]
        return np.zeros(n_adcs) if self._adc_offset is None else self._adc_offset.copy()

    def adc_cap_weights(self, bits):
        """Capacitor-DAC weights of each ADC at resolution ``bits``, ``(n_adcs, bits)`` MSB
        first, in LSB; ``None`` when capacitor mismatch is off."""
        bits = check_int("bits", bits, 1, 16)
        return None if self._cap is None else self._cap[:, 16 - bits:].copy()

    def read_noise(self, step):
        """Standard-normal read-noise draws of input vector ``step``, ``(planes, A, G, C)``
        (scaled by ``read_sigma`` and the driven rows in :meth:`mvm`)."""
        c = self._config
        return self._rng("read", step).standard_normal((self._n_planes(), c.n_arrays,
                                                        c.n_groups, c.cols))

    def comparator_noise(self, step, bits):
        """Comparator noise of input vector ``step`` in LSB, ``(planes, A, G, C, bits)``, one
        draw per SAR trial, as :meth:`mvm` applies it."""
        c = self._config
        shape = (self._n_planes(), c.n_arrays, c.n_groups, c.cols, bits)
        return self._rng("comparator", step).standard_normal(shape) * c.noise.comp_noise_sigma

    def _n_planes(self):
        n = self.__dict__.get("_planes_per_vector")
        if n is None:
            c = self._config
            _, pw = input_planes(np.zeros((1, c.rows), dtype=np.int64), input_bits=c.input_bits,
                                 dac_bits=c.dac_bits, input_encoding=c.input_encoding,
                                 input_base=c.input_base)
            n = self._planes_per_vector = pw.shape[0]
        return n

    def _rng(self, source, step):
        c = self._config
        return _noise.generator(c.seed, c.xbar_id, source, step)

    # --- programming
    def program(self, weights):
        """Program a signed integer weight matrix.

        Parameters
        ----------
        weights : array_like of int
            ``(rows, n_out)`` in ``[-2**(weight_bits-1), 2**(weight_bits-1) - 1]``.
        """
        c = self._config
        lim = 1 << (c.weight_bits - 1)
        w = as_int_array("weights", weights, lo=-lim, hi=lim - 1, ndim=2)
        if w.shape != (c.rows, c.n_out):
            raise ValueError(f"weights must have shape (rows, n_out) = ({c.rows}, {c.n_out}), not {w.shape}")
        sl = slice_weights(w, c.weight_bits, c.cell_bits, c.encoding)
        if c.encoding != "differential":
            sl = sl[None]
        # (A, S, R, n_out) -> (A, R, n_out, S) -> (A, R, cols): column j * S + s
        lv = np.moveaxis(sl, 1, -1).reshape(c.n_arrays, c.rows, c.cols)
        if c.flip:
            lv, flags = flip_columns(lv, c.cell_bits)
        else:
            flags = np.zeros((c.n_arrays, c.cols), dtype=bool)
        self._weights = w
        self._levels = lv
        self._flags = flags
        self._sign = (w < 0).astype(np.int64) if c.encoding == "twos" else None
        self._program_count += 1
        nz = c.noise
        lmax = (1 << c.cell_bits) - 1
        g = lv.astype(np.float64)
        self._exact = True
        sigma = nz.prog_sigma
        if nz.prog_ber:
            sigma = _noise.sigma_from_ber(nz.prog_ber, lmax + 1)
        if sigma:
            z = self._rng("program", self._program_count).standard_normal(g.shape)
            g = g + z * (sigma if (nz.prog_mode == "absolute" or nz.prog_ber) else sigma * g)
            g = np.maximum(g, 0.0)
            self._exact = False
        if self._stuck is not None:
            g = np.where(self._stuck == 1, float(lmax), np.where(self._stuck == -1, 0.0, g))
            self._exact = False
        self._g = g
        self._nu = None
        if nz.drift_nu or nz.drift_nu_sigma:
            self._nu = nz.drift_nu + nz.drift_nu_sigma * self._rng("drift", self._program_count).standard_normal(g.shape)
        self._g_cache = {}
        return self

    def effective_conductances(self, time=None):
        """Conductances seen by an MVM at ``time`` seconds after programming (drift, IR drop)."""
        nz = self._config.noise
        key = None if time is None else float(time)
        if key in self._g_cache:
            return self._g_cache[key]
        g = self._g
        if self._nu is not None and time is not None:
            t = check_real("time", time, 0)
            ratio = max(t, nz.drift_t0) / nz.drift_t0
            g = g * ratio ** (-self._nu)
        if nz.ir_wl or nz.ir_bl:
            g = _noise.ir_drop_conductance(g, r_wl=nz.ir_wl, r_bl=nz.ir_bl)
        self._g_cache = {key: g}
        return g

    # --- analog front end: the values the ADCs sample and their conversion
    def column_values(self, drive, *, step, plane, time=None):
        """Analog column values the sample-and-hold takes for given row drives.

        The first half of :meth:`mvm` for one or more (input vector, plane) pairs: the DAC
        levels on the rows times the programmed conductances (with programming noise, faults,
        drift at ``time`` and IR drop), summed per row group, plus the read noise of that
        vector and plane (the same draws as :meth:`mvm`).

        Parameters
        ----------
        drive : array_like of int
            ``(n, rows)`` DAC levels of the rows (0 or 1 for 1-bit DACs), one line per sample
            (a 1-D drive is one line).
        step : int or array_like of int
            Global input-vector index of each line (keys the read noise), broadcast to ``(n,)``.
        plane : int or array_like of int
            Plane index of each line within its vector, broadcast to ``(n,)``.
        time : float or None
            Seconds since programming, for drift.

        Returns
        -------
        numpy.ndarray
            ``(n, A, G, C)`` values in cell-current steps (A arrays, G row groups, C columns):
            int64 when they are exact integers (ideal cells, no read noise), else float64.
        """
        if self._weights is None:
            raise ValueError("program() must be called before column_values()")
        c = self._config
        d = as_int_array("drive", drive, lo=0, hi=c.dac_max)
        d = d[None] if d.ndim == 1 else d
        if d.ndim != 2 or d.shape[1] != c.rows:
            raise ValueError(f"drive must have shape (n, rows={c.rows}), not {np.shape(drive)}")
        steps, planes = self._lines(d.shape[0], step, plane)
        v, exact_sums, _ = self._column_values(d, steps, planes, time)
        return _as_int(v) if exact_sums else np.asarray(v, dtype=np.float64)

    def adc_codes(self, values, *, step, plane, bits=None, trace=False):
        """ADC codes of sampled column values, as :meth:`mvm` converts them.

        The crossbar's ADC (``config.adc``): the ideal quantizer, or the bit-true SAR with each
        column's ADC offset and capacitor weights and the comparator noise of that vector and
        plane. Decision ``k`` of a conversion is bit ``k`` of its code (:mod:`golden.sar`), so
        the codes answer every trial of the conversion.

        Parameters
        ----------
        values : array_like
            ``(n, A, G, C)`` from :meth:`column_values`.
        step, plane : int or array_like of int
            As in :meth:`column_values`, per line.
        bits : int or None
            Resolution (default ``config.adc_resolution``).
        trace : bool
            Also return the trial codes and decisions, trailing axis ``bits``, MSB step first
            (SAR only; ``None`` for the ideal ADC).

        Returns
        -------
        numpy.ndarray of int64
            ``(n, A, G, C)``; with ``trace=True``, ``(codes, trials, decisions)``.
        """
        c = self._config
        bits = c.adc_resolution if bits is None else check_int("bits", bits, 1, 16)
        v = np.asarray(values)
        shape = (c.n_arrays, c.n_groups, c.cols)
        if v.ndim != 4 or v.shape[1:] != shape:
            raise ValueError(f"values must have shape (n, {shape[0]}, {shape[1]}, {shape[2]}), "
                             f"not {v.shape}")
        steps, planes = self._lines(v.shape[0], step, plane)
        exact = v.dtype.kind in "iu"
        res = self._convert(v, steps, planes, bits, exact_sums=exact,
                            dt=np.int64 if exact else np.float64, trace=trace)
        if not trace:
            return _as_int(res)
        codes, trials, decisions = res
        return _as_int(codes), trials, decisions

    def compare(self, values, trial, *, step, plane, bits=None):
        """Comparator decisions of single SAR trials (the per-trial view of :meth:`adc_codes`).

        Parameters
        ----------
        values : array_like
            ``(A, G, C)`` column values of one sample (:meth:`column_values` of one line).
        trial : array_like of int
            ``(A, G, C)`` trial codes ``code | 1 << k`` (``k`` the step under trial, its lowest
            set bit), LSB-aligned at ``bits``.
        step, plane : int
            The sample's input vector and plane (the comparator-noise key).
        bits : int or None
            Resolution (default ``config.adc_resolution``).

        Returns
        -------
        numpy.ndarray of bool
            ``(A, G, C)``: the trial bit is kept. Running the trials MSB first with these
            decisions gives :meth:`adc_codes`.
        """
        c, nz = self._config, self._config.noise
        bits = c.adc_resolution if bits is None else check_int("bits", bits, 1, 16)
        step, plane = check_int("step", step, 0), check_int("plane", plane, 0)
        t = np.asarray(trial, dtype=np.int64)
        if c.adc == "ideal":
            return np.asarray(values) >= (t - 0.5) * c.adc_lsb
        k = np.log2(t & -t).astype(np.int64)
        offset = 0.0 if self._adc_offset is None else self._adc_offset[self._adc_index]
        cap = None if self._cap is None else self.adc_cap_weights(bits)[self._adc_index]
        noise = None
        if nz.comp_noise_sigma:
            z = self._draws("comparator", step, bits)[plane]              # (A, G, C, bits)
            noise = np.take_along_axis(z, (bits - 1 - k)[..., None], axis=-1)[..., 0]
        return _sar.compare(values, t, lsb=c.adc_lsb, comparator=c.comparator, offset=offset,
                            noise=noise, cap_weights=cap)

    def _draws(self, source, step, bits=None):
        """:meth:`read_noise` or :meth:`comparator_noise` of ``step``, the last step's kept
        (a sample-by-sample caller asks for each step once per plane); not to be modified."""
        key = (source, step, bits)
        cache = self.__dict__.setdefault("_draw_cache", {})
        if key not in cache:
            draw = self.read_noise(step) if source == "read" else self.comparator_noise(step, bits)
            cache = self._draw_cache = {k: v for k, v in cache.items() if k[0] != source}
            cache[key] = draw
        return cache[key]

    def _lines(self, n, step, plane):
        steps = np.broadcast_to(np.asarray(step, dtype=np.int64), (n,))
        planes = np.broadcast_to(np.asarray(plane, dtype=np.int64), (n,))
        if n and (steps.min() < 0 or planes.min() < 0 or planes.max() >= self._n_planes()):
            raise TypeError(f"step must be non-negative and plane from 0 to {self._n_planes() - 1}, "
                            f"not {step!r} and {plane!r}")
        return steps, planes

    def _column_values(self, pm, steps, planes, time):
        """Column values of drive lines ``pm`` ``(n, rows)`` (vector ``steps[i]``, plane
        ``planes[i]``): ``(values (n, A, G, C), exact integers, dtype)``."""
        c, nz = self._config, self._config.noise
        n = pm.shape[0]
        A, G, R, C = c.n_arrays, c.n_groups, c.rows, c.cols
        groups = _groups(R, c.rows_active)
        g_eff = self.effective_conductances(time)
        exact = self._exact and g_eff is self._g and not (nz.drift_nu or nz.drift_nu_sigma)
        exact_sums = exact and not nz.read_sigma        # column sums are exact integers
        cm = self._levels if exact else g_eff
        dt = np.float32 if (exact and c.max_column_sum < 2 ** 24) else np.float64
        pmf = pm.astype(dt)
        sums = np.empty((n, A, G, C), dtype=dt)
        if A == 1 and G == 1:
            np.matmul(pmf, cm[0].astype(dt), out=sums.reshape(n, C))
        else:
            for a in range(A):
                ca = cm[a].astype(dt)
                for gi, (r0, r1) in enumerate(groups):
                    sums[:, a, gi, :] = pmf[:, r0:r1] @ ca[r0:r1]
        if nz.read_sigma:
            psq = np.stack([(pm[:, r0:r1] ** 2).sum(-1) for r0, r1 in groups], axis=-1)
            z = np.empty((n, A, G, C))
            for s in sorted(set(steps.tolist())):
                sel = steps == s
                z[sel] = self._draws("read", int(s))[planes[sel]]
            sums = sums + z * (nz.read_sigma * np.sqrt(psq))[:, None, :, None]
        return sums, exact_sums, dt

    def _convert(self, sums, steps, planes, bits, *, exact_sums, dt, trace, out=None):
        """ADC codes of ``sums`` ``(..., A, G, C)`` whose leading axes flatten to the lines of
        ``steps``/``planes``; ``codes`` or ``(codes, trials, decisions)`` with ``trace``."""
        c, nz = self._config, self._config.noise
        if c.adc == "ideal":
            if exact_sums and c.adc_lsb == 1.0:                 # non-negative integer values
                codes = np.minimum(sums, (1 << bits) - 1, out=out)
            else:
                codes = ideal_quantize(sums, bits, lsb=c.adc_lsb)
            return (codes, None, None) if trace else codes
        analog = _as_int(sums) if (exact_sums and dt == np.float32) else sums
        offset = 0.0 if self._adc_offset is None else self._adc_offset[self._adc_index]
        cap = None if self._cap is None else self.adc_cap_weights(bits)[self._adc_index]
        noise = None
        if nz.comp_noise_sigma:
            lead = sums.shape[:-3]
            noise = np.empty((len(steps), c.n_arrays, c.n_groups, c.cols, bits))
            for s in sorted(set(steps.tolist())):
                sel = steps == s
                noise[sel] = self._draws("comparator", int(s), bits)[planes[sel]]
            noise = noise.reshape(*lead, c.n_arrays, c.n_groups, c.cols, bits)
        return sar_convert(analog, bits, lsb=c.adc_lsb, comparator=c.comparator, offset=offset,
                           cap_weights=cap, noise=noise, trace=trace)

    # --- MVM
    def mvm(self, inputs, *, step=None, time=None, adc_bits=None, trace=False):
        """Matrix-vector products of a batch through DACs, array, ADCs and shift-and-add.

        Parameters
        ----------
        inputs : array_like of int
            ``(batch, rows)`` signed ``input_bits``-bit integers (a 1-D vector is a batch of 1).
        step : int or None
            Global index of the first vector (keys the per-vector noise); ``None`` continues
            from the previous call, so splitting a batch does not change the result.
        time : float or None
            Seconds since programming, for drift (``None``: no drift).
        adc_bits : int or None
            Resolution of this call's conversions (HyFlexPIM's 6/7-bit switch), default
            ``config.adc_resolution``.
        trace : bool
            Also return a :class:`CrossbarTrace`.

        Returns
        -------
        numpy.ndarray of int64
            ``(batch, n_out)``; with ``trace=True``, ``(outputs, trace)``.
        """
        if self._weights is None:
            raise ValueError("program() must be called before mvm()")
        c, nz = self._config, self._config.noise
        lim = 1 << (c.input_bits - 1)
        x = as_int_array("inputs", inputs, lo=-lim, hi=lim - 1)
        single = x.ndim == 1
        if single:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != c.rows:
            raise ValueError(f"inputs must have shape (batch, rows={c.rows}), not {np.shape(inputs)}")
        bits = c.adc_resolution if adc_bits is None else check_int("adc_bits", adc_bits, 1, 16)
        batch = x.shape[0]
        if step is None:
            step = self._next_step
        step = check_int("step", step, 0)
        self._next_step = step + batch
        steps = np.arange(step, step + batch)

        planes, pw = input_planes(x, input_bits=c.input_bits, dac_bits=c.dac_bits,
                                  input_encoding=c.input_encoding, input_base=c.input_base)
        n_planes = pw.shape[0]
        A, G, R, C = c.n_arrays, c.n_groups, c.rows, c.cols
        groups = _groups(R, c.rows_active)

        # Analog column sums: (batch, P, A, G, C), one line per (vector, plane)
        pm = planes.reshape(batch * n_planes, R)
        line_steps = np.repeat(steps, n_planes)
        line_planes = np.tile(np.arange(n_planes), batch)
        sums, exact_sums, dt = self._column_values(pm, line_steps, line_planes, time)
        sums = sums.reshape(batch, n_planes, A, G, C)

        # DAC-level sums of the active rows per group (popcounts for 1-bit DACs): (batch, P, G)
        if c.flip:
            psum = np.stack([planes[..., r0:r1].sum(-1) for r0, r1 in groups], axis=-1)

        # ADC
        res = self._convert(sums, line_steps, line_planes, bits, exact_sums=exact_sums, dt=dt,
                            trace=trace, out=None if trace else sums)
        codes, trials, decisions = res if trace else (res, None, None)

        # Digital: flip correction, group sum, shift-and-add, encoding correction
        # Integer values held in floats are exact while every partial sum stays below 2**24
        # (float32) or 2**53 (float64); the bounds are checked, with an int64 fallback.
        lmax = (1 << c.cell_bits) - 1
        cmax = (1 << bits) - 1
        vmax = float(max(cmax * G, lmax * c.dac_max * R)) if c.flip else float(cmax * G)
        b1 = float(np.abs(pw).sum()) * vmax
        b2 = b1 * A * float(sum(1 << (s * c.cell_bits) for s in range(c.n_slices)))
        wdt = codes.dtype if (codes.dtype == np.float32 and b2 < 2 ** 24) else (
            np.float64 if b2 < 2 ** 53 else np.int64)
        codes_w = codes.astype(wdt, copy=False)
        cg = codes_w.sum(axis=3) if G > 1 else codes_w[:, :, :, 0, :]          # (batch, P, A, C)
        v = np.einsum("bpac,p->bac", cg, pw.astype(wdt))                       # (batch, A, C)
        if c.flip:
            # A flipped column reads corr - true with corr = lmax * (DAC-level sum of the active
            # rows); the correction is linear, so it is applied after the sum over planes/groups.
            k = (lmax * psum.sum(axis=-1)) @ pw                                  # (batch,)
            v = np.where(self._flags[None], k.astype(wdt)[:, None, None] - v, v)
        u = v[:, 0] - v[:, 1] if A == 2 else v[:, 0]                              # (batch, C)
        sw = (np.int64(1) << (np.arange(c.n_slices, dtype=np.int64) * c.cell_bits)).astype(wdt)
        y = _as_int(u.reshape(batch, c.n_out, c.n_slices) @ sw)
        if c.encoding == "offset":
            y = y - (x.sum(axis=1, keepdims=True) << (c.weight_bits - 1))
        elif c.encoding == "twos":
            y = y - (_exact_int_matmul(x, self._sign) << c.weight_bits)

        if single:
            y_out = y[0]
        else:
            y_out = y
        if not trace:
            return y_out
        codes_i = _as_int(codes)
        if c.flip:
            corr = (lmax * psum)[:, :, None, :, None]
            corrected = np.where(self._flags[None, None, :, None, :], corr - codes_i, codes_i)
        else:
            corrected = codes_i
        tr = CrossbarTrace(
            inputs=x, planes=planes, plane_weights=pw,
            column_sums=_as_int(sums) if exact_sums else np.asarray(sums, dtype=np.float64),
            codes=codes_i, corrected=corrected,
            trials=trials, decisions=decisions, outputs=y, flip_flags=self._flags.copy(),
            col_weight=np.arange(C) // c.n_slices, col_slice=np.arange(C) % c.n_slices,
            adc_index=self._adc_index.copy(), adc_slot=self._adc_slot.copy(), steps=steps)
        return y_out, tr


def _as_int(a):
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return a.astype(np.int64, copy=False)
    return np.rint(a).astype(np.int64)


def _exact_int_matmul(a, b):
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * a.shape[-1]
    if bound < 2 ** 53:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b
